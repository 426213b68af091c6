/* SPDX-License-Identifier: Apache-2.0 */
#include "core/capture/pcap-file.h"
#include "core/capture/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define MAGIC_USEC 0xa1b2c3d4u
#define MAGIC_NSEC 0xa1b23c4du
#define FILE_HEADER 24
#define RECORD_HEADER 16
/* Room for the largest record after a partial one moved to the front. */
#define READ_BUFFER (1024 * 1024 + 2 * (OTS_PCAP_MAX_SNAPLEN + RECORD_HEADER))
#define READ_CHUNK (1024 * 1024)

static guint32
get32(const OtsPcapFile *f, const guint8 *p)
{
    guint32 v;
    memcpy(&v, p, sizeof(v));
    return f->swapped ? GUINT32_SWAP_LE_BE(v) : v;
}

/* The file header at @data: sets the byte order, resolution and snaplen. */
static gboolean
parse_header(OtsPcapFile *f, const guint8 *data)
{
    guint32 magic;
    memcpy(&magic, data, sizeof(magic));
    if (magic == MAGIC_USEC || magic == MAGIC_NSEC) {
        f->swapped = FALSE;
    } else if (magic == GUINT32_SWAP_LE_BE(MAGIC_USEC) || magic == GUINT32_SWAP_LE_BE(MAGIC_NSEC)) {
        f->swapped = TRUE;
        magic = GUINT32_SWAP_LE_BE(magic);
    } else {
        return FALSE; /* pcapng, a modified pcap, anything else: libpcap's */
    }
    guint16 major, minor;
    memcpy(&major, data + 4, 2);
    memcpy(&minor, data + 6, 2);
    if (f->swapped) {
        major = GUINT16_SWAP_LE_BE(major);
        minor = GUINT16_SWAP_LE_BE(minor);
    }
    /* Older versions have quirks libpcap knows about (swapped lengths). */
    if (major != 2 || minor != 4)
        return FALSE;
    f->nsec = magic == MAGIC_NSEC;
    /* As libpcap adjusts it: 0 or too large means the maximum. */
    f->snaplen = get32(f, data + 16);
    if (f->snaplen == 0 || f->snaplen > OTS_PCAP_MAX_SNAPLEN)
        f->snaplen = OTS_PCAP_MAX_SNAPLEN;
    return TRUE;
}

gboolean
ots_pcap_file_init(OtsPcapFile *f, const guint8 *data, gsize len)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    if (len < FILE_HEADER || !parse_header(f, data))
        return FALSE;
    f->buf = (guint8 *)data;
    f->have = len;
    f->off = FILE_HEADER;
    f->eof = TRUE;
    return TRUE;
}

/* Makes @need bytes from f->off available if the file has them; FALSE on
 * a read error. */
static gboolean
fill(OtsPcapFile *f, gsize need, GError **error)
{
    if (f->have - f->off >= need || f->eof)
        return TRUE;
    memmove(f->buf, f->buf + f->off, f->have - f->off);
    f->have -= f->off;
    f->off = 0;
    while (f->have < need && !f->eof) {
        ssize_t n = read(f->fd, f->buf + f->have, MIN((gsize)READ_CHUNK, f->cap - f->have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN, "%s", g_strerror(errno));
            return FALSE;
        }
        if (n == 0)
            f->eof = TRUE;
        f->have += (gsize)n;
    }
    return TRUE;
}

static OtsPcapNext
fail(OtsPcapFile *f)
{
    f->off = f->have;
    f->eof = TRUE;
    return OTS_PCAP_ERROR;
}

OtsPcapNext
ots_pcap_file_next(OtsPcapFile *f, OtsPcapRecord *r, GError **error)
{
    /* Read ahead in large pieces, not per record. */
    if (!fill(f, f->have - f->off < RECORD_HEADER ? READ_CHUNK : RECORD_HEADER, error))
        return fail(f);
    gsize left = f->have - f->off;
    if (left == 0)
        return OTS_PCAP_END;
    if (left < RECORD_HEADER) {
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN,
                    "truncated dump file; tried to read %u header bytes, only got %" G_GSIZE_FORMAT,
                    RECORD_HEADER, left);
        return fail(f);
    }
    const guint8 *h = f->buf + f->off;
    guint32 incl = get32(f, h + 8);
    if (incl > OTS_PCAP_MAX_SNAPLEN) {
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN,
                    "invalid packet capture length %u, bigger than snaplen of %u", incl,
                    f->snaplen);
        return fail(f);
    }
    if (left < RECORD_HEADER + incl) {
        if (!fill(f, RECORD_HEADER + incl, error))
            return fail(f);
        left = f->have - f->off;
        h = f->buf + f->off;
        if (left < RECORD_HEADER + incl) {
            g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN,
                        "truncated dump file; tried to read %u captured bytes, only got "
                        "%" G_GSIZE_FORMAT,
                        incl, left - RECORD_HEADER);
            return fail(f);
        }
    }
    /* Unsigned, as the format says (libpcap 1.10 sign-extends them from a
     * file in the host's byte order: past 2038 it goes back to 1901). */
    guint32 sec = get32(f, h), frac = get32(f, h + 4);
    r->ts = (gint64)sec * G_USEC_PER_SEC + (f->nsec ? frac / 1000u : frac);
    r->data = h + RECORD_HEADER;
    r->caplen = MIN(incl, f->snaplen); /* the rest is skipped, as libpcap does */
    r->len = get32(f, h + 12);
    f->off += RECORD_HEADER + incl;
    return OTS_PCAP_RECORD;
}

OtsPcapFile *
ots_pcap_file_open(const char *path)
{
    if (g_str_equal(path, "-"))
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    guint8 head[FILE_HEADER];
    OtsPcapFile probe = {0};
    gssize n = pread(fd, head, sizeof(head), 0);
    if (n != (gssize)sizeof(head) || !parse_header(&probe, head)) {
        close(fd);
        return NULL;
    }
    OtsPcapFile *f = g_new0(OtsPcapFile, 1);
    *f = probe;
    f->fd = fd;
    f->cap = READ_BUFFER;
    f->buf = g_malloc(f->cap);
    /* Past the file header, which libpcap has checked. */
    if (lseek(fd, FILE_HEADER, SEEK_SET) != FILE_HEADER) {
        ots_pcap_file_free(f);
        return NULL;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return f;
}

void
ots_pcap_file_free(OtsPcapFile *f)
{
    if (!f)
        return;
    if (f->fd >= 0) {
        close(f->fd);
        g_free(f->buf);
    }
    g_free(f);
}
