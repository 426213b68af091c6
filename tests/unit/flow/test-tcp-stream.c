/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/flow/tcp-stream.c. */

#include <string.h>

#include "core/decode/decode.h"
#include "core/flow/tcp-stream.h"

#include <CUnit/CUnit.h>

/* Records what the stream delivers: the bytes, an event log ("D5 G0 D3"),
 * and, when a reference message is set, checks every delivered byte against
 * it at the position implied by the previous data and gaps. */
typedef struct {
    GByteArray *bytes;
    GString *log;
    const guint8 *ref;
    gsize ref_len;
    guint64 pos;
    guint mismatches;
} Rec;

static void
rec_data(gpointer user, const guint8 *data, gsize len)
{
    Rec *r = user;
    g_byte_array_append(r->bytes, data, (guint)len);
    g_string_append_printf(r->log, "D%zu ", len);
    if (r->ref) {
        if (r->pos + len > r->ref_len || memcmp(r->ref + r->pos, data, len) != 0)
            r->mismatches++;
    }
    r->pos += len;
}

static void
rec_gap(gpointer user, guint32 len)
{
    Rec *r = user;
    g_string_append_printf(r->log, "G%u ", len);
    r->pos += len;
}

static const OtsTcpSink rec_sink = {rec_data, rec_gap};

static void
rec_init(Rec *r)
{
    memset(r, 0, sizeof(*r));
    r->bytes = g_byte_array_new();
    r->log = g_string_new(NULL);
}

static void
rec_reset(Rec *r)
{
    g_byte_array_set_size(r->bytes, 0);
    g_string_truncate(r->log, 0);
    r->pos = 0;
    r->mismatches = 0;
}

static void
rec_free(Rec *r)
{
    g_byte_array_unref(r->bytes);
    g_string_free(r->log, TRUE);
}

static gboolean
rec_equals(const Rec *r, const void *data, gsize len)
{
    return r->bytes->len == len && memcmp(r->bytes->data, data, len) == 0;
}

#define BIG 1000000u

/* Feeds @len bytes of @msg starting at message offset @off, message offset 0
 * being sequence number @isn + 1. */
static void
feed(OtsTcpStream *s, guint32 isn, const guint8 *msg, guint32 off, guint32 len, guint8 flags,
     guint32 max, Rec *r, OtsTcpStats *st)
{
    ots_tcp_stream_add(s, isn + 1 + off, flags | OTS_TCP_ACK, msg + off, len, max, &rec_sink, r,
                       st);
}

