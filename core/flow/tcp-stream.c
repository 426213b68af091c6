/* SPDX-License-Identifier: Apache-2.0 */
/* TCP reassembly for one direction. Sequence numbers are compared through
 * signed 32-bit differences so the stream survives wraparound. Everything
 * buffered lies strictly ahead of next_seq, sorted and non-overlapping, in a
 * doubly linked list whose head's prev points at the tail (O(1) append for
 * the common case of segments arriving in order after one hole). */

#include "core/flow/tcp-stream.h"

#include <string.h>

#include "core/decode/decode.h"

struct _OtsTcpSegment {
    OtsTcpSegment *next;
    OtsTcpSegment *prev; /* the head's prev is the tail */
    guint32 seq;
    guint32 len;
    gboolean fin; /* a FIN follows the last byte (len 0: FIN marker only) */
    guint8 data[];
};

/* Each buffered segment is charged its payload plus this much against
 * max_ooo_bytes (and in ooo_bytes), so a flood of 1-byte segments cannot
 * make the memory used many times the configured bound. */
#define SEG_OVERHEAD ((guint32)(sizeof(OtsTcpSegment) + 2 * sizeof(gpointer)))

/* No valid TCP window reaches further ahead than 2^30 bytes (window scale
 * 14); data beyond that cannot be real and would break the signed
 * comparisons. */
#define MAX_AHEAD (1u << 30)

static inline gint32
seq_diff(guint32 a, guint32 b)
{
    return (gint32)(a - b);
}

static inline guint32
seg_charge(const OtsTcpSegment *seg)
{
    /* A FIN marker carries no data and exists at most once a stream. */
    return seg->len ? seg->len + SEG_OVERHEAD : 0;
}

static inline OtsTcpSegment *
list_tail(const OtsTcpStream *s)
{
    return s->ooo ? s->ooo->prev : NULL;
}

/* Inserts @seg before @pos, or at the end when @pos is NULL. */
static void
list_insert_before(OtsTcpStream *s, OtsTcpSegment *pos, OtsTcpSegment *seg)
{
    if (s->ooo == NULL) {
        seg->next = NULL;
        seg->prev = seg;
        s->ooo = seg;
    } else if (pos == NULL) {
        OtsTcpSegment *tail = s->ooo->prev;
        tail->next = seg;
        seg->prev = tail;
        seg->next = NULL;
        s->ooo->prev = seg;
    } else {
        seg->next = pos;
        seg->prev = pos->prev;
        if (pos == s->ooo)
            s->ooo = seg;
        else
            pos->prev->next = seg;
        pos->prev = seg;
    }
}

static void
list_remove(OtsTcpStream *s, OtsTcpSegment *seg)
{
    if (seg == s->ooo) {
        s->ooo = seg->next;
        if (s->ooo)
            s->ooo->prev = seg->prev;
    } else {
        seg->prev->next = seg->next;
        if (seg->next)
            seg->next->prev = seg->prev;
        else
            s->ooo->prev = seg->prev;
    }
    seg->next = seg->prev = NULL;
}

/**
 * ots_tcp_stream_init:
 * @s: a stream (caller-owned storage)
 *
 * Resets @s to an empty, not yet started stream.
 */
void
ots_tcp_stream_init(OtsTcpStream *s)
{
    g_return_if_fail(s != NULL);
    memset(s, 0, sizeof(*s));
}

/**
 * ots_tcp_stream_clear:
 * @s: a stream
 *
 * Frees the buffered out-of-order segments. The sequence state is kept; call
 * ots_tcp_stream_init() to reuse @s for another connection.
 */
void
ots_tcp_stream_clear(OtsTcpStream *s)
{
    g_return_if_fail(s != NULL);
    OtsTcpSegment *seg = s->ooo;
    while (seg) {
        OtsTcpSegment *next = seg->next;
        g_free(seg);
        seg = next;
    }
    s->ooo = NULL;
    s->ooo_bytes = 0;
}

static void
emit_gap(guint32 len, const OtsTcpSink *sink, gpointer user, OtsTcpStats *stats)
{
    stats->gaps++;
    stats->gap_bytes += len;
    if (sink && sink->gap)
        sink->gap(user, len);
}

static void
emit_data(OtsTcpStream *s, const guint8 *data, guint32 len, const OtsTcpSink *sink, gpointer user,
          OtsTcpStats *stats)
{
    if (len == 0)
        return;
    s->next_seq += len;
    stats->bytes_in_order += len;
    if (sink && sink->data)
        sink->data(user, data, len);
}

