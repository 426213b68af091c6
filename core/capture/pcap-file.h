/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Classic pcap files read in 1 MiB read()s, records taken in place. libpcap
 * reads every record with two fread()s through stdio, and that per-record
 * work was most of the cost of reading a file: a loop like this one reads
 * the benchmark capture in under a third of the bare libpcap loop's time
 * (tests/bench/bench-capture prints both). The file is opened, and its
 * header and link type checked, by libpcap first (ots_capture_open_file());
 * here only the 16-byte record headers are parsed, with libpcap's limits
 * and error messages. pcapng keeps the libpcap path. */

#include <glib.h>

G_BEGIN_DECLS

/* libpcap's largest snapshot length (MAXIMUM_SNAPLEN): a record claiming
 * more is an error there, and here. */
#define OTS_PCAP_MAX_SNAPLEN 262144u

typedef struct {
    int fd;           /* -1: all of the file is at @buf already */
    guint8 *buf;
    gsize cap;        /* 0: @buf is the caller's */
    gsize have;       /* bytes at @buf */
    gsize off;        /* next record */
    gboolean eof;
    gboolean swapped; /* written on a host of the other byte order */
    gboolean nsec;    /* nanosecond timestamps */
    guint32 snaplen;  /* records are cut to this, as libpcap does */
} OtsPcapFile;

typedef struct {
    gint64 ts;          /* µs since the epoch */
    guint32 caplen;     /* bytes at @data */
    guint32 len;        /* length on the wire */
    const guint8 *data;
} OtsPcapRecord;

typedef enum {
    OTS_PCAP_RECORD,
    OTS_PCAP_END,
    OTS_PCAP_ERROR, /* truncated or bad record: the message is in @error */
} OtsPcapNext;

/* Reads @len bytes at @data as a whole classic pcap file. FALSE if they do
 * not start with a classic pcap header (pcapng, anything else). */
gboolean ots_pcap_file_init(OtsPcapFile *f, const guint8 *data, gsize len);

/* The next record (its bytes valid until the next call), or the end, or an
 * error (a record cut short by the end of the file, one longer than
 * OTS_PCAP_MAX_SNAPLEN, a read error); after an error the file reads as
 * ended. */
OtsPcapNext ots_pcap_file_next(OtsPcapFile *f, OtsPcapRecord *r, GError **error);

/* Opens @path when it is a classic pcap file; NULL (no error) otherwise,
 * and the caller reads it with libpcap. "-" is standard input, which is
 * left to libpcap (its first bytes cannot be looked at twice). */
OtsPcapFile *ots_pcap_file_open(const char *path);
void ots_pcap_file_free(OtsPcapFile *f);

G_END_DECLS
