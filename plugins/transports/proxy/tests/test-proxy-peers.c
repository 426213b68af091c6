/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy and proxy-chain transports against real squid and tinyproxy on
 * loopback, each started by this program as a direct child with its own
 * conf, pid, logs and shm name in a temp dir, and stopped by pid: Basic auth
 * right and wrong (407), no credentials (407), a refused port (403), the
 * endpoint down (503), tinyproxy's 401, TLS to squid's https_port with its
 * own CA, the client-built chain squid -> tinyproxy -> squid where each hop
 * only allows the next, the chain the proxies build themselves (cache_peer +
 * never_direct) through the plain proxy transport, and the proxy list with
 * its first squid killed. The endpoint is an echo server that speaks first,
 * so a reply reader that reads ahead into the tunnel fails the test.
 * Needs root (squid's cache_effective_user) and squid, tinyproxy, htpasswd,
 * openssl (scripts/deps). */
#include "core/config/config.h"
#include "proxy-test-util.h"

#include <CUnit/CUnit.h>
#include <glob.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const OtsTransportInfo *proxy_tr;
static const OtsTransportInfo *chain_tr;
static char *lab;
static PtServer *endpoint;
static guint16 ep_port;
static guint16 dead_port; /* allowed by the squids, nothing listens */
static char *pw_sensor, *pw_wrong, *pw_tp, *pw_hop;

typedef struct {
    GSubprocess *proc;
    char *name;
    char *dir;
    guint16 port;
    guint16 tls_port;
    gboolean squid;
} Peer;

static gboolean
run(const char *const *argv)
{
    g_autoptr(GError) e = NULL;
    int status = 0;
    if (!g_spawn_sync(NULL, (char **)argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                      NULL, NULL, NULL, NULL, &status, &e) ||
        !g_spawn_check_wait_status(status, NULL)) {
        fprintf(stderr, "\n%s failed: %s\n", argv[0], e ? e->message : "exit status");
        return FALSE;
    }
    return TRUE;
}

static void
chown_tree(const char *dir, const char *owner)
{
    const char *argv[] = {"chown", "-R", owner, dir, NULL};
    run(argv);
}

static Peer *
peer_spawn(Peer *p, const char *const *argv)
{
    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
    g_autofree char *out = g_build_filename(p->dir, "stdout.log", NULL);
    g_subprocess_launcher_set_stdout_file_path(l, out);
    g_subprocess_launcher_set_stderr_file_path(l, out);
    g_autoptr(GError) e = NULL;
    p->proc = g_subprocess_launcher_spawnv(l, argv, &e);
    if (!p->proc) {
        fprintf(stderr, "\ncannot start %s: %s\n", argv[0], e->message);
        return NULL;
    }
    if (!pt_wait_port(p->port, 5000) || (p->tls_port && !pt_wait_port(p->tls_port, 2000))) {
        fprintf(stderr, "\n%s did not listen on %u within 5 s (see %s)\n", p->name, p->port, out);
        return NULL;
    }
    return p;
}

static void
shm_cleanup(const char *name)
{
    g_autofree char *pat = g_strdup_printf("/dev/shm/%s-cf__*", name);
    glob_t g;
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++)
            unlink(g.gl_pathv[i]);
        globfree(&g);
    }
}

static void
peer_stop(Peer *p)
{
    if (!p)
        return;
    if (p->proc) {
        /* SIGKILL is instant; squid's auth helpers exit on EOF. */
        g_subprocess_send_signal(p->proc, SIGKILL);
        g_subprocess_wait(p->proc, NULL, NULL);
        g_clear_object(&p->proc);
    }
    if (p->squid)
        shm_cleanup(p->name);
    g_free(p->name);
    g_free(p->dir);
    g_free(p);
}

