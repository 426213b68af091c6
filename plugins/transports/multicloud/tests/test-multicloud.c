/* SPDX-License-Identifier: Apache-2.0 */
/* The multicloud transport against real sockets on loopback: two direct
 * paths from different source addresses (127.0.0.2, 127.0.0.3) to two plain
 * TCP listeners. Path 1's listener goes away: the same connect uses path 2
 * and the status shows path 1 failed with its error; it comes back: probes
 * see it, and the fail-back waits for the hold-down. Priorities, all paths
 * down, a proxy path whose probes do the CONNECT, hop reports naming the
 * path, settings the plugin must refuse, destroy with probes pending. The
 * plugin is loaded as the daemon loads it; settings go through the core's
 * validator. Everything runs on the default main context, which the test
 * iterates, so the plugin's background probes run between connects. */
#include "core/event/event-writer.h"
#include "plugins/transports/proxy/tests/proxy-test-util.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const OtsTransportInfo *mc;

static const OtsTransportInfo *
plugin(void)
{
    if (!mc)
        mc = pt_load(MULTICLOUD_PLUGIN_PATH);
    return mc;
}

/* ---- a plain TCP listener that can go away and come back ----------------- */

typedef struct {
    int fd;
    guint16 port;
} Listener;

static gboolean
listener_open(Listener *l)
{
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(l->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(l->fd, 64) != 0) {
        close(l->fd);
        l->fd = -1;
        return FALSE;
    }
    return TRUE;
}

static void
listener_start(Listener *l)
{
    for (int i = 0; i < 20; i++) {
        l->port = pt_free_port();
        if (l->port && listener_open(l))
            return;
    }
    l->fd = -1;
}

static void
listener_close(Listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* Accepts every queued connection (the kernel completes the handshake
 * without accept()); returns the source address of the last one, or NULL. */
static char *
listener_drain(Listener *l, guint *count)
{
    char *last = NULL;
    guint n = 0;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int c = accept(l->fd, (struct sockaddr *)&peer, &len);
        if (c < 0)
            break;
        char ip[INET_ADDRSTRLEN] = "";
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        g_free(last);
        last = g_strdup(ip);
        n++;
        close(c);
    }
    if (count)
        *count = n;
    return last;
}

/* ---- connects and status on the default context -------------------------- */

typedef struct {
    gboolean done;
    GIOStream *stream;
    GError *error;
    GPtrArray *reports;
    gint64 took_us;
} Conn;

