/* SPDX-License-Identifier: Apache-2.0 */
/* The uplink's HTTP request writer and bounded response parser. */

#include <string.h>

#include "core/uplink/http.h"

#include <CUnit/CUnit.h>

/* Feeds @text in pieces of @step bytes (1: byte by byte). */
static OtsHttpParseResult
feed_text(OtsHttpParser *p, const char *text, gsize step, GError **error)
{
    gsize len = strlen(text), off = 0;
    OtsHttpParseResult r = OTS_HTTP_PARSE_NEED_MORE;

    while (off < len && r == OTS_HTTP_PARSE_NEED_MORE) {
        gsize used = 0, n = MIN(step, len - off);
        r = ots_http_parser_feed(p, (const guint8 *)text + off, n, &used, error);
        CU_ASSERT(used <= n);
        off += used;
    }
    return r;
}

static void
test_content_length(void)
{
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                       "\r\n{\"ok\":true}";
    static const gsize steps[] = {1, 3, 1000};

    for (guint i = 0; i < G_N_ELEMENTS(steps); i++) {
        g_autoptr(OtsHttpParser) p = ots_http_parser_new(NULL);
        g_autoptr(GError) err = NULL;
        CU_ASSERT_EQUAL(feed_text(p, resp, steps[i], &err), OTS_HTTP_PARSE_DONE);
        CU_ASSERT_PTR_NULL(err);
        CU_ASSERT_EQUAL(ots_http_parser_get_status(p), 200);
        CU_ASSERT_STRING_EQUAL(ots_http_parser_get_reason(p), "OK");
        CU_ASSERT_FALSE(ots_http_parser_get_close(p));
        CU_ASSERT_STRING_EQUAL(ots_http_parser_get_header(p, "content-type"), "application/json");
        gsize len;
        const guint8 *b = ots_http_parser_get_body(p, &len);
        CU_ASSERT_EQUAL(len, 11);
        CU_ASSERT(memcmp(b, "{\"ok\":true}", 11) == 0);
    }
}

static void
test_chunked(void)
{
    const char *resp = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n"
                       "Retry-After: 7\r\nConnection: close\r\n\r\n"
                       "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";

    for (gsize step = 1; step <= 7; step += 6) {
        g_autoptr(OtsHttpParser) p = ots_http_parser_new(NULL);
        g_autoptr(GError) err = NULL;
        CU_ASSERT_EQUAL(feed_text(p, resp, step, &err), OTS_HTTP_PARSE_DONE);
        CU_ASSERT_EQUAL(ots_http_parser_get_status(p), 503);
        CU_ASSERT_TRUE(ots_http_parser_get_close(p));
        CU_ASSERT_STRING_EQUAL(ots_http_parser_get_header(p, "Retry-After"), "7");
        gsize len;
        const guint8 *b = ots_http_parser_get_body(p, &len);
        CU_ASSERT_EQUAL(len, 11);
        CU_ASSERT(len == 11 && memcmp(b, "hello world", 11) == 0);
    }
}

static void
test_eof_body_and_interim(void)
{
    g_autoptr(OtsHttpParser) p = ots_http_parser_new(NULL);
    g_autoptr(GError) err = NULL;

    /* A 100 Continue is skipped; HTTP/1.0 without length ends at the close. */
    CU_ASSERT_EQUAL(
        feed_text(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nabc", 4, &err),
        OTS_HTTP_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_http_parser_feed_eof(p, &err), OTS_HTTP_PARSE_DONE);
    CU_ASSERT_EQUAL(ots_http_parser_get_status(p), 200);
    CU_ASSERT_TRUE(ots_http_parser_get_close(p));
    gsize len;
    ots_http_parser_get_body(p, &len);
    CU_ASSERT_EQUAL(len, 3);

    /* 204: no body even without a length; keep-alive; the next response
     * follows after a reset, and leftover bytes are reported unconsumed. */
    ots_http_parser_reset(p);
    const char *two = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n";
    gsize used = 0;
    CU_ASSERT_EQUAL(ots_http_parser_feed(p, (const guint8 *)two, strlen(two), &used, &err),
                    OTS_HTTP_PARSE_DONE);
    CU_ASSERT_EQUAL(used, strlen("HTTP/1.1 204 No Content\r\n\r\n"));
    CU_ASSERT_FALSE(ots_http_parser_get_close(p));

    /* Truncated inside a Content-Length body. */
    g_autoptr(OtsHttpParser) q = ots_http_parser_new(NULL);
    g_autoptr(GError) terr = NULL;
    CU_ASSERT_EQUAL(feed_text(q, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 100, &terr),
                    OTS_HTTP_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_http_parser_feed_eof(q, &terr), OTS_HTTP_PARSE_ERROR);
    CU_ASSERT_TRUE(g_error_matches(terr, OTS_HTTP_ERROR, OTS_HTTP_ERROR_TRUNCATED));
}

static void
expect_error(const OtsHttpLimits *limits, const char *text, OtsHttpError code)
{
    g_autoptr(OtsHttpParser) p = ots_http_parser_new(limits);
    g_autoptr(GError) err = NULL;
    OtsHttpParseResult r = feed_text(p, text, 5, &err);

    if (r == OTS_HTTP_PARSE_NEED_MORE)
        r = ots_http_parser_feed_eof(p, &err);
    CU_ASSERT_EQUAL(r, OTS_HTTP_PARSE_ERROR);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_HTTP_ERROR, code));
    if (!g_error_matches(err, OTS_HTTP_ERROR, code))
        fprintf(stderr, "\nunexpected result for %s: %s\n", text, err ? err->message : "none");
    /* Errors stick. */
    gsize used;
    g_autoptr(GError) again = NULL;
    CU_ASSERT_EQUAL(ots_http_parser_feed(p, (const guint8 *)"x", 1, &used, &again),
                    OTS_HTTP_PARSE_ERROR);
}

