/* SPDX-License-Identifier: Apache-2.0 */
#include "core/event/event-writer.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *
str_of(const OtsBuf *b)
{
    return g_strndup((const char *)b->data, b->len);
}

static void
check_string(const char *in, gsize len, const char *expect)
{
    OtsBuf b = {0};
    ots_json_string(&b, in, len, FALSE);
    g_autofree char *s = str_of(&b);
    if (strcmp(s, expect) != 0)
        g_printerr("escaped %s, expected %s\n", s, expect);
    CU_ASSERT_STRING_EQUAL(s, expect);
    CU_ASSERT(g_utf8_validate(s, -1, NULL));
    ots_buf_clear(&b);
}

static void
test_escaping(void)
{
    check_string("plain", 5, "\"plain\"");
    check_string("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    check_string("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    check_string("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    check_string("a\0b", 3, "\"a\\u0000b\"");
    /* valid UTF-8 passes through */
    check_string("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80", 15,
                 "\"gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* invalid bytes become Latin-1 code points */
    check_string("M\xfcller", 6, "\"M\\u00fcller\"");
    check_string("\xc0\xaf", 2, "\"\\u00c0\\u00af\"");         /* overlong */
    check_string("\xed\xa0\x80", 3, "\"\\u00ed\\u00a0\\u0080\""); /* surrogate */
    check_string("\xe2\x82", 2, "\"\\u00e2\\u0082\"");         /* cut short */
    check_string("\xf4\x90\x80\x80", 4, "\"\\u00f4\\u0090\\u0080\\u0080\""); /* > U+10FFFF */
}

static void
test_stop_at_nul(void)
{
    OtsBuf b = {0};
    ots_json_string(&b, "abc\0def", 7, TRUE);
    g_autofree char *s = str_of(&b);
    CU_ASSERT_STRING_EQUAL(s, "\"abc\"");
    ots_buf_clear(&b);
}

static void
test_numbers(void)
{
    OtsBuf b = {0};
    ots_json_u64(&b, 0);
    ots_buf_putc(&b, ' ');
    ots_json_u64(&b, G_MAXUINT64);
    ots_buf_putc(&b, ' ');
    ots_json_i64(&b, G_MININT64);
    ots_buf_putc(&b, ' ');
    ots_json_i64(&b, -42);
    ots_buf_putc(&b, ' ');
    ots_json_double(&b, 0.5);
    ots_buf_putc(&b, ' ');
    ots_json_double(&b, 1.0 / 0.0);
    g_autofree char *s = str_of(&b);
    CU_ASSERT_STRING_EQUAL(s, "0 18446744073709551615 -9223372036854775808 -42 0.5 null");
    ots_buf_clear(&b);
}

static void
test_time(void)
{
    OtsBuf b = {0};
    OtsTimeCache tc = {0};
    ots_json_time(&b, G_GINT64_CONSTANT(1700000000123456), &tc);
    ots_buf_putc(&b, ' ');
    ots_json_time(&b, G_GINT64_CONSTANT(1700000000000001), &tc); /* cached second */
    ots_buf_putc(&b, ' ');
    ots_json_time(&b, 0, &tc);
    ots_buf_putc(&b, ' ');
    /* Each pair of microsecond digits, and a time before 1970. */
    ots_json_time(&b, G_GINT64_CONSTANT(1700000000999999), &tc);
    ots_buf_putc(&b, ' ');
    ots_json_time(&b, G_GINT64_CONSTANT(1700000000100990), &tc);
    ots_buf_putc(&b, ' ');
    ots_json_time(&b, -1, &tc);
    g_autofree char *s = str_of(&b);
    CU_ASSERT_STRING_EQUAL(s, "\"2023-11-14T22:13:20.123456Z\" \"2023-11-14T22:13:20.000001Z\" "
                              "\"1970-01-01T00:00:00.000000Z\" \"2023-11-14T22:13:20.999999Z\" "
                              "\"2023-11-14T22:13:20.100990Z\" \"1969-12-31T23:59:59.999999Z\"");
    ots_buf_clear(&b);
}

static void
test_hex(void)
{
    OtsBuf b = {0};
    static const guint8 bytes[] = {0x00, 0xab, 0xff, 0x10};
    ots_json_hex(&b, bytes, sizeof(bytes));
    g_autofree char *s = str_of(&b);
    CU_ASSERT_STRING_EQUAL(s, "\"00abff10\"");
    ots_buf_clear(&b);
}

typedef struct {
    GPtrArray *lines;
} Collect;

static void
collect_batch(OtsEventBatch *batch, gpointer user)
{
    Collect *c = user;
    gsize off = 0;
    const OtsEventRecord *rec;
    const char *body;
    OtsTimeCache tc = {0};
    guint64 seq = c->lines->len;
    while (ots_event_batch_next(batch, &off, &rec, &body)) {
        OtsBuf line = {0};
        ots_event_format_line(&line, rec, body, "\"s-1\"", ++seq, &tc);
        g_ptr_array_add(c->lines, g_strndup((const char *)line.data, line.len));
        ots_buf_clear(&line);
    }
    ots_event_batch_free(batch);
}

static void
test_builder(void)
{
    Collect c = {g_ptr_array_new_with_free_func(g_free)};
    OtsEventWriter w;
    ots_event_writer_init(&w, 1 << 20, collect_batch, &c);
    gint64 ts = G_GINT64_CONSTANT(1700000000000000);

    OtsEvent *e = ots_event_writer_begin(&w, OTS_EVENT_TRANSACTION, ts);
    ots_event_add_uint(e, "a", 1);
    ots_event_begin_object(e, "obj");
    ots_event_add_string(e, "s", "x\"y");
    ots_event_begin_array(e, "arr");
    ots_event_add_int(e, NULL, -1);
    ots_event_add_bool(e, NULL, TRUE);
    ots_event_begin_object(e, NULL);
    ots_event_add_null(e, "n");
    ots_event_end_object(e);
    ots_event_end_array(e);
    ots_event_end_object(e);
    ots_event_commit(e);

    /* an event left open is discarded by the next begin */
    e = ots_event_writer_begin(&w, OTS_EVENT_ASSET, ts);
    ots_event_add_uint(e, "lost", 1);
    e = ots_event_writer_begin(&w, OTS_EVENT_ALERT, ts);
    ots_event_begin_object(e, "open");
    ots_event_begin_array(e, "unclosed");
    ots_event_add_uint(e, NULL, 7);
    ots_event_commit(e); /* commit closes what is open */

    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 1);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_ASSET], 0);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_ALERT], 1);
    ots_event_writer_flush(&w);
    CU_ASSERT_EQUAL_FATAL(c.lines->len, 2);
    CU_ASSERT_STRING_EQUAL(c.lines->pdata[0],
                           "{\"ts\":\"2023-11-14T22:13:20.000000Z\",\"sensor_id\":\"s-1\",\"seq\":1,"
                           "\"type\":\"transaction\",\"a\":1,\"obj\":{\"s\":\"x\\\"y\",\"arr\":"
                           "[-1,true,{\"n\":null}]}}\n");
    CU_ASSERT_STRING_EQUAL(c.lines->pdata[1],
                           "{\"ts\":\"2023-11-14T22:13:20.000000Z\",\"sensor_id\":\"s-1\",\"seq\":2,"
                           "\"type\":\"alert\",\"open\":{\"unclosed\":[7]}}\n");
    ots_event_writer_clear(&w);
    g_ptr_array_unref(c.lines);
}

