/* SPDX-License-Identifier: Apache-2.0 */
/* The direct transport against real sockets on loopback: IPv4 and IPv6,
 * DNS (through a test resolver, so no query leaves the machine), refused,
 * connect timeout, timeout shared between addresses, source address and
 * interface, cancellation, the `address` override, keepalive options and
 * settings the plugin must refuse. direct.c is compiled in; settings go
 * through the core's config loader and validator as in the daemon. */
#include "core/config/config.h"

#include <CUnit/CUnit.h>
#include <gio/gio.h>
#include <gmodule.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <otsensor/transport.h>
#include <string.h>

/* The descriptor of the compiled-in direct.c. */
G_MODULE_EXPORT const OtsPluginHeader *ots_plugin_get_info(void);

static const OtsTransportInfo *
info(void)
{
    return (const OtsTransportInfo *)ots_plugin_get_info();
}

/* ---- a resolver that never leaves the process ---------------------------- */

typedef struct {
    GResolver parent_instance;
    guint lookups;
    GResolverNameLookupFlags last_flags;
} FakeResolver;

typedef struct {
    GResolverClass parent_class;
} FakeResolverClass;

static GType fake_resolver_get_type(void);
G_DEFINE_TYPE(FakeResolver, fake_resolver, G_TYPE_RESOLVER)

static FakeResolver *fake; /* the default resolver of this test program */

static GList *
fake_answer(const char *name, GResolverNameLookupFlags flags, GError **error)
{
    const char *ips[4] = {NULL};
    if (g_str_equal(name, "cloud.test")) {
        /* IPv6 first: nothing listens there in the tests that use it. */
        ips[0] = "::1";
        ips[1] = "127.0.0.1";
    } else if (g_str_equal(name, "split.test")) {
        ips[0] = "127.0.0.1";
        ips[1] = "127.0.0.3";
    } else {
        g_set_error(error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND,
                    "Error resolving \xe2\x80\x9c%s\xe2\x80\x9d: Name or service not known", name);
        return NULL;
    }
    GList *out = NULL;
    for (guint i = 0; ips[i]; i++) {
        GInetAddress *a = g_inet_address_new_from_string(ips[i]);
        GSocketFamily f = g_inet_address_get_family(a);
        if (((flags & G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY) && f != G_SOCKET_FAMILY_IPV4) ||
            ((flags & G_RESOLVER_NAME_LOOKUP_FLAGS_IPV6_ONLY) && f != G_SOCKET_FAMILY_IPV6)) {
            g_object_unref(a);
            continue;
        }
        out = g_list_append(out, a);
    }
    if (!out)
        g_set_error(error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND,
                    "no address of that family");
    return out;
}

/* "slow.test" answers only when cancelled (or after 10 s). */
typedef struct {
    GSource *cancel;
    GSource *timer;
} Slow;

static void
slow_free(gpointer p)
{
    Slow *s = p;
    if (s->cancel) {
        g_source_destroy(s->cancel);
        g_source_unref(s->cancel);
    }
    if (s->timer) {
        g_source_destroy(s->timer);
        g_source_unref(s->timer);
    }
    g_free(s);
}

static gboolean
slow_cancelled(GCancellable *c, gpointer data)
{
    GTask *t = data;
    Slow *s = g_task_get_task_data(t);
    g_source_destroy(s->timer);
    g_task_return_new_error(t, G_IO_ERROR, G_IO_ERROR_CANCELLED, "lookup cancelled");
    return G_SOURCE_REMOVE;
}

static gboolean
slow_timer(gpointer data)
{
    GTask *t = data;
    Slow *s = g_task_get_task_data(t);
    if (s->cancel)
        g_source_destroy(s->cancel);
    g_task_return_new_error(t, G_RESOLVER_ERROR, G_RESOLVER_ERROR_TEMPORARY_FAILURE, "too slow");
    return G_SOURCE_REMOVE;
}

static void
fake_lookup_async(GResolver *r, const char *name, GResolverNameLookupFlags flags,
                  GCancellable *cancellable, GAsyncReadyCallback cb, gpointer data)
{
    FakeResolver *self = (FakeResolver *)r;
    self->lookups++;
    self->last_flags = flags;
    GTask *t = g_task_new(r, cancellable, cb, data);
    if (g_str_equal(name, "slow.test")) {
        Slow *s = g_new0(Slow, 1);
        g_task_set_task_data(t, s, slow_free);
        g_task_set_check_cancellable(t, FALSE);
        if (cancellable) {
            s->cancel = g_cancellable_source_new(cancellable);
            g_source_set_callback(s->cancel, (GSourceFunc)(void (*)(void))slow_cancelled,
                                  g_object_ref(t), g_object_unref);
            g_source_attach(s->cancel, g_task_get_context(t));
        }
        s->timer = g_timeout_source_new(10000);
        g_source_set_callback(s->timer, slow_timer, g_object_ref(t), g_object_unref);
        g_source_attach(s->timer, g_task_get_context(t));
        g_object_unref(t);
        return;
    }
    GError *e = NULL;
    GList *l = fake_answer(name, flags, &e);
    if (l)
        g_task_return_pointer(t, l, (GDestroyNotify)g_resolver_free_addresses);
    else
        g_task_return_error(t, e);
    g_object_unref(t);
}

