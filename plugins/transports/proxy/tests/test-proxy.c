/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy and proxy-chain transports against in-process fake peers on
 * loopback: the reply parser, settings, a relaying CONNECT proxy with Basic
 * auth (byte-exact: the endpoint's first bytes arrive in the same segment as
 * the 200), every failure case (407 with and without credentials, 401, 403,
 * 5xx, hung, garbage, endless headers, closed mid-reply, refused), the proxy
 * list's health memory, client-built chains, cancellation. Real squid and
 * tinyproxy are in test-proxy-peers.c. The built plugins are loaded as the
 * daemon loads them. */
#include "core/config/config.h"
#include "ots-transport-common.h"
#include "proxy-test-util.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <string.h>

#define SECRET "pw-S3cr3t-7f1c"

static const OtsTransportInfo *proxy_tr;
static const OtsTransportInfo *chain_tr;
static char *pwfile;     /* holds SECRET */
static char *pwfile_bad; /* a wrong password */

static int
suite_init(void)
{
    proxy_tr = pt_load(PROXY_PLUGIN_PATH);
    chain_tr = pt_load(PROXY_CHAIN_PLUGIN_PATH);
    pwfile = pt_temp_file("pw", SECRET "\n");
    pwfile_bad = pt_temp_file("pw-bad", "wrong-password\n");
    return proxy_tr && chain_tr ? 0 : 1;
}

static gpointer
create_ok(const OtsTransportInfo *tr, const char *text)
{
    g_autoptr(GError) error = NULL;
    gpointer inst = pt_create(tr, text, &error);
    if (!inst)
        fprintf(stderr, "\ncreate failed: %s\n", error->message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(inst);
    return inst;
}

/* No secret in the error or any report. */
static void
assert_no_secret(const PtResult *r)
{
    if (r->error)
        CU_ASSERT_PTR_NULL(strstr(r->error->message, SECRET));
    g_autofree char *b64 =
        g_base64_encode((const guchar *)"sensor:" SECRET, strlen("sensor:" SECRET));
    g_autofree char *text = pt_reports_text(r);
    CU_ASSERT_PTR_NULL(strstr(text, SECRET));
    CU_ASSERT_PTR_NULL(strstr(text, b64));
    if (r->error)
        CU_ASSERT_PTR_NULL(strstr(r->error->message, b64));
}

static void
show(const char *what, const PtResult *r)
{
    if (g_getenv("PT_VERBOSE")) {
        g_autofree char *t = pt_reports_text(r);
        fprintf(stderr, "\n%s: %s (%.1f ms)\n%s", what, r->error ? r->error->message : "OK",
                r->took_us / 1000.0, t);
    }
}

/* ---- parser ------------------------------------------------------------ */

static OtsConnectReplyState
feed_all(OtsConnectReply *r, const char *data, gsize len, gsize *used)
{
    ots_connect_reply_init(r);
    OtsConnectReplyState st = OTS_CONNECT_REPLY_MORE;
    gsize i = 0;
    while (i < len && st == OTS_CONNECT_REPLY_MORE)
        st = ots_connect_reply_feed(r, (guint8)data[i++]);
    *used = i;
    return st;
}

static void
test_parser_ok(void)
{
    OtsConnectReply r;
    gsize used = 0;
    const char *a = "HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nTUNNEL";
    CU_ASSERT_EQUAL(feed_all(&r, a, strlen(a), &used), OTS_CONNECT_REPLY_DONE);
    CU_ASSERT_EQUAL(used, strlen(a) - strlen("TUNNEL")); /* stops at the head's end */
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.reason, "Connection established");
    CU_ASSERT_EQUAL(r.lines, 1);
    const char *b = "HTTP/1.0 407 Proxy Authentication Required\n\nX";
    CU_ASSERT_EQUAL(feed_all(&r, b, strlen(b), &used), OTS_CONNECT_REPLY_DONE);
    CU_ASSERT_EQUAL(used, strlen(b) - 1);
    CU_ASSERT_EQUAL(r.status, 407);
    CU_ASSERT_EQUAL(r.version_minor, 0);
    const char *c = "HTTP/1.1 204\r\n\r\n"; /* no reason phrase */
    CU_ASSERT_EQUAL(feed_all(&r, c, strlen(c), &used), OTS_CONNECT_REPLY_DONE);
    CU_ASSERT_EQUAL(r.status, 204);
    const char *d = "HTTP/1.1 200 OK\r\n"; /* unfinished */
    CU_ASSERT_EQUAL(feed_all(&r, d, strlen(d), &used), OTS_CONNECT_REPLY_MORE);
    /* A control byte in the reason is neutralised for messages. */
    const char *e = "HTTP/1.1 403 Bad\x1b[31m\r\n\r\n";
    CU_ASSERT_EQUAL(feed_all(&r, e, strlen(e), &used), OTS_CONNECT_REPLY_DONE);
    CU_ASSERT_PTR_NULL(strchr(r.reason, '\x1b'));
}

