/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: see proxy-test-util.h. The fake servers use plain blocking
 * POSIX sockets in threads, so they behave like separate peers whatever the
 * main context of the code under test does. */
#include "proxy-test-util.h"

#include <stdlib.h>

#include "core/config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gmodule.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const OtsTransportInfo *
pt_load(const char *path)
{
    GModule *m = g_module_open(path, G_MODULE_BIND_LOCAL);
    if (!m) {
        fprintf(stderr, "cannot load %s: %s\n", path, g_module_error());
        return NULL;
    }
    const OtsPluginHeader *(*get)(void) = NULL;
    if (!g_module_symbol(m, "ots_plugin_get_info", (gpointer *)&get) || !get)
        return NULL;
    g_module_make_resident(m);
    return (const OtsTransportInfo *)get();
}

gpointer
pt_create(const OtsTransportInfo *info, const char *group_text, GError **error)
{
    g_autofree char *text = g_strdup_printf("sensor: { id = \"t\"; };\n"
                                            "output: { transport = \"%s\"; };\n"
                                            "transports: {\n"
                                            "  %s: {\n%s\n  };\n"
                                            "};\n",
                                            info->name, info->name, group_text);
    g_autoptr(OtsConfig) c = ots_config_load_string(text, "proxy-test.conf", error);
    if (!c)
        return NULL;
    const OtsSettings *tr = ots_settings_get_group(ots_config_get_root(c), "transports");
    const OtsSettings *g = tr ? ots_settings_get_group(tr, info->name) : NULL;
    if (!g) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "no group transports.%s", info->name);
        return NULL;
    }
    g_autofree char *path = g_strdup_printf("transports.%s", info->name);
    if (!ots_settings_validate(g, info->settings, path, error))
        return NULL;
    return info->create(g, error);
}

/* ---- connect ---------------------------------------------------------- */

typedef struct {
    PtResult *r;
    const OtsTransportInfo *info;
    gpointer inst;
    gboolean done;
    gint64 start;
} ConnectWait;

static void
on_report(const OtsHopReport *rep, gpointer data)
{
    ConnectWait *w = data;
    g_ptr_array_add(w->r->reports, g_strdup_printf("%u|%d|%s|%s", rep->hop, rep->step,
                                                   rep->hop_name ? rep->hop_name : "-",
                                                   rep->detail ? rep->detail : ""));
}

static void
on_done(GObject *src, GAsyncResult *res, gpointer data)
{
    (void)src;
    ConnectWait *w = data;
    w->r->stream = w->info->connect_finish(w->inst, res, &w->r->error);
    w->r->took_us = g_get_monotonic_time() - w->start;
    w->done = TRUE;
}

PtResult *
pt_connect(const OtsTransportInfo *info, gpointer inst, const char *host, guint16 port,
           GCancellable *cancel)
{
    PtResult *r = g_new0(PtResult, 1);
    r->reports = g_ptr_array_new_with_free_func(g_free);
    ConnectWait w = {.r = r, .info = info, .inst = inst, .start = g_get_monotonic_time()};
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    OtsEndpoint ep = {.host = host, .port = port};
    info->connect_async(inst, &ep, cancel, on_report, &w, on_done, &w);
    while (!w.done)
        g_main_context_iteration(ctx, TRUE);
    /* Let sources the operation dropped go. */
    while (g_main_context_iteration(ctx, FALSE))
        ;
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    return r;
}

void
pt_result_free(PtResult *r)
{
    if (!r)
        return;
    g_clear_object(&r->stream);
    g_clear_error(&r->error);
    g_ptr_array_unref(r->reports);
    g_free(r);
}

char *
pt_reports_text(const PtResult *r)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < r->reports->len; i++)
        g_string_append_printf(s, "  %s\n", (const char *)r->reports->pdata[i]);
    return g_string_free(s, FALSE);
}