static void
consume_fin(OtsTcpStream *s)
{
    s->next_seq++;
    s->fin_seen = TRUE;
    /* Nothing can follow a FIN: drop whatever was buffered beyond it. */
    ots_tcp_stream_clear(s);
}

/* Delivers the head segment, which starts at next_seq. The segment is
 * unlinked before the sink runs. */
static void
deliver_head(OtsTcpStream *s, const OtsTcpSink *sink, gpointer user, OtsTcpStats *stats)
{
    OtsTcpSegment *seg = s->ooo;
    list_remove(s, seg);
    s->ooo_bytes -= seg_charge(seg);
    emit_data(s, seg->data, seg->len, sink, user, stats);
    gboolean fin = seg->fin;
    g_free(seg);
    if (fin)
        consume_fin(s);
}

/* Delivers the buffered segments that are now contiguous with next_seq. */
static void
drain(OtsTcpStream *s, const OtsTcpSink *sink, gpointer user, OtsTcpStats *stats)
{
    while (s->ooo && s->ooo->seq == s->next_seq)
        deliver_head(s, sink, user, stats);
}

static OtsTcpSegment *
segment_new(guint32 seq, const guint8 *data, guint32 len)
{
    OtsTcpSegment *seg = g_malloc(sizeof(OtsTcpSegment) + len);
    seg->next = seg->prev = NULL;
    seg->seq = seq;
    seg->len = len;
    seg->fin = FALSE;
    if (len)
        memcpy(seg->data, data, len);
    return seg;
}

static guint64
count_differences(const guint8 *a, const guint8 *b, guint32 len)
{
    guint64 n = 0;
    for (guint32 i = 0; i < len; i++)
        n += a[i] != b[i];
    return n;
}

static void
add_data(OtsTcpStream *s, guint32 seq, const guint8 *p, guint32 len, guint32 max_ooo_bytes,
         const OtsTcpSink *sink, gpointer user, OtsTcpStats *stats)
{
    guint32 cur = seq;
    guint32 rem = len;
    guint32 redundant = 0;
    gboolean buffered = FALSE;

    /* Cut what lies beyond the furthest acceptable byte: after a consumed
     * FIN nothing past next_seq, before a pending FIN up to it, otherwise
     * MAX_AHEAD past next_seq. */
    OtsTcpSegment *last = list_tail(s);
    guint32 limit_seq = s->next_seq + MAX_AHEAD;
    if (s->fin_seen)
        limit_seq = s->next_seq;
    else if (last && last->fin)
        limit_seq = last->seq + last->len;
    if (seq_diff(cur, limit_seq) >= 0)
        return;
    if (rem > limit_seq - cur)
        rem = limit_seq - cur;
    len = rem;

    OtsTcpSegment *b = s->ooo;
    while (rem > 0) {
        /* Already delivered (or skipped over by a gap): trim. */
        gint32 behind = seq_diff(s->next_seq, cur);
        if (behind > 0) {
            guint32 k = MIN((guint32)behind, rem);
            p += k;
            cur += k;
            rem -= k;
            redundant += k;
            continue;
        }

        /* Find the first buffered segment that ends after cur. Offsets are
         * taken from next_seq: every buffered byte lies within MAX_AHEAD. */
        guint32 cur_off = cur - s->next_seq;
        OtsTcpSegment *tail = list_tail(s);
        if (tail && tail->seq + tail->len - s->next_seq <= cur_off)
            b = NULL;
        while (b && b->seq + b->len - s->next_seq <= cur_off)
            b = b->next;

        if (b && b->seq - s->next_seq <= cur_off) {
            /* Overlaps a buffered segment: the first copy wins. */
            guint32 in_b = cur - b->seq;
            guint32 k = MIN(rem, b->len - in_b);
            stats->overlap_conflicts += count_differences(p, b->data + in_b, k);
            p += k;
            cur += k;
            rem -= k;
            redundant += k;
            if (b->seq == s->next_seq) {
                /* It was waiting for exactly the bytes just delivered. */
                deliver_head(s, sink, user, stats);
                b = s->ooo;
            }
            continue;
        }

        guint32 n = b ? MIN(rem, b->seq - cur) : rem;
        if (cur == s->next_seq) {
            emit_data(s, p, n, sink, user, stats);
            p += n;
            cur += n;
            rem -= n;
            continue;
        }

        if ((guint64)s->ooo_bytes + n + SEG_OVERHEAD <= max_ooo_bytes) {
            list_insert_before(s, b, segment_new(cur, p, n));
            s->ooo_bytes += n + SEG_OVERHEAD;
            buffered = TRUE;
            p += n;
            cur += n;
            rem -= n;
            continue;
        }

        /* Over the bound: give up on the earliest hole. */
        if (b == s->ooo) {
            /* This piece comes before anything buffered: skip to it. */
            emit_gap(cur - s->next_seq, sink, user, stats);
            s->next_seq = cur;
        } else {
            /* Skip to the first buffered segment and deliver the contiguous
             * run; it ends before this piece, so b stays valid. */
            emit_gap(s->ooo->seq - s->next_seq, sink, user, stats);
            s->next_seq = s->ooo->seq;
            drain(s, sink, user, stats);
        }
    }
    drain(s, sink, user, stats);

    if (buffered)
        stats->ooo_segments++;
    if (redundant > 0 && redundant == len)
        stats->retransmissions++;
    else if (redundant > 0)
        stats->overlaps++;
}