static void
conn_free(Conn *c)
{
    g_clear_object(&c->stream);
    g_clear_error(&c->error);
    g_ptr_array_unref(c->reports);
    g_free(c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Conn, conn_free)

static void
on_report(const OtsHopReport *r, gpointer data)
{
    Conn *c = data;
    g_ptr_array_add(c->reports,
                    g_strdup_printf("%u|%d|%s|%s", r->hop, r->step, r->hop_name ? r->hop_name : "-",
                                    r->detail ? r->detail : ""));
}

static void
on_done(GObject *src, GAsyncResult *res, gpointer data)
{
    (void)src;
    Conn *c = data;
    c->stream = plugin()->connect_finish(NULL, res, &c->error);
    c->done = TRUE;
}

static Conn *
do_connect(gpointer inst, GCancellable *cancel)
{
    Conn *c = g_new0(Conn, 1);
    c->reports = g_ptr_array_new_with_free_func(g_free);
    OtsEndpoint ep = {.host = "127.0.0.1", .port = 9};
    gint64 t0 = g_get_monotonic_time();
    plugin()->connect_async(inst, &ep, cancel, on_report, c, on_done, c);
    while (!c->done)
        g_main_context_iteration(NULL, TRUE);
    c->took_us = g_get_monotonic_time() - t0;
    return c;
}

static gboolean
reports_have(const Conn *c, const char *needle)
{
    for (guint i = 0; i < c->reports->len; i++)
        if (strstr(c->reports->pdata[i], needle))
            return TRUE;
    return FALSE;
}

static void
dump(const Conn *c)
{
    if (c->error)
        fprintf(stderr, "  error: %s\n", c->error->message);
    for (guint i = 0; i < c->reports->len; i++)
        fprintf(stderr, "  %s\n", (const char *)c->reports->pdata[i]);
}

static gboolean
wake(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

/* Runs the default context (the plugin's probes) for @ms. */
static void
spin(int ms)
{
    gboolean fired = FALSE;
    g_timeout_add((guint)ms, wake, &fired);
    while (!fired)
        g_main_context_iteration(NULL, TRUE);
}

typedef struct {
    char *json;
} Status;

static void
on_batch(OtsEventBatch *b, gpointer user)
{
    Status *s = user;
    gsize off = 0;
    const OtsEventRecord *rec;
    const char *body;
    while (ots_event_batch_next(b, &off, &rec, &body)) {
        g_free(s->json);
        s->json = g_strndup(body, rec->len);
    }
    ots_event_batch_free(b);
}

/* The status object the plugin adds to the sensor event, as JSON text. */
static char *
status_json(gpointer inst)
{
    Status s = {NULL};
    OtsEventWriter w;
    ots_event_writer_init(&w, 1 << 20, on_batch, &s);
    OtsEvent *e = ots_event_writer_begin(&w, OTS_EVENT_SENSOR, g_get_real_time());
    ots_event_begin_object(e, "transport_status");
    plugin()->status(inst, e);
    ots_event_end_object(e);
    ots_event_commit(e);
    ots_event_writer_flush(&w);
    ots_event_writer_clear(&w);
    return s.json;
}

/* The JSON object of path @name inside a status text (up to its closing
 * brace: path objects hold no nested objects). */
static char *
path_json(const char *status, const char *name)
{
    g_autofree char *key = g_strdup_printf("{\"name\":\"%s\"", name);
    const char *p = status ? strstr(status, key) : NULL;
    if (!p)
        return g_strdup("");
    const char *end = strchr(p, '}');
    return g_strndup(p, end ? (gsize)(end - p + 1) : strlen(p));
}

static gboolean
path_state_is(gpointer inst, const char *name, const char *state)
{
    g_autofree char *st = status_json(inst);
    g_autofree char *pj = path_json(st, name);
    g_autofree char *want = g_strdup_printf("\"state\":\"%s\"", state);
    return strstr(pj, want) != NULL;
}

static guint64
path_uint(const char *pj, const char *key)
{
    g_autofree char *k = g_strdup_printf("\"%s\":", key);
    const char *p = strstr(pj, k);
    return p ? g_ascii_strtoull(p + strlen(k), NULL, 10) : G_MAXUINT64;
}

static gpointer
create(const char *text)
{
    g_autoptr(GError) error = NULL;
    gpointer inst = pt_create(plugin(), text, &error);
    if (!inst)
        fprintf(stderr, "create: %s\n", error->message);
    return inst;
}

static char *
two_paths(guint16 port1, guint16 port2, int hold_down_s)
{
    return g_strdup_printf(
        "hold_down_s = %d; probe_backoff_min_ms = 100; probe_backoff_max_ms = 200;\n"
        "paths = (\n"
        "  { name = \"p1\"; transport = \"direct\"; address = \"127.0.0.1\"; port = %u;"
        "    bind_address = \"127.0.0.2\"; priority = 1; },\n"
        "  { name = \"p2\"; transport = \"direct\"; address = \"127.0.0.1\"; port = %u;"
        "    bind_address = \"127.0.0.3\"; priority = 2; } );",
        hold_down_s, port1, port2);
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_failover_and_failback(void)
{
    CU_ASSERT_FATAL(plugin() != NULL);
    Listener l1 = {0}, l2 = {0};
    listener_start(&l1);
    listener_start(&l2);
    CU_ASSERT_FATAL(l1.fd >= 0 && l2.fd >= 0);
    g_autofree char *cfg = two_paths(l1.port, l2.port, 2);
    gpointer inst = create(cfg);
    CU_ASSERT_FATAL(inst != NULL);

    /* Both up: the better path, from its source address. */
    g_autoptr(Conn) c1 = do_connect(inst, NULL);
    CU_ASSERT_PTR_NOT_NULL(c1->stream);
    g_autofree char *peer1 = listener_drain(&l1, NULL);
    CU_ASSERT_STRING_EQUAL(peer1 ? peer1 : "", "127.0.0.2");
    CU_ASSERT(reports_have(c1, "path p1: selected"));
    CU_ASSERT(path_state_is(inst, "p1", "active"));
    CU_ASSERT(path_state_is(inst, "p2", "standby"));

    /* Path 1's listener goes: the same connect moves on to path 2. */
    listener_close(&l1);
    g_autoptr(Conn) c2 = do_connect(inst, NULL);
    if (!c2->stream)
        dump(c2);
    CU_ASSERT_PTR_NOT_NULL(c2->stream);
    CU_ASSERT(c2->took_us < 2 * G_USEC_PER_SEC);
    g_autofree char *peer2 = listener_drain(&l2, NULL);
    CU_ASSERT_STRING_EQUAL(peer2 ? peer2 : "", "127.0.0.3");
    CU_ASSERT(reports_have(c2, "path p1: trying"));
    CU_ASSERT(reports_have(c2, "path p2: selected"));
    g_autofree char *st2 = status_json(inst);
    g_autofree char *p1 = path_json(st2, "p1");
    g_autofree char *p2 = path_json(st2, "p2");
    CU_ASSERT(strstr(p1, "\"state\":\"failed\"") || strstr(p1, "\"state\":\"probing\""));
    CU_ASSERT(strstr(p1, "Connection refused") != NULL);
    CU_ASSERT(strstr(p1, "\"last_error_at\":") != NULL);
    CU_ASSERT(strstr(p1, "\"next_probe\":") != NULL);
    CU_ASSERT_EQUAL(path_uint(p1, "consecutive_failures"), 1);
    CU_ASSERT(strstr(p2, "\"state\":\"active\"") != NULL);
    CU_ASSERT(strstr(st2, "\"active\":\"p2\"") != NULL);
    CU_ASSERT_EQUAL(path_uint(st2, "failovers"), 1);

    /* Probes keep failing while it is down, with backoff. */
    spin(700);
    g_autofree char *st3 = status_json(inst);
    g_autofree char *p1b = path_json(st3, "p1");
    CU_ASSERT(path_uint(p1b, "consecutive_failures") >= 3);
    CU_ASSERT(strstr(p1b, "probe: cannot connect to 127.0.0.1:") != NULL);

    /* Path 1 comes back: a probe sees it within the backoff... */
    CU_ASSERT_FATAL(listener_open(&l1));
    gint64 back = g_get_monotonic_time();
    for (int i = 0; i < 100 && !path_state_is(inst, "p1", "standby"); i++)
        spin(20);
    CU_ASSERT(path_state_is(inst, "p1", "standby"));
    CU_ASSERT(g_get_monotonic_time() - back < 1 * G_USEC_PER_SEC);
    g_autofree char *st4 = status_json(inst);
    g_autofree char *p1c = path_json(st4, "p1");
    CU_ASSERT(strstr(p1c, "\"hold_down_left_ms\":") != NULL);
    CU_ASSERT_EQUAL(path_uint(p1c, "consecutive_failures"), 0);

    /* ...but within the hold-down the next connect stays on path 2. */
    g_free(listener_drain(&l1, NULL));
    g_autoptr(Conn) c3 = do_connect(inst, NULL);
    CU_ASSERT_PTR_NOT_NULL(c3->stream);
    g_autofree char *peer3 = listener_drain(&l2, NULL);
    CU_ASSERT_STRING_EQUAL(peer3 ? peer3 : "", "127.0.0.3");
    CU_ASSERT(reports_have(c3, "path p2: selected"));

    /* Probes confirm path 1 during its hold-down (they connect to it). */
    spin(1200);
    guint confirm = 0;
    g_free(listener_drain(&l1, &confirm));
    CU_ASSERT(confirm >= 1);

    /* After the hold-down: fail-back at the next connect. */
    while (g_get_monotonic_time() - back < 2300 * 1000)
        spin(50);
    g_autoptr(Conn) c4 = do_connect(inst, NULL);
    CU_ASSERT_PTR_NOT_NULL(c4->stream);
    g_autofree char *peer4 = listener_drain(&l1, NULL);
    CU_ASSERT_STRING_EQUAL(peer4 ? peer4 : "", "127.0.0.2");
    CU_ASSERT(reports_have(c4, "path p1: selected"));
    g_autofree char *st5 = status_json(inst);
    CU_ASSERT(strstr(st5, "\"active\":\"p1\"") != NULL);
    CU_ASSERT_EQUAL(path_uint(st5, "failbacks"), 1);
    CU_ASSERT(path_state_is(inst, "p2", "standby"));
    g_autofree char *p1d = path_json(st5, "p1");
    CU_ASSERT(strstr(p1d, "next_probe") == NULL);

    plugin()->destroy(inst);
    listener_close(&l1);
    listener_close(&l2);
}

static void
test_priorities(void)
{
    Listener l[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        listener_start(&l[i]);
        CU_ASSERT_FATAL(l[i].fd >= 0);
    }
    /* Configuration order c, a, b; priorities 30, 10, 10: a (first of the
     * two tens), then b, then c. */
    g_autofree char *cfg =
        g_strdup_printf("hold_down_s = 0; probe_backoff_min_ms = 5000; paths = (\n"
                        "  { name = \"c\"; transport = \"direct\"; address = \"127.0.0.1\"; port = "
                        "%u; priority = 30; },\n"
                        "  { name = \"a\"; transport = \"direct\"; address = \"127.0.0.1\"; port = "
                        "%u; priority = 10; },\n"
                        "  { name = \"b\"; transport = \"direct\"; address = \"127.0.0.1\"; port = "
                        "%u; priority = 10; } );",
                        l[0].port, l[1].port, l[2].port);
    gpointer inst = create(cfg);
    CU_ASSERT_FATAL(inst != NULL);
    const char *expect[3] = {"path a: selected", "path b: selected", "path c: selected"};
    Listener *close_after[3] = {&l[1], &l[2], NULL};
    for (int i = 0; i < 3; i++) {
        g_autoptr(Conn) c = do_connect(inst, NULL);
        CU_ASSERT_PTR_NOT_NULL(c->stream);
        if (!reports_have(c, expect[i]))
            dump(c);
        CU_ASSERT(reports_have(c, expect[i]));
        if (close_after[i])
            listener_close(close_after[i]);
    }
    g_autofree char *st = status_json(inst);
    CU_ASSERT(strstr(st, "\"active\":\"c\"") != NULL);
    CU_ASSERT_EQUAL(path_uint(st, "failovers"), 2);
    plugin()->destroy(inst);
    for (int i = 0; i < 3; i++)
        listener_close(&l[i]);
}

static void
test_all_down(void)
{
    guint16 a = pt_free_port(), b = pt_free_port();
    g_autofree char *cfg = g_strdup_printf(
        "probe_backoff_min_ms = 100; paths = (\n"
        "  { name = \"interconnect\"; transport = \"direct\"; address = \"127.0.0.1\"; port = %u;"
        "    bind_address = \"127.0.0.2\"; },\n"
        "  { name = \"vpn\"; transport = \"proxy\"; host = \"127.0.0.1\"; port = %u;"
        "    bind_address = \"127.0.0.3\"; } );",
        a, b);
    gpointer inst = create(cfg);
    CU_ASSERT_FATAL(inst != NULL);
    g_autoptr(Conn) c = do_connect(inst, NULL);
    CU_ASSERT_PTR_NULL(c->stream);
    CU_ASSERT_FATAL(c->error != NULL);
    const char *m = c->error->message;
    CU_ASSERT(strstr(m, "all 2 paths failed: ") == m);
    CU_ASSERT(strstr(m, "path interconnect (direct): cannot connect to 127.0.0.1:") != NULL);
    CU_ASSERT(strstr(m, "path vpn (proxy): proxy: cannot connect to 127.0.0.1:") != NULL);
    CU_ASSERT(strstr(m, "from 127.0.0.2") != NULL && strstr(m, "from 127.0.0.3") != NULL);
    CU_ASSERT(strstr(m, "refused") != NULL);
    g_autofree char *st = status_json(inst);
    CU_ASSERT(strstr(st, "\"active\":null") != NULL);
    CU_ASSERT(!path_state_is(inst, "interconnect", "standby"));
    CU_ASSERT(!path_state_is(inst, "vpn", "standby"));
    /* The next attempt tries them again (a stale mark must not leave the
     * sensor without a way out). */
    g_autoptr(Conn) c2 = do_connect(inst, NULL);
    CU_ASSERT(c2->error && strstr(c2->error->message, "all 2 paths failed"));
    plugin()->destroy(inst);
}

static void
test_proxy_path_probes_connect(void)
{
    PtServer *ep = pt_server_start(PT_ECHO, NULL);
    PtServer *proxy = pt_server_start(PT_PROXY, NULL);
    Listener l2 = {0};
    listener_start(&l2);
    CU_ASSERT_FATAL(ep && proxy && l2.fd >= 0);
    /* The proxy refuses CONNECT to any port but 1: TCP to it works, the path
     * does not. A probe that stopped at TCP would call it healthy. */
    pt_server_allow_port(proxy, 1);
    g_autofree char *cfg = g_strdup_printf(
        "hold_down_s = 0; probe_backoff_min_ms = 100; probe_backoff_max_ms = 100; paths = (\n"
        "  { name = \"vpn\"; transport = \"proxy\"; host = \"127.0.0.1\"; port = %u;"
        "    address = \"127.0.0.1\"; bind_address = \"127.0.0.2\"; priority = 1; },\n"
        "  { name = \"inet\"; transport = \"direct\"; address = \"127.0.0.1\"; port = %u;"
        "    priority = 2; } );",
        pt_server_port(proxy), l2.port);
    gpointer inst = create(cfg);
    CU_ASSERT_FATAL(inst != NULL);

    Conn *c = g_new0(Conn, 1);
    c->reports = g_ptr_array_new_with_free_func(g_free);
    OtsEndpoint e = {.host = "endpoint.invalid", .port = pt_server_port(ep)};
    plugin()->connect_async(inst, &e, NULL, on_report, c, on_done, c);
    while (!c->done)
        g_main_context_iteration(NULL, TRUE);
    CU_ASSERT_PTR_NOT_NULL(c->stream);
    CU_ASSERT(reports_have(c, "path inet: selected"));
    /* The proxy's report, named after the path, with its 403. */
    CU_ASSERT(reports_have(c, "|path vpn: proxy 127.0.0.1:"));
    CU_ASSERT(reports_have(c, "403"));
    /* `address` replaces the endpoint host in the CONNECT. */
    g_autofree char *req = pt_server_last_request(proxy);
    g_autofree char *want = g_strdup_printf("CONNECT 127.0.0.1:%u ", pt_server_port(ep));
    CU_ASSERT(req && strstr(req, want) == req);
    conn_free(c);

    guint before = pt_server_accepted(proxy);
    spin(600);
    CU_ASSERT(pt_server_accepted(proxy) >= before + 2);
    g_autofree char *st = status_json(inst);
    g_autofree char *pj = path_json(st, "vpn");
    CU_ASSERT(strstr(pj, "probe: proxy 127.0.0.1:") != NULL && strstr(pj, "403") != NULL);
    CU_ASSERT(!path_state_is(inst, "vpn", "standby"));

    /* The proxy lets the CONNECT through: the path is healthy again, and
     * with no hold-down the next connect takes it, through the tunnel. */
    pt_server_allow_port(proxy, 0);
    for (int i = 0; i < 100 && !path_state_is(inst, "vpn", "standby"); i++)
        spin(20);
    CU_ASSERT(path_state_is(inst, "vpn", "standby"));
    g_autoptr(Conn) c2 = g_new0(Conn, 1);
    c2->reports = g_ptr_array_new_with_free_func(g_free);
    plugin()->connect_async(inst, &e, NULL, on_report, c2, on_done, c2);
    while (!c2->done)
        g_main_context_iteration(NULL, TRUE);
    CU_ASSERT_FATAL(c2->stream != NULL);
    CU_ASSERT(reports_have(c2, "path vpn: selected"));
    CU_ASSERT(reports_have(c2, "path vpn: CONNECT 127.0.0.1:"));
    g_autoptr(GError) err = NULL;
    CU_ASSERT(pt_check_tunnel(c2->stream, "hello through the vpn path\n", &err));
    plugin()->destroy(inst);
    pt_server_stop(proxy);
    pt_server_stop(ep);
    listener_close(&l2);
}

static void
test_settings_refused(void)
{
    const struct {
        const char *text;
        const char *needle;
    } cases[] = {
        {"paths = ( { name = \"a\"; transport = \"direct\"; }, "
         "{ name = \"a\"; transport = \"direct\"; } );",
         "names must be unique"},
        {"paths = ( { name = \"a\"; transport = \"direct\"; host = \"p\"; } );",
         "host: is not a setting of a direct path"},
        {"paths = ( { name = \"a\"; transport = \"proxy\"; } );", "host: is required"},
        {"paths = ( { name = \"a\"; transport = \"proxy-chain\"; } );", "needs 1 to 16 hops"},
        {"paths = ( { name = \"a\"; transport = \"proxy\"; host = \"p\"; hops = ( { host = \"q\"; "
         "} ); } );",
         "hops: is for proxy-chain paths"},
        {"paths = ( { name = \"a\"; transport = \"direct\"; bind_address = \"nope\"; } );",
         "is not an IP address"},
        {"paths = ( { name = \"a\"; transport = \"direct\"; bind_interface = \"a/b\"; } );",
         "not a valid interface name"},
        {"probe_backoff_min_ms = 5000; probe_backoff_max_ms = 1000; paths = ( { name = \"a\"; "
         "transport = \"direct\"; } );",
         "is below probe_backoff_min_ms"},
        {"paths = ( );", "paths"},
        {"paths = ( { name = \"a\"; transport = \"carrier-pigeon\"; } );", "transport"},
        {"policy = \"round-robin\"; paths = ( { name = \"a\"; transport = \"direct\"; } );",
         "policy"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) error = NULL;
        gpointer inst = pt_create(plugin(), cases[i].text, &error);
        CU_ASSERT_PTR_NULL(inst);
        if (inst)
            plugin()->destroy(inst);
        if (!error || !strstr(error->message, cases[i].needle)) {
            fprintf(stderr, "case %u: %s\n", i, error ? error->message : "(accepted)");
            CU_FAIL("expected message missing");
        }
    }
    /* 17 paths: one too many. */
    GString *t = g_string_new("paths = ( ");
    for (int i = 0; i < 17; i++)
        g_string_append_printf(t, "%s{ name = \"p%d\"; transport = \"direct\"; }", i ? ", " : "",
                               i);
    g_string_append(t, " );");
    g_autoptr(GError) error = NULL;
    gpointer inst = pt_create(plugin(), t->str, &error);
    CU_ASSERT_PTR_NULL(inst);
    CU_ASSERT(error && strstr(error->message, "needs 1 to 16 paths"));
    g_string_free(t, TRUE);
}

static void
test_destroy_with_probes_pending(void)
{
    guint16 a = pt_free_port();
    Listener l2 = {0};
    listener_start(&l2);
    g_autofree char *cfg = two_paths(a, l2.port, 60);
    gpointer inst = create(cfg);
    CU_ASSERT_FATAL(inst != NULL);
    g_autoptr(Conn) c = do_connect(inst, NULL);
    CU_ASSERT_PTR_NOT_NULL(c->stream);
    spin(150); /* a probe is scheduled or running */
    plugin()->destroy(inst);
    spin(300); /* nothing may fire on the freed instance (ASan) */
    /* A connect cancelled before it starts fails cleanly. */
    inst = create(cfg);
    g_autoptr(GCancellable) cancel = g_cancellable_new();
    g_cancellable_cancel(cancel);
    g_autoptr(Conn) c2 = do_connect(inst, cancel);
    CU_ASSERT(g_error_matches(c2->error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    CU_ASSERT(c2->error && strstr(c2->error->message, "path p1 (direct): abandoned"));
    plugin()->destroy(inst);
    spin(50);
    listener_close(&l2);
}

static CU_TestInfo unit_tests[] = {
    {"two paths: failover, probes, fail-back after the hold-down", test_failover_and_failback},
    {"priorities and configuration order", test_priorities},
    {"all paths down: one error naming each path", test_all_down},
    {"proxy path: probes do the CONNECT; reports name the path", test_proxy_path_probes_connect},
    {"settings refused", test_settings_refused},
    {"destroy with probes pending; cancelled connect", test_destroy_with_probes_pending},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "multicloud", NULL, NULL, NULL, NULL, unit_tests                                           \
    }
#include "cunit-main.h"
