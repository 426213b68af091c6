/* SPDX-License-Identifier: Apache-2.0 */
/* TLS and the uplink against real peers on loopback: `openssl s_server`
 * for the TLS verification cases, and tests/unit/uplink/peer.py (python3's
 * ssl, i.e. OpenSSL) as a scripted HTTPS ingestion endpoint. The PKI is
 * generated at run time by mkpki.sh. Needs openssl and python3. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config/config.h"
#include "core/spool/spool.h"
#include "core/uplink/http.h"
#include "core/uplink/tls.h"
#include "core/uplink/uplink.h"

#include <CUnit/CUnit.h>
#include <signal.h>
#include <sys/prctl.h>

#define PY "/usr/bin/python3"

static char *tmpdir;
static char *srcdir;

static char *
pki(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static GBytes *
pki_bytes(const char *name)
{
    g_autofree char *p = pki(name);
    char *data;
    gsize len;
    g_assert(g_file_get_contents(p, &data, &len, NULL));
    return g_bytes_new_take(data, len);
}

static int
suite_init(void)
{
    const char *root = g_getenv("OTS_SOURCE_ROOT");
    g_autoptr(GError) err = NULL;
    int status = 0;

    srcdir = g_build_filename(root ? root : ".", "tests", "unit", "uplink", NULL);
    tmpdir = g_dir_make_tmp("ots-uplink-XXXXXX", &err);
    if (!tmpdir)
        return 1;
    g_autofree char *script = g_build_filename(srcdir, "mkpki.sh", NULL);
    char *argv[] = {"/bin/sh", script, tmpdir, NULL};
    if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL, &status, &err) ||
        !g_spawn_check_wait_status(status, NULL)) {
        fprintf(stderr, "mkpki.sh failed: %s\n", err ? err->message : "exit status");
        return 1;
    }
    return 0;
}

static int
suite_clean(void)
{
    if (tmpdir) {
        char *argv[] = {"/bin/rm", "-rf", tmpdir, NULL};
        g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL, NULL, NULL);
    }
    g_clear_pointer(&tmpdir, g_free);
    g_clear_pointer(&srcdir, g_free);
    return 0;
}

/* --- peers --- */

typedef struct {
    GPid pid;
    guint16 port;
} Peer;

static gboolean
port_open(guint16 port)
{
    g_autoptr(GSocketClient) c = g_socket_client_new();
    g_socket_client_set_enable_proxy(c, FALSE);
    g_autoptr(GSocketConnection) conn =
        g_socket_client_connect_to_host(c, "127.0.0.1", port, NULL, NULL);
    return conn != NULL;
}

static gboolean
child_alive(GPid pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

static void
peer_stop(Peer *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
        g_spawn_close_pid(p->pid);
    }
    p->pid = 0;
}

/* Peers must not outlive a test that aborts (an assertion, a sanitizer). */
static void
die_with_parent(gpointer data)
{
    (void)data;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* openssl s_server -accept 127.0.0.1:PORT -www ARGS...: a free port below
 * 32768 is tried until the server is up. */
static gboolean
s_server_start(Peer *p, const char *const *args)
{
    for (guint attempt = 0; attempt < 20; attempt++) {
        guint16 port = (guint16)g_random_int_range(20000, 32000);
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(argv, g_strdup("/usr/bin/openssl"));
        g_ptr_array_add(argv, g_strdup("s_server"));
        g_ptr_array_add(argv, g_strdup("-accept"));
        g_ptr_array_add(argv, g_strdup_printf("127.0.0.1:%u", port));
        g_ptr_array_add(argv, g_strdup("-www"));
        g_ptr_array_add(argv, g_strdup("-quiet"));
        for (guint i = 0; args[i]; i++)
            g_ptr_array_add(argv,
                            g_str_has_prefix(args[i], "@") ? pki(args[i] + 1) : g_strdup(args[i]));
        g_ptr_array_add(argv, NULL);
        int devnull = open("/dev/null", O_WRONLY);
        GPid pid;
        gboolean ok =
            g_spawn_async_with_fds(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                   die_with_parent, NULL, &pid, -1, devnull, devnull, NULL);
        close(devnull);
        if (!ok)
            return FALSE;
        for (guint i = 0; i < 300 && child_alive(pid); i++) {
            if (port_open(port)) {
                p->pid = pid;
                p->port = port;
                return TRUE;
            }
            g_usleep(10000);
        }
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return FALSE;
}

/* peer.py with @script; prints its port. */
static gboolean
py_peer_start(Peer *p, const char *script, gboolean require_client_cert, const char *log)
{
    g_autofree char *py = g_build_filename(srcdir, "peer.py", NULL);
    g_autofree char *cert = pki("server.crt");
    g_autofree char *key = pki("server.key");
    g_autofree char *ca = pki("ca.crt");
    g_autofree char *script_arg = g_strdup_printf("--script=%s", script);
    char *argv[] = {PY,  py,      "--cert",    cert,       "--key",
                    key, "--log", (char *)log, script_arg, require_client_cert ? "--ca" : NULL,
                    ca,  NULL};
    int out = -1;
    GPid pid;

    if (!g_spawn_async_with_pipes(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, die_with_parent,
                                  NULL, &pid, NULL, &out, NULL, NULL))
        return FALSE;
    char buf[16] = {0};
    gsize n = 0;
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(out, buf + n, 1);
        if (r <= 0 || buf[n] == '\n')
            break;
        n++;
    }
    close(out);
    p->pid = pid;
    p->port = (guint16)g_ascii_strtoull(buf, NULL, 10);
    for (guint i = 0; i < 300 && p->port; i++) {
        if (port_open(p->port))
            return TRUE;
        g_usleep(10000);
    }
    peer_stop(p);
    return FALSE;
}

/* --- TLS alone --- */

typedef struct {
    gboolean done;
    GAsyncResult *res;
} Wait;

static void
on_done(GObject *src, GAsyncResult *res, gpointer data)
{
    Wait *w = data;
    w->res = g_object_ref(res);
    w->done = TRUE;
}

static void
wait_for(Wait *w)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!w->done && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_assert(w->done);
}