/* One event through the SDK's inline writers (literal keys; with GCC and
 * optimisation they write the bytes themselves) or through the functions
 * (parenthesised names: never the inline macros). */
static void
fill(OtsEventWriter *w, gboolean inline_path, const char *runtime_key, guint *n_pad)
{
    /* Short and plain, exactly 16 and 31 bytes, 32 and longer, an escape
     * after the first 16 bytes, a byte >= 0x80. */
    static const char *const runtime_values[] = {
        "", "x", "original_unicast_npdu", "0123456789abcdef", "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef0123456789",
        "0123456789abcdef01\"3", "caf\xc3\xa9", NULL};
    static const guint64 u[] = {0, 9, 10, 99, 100, 999, 1000, 65535, G_MAXUINT32, G_MAXUINT64};
    static const gint64 i[] = {0, -1, 1, -10, 4096, G_MININT64, G_MAXINT64};
    OtsEvent *e = ots_event_writer_begin(w, OTS_EVENT_TRANSACTION, 1);
    if (inline_path) {
        for (guint k = 0; k < G_N_ELEMENTS(u); k++)
            ots_event_add_uint(e, "u", u[k]);
        ots_event_begin_object(e, "obj");
        for (guint k = 0; k < G_N_ELEMENTS(i); k++)
            ots_event_add_int(e, "i", i[k]);
        ots_event_add_bool(e, "t", TRUE);
        ots_event_add_bool(e, "f", FALSE);
        ots_event_add_string(e, "s", "plain");
        ots_event_add_string(e, "esc", "a\"b\\c\n\x01\xff");
        ots_event_add_string(e, "nul", NULL);
        for (guint k = 0; runtime_values[k]; k++) /* not literals: scanned */
            ots_event_add_string(e, "rv", runtime_values[k]);
        ots_event_add_uint(e, "k\"q", 1); /* a literal that needs escaping */
        ots_event_add_uint(e, runtime_key, 2);
        ots_event_begin_array(e, "arr");
        ots_event_add_uint(e, NULL, 3);
        ots_event_add_uint(e, "ignored in an array", 4);
        ots_event_begin_object(e, NULL);
        ots_event_end_object(e);
        ots_event_begin_array(e, NULL);
        ots_event_end_array(e);
        ots_event_end_array(e);
        ots_event_add_uint(e, "after", 5);
        ots_event_begin_object(e, "empty");
        ots_event_end_object(e);
        ots_event_end_object(e);
        /* a buffer short of room takes the general path, which grows it */
        OtsBuf *b = (OtsBuf *)(void *)((OtsEventHead_ *)(void *)e)->buf;
        /* Until the inline path must give up for room (or, where it is
         * not compiled in, until the functions grow the buffer). */
        gsize cap = b->cap;
        for (*n_pad = 0; b->cap == cap && b->cap - b->len >= 32; (*n_pad)++)
            ots_event_add_uint(e, "p", 7);
        ots_event_add_uint(e, "grown_beyond_the_buffer", G_MAXUINT64);
    } else {
        for (guint k = 0; k < G_N_ELEMENTS(u); k++)
            (ots_event_add_uint)(e, "u", u[k]);
        (ots_event_begin_object)(e, "obj");
        for (guint k = 0; k < G_N_ELEMENTS(i); k++)
            (ots_event_add_int)(e, "i", i[k]);
        (ots_event_add_bool)(e, "t", TRUE);
        (ots_event_add_bool)(e, "f", FALSE);
        (ots_event_add_string)(e, "s", "plain");
        (ots_event_add_string)(e, "esc", "a\"b\\c\n\x01\xff");
        (ots_event_add_string)(e, "nul", NULL);
        for (guint k = 0; runtime_values[k]; k++)
            (ots_event_add_string)(e, "rv", runtime_values[k]);
        (ots_event_add_uint)(e, "k\"q", 1);
        (ots_event_add_uint)(e, runtime_key, 2);
        (ots_event_begin_array)(e, "arr");
        (ots_event_add_uint)(e, NULL, 3);
        (ots_event_add_uint)(e, "ignored in an array", 4);
        (ots_event_begin_object)(e, NULL);
        (ots_event_end_object)(e);
        (ots_event_begin_array)(e, NULL);
        (ots_event_end_array)(e);
        (ots_event_end_array)(e);
        (ots_event_add_uint)(e, "after", 5);
        (ots_event_begin_object)(e, "empty");
        (ots_event_end_object)(e);
        (ots_event_end_object)(e);
        for (guint k = 0; k < *n_pad; k++) /* as many as the inline path wrote */
            (ots_event_add_uint)(e, "p", 7);
        (ots_event_add_uint)(e, "grown_beyond_the_buffer", G_MAXUINT64);
    }
    ots_event_commit(e);
    ots_event_writer_flush(w);
}