static void
test_in_order(void)
{
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    ots_tcp_stream_init(&s);

    ots_tcp_stream_add(&s, 1000, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    CU_ASSERT_TRUE(s.started);
    CU_ASSERT_TRUE(s.syn_seen);
    CU_ASSERT_EQUAL(s.next_seq, 1001);
    ots_tcp_stream_add(&s, 1001, OTS_TCP_ACK, (const guint8 *)"hello", 5, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 1006, OTS_TCP_ACK | OTS_TCP_PSH, (const guint8 *)" world", 6, BIG,
                       &rec_sink, &r, &st);
    CU_ASSERT_TRUE(rec_equals(&r, "hello world", 11));
    CU_ASSERT_STRING_EQUAL(r.log->str, "D5 D6 ");
    CU_ASSERT_EQUAL(s.next_seq, 1012);
    CU_ASSERT_EQUAL(st.segments, 2);
    CU_ASSERT_EQUAL(st.bytes_in_order, 11);
    CU_ASSERT_EQUAL(st.gaps, 0);
    CU_ASSERT_EQUAL(st.midstream, 0);
    CU_ASSERT_EQUAL(st.ooo_segments, 0);
    CU_ASSERT_PTR_NULL(s.ooo);

    /* A pure ACK changes nothing. */
    ots_tcp_stream_add(&s, 1012, OTS_TCP_ACK, NULL, 0, BIG, &rec_sink, &r, &st);
    CU_ASSERT_EQUAL(s.next_seq, 1012);
    CU_ASSERT_EQUAL(st.segments, 2);

    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

/* Every permutation of 5 segments gives the message back, without gaps. */
static gboolean
next_permutation(guint *a, guint n)
{
    gint i = (gint)n - 2;
    while (i >= 0 && a[i] >= a[i + 1])
        i--;
    if (i < 0)
        return FALSE;
    gint j = (gint)n - 1;
    while (a[j] <= a[i])
        j--;
    guint tmp = a[i];
    a[i] = a[j];
    a[j] = tmp;
    for (guint lo = (guint)i + 1, hi = n - 1; lo < hi; lo++, hi--) {
        tmp = a[lo];
        a[lo] = a[hi];
        a[hi] = tmp;
    }
    return TRUE;
}

static void
test_out_of_order_permutations(void)
{
    const guint8 *msg = (const guint8 *)"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
    guint order[5] = {0, 1, 2, 3, 4};
    guint count = 0;
    Rec r;
    rec_init(&r);
    do {
        OtsTcpStream s;
        OtsTcpStats st = {0};
        ots_tcp_stream_init(&s);
        rec_reset(&r);
        ots_tcp_stream_add(&s, 77, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
        guint expect_ooo = 0;
        guint delivered_upto = 0; /* segments delivered so far */
        gboolean have[5] = {FALSE};
        for (guint i = 0; i < 5; i++) {
            guint k = order[i];
            have[k] = TRUE;
            if (k != delivered_upto)
                expect_ooo++;
            while (delivered_upto < 5 && have[delivered_upto])
                delivered_upto++;
            feed(&s, 77, msg, k * 6, 6, 0, BIG, &r, &st);
            CU_ASSERT_EQUAL(r.bytes->len, delivered_upto * 6);
        }
        CU_ASSERT_TRUE(rec_equals(&r, msg, 30));
        CU_ASSERT_EQUAL(st.gaps, 0);
        CU_ASSERT_EQUAL(st.retransmissions, 0);
        CU_ASSERT_EQUAL(st.ooo_segments, expect_ooo);
        CU_ASSERT_EQUAL(st.bytes_in_order, 30);
        CU_ASSERT_EQUAL(s.next_seq, 77 + 1 + 30);
        CU_ASSERT_PTR_NULL(s.ooo);
        CU_ASSERT_EQUAL(s.ooo_bytes, 0);
        ots_tcp_stream_clear(&s);
        count++;
    } while (next_permutation(order, 5));
    CU_ASSERT_EQUAL(count, 120);
    rec_free(&r);
}

static void
test_retransmission(void)
{
    const guint8 *msg = (const guint8 *)"0123456789abcdefghij";
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 500, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    feed(&s, 500, msg, 0, 10, 0, BIG, &r, &st);
    feed(&s, 500, msg, 0, 10, 0, BIG, &r, &st); /* full retransmission */
    feed(&s, 500, msg, 3, 4, 0, BIG, &r, &st);  /* inside delivered data */
    CU_ASSERT_EQUAL(st.retransmissions, 2);
    CU_ASSERT_EQUAL(st.overlaps, 0);
    CU_ASSERT_TRUE(rec_equals(&r, msg, 10));

    /* Partial overlap with delivered data: the front is trimmed. */
    feed(&s, 500, msg, 5, 15, 0, BIG, &r, &st);
    CU_ASSERT_EQUAL(st.overlaps, 1);
    CU_ASSERT_EQUAL(st.retransmissions, 2);
    CU_ASSERT_TRUE(rec_equals(&r, msg, 20));
    CU_ASSERT_EQUAL(st.bytes_in_order, 20);
    CU_ASSERT_EQUAL(st.segments, 4);

    /* A retransmitted SYN is harmless. */
    ots_tcp_stream_add(&s, 500, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    CU_ASSERT_EQUAL(s.next_seq, 500 + 1 + 20);
    CU_ASSERT_TRUE(rec_equals(&r, msg, 20));

    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_overlap_buffered_same(void)
{
    const guint8 *msg = (const guint8 *)"abcdefghijklmnopqrstuvwxyz";
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 9, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);

    feed(&s, 9, msg, 10, 5, 0, BIG, &r, &st); /* [10,15) buffered */
    feed(&s, 9, msg, 18, 4, 0, BIG, &r, &st); /* [18,22) buffered */
    feed(&s, 9, msg, 8, 16, 0, BIG, &r, &st); /* [8,24) spans both, same bytes */
    CU_ASSERT_EQUAL(r.bytes->len, 0);
    CU_ASSERT_EQUAL(st.overlap_conflicts, 0);
    CU_ASSERT_EQUAL(st.overlaps, 1);
    feed(&s, 9, msg, 12, 2, 0, BIG, &r, &st); /* fully buffered already */
    CU_ASSERT_EQUAL(st.retransmissions, 1);
    feed(&s, 9, msg, 0, 8, 0, BIG, &r, &st); /* fills the hole */
    CU_ASSERT_TRUE(rec_equals(&r, msg, 24));
    CU_ASSERT_PTR_NULL(s.ooo);
    CU_ASSERT_EQUAL(s.ooo_bytes, 0);
    feed(&s, 9, msg, 24, 2, 0, BIG, &r, &st);
    CU_ASSERT_TRUE(rec_equals(&r, msg, 26));
    CU_ASSERT_EQUAL(st.overlap_conflicts, 0);

    /* An in-order segment that runs over buffered data delivers the
     * buffered copy and compares the overlap. */
    ots_tcp_stream_clear(&s);
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    memset(&st, 0, sizeof(st));
    ots_tcp_stream_add(&s, 9, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    feed(&s, 9, msg, 5, 5, 0, BIG, &r, &st);
    feed(&s, 9, msg, 12, 3, 0, BIG, &r, &st);
    feed(&s, 9, msg, 0, 20, 0, BIG, &r, &st);
    CU_ASSERT_TRUE(rec_equals(&r, msg, 20));
    CU_ASSERT_EQUAL(st.overlap_conflicts, 0);
    CU_ASSERT_EQUAL(st.overlaps, 1);
    CU_ASSERT_PTR_NULL(s.ooo);

    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_overlap_conflict(void)
{
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 0, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    /* First copy "AAAAAAAAAA" at [11,21), then "xxABxxABxxCC" at [9,21):
     * overlapping bytes [11,21): "ABxxABxxCC" vs "AAAAAAAAAA" -> 8 differ. */
    ots_tcp_stream_add(&s, 11, OTS_TCP_ACK, (const guint8 *)"AAAAAAAAAA", 10, BIG, &rec_sink, &r,
                       &st);
    ots_tcp_stream_add(&s, 9, OTS_TCP_ACK, (const guint8 *)"xxABxxABxxCC", 12, BIG, &rec_sink, &r,
                       &st);
    CU_ASSERT_EQUAL(st.overlap_conflicts, 8);
    CU_ASSERT_EQUAL(st.overlaps, 1);
    ots_tcp_stream_add(&s, 1, OTS_TCP_ACK, (const guint8 *)"01234567", 8, BIG, &rec_sink, &r, &st);
    CU_ASSERT_TRUE(rec_equals(&r, "01234567xxAAAAAAAAAA", 20));
    CU_ASSERT_EQUAL(s.next_seq, 21);

    /* Conflict against a buffered segment while delivering in order. */
    ots_tcp_stream_add(&s, 25, OTS_TCP_ACK, (const guint8 *)"QQQQ", 4, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 21, OTS_TCP_ACK, (const guint8 *)"rstuvwxy", 8, BIG, &rec_sink, &r, &st);
    CU_ASSERT_EQUAL(st.overlap_conflicts, 12);
    CU_ASSERT_TRUE(rec_equals(&r, "01234567xxAAAAAAAAAArstuQQQQ", 28));
    CU_ASSERT_EQUAL(s.next_seq, 29);
    CU_ASSERT_PTR_NULL(s.ooo);

    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_gap_by_bound(void)
{
    guint8 msg[6000];
    for (guint i = 0; i < sizeof(msg); i++)
        msg[i] = (guint8)(i * 7 + i / 251);
    const guint32 max = 2500;
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    r.ref = msg;
    r.ref_len = sizeof(msg);
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 4000, OTS_TCP_SYN, NULL, 0, max, &rec_sink, &r, &st);

    /* [0,1000) is lost. Two 1000-byte segments fit in 2500, three do not. */
    feed(&s, 4000, msg, 1000, 1000, 0, max, &r, &st);
    feed(&s, 4000, msg, 2000, 1000, 0, max, &r, &st);
    CU_ASSERT_EQUAL(r.bytes->len, 0);
    CU_ASSERT_EQUAL(st.ooo_segments, 2);
    CU_ASSERT_TRUE(s.ooo_bytes >= 2000 && s.ooo_bytes <= max);
    feed(&s, 4000, msg, 4000, 1000, 0, max, &r, &st); /* [3000,4000) missing too */
    CU_ASSERT_STRING_EQUAL(r.log->str, "G1000 D1000 D1000 ");
    CU_ASSERT_EQUAL(st.gaps, 1);
    CU_ASSERT_EQUAL(st.gap_bytes, 1000);
    CU_ASSERT_EQUAL(r.mismatches, 0);
    CU_ASSERT_EQUAL(s.next_seq, 4000 + 1 + 3000);
    /* The third segment is buffered now that there is room. */
    CU_ASSERT_PTR_NOT_NULL(s.ooo);
    CU_ASSERT_EQUAL(st.ooo_segments, 3);
    CU_ASSERT_TRUE(s.ooo_bytes >= 1000 && s.ooo_bytes <= max);

    /* A segment before the first buffered one that does not fit: the stream
     * skips to it (the earliest data it has). [5000,6000) is buffered next
     * to [4000,5000) first. */
    feed(&s, 4000, msg, 5000, 1000, 0, max, &r, &st);
    CU_ASSERT_EQUAL(r.bytes->len, 2000);
    feed(&s, 4000, msg, 3500, 500, 0, max, &r, &st);
    CU_ASSERT_STRING_EQUAL(r.log->str, "G1000 D1000 D1000 G500 D500 D1000 D1000 ");
    CU_ASSERT_EQUAL(st.gap_bytes, 1500);
    CU_ASSERT_EQUAL(r.mismatches, 0);
    CU_ASSERT_EQUAL(r.pos, 6000);
    CU_ASSERT_PTR_NULL(s.ooo);
    CU_ASSERT_EQUAL(s.ooo_bytes, 0);
    ots_tcp_stream_clear(&s);

    /* A segment that alone exceeds the bound: skip straight to it. */
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    memset(&st, 0, sizeof(st));
    ots_tcp_stream_add(&s, 0, OTS_TCP_SYN, NULL, 0, 500, &rec_sink, &r, &st);
    feed(&s, 0, msg, 123, 1000, 0, 500, &r, &st);
    CU_ASSERT_STRING_EQUAL(r.log->str, "G123 D1000 ");
    CU_ASSERT_EQUAL(r.mismatches, 0);
    CU_ASSERT_EQUAL(st.gap_bytes, 123);
    CU_ASSERT_EQUAL(st.ooo_segments, 0);
    CU_ASSERT_PTR_NULL(s.ooo);

    /* max_ooo_bytes 0: nothing is ever buffered. */
    feed(&s, 0, msg, 1200, 10, 0, 0, &r, &st);
    CU_ASSERT_STRING_EQUAL(r.log->str, "G123 D1000 G77 D10 ");
    CU_ASSERT_EQUAL(r.mismatches, 0);
    CU_ASSERT_PTR_NULL(s.ooo);
    feed(&s, 0, msg, 1150, 60, 0, 0, &r, &st); /* late: only the delivered part overlaps */
    CU_ASSERT_EQUAL(st.retransmissions, 1);
    CU_ASSERT_EQUAL(r.bytes->len, 1010);

    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_midstream(void)
{
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 123456, OTS_TCP_ACK | OTS_TCP_PSH, (const guint8 *)"abc", 3, BIG,
                       &rec_sink, &r, &st);
    CU_ASSERT_TRUE(s.started);
    CU_ASSERT_FALSE(s.syn_seen);
    CU_ASSERT_STRING_EQUAL(r.log->str, "G0 D3 ");
    CU_ASSERT_EQUAL(st.midstream, 1);
    CU_ASSERT_EQUAL(st.gaps, 1);
    CU_ASSERT_EQUAL(st.gap_bytes, 0);
    CU_ASSERT_EQUAL(s.next_seq, 123459);
    ots_tcp_stream_add(&s, 123459, OTS_TCP_ACK, (const guint8 *)"de", 2, BIG, &rec_sink, &r, &st);
    CU_ASSERT_TRUE(rec_equals(&r, "abcde", 5));
    CU_ASSERT_EQUAL(st.midstream, 1);
    ots_tcp_stream_clear(&s);

    /* Picked up on a pure ACK: the stream starts at its seq. */
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    ots_tcp_stream_add(&s, 42, OTS_TCP_ACK, NULL, 0, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 42, OTS_TCP_ACK, (const guint8 *)"z", 1, BIG, &rec_sink, &r, &st);
    CU_ASSERT_STRING_EQUAL(r.log->str, "G0 D1 ");
    CU_ASSERT_EQUAL(st.midstream, 2);
    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_syn_fin(void)
{
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);

    /* SYN with payload: the data starts after the SYN's sequence number. */
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 100, OTS_TCP_SYN, (const guint8 *)"xy", 2, BIG, &rec_sink, &r, &st);
    CU_ASSERT_TRUE(rec_equals(&r, "xy", 2));
    CU_ASSERT_EQUAL(s.next_seq, 103);
    CU_ASSERT_EQUAL(st.midstream, 0);
    CU_ASSERT_EQUAL(st.gaps, 0);
    ots_tcp_stream_add(&s, 103, OTS_TCP_ACK, (const guint8 *)"abcde", 5, BIG, &rec_sink, &r, &st);
    /* FIN with data: consumes one more number. */
    ots_tcp_stream_add(&s, 108, OTS_TCP_ACK | OTS_TCP_FIN, (const guint8 *)"!", 1, BIG, &rec_sink,
                       &r, &st);
    CU_ASSERT_TRUE(s.fin_seen);
    CU_ASSERT_EQUAL(s.next_seq, 110);
    CU_ASSERT_TRUE(rec_equals(&r, "xyabcde!", 8));
    /* Nothing is delivered after the FIN; a retransmitted FIN is harmless. */
    ots_tcp_stream_add(&s, 110, OTS_TCP_ACK, (const guint8 *)"late", 4, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 108, OTS_TCP_ACK | OTS_TCP_FIN, (const guint8 *)"!", 1, BIG, &rec_sink,
                       &r, &st);
    CU_ASSERT_EQUAL(s.next_seq, 110);
    CU_ASSERT_TRUE(rec_equals(&r, "xyabcde!", 8));
    CU_ASSERT_PTR_NULL(s.ooo);
    ots_tcp_stream_clear(&s);

    /* FIN arriving before the data that precedes it. */
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    ots_tcp_stream_add(&s, 0xfffffff0u, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 0xfffffff6u, OTS_TCP_ACK | OTS_TCP_FIN, (const guint8 *)"6789", 4, BIG,
                       &rec_sink, &r, &st);
    CU_ASSERT_FALSE(s.fin_seen);
    /* Data claimed after the FIN is never delivered. */
    ots_tcp_stream_add(&s, 0xfffffffau, OTS_TCP_ACK, (const guint8 *)"XXXX", 4, BIG, &rec_sink, &r,
                       &st);
    ots_tcp_stream_add(&s, 0xfffffff1u, OTS_TCP_ACK, (const guint8 *)"12345", 5, BIG, &rec_sink, &r,
                       &st);
    CU_ASSERT_TRUE(s.fin_seen);
    CU_ASSERT_TRUE(rec_equals(&r, "123456789", 9));
    CU_ASSERT_EQUAL(s.next_seq, 0xfffffffbu);
    CU_ASSERT_PTR_NULL(s.ooo);
    ots_tcp_stream_clear(&s);

    /* A bare FIN out of order: it is kept until the data before it. */
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    ots_tcp_stream_add(&s, 10, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 14, OTS_TCP_ACK | OTS_TCP_FIN, NULL, 0, BIG, &rec_sink, &r, &st);
    CU_ASSERT_FALSE(s.fin_seen);
    CU_ASSERT_PTR_NOT_NULL(s.ooo);
    /* Data that runs over the FIN is cut at it. */
    ots_tcp_stream_add(&s, 11, OTS_TCP_ACK, (const guint8 *)"abcdef", 6, BIG, &rec_sink, &r, &st);
    CU_ASSERT_TRUE(s.fin_seen);
    CU_ASSERT_TRUE(rec_equals(&r, "abc", 3));
    CU_ASSERT_EQUAL(s.next_seq, 15);
    CU_ASSERT_PTR_NULL(s.ooo);
    ots_tcp_stream_clear(&s);

    /* SYN+FIN together. */
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    ots_tcp_stream_add(&s, 7, OTS_TCP_SYN | OTS_TCP_FIN, (const guint8 *)"q", 1, BIG, &rec_sink, &r,
                       &st);
    CU_ASSERT_TRUE(s.fin_seen);
    CU_ASSERT_EQUAL(s.next_seq, 10);
    CU_ASSERT_TRUE(rec_equals(&r, "q", 1));
    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_wraparound(void)
{
    guint8 msg[64];
    for (guint i = 0; i < sizeof(msg); i++)
        msg[i] = (guint8)(0x30 + i);
    Rec r;
    rec_init(&r);
    /* The ISN puts the message across 2^32 in every position. */
    for (guint32 back = 0; back < 70; back += 3) {
        guint32 isn = (guint32)(0u - back);
        OtsTcpStream s;
        OtsTcpStats st = {0};
        ots_tcp_stream_init(&s);
        rec_reset(&r);
        ots_tcp_stream_add(&s, isn, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
        /* Out of order, with a duplicate and an overlap. */
        feed(&s, isn, msg, 40, 24, 0, BIG, &r, &st);
        feed(&s, isn, msg, 16, 16, 0, BIG, &r, &st);
        feed(&s, isn, msg, 16, 16, 0, BIG, &r, &st);
        feed(&s, isn, msg, 28, 14, 0, BIG, &r, &st);
        CU_ASSERT_EQUAL(r.bytes->len, 0);
        feed(&s, isn, msg, 0, 20, 0, BIG, &r, &st);
        CU_ASSERT_TRUE(rec_equals(&r, msg, sizeof(msg)));
        CU_ASSERT_EQUAL(s.next_seq, isn + 1 + (guint32)sizeof(msg));
        CU_ASSERT_EQUAL(st.retransmissions, 1);
        CU_ASSERT_EQUAL(st.overlap_conflicts, 0);
        CU_ASSERT_PTR_NULL(s.ooo);
        /* Old data from before the wrap is still old. */
        feed(&s, isn, msg, 0, 8, 0, BIG, &r, &st);
        CU_ASSERT_EQUAL(st.retransmissions, 2);
        CU_ASSERT_EQUAL(r.bytes->len, sizeof(msg));
        ots_tcp_stream_clear(&s);
    }

    /* Flush with a hole across the wrap: exact gap length. */
    OtsTcpStream s;
    OtsTcpStats st = {0};
    ots_tcp_stream_init(&s);
    rec_reset(&r);
    ots_tcp_stream_add(&s, 0xfffffff0u, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_add(&s, 0x00000010u, OTS_TCP_ACK, msg, 4, BIG, &rec_sink, &r, &st);
    ots_tcp_stream_flush(&s, &rec_sink, &r, &st);
    CU_ASSERT_STRING_EQUAL(r.log->str, "G31 D4 ");
    CU_ASSERT_EQUAL(s.next_seq, 0x14u);
    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

static void
test_flush_with_holes(void)
{
    guint8 msg[100];
    for (guint i = 0; i < sizeof(msg); i++)
        msg[i] = (guint8)(i ^ 0x5a);
    OtsTcpStream s;
    OtsTcpStats st = {0};
    Rec r;
    rec_init(&r);
    r.ref = msg;
    r.ref_len = sizeof(msg);
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 1, OTS_TCP_SYN, NULL, 0, BIG, &rec_sink, &r, &st);
    feed(&s, 1, msg, 0, 10, 0, BIG, &r, &st);
    feed(&s, 1, msg, 60, 10, 0, BIG, &r, &st);
    feed(&s, 1, msg, 20, 5, 0, BIG, &r, &st);
    feed(&s, 1, msg, 25, 5, 0, BIG, &r, &st);
    feed(&s, 1, msg, 90, 10, OTS_TCP_FIN, BIG, &r, &st);
    CU_ASSERT_EQUAL(r.bytes->len, 10);
    CU_ASSERT_FALSE(s.fin_seen);
    ots_tcp_stream_flush(&s, &rec_sink, &r, &st);
    CU_ASSERT_STRING_EQUAL(r.log->str, "D10 G10 D5 D5 G30 D10 G20 D10 ");
    CU_ASSERT_EQUAL(r.mismatches, 0);
    CU_ASSERT_EQUAL(st.gaps, 3);
    CU_ASSERT_EQUAL(st.gap_bytes, 60);
    CU_ASSERT_EQUAL(st.bytes_in_order, 40);
    CU_ASSERT_TRUE(s.fin_seen);
    CU_ASSERT_EQUAL(s.next_seq, 1 + 1 + 100 + 1);
    CU_ASSERT_PTR_NULL(s.ooo);
    CU_ASSERT_EQUAL(s.ooo_bytes, 0);

    /* Flushing an empty or unstarted stream does nothing. */
    rec_reset(&r);
    ots_tcp_stream_flush(&s, &rec_sink, &r, &st);
    OtsTcpStream fresh;
    ots_tcp_stream_init(&fresh);
    ots_tcp_stream_flush(&fresh, &rec_sink, &r, NULL);
    CU_ASSERT_EQUAL(r.log->len, 0);
    ots_tcp_stream_clear(&s);
    rec_free(&r);
}

/* Random segmentation with reordering, duplicates and overlaps of one
 * message; with a large bound the message comes back whole, with a small one
 * every delivered byte sits at its right place (checked through the gap
 * lengths) and the buffer never exceeds the bound. */
static void
test_random(void)
{
    GRand *rand = g_rand_new_with_seed(0x0715);
    guint8 msg[4096];
    for (guint i = 0; i < sizeof(msg); i++)
        msg[i] = (guint8)g_rand_int(rand);
    Rec r;
    rec_init(&r);
    r.ref = msg;
    r.ref_len = sizeof(msg);

    for (guint round = 0; round < 300; round++) {
        guint32 max = (round % 3 == 0) ? BIG : (guint32)g_rand_int_range(rand, 0, 3000);
        guint32 isn = g_rand_int(rand);
        if (round % 10 == 1)
            isn = (guint32)(0u - (guint32)g_rand_int_range(rand, 1, 5000));
        OtsTcpStream s;
        OtsTcpStats st = {0};
        ots_tcp_stream_init(&s);
        rec_reset(&r);
        ots_tcp_stream_add(&s, isn, OTS_TCP_SYN, NULL, 0, max, &rec_sink, &r, &st);

        /* Segments covering the message, then shuffled, some repeated. */
        GArray *segs = g_array_new(FALSE, FALSE, sizeof(guint32) * 2);
        guint32 off = 0;
        while (off < sizeof(msg)) {
            guint32 len = (guint32)g_rand_int_range(rand, 1, 400);
            if (off + len > sizeof(msg))
                len = (guint32)sizeof(msg) - off;
            guint32 e[2] = {off, len};
            g_array_append_val(segs, e);
            off += len;
        }
        guint n = segs->len;
        for (guint i = 0; i < n / 2; i++) {
            guint32 *src = &g_array_index(segs, guint32, 2 * g_rand_int_range(rand, 0, (gint32)n));
            guint32 a = src[0] > 50 ? src[0] - 50 : 0;
            guint32 e[2] = {a, MIN(src[1] + 100, (guint32)sizeof(msg) - a)};
            g_array_append_val(segs, e);
        }
        for (guint i = segs->len - 1; i > 0; i--) {
            guint j = (guint)g_rand_int_range(rand, 0, (gint32)i + 1);
            guint32 *x = &g_array_index(segs, guint32, 2 * i);
            guint32 *y = &g_array_index(segs, guint32, 2 * j);
            guint32 t0 = x[0], t1 = x[1];
            x[0] = y[0];
            x[1] = y[1];
            y[0] = t0;
            y[1] = t1;
        }
        for (guint i = 0; i < segs->len; i++) {
            guint32 *e = &g_array_index(segs, guint32, 2 * i);
            feed(&s, isn, msg, e[0], e[1], 0, max, &r, &st);
            CU_ASSERT_TRUE(s.ooo_bytes <= max);
        }
        ots_tcp_stream_flush(&s, &rec_sink, &r, &st);
        CU_ASSERT_EQUAL(r.mismatches, 0);
        CU_ASSERT_EQUAL(r.pos, sizeof(msg));
        CU_ASSERT_EQUAL(st.bytes_in_order + st.gap_bytes, sizeof(msg));
        CU_ASSERT_EQUAL(st.bytes_in_order, r.bytes->len);
        if (max == BIG) {
            CU_ASSERT_TRUE(rec_equals(&r, msg, sizeof(msg)));
            CU_ASSERT_EQUAL(st.gaps, 0);
        }
        CU_ASSERT_EQUAL(st.overlap_conflicts, 0);
        CU_ASSERT_EQUAL(s.next_seq, isn + 1 + (guint32)sizeof(msg));
        CU_ASSERT_PTR_NULL(s.ooo);
        g_array_unref(segs);
        ots_tcp_stream_clear(&s);
    }
    rec_free(&r);
    g_rand_free(rand);
}

/* Clear frees what is buffered; NULL sink and stats are accepted. */
static void
test_clear_and_null_sink(void)
{
    OtsTcpStream s;
    ots_tcp_stream_init(&s);
    ots_tcp_stream_add(&s, 1, OTS_TCP_SYN, NULL, 0, BIG, NULL, NULL, NULL);
    ots_tcp_stream_add(&s, 50, OTS_TCP_ACK, (const guint8 *)"abc", 3, BIG, NULL, NULL, NULL);
    ots_tcp_stream_add(&s, 90, OTS_TCP_ACK | OTS_TCP_FIN, (const guint8 *)"def", 3, BIG, NULL, NULL,
                       NULL);
    CU_ASSERT_PTR_NOT_NULL(s.ooo);
    CU_ASSERT_TRUE(s.ooo_bytes > 0);
    ots_tcp_stream_clear(&s);
    CU_ASSERT_PTR_NULL(s.ooo);
    CU_ASSERT_EQUAL(s.ooo_bytes, 0);
    /* Data absurdly far ahead (beyond any TCP window) is not buffered. */
    ots_tcp_stream_add(&s, 2 + 0x50000000u, OTS_TCP_ACK, (const guint8 *)"abc", 3, BIG, NULL, NULL,
                       NULL);
    CU_ASSERT_PTR_NULL(s.ooo);
    ots_tcp_stream_clear(&s);
}

static CU_TestInfo tcp_stream_tests[] = {
    {"in order", test_in_order},
    {"out of order, all permutations", test_out_of_order_permutations},
    {"retransmission and overlap with delivered data", test_retransmission},
    {"overlap with buffered data, same bytes", test_overlap_buffered_same},
    {"overlap with buffered data, conflicting bytes", test_overlap_conflict},
    {"gap when the bound overflows", test_gap_by_bound},
    {"mid-stream start", test_midstream},
    {"SYN and FIN accounting", test_syn_fin},
    {"sequence wraparound", test_wraparound},
    {"flush with holes", test_flush_with_holes},
    {"random segmentation", test_random},
    {"clear and NULL sink", test_clear_and_null_sink},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "tcp-stream", NULL, NULL, NULL, NULL, tcp_stream_tests                                     \
    }
#include "cunit-main.h"