/* A squid with Basic auth (user/password), CONNECT allowed only to @ports. */
static Peer *
squid_start(const char *name, const char *user, const char *password, const char *ports,
            gboolean https, const char *extra)
{
    Peer *p = g_new0(Peer, 1);
    p->squid = TRUE;
    p->name = g_strdup_printf("otsq%d%s", (int)getpid(), name);
    p->dir = g_build_filename(lab, name, NULL);
    g_mkdir_with_parents(p->dir, 0755);
    p->port = pt_free_port();
    g_autofree char *htp = g_build_filename(p->dir, "htpasswd", NULL);
    const char *hargv[] = {"htpasswd", "-bc", htp, user, password, NULL};
    if (!run(hargv))
        return NULL;
    g_autofree char *https_line = NULL;
    if (https) {
        p->tls_port = pt_free_port();
        https_line = g_strdup_printf("https_port 127.0.0.1:%u tls-cert=%s/proxy.crt "
                                     "tls-key=%s/proxy.key\n",
                                     p->tls_port, lab, lab);
    }
    g_autofree char *conf = g_strdup_printf(
        "http_port 127.0.0.1:%u\n%s"
        "pid_filename %s/squid.pid\ncache_log %s/cache.log\naccess_log stdio:%s/access.log\n"
        "coredump_dir %s\ncache_effective_user proxy\nvisible_hostname %s\n"
        "shutdown_lifetime 0 seconds\npinger_enable off\ndns_nameservers 127.0.0.1\n"
        "udp_outgoing_address 127.0.0.1\ncache deny all\n"
        "auth_param basic program /usr/lib/squid/basic_ncsa_auth %s\n"
        "auth_param basic children 2 startup=1 idle=1\n"
        "acl authed proxy_auth REQUIRED\nacl CONNECT method CONNECT\nacl ok_ports port %s\n"
        "http_access deny CONNECT !ok_ports\nhttp_access allow authed\nhttp_access deny all\n"
        "%s\n",
        p->port, https_line ? https_line : "", p->dir, p->dir, p->dir, p->dir, name, htp, ports,
        extra ? extra : "");
    g_autofree char *cf = g_build_filename(p->dir, "squid.conf", NULL);
    g_file_set_contents(cf, conf, -1, NULL);
    chown_tree(p->dir, "proxy:proxy");
    shm_cleanup(p->name);
    const char *argv[] = {"squid", "-N", "-n", p->name, "-f", cf, NULL};
    if (!peer_spawn(p, argv)) {
        peer_stop(p);
        return NULL;
    }
    return p;
}

static Peer *
tinyproxy_start(const char *name, const char *user, const char *password, guint16 connect_port,
                const char *extra)
{
    Peer *p = g_new0(Peer, 1);
    p->name = g_strdup(name);
    p->dir = g_build_filename(lab, name, NULL);
    g_mkdir_with_parents(p->dir, 0755);
    p->port = pt_free_port();
    g_autofree char *conf = g_strdup_printf(
        "User nobody\nGroup nogroup\nPort %u\nListen 127.0.0.1\nPidFile \"%s/tinyproxy.pid\"\n"
        "LogFile \"%s/tinyproxy.log\"\nLogLevel Info\nAllow 127.0.0.1\nBasicAuth %s %s\n"
        "ConnectPort %u\n%s\n",
        p->port, p->dir, p->dir, user, password, connect_port, extra ? extra : "");
    g_autofree char *cf = g_build_filename(p->dir, "tinyproxy.conf", NULL);
    g_file_set_contents(cf, conf, -1, NULL);
    chown_tree(p->dir, "nobody:nogroup");
    const char *argv[] = {"tinyproxy", "-d", "-c", cf, NULL};
    if (!peer_spawn(p, argv)) {
        peer_stop(p);
        return NULL;
    }
    return p;
}