static void
test_parser_garbage(void)
{
    OtsConnectReply r;
    gsize used = 0;
    const char *g = "SSH-2.0-OpenSSH\r\n";
    CU_ASSERT_EQUAL(feed_all(&r, g, strlen(g), &used), OTS_CONNECT_REPLY_ERROR);
    CU_ASSERT_EQUAL(used, 1); /* refused at the first byte */
    CU_ASSERT_EQUAL(r.error, OTS_CONNECT_REPLY_GARBAGE);
    g_autofree char *msg = ots_connect_reply_describe_error(&r);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "not an HTTP proxy"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "\"S\""));
    const char *bad[] = {"HTTP/1.1 2000 x\r\n\r\n", "HTTP/1.1 20\r\n\r\n",
                         "HTTP/1.1  200\r\n\r\n",   "HTTP/2 200\r\n\r\n",
                         "HTTP/1.1 099 x\r\n\r\n",  "HTTP/1.1 200x\r\n\r\n",
                         "HTTP/1.x 200 OK\r\n\r\n", "\r\n\r\n",
                         "HTTP/1.1 200\0\r\n"};
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        gsize len = i == G_N_ELEMENTS(bad) - 1 ? 16 : strlen(bad[i]);
        CU_ASSERT_EQUAL(feed_all(&r, bad[i], len, &used), OTS_CONNECT_REPLY_ERROR);
        CU_ASSERT_EQUAL(r.error, OTS_CONNECT_REPLY_GARBAGE);
    }
    /* A status line with no end is bounded too. */
    g_autofree char *long_line = g_strnfill(4000, 'a');
    g_autofree char *ll = g_strconcat("HTTP/1.1 200 ", long_line, NULL);
    CU_ASSERT_EQUAL(feed_all(&r, ll, strlen(ll), &used), OTS_CONNECT_REPLY_ERROR);
    CU_ASSERT(used <= OTS_CONNECT_REPLY_MAX_STATUS_LINE + 1);
}

