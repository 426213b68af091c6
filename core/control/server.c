/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket on the main loop: non-blocking accept, per-connection
 * peer-credential check, bounded lines, bounded clients, idle timeout. */
#define _GNU_SOURCE
#include "core/control/server.h"

#include <gio/gunixsocketaddress.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_CLIENTS 16
#define DEFAULT_IDLE_MS 60000
/* A client that sends requests but never reads the replies stops being read. */
#define MAX_PENDING_OUT (4 * 1024 * 1024)
#define MAX_GROUPS 1024

typedef struct _Client Client;

/* An asynchronous command in progress; outlives its client if that hangs up. */
typedef struct {
    Client *client; /* NULL once the client is gone */
    OtsControlCmd cmd;
    gboolean in_call; /* the provider is still inside its call */
} Pending;

struct _OtsControlServer {
    char *path;
    gid_t group_gid; /* (gid_t)-1: no group */
    char *group;
    guint max_clients;
    guint idle_ms;
    uid_t own_uid;
    OtsControlProvider provider;
    OtsControlRate rate;
    GSocket *listener;
    GSource *accept_src;
    GList *clients;
    guint n_clients;
    dev_t dev;
    ino_t ino;
};

struct _Client {
    OtsControlServer *server;
    GSocket *sock;
    GSource *src;
    GIOCondition cond;
    GSource *idle;
    GByteArray *in;
    GByteArray *out;
    gsize out_off;
    gboolean closing; /* close once the output is written */
    uid_t uid;
    Pending *pending; /* an asynchronous command runs: no further line is read */
};

static void client_update(Client *c);

/**
 * ots_control_peer_allowed:
 * @uid: the peer's uid
 * @gid: the peer's primary gid
 * @groups: (array length=n_groups) (nullable): its supplementary groups
 * @n_groups: their number
 * @own_uid: the daemon's uid
 * @group_gid: the configured group, (gid_t)-1 for none
 *
 * Returns: whether the peer may use the control socket.
 */
gboolean
ots_control_peer_allowed(uid_t uid, gid_t gid, const gid_t *groups, guint n_groups, uid_t own_uid,
                         gid_t group_gid)
{
    if (uid == 0 || uid == own_uid)
        return TRUE;
    if (group_gid == (gid_t)-1)
        return FALSE;
    if (gid == group_gid)
        return TRUE;
    for (guint i = 0; groups && i < n_groups; i++)
        if (groups[i] == group_gid)
            return TRUE;
    return FALSE;
}

static void
client_free(Client *c)
{
    OtsControlServer *s = c->server;
    s->clients = g_list_remove(s->clients, c);
    s->n_clients--;
    if (c->pending)
        c->pending->client = NULL;
    if (c->src) {
        g_source_destroy(c->src);
        g_source_unref(c->src);
    }
    if (c->idle) {
        g_source_destroy(c->idle);
        g_source_unref(c->idle);
    }
    g_socket_close(c->sock, NULL);
    g_object_unref(c->sock);
    g_byte_array_unref(c->in);
    g_byte_array_unref(c->out);
    g_free(c);
}

static void
queue_reply(Client *c, char *line)
{
    g_byte_array_append(c->out, (const guint8 *)line, (guint)strlen(line));
    g_free(line);
}

static void process_input(Client *c);
static void touch(Client *c);
static gboolean do_write(Client *c);

static void
pending_reply(JsonNode *result, const GError *error, gpointer data)
{
    Pending *p = data;
    Client *c = p->client;
    if (!c) {
        if (result)
            json_node_unref(result);
        g_free(p);
        return;
    }
    if (result) {
        queue_reply(c, ots_control_reply_ok(result));
    } else {
        const char *msg = error ? error->message : "failed";
        if (p->cmd != OTS_CONTROL_CMD_TRANSPORT_TEST)
            g_message("control: uid %u: %s", (guint)c->uid, msg);
        queue_reply(c, ots_control_reply_error(msg));
    }
    c->pending = NULL;
    gboolean in_call = p->in_call;
    g_free(p);
    if (in_call)
        return; /* answered at once: process_input goes on */
    /* Later: resume reading the lines that came meanwhile, and write. */
    touch(c);
    process_input(c);
    if (do_write(c))
        client_update(c);
}

static gboolean
is_async(OtsControlCmd cmd)
{
    return cmd == OTS_CONTROL_CMD_TRANSPORT_SET || cmd == OTS_CONTROL_CMD_TRANSPORT_TEST ||
           cmd == OTS_CONTROL_CMD_RELOAD;
}

/* Hands an asynchronous command to the provider; no further line of this
 * client is read until its reply. */