/* Records a FIN at @fin_seq (the sequence number it occupies). */
static void
add_fin(OtsTcpStream *s, guint32 fin_seq)
{
    if (s->fin_seen)
        return;
    gint32 off = seq_diff(fin_seq, s->next_seq);
    if (off < 0 || (guint32)off >= MAX_AHEAD)
        return; /* an old FIN, or an impossible one */
    if (off == 0) {
        consume_fin(s);
        return;
    }
    OtsTcpSegment *tail = list_tail(s);
    if (tail && tail->fin)
        return; /* the first FIN wins */

    /* Drop what is buffered at or beyond the FIN. */
    while ((tail = list_tail(s)) != NULL && seq_diff(tail->seq, fin_seq) >= 0) {
        list_remove(s, tail);
        s->ooo_bytes -= seg_charge(tail);
        g_free(tail);
    }
    if (tail && seq_diff(tail->seq + tail->len, fin_seq) > 0) {
        guint32 keep = fin_seq - tail->seq;
        s->ooo_bytes -= tail->len - keep;
        tail->len = keep;
    }
    if (tail && tail->seq + tail->len == fin_seq) {
        tail->fin = TRUE;
    } else {
        OtsTcpSegment *marker = segment_new(fin_seq, NULL, 0);
        marker->fin = TRUE;
        list_insert_before(s, NULL, marker);
    }
}

/**
 * ots_tcp_stream_add:
 * @s: the stream of the segment's direction
 * @seq: the segment's sequence number
 * @flags: OTS_TCP_* flags
 * @payload: (nullable) (array length=len): the payload, borrowed for the call
 * @len: payload length
 * @max_ooo_bytes: bound on buffered out-of-order data, each segment charged
 *   its length plus a fixed bookkeeping cost
 * @sink: (nullable): receives in-order data and gaps
 * @user: passed to @sink
 * @stats: (nullable): counters to update
 *
 * Feeds one segment. The sink must not call back into @s.
 */
void
ots_tcp_stream_add(OtsTcpStream *s, guint32 seq, guint8 flags, const guint8 *payload, guint32 len,
                   guint32 max_ooo_bytes, const OtsTcpSink *sink, gpointer user, OtsTcpStats *stats)
{
    OtsTcpStats scratch = {0};

    g_return_if_fail(s != NULL);
    if (stats == NULL)
        stats = &scratch;
    if (payload == NULL)
        len = 0;
    if (len > 0)
        stats->segments++;

    /* SYN occupies one sequence number before the data. */
    guint32 data_seq = seq;
    if (flags & OTS_TCP_SYN) {
        data_seq = seq + 1;
        s->syn_seen = TRUE;
    }
    if (!s->started) {
        s->started = TRUE;
        s->next_seq = data_seq;
        if (!(flags & OTS_TCP_SYN)) {
            stats->midstream++;
            emit_gap(0, sink, user, stats);
        }
    }

    if (len > 0)
        add_data(s, data_seq, payload, len, max_ooo_bytes, sink, user, stats);
    if (flags & OTS_TCP_FIN) {
        add_fin(s, data_seq + len);
        drain(s, sink, user, stats);
    }
}

/**
 * ots_tcp_stream_flush:
 * @s: a stream
 * @sink: (nullable): receives the data and gaps
 * @user: passed to @sink
 * @stats: (nullable): counters to update
 *
 * Delivers everything buffered, with a gap before each hole.
 */
void
ots_tcp_stream_flush(OtsTcpStream *s, const OtsTcpSink *sink, gpointer user, OtsTcpStats *stats)
{
    OtsTcpStats scratch = {0};

    g_return_if_fail(s != NULL);
    if (stats == NULL)
        stats = &scratch;
    while (s->ooo) {
        if (s->ooo->seq != s->next_seq) {
            emit_gap(s->ooo->seq - s->next_seq, sink, user, stats);
            s->next_seq = s->ooo->seq;
        }
        drain(s, sink, user, stats);
    }
}