static void
test_bounds(void)
{
    OtsHttpLimits l = {.max_status_line = 40,
                       .max_header_line = 40,
                       .max_headers = 3,
                       .max_head = 120,
                       .max_body = 10,
                       .max_interim = 1};

    /* Status line: 40 bytes pass, 41 do not. */
    g_autofree char *reason_ok = g_strnfill(40 - 15, 'r');
    g_autofree char *ok =
        g_strdup_printf("HTTP/1.1 200 %s\r\nContent-Length: 0\r\n\r\n", reason_ok);
    {
        g_autoptr(OtsHttpParser) p = ots_http_parser_new(&l);
        g_autoptr(GError) err = NULL;
        CU_ASSERT_EQUAL(feed_text(p, ok, 1, &err), OTS_HTTP_PARSE_DONE);
    }
    g_autofree char *reason_long = g_strnfill(40 - 14, 'r');
    g_autofree char *bad = g_strdup_printf("HTTP/1.1 200 %s\r\n\r\n", reason_long);
    expect_error(&l, bad, OTS_HTTP_ERROR_TOO_LARGE);
    /* One header line too long; too many headers; head too large. */
    expect_error(&l, "HTTP/1.1 200 OK\r\nX-A: 0123456789012345678901234567890123456\r\n\r\n",
                 OTS_HTTP_ERROR_TOO_LARGE);
    expect_error(&l, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
                 OTS_HTTP_ERROR_TOO_LARGE);
    expect_error(&l,
                 "HTTP/1.1 200 OK\r\nA: 0123456789012345678901234567890\r\n"
                 "B: 0123456789012345678901234567890\r\nC: 0123456789012345678901234567890\r\n\r\n",
                 OTS_HTTP_ERROR_TOO_LARGE);
    /* Body bounds: Content-Length, chunked, read-to-close. */
    expect_error(&l, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", OTS_HTTP_ERROR_TOO_LARGE);
    expect_error(&l, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\naaaaaa\r\n5\r\n",
                 OTS_HTTP_ERROR_TOO_LARGE);
    expect_error(&l, "HTTP/1.1 200 OK\r\n\r\n0123456789A", OTS_HTTP_ERROR_TOO_LARGE);
    expect_error(&l, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
                 OTS_HTTP_ERROR_TOO_LARGE);
    /* Interim responses. */
    expect_error(&l, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
                 OTS_HTTP_ERROR_TOO_LARGE);
    /* Exactly at the body bound is fine. */
    {
        g_autoptr(OtsHttpParser) p = ots_http_parser_new(&l);
        g_autoptr(GError) err = NULL;
        CU_ASSERT_EQUAL(
            feed_text(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 2, &err),
            OTS_HTTP_PARSE_DONE);
    }
}

static void
test_garbage(void)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 600 Nope\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "\r\n",
    };

    for (guint i = 0; i < G_N_ELEMENTS(bad); i++)
        expect_error(NULL, bad[i], OTS_HTTP_ERROR_MALFORMED);
    /* Embedded NUL: fed with its length. */
    g_autoptr(OtsHttpParser) p = ots_http_parser_new(NULL);
    g_autoptr(GError) err = NULL;
    gsize used;
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    CU_ASSERT_EQUAL(ots_http_parser_feed(p, (const guint8 *)nul, sizeof(nul) - 1, &used, &err),
                    OTS_HTTP_PARSE_ERROR);
    /* Cut inside the head. */
    expect_error(NULL, "HTTP/1.1 200 OK\r\nContent-", OTS_HTTP_ERROR_TRUNCATED);
    /* Random bytes never crash and never run past the bounds. */
    GRand *rand = g_rand_new_with_seed(42);
    for (guint i = 0; i < 2000; i++) {
        guint8 buf[256];
        gsize n = (gsize)g_rand_int_range(rand, 1, sizeof(buf));
        for (gsize k = 0; k < n; k++)
            buf[k] = (guint8)g_rand_int(rand);
        if (i % 2)
            memcpy(buf, "HTTP/1.1 200 ", MIN(n, 13));
        g_autoptr(OtsHttpParser) r = ots_http_parser_new(NULL);
        g_autoptr(GError) e = NULL;
        ots_http_parser_feed(r, buf, n, &used, &e);
        CU_ASSERT(used <= n);
    }
    g_rand_free(rand);
}