static GList *
fake_lookup_finish(GResolver *r, GAsyncResult *res, GError **error)
{
    return g_task_propagate_pointer(G_TASK(res), error);
}

static void
fake_lookup_async_noflags(GResolver *r, const char *name, GCancellable *c, GAsyncReadyCallback cb,
                          gpointer data)
{
    fake_lookup_async(r, name, G_RESOLVER_NAME_LOOKUP_FLAGS_DEFAULT, c, cb, data);
}

static GList *
fake_lookup_sync(GResolver *r, const char *name, GCancellable *c, GError **error)
{
    ((FakeResolver *)r)->lookups++;
    return fake_answer(name, G_RESOLVER_NAME_LOOKUP_FLAGS_DEFAULT, error);
}

static void
fake_resolver_class_init(FakeResolverClass *k)
{
    GResolverClass *rk = G_RESOLVER_CLASS(k);
    rk->lookup_by_name = fake_lookup_sync;
    rk->lookup_by_name_async = fake_lookup_async_noflags;
    rk->lookup_by_name_finish = fake_lookup_finish;
    rk->lookup_by_name_with_flags_async = fake_lookup_async;
    rk->lookup_by_name_with_flags_finish = fake_lookup_finish;
}

static void
fake_resolver_init(FakeResolver *r)
{
}

static int
suite_init(void)
{
    fake = g_object_new(fake_resolver_get_type(), NULL);
    g_resolver_set_default(G_RESOLVER(fake));
    return 0;
}