typedef struct {
    const char *ca;   /* PKI file names */
    const char *cert; /* NULL: no client certificate */
    const char *key;
    const char *verify_name;
    gboolean bad_pin;
    gboolean good_pin;
    gboolean request; /* write a GET and read the answer */
} TlsCase;

/* Returns the error, or NULL on success; *@desc: the session description. */
static GError *
tls_try(guint16 port, const TlsCase *c, char **desc)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_socket_client_set_enable_proxy(client, FALSE);
    GError *err = NULL;
    g_autoptr(GSocketConnection) conn =
        g_socket_client_connect_to_host(client, "127.0.0.1", port, NULL, &err);
    if (!conn)
        return err;
    g_autoptr(GBytes) ca = pki_bytes(c->ca);
    g_autoptr(GBytes) cert = c->cert ? pki_bytes(c->cert) : NULL;
    g_autoptr(GBytes) key = c->key ? pki_bytes(c->key) : NULL;
    g_autoptr(OtsTlsCredentials) cred =
        ots_tls_credentials_new(ca, c->ca, cert, c->cert, key, c->key, &err);
    if (!cred)
        return err;
    guint8 pin[1][32];
    if (c->good_pin) {
        g_autofree char *p = pki("server.pin");
        g_autofree char *txt = NULL;
        g_assert(g_file_get_contents(p, &txt, NULL, NULL));
        g_autofree char *full = g_strconcat("sha256//", g_strstrip(txt), NULL);
        g_assert(ots_tls_parse_pin(full, pin[0], NULL));
    } else {
        memset(pin[0], 0xab, 32);
    }
    OtsTlsParams params = {.credentials = cred,
                           .verify_name = c->verify_name,
                           .pins = (const guint8(*)[32])pin,
                           .n_pins = (c->bad_pin || c->good_pin) ? 1 : 0};
    g_autoptr(OtsTlsSession) s = ots_tls_session_new(G_IO_STREAM(conn), &params, &err);
    if (!s)
        return err;
    Wait w = {0};
    ots_tls_session_handshake_async(s, NULL, on_done, &w);
    wait_for(&w);
    gboolean ok = ots_tls_session_handshake_finish(s, w.res, &err);
    g_object_unref(w.res);
    if (!ok)
        return err;
    if (desc)
        *desc = ots_tls_session_get_description(s);
    if (c->request) {
        static const char req[] = "GET / HTTP/1.0\r\n\r\n";
        Wait ww = {0};
        ots_tls_session_write_all_async(s, (const guint8 *)req, strlen(req), NULL, on_done, &ww);
        wait_for(&ww);
        ok = ots_tls_session_write_all_finish(s, ww.res, &err);
        g_object_unref(ww.res);
        if (!ok)
            return err;
        guint8 buf[256];
        Wait wr = {0};
        ots_tls_session_read_async(s, buf, sizeof(buf), NULL, on_done, &wr);
        wait_for(&wr);
        gssize n = ots_tls_session_read_finish(s, wr.res, &err);
        g_object_unref(wr.res);
        if (n < 0)
            return err;
        if (n < 12 || memcmp(buf, "HTTP/1.0 200", 12) != 0)
            return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_FAILED, "unexpected answer");
    }
    ots_tls_session_close(s);
    return NULL;
}

static const char *const mtls_server[] = {
    "-cert",   "@server.crt", "-key", "@server.key",          "-CAfile",
    "@ca.crt", "-Verify",     "2",    "-verify_return_error", NULL};

static void
test_tls_good(void)
{
    Peer p = {0};
    CU_ASSERT_FATAL(s_server_start(&p, mtls_server));
    g_autofree char *desc = NULL;
    TlsCase c = {.ca = "ca.crt",
                 .cert = "client.crt",
                 .key = "client.key",
                 .verify_name = "cloud.test",
                 .request = TRUE,
                 .good_pin = TRUE};
    g_autoptr(GError) err = tls_try(p.port, &c, &desc);
    CU_ASSERT_PTR_NULL(err);
    if (err)
        fprintf(stderr, "\n%s\n", err->message);
    CU_ASSERT_PTR_NOT_NULL(desc);
    /* The default policy: TLS 1.3, AES-256-GCM first. */
    CU_ASSERT(desc && strstr(desc, "TLS1.3") && strstr(desc, "AES-256-GCM"));

    /* An address is verified against the IP SAN. */
    TlsCase ip = {.ca = "ca.crt",
                  .cert = "client.crt",
                  .key = "client.key",
                  .verify_name = "127.0.0.1",
                  .request = TRUE};
    g_autoptr(GError) err2 = tls_try(p.port, &ip, NULL);
    CU_ASSERT_PTR_NULL(err2);
    peer_stop(&p);
}