static void
test_parser_bounds(void)
{
    OtsConnectReply r;
    gsize used = 0;
    GString *s = g_string_new("HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 100; i++)
        g_string_append_printf(s, "X-%d: y\r\n", i);
    g_string_append(s, "\r\n");
    CU_ASSERT_EQUAL(feed_all(&r, s->str, s->len, &used), OTS_CONNECT_REPLY_ERROR);
    CU_ASSERT_EQUAL(r.error, OTS_CONNECT_REPLY_TOO_LARGE);
    CU_ASSERT_EQUAL(r.lines, OTS_CONNECT_REPLY_MAX_LINES + 1);
    /* 64 lines are still fine. */
    g_string_assign(s, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < OTS_CONNECT_REPLY_MAX_LINES; i++)
        g_string_append_printf(s, "X-%d: y\r\n", i);
    g_string_append(s, "\r\n");
    CU_ASSERT_EQUAL(feed_all(&r, s->str, s->len, &used), OTS_CONNECT_REPLY_DONE);
    /* One endless header line. */
    g_string_assign(s, "HTTP/1.1 200 OK\r\nX: ");
    for (int i = 0; i < 20000; i++)
        g_string_append_c(s, 'z');
    CU_ASSERT_EQUAL(feed_all(&r, s->str, s->len, &used), OTS_CONNECT_REPLY_ERROR);
    CU_ASSERT_EQUAL(r.error, OTS_CONNECT_REPLY_TOO_LARGE);
    CU_ASSERT_EQUAL(used, OTS_CONNECT_REPLY_MAX_BYTES + 1);
    g_string_free(s, TRUE);
}

/* ---- helpers and settings ----------------------------------------------- */

static void
test_helpers(void)
{
    const char *why = NULL;
    CU_ASSERT_TRUE(ots_proxy_header_is_valid("X-Site: plant-7", &why));
    CU_ASSERT_FALSE(ots_proxy_header_is_valid("X-Site: a\r\nEvil: 1", &why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "CR or LF"));
    CU_ASSERT_FALSE(ots_proxy_header_is_valid("X Site: a", &why));
    CU_ASSERT_FALSE(ots_proxy_header_is_valid("novalue", &why));
    CU_ASSERT_FALSE(ots_proxy_header_is_valid("proxy-authorization: Basic x", &why));
    CU_ASSERT_FALSE(ots_proxy_header_is_valid("Host: x", &why));

    g_autofree char *h = ots_proxy_basic_auth_header("Aladdin", "open sesame");
    CU_ASSERT_STRING_EQUAL(h, "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n");
    g_autofree char *a6 = ots_proxy_format_authority("::1", 443);
    CU_ASSERT_STRING_EQUAL(a6, "[::1]:443");

    g_autoptr(GError) e = NULL;
    g_autofree char *f1 = pt_temp_file("p1", "abc\r\n");
    g_autofree char *p1 = ots_proxy_read_password_file(f1, &e);
    CU_ASSERT_STRING_EQUAL(p1, "abc");
    g_autofree char *f2 = pt_temp_file("p2", "two\nlines\n");
    g_autofree char *p2 = ots_proxy_read_password_file(f2, &e);
    CU_ASSERT_PTR_NULL(p2);
    CU_ASSERT_TRUE(e && strstr(e->message, "more than one line") != NULL);
    CU_ASSERT_PTR_NULL(e ? strstr(e->message, "lines") : NULL);
    g_clear_error(&e);
    g_autofree char *f3 = pt_temp_file("p3", "");
    CU_ASSERT_PTR_NULL(ots_proxy_read_password_file(f3, &e));
    CU_ASSERT_TRUE(e && strstr(e->message, "empty") != NULL);
    g_clear_error(&e);
    CU_ASSERT_PTR_NULL(ots_proxy_read_password_file("/nonexistent/pw", &e));
    CU_ASSERT_TRUE(e && strstr(e->message, "/nonexistent/pw") != NULL);

    OtsProxyHop hop = {.host = "p", .port = 1};
    hop.auth_header = h;
    char *hdrs[] = {"X-Site: 7", NULL};
    hop.headers = hdrs;
    g_autofree char *req = ots_proxy_connect_request(&hop, "::1", 443);
    CU_ASSERT_STRING_EQUAL(req, "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"
                                "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
                                "X-Site: 7\r\n\r\n");
}

static void
expect_create_error(const OtsTransportInfo *tr, const char *text, const char *needle)
{
    g_autoptr(GError) error = NULL;
    gpointer inst = pt_create(tr, text, &error);
    CU_ASSERT_PTR_NULL(inst);
    if (inst)
        tr->destroy(inst);
    CU_ASSERT_PTR_NOT_NULL_FATAL(error);
    if (!strstr(error->message, needle))
        fprintf(stderr, "\nexpected '%s' in: %s\n", needle, error->message);
    CU_ASSERT_PTR_NOT_NULL(strstr(error->message, needle));
    CU_ASSERT_PTR_NULL(strstr(error->message, SECRET));
}

static void
test_settings(void)
{
    expect_create_error(proxy_tr, "port = 3128;", "proxy-test.conf:");
    expect_create_error(proxy_tr, "port = 3128;", "host: is required");
    expect_create_error(proxy_tr, "host = \"127.0.0.1\"; proxies = ( { host = \"127.0.0.2\"; } );",
                        "not both");
    expect_create_error(proxy_tr, "host = \"127.0.0.1\"; user = \"u\";",
                        "user: needs password_file");
    expect_create_error(proxy_tr,
                        "host = \"127.0.0.1\"; user = \"u\"; password_file = \"/nonexistent/x\";",
                        "/nonexistent/x");
    expect_create_error(proxy_tr,
                        "host = \"127.0.0.1\"; headers = [ \"X-A: 1\", \"X-B: 1\\r\\nX-C: 2\" ];",
                        "element 2 holds CR or LF");
    expect_create_error(proxy_tr, "host = \"127.0.0.1\"; tls_ca_file = \"/x\";", "tls is false");
    expect_create_error(proxy_tr, "host = \"127.0.0.1:3128\";", "give the port with `port`");
    expect_create_error(proxy_tr, "host = \"127.0.0.1\"; bind_address = \"lo\";",
                        "not an IP address");
    expect_create_error(proxy_tr, "host = \"127.0.0.1\"; porrt = 1;", "porrt");
    expect_create_error(proxy_tr,
                        "host = \"127.0.0.1\"; tls = true; tls_ca_file = \"/nonexistent\";",
                        "tls_ca_file");
    expect_create_error(chain_tr, "bind_address = \"127.0.0.1\";", "hops");
    expect_create_error(chain_tr, "hops = ( { host = \"127.0.0.1\"; }, { port = 3; } );",
                        "hop 2: ");
    /* A user with a colon cannot be sent with Basic. */
    g_autofree char *t =
        g_strdup_printf("host = \"127.0.0.1\"; user = \"a:b\"; password_file = \"%s\";", pwfile);
    expect_create_error(proxy_tr, t, "must not hold ':'");
    /* Good ones. */
    g_autofree char *ok = g_strdup_printf(
        "proxies = ( { host = \"127.0.0.1\"; port = 1; }, { host = \"localhost\"; user = \"x\"; "
        "password_file = \"%s\"; } ); user = \"sensor\"; password_file = \"%s\"; "
        "headers = [ \"X-Site: 7\" ]; reply_timeout_ms = 500; unhealthy_s = 5;",
        pwfile, pwfile);
    proxy_tr->destroy(create_ok(proxy_tr, ok));
}

/* ---- one proxy ----------------------------------------------------------- */

static char *
one_proxy_conf(guint16 port, const char *pw, const char *extra)
{
    if (!pw)
        return g_strdup_printf("host = \"127.0.0.1\"; port = %u; reply_timeout_ms = 700; %s", port,
                               extra ? extra : "");
    return g_strdup_printf("host = \"127.0.0.1\"; port = %u; user = \"sensor\"; "
                           "password_file = \"%s\"; reply_timeout_ms = 700; %s",
                           port, pw, extra ? extra : "");
}

static void
test_connect_ok(void)
{
    PtServer *ep = pt_server_start(PT_ECHO, NULL);
    PtServer *px = pt_server_start(PT_PROXY, NULL);
    pt_server_require_auth(px, "sensor", SECRET);
    g_autofree char *conf =
        one_proxy_conf(pt_server_port(px), pwfile, "headers = [ \"X-Site: plant-7\" ];");
    gpointer inst = create_ok(proxy_tr, conf);
    g_autoptr(PtResult) r = pt_connect(proxy_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("ok", r);
    CU_ASSERT_PTR_NULL(r->error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->stream);
    CU_ASSERT_TRUE(G_IS_SOCKET_CONNECTION(r->stream));
    CU_ASSERT_TRUE(g_pollable_input_stream_can_poll(
        G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(r->stream))));
    g_autoptr(GError) e = NULL;
    gboolean tunnel = pt_check_tunnel(r->stream, "hello through the tunnel", &e);
    if (!tunnel)
        fprintf(stderr, "\ntunnel: %s\n", e->message);
    CU_ASSERT_TRUE(tunnel);
    g_autofree char *req = pt_server_last_request(px);
    g_autofree char *want =
        g_strdup_printf("CONNECT 127.0.0.1:%u HTTP/1.1\r\n", pt_server_port(ep));
    CU_ASSERT_TRUE(g_str_has_prefix(req, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(req, "\r\nX-Site: plant-7\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(req, "\r\nProxy-Authorization: Basic "));
    g_autofree char *name = g_strdup_printf("127.0.0.1:%u", pt_server_port(px));
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_TCP_CONNECTED, 0, name));
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_CONNECT_OK, 0, "200 Connection established"));
    CU_ASSERT_FALSE(pt_reports_have(r, OTS_HOP_FAILED, 0, NULL));
    assert_no_secret(r);
    proxy_tr->destroy(inst);
    pt_result_free(g_steal_pointer(&r));
    pt_server_stop(px);
    pt_server_stop(ep);
}