static int
suite_clean(void)
{
    g_clear_object(&fake);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

static gpointer
create_from(const char *group_text, GError **error)
{
    g_autofree char *text = g_strdup_printf("sensor: { id = \"t\"; };\n"
                                            "output: { transport = \"direct\"; };\n"
                                            "transports: {\n"
                                            "  direct: {\n"
                                            "%s\n"
                                            "  };\n"
                                            "};\n",
                                            group_text);
    g_autoptr(OtsConfig) c = ots_config_load_string(text, "direct-test.conf", error);
    if (!c)
        return NULL;
    const OtsSettings *tr = ots_settings_get_group(ots_config_get_root(c), "transports");
    const OtsSettings *g = ots_settings_get_group(tr, "direct");
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    if (!ots_settings_validate(g, info()->settings, "transports.direct", error))
        return NULL;
    return info()->create(g, error);
}

static gpointer
create_ok(const char *group_text)
{
    g_autoptr(GError) error = NULL;
    gpointer inst = create_from(group_text, &error);
    if (!inst)
        fprintf(stderr, "\ncreate failed: %s\n", error->message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(inst);
    return inst;
}

typedef struct {
    guint hop;
    OtsHopStep step;
    gint64 elapsed_us;
    char *hop_name;
    char *detail;
} Rec;

static void
rec_free(gpointer p)
{
    Rec *r = p;
    g_free(r->hop_name);
    g_free(r->detail);
    g_free(r);
}

typedef struct {
    GPtrArray *recs;
    GAsyncResult *result;
    GCancellable *cancel;
    guint cancel_after_ms;
    gint64 wall_us;
} Run;

static void
on_report(const OtsHopReport *r, gpointer data)
{
    Run *run = data;
    if (g_getenv("OTS_TEST_VERBOSE"))
        fprintf(stderr, "\n  [hop %u %s] step %d +%" G_GINT64_FORMAT " us: %s", r->hop, r->hop_name,
                r->step, r->elapsed_us, r->detail);
    Rec *rec = g_new0(Rec, 1);
    rec->hop = r->hop;
    rec->step = r->step;
    rec->elapsed_us = r->elapsed_us;
    rec->hop_name = g_strdup(r->hop_name);
    rec->detail = g_strdup(r->detail);
    run->recs = run->recs ? run->recs : g_ptr_array_new_with_free_func(rec_free);
    g_ptr_array_add(run->recs, rec);
}

static void
on_done(GObject *src, GAsyncResult *res, gpointer data)
{
    Run *run = data;
    run->result = g_object_ref(res);
}

static gboolean
cancel_now(gpointer data)
{
    g_cancellable_cancel(data);
    return G_SOURCE_REMOVE;
}

static gpointer
cancel_thread(gpointer data)
{
    g_usleep(100 * 1000);
    g_cancellable_cancel(data);
    return NULL;
}

static void
run_clear(Run *run)
{
    g_clear_pointer(&run->recs, g_ptr_array_unref);
    g_clear_object(&run->result);
    g_clear_object(&run->cancel);
}

/* Connects in a private main context and spins it until the answer. */
static GIOStream *
run_connect(gpointer inst, const char *host, guint16 port, Run *run, gboolean cancel_in_thread,
            GError **error)
{
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    run->recs = g_ptr_array_new_with_free_func(rec_free);
    OtsEndpoint ep = {.host = host, .port = port};
    GThread *thread = NULL;
    if (run->cancel_after_ms && cancel_in_thread) {
        thread = g_thread_new("cancel", cancel_thread, run->cancel);
    } else if (run->cancel_after_ms) {
        GSource *t = g_timeout_source_new(run->cancel_after_ms);
        g_source_set_callback(t, cancel_now, g_object_ref(run->cancel), g_object_unref);
        g_source_attach(t, ctx);
        g_source_unref(t);
    }
    gint64 t0 = g_get_monotonic_time();
    info()->connect_async(inst, &ep, run->cancel, on_report, run, on_done, run);
    while (!run->result)
        g_main_context_iteration(ctx, TRUE);
    run->wall_us = g_get_monotonic_time() - t0;
    GIOStream *s = info()->connect_finish(inst, run->result, error);
    if (thread)
        g_thread_join(thread);
    /* Let sources the operation dropped run their destroy notifies. */
    while (g_main_context_iteration(ctx, FALSE))
        ;
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    return s;
}

static Rec *
rec(Run *run, guint i)
{
    CU_ASSERT_FATAL(i < run->recs->len);
    return g_ptr_array_index(run->recs, i);
}

/* Steps as expected, hop 0, elapsed non-decreasing and within the wall time. */
static void
check_steps(Run *run, const OtsHopStep *steps, guint n)
{
    CU_ASSERT_EQUAL(run->recs->len, n);
    if (run->recs->len != n) {
        for (guint i = 0; i < run->recs->len; i++)
            fprintf(stderr, "\n  report %u: step %d %s", i, rec(run, i)->step, rec(run, i)->detail);
        return;
    }
    gint64 prev = 0;
    for (guint i = 0; i < n; i++) {
        Rec *r = rec(run, i);
        CU_ASSERT_EQUAL(r->step, steps[i]);
        CU_ASSERT_EQUAL(r->hop, 0);
        CU_ASSERT_PTR_NOT_NULL(r->hop_name);
        CU_ASSERT_PTR_NOT_NULL(r->detail);
        CU_ASSERT(r->elapsed_us >= prev);
        CU_ASSERT(r->elapsed_us <= run->wall_us);
        prev = r->elapsed_us;
    }
}

static gboolean
contains(const char *hay, const char *needle)
{
    gboolean ok = hay && strstr(hay, needle) != NULL;
    if (!ok)
        fprintf(stderr, "\n  expected \"%s\" in \"%s\"\n", needle, hay ? hay : "(null)");
    return ok;
}

/* A failed expectation must fail the test, not crash it. */
static const char *
emsg(const GError *error)
{
    return error ? error->message : NULL;
}

static GSocket *
listener(const char *ip, guint16 port, int backlog)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GInetAddress) a = g_inet_address_new_from_string(ip);
    GSocket *s = g_socket_new(g_inet_address_get_family(a), G_SOCKET_TYPE_STREAM,
                              G_SOCKET_PROTOCOL_TCP, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(a, port);
    if (!g_socket_bind(s, sa, FALSE, &error)) {
        fprintf(stderr, "\ncannot bind a listener on %s port %u: %s%s\n", ip, port, error->message,
                g_inet_address_get_family(a) == G_SOCKET_FAMILY_IPV6
                    ? " (IPv6 loopback ::1 must be available for this test)"
                    : "");
        CU_FAIL_FATAL("listener bind failed");
    }
    g_socket_set_listen_backlog(s, backlog);
    CU_ASSERT_FATAL(g_socket_listen(s, &error));
    return s;
}

static guint16
port_of(GSocket *s)
{
    g_autoptr(GSocketAddress) a = g_socket_get_local_address(s, NULL);
    return g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(a));
}

static char *
peer_ip(GSocket *s)
{
    g_autoptr(GSocketAddress) a = g_socket_get_remote_address(s, NULL);
    return g_inet_address_to_string(g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(a)));
}

/* A listener whose accept queue is full: the next SYNs are dropped, so a
 * connect to it hangs until the client's timeout (listen(0), never accepts). */
static GSocket *
blackhole(const char *ip, guint16 port, GPtrArray *fillers)
{
    GSocket *l = listener(ip, port, 0);
    g_autoptr(GSocketAddress) target = g_socket_get_local_address(l, NULL);
    for (guint i = 0; i < 8; i++) {
        GSocket *c =
            g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
        g_socket_set_blocking(c, FALSE);
        g_ptr_array_add(fillers, c);
        g_autoptr(GError) e = NULL;
        if (g_socket_connect(c, target, NULL, &e))
            continue;
        CU_ASSERT_FATAL(g_error_matches(e, G_IO_ERROR, G_IO_ERROR_PENDING));
        if (!g_socket_condition_timed_wait(c, G_IO_OUT, 200 * 1000, NULL, NULL))
            return l; /* this one hangs: the queue is full */
    }
    CU_FAIL_FATAL("could not fill the accept queue of a listen(0) socket");
    return l;
}