static void
expect_tls_error(const char *const *server, const TlsCase *c, OtsTlsError code, const char *text)
{
    Peer p = {0};
    CU_ASSERT_FATAL(s_server_start(&p, server));
    g_autoptr(GError) err = tls_try(p.port, c, NULL);
    CU_ASSERT_TRUE(g_error_matches(err, OTS_TLS_ERROR, code));
    CU_ASSERT(err && strstr(err->message, text));
    if (!g_error_matches(err, OTS_TLS_ERROR, code) || !strstr(err->message, text))
        fprintf(stderr, "\nexpected '%s', got: %s\n", text, err ? err->message : "success");
    peer_stop(&p);
}

static void
test_tls_unknown_ca(void)
{
    TlsCase c = {
        .ca = "rogue.crt", .cert = "client.crt", .key = "client.key", .verify_name = "cloud.test"};
    expect_tls_error(mtls_server, &c, OTS_TLS_ERROR_UNKNOWN_CA, "unknown CA");
}

static void
test_tls_name_mismatch(void)
{
    TlsCase c = {
        .ca = "ca.crt", .cert = "client.crt", .key = "client.key", .verify_name = "wrong.test"};
    expect_tls_error(mtls_server, &c, OTS_TLS_ERROR_NAME_MISMATCH, "name mismatch");
}

static void
test_tls_pin_mismatch(void)
{
    TlsCase c = {.ca = "ca.crt",
                 .cert = "client.crt",
                 .key = "client.key",
                 .verify_name = "cloud.test",
                 .bad_pin = TRUE};
    expect_tls_error(mtls_server, &c, OTS_TLS_ERROR_PIN_MISMATCH, "pin mismatch");
}

static void
test_tls_old_version(void)
{
    static const char *const tls11[] = {
        "-cert",   "@server.crt",         "-key", "@server.key", "-tls1_1",
        "-cipher", "DEFAULT:@SECLEVEL=0", NULL};
    TlsCase c = {.ca = "ca.crt", .verify_name = "cloud.test"};
    expect_tls_error(tls11, &c, OTS_TLS_ERROR_VERSION, "protocol version");
}

static void
test_tls13_missing_client_cert(void)
{
    static const char *const tls13[] = {
        "-cert", "@server.crt",          "-key",    "@server.key", "-CAfile", "@ca.crt", "-Verify",
        "2",     "-verify_return_error", "-tls1_3", NULL};
    /* The handshake succeeds on the client side; the refusal is an alert
     * that the first read returns. */
    TlsCase c = {.ca = "ca.crt", .verify_name = "cloud.test", .request = TRUE};
    expect_tls_error(tls13, &c, OTS_TLS_ERROR_AUTH, "authentication failed");
}

static void
test_tls12_missing_client_cert(void)
{
    static const char *const tls12[] = {
        "-cert", "@server.crt",          "-key",    "@server.key", "-CAfile", "@ca.crt", "-Verify",
        "2",     "-verify_return_error", "-tls1_2", NULL};
    TlsCase c = {.ca = "ca.crt", .verify_name = "cloud.test", .request = TRUE};
    expect_tls_error(tls12, &c, OTS_TLS_ERROR_AUTH, "authentication failed");
}

static void
test_tls_config_errors(void)
{
    g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL;
    g_autoptr(GBytes) junk = g_bytes_new_static("not a pem", 9);
    g_autoptr(GBytes) cert = pki_bytes("client.crt");
    g_autoptr(GBytes) otherkey = pki_bytes("server.key");
    guint8 pin[32];

    CU_ASSERT_PTR_NULL(ots_tls_credentials_new(junk, "junk.pem", NULL, NULL, NULL, NULL, &e1));
    CU_ASSERT(e1 && strstr(e1->message, "junk.pem"));
    CU_ASSERT_PTR_NULL(
        ots_tls_credentials_new(NULL, NULL, cert, "client.crt", otherkey, "server.key", &e2));
    CU_ASSERT(e2 && strstr(e2->message, "client.crt") && strstr(e2->message, "server.key"));
    CU_ASSERT_FALSE(ots_tls_check_priority("NORMAL:+NOPE", &e3));
    CU_ASSERT_TRUE(ots_tls_check_priority(NULL, NULL));
    CU_ASSERT_TRUE(ots_tls_check_priority("SECURE256:-VERS-TLS1.2", NULL));
    CU_ASSERT_FALSE(ots_tls_parse_pin("sha256//short", pin, &e4));
    CU_ASSERT_FALSE(
        ots_tls_parse_pin("md5//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", pin, NULL));
}

/* --- the uplink against peer.py --- */

typedef struct {
    guint16 port;
} TestTransport;

static gpointer
tt_create(const OtsSettings *s, GError **error)
{
    return g_new0(TestTransport, 1);
}

static void
tt_destroy(gpointer self)
{
    g_free(self);
}

static void
tt_connected(GObject *src, GAsyncResult *res, gpointer data)
{
    GTask *task = data;
    GError *err = NULL;
    GSocketConnection *c = g_socket_client_connect_to_host_finish(G_SOCKET_CLIENT(src), res, &err);
    if (c)
        g_task_return_pointer(task, c, g_object_unref);
    else
        g_task_return_error(task, err);
    g_object_unref(task);
}