typedef struct {
    PtMode mode;
    const char *canned;
    const char *pw; /* NULL: no credentials */
    int code;
    const char *needle;
    gint64 min_ms, max_ms;
} FailCase;

static void
run_fail_case(const FailCase *c)
{
    PtServer *px = pt_server_start(c->mode, c->canned);
    if (c->mode == PT_PROXY) {
        pt_server_require_auth(px, "sensor", SECRET);
        pt_server_allow_port(px, 1); /* only for the 403 case, which has the right password */
    }
    g_autofree char *conf = one_proxy_conf(pt_server_port(px), c->pw, NULL);
    gpointer inst = create_ok(proxy_tr, conf);
    g_autoptr(PtResult) r = pt_connect(proxy_tr, inst, "127.0.0.1", 23443, NULL);
    show(c->needle, r);
    CU_ASSERT_PTR_NULL(r->stream);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->error);
    if (!g_error_matches(r->error, G_IO_ERROR, c->code) || !strstr(r->error->message, c->needle))
        fprintf(stderr, "\nexpected code %d and '%s', got %d: %s\n", c->code, c->needle,
                r->error->code, r->error->message);
    CU_ASSERT_TRUE(g_error_matches(r->error, G_IO_ERROR, c->code));
    CU_ASSERT_PTR_NOT_NULL(strstr(r->error->message, c->needle));
    /* The hop is named, in the message and in a FAILED report. */
    g_autofree char *name = g_strdup_printf("proxy 127.0.0.1:%u: ", pt_server_port(px));
    CU_ASSERT_TRUE(g_str_has_prefix(r->error->message, name));
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_FAILED, 0, c->needle));
    CU_ASSERT(r->took_us >= c->min_ms * 1000);
    CU_ASSERT(r->took_us <= c->max_ms * 1000);
    assert_no_secret(r);
    proxy_tr->destroy(inst);
    pt_result_free(g_steal_pointer(&r));
    pt_server_stop(px);
}