static void
test_inline_writers(void)
{
    Collect a = {g_ptr_array_new_with_free_func(g_free)};
    Collect b = {g_ptr_array_new_with_free_func(g_free)};
    OtsEventWriter wa, wb;
    ots_event_writer_init(&wa, 256, collect_batch, &a);
    ots_event_writer_init(&wb, 256, collect_batch, &b);
    g_autofree char *key = g_strdup("run\ttime");
    guint n_pad = 0;
    fill(&wa, TRUE, key, &n_pad);
    fill(&wb, FALSE, key, &n_pad);
    CU_ASSERT(n_pad > 10);
    CU_ASSERT_EQUAL_FATAL(a.lines->len, 1);
    CU_ASSERT_EQUAL_FATAL(b.lines->len, 1);
    CU_ASSERT_STRING_EQUAL(a.lines->pdata[0], b.lines->pdata[0]);
    const char *want = "\"type\":\"transaction\",\"u\":0,\"u\":9,\"u\":10,\"u\":99,\"u\":100,"
                       "\"u\":999,\"u\":1000,\"u\":65535,\"u\":4294967295,"
                       "\"u\":18446744073709551615,\"obj\":{\"i\":0,\"i\":-1,\"i\":1,\"i\":-10,"
                       "\"i\":4096,\"i\":-9223372036854775808,\"i\":9223372036854775807,"
                       "\"t\":true,\"f\":false,\"s\":\"plain\",\"esc\":\"a\\\"b\\\\c\\n\\u0001"
                       "\\u00ff\",\"nul\":null,\"rv\":\"\",\"rv\":\"x\","
                       "\"rv\":\"original_unicast_npdu\",\"rv\":\"0123456789abcdef\","
                       "\"rv\":\"0123456789abcdef0123456789abcde\","
                       "\"rv\":\"0123456789abcdef0123456789abcdef\","
                       "\"rv\":\"0123456789abcdef0123456789abcdef0123456789\","
                       "\"rv\":\"0123456789abcdef01\\\"3\",\"rv\":\"caf\u00e9\","
                       "\"k\\\"q\":1,\"run\\ttime\":2,\"arr\":[3,4,{},[]],"
                       "\"after\":5,\"empty\":{}},\"p\":7";
    CU_ASSERT_PTR_NOT_NULL(strstr(a.lines->pdata[0], want));
    CU_ASSERT_PTR_NOT_NULL(strstr(a.lines->pdata[0], ",\"grown_beyond_the_buffer\":18446744073709551615}\n"));
    CU_ASSERT(g_utf8_validate(a.lines->pdata[0], -1, NULL));
    ots_event_writer_clear(&wa);
    ots_event_writer_clear(&wb);
    g_ptr_array_unref(a.lines);
    g_ptr_array_unref(b.lines);
}