static void
tt_connect_async(gpointer self, const OtsEndpoint *ep, GCancellable *cancellable,
                 OtsHopReportFunc report, gpointer report_data, GAsyncReadyCallback callback,
                 gpointer user_data)
{
    TestTransport *t = self;
    GTask *task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GSocketClient) c = g_socket_client_new();
    g_socket_client_set_enable_proxy(c, FALSE);
    /* Always loopback, whatever the endpoint's name. */
    g_socket_client_connect_to_host_async(c, "127.0.0.1", t->port, cancellable, tt_connected, task);
}

static GIOStream *
tt_connect_finish(gpointer self, GAsyncResult *res, GError **error)
{
    return g_task_propagate_pointer(G_TASK(res), error);
}

static const OtsTransportInfo test_transport = {
    .name = "test-tcp",
    .create = tt_create,
    .destroy = tt_destroy,
    .connect_async = tt_connect_async,
    .connect_finish = tt_connect_finish,
};

typedef struct {
    Peer peer;
    char *log;
    char *spool_dir;
    OtsSpool *spool;
    TestTransport *tt;
    OtsUplink *up;
} Fixture;

static void
fixture_setup(Fixture *f, const char *script, gboolean gzip, guint max_events, const char *token)
{
    static guint n;
    g_autoptr(GError) err = NULL;

    memset(f, 0, sizeof(*f));
    f->log = g_strdup_printf("%s/peer-%u.log", tmpdir, ++n);
    f->spool_dir = g_strdup_printf("%s/spool-%u", tmpdir, n);
    CU_ASSERT_FATAL(py_peer_start(&f->peer, script, TRUE, f->log));
    OtsSpoolConfig sc = {.path = f->spool_dir,
                         .max_bytes = 64 << 20,
                         .segment_bytes = 1 << 20,
                         .fsync = OTS_SPOOL_FSYNC_BATCH,
                         .drop = OTS_SPOOL_DROP_OLDEST};
    f->spool = ots_spool_open(&sc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->spool);
    f->tt = tt_create(NULL, NULL);
    f->tt->port = f->peer.port;

    OtsUplinkConfig cfg;
    ots_uplink_config_init(&cfg);
    g_assert(ots_uplink_config_set_endpoint(&cfg, "https://cloud.test/ingest", NULL));
    g_autoptr(GBytes) ca = pki_bytes("ca.crt");
    g_autoptr(GBytes) cert = pki_bytes("client.crt");
    g_autoptr(GBytes) key = pki_bytes("client.key");
    cfg.credentials =
        ots_tls_credentials_new(ca, "ca.crt", cert, "client.crt", key, "client.key", NULL);
    cfg.gzip = gzip;
    cfg.token = g_strdup(token);
    cfg.batch_max_events = max_events;
    cfg.batch_max_delay_ms = 20;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 200;
    cfg.io_timeout_ms = 5000;
    f->up = ots_uplink_new(&cfg, f->spool, &test_transport, f->tt, "sensor-001", &err);
    ots_uplink_config_clear(&cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->up);
}

static void
fixture_teardown(Fixture *f)
{
    ots_uplink_free(f->up);
    /* Let the cancelled operations finish before the spool goes. */
    for (guint i = 0; i < 50; i++)
        g_main_context_iteration(NULL, FALSE);
    ots_spool_close(f->spool);
    tt_destroy(f->tt);
    peer_stop(&f->peer);
    g_free(f->log);
    g_free(f->spool_dir);
}

static void
append_events(Fixture *f, guint n)
{
    for (guint i = 0; i < n; i++) {
        guint64 seq = ots_spool_next_seq(f->spool);
        g_autofree char *line = g_strdup_printf(
            "{\"sensor_id\":\"sensor-001\",\"seq\":%" G_GUINT64_FORMAT ",\"type\":\"test\"}\n",
            seq);
        CU_ASSERT_EQUAL(
            ots_spool_append(f->spool, g_get_real_time(), (const guint8 *)line, strlen(line)), seq);
    }
    ots_spool_sync(f->spool);
    ots_uplink_notify(f->up);
}

/* Flushes; returns TRUE when everything was acknowledged. */
static gboolean
flush(Fixture *f, guint timeout_ms, GError **error)
{
    Wait w = {0};
    ots_uplink_flush_async(f->up, timeout_ms, NULL, on_done, &w);
    wait_for(&w);
    gboolean ok = ots_uplink_flush_finish(f->up, w.res, error);
    g_object_unref(w.res);
    return ok;
}

static GPtrArray *
read_log(const char *path)
{
    g_autofree char *text = NULL;
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    if (g_file_get_contents(path, &text, NULL, NULL)) {
        g_auto(GStrv) l = g_strsplit(text, "\n", -1);
        for (guint i = 0; l[i]; i++)
            if (*l[i])
                g_ptr_array_add(lines, g_strdup(l[i]));
    }
    return lines;
}