static void
test_connect_failures(void)
{
    const FailCase cases[] = {
        {PT_PROXY, NULL, NULL, G_IO_ERROR_PROXY_NEED_AUTH,
         "proxy authentication required: 407 Proxy Authentication Required: no credentials", 0,
         2000},
        {PT_PROXY, NULL, pwfile_bad, G_IO_ERROR_PROXY_AUTH_FAILED,
         "proxy authentication failed: 407", 0, 2000},
        {PT_PROXY, NULL, pwfile, G_IO_ERROR_PROXY_NOT_ALLOWED,
         "the proxy refused CONNECT to 127.0.0.1:23443: 403 Forbidden", 0, 2000},
        {PT_CANNED, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n", pwfile,
         G_IO_ERROR_PROXY_AUTH_FAILED, "authentication failed: 401 Unauthorized", 0, 2000},
        {PT_CANNED, "HTTP/1.0 503 Service Unavailable\r\n\r\n", pwfile, G_IO_ERROR_PROXY_FAILED,
         "could not reach 127.0.0.1:23443: 503 Service Unavailable", 0, 2000},
        {PT_CANNED, "HTTP/1.1 302 Found\r\n\r\n", pwfile, G_IO_ERROR_PROXY_FAILED,
         "unexpected answer to CONNECT 127.0.0.1:23443: 302 Found", 0, 2000},
        {PT_HUNG, NULL, pwfile, G_IO_ERROR_TIMED_OUT,
         "no CONNECT reply within 700 ms (reply_timeout_ms)", 650, 2500},
        {PT_GARBAGE, NULL, pwfile, G_IO_ERROR_INVALID_DATA,
         "not an HTTP proxy: the reply is not an HTTP/1.x status line (starts with \"S\")", 0,
         2000},
        {PT_ENDLESS, NULL, pwfile, G_IO_ERROR_INVALID_DATA, "reply head too large", 0, 2000},
        {PT_CLOSE_MID, NULL, pwfile, G_IO_ERROR_CONNECTION_CLOSED,
         "closed the connection in the middle of its CONNECT reply (after 17 bytes)", 0, 2000},
        {PT_CLOSE_NOW, NULL, pwfile, G_IO_ERROR_CONNECTION_CLOSED,
         "closed the connection before answering CONNECT 127.0.0.1:23443", 0, 2000},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++)
        run_fail_case(&cases[i]);
}