/* The stream works both ways and is pollable (the TLS layer needs it). */
static void
check_stream(GIOStream *s, GSocket *server_side)
{
    GInputStream *in = g_io_stream_get_input_stream(s);
    GOutputStream *out = g_io_stream_get_output_stream(s);
    CU_ASSERT(G_IS_POLLABLE_INPUT_STREAM(in));
    CU_ASSERT(G_IS_POLLABLE_OUTPUT_STREAM(out));
    CU_ASSERT(g_pollable_input_stream_can_poll(G_POLLABLE_INPUT_STREAM(in)));
    CU_ASSERT(g_pollable_output_stream_can_poll(G_POLLABLE_OUTPUT_STREAM(out)));
    CU_ASSERT_FALSE(g_pollable_input_stream_is_readable(G_POLLABLE_INPUT_STREAM(in)));
    gsize n = 0;
    CU_ASSERT(g_output_stream_write_all(out, "ping", 4, &n, NULL, NULL));
    char buf[8] = {0};
    CU_ASSERT_EQUAL(g_socket_receive(server_side, buf, 4, NULL, NULL), 4);
    CU_ASSERT_EQUAL(memcmp(buf, "ping", 4), 0);
    CU_ASSERT_EQUAL(g_socket_send(server_side, "pong", 4, NULL, NULL), 4);
    memset(buf, 0, sizeof buf);
    CU_ASSERT(g_input_stream_read_all(in, buf, 4, &n, NULL, NULL));
    CU_ASSERT_EQUAL(memcmp(buf, "pong", 4), 0);
}

static GSocket *
socket_of(GIOStream *s)
{
    CU_ASSERT_FATAL(G_IS_SOCKET_CONNECTION(s));
    return g_socket_connection_get_socket(G_SOCKET_CONNECTION(s));
}

/* ---- tests ----------------------------------------------------------------- */

static void
test_connect_ipv4(void)
{
    g_autoptr(GSocket) l = listener("127.0.0.1", 0, 16);
    gpointer inst = info()->create(NULL, NULL); /* no group: all defaults */
    CU_ASSERT_PTR_NOT_NULL_FATAL(inst);
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_NULL(error);
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_TCP_CONNECTED};
    check_steps(&run, steps, 2);
    g_autofree char *hop = g_strdup_printf("127.0.0.1:%u", port_of(l));
    CU_ASSERT_STRING_EQUAL(rec(&run, 0)->hop_name, hop);
    CU_ASSERT(contains(rec(&run, 0)->detail, "IP literal, no DNS"));
    CU_ASSERT_EQUAL(fake->lookups, 0);

    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(server);
    /* The report names both ends as the server sees them. */
    g_autoptr(GSocketAddress) local = g_socket_get_local_address(socket_of(s), NULL);
    guint16 lport = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
    g_autofree char *ends = g_strdup_printf("127.0.0.1:%u -> 127.0.0.1:%u", lport, port_of(l));
    CU_ASSERT(contains(rec(&run, 1)->detail, ends));
    CU_ASSERT(contains(rec(&run, 1)->detail, "tcp "));
    g_autoptr(GSocketAddress) peer = g_socket_get_remote_address(server, NULL);
    CU_ASSERT_EQUAL(g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(peer)), lport);
    check_stream(s, server);

    /* Defaults: keepalive on, 60 s idle, 15 s interval, 4 probes. */
    GSocket *sock = socket_of(s);
    CU_ASSERT(g_socket_get_keepalive(sock));
    gint v = 0;
    CU_ASSERT(g_socket_get_option(sock, IPPROTO_TCP, TCP_KEEPIDLE, &v, NULL) && v == 60);
    CU_ASSERT(g_socket_get_option(sock, IPPROTO_TCP, TCP_KEEPINTVL, &v, NULL) && v == 15);
    CU_ASSERT(g_socket_get_option(sock, IPPROTO_TCP, TCP_KEEPCNT, &v, NULL) && v == 4);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_connect_ipv6(void)
{
    g_autoptr(GSocket) l = listener("::1", 0, 16);
    gpointer inst = create_ok("family = \"ipv6\";");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "::1", port_of(l), &run, FALSE, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_TCP_CONNECTED};
    check_steps(&run, steps, 2);
    g_autofree char *hop = g_strdup_printf("[::1]:%u", port_of(l));
    CU_ASSERT_STRING_EQUAL(rec(&run, 1)->hop_name, hop);
    g_autofree char *remote = g_strdup_printf("-> [::1]:%u", port_of(l));
    CU_ASSERT(contains(rec(&run, 1)->detail, remote));
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(server);
    g_autofree char *peer = peer_ip(server);
    CU_ASSERT_STRING_EQUAL(peer, "::1");
    check_stream(s, server);
    run_clear(&run);
    info()->destroy(inst);
}