static void
test_uplink_post_and_ack(void)
{
    Fixture f;
    g_autoptr(GError) err = NULL;

    fixture_setup(&f, "", TRUE, 4, "s3cret-token");
    ots_uplink_start(f.up);
    append_events(&f, 10);
    CU_ASSERT_TRUE(flush(&f, 8000, &err));
    OtsUplinkStatus st;
    ots_uplink_get_status(f.up, &st);
    CU_ASSERT_EQUAL(st.events_acked, 10);
    CU_ASSERT_EQUAL(st.batches_acked, 3); /* 4 + 4 + 2 */
    CU_ASSERT_EQUAL(st.acked_seq, 10);
    CU_ASSERT_EQUAL(st.retries, 0);
    CU_ASSERT_EQUAL(st.connects, 1); /* keep-alive: one session */
    CU_ASSERT_EQUAL(st.state, OTS_UPLINK_STATE_CONNECTED);
    CU_ASSERT(st.tls && strstr(st.tls, "TLS1.3"));
    OtsSpoolStats ss;
    ots_spool_get_stats(f.spool, &ss);
    CU_ASSERT_EQUAL(ss.depth_events, 0);
    CU_ASSERT_EQUAL(ss.acked_seq, 10);

    g_autoptr(GPtrArray) log = read_log(f.log);
    CU_ASSERT_EQUAL(log->len, 3);
    if (log->len >= 1) {
        const char *l = g_ptr_array_index(log, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"line\": \"POST /ingest HTTP/1.1\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"x-sensor-id\": \"sensor-001\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"x-batch-first-seq\": \"1\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"x-batch-last-seq\": \"4\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"content-encoding\": \"gzip\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"content-type\": \"application/x-ndjson\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"authorization\": \"Bearer s3cret-token\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\"host\": \"cloud.test\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(l, "\\\"seq\\\":4,"));
    }
    if (log->len >= 3)
        CU_ASSERT_PTR_NOT_NULL(strstr(g_ptr_array_index(log, 2), "\"x-batch-last-seq\": \"10\""));
    /* The token never shows in the status. */
    CU_ASSERT(st.last_error == NULL || strstr(st.last_error, "s3cret") == NULL);
    fixture_teardown(&f);
}

static void
test_uplink_retries(void)
{
    Fixture f;
    g_autoptr(GError) err = NULL;

    /* 503, a dropped connection, 429 with Retry-After: 1, then 200. */
    fixture_setup(&f, "503,drop,429/1", FALSE, 100, NULL);
    ots_uplink_start(f.up);
    append_events(&f, 5);
    gint64 t0 = g_get_monotonic_time();
    CU_ASSERT_TRUE(flush(&f, 8000, &err));
    gint64 elapsed_ms = (g_get_monotonic_time() - t0) / 1000;
    CU_ASSERT(elapsed_ms >= 950); /* Retry-After honoured */
    OtsUplinkStatus st;
    ots_uplink_get_status(f.up, &st);
    CU_ASSERT_EQUAL(st.retries, 3);
    CU_ASSERT_EQUAL(st.events_acked, 5);
    CU_ASSERT_EQUAL(st.batches_acked, 1);
    CU_ASSERT(st.last_error && strstr(st.last_error, "429"));
    g_autoptr(GPtrArray) log = read_log(f.log);
    CU_ASSERT_EQUAL(log->len, 4); /* the same batch four times: nothing dropped */
    for (guint i = 0; i < log->len; i++) {
        CU_ASSERT_PTR_NOT_NULL(strstr(g_ptr_array_index(log, i), "\"x-batch-first-seq\": \"1\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(g_ptr_array_index(log, i), "\"x-batch-last-seq\": \"5\""));
    }
    fixture_teardown(&f);
}

static void
test_uplink_split_413(void)
{
    Fixture f;
    g_autoptr(GError) err = NULL;

    fixture_setup(&f, "413", FALSE, 100, NULL);
    ots_uplink_start(f.up);
    append_events(&f, 6);
    CU_ASSERT_TRUE(flush(&f, 8000, &err));
    g_autoptr(GPtrArray) log = read_log(f.log);
    /* 1..6 refused, then 1..3 and 4..6. */
    CU_ASSERT_EQUAL(log->len, 3);
    if (log->len == 3) {
        CU_ASSERT_PTR_NOT_NULL(strstr(g_ptr_array_index(log, 1), "\"x-batch-last-seq\": \"3\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(g_ptr_array_index(log, 2), "\"x-batch-first-seq\": \"4\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(g_ptr_array_index(log, 2), "\"x-batch-last-seq\": \"6\""));
    }
    OtsUplinkStatus st;
    ots_uplink_get_status(f.up, &st);
    CU_ASSERT_EQUAL(st.events_acked, 6);
    fixture_teardown(&f);
}

static void
test_uplink_auth_failures(void)
{
    static const char *const scripts[] = {"401,401,401,401,401,401", "400cert,400cert,400cert"};

    for (guint i = 0; i < G_N_ELEMENTS(scripts); i++) {
        Fixture f;
        g_autoptr(GError) err = NULL;
        fixture_setup(&f, scripts[i], FALSE, 100, NULL);
        ots_uplink_start(f.up);
        append_events(&f, 2);
        CU_ASSERT_FALSE(flush(&f, 300, &err));
        CU_ASSERT_TRUE(g_error_matches(err, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_TIMEOUT));
        OtsUplinkStatus st;
        ots_uplink_get_status(f.up, &st);
        CU_ASSERT_EQUAL(st.state, OTS_UPLINK_STATE_AUTH_FAILED);
        CU_ASSERT(st.auth_failures >= 1);
        CU_ASSERT_EQUAL(st.events_acked, 0);
        CU_ASSERT(st.last_error && strstr(st.last_error, "authentication failed"));
        /* Kept for later: nothing dropped. */
        OtsSpoolStats ss;
        ots_spool_get_stats(f.spool, &ss);
        CU_ASSERT_EQUAL(ss.depth_events, 2);
        fixture_teardown(&f);
    }
}