gboolean
pt_reports_have(const PtResult *r, OtsHopStep step, guint hop, const char *needle)
{
    g_autofree char *prefix = g_strdup_printf("%u|%d|", hop, step);
    for (guint i = 0; i < r->reports->len; i++) {
        const char *l = r->reports->pdata[i];
        if (g_str_has_prefix(l, prefix) && (!needle || strstr(l, needle)))
            return TRUE;
    }
    return FALSE;
}

/* ---- ports and files --------------------------------------------------- */

guint16
pt_free_port(void)
{
    for (int tries = 0; tries < 200; tries++) {
        guint16 port = (guint16)g_random_int_range(20000, 32000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return port;
    }
    return 0;
}

gboolean
pt_wait_port(guint16 port, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    do {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return TRUE;
        g_usleep(10000);
    } while (g_get_monotonic_time() < end);
    return FALSE;
}

static char *temp_dir;

/* Tests leave nothing behind in /tmp. */
static void
remove_temp_dir(void)
{
    if (!temp_dir)
        return;
    const char *argv[] = {"rm", "-rf", temp_dir, NULL};
    g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    g_clear_pointer(&temp_dir, g_free);
}

const char *
pt_temp_dir(void)
{
    if (!temp_dir) {
        temp_dir = g_dir_make_tmp("ots-proxy-test-XXXXXX", NULL);
        atexit(remove_temp_dir);
    }
    return temp_dir;
}

char *
pt_temp_file(const char *name, const char *content)
{
    char *path = g_build_filename(pt_temp_dir(), name, NULL);
    g_file_set_contents(path, content, -1, NULL);
    return path;
}

/* ---- fake servers ------------------------------------------------------- */

struct PtServer {
    PtMode mode;
    char *canned;
    int listen_fd;
    int stop_pipe[2];
    guint16 port;
    GThread *acceptor;
    GMutex lock;
    GPtrArray *threads;
    GArray *fds;
    char *last_request;
    char *auth; /* expected "Basic ..." */
    guint16 allow_port;
    guint accepted;
};

typedef struct {
    PtServer *s;
    int fd;
} Conn;

/* Waits for @fd readable or the stop pipe; FALSE on stop or timeout. */
static gboolean
wait_readable(PtServer *s, int fd, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->stop_pipe[0], .events = POLLIN}};
    int n = poll(p, 2, timeout_ms);
    return n > 0 && (p[1].revents == 0) && p[0].revents;
}

static gboolean
send_all(int fd, const void *buf, gsize len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return FALSE;
        p += n;
        len -= (gsize)n;
    }
    return TRUE;
}

/* Reads a request head (up to the blank line) byte by byte. */
static char *
read_head(PtServer *s, int fd, int timeout_ms)
{
    GString *h = g_string_new(NULL);
    while (h->len < 16384) {
        if (!wait_readable(s, fd, timeout_ms))
            break;
        char c;
        if (recv(fd, &c, 1, 0) != 1)
            break;
        g_string_append_c(h, c);
        if (g_str_has_suffix(h->str, "\r\n\r\n"))
            break;
    }
    g_mutex_lock(&s->lock);
    g_free(s->last_request);
    s->last_request = g_strdup(h->str);
    g_mutex_unlock(&s->lock);
    return g_string_free(h, FALSE);
}

static void
wait_stop_or_close(PtServer *s, int fd)
{
    char buf[512];
    while (wait_readable(s, fd, -1) && recv(fd, buf, sizeof buf, 0) > 0)
        ;
}

static int
connect_to(const char *host, guint16 port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void
relay(PtServer *s, int a, int b)
{
    char buf[16384];
    for (;;) {
        struct pollfd p[3] = {{.fd = a, .events = POLLIN},
                              {.fd = b, .events = POLLIN},
                              {.fd = s->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 3, -1) <= 0 || p[2].revents)
            return;
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = recv(p[i].fd, buf, sizeof buf, 0);
            if (n <= 0 || !send_all(i == 0 ? b : a, buf, (gsize)n))
                return;
        }
    }
}