/* The newline after a body may be what grows the batch's buffer: the
 * record must be found after that, not before (ASan: use after free). */
static void
test_commit_grows_buffer(void)
{
    Collect c = {g_ptr_array_new_with_free_func(g_free)};
    OtsEventWriter w;
    ots_event_writer_init(&w, 1 << 20, collect_batch, &c);
    OtsEvent *e = ots_event_writer_begin(&w, OTS_EVENT_FLOW, 1);
    OtsBuf *b = (OtsBuf *)(void *)((OtsEventHead_ *)(void *)e)->buf;
    /* `,"s":"` + n bytes + `"` leaves exactly the room of the closing brace */
    gsize n = b->cap - b->len - 8;
    g_autofree char *s = g_malloc(n + 1);
    memset(s, 'a', n);
    s[n] = 0;
    (ots_event_add_string)(e, "s", s);
    CU_ASSERT_EQUAL_FATAL(b->cap - b->len, 1);
    ots_event_commit(e);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_FLOW], 1);
    ots_event_writer_flush(&w);
    CU_ASSERT_EQUAL_FATAL(c.lines->len, 1);
    const char *line = c.lines->pdata[0];
    CU_ASSERT(g_str_has_suffix(line, "aaaa\"}\n"));
    CU_ASSERT_EQUAL(strlen(line), strlen("{\"ts\":\"1970-01-01T00:00:00.000001Z\",\"sensor_id\":\"s-1\","
                                          "\"seq\":1,\"type\":\"flow\",\"s\":\"\"}\n") + n);
    ots_event_writer_clear(&w);
    g_ptr_array_unref(c.lines);
}

/* The members a memo keeps for @key (the value of "n", and a nested
 * object), written as a plugin would. */
static void
memo_members(OtsEvent *e, guint key)
{
    ots_event_add_uint(e, "n", key);
    ots_event_begin_object(e, "o");
    ots_event_add_string(e, "s", key & 1 ? "odd" : "even");
    ots_event_end_object(e);
}

/* One event with the run written through the memo (put, or begin + end),
 * @before members ahead of it, inside an object when @nested. */