static void
test_uplink_config(void)
{
    OtsUplinkConfig c;
    g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL;

    ots_uplink_config_init(&c);
    CU_ASSERT_TRUE(ots_uplink_config_set_endpoint(&c, "https://[::1]:8443/in?x=1", NULL));
    CU_ASSERT_STRING_EQUAL(c.host, "::1");
    CU_ASSERT_EQUAL(c.port, 8443);
    CU_ASSERT_STRING_EQUAL(c.path, "/in?x=1");
    CU_ASSERT_TRUE(ots_uplink_config_set_endpoint(&c, "https://cloud.test", NULL));
    CU_ASSERT_EQUAL(c.port, 443);
    CU_ASSERT_STRING_EQUAL(c.path, "/");
    CU_ASSERT_FALSE(ots_uplink_config_set_endpoint(&c, "http://cloud.test/x", &e1));
    CU_ASSERT_FALSE(ots_uplink_config_set_endpoint(&c, "https://user:pw@cloud.test/", &e2));
    CU_ASSERT_FALSE(ots_uplink_config_set_endpoint(&c, "not a url", &e3));
    ots_uplink_config_clear(&c);
}

/* A RAW transport (as `local`): lines go straight into a file. */
static char *raw_path;

static void
raw_connect_async(gpointer self, const OtsEndpoint *ep, GCancellable *cancellable,
                  OtsHopReportFunc report, gpointer report_data, GAsyncReadyCallback callback,
                  gpointer user_data)
{
    GTask *task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GFile) file = g_file_new_for_path(raw_path);
    GError *err = NULL;
    g_autoptr(GFileOutputStream) out = g_file_append_to(file, G_FILE_CREATE_NONE, NULL, &err);
    if (!out) {
        g_task_return_error(task, err);
    } else {
        g_autoptr(GInputStream) in = g_memory_input_stream_new();
        g_task_return_pointer(task, g_simple_io_stream_new(in, G_OUTPUT_STREAM(out)),
                              g_object_unref);
    }
    g_object_unref(task);
}

static const OtsTransportInfo raw_transport = {
    .name = "test-raw",
    .flags = OTS_TRANSPORT_FLAG_RAW,
    .create = tt_create,
    .destroy = tt_destroy,
    .connect_async = raw_connect_async,
    .connect_finish = tt_connect_finish,
};