static gboolean
make_pki(void)
{
    g_autofree char *ca_key = g_build_filename(lab, "ca.key", NULL);
    g_autofree char *ca_crt = g_build_filename(lab, "ca.crt", NULL);
    g_autofree char *key = g_build_filename(lab, "proxy.key", NULL);
    g_autofree char *csr = g_build_filename(lab, "proxy.csr", NULL);
    g_autofree char *crt = g_build_filename(lab, "proxy.crt", NULL);
    g_autofree char *ext = g_build_filename(lab, "proxy.ext", NULL);
    g_file_set_contents(ext,
                        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                        "extendedKeyUsage=serverAuth\n",
                        -1, NULL);
    const char *a1[] = {"openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                        "-keyout",
                        ca_key,
                        "-out",
                        ca_crt,
                        "-days",
                        "2",
                        "-subj",
                        "/CN=Proxy Test CA",
                        "-addext",
                        "basicConstraints=critical,CA:TRUE",
                        "-addext",
                        "keyUsage=critical,keyCertSign,cRLSign",
                        NULL};
    const char *a2[] = {
        "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key,   "-out",    csr,  "-subj",    "/CN=localhost",           NULL};
    const char *a3[] = {
        "openssl",         "x509", "-req", "-in",   csr, "-CA",      ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-out", crt,    "-days", "2", "-extfile", ext,    NULL};
    if (!run(a1) || !run(a2) || !run(a3))
        return FALSE;
    /* squid reads its key after dropping to `proxy`. */
    chmod(key, 0644);
    return TRUE;
}

static int
suite_init(void)
{
    if (getuid() != 0) {
        fprintf(stderr, "test-proxy-peers needs root (squid's cache_effective_user)\n");
        return 1;
    }
    proxy_tr = pt_load(PROXY_PLUGIN_PATH);
    chain_tr = pt_load(PROXY_CHAIN_PLUGIN_PATH);
    if (!proxy_tr || !chain_tr)
        return 1;
    lab = g_build_filename(pt_temp_dir(), "lab", NULL);
    g_mkdir_with_parents(lab, 0755);
    chmod(pt_temp_dir(), 0755); /* squid and tinyproxy run as other users */
    pw_sensor = pt_temp_file("pw-sensor", "s3cret!\n");
    pw_wrong = pt_temp_file("pw-wrong", "not-it\n");
    pw_tp = pt_temp_file("pw-tp", "tppw\n");
    pw_hop = pt_temp_file("pw-hop", "hoppw\n");
    endpoint = pt_server_start(PT_ECHO, NULL);
    ep_port = pt_server_port(endpoint);
    dead_port = pt_free_port();
    return make_pki() ? 0 : 1;
}

static int
suite_clean(void)
{
    pt_server_stop(endpoint);
    const char *argv[] = {"rm", "-rf", pt_temp_dir(), NULL};
    run(argv);
    return 0;
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

static void
show(const char *what, const PtResult *r)
{
    if (g_getenv("PT_VERBOSE")) {
        g_autofree char *t = pt_reports_text(r);
        fprintf(stderr, "\n%s: %s (%.1f ms)\n%s", what, r->error ? r->error->message : "OK",
                r->took_us / 1000.0, t);
    }
}

/* Connect through @tr with @conf to 127.0.0.1:@port; expects success and a
 * transparent tunnel to the echo endpoint. */
static void
expect_tunnel(const OtsTransportInfo *tr, const char *conf, const char *what, guint n_hops)
{
    gpointer inst = create_ok(tr, conf);
    g_autoptr(PtResult) r = pt_connect(tr, inst, "127.0.0.1", ep_port, NULL);
    show(what, r);
    if (r->error)
        fprintf(stderr, "\n%s: %s\n", what, r->error->message);
    CU_ASSERT_PTR_NOT_NULL(r->stream);
    if (r->stream) {
        g_autoptr(GError) e = NULL;
        gboolean ok = pt_check_tunnel(r->stream, what, &e);
        if (!ok)
            fprintf(stderr, "\n%s: tunnel: %s\n", what, e->message);
        CU_ASSERT_TRUE(ok);
    }
    for (guint i = 0; i < n_hops; i++)
        CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_CONNECT_OK, i, " 200 "));
    g_autofree char *text = pt_reports_text(r);
    CU_ASSERT_PTR_NULL(strstr(text, "s3cret"));
    pt_result_free(g_steal_pointer(&r));
    tr->destroy(inst);
}

static void
expect_failure(const OtsTransportInfo *tr, const char *conf, guint16 port, int code,
               const char *needle, const char *what)
{
    gpointer inst = create_ok(tr, conf);
    g_autoptr(PtResult) r = pt_connect(tr, inst, "127.0.0.1", port, NULL);
    show(what, r);
    CU_ASSERT_PTR_NULL(r->stream);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->error);
    gboolean ok = g_error_matches(r->error, G_IO_ERROR, code) && strstr(r->error->message, needle);
    if (!ok)
        fprintf(stderr, "\n%s: expected code %d and '%s', got %d: %s\n", what, code, needle,
                r->error->code, r->error->message);
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_PTR_NULL(strstr(r->error->message, "s3cret"));
    CU_ASSERT_PTR_NULL(strstr(r->error->message, "tppw"));
    tr->destroy(inst);
}