static void
memo_event(OtsEventWriter *w, OtsEventMemo *m, guint key, gboolean before, gboolean nested,
           gboolean *hit)
{
    OtsEvent *e = ots_event_writer_begin(w, OTS_EVENT_TRANSACTION, 1);
    if (nested)
        ots_event_begin_object(e, "x");
    if (before)
        ots_event_add_bool(e, "b", TRUE);
    *hit = ots_event_memo_put(e, m, &key, sizeof(key));
    if (!*hit) {
        ots_event_memo_begin(e, m, &key, sizeof(key));
        memo_members(e, key);
        ots_event_memo_end(e, m);
    }
    ots_event_add_uint(e, "after", 1);
    ots_event_commit(e);
}

/* What the memo writes is what the members write, whatever the comma state
 * or level; a new key misses; a run that is not whole members of one object
 * (or is too long, or is in an array) is not kept. */
static void
test_memo(void)
{
    Collect with = {g_ptr_array_new_with_free_func(g_free)};
    Collect plain = {g_ptr_array_new_with_free_func(g_free)};
    OtsEventWriter w, p;
    ots_event_writer_init(&w, 1 << 20, collect_batch, &with);
    ots_event_writer_init(&p, 1 << 20, collect_batch, &plain);
    OtsEventMemo m = {0};
    static const guint keys[] = {7, 7, 7, 8, 8, 7, 7};
    guint hits = 0;
    for (guint i = 0; i < G_N_ELEMENTS(keys); i++) {
        gboolean before = i % 2 == 0, nested = i % 3 == 0, hit;
        memo_event(&w, &m, keys[i], before, nested, &hit);
        hits += hit;
        /* the same event without the memo */
        OtsEvent *e = ots_event_writer_begin(&p, OTS_EVENT_TRANSACTION, 1);
        if (nested)
            ots_event_begin_object(e, "x");
        if (before)
            ots_event_add_bool(e, "b", TRUE);
        memo_members(e, keys[i]);
        ots_event_add_uint(e, "after", 1);
        ots_event_commit(e);
    }
    CU_ASSERT_EQUAL(hits, 4); /* misses: the first 7, the first 8, the 7 after it */
    ots_event_writer_flush(&w);
    ots_event_writer_flush(&p);
    CU_ASSERT_EQUAL_FATAL(with.lines->len, plain.lines->len);
    for (guint i = 0; i < with.lines->len; i++)
        CU_ASSERT_STRING_EQUAL(with.lines->pdata[i], plain.lines->pdata[i]);
    CU_ASSERT(strstr(plain.lines->pdata[1], "\"transaction\",\"n\":7,\"o\":{\"s\":\"odd\"},\"after\":1}") != NULL);

    /* Not kept: a run that leaves an object open, one in an array, one too
     * long, none at all; nor one ended in another event. */
    guint k = 1;
    OtsEvent *e = ots_event_writer_begin(&w, OTS_EVENT_TRANSACTION, 1);
    ots_event_memo_begin(e, &m, &k, sizeof(k));
    ots_event_begin_object(e, "open");
    ots_event_memo_end(e, &m);
    ots_event_end_object(e);
    CU_ASSERT_FALSE(ots_event_memo_put(e, &m, &k, sizeof(k)));
    ots_event_begin_array(e, "a");
    ots_event_memo_begin(e, &m, &k, sizeof(k));
    ots_event_add_uint(e, NULL, 1);
    ots_event_memo_end(e, &m);
    CU_ASSERT_FALSE(ots_event_memo_put(e, &m, &k, sizeof(k)));
    ots_event_end_array(e);
    char big[OTS_EVENT_MEMO_MAX];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ots_event_memo_begin(e, &m, &k, sizeof(k));
    ots_event_add_string(e, "big", big);
    ots_event_memo_end(e, &m);
    CU_ASSERT_FALSE(ots_event_memo_put(e, &m, &k, sizeof(k)));
    ots_event_memo_begin(e, &m, &k, sizeof(k));
    ots_event_memo_end(e, &m);
    CU_ASSERT_FALSE(ots_event_memo_put(e, &m, &k, sizeof(k)));
    ots_event_memo_begin(e, &m, &k, sizeof(k));
    ots_event_add_uint(e, "n", 1);
    ots_event_commit(e);
    e = ots_event_writer_begin(&w, OTS_EVENT_TRANSACTION, 1);
    ots_event_memo_end(e, &m);
    CU_ASSERT_FALSE(ots_event_memo_put(e, &m, &k, sizeof(k)));
    /* and a key longer than the memo's room is never kept */
    guint8 long_key[OTS_EVENT_MEMO_KEY_MAX + 1] = {0};
    ots_event_memo_begin(e, &m, long_key, sizeof(long_key));
    ots_event_add_uint(e, "n", 1);
    ots_event_memo_end(e, &m);
    CU_ASSERT_FALSE(ots_event_memo_put(e, &m, long_key, sizeof(long_key)));
    ots_event_commit(e);
    ots_event_writer_flush(&w);
    CU_ASSERT(g_str_has_suffix(with.lines->pdata[with.lines->len - 1],
                               "\"type\":\"transaction\",\"n\":1}\n"));

    ots_event_writer_clear(&w);
    ots_event_writer_clear(&p);
    g_ptr_array_unref(with.lines);
    g_ptr_array_unref(plain.lines);
}