static void
serve_proxy(PtServer *s, int fd)
{
    g_autofree char *head = read_head(s, fd, 5000);
    char host[256] = "";
    unsigned port = 0;
    if (sscanf(head, "CONNECT %255[^:]:%u HTTP/1.", host, &port) != 2) {
        send_all(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
        return;
    }
    if (s->auth) {
        g_autofree char *want = g_strdup_printf("\r\nProxy-Authorization: %s\r\n", s->auth);
        if (!strstr(head, want)) {
            const char *r = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                            "Proxy-Authenticate: Basic realm=\"fake\"\r\n"
                            "Content-Length: 0\r\n\r\n";
            send_all(fd, r, strlen(r));
            return;
        }
    }
    if (s->allow_port && port != s->allow_port) {
        const char *r = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        send_all(fd, r, strlen(r));
        return;
    }
    int up = connect_to(host, (guint16)port);
    if (up < 0) {
        const char *r = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
        send_all(fd, r, strlen(r));
        return;
    }
    /* Whatever the upstream says first goes out in the same segment as the
     * reply head: a reader that reads ahead would swallow it. */
    GString *out = g_string_new("HTTP/1.1 200 Connection established\r\n"
                                "Proxy-Agent: fake\r\n\r\n");
    if (wait_readable(s, up, 300)) {
        char buf[4096];
        ssize_t n = recv(up, buf, sizeof buf, 0);
        if (n > 0)
            g_string_append_len(out, buf, n);
    }
    gboolean ok = send_all(fd, out->str, out->len);
    g_string_free(out, TRUE);
    if (ok)
        relay(s, fd, up);
    close(up);
}

static void
serve_echo(PtServer *s, int fd)
{
    if (!send_all(fd, PT_GREETING, strlen(PT_GREETING)))
        return;
    char buf[16384];
    while (wait_readable(s, fd, -1)) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0 || !send_all(fd, buf, (gsize)n))
            return;
    }
}

static gpointer
conn_thread(gpointer data)
{
    Conn *c = data;
    PtServer *s = c->s;
    int fd = c->fd;
    g_free(c);
    switch (s->mode) {
    case PT_ECHO:
        serve_echo(s, fd);
        break;
    case PT_PROXY:
        serve_proxy(s, fd);
        break;
    case PT_HUNG:
        g_free(read_head(s, fd, 5000));
        wait_stop_or_close(s, fd);
        break;
    case PT_GARBAGE: {
        g_free(read_head(s, fd, 5000));
        const char *g = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
        send_all(fd, g, strlen(g));
        wait_stop_or_close(s, fd);
        break;
    }
    case PT_ENDLESS: {
        g_free(read_head(s, fd, 5000));
        const char *st = "HTTP/1.1 200 Connection established\r\n";
        gboolean ok = send_all(fd, st, strlen(st));
        for (guint i = 0; ok && i < 1000000; i++) {
            char line[64];
            int n = g_snprintf(line, sizeof line, "X-Filler-%u: aaaaaaaaaaaaaaaa\r\n", i);
            ok = send_all(fd, line, (gsize)n);
        }
        break;
    }
    case PT_CLOSE_MID: {
        g_free(read_head(s, fd, 5000));
        const char *half = "HTTP/1.1 200 Conn";
        send_all(fd, half, strlen(half));
        break;
    }
    case PT_CLOSE_NOW:
        g_free(read_head(s, fd, 5000));
        break;
    case PT_CANNED:
    default:
        g_free(read_head(s, fd, 5000));
        send_all(fd, s->canned, strlen(s->canned));
        wait_stop_or_close(s, fd);
        break;
    }
    shutdown(fd, SHUT_RDWR);
    return NULL;
}

static gpointer
accept_thread(gpointer data)
{
    PtServer *s = data;
    for (;;) {
        if (!wait_readable(s, s->listen_fd, -1))
            return NULL;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        Conn *c = g_new0(Conn, 1);
        c->s = s;
        c->fd = fd;
        g_mutex_lock(&s->lock);
        s->accepted++;
        g_array_append_val(s->fds, fd);
        g_ptr_array_add(s->threads, g_thread_new("pt-conn", conn_thread, c));
        g_mutex_unlock(&s->lock);
    }
}