static void
test_squid(void)
{
    g_autofree char *ports = g_strdup_printf("%u %u", ep_port, dead_port);
    Peer *sq = squid_start("sqauth", "sensor", "s3cret!", ports, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sq);
    g_autofree char *good = g_strdup_printf("host = \"127.0.0.1\"; port = %u; user = \"sensor\"; "
                                            "password_file = \"%s\"; reply_timeout_ms = 3000;",
                                            sq->port, pw_sensor);
    expect_tunnel(proxy_tr, good, "squid basic auth", 1);
    g_autofree char *wrong = g_strdup_printf("host = \"127.0.0.1\"; port = %u; user = \"sensor\"; "
                                             "password_file = \"%s\";",
                                             sq->port, pw_wrong);
    expect_failure(proxy_tr, wrong, ep_port, G_IO_ERROR_PROXY_AUTH_FAILED,
                   "proxy authentication failed: 407 Proxy Authentication Required: the proxy "
                   "rejected the configured user and password",
                   "squid wrong password");
    g_autofree char *none = g_strdup_printf("host = \"127.0.0.1\"; port = %u;", sq->port);
    expect_failure(proxy_tr, none, ep_port, G_IO_ERROR_PROXY_NEED_AUTH,
                   "proxy authentication required: 407", "squid no credentials");
    expect_failure(proxy_tr, good, ep_port + 1, G_IO_ERROR_PROXY_NOT_ALLOWED, "403 Forbidden",
                   "squid refused port");
    expect_failure(proxy_tr, good, dead_port, G_IO_ERROR_PROXY_FAILED,
                   "the proxy could not reach 127.0.0.1", "squid endpoint down");
    peer_stop(sq);
}

static void
test_tinyproxy_401(void)
{
    Peer *tp = tinyproxy_start("tp401", "tp", "tppw", ep_port, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tp);
    g_autofree char *good = g_strdup_printf(
        "host = \"127.0.0.1\"; port = %u; user = \"tp\"; password_file = \"%s\";", tp->port, pw_tp);
    expect_tunnel(proxy_tr, good, "tinyproxy basic auth", 1);
    g_autofree char *wrong =
        g_strdup_printf("host = \"127.0.0.1\"; port = %u; user = \"tp\"; password_file = \"%s\";",
                        tp->port, pw_wrong);
    expect_failure(proxy_tr, wrong, ep_port, G_IO_ERROR_PROXY_AUTH_FAILED,
                   "proxy authentication failed: 401 Unauthorized", "tinyproxy wrong password");
    g_autofree char *none = g_strdup_printf("host = \"127.0.0.1\"; port = %u;", tp->port);
    expect_failure(proxy_tr, none, ep_port, G_IO_ERROR_PROXY_NEED_AUTH, "407",
                   "tinyproxy no credentials");
    peer_stop(tp);
}

static void
test_tls_to_squid(void)
{
    g_autofree char *ports = g_strdup_printf("%u", ep_port);
    Peer *sq = squid_start("sqtls", "sensor", "s3cret!", ports, TRUE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sq);
    g_autofree char *conf = g_strdup_printf(
        "host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; tls = true; "
        "tls_ca_file = \"%s/ca.crt\";",
        sq->tls_port, pw_sensor, lab);
    gpointer inst = create_ok(proxy_tr, conf);
    g_autoptr(PtResult) r = pt_connect(proxy_tr, inst, "127.0.0.1", ep_port, NULL);
    show("tls to squid", r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->stream);
    CU_ASSERT_TRUE(G_IS_TLS_CONNECTION(r->stream));
    CU_ASSERT_TRUE(g_pollable_input_stream_can_poll(
        G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(r->stream))));
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_TLS_DONE, 0, "TLS1."));
    CU_ASSERT_TRUE(pt_reports_have(r, OTS_HOP_CONNECT_OK, 0, " 200 "));
    g_autoptr(GError) e = NULL;
    gboolean ok = pt_check_tunnel(r->stream, "inside TLS to the proxy", &e);
    if (!ok)
        fprintf(stderr, "\ntls tunnel: %s\n", e->message);
    CU_ASSERT_TRUE(ok);
    pt_result_free(g_steal_pointer(&r));
    proxy_tr->destroy(inst);
    /* Without its CA (system CAs only) the proxy's certificate is refused. */
    g_autofree char *noca =
        g_strdup_printf("host = \"127.0.0.1\"; port = %u; tls = true;", sq->tls_port);
    expect_failure(proxy_tr, noca, ep_port, G_IO_ERROR_FAILED, "TLS to the proxy failed",
                   "tls unknown CA");
    /* Plain HTTP to the TLS port: the reply is not HTTP. */
    g_autofree char *plain = g_strdup_printf(
        "host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; "
        "reply_timeout_ms = 1500;",
        sq->tls_port, pw_sensor);
    gpointer pi = create_ok(proxy_tr, plain);
    g_autoptr(PtResult) r2 = pt_connect(proxy_tr, pi, "127.0.0.1", ep_port, NULL);
    show("plain to tls port", r2);
    CU_ASSERT_PTR_NULL(r2->stream);
    CU_ASSERT_PTR_NOT_NULL(r2->error);
    proxy_tr->destroy(pi);
    peer_stop(sq);
}