/* cloud.test -> ::1 (nothing listens) then 127.0.0.1: falls through. */
static void
test_dns_and_fallback(void)
{
    g_autoptr(GSocket) l = listener("127.0.0.1", 0, 16);
    guint16 port = port_of(l);
    /* Nothing listens on ::1 at that port (bound, not listening: refused). */
    g_autoptr(GSocket) closed6 =
        g_socket_new(G_SOCKET_FAMILY_IPV6, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
    g_autoptr(GInetAddress) lo6 = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV6);
    g_autoptr(GSocketAddress) sa6 = g_inet_socket_address_new(lo6, port);
    CU_ASSERT_FATAL(g_socket_bind(closed6, sa6, FALSE, NULL));

    gpointer inst = create_ok("");
    guint before = fake->lookups;
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "cloud.test", port, &run, FALSE, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(fake->lookups, before + 1);
    CU_ASSERT_EQUAL(fake->last_flags, G_RESOLVER_NAME_LOOKUP_FLAGS_DEFAULT);
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_INFO, OTS_HOP_TCP_CONNECTED};
    check_steps(&run, steps, 3);
    g_autofree char *hop = g_strdup_printf("cloud.test:%u", port);
    CU_ASSERT_STRING_EQUAL(rec(&run, 0)->hop_name, hop);
    CU_ASSERT(contains(rec(&run, 0)->detail, "cloud.test -> ::1, 127.0.0.1"));
    CU_ASSERT(contains(rec(&run, 1)->detail, "connection refused"));
    CU_ASSERT(contains(rec(&run, 1)->detail, "trying the next address"));
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(server);
    check_stream(s, server);
    run_clear(&run);
    info()->destroy(inst);

    /* family = ipv4 asks the resolver for IPv4 only. */
    inst = create_ok("family = \"ipv4\";");
    g_autoptr(GIOStream) s4 = run_connect(inst, "cloud.test", port, &run, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL(s4);
    CU_ASSERT_EQUAL(fake->last_flags, G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY);
    static const OtsHopStep steps4[] = {OTS_HOP_RESOLVED, OTS_HOP_TCP_CONNECTED};
    check_steps(&run, steps4, 2);
    CU_ASSERT(contains(rec(&run, 0)->detail, "cloud.test -> 127.0.0.1 ("));
    g_autoptr(GSocket) server4 = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(server4);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_dns_failure(void)
{
    gpointer inst = create_ok("");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "nowhere.test", 443, &run, FALSE, &error);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_HOST_NOT_FOUND));
    CU_ASSERT(contains(emsg(error), "cannot resolve nowhere.test"));
    CU_ASSERT(contains(emsg(error), "Name or service not known"));
    static const OtsHopStep steps[] = {OTS_HOP_FAILED};
    check_steps(&run, steps, 1);
    CU_ASSERT_STRING_EQUAL(rec(&run, 0)->detail, emsg(error) ? emsg(error) : "(no error)");
    run_clear(&run);

    /* Not even a host name: refused before any lookup. */
    guint before = fake->lookups;
    g_clear_error(&error);
    CU_ASSERT_PTR_NULL(run_connect(inst, "bad name!", 443, &run, FALSE, &error));
    CU_ASSERT(contains(emsg(error), "not a valid host name"));
    CU_ASSERT_EQUAL(fake->lookups, before);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_refused(void)
{
    /* A bound socket that does not listen: its port answers RST. */
    g_autoptr(GSocket) closed =
        g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(lo, 0);
    CU_ASSERT_FATAL(g_socket_bind(closed, sa, FALSE, NULL));
    guint16 port = port_of(closed);

    gpointer inst = create_ok("connect_timeout_ms = 5000;");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "127.0.0.1", port, &run, FALSE, &error);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED));
    g_autofree char *msg = g_strdup_printf("cannot connect to 127.0.0.1:%u: 127.0.0.1:%u: "
                                           "connection refused (after",
                                           port, port);
    CU_ASSERT(contains(emsg(error), msg));
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_FAILED};
    check_steps(&run, steps, 2);
    CU_ASSERT_STRING_EQUAL(rec(&run, 1)->detail, emsg(error) ? emsg(error) : "(no error)");
    CU_ASSERT(run.wall_us < 1000 * 1000); /* refused is immediate, not a timeout */
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_timeout(void)
{
    g_autoptr(GPtrArray) fillers = g_ptr_array_new_with_free_func(g_object_unref);
    g_autoptr(GSocket) l = blackhole("127.0.0.1", 0, fillers);
    gpointer inst = create_ok("connect_timeout_ms = 300;");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, &error);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
    CU_ASSERT(contains(emsg(error), "timed out (after"));
    CU_ASSERT(contains(emsg(error), "connect_timeout_ms = 300"));
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_FAILED};
    check_steps(&run, steps, 2);
    /* Honoured within tolerance: not before 300 ms, well before the
     * kernel's own SYN retries would end it. */
    CU_ASSERT(rec(&run, 1)->elapsed_us >= 300 * 1000);
    CU_ASSERT(run.wall_us >= 300 * 1000);
    CU_ASSERT(run.wall_us < 1000 * 1000);
    run_clear(&run);
    info()->destroy(inst);
}

