/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for core/flow/tcp-stream.c. The input drives one stream:
 *
 *   u32 isn (LE) | u8 bound | { u16 seq offset (LE) | u8 flags | u8 len | len bytes }*
 *
 * Segment sequence numbers are isn + offset (so ISNs near 2^32 exercise the
 * wraparound), and the out-of-order bound is small ((bound % 64) * 32 bytes).
 * Invariants checked, abort() on violation: only bytes that were fed are
 * delivered, each at the position it was fed at, in increasing order, none
 * twice; delivered bytes never exceed fed bytes; the position implied by the
 * data and gap callbacks always equals next_seq; the buffer stays within the
 * bound. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/decode/decode.h"
#include "core/flow/tcp-stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Offsets from the ISN that data can occupy: 16-bit offset, a SYN's one
 * number and 255 bytes. */
#define SPAN (65536 + 1 + 255 + 1)

typedef struct {
    guint32 isn;
    gboolean pos_known;
    guint32 pos;            /* sequence number of the next delivered byte */
    guint64 delivered;      /* bytes */
    guint64 fed;            /* payload bytes fed */
    guint8 fed_mask[SPAN];  /* 1: fed once, 2: fed with differing values */
    guint8 fed_value[SPAN]; /* first value fed */
    guint8 done[SPAN];      /* delivered */
} Tracker;

static void
check(gboolean ok)
{
    if (!ok)
        abort();
}

static void
on_data(gpointer user, const guint8 *bytes, gsize len)
{
    Tracker *t = user;
    check(t->pos_known);
    check(len > 0);
    for (gsize i = 0; i < len; i++) {
        guint32 off = t->pos - t->isn;
        check(off < SPAN);
        check(t->fed_mask[off] != 0);
        check(t->fed_mask[off] == 2 || t->fed_value[off] == bytes[i]);
        check(!t->done[off]);
        t->done[off] = 1;
        t->pos++;
    }
    t->delivered += len;
    check(t->delivered <= t->fed);
}

static void
on_gap(gpointer user, guint32 len)
{
    Tracker *t = user;
    check(t->pos_known);
    /* A gap never jumps over the data the tracker has seen. */
    check((guint64)(t->pos - t->isn) + len < SPAN);
    t->pos += len;
}

static const OtsTcpSink sink = {on_data, on_gap};

static void
check_position(const OtsTcpStream *s, const Tracker *t, guint32 max)
{
    if (!s->started)
        return;
    check(t->pos_known);
    check(t->pos + (s->fin_seen ? 1u : 0u) == s->next_seq);
    check(s->ooo_bytes <= max);
    check(s->ooo != NULL || s->ooo_bytes == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    static Tracker t;
    memset(&t, 0, sizeof(t));
    t.isn =
        (guint32)data[0] | (guint32)data[1] << 8 | (guint32)data[2] << 16 | (guint32)data[3] << 24;
    guint32 max = (guint32)(data[4] % 64) * 32;
    size_t off = 5;

    OtsTcpStream s;
    OtsTcpStats stats = {0};
    ots_tcp_stream_init(&s);

    while (off + 4 <= size) {
        guint32 seq_off = (guint32)data[off] | (guint32)data[off + 1] << 8;
        guint8 flags = data[off + 2];
        guint32 len = data[off + 3];
        off += 4;
        if (len > size - off)
            len = (guint32)(size - off);
        const guint8 *payload = data + off;
        off += len;
        guint32 seq = t.isn + seq_off;

        guint32 data_off = seq_off + ((flags & OTS_TCP_SYN) ? 1 : 0);
        for (guint32 i = 0; i < len; i++) {
            guint32 o = data_off + i;
            if (t.fed_mask[o] == 0) {
                t.fed_mask[o] = 1;
                t.fed_value[o] = payload[i];
            } else if (t.fed_value[o] != payload[i]) {
                t.fed_mask[o] = 2;
            }
        }
        t.fed += len;
        if (!s.started) {
            t.pos_known = TRUE;
            t.pos = t.isn + data_off;
        }

        ots_tcp_stream_add(&s, seq, flags, len ? payload : NULL, len, max, &sink, &t, &stats);
        check_position(&s, &t, max);
    }

    ots_tcp_stream_flush(&s, &sink, &t, &stats);
    check_position(&s, &t, max);
    check(s.ooo == NULL && s.ooo_bytes == 0);
    check(stats.bytes_in_order == t.delivered);
    check(stats.retransmissions + stats.overlaps <= stats.segments);
    ots_tcp_stream_clear(&s);
    return 0;
}