PtServer *
pt_server_start(PtMode mode, const char *canned)
{
    PtServer *s = g_new0(PtServer, 1);
    s->mode = mode;
    s->canned = g_strdup(canned ? canned : "");
    g_mutex_init(&s->lock);
    s->threads = g_ptr_array_new();
    s->fds = g_array_new(FALSE, FALSE, sizeof(int));
    if (pipe(s->stop_pipe) != 0)
        g_error("pipe: %s", g_strerror(errno));
    for (int tries = 0; tries < 200; tries++) {
        s->port = pt_free_port();
        s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(s->port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            listen(s->listen_fd, 16) == 0)
            break;
        close(s->listen_fd);
        s->listen_fd = -1;
    }
    g_assert(s->listen_fd >= 0);
    s->acceptor = g_thread_new("pt-accept", accept_thread, s);
    return s;
}

guint16
pt_server_port(PtServer *s)
{
    return s->port;
}

void
pt_server_require_auth(PtServer *s, const char *user, const char *password)
{
    g_autofree char *pair = g_strconcat(user, ":", password, NULL);
    g_autofree char *b64 = g_base64_encode((const guchar *)pair, strlen(pair));
    g_free(s->auth);
    s->auth = g_strconcat("Basic ", b64, NULL);
}

void
pt_server_allow_port(PtServer *s, guint16 port)
{
    s->allow_port = port;
}

char *
pt_server_last_request(PtServer *s)
{
    g_mutex_lock(&s->lock);
    char *r = g_strdup(s->last_request);
    g_mutex_unlock(&s->lock);
    return r;
}

guint
pt_server_accepted(PtServer *s)
{
    g_mutex_lock(&s->lock);
    guint n = s->accepted;
    g_mutex_unlock(&s->lock);
    return n;
}

void
pt_server_stop(PtServer *s)
{
    if (!s)
        return;
    if (write(s->stop_pipe[1], "x", 1) != 1)
        g_error("stop pipe");
    g_thread_join(s->acceptor);
    for (guint i = 0; i < s->threads->len; i++)
        g_thread_join(s->threads->pdata[i]);
    for (guint i = 0; i < s->fds->len; i++)
        close(g_array_index(s->fds, int, i));
    close(s->listen_fd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    g_ptr_array_unref(s->threads);
    g_array_unref(s->fds);
    g_mutex_clear(&s->lock);
    g_free(s->canned);
    g_free(s->auth);
    g_free(s->last_request);
    g_free(s);
}

/* ---- tunnel check ------------------------------------------------------ */

gboolean
pt_check_tunnel(GIOStream *stream, const char *msg, GError **error)
{
    GInputStream *in = g_io_stream_get_input_stream(stream);
    GOutputStream *out = g_io_stream_get_output_stream(stream);
    if (G_IS_SOCKET_CONNECTION(stream))
        g_socket_set_timeout(g_socket_connection_get_socket(G_SOCKET_CONNECTION(stream)), 5);
    gsize glen = strlen(PT_GREETING);
    g_autofree char *greet = g_malloc0(glen + 1);
    gsize got = 0;
    if (!g_input_stream_read_all(in, greet, glen, &got, NULL, error))
        return FALSE;
    if (got != glen || memcmp(greet, PT_GREETING, glen) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "the tunnel's first bytes are \"%s\" (%" G_GSIZE_FORMAT
                    " bytes), not the endpoint's greeting: the reply reader read ahead",
                    greet, got);
        return FALSE;
    }
    gsize len = strlen(msg);
    if (!g_output_stream_write_all(out, msg, len, NULL, NULL, error))
        return FALSE;
    g_autofree char *back = g_malloc0(len + 1);
    if (!g_input_stream_read_all(in, back, len, &got, NULL, error))
        return FALSE;
    if (got != len || memcmp(back, msg, len) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "echo mismatch: \"%s\"", back);
        return FALSE;
    }
    if (G_IS_SOCKET_CONNECTION(stream))
        g_socket_set_timeout(g_socket_connection_get_socket(G_SOCKET_CONNECTION(stream)), 0);
    return TRUE;
}