static void
test_uplink_raw(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_strdup_printf("%s/spool-raw", tmpdir);
    raw_path = g_strdup_printf("%s/raw.ndjson", tmpdir);
    OtsSpoolConfig sc = {.path = dir, .max_bytes = 1 << 20, .segment_bytes = 1 << 16};
    OtsSpool *spool = ots_spool_open(&sc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(spool);
    OtsUplinkConfig cfg;
    ots_uplink_config_init(&cfg);
    g_assert(ots_uplink_config_set_endpoint(&cfg, "https://unused.test/", NULL));
    cfg.batch_max_events = 3;
    OtsUplink *up = ots_uplink_new(&cfg, spool, &raw_transport, NULL, "sensor-001", &err);
    ots_uplink_config_clear(&cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(up);
    ots_uplink_start(up);
    for (guint i = 1; i <= 7; i++) {
        g_autofree char *line = g_strdup_printf("{\"seq\":%u}\n", i);
        ots_spool_append(spool, 0, (const guint8 *)line, strlen(line));
    }
    ots_uplink_notify(up);
    Wait w = {0};
    ots_uplink_flush_async(up, 5000, NULL, on_done, &w);
    wait_for(&w);
    CU_ASSERT_TRUE(ots_uplink_flush_finish(up, w.res, NULL));
    g_object_unref(w.res);
    OtsUplinkStatus st;
    ots_uplink_get_status(up, &st);
    CU_ASSERT_EQUAL(st.events_acked, 7);
    CU_ASSERT_EQUAL(st.batches_acked, 3);
    CU_ASSERT_PTR_NULL(st.tls);
    ots_uplink_free(up);
    for (guint i = 0; i < 20; i++)
        g_main_context_iteration(NULL, FALSE);
    ots_spool_close(spool);
    g_autofree char *text = NULL;
    CU_ASSERT_TRUE(g_file_get_contents(raw_path, &text, NULL, NULL));
    CU_ASSERT_STRING_EQUAL(text, "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n{\"seq\":4}\n{\"seq\":5}\n"
                                 "{\"seq\":6}\n{\"seq\":7}\n");
    g_clear_pointer(&raw_path, g_free);
}

static void
append_raw(OtsSpool *spool, guint n)
{
    for (guint i = 0; i < n; i++) {
        guint64 seq = ots_spool_next_seq(spool);
        g_autofree char *line = g_strdup_printf("{\"seq\":%" G_GUINT64_FORMAT "}\n", seq);
        ots_spool_append(spool, 0, (const guint8 *)line, strlen(line));
    }
    ots_spool_sync(spool);
}

static guint
count_lines(const char *path)
{
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    guint n = 0;
    for (const char *c = text; *c; c++)
        n += *c == '\n';
    return n;
}

/* Switch (make before break) between two RAW uplinks on one spool: the old
 * one finishes and then reads nothing more; the new one starts on a stream
 * opened beforehand, without connecting; the two outputs hold every seq
 * exactly once, in order. */
static void
test_uplink_switch(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_strdup_printf("%s/spool-switch", tmpdir);
    g_autofree char *old_path = g_strdup_printf("%s/switch-old.ndjson", tmpdir);
    g_autofree char *new_path = g_strdup_printf("%s/switch-new.ndjson", tmpdir);
    OtsSpoolConfig sc = {.path = dir, .max_bytes = 1 << 20, .segment_bytes = 1 << 16};
    OtsSpool *spool = ots_spool_open(&sc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(spool);
    OtsUplinkConfig cfg;
    ots_uplink_config_init(&cfg);
    g_assert(ots_uplink_config_set_endpoint(&cfg, "https://unused.test/", NULL));
    cfg.batch_max_events = 3;
    cfg.batch_max_delay_ms = 0;
    raw_path = old_path;
    OtsUplink *old = ots_uplink_new(&cfg, spool, &raw_transport, NULL, "sensor-001", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);
    ots_uplink_start(old);
    append_raw(spool, 5);
    ots_uplink_notify(old);
    /* Stop after the batch in flight (the first one is being written). */
    Wait w = {0};
    ots_uplink_stop_after_batch_async(old, 5000, on_done, &w);
    wait_for(&w);
    CU_ASSERT_TRUE(ots_uplink_stop_after_batch_finish(old, w.res, &err));
    g_object_unref(w.res);
    OtsUplinkStatus st;
    ots_uplink_get_status(old, &st);
    guint old_acked = (guint)st.events_acked;
    CU_ASSERT(old_acked <= 5);
    /* Stopping: new events and notifications send nothing more. */
    append_raw(spool, 4);
    ots_uplink_notify(old);
    for (guint i = 0; i < 50; i++)
        g_main_context_iteration(NULL, FALSE);
    ots_uplink_get_status(old, &st);
    CU_ASSERT_EQUAL(st.events_acked, old_acked);
    CU_ASSERT_EQUAL(count_lines(old_path), old_acked);
    ots_uplink_free(old);

    /* The new path, proven before: its stream is handed over. */
    raw_path = new_path;
    Wait c = {0};
    raw_connect_async(NULL, NULL, NULL, NULL, NULL, on_done, &c);
    wait_for(&c);
    GIOStream *stream = tt_connect_finish(NULL, c.res, &err);
    g_object_unref(c.res);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stream);
    OtsUplink *next = ots_uplink_new(&cfg, spool, &raw_transport, NULL, "sensor-001", &err);
    ots_uplink_config_clear(&cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(next);
    ots_uplink_start_with_session(next, stream, NULL);
    append_raw(spool, 2);
    ots_uplink_notify(next);
    Wait f = {0};
    ots_uplink_flush_async(next, 5000, NULL, on_done, &f);
    wait_for(&f);
    CU_ASSERT_TRUE(ots_uplink_flush_finish(next, f.res, NULL));
    g_object_unref(f.res);
    ots_uplink_get_status(next, &st);
    CU_ASSERT_EQUAL(st.events_acked, 11 - old_acked);
    CU_ASSERT_EQUAL(st.connects, 1); /* the handed-over session, no new connect */
    ots_uplink_free(next);
    for (guint i = 0; i < 20; i++)
        g_main_context_iteration(NULL, FALSE);
    ots_spool_close(spool);
    g_autofree char *a = NULL, *b = NULL;
    g_file_get_contents(old_path, &a, NULL, NULL);
    g_file_get_contents(new_path, &b, NULL, NULL);
    g_autofree char *all = g_strconcat(a ? a : "", b ? b : "", NULL);
    GString *want = g_string_new(NULL);
    for (guint i = 1; i <= 11; i++)
        g_string_append_printf(want, "{\"seq\":%u}\n", i);
    CU_ASSERT_STRING_EQUAL(all, want->str);
    g_string_free(want, TRUE);
    raw_path = NULL;
}

/* ots_uplink_config_from_settings on loaded configs: files read, errors
 * name the key and the file; schema checks give file:line. */
static void
test_uplink_config_from_settings(void)
{
    g_autofree char *ca = pki("ca.crt");
    g_autofree char *cert = pki("client.crt");
    g_autofree char *key = pki("client.key");
    g_autofree char *token = pki("token");
    g_autofree char *pinf = pki("server.pin");
    g_autofree char *pin = NULL;
    g_assert(g_file_get_contents(pinf, &pin, NULL, NULL));
    g_strstrip(pin);
    g_assert(g_file_set_contents(token, "abc.DEF-123\n", -1, NULL));
    g_autofree char *text = g_strdup_printf(
        "sensor: { id = \"s1\"; };\nuplink: {\n endpoint = \"https://127.0.0.1:8443/x\";\n"
        " server_name = \"cloud.test\";\n ca_file = \"%s\";\n client_cert = \"%s\";\n"
        " client_key = \"%s\";\n token_file = \"%s\";\n pins = [ \"sha256//%s\" ];\n"
        " gzip = true;\n batch_max_events = 10;\n};\n",
        ca, cert, key, token, pin);
    g_autoptr(GError) err = NULL;
    g_autoptr(OtsConfig) conf = ots_config_load_string(text, "t.conf", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(conf);
    OtsUplinkConfig c;
    CU_ASSERT_TRUE_FATAL(ots_uplink_config_from_settings(ots_config_get_root(conf), &c, &err));
    CU_ASSERT_STRING_EQUAL(c.host, "127.0.0.1");
    CU_ASSERT_EQUAL(c.port, 8443);
    CU_ASSERT_STRING_EQUAL(c.server_name, "cloud.test");
    CU_ASSERT_STRING_EQUAL(c.token, "abc.DEF-123");
    CU_ASSERT_EQUAL(c.n_pins, 1);
    CU_ASSERT_TRUE(c.gzip);
    CU_ASSERT_EQUAL(c.batch_max_events, 10);
    CU_ASSERT_EQUAL(c.backoff_max_ms, 60000); /* from the defaults */
    CU_ASSERT_PTR_NOT_NULL(c.credentials);
    ots_uplink_config_clear(&c);

    /* Defaults alone: no files, the system store later. */
    g_autoptr(OtsConfig) def = ots_config_load_defaults();
    CU_ASSERT_TRUE_FATAL(ots_uplink_config_from_settings(ots_config_get_root(def), &c, NULL));
    CU_ASSERT_STRING_EQUAL(c.host, "cloud.test");
    CU_ASSERT_PTR_NULL(c.credentials);
    CU_ASSERT_PTR_NULL(c.token);
    ots_uplink_config_clear(&c);

    /* A missing file is named. */
    g_autofree char *t2 = g_strdup_printf("sensor: { id = \"s1\"; };\nuplink: { client_cert = "
                                          "\"%s\"; client_key = \"/nonexistent/key.pem\"; };\n",
                                          cert);
    g_autoptr(OtsConfig) c2 = ots_config_load_string(t2, "t.conf", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c2);
    g_autoptr(GError) e2 = NULL;
    CU_ASSERT_FALSE(ots_uplink_config_from_settings(ots_config_get_root(c2), &c, &e2));
    CU_ASSERT(e2 && strstr(e2->message, "/nonexistent/key.pem") &&
              strstr(e2->message, "client_key"));
    /* A token with a header-breaking character is refused. */
    g_assert(g_file_set_contents(token, "abc def\n", -1, NULL));
    g_autofree char *t3 =
        g_strdup_printf("sensor: { id = \"s1\"; };\nuplink: { token_file = \"%s\"; };\n", token);
    g_autoptr(OtsConfig) c3 = ots_config_load_string(t3, "t.conf", NULL);
    g_autoptr(GError) e3 = NULL;
    CU_ASSERT_FALSE(ots_uplink_config_from_settings(ots_config_get_root(c3), &c, &e3));
    CU_ASSERT(e3 && strstr(e3->message, token) && !strstr(e3->message, "abc"));

    /* Schema checks: http endpoint, bad pin, bad fsync; with file:line. */
    g_autoptr(GError) e4 = NULL, e5 = NULL, e6 = NULL;
    CU_ASSERT_PTR_NULL(ots_config_load_string(
        "sensor: { id = \"s1\"; };\nuplink: {\n endpoint = \"http://x.test/\"; };\n", "t.conf",
        &e4));
    CU_ASSERT(e4 && strstr(e4->message, "t.conf:3") && strstr(e4->message, "uplink.endpoint"));
    CU_ASSERT_PTR_NULL(
        ots_config_load_string("sensor: { id = \"s1\"; };\nuplink: { pins = [ "
                               "\"sha256//!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\" ]; };\n",
                               "t.conf", &e5));
    CU_ASSERT(e5 && strstr(e5->message, "uplink.pins[0]"));
    CU_ASSERT_PTR_NULL(ots_config_load_string(
        "sensor: { id = \"s1\"; };\nspool: { fsync = \"never\"; };\n", "t.conf", &e6));
    CU_ASSERT(e6 && strstr(e6->message, "spool.fsync"));
}

static CU_TestInfo tls_tests[] = {
    {"good chain + mTLS (name and address), pin OK", test_tls_good},
    {"unknown CA", test_tls_unknown_ca},
    {"name mismatch", test_tls_name_mismatch},
    {"pin mismatch", test_tls_pin_mismatch},
    {"TLS 1.1-only server: protocol version", test_tls_old_version},
    {"TLS 1.3 missing client cert: auth failure at first read", test_tls13_missing_client_cert},
    {"TLS 1.2 missing client cert: auth failure", test_tls12_missing_client_cert},
    {"credential, priority and pin errors", test_tls_config_errors},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo uplink_tests[] = {
    {"endpoint parsing", test_uplink_config},
    {"config from settings: files, token, pins, errors", test_uplink_config_from_settings},
    {"RAW transport: lines written, acked on write", test_uplink_raw},
    {"switch: stop after the batch, start on a proven session", test_uplink_switch},
    {"POST, gzip, headers, token, keep-alive, ack", test_uplink_post_and_ack},
    {"503, dropped connection, 429 Retry-After", test_uplink_retries},
    {"413 splits the batch", test_uplink_split_413},
    {"401 and nginx 400 no-certificate: auth failed", test_uplink_auth_failures},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {"uplink-tls", suite_init, suite_clean, NULL, NULL, tls_tests},                                \
    {                                                                                              \
        "uplink", suite_init, suite_clean, NULL, NULL, uplink_tests                                \
    }
#include "cunit-main.h"