static gboolean
start_async(Client *c, const OtsControlRequest *req)
{
    const OtsControlProvider *pr = &c->server->provider;
    if ((req->cmd == OTS_CONTROL_CMD_TRANSPORT_SET && !pr->transport_set) ||
        (req->cmd == OTS_CONTROL_CMD_TRANSPORT_TEST && !pr->transport_test) ||
        (req->cmd == OTS_CONTROL_CMD_RELOAD && !pr->reload))
        return FALSE;
    Pending *p = g_new0(Pending, 1);
    p->client = c;
    p->cmd = req->cmd;
    p->in_call = TRUE;
    c->pending = p;
    if (req->cmd == OTS_CONTROL_CMD_TRANSPORT_SET)
        pr->transport_set(pr->user, req->name, req->persist, pending_reply, p);
    else if (req->cmd == OTS_CONTROL_CMD_RELOAD)
        pr->reload(pr->user, pending_reply, p);
    else
        pr->transport_test(pr->user, req->name, pending_reply, p);
    if (c->pending == p)
        p->in_call = FALSE;
    return TRUE;
}

static void
handle_line(Client *c, const char *line, gsize len)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(OtsControlRequest) req = ots_control_request_parse(line, len, &err);
    if (!req) {
        g_debug("control: uid %u: bad request: %s", (guint)c->uid, err->message);
        queue_reply(c, ots_control_reply_error(err->message));
        return;
    }
    g_debug("control: uid %u: %s", (guint)c->uid, ots_control_cmd_to_string(req->cmd));
    if (is_async(req->cmd)) {
        if (c->uid != 0 && req->cmd == OTS_CONTROL_CMD_TRANSPORT_SET)
            g_message("control: uid %u: transport.set %s", (guint)c->uid,
                      req->name ? req->name : "--clear");
        if (!start_async(c, req))
            queue_reply(c, ots_control_reply_error("not supported by this daemon"));
        return;
    }
    JsonNode *result = ots_control_dispatch(&c->server->provider, &c->server->rate, req, &err);
    if (!result) {
        queue_reply(c, ots_control_reply_error(err->message));
        return;
    }
    queue_reply(c, ots_control_reply_ok(result));
}

/* Answers every complete line in the input buffer. */
static void
process_input(Client *c)
{
    gsize start = 0;
    while (!c->closing && !c->pending && c->out->len < MAX_PENDING_OUT) {
        const guint8 *nl = memchr(c->in->data + start, '\n', c->in->len - start);
        if (!nl)
            break;
        gsize len = (gsize)(nl - (c->in->data + start));
        const char *line = (const char *)c->in->data + start;
        if (len && line[len - 1] == '\r')
            len--;
        if (len)
            handle_line(c, line, len);
        start += (gsize)(nl - (c->in->data + start)) + 1;
    }
    if (start)
        g_byte_array_remove_range(c->in, 0, (guint)start);
    if (!c->closing && c->in->len > OTS_CONTROL_MAX_REQUEST) {
        g_autofree char *msg =
            g_strdup_printf("request longer than %d bytes", OTS_CONTROL_MAX_REQUEST);
        queue_reply(c, ots_control_reply_error(msg));
        g_byte_array_set_size(c->in, 0);
        c->closing = TRUE;
    }
}

static gboolean
on_idle_timeout(gpointer user)
{
    Client *c = user;
    g_debug("control: uid %u idle, closing", (guint)c->uid);
    g_source_unref(c->idle);
    c->idle = NULL;
    client_free(c);
    return G_SOURCE_REMOVE;
}

static void
touch(Client *c)
{
    if (c->idle) {
        g_source_destroy(c->idle);
        g_source_unref(c->idle);
    }
    c->idle = g_timeout_source_new(c->server->idle_ms);
    g_source_set_callback(c->idle, on_idle_timeout, c, NULL);
    g_source_attach(c->idle, NULL);
}

/* Returns FALSE when the client was freed. */
static gboolean
do_write(Client *c)
{
    while (c->out_off < c->out->len) {
        g_autoptr(GError) err = NULL;
        gssize n = g_socket_send_with_blocking(c->sock, (const char *)c->out->data + c->out_off,
                                               c->out->len - c->out_off, FALSE, NULL, &err);
        if (n < 0) {
            if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
                return TRUE;
            client_free(c);
            return FALSE;
        }
        c->out_off += (gsize)n;
    }
    g_byte_array_set_size(c->out, 0);
    c->out_off = 0;
    if (c->closing && !c->pending) {
        client_free(c);
        return FALSE;
    }
    return TRUE;
}