static void
test_refused(void)
{
    guint16 dead = pt_free_port();
    g_autofree char *conf = one_proxy_conf(dead, pwfile, NULL);
    gpointer inst = create_ok(proxy_tr, conf);
    g_autoptr(PtResult) r = pt_connect(proxy_tr, inst, "127.0.0.1", 443, NULL);
    show("refused", r);
    CU_ASSERT_TRUE(g_error_matches(r->error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED));
    CU_ASSERT_TRUE(r->error && strstr(r->error->message, "cannot connect") != NULL);
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_FAILED, 0, "cannot connect"));
    proxy_tr->destroy(inst);
}

static void
cancel_later(GCancellable *c)
{
    g_usleep(200000);
    g_cancellable_cancel(c);
}

static void
test_cancel_and_destroy(void)
{
    PtServer *px = pt_server_start(PT_HUNG, NULL);
    g_autofree char *conf = g_strdup_printf(
        "host = \"127.0.0.1\"; port = %u; reply_timeout_ms = 10000;", pt_server_port(px));
    gpointer inst = create_ok(proxy_tr, conf);
    g_autoptr(GCancellable) c = g_cancellable_new();
    GThread *t = g_thread_new("cancel", (GThreadFunc)(void (*)(void))cancel_later, c);
    PtResult *r = pt_connect(proxy_tr, inst, "127.0.0.1", 443, c);
    g_thread_join(t);
    show("cancel", r);
    CU_ASSERT_TRUE(g_error_matches(r->error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    CU_ASSERT(r->took_us < 2000000);
    CU_ASSERT_TRUE(r->error && strstr(r->error->message, "CONNECT cancelled after") != NULL);
    pt_result_free(r);
    proxy_tr->destroy(inst);
    pt_server_stop(px);
}

/* ---- the proxy list ---------------------------------------------------- */

static void
test_proxy_list(void)
{
    PtServer *ep = pt_server_start(PT_ECHO, NULL);
    PtServer *hung = pt_server_start(PT_HUNG, NULL);
    PtServer *good = pt_server_start(PT_PROXY, NULL);
    pt_server_require_auth(good, "sensor", SECRET);
    guint16 dead = pt_free_port();
    g_autofree char *conf = g_strdup_printf(
        "proxies = ( { host = \"127.0.0.1\"; port = %u; }, { host = \"127.0.0.1\"; port = %u; "
        "reply_timeout_ms = 400; }, { host = \"127.0.0.1\"; port = %u; } ); user = \"sensor\"; "
        "password_file = \"%s\"; unhealthy_s = 1;",
        dead, pt_server_port(hung), pt_server_port(good), pwfile);
    gpointer inst = create_ok(proxy_tr, conf);
    g_autofree char *dead_name = g_strdup_printf("127.0.0.1:%u", dead);
    g_autofree char *hung_name = g_strdup_printf("127.0.0.1:%u", pt_server_port(hung));
    g_autofree char *good_name = g_strdup_printf("127.0.0.1:%u", pt_server_port(good));

    /* 1: the dead and the hung one fail, the third carries the tunnel. */
    g_autoptr(PtResult) r1 = pt_connect(proxy_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("list 1", r1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r1->stream);
    CU_ASSERT_TRUE(pt_check_tunnel(r1->stream, "via the third proxy", NULL));
    CU_ASSERT_TRUE(pt_reports_have(r1, OTS_HOP_FAILED, 0, dead_name));
    CU_ASSERT_TRUE(pt_reports_have(r1, OTS_HOP_FAILED, 0, "no CONNECT reply within 400 ms"));
    CU_ASSERT_TRUE(pt_reports_have(r1, OTS_HOP_INFO, 0, "trying the next proxy"));
    CU_ASSERT_TRUE(pt_reports_have(r1, OTS_HOP_CONNECT_OK, 0, good_name));
    CU_ASSERT(r1->took_us >= 400000);
    CU_ASSERT_EQUAL(pt_server_accepted(hung), 1);

    /* 2: both failed ones are remembered: the good one first, fast. */
    g_autoptr(PtResult) r2 = pt_connect(proxy_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("list 2", r2);
    CU_ASSERT_PTR_NOT_NULL(r2->stream);
    CU_ASSERT(r2->took_us < 300000);
    CU_ASSERT_EQUAL(pt_server_accepted(hung), 1);
    CU_ASSERT_TRUE(pt_reports_have(r2, OTS_HOP_INFO, 0, "is marked unhealthy"));
    CU_ASSERT_FALSE(pt_reports_have(r2, OTS_HOP_FAILED, 0, NULL));
    /* The first TCP connection of the second connect is to the good proxy. */
    const char *first_tcp = NULL;
    for (guint i = 0; i < r2->reports->len && !first_tcp; i++)
        if (g_str_has_prefix(r2->reports->pdata[i], "0|1|"))
            first_tcp = r2->reports->pdata[i];
    CU_ASSERT_TRUE(first_tcp && strstr(first_tcp, good_name) != NULL);

    /* 3: after unhealthy_s, the list is in its order again. */
    g_usleep(1100000);
    g_autoptr(PtResult) r3 = pt_connect(proxy_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("list 3", r3);
    CU_ASSERT_PTR_NOT_NULL(r3->stream);
    CU_ASSERT_EQUAL(pt_server_accepted(hung), 2);

    /* All dead: one error that lists every proxy. */
    pt_server_stop(good);
    good = NULL;
    g_usleep(1100000);
    g_autoptr(PtResult) r4 = pt_connect(proxy_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("list 4", r4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r4->error);
    CU_ASSERT_TRUE(g_str_has_prefix(r4->error->message, "all 3 proxies failed: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(r4->error->message, dead_name));
    CU_ASSERT_PTR_NOT_NULL(strstr(r4->error->message, hung_name));
    CU_ASSERT_PTR_NOT_NULL(strstr(r4->error->message, good_name));
    assert_no_secret(r4);
    proxy_tr->destroy(inst);
    pt_result_free(g_steal_pointer(&r1));
    pt_result_free(g_steal_pointer(&r2));
    pt_result_free(g_steal_pointer(&r3));
    pt_server_stop(hung);
    pt_server_stop(ep);
}

/* ---- client-built chains ------------------------------------------------- */

static void
test_chain(void)
{
    PtServer *ep = pt_server_start(PT_ECHO, NULL);
    PtServer *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = pt_server_start(PT_PROXY, NULL);
    /* Each hop only lets you reach the next one, each with its own password. */
    g_autofree char *pw2 = pt_temp_file("pw2", "second\n");
    pt_server_require_auth(h[0], "sensor", SECRET);
    pt_server_require_auth(h[1], "l2", "second");
    pt_server_allow_port(h[0], pt_server_port(h[1]));
    pt_server_allow_port(h[1], pt_server_port(h[2]));
    pt_server_allow_port(h[2], pt_server_port(ep));
    g_autofree char *conf = g_strdup_printf(
        "reply_timeout_ms = 800; hops = ("
        " { host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"l2\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; headers = [ \"X-Level: 3\" ]; } );",
        pt_server_port(h[0]), pwfile, pt_server_port(h[1]), pw2, pt_server_port(h[2]));
    gpointer inst = create_ok(chain_tr, conf);
    g_autoptr(PtResult) r = pt_connect(chain_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("chain", r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->stream);
    g_autoptr(GError) e = NULL;
    CU_ASSERT_TRUE(pt_check_tunnel(r->stream, "three hops", &e));
    for (guint i = 0; i < 3; i++)
        CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_CONNECT_OK, i, "200"));
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_TCP_CONNECTED, 0, NULL));
    g_autofree char *req3 = pt_server_last_request(h[2]);
    CU_ASSERT_PTR_NOT_NULL(strstr(req3, "X-Level: 3"));
    CU_ASSERT_PTR_NULL(strstr(req3, "Proxy-Authorization"));
    assert_no_secret(r);
    pt_result_free(g_steal_pointer(&r));
    chain_tr->destroy(inst);

    /* Hop 2's credentials wrong: the error names hop 2 of 3. */
    g_autofree char *bad = g_strdup_printf(
        "reply_timeout_ms = 800; hops = ("
        " { host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"l2\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; } );",
        pt_server_port(h[0]), pwfile, pt_server_port(h[1]), pwfile_bad, pt_server_port(h[2]));
    inst = create_ok(chain_tr, bad);
    g_autoptr(PtResult) r2 = pt_connect(chain_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("chain bad hop 2", r2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r2->error);
    g_autofree char *want = g_strdup_printf("proxy 2/3 127.0.0.1:%u: proxy authentication failed",
                                            pt_server_port(h[1]));
    CU_ASSERT_TRUE(g_str_has_prefix(r2->error->message, want));
    CU_ASSERT_TRUE(pt_reports_have(r2, OTS_HOP_CONNECT_OK, 0, NULL));
    CU_ASSERT_TRUE(pt_reports_have(r2, OTS_HOP_FAILED, 1, "407"));
    assert_no_secret(r2);
    chain_tr->destroy(inst);

    /* Hop 3 hangs: the timeout names hop 3. */
    PtServer *hung = pt_server_start(PT_HUNG, NULL);
    pt_server_allow_port(h[1], pt_server_port(hung));
    g_autofree char *hc = g_strdup_printf(
        "hops = ("
        " { host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"l2\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; reply_timeout_ms = 300; } );",
        pt_server_port(h[0]), pwfile, pt_server_port(h[1]), pw2, pt_server_port(hung));
    inst = create_ok(chain_tr, hc);
    g_autoptr(PtResult) r3 = pt_connect(chain_tr, inst, "127.0.0.1", pt_server_port(ep), NULL);
    show("chain hung hop 3", r3);
    CU_ASSERT_TRUE(g_error_matches(r3->error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
    g_autofree char *want3 = g_strdup_printf(
        "proxy 3/3 127.0.0.1:%u: no CONNECT reply within 300 ms", pt_server_port(hung));
    CU_ASSERT_TRUE(r3->error && g_str_has_prefix(r3->error->message, want3));
    chain_tr->destroy(inst);
    pt_server_stop(hung);
    for (int i = 0; i < 3; i++)
        pt_server_stop(h[i]);
    pt_server_stop(ep);
}

static CU_TestInfo parser_tests[] = {
    {"reply heads", test_parser_ok},
    {"garbage", test_parser_garbage},
    {"bounds", test_parser_bounds},
    {"helpers", test_helpers},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo connect_tests[] = {
    {"settings", test_settings},         {"CONNECT with auth, byte-exact tunnel", test_connect_ok},
    {"failures", test_connect_failures}, {"refused", test_refused},
    {"cancel", test_cancel_and_destroy}, {"proxy list", test_proxy_list},
    {"client-built chain", test_chain},  CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {"connect-reply", NULL, NULL, NULL, NULL, parser_tests},                                       \
    {                                                                                              \
        "proxy-fakes", suite_init, NULL, NULL, NULL, connect_tests                                 \
    }
#include "cunit-main.h"