/* split.test -> 127.0.0.1 (silent), 127.0.0.3 (listening): the first gets
 * half of the budget, the second connects within the rest. */
static void
test_timeout_shared(void)
{
    g_autoptr(GPtrArray) fillers = g_ptr_array_new_with_free_func(g_object_unref);
    g_autoptr(GSocket) hole = blackhole("127.0.0.1", 0, fillers);
    guint16 port = port_of(hole);
    g_autoptr(GSocket) l = listener("127.0.0.3", port, 16);
    gpointer inst = create_ok("connect_timeout_ms = 1000;");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "split.test", port, &run, FALSE, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_INFO, OTS_HOP_TCP_CONNECTED};
    check_steps(&run, steps, 3);
    CU_ASSERT(contains(rec(&run, 1)->detail, "timed out (after"));
    CU_ASSERT(rec(&run, 1)->elapsed_us >= 480 * 1000);
    CU_ASSERT(rec(&run, 1)->elapsed_us < 900 * 1000);
    g_autofree char *remote = g_strdup_printf("-> 127.0.0.3:%u", port);
    CU_ASSERT(contains(rec(&run, 2)->detail, remote));
    CU_ASSERT(run.wall_us < 1000 * 1000);
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(server);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_bind_address(void)
{
    g_autoptr(GSocket) l = listener("127.0.0.1", 0, 16);
    gpointer inst = create_ok("bind_address = \"127.0.0.2\";");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(server);
    g_autofree char *peer = peer_ip(server);
    CU_ASSERT_STRING_EQUAL(peer, "127.0.0.2");
    CU_ASSERT(contains(rec(&run, 1)->detail, "127.0.0.2:"));
    run_clear(&run);

    /* An IPv4 source cannot reach an IPv6 endpoint: said so, no attempt. */
    g_clear_error(&error);
    CU_ASSERT_PTR_NULL(run_connect(inst, "::1", port_of(l), &run, FALSE, &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED));
    CU_ASSERT(contains(emsg(error), "bind_address's family (IPv4)"));
    CU_ASSERT(contains(rec(&run, 0)->detail, "::1 (skipped: not IPv4)"));
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_FAILED};
    check_steps(&run, steps, 2);
    run_clear(&run);
    info()->destroy(inst);

    /* An address the host does not have: bind fails, clearly. */
    inst = create_ok("bind_address = \"192.0.2.77\";");
    g_clear_error(&error);
    CU_ASSERT_PTR_NULL(run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, &error));
    CU_ASSERT(contains(emsg(error), "bind_address 192.0.2.77: cannot bind"));
    check_steps(&run, steps, 2);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_bind_interface(void)
{
    g_autoptr(GSocket) l = listener("127.0.0.1", 0, 16);
    gpointer inst = create_ok("bind_interface = \"lo\";");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, &error);
    if (!s)
        fprintf(stderr, "\n  bind_interface lo: %s\n", error->message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT(contains(rec(&run, 1)->detail, "interface lo"));
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(server);
    run_clear(&run);
    info()->destroy(inst);

    inst = create_ok("bind_interface = \"nosuchif0\";");
    g_clear_error(&error);
    CU_ASSERT_PTR_NULL(run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, &error));
    CU_ASSERT(contains(emsg(error), "bind_interface nosuchif0: no such network interface"));
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_FAILED};
    check_steps(&run, steps, 2);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_cancel(void)
{
    g_autoptr(GPtrArray) fillers = g_ptr_array_new_with_free_func(g_object_unref);
    g_autoptr(GSocket) hole = blackhole("127.0.0.1", 0, fillers);
    gpointer inst = create_ok("connect_timeout_ms = 5000;");
    g_autoptr(GError) error = NULL;

    /* During the TCP connect, from another thread. */
    Run run = {.cancel = g_cancellable_new(), .cancel_after_ms = 100};
    CU_ASSERT_PTR_NULL(run_connect(inst, "127.0.0.1", port_of(hole), &run, TRUE, &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    CU_ASSERT(contains(emsg(error), "cancelled after"));
    CU_ASSERT(run.wall_us >= 90 * 1000 && run.wall_us < 1000 * 1000);
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_FAILED};
    check_steps(&run, steps, 2);
    run_clear(&run);

    /* During DNS (slow.test answers only when cancelled). */
    g_clear_error(&error);
    run = (Run){.cancel = g_cancellable_new(), .cancel_after_ms = 100};
    CU_ASSERT_PTR_NULL(run_connect(inst, "slow.test", 443, &run, FALSE, &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    CU_ASSERT(run.wall_us < 1000 * 1000);
    static const OtsHopStep fail_only[] = {OTS_HOP_FAILED};
    check_steps(&run, fail_only, 1);
    run_clear(&run);

    /* Already cancelled: nothing starts. */
    g_clear_error(&error);
    run = (Run){.cancel = g_cancellable_new()};
    g_cancellable_cancel(run.cancel);
    guint before = fake->lookups;
    CU_ASSERT_PTR_NULL(run_connect(inst, "cloud.test", 443, &run, FALSE, &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    CU_ASSERT(contains(emsg(error), "before it started"));
    CU_ASSERT_EQUAL(fake->lookups, before);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_dns_timeout(void)
{
    gpointer inst = create_ok("connect_timeout_ms = 200;");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    CU_ASSERT_PTR_NULL(run_connect(inst, "slow.test", 443, &run, FALSE, &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
    CU_ASSERT(contains(emsg(error), "cannot resolve slow.test: no DNS answer"));
    CU_ASSERT(run.wall_us >= 200 * 1000 && run.wall_us < 1000 * 1000);
    run_clear(&run);
    info()->destroy(inst);
}

/* A private endpoint: the host stays cloud.test (for TLS), the TCP goes to
 * 127.0.0.1 and the configured port, without DNS. */
static void
test_address_override(void)
{
    g_autoptr(GSocket) l = listener("127.0.0.1", 0, 16);
    g_autofree char *group =
        g_strdup_printf("address = \"127.0.0.1\"; port = %u; keepalive = false;", port_of(l));
    gpointer inst = create_ok(group);
    guint before = fake->lookups;
    Run run = {0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) s = run_connect(inst, "cloud.test", 443, &run, FALSE, &error);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(fake->lookups, before);
    static const OtsHopStep steps[] = {OTS_HOP_RESOLVED, OTS_HOP_TCP_CONNECTED};
    check_steps(&run, steps, 2);
    g_autofree char *hop = g_strdup_printf("127.0.0.1:%u", port_of(l));
    CU_ASSERT_STRING_EQUAL(rec(&run, 0)->hop_name, hop);
    CU_ASSERT(contains(rec(&run, 0)->detail, "endpoint cloud.test"));
    CU_ASSERT_FALSE(g_socket_get_keepalive(socket_of(s)));
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(server);
    check_stream(s, server);
    run_clear(&run);
    info()->destroy(inst);
}

static void
test_keepalive_options(void)
{
    g_autoptr(GSocket) l = listener("127.0.0.1", 0, 16);
    gpointer inst = create_ok("keepalive_idle_s = 30; keepalive_interval_s = 5;"
                              " keepalive_count = 3;");
    Run run = {0};
    g_autoptr(GIOStream) s = run_connect(inst, "127.0.0.1", port_of(l), &run, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    GSocket *sock = socket_of(s);
    gint v = 0;
    CU_ASSERT(g_socket_get_keepalive(sock));
    CU_ASSERT(g_socket_get_option(sock, IPPROTO_TCP, TCP_KEEPIDLE, &v, NULL) && v == 30);
    CU_ASSERT(g_socket_get_option(sock, IPPROTO_TCP, TCP_KEEPINTVL, &v, NULL) && v == 5);
    CU_ASSERT(g_socket_get_option(sock, IPPROTO_TCP, TCP_KEEPCNT, &v, NULL) && v == 3);
    g_autoptr(GSocket) server = g_socket_accept(l, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(server);
    run_clear(&run);
    info()->destroy(inst);
}

/* destroy() while a connect is in flight, then cancel: no use after free. */
static void
test_destroy_while_connecting(void)
{
    g_autoptr(GPtrArray) fillers = g_ptr_array_new_with_free_func(g_object_unref);
    g_autoptr(GSocket) hole = blackhole("127.0.0.1", 0, fillers);
    gpointer inst = create_ok("connect_timeout_ms = 5000; bind_address = \"127.0.0.2\";");
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    Run run = {.cancel = g_cancellable_new()};
    OtsEndpoint ep = {.host = "127.0.0.1", .port = port_of(hole)};
    info()->connect_async(inst, &ep, run.cancel, on_report, &run, on_done, &run);
    info()->destroy(inst);
    g_cancellable_cancel(run.cancel);
    while (!run.result)
        g_main_context_iteration(ctx, TRUE);
    g_autoptr(GError) error = NULL;
    CU_ASSERT_PTR_NULL(g_task_propagate_pointer(G_TASK(run.result), &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    while (g_main_context_iteration(ctx, FALSE))
        ;
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    run_clear(&run);
}

static void
expect_rejected(const char *group, const char *const *needles)
{
    g_autoptr(GError) error = NULL;
    gpointer inst = create_from(group, &error);
    CU_ASSERT_PTR_NULL(inst);
    if (inst) {
        fprintf(stderr, "\n  accepted: %s\n", group);
        info()->destroy(inst);
        return;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(error);
    for (guint i = 0; needles[i]; i++)
        CU_ASSERT(contains(emsg(error), needles[i]));
}

static void
test_bad_settings(void)
{
    /* Refused by the plugin's create(), with the file and line. */
    expect_rejected("bind_address = \"not-an-ip\";",
                    (const char *const[]){"direct-test.conf:", "bind_address",
                                          "'not-an-ip' is not an IP address", NULL});
    expect_rejected("address = \"127.0.0.9:443\";",
                    (const char *const[]){"address", "neither an IP address nor a host name",
                                          "give the port with `port`", NULL});
    expect_rejected("address = \"bad_host..name\";",
                    (const char *const[]){"neither an IP address nor a host name", NULL});
    expect_rejected("family = \"ipv6\"; bind_address = \"127.0.0.2\";",
                    (const char *const[]){"bind_address",
                                          "127.0.0.2 is an IPv4 address but family is ipv6", NULL});
    expect_rejected("family = \"ipv4\"; address = \"::1\";",
                    (const char *const[]){"::1 is an IPv6 address but family is ipv4", NULL});
    expect_rejected("bind_interface = \"eth0/1\";",
                    (const char *const[]){"bind_interface", "not a valid interface name", NULL});
    /* Refused by the table the plugin declares (the core validates it). */
    expect_rejected("connect_timeout_ms = 50;",
                    (const char *const[]){"connect_timeout_ms", "out of range", NULL});
    expect_rejected("family = \"ipv5\";", (const char *const[]){"family", "ipv5", NULL});
    expect_rejected("port = 70000;", (const char *const[]){"port", "out of range", NULL});
    expect_rejected("bind_interface = \"averyveryverylongname\";",
                    (const char *const[]){"bind_interface", NULL});
    expect_rejected("adress = \"127.0.0.1\";", (const char *const[]){"adress", "address", NULL});
    expect_rejected("keepalive = \"yes\";", (const char *const[]){"keepalive", NULL});

    /* And the endpoint must name a host and a port. */
    gpointer inst = create_ok("");
    Run run = {0};
    g_autoptr(GError) error = NULL;
    CU_ASSERT_PTR_NULL(run_connect(inst, "127.0.0.1", 0, &run, FALSE, &error));
    CU_ASSERT(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT));
    CU_ASSERT(contains(emsg(error), "no port to connect to"));
    run_clear(&run);
    info()->destroy(inst);
}

/* The built module carries the descriptor the core loads. */
static void
test_module(void)
{
    GModule *m = g_module_open(DIRECT_PLUGIN_PATH, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
    if (!m)
        fprintf(stderr, "\n  %s\n", g_module_error());
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const OtsPluginHeader *(*get)(void) = NULL;
    CU_ASSERT(g_module_symbol(m, "ots_plugin_get_info", (gpointer *)&get));
    CU_ASSERT_PTR_NOT_NULL_FATAL(get);
    const OtsTransportInfo *t = (const OtsTransportInfo *)get();
    CU_ASSERT_EQUAL(t->abi_major, OTS_TRANSPORT_ABI_MAJOR);
    CU_ASSERT_EQUAL(t->kind, OTS_PLUGIN_KIND_TRANSPORT);
    CU_ASSERT_STRING_EQUAL(t->name, "direct");
    CU_ASSERT_EQUAL(t->flags & OTS_TRANSPORT_FLAG_RAW, 0);
    CU_ASSERT_PTR_NOT_NULL(t->settings);
    CU_ASSERT(t->create && t->destroy && t->connect_async && t->connect_finish);
    gpointer other = NULL;
    CU_ASSERT_FALSE(g_module_symbol(m, "direct_create", &other));
    g_module_close(m);
}

static CU_TestInfo direct_tests[] = {
    {"connect IPv4 127.0.0.1, reports, keepalive defaults", test_connect_ipv4},
    {"connect IPv6 ::1", test_connect_ipv6},
    {"DNS name, fallback to the next address, family", test_dns_and_fallback},
    {"DNS failure", test_dns_failure},
    {"connection refused", test_refused},
    {"connect timeout honoured", test_timeout},
    {"timeout shared between addresses", test_timeout_shared},
    {"bind_address", test_bind_address},
    {"bind_interface", test_bind_interface},
    {"cancellation", test_cancel},
    {"DNS timeout", test_dns_timeout},
    {"address override", test_address_override},
    {"keepalive options", test_keepalive_options},
    {"destroy while connecting", test_destroy_while_connecting},
    {"bad settings", test_bad_settings},
    {"built module", test_module},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "transport-direct", suite_init, suite_clean, NULL, NULL, direct_tests                      \
    }
#include "cunit-main.h"
