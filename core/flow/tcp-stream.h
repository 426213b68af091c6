/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* TCP reassembly for one direction of a flow: delivers bytes in sequence
 * order exactly once, buffers out-of-order segments up to a byte bound,
 * trims retransmissions and overlaps (first copy wins, conflicting overlaps
 * are counted), and reports gaps so the dissector can resynchronise. */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _OtsTcpSegment OtsTcpSegment; /* private to tcp-stream.c */

typedef struct {
    gboolean started;   /* next_seq is valid */
    gboolean syn_seen;
    gboolean fin_seen;  /* FIN consumed in order: no more data expected */
    guint32 next_seq;   /* next in-order sequence number expected */
    OtsTcpSegment *ooo; /* out-of-order segments sorted by seq, non-overlapping */
    guint32 ooo_bytes;
} OtsTcpStream;

typedef struct {
    guint64 segments;       /* segments with payload seen */
    guint64 bytes_in_order; /* bytes delivered */
    guint64 retransmissions;/* segments fully already delivered */
    guint64 overlaps;       /* partial overlaps trimmed */
    guint64 overlap_conflicts; /* overlapping bytes that differed from what was kept */
    guint64 ooo_segments;   /* segments buffered out of order */
    guint64 gaps;           /* gaps reported */
    guint64 gap_bytes;
    guint64 midstream;      /* streams picked up without a SYN */
} OtsTcpStats;

typedef struct {
    /* In-order bytes; @data is valid only during the call. */
    void (*data)(gpointer user, const guint8 *data, gsize len);
    /* @len bytes are missing before the next data (0: unknown, e.g. mid-stream start). */
    void (*gap)(gpointer user, guint32 len);
} OtsTcpSink;

void ots_tcp_stream_init(OtsTcpStream *s);
/* Frees buffered segments; the stream can be reused after init. */
void ots_tcp_stream_clear(OtsTcpStream *s);

/* Feeds one segment of this direction. @flags are OTS_TCP_* from decode.h.
 * When buffered out-of-order bytes would exceed @max_ooo_bytes, the stream
 * gives up waiting: it reports a gap up to the first buffered segment and
 * delivers from there. A first segment without SYN starts the stream there
 * and reports gap(0) first (mid-stream pick-up). */
void ots_tcp_stream_add(OtsTcpStream *s, guint32 seq, guint8 flags, const guint8 *payload,
                        guint32 len, guint32 max_ooo_bytes, const OtsTcpSink *sink, gpointer user,
                        OtsTcpStats *stats);

/* End of flow: delivers what is buffered, reporting the gaps in between. */
void ots_tcp_stream_flush(OtsTcpStream *s, const OtsTcpSink *sink, gpointer user,
                          OtsTcpStats *stats);

G_END_DECLS