static void
test_batch_limit(void)
{
    Collect c = {g_ptr_array_new_with_free_func(g_free)};
    OtsEventWriter w;
    ots_event_writer_init(&w, 1024, collect_batch, &c);
    for (int i = 0; i < 1000; i++) {
        OtsEvent *e = ots_event_writer_begin(&w, OTS_EVENT_FLOW, i);
        ots_event_add_uint(e, "i", (guint64)i);
        ots_event_add_string(e, "pad", "0123456789012345678901234567890123456789");
        ots_event_commit(e);
    }
    /* batches were handed over as they filled, in order, none lost */
    CU_ASSERT(c.lines->len > 900);
    ots_event_writer_flush(&w);
    CU_ASSERT_EQUAL_FATAL(c.lines->len, 1000);
    for (guint i = 0; i < c.lines->len; i++) {
        g_autofree char *want = g_strdup_printf("\"seq\":%u,\"type\":\"flow\",\"i\":%u,", i + 1, i);
        CU_ASSERT_PTR_NOT_NULL(strstr(c.lines->pdata[i], want));
    }
    ots_event_writer_clear(&w);
    g_ptr_array_unref(c.lines);
}

static void
test_anomaly_counts(void)
{
    OtsEventWriter w;
    ots_event_writer_init(&w, 1024, NULL, NULL);
    ots_event_writer_count_anomaly(&w, "modbus", "bad_length");
    ots_event_writer_count_anomaly(&w, "modbus", "bad_length");
    ots_event_writer_count_anomaly(&w, "dnp3", "crc");
    guint64 *n = g_hash_table_lookup(w.anomaly_counts, "modbus.bad_length");
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT_EQUAL(*n, 2);
    CU_ASSERT_EQUAL(w.anomalies, 3);
    ots_event_writer_clear(&w);
}

static void
test_names(void)
{
    CU_ASSERT_STRING_EQUAL(ots_op_class_to_string(OTS_OP_PROGRAM_DOWNLOAD), "program_download");
    CU_ASSERT_STRING_EQUAL(ots_op_class_to_string((OtsOpClass)999), "other");
    CU_ASSERT_STRING_EQUAL(ots_tx_status_to_string(OTS_TX_UNANSWERED), "unanswered");
    CU_ASSERT_STRING_EQUAL(ots_event_type_to_string(OTS_EVENT_SENSOR), "sensor");
}

/* The NUL-terminated fast paths (keys, C strings) load several bytes at a
 * time: checked against the explicit-length path on strings that end right
 * before an inaccessible page, with every byte position holding an escape. */