static void
test_chain_client_built(void)
{
    /* squid -> tinyproxy -> squid, each only allowing CONNECT to the next. */
    g_autofree char *p3 = g_strdup_printf("%u", ep_port);
    Peer *hop3 = squid_start("cb3", "hop", "hoppw", p3, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hop3);
    Peer *hop2 = tinyproxy_start("cb2", "tp", "tppw", hop3->port, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hop2);
    g_autofree char *p1 = g_strdup_printf("%u", hop2->port);
    Peer *hop1 = squid_start("cb1", "sensor", "s3cret!", p1, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hop1);
    g_autofree char *conf = g_strdup_printf(
        "reply_timeout_ms = 3000; hops = ("
        " { host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"tp\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"hop\"; password_file = \"%s\"; } );",
        hop1->port, pw_sensor, hop2->port, pw_tp, hop3->port, pw_hop);
    expect_tunnel(chain_tr, conf, "client-built chain", 3);
    /* hop 1 does not let the sensor skip a level. */
    g_autofree char *skip = g_strdup_printf(
        "hops = ("
        " { host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"hop\"; password_file = \"%s\"; } );",
        hop1->port, pw_sensor, hop3->port, pw_hop);
    g_autofree char *want =
        g_strdup_printf("proxy 1/2 127.0.0.1:%u: the proxy refused CONNECT", hop1->port);
    expect_failure(chain_tr, skip, ep_port, G_IO_ERROR_PROXY_NOT_ALLOWED, want,
                   "chain skipping hop 2");
    /* Wrong password at hop 3: named as hop 3 of 3. */
    g_autofree char *bad3 = g_strdup_printf(
        "hops = ("
        " { host = \"127.0.0.1\"; port = %u; user = \"sensor\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"tp\"; password_file = \"%s\"; },"
        " { host = \"127.0.0.1\"; port = %u; user = \"hop\"; password_file = \"%s\"; } );",
        hop1->port, pw_sensor, hop2->port, pw_tp, hop3->port, pw_wrong);
    g_autofree char *want3 =
        g_strdup_printf("proxy 3/3 127.0.0.1:%u: proxy authentication failed", hop3->port);
    expect_failure(chain_tr, bad3, ep_port, G_IO_ERROR_PROXY_AUTH_FAILED, want3,
                   "chain wrong password at hop 3");
    peer_stop(hop1);
    peer_stop(hop2);
    peer_stop(hop3);
}

static gboolean
file_contains(const char *path, const char *needle)
{
    g_autofree char *text = NULL;
    return g_file_get_contents(path, &text, NULL, NULL) && strstr(text, needle);
}