static gboolean
on_client(GSocket *sock, GIOCondition cond, gpointer user)
{
    Client *c = user;
    if (cond & G_IO_OUT) {
        if (!do_write(c))
            return G_SOURCE_REMOVE;
    }
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        char buf[8192];
        g_autoptr(GError) err = NULL;
        gssize n = g_socket_receive_with_blocking(sock, buf, sizeof buf, FALSE, NULL, &err);
        if (n < 0 && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            /* spurious wakeup */
        } else if (n <= 0 && c->pending) {
            /* Gone while its command runs: the command goes on, its answer
             * is dropped. */
            client_free(c);
            return G_SOURCE_REMOVE;
        } else if (n <= 0) {
            /* The peer is gone (or half-closed): replies to what it sent are
             * written if the socket still takes them, then it is closed. */
            process_input(c);
            c->closing = TRUE;
            if (!do_write(c))
                return G_SOURCE_REMOVE;
        } else {
            touch(c);
            g_byte_array_append(c->in, (const guint8 *)buf, (guint)n);
            process_input(c);
            if (!do_write(c))
                return G_SOURCE_REMOVE;
        }
    }
    client_update(c);
    return G_SOURCE_CONTINUE;
}

/* Watches for what the client state needs: input unless closing or too
 * much output is pending, output while there is some. */
static void
client_update(Client *c)
{
    GIOCondition want = 0;
    if (!c->closing && !c->pending && c->out->len < MAX_PENDING_OUT)
        want |= G_IO_IN;
    if (c->out_off < c->out->len)
        want |= G_IO_OUT;
    if (c->src && want == c->cond)
        return;
    if (c->src) {
        g_source_destroy(c->src);
        g_source_unref(c->src);
    }
    c->cond = want;
    c->src = g_socket_create_source(c->sock, want, NULL);
    g_source_set_callback(c->src, G_SOURCE_FUNC(on_client), c, NULL);
    g_source_attach(c->src, NULL);
}

/* The peer's uid, primary gid and supplementary groups, as the kernel saw
 * them at connect(). */
static gboolean
peer_credentials(GSocket *sock, uid_t *uid, gid_t *gid, gid_t *groups, guint *n_groups)
{
    g_autoptr(GCredentials) cred = g_socket_get_credentials(sock, NULL);
    if (!cred)
        return FALSE;
    const struct ucred *uc = g_credentials_get_native(cred, G_CREDENTIALS_TYPE_LINUX_UCRED);
    if (!uc)
        return FALSE;
    *uid = uc->uid;
    *gid = uc->gid;
    *n_groups = 0;
#ifdef SO_PEERGROUPS
    socklen_t len = MAX_GROUPS * sizeof(gid_t);
    if (getsockopt(g_socket_get_fd(sock), SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
        *n_groups = len / sizeof(gid_t);
        return TRUE;
    }
#endif
    /* Older kernels: the groups the user database gives the uid. */
    struct passwd *pw = getpwuid(*uid);
    int n = MAX_GROUPS;
    if (pw && getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) >= 0)
        *n_groups = (guint)n;
    return TRUE;
}

static void
accept_one(OtsControlServer *s, GSocket *sock)
{
    g_socket_set_blocking(sock, FALSE);
    Client *c = g_new0(Client, 1);
    c->server = s;
    c->sock = sock;
    c->in = g_byte_array_new();
    c->out = g_byte_array_new();
    c->uid = (uid_t)-1;
    s->clients = g_list_prepend(s->clients, c);
    s->n_clients++;

    uid_t uid;
    gid_t gid;
    gid_t *groups = g_new(gid_t, MAX_GROUPS);
    guint n_groups = 0;
    if (!peer_credentials(sock, &uid, &gid, groups, &n_groups)) {
        g_message("control: refused a connection without peer credentials");
        queue_reply(c, ots_control_reply_error("access denied"));
        c->closing = TRUE;
    } else if (!ots_control_peer_allowed(uid, gid, groups, n_groups, s->own_uid, s->group_gid)) {
        g_message("control: refused uid %u (gid %u): not root, not the daemon's user%s%s",
                  (guint)uid, (guint)gid, s->group ? ", not in group " : "",
                  s->group ? s->group : "");
        c->uid = uid;
        queue_reply(c, ots_control_reply_error("access denied"));
        c->closing = TRUE;
    } else if (s->n_clients > s->max_clients) {
        g_message("control: refused uid %u: %u clients already", (guint)uid, s->max_clients);
        queue_reply(c, ots_control_reply_error("too many clients"));
        c->closing = TRUE;
    } else {
        c->uid = uid;
    }
    g_free(groups);
    touch(c);
    if (do_write(c))
        client_update(c);
}

static gboolean
on_accept(GSocket *listener, GIOCondition cond, gpointer user)
{
    OtsControlServer *s = user;
    /* A bounded number a wakeup, so a connect storm cannot starve capture. */
    for (guint i = 0; i < 64; i++) {
        g_autoptr(GError) err = NULL;
        GSocket *sock = g_socket_accept(listener, NULL, &err);
        if (!sock) {
            if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
                g_debug("control: accept: %s", err->message);
            break;
        }
        accept_one(s, sock);
    }
    return G_SOURCE_CONTINUE;
}