static void
test_cstring_guard_page(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    guint8 *mem = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    CU_ASSERT_FATAL(mem != MAP_FAILED);
    CU_ASSERT_FATAL(mprotect(mem + pg, (size_t)pg, PROT_NONE) == 0);
    static const char specials[] = {'"', '\\', '\n', 0x01, (char)0xc3};
    for (gsize len = 0; len <= 40; len++) {
        for (gsize pos = 0; pos <= len; pos++) {
            for (gsize k = 0; k < sizeof(specials); k++) {
                char *str = (char *)mem + pg - (len + 1);
                memset(str, 'a', len);
                if (pos < len)
                    str[pos] = specials[k];
                str[len] = 0;
                OtsBuf want = {0}, got = {0}, key = {0}, keywant = {0};
                ots_json_string(&want, str, strlen(str), FALSE);
                ots_json_cstring(&got, str);
                ots_json_key(&key, str);
                ots_json_string(&keywant, str, strlen(str), FALSE);
                ots_buf_putc(&keywant, ':');
                CU_ASSERT_EQUAL(got.len, want.len);
                CU_ASSERT(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
                CU_ASSERT(key.len == keywant.len && memcmp(key.data, keywant.data, key.len) == 0);
                ots_buf_clear(&want);
                ots_buf_clear(&got);
                ots_buf_clear(&key);
                ots_buf_clear(&keywant);
            }
        }
    }
    munmap(mem, (size_t)pg * 2);
}

static void
test_double_forms(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {{5, "5"}, {-0.0, "-0"}, {9007199254740992.0, "9007199254740992"},
                 {1e16, "10000000000000000"}, {0.1, "0.10000000000000001"}, {-2.5, "-2.5"}};
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        OtsBuf b = {0};
        ots_json_double(&b, cases[i].v);
        g_autofree char *s = str_of(&b);
        if (strcmp(s, cases[i].want) != 0)
            g_printerr("double %.17g -> %s, want %s\n", cases[i].v, s, cases[i].want);
        CU_ASSERT_STRING_EQUAL(s, cases[i].want);
        ots_buf_clear(&b);
    }
}

/* Checks ots_json_double(@v) against printf's "%.17g"; FALSE on a mismatch
 * (the first few are printed). */
static gboolean
same_as_printf(double v)
{
    static guint reported;
    char want[40];
    g_snprintf(want, sizeof(want), "%.17g", v);
    OtsBuf b = {0};
    ots_json_double(&b, v);
    gboolean ok = b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
    if (!ok && reported++ < 5)
        g_printerr("double %a: %.*s, printf %s\n", v, (int)b.len, (const char *)b.data, want);
    ots_buf_clear(&b);
    return ok;
}

/* The integer-only digits (format_g17) must be printf's, digit for digit:
 * float32 values across their whole range, doubles with short fractions
 * (the values it takes, ties at the 17th digit among them: m x 5^k ends in
 * 5 whenever m is odd), and any bit pattern (mostly printf's own path). */
static void
test_double_digits(void)
{
    guint bad = 0, n = 0;
    for (guint64 i = 0; i < (G_GUINT64_CONSTANT(1) << 32); i += 7919, n++) {
        guint32 bits = (guint32)i;
        float f;
        memcpy(&f, &bits, sizeof(f));
        if (isfinite(f))
            bad += !same_as_printf(f);
    }
    GRand *r = g_rand_new_with_seed(20261129);
    for (guint i = 0; i < 300000; i++, n++) {
        guint64 m = ((guint64)g_rand_int(r) << 32 | g_rand_int(r)) >> g_rand_int_range(r, 11, 64);
        double v = ldexp((double)(m | 1), g_rand_int_range(r, -80, 70));
        bad += !same_as_printf(g_rand_boolean(r) ? v : -v);
    }
    for (guint i = 0; i < 100000; i++, n++) {
        guint64 bits = (guint64)g_rand_int(r) << 32 | g_rand_int(r);
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (isfinite(v))
            bad += !same_as_printf(v);
    }
    g_rand_free(r);
    if (bad)
        g_printerr("%u of %u doubles differ from printf\n", bad, n);
    CU_ASSERT_EQUAL(bad, 0);
}

static CU_TestInfo event_tests[] = {
    {"NUL-terminated fast paths before a guard page", test_cstring_guard_page},
    {"double formatting", test_double_forms},
    {"doubles digit for digit as printf", test_double_digits},
    {"json string escaping and UTF-8", test_escaping},
    {"string stops at NUL", test_stop_at_nul},
    {"numbers", test_numbers},
    {"RFC 3339 time", test_time},
    {"hex", test_hex},
    {"builder nesting and envelope", test_builder},
    {"inline writers give the bytes of the functions", test_inline_writers},
    {"the newline that grows the buffer", test_commit_grows_buffer},
    {"memo writes what the members write", test_memo},
    {"batch limit hands over in order", test_batch_limit},
    {"anomaly counters", test_anomaly_counts},
    {"enum names", test_names},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES {"event", NULL, NULL, NULL, NULL, event_tests}
#include "cunit-main.h"