static void
test_chain_proxy_built(void)
{
    /* The proxies build the chain (cache_peer + never_direct, tinyproxy
     * Upstream); the sensor only knows hop 1: the plain proxy transport. */
    g_autofree char *p3 = g_strdup_printf("%u", ep_port);
    Peer *hop3 = squid_start("pb3", "hop", "hoppw", p3, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hop3);
    g_autofree char *up = g_strdup_printf("Upstream http hop:hoppw@127.0.0.1:%u", hop3->port);
    Peer *hop2 = tinyproxy_start("pb2", "tp", "tppw", ep_port, up);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hop2);
    g_autofree char *peer = g_strdup_printf(
        "cache_peer 127.0.0.1 parent %u 0 no-query no-digest no-netdb-exchange name=hop2 "
        "login=tp:tppw\nnever_direct allow all\n",
        hop2->port);
    Peer *hop1 = squid_start("pb1", "sensor", "s3cret!", p3, FALSE, peer);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hop1);
    g_autofree char *conf = g_strdup_printf("host = \"127.0.0.1\"; port = %u; user = \"sensor\"; "
                                            "password_file = \"%s\"; reply_timeout_ms = 5000;",
                                            hop1->port, pw_sensor);
    expect_tunnel(proxy_tr, conf, "proxy-built chain", 1);
    /* hop 1 logs the transaction when the tunnel closes: it went to the
     * parent, not direct. */
    g_autofree char *log1 = g_build_filename(hop1->dir, "access.log", NULL);
    g_autofree char *log3 = g_build_filename(hop3->dir, "access.log", NULL);
    gboolean parent = FALSE;
    for (int i = 0; i < 300 && !parent; i++) {
        parent = file_contains(log1, "FIRSTUP_PARENT") && file_contains(log3, "CONNECT");
        if (!parent)
            g_usleep(10000);
    }
    if (!parent)
        fprintf(stderr, "\nno FIRSTUP_PARENT in %s or no CONNECT in %s\n", log1, log3);
    CU_ASSERT_TRUE(parent);
    peer_stop(hop1);
    peer_stop(hop2);
    peer_stop(hop3);
}

static void
test_proxy_list_dead_first(void)
{
    g_autofree char *ports = g_strdup_printf("%u", ep_port);
    Peer *a = squid_start("lsA", "sensor", "s3cret!", ports, FALSE, NULL);
    Peer *b = squid_start("lsB", "sensor", "s3cret!", ports, FALSE, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    guint16 a_port = a->port;
    g_autofree char *conf = g_strdup_printf(
        "proxies = ( { host = \"127.0.0.1\"; port = %u; }, { host = \"127.0.0.1\"; port = %u; } );"
        " user = \"sensor\"; password_file = \"%s\"; reply_timeout_ms = 3000; unhealthy_s = 60;",
        a_port, b->port, pw_sensor);
    gpointer inst = create_ok(proxy_tr, conf);
    g_autoptr(PtResult) r0 = pt_connect(proxy_tr, inst, "127.0.0.1", ep_port, NULL);
    CU_ASSERT_PTR_NOT_NULL(r0->stream);
    g_autofree char *a_name = g_strdup_printf("127.0.0.1:%u", a_port);
    g_autofree char *b_name = g_strdup_printf("127.0.0.1:%u", b->port);
    CU_ASSERT_TRUE(pt_reports_have(r0, OTS_HOP_CONNECT_OK, 0, a_name));
    pt_result_free(g_steal_pointer(&r0));
    peer_stop(a); /* SIGKILL: the first proxy is dead */
    g_autoptr(PtResult) r1 = pt_connect(proxy_tr, inst, "127.0.0.1", ep_port, NULL);
    show("list, first dead", r1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r1->stream);
    CU_ASSERT_TRUE(pt_check_tunnel(r1->stream, "second squid", NULL));
    CU_ASSERT_TRUE(pt_reports_have(r1, OTS_HOP_FAILED, 0, a_name));
    CU_ASSERT_TRUE(pt_reports_have(r1, OTS_HOP_CONNECT_OK, 0, b_name));
    g_autoptr(PtResult) r2 = pt_connect(proxy_tr, inst, "127.0.0.1", ep_port, NULL);
    show("list, first remembered", r2);
    CU_ASSERT_PTR_NOT_NULL(r2->stream);
    CU_ASSERT_TRUE(pt_reports_have(r2, OTS_HOP_INFO, 0, "is marked unhealthy"));
    CU_ASSERT_FALSE(pt_reports_have(r2, OTS_HOP_FAILED, 0, NULL));
    proxy_tr->destroy(inst);
    peer_stop(b);
}

static CU_TestInfo tests[] = {
    {"squid: auth, 407, 403, 503", test_squid},
    {"tinyproxy: 401", test_tinyproxy_401},
    {"TLS to squid https_port", test_tls_to_squid},
    {"client-built chain squid-tinyproxy-squid", test_chain_client_built},
    {"proxy-built chain through the proxy transport", test_chain_proxy_built},
    {"proxy list, first squid killed", test_proxy_list_dead_first},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "proxy-peers", suite_init, suite_clean, NULL, NULL, tests                                  \
    }
#include "cunit-main.h"