/* A socket file left by a daemon that died is removed; one with a
 * listener behind it means another daemon uses the path. */
static gboolean
clear_stale(const char *path, GError **error)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return TRUE;
    if (!S_ISSOCK(st.st_mode)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s exists and is not a socket", path);
        return FALSE;
    }
    g_autoptr(GSocket) probe =
        g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL);
    g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(path);
    if (probe && g_socket_connect(probe, addr, NULL, NULL)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                    "%s: another otsensord is listening there", path);
        return FALSE;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "cannot remove stale %s: %s",
                    path, g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

/**
 * ots_control_server_new:
 * @cfg: socket path, group and limits
 * @provider: what the commands read (copied; its pointers must outlive the server)
 * @error: why the socket could not be made
 *
 * Creates the socket (mode 0660 and group @cfg->group, or 0600 without a
 * group) and serves it on the
 * thread-default main context.
 *
 * Returns: (transfer full) (nullable): the server.
 */
OtsControlServer *
ots_control_server_new(const OtsControlServerConfig *cfg, const OtsControlProvider *provider,
                       GError **error)
{
    g_return_val_if_fail(cfg && cfg->path && provider, NULL);
    gid_t group_gid = (gid_t)-1;
    if (cfg->group && *cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "control.group: no group named '%s'", cfg->group);
            return NULL;
        }
        group_gid = gr->gr_gid;
    }
    /* sun_path holds 107 bytes and a NUL. */
    if (strlen(cfg->path) >= 108) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "control.socket: '%s' is too long for a UNIX socket path", cfg->path);
        return NULL;
    }
    g_autofree char *dir = g_path_get_dirname(cfg->path);
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "cannot create %s: %s", dir,
                    g_strerror(errno));
        return NULL;
    }
    if (!clear_stale(cfg->path, error))
        return NULL;
    g_autoptr(GSocket) listener =
        g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, error);
    if (!listener)
        return NULL;
    g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(cfg->path);
    if (!g_socket_bind(listener, addr, FALSE, error))
        return NULL;
    /* 0660 and the group when one is configured; without, 0600: the group
     * bits would only let the daemon user's own group reach a refusal.
     * The credential check guards the moment before chmod. */
    if (chmod(cfg->path, group_gid != (gid_t)-1 ? 0660 : 0600) != 0 ||
        (group_gid != (gid_t)-1 && chown(cfg->path, (uid_t)-1, group_gid) != 0)) {
        int e = errno;
        unlink(cfg->path);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s: cannot set mode/group: %s",
                    cfg->path, g_strerror(e));
        return NULL;
    }
    g_socket_set_listen_backlog(listener, 16);
    g_socket_set_blocking(listener, FALSE);
    if (!g_socket_listen(listener, error)) {
        unlink(cfg->path);
        return NULL;
    }
    struct stat st = {0};
    if (stat(cfg->path, &st) != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s", cfg->path,
                    g_strerror(errno));
        return NULL;
    }
    OtsControlServer *s = g_new0(OtsControlServer, 1);
    s->path = g_strdup(cfg->path);
    s->group = cfg->group && *cfg->group ? g_strdup(cfg->group) : NULL;
    s->group_gid = group_gid;
    s->max_clients = cfg->max_clients ? cfg->max_clients : DEFAULT_MAX_CLIENTS;
    s->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
    s->own_uid = geteuid();
    s->provider = *provider;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->listener = g_steal_pointer(&listener);
    s->accept_src = g_socket_create_source(s->listener, G_IO_IN, NULL);
    g_source_set_callback(s->accept_src, G_SOURCE_FUNC(on_accept), s, NULL);
    g_source_attach(s->accept_src, NULL);
    return s;
}

/**
 * ots_control_server_n_clients:
 * @s: a server
 *
 * Returns: the connections open now.
 */
guint
ots_control_server_n_clients(const OtsControlServer *s)
{
    return s->n_clients;
}

/**
 * ots_control_server_free:
 * @s: (nullable): a server
 */
void
ots_control_server_free(OtsControlServer *s)
{
    if (!s)
        return;
    while (s->clients)
        client_free(s->clients->data);
    g_source_destroy(s->accept_src);
    g_source_unref(s->accept_src);
    g_socket_close(s->listener, NULL);
    g_object_unref(s->listener);
    /* Only our own socket file: a newer daemon may have taken the path. */
    struct stat st;
    if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
    g_free(s->path);
    g_free(s->group);
    g_free(s);
}