static void
test_retry_after(void)
{
    guint64 s = 99;
    /* Sun, 06 Nov 1994 08:49:37 GMT */
    const gint64 t = 784111777;

    CU_ASSERT_TRUE(ots_http_parse_retry_after("120", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 120);
    CU_ASSERT_TRUE(ots_http_parse_retry_after(" 0 ", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 0);
    CU_ASSERT_TRUE(ots_http_parse_retry_after("99999999999999999999999", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 3600);
    CU_ASSERT_TRUE(ots_http_parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 30);
    CU_ASSERT_TRUE(ots_http_parse_retry_after("Sunday, 06-Nov-94 08:51:37 GMT", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 120);
    CU_ASSERT_TRUE(ots_http_parse_retry_after("Sun Nov  6 08:49:47 1994", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 10);
    CU_ASSERT_TRUE(ots_http_parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 0); /* in the past */
    CU_ASSERT_TRUE(ots_http_parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", t, 3600, &s));
    CU_ASSERT_EQUAL(s, 3600); /* capped */
    static const char *const bad[] = {"",
                                      "-5",
                                      "1.5",
                                      "soon",
                                      "Sun, 06 Foo 1994 08:49:37 GMT",
                                      "Sun, 32 Nov 1994 08:49:37 GMT",
                                      "Sun, 06 Nov 1994 25:49:37 GMT",
                                      "Sun, 06 Nov 1994 08:49:37 UTC",
                                      "Sun, 31 Feb 1994 08:49:37 GMT"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++)
        CU_ASSERT_FALSE(ots_http_parse_retry_after(bad[i], t, 3600, &s));
}

static void
test_request(void)
{
    g_autoptr(GString) out = g_string_new(NULL);
    OtsHttpRequest req = {.host = "cloud.test",
                          .port = 8443,
                          .path = "/ingest?v=1",
                          .sensor_id = "sensor-001",
                          .first_seq = 7,
                          .last_seq = 9,
                          .gzip = TRUE,
                          .token = "tok.en-123",
                          .body_len = 42};

    CU_ASSERT_TRUE(ots_http_request_write_head(out, &req));
    CU_ASSERT_TRUE(
        g_str_has_prefix(out->str, "POST /ingest?v=1 HTTP/1.1\r\nHost: cloud.test:8443\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nContent-Type: application/x-ndjson\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nContent-Length: 42\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nX-Sensor-Id: sensor-001\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nX-Batch-First-Seq: 7\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nX-Batch-Last-Seq: 9\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nContent-Encoding: gzip\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nAuthorization: Bearer tok.en-123\r\n"));
    CU_ASSERT_TRUE(g_str_has_suffix(out->str, "\r\n\r\n"));

    g_string_truncate(out, 0);
    req.host = "::1";
    req.port = 443;
    req.gzip = FALSE;
    req.token = NULL;
    CU_ASSERT_TRUE(ots_http_request_write_head(out, &req));
    CU_ASSERT_PTR_NOT_NULL(strstr(out->str, "\r\nHost: [::1]\r\n"));
    CU_ASSERT_PTR_NULL(strstr(out->str, "Authorization"));
    CU_ASSERT_PTR_NULL(strstr(out->str, "Content-Encoding"));

    /* Header injection is refused. */
    g_string_truncate(out, 0);
    req.token = "abc\r\nX-Evil: 1";
    CU_ASSERT_FALSE(ots_http_request_write_head(out, &req));
    CU_ASSERT_EQUAL(out->len, 0);
    req.token = NULL;
    req.sensor_id = "a\nb";
    CU_ASSERT_FALSE(ots_http_request_write_head(out, &req));
}

static CU_TestInfo http_tests[] = {
    {"Content-Length body, any split", test_content_length},
    {"chunked body, trailers, Retry-After header", test_chunked},
    {"read-to-close body, 1xx, 204, truncation", test_eof_body_and_interim},
    {"every bound", test_bounds},
    {"garbage is an error, never a crash", test_garbage},
    {"Retry-After forms", test_retry_after},
    {"request head", test_request},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "uplink-http", NULL, NULL, NULL, NULL, http_tests                                          \
    }
#include "cunit-main.h"
