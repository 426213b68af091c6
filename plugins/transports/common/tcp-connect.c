/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal asynchronous TCP connect with a source address, a source
 * interface and one overall deadline: what multicloud needs for its direct
 * paths, the first hop of its proxy paths and its background probes.
 * GSocketClient resolves and tries the addresses; SO_BINDTODEVICE is set on
 * each socket before its connect() through the client's CONNECTING event.
 * The deadline is our own timer: GSocketClient's timeout property would
 * also apply to every later read and write of a long-lived stream. */
#include "ots-transport-common.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 15
#define KEEPALIVE_COUNT 4

typedef struct {
    char *name;  /* "host:port", for messages */
    char *iface; /* SO_BINDTODEVICE, or NULL */
    char *bind;  /* the source address as text, or NULL */
    gint64 timeout_ms;
    gint64 start_us;
    gboolean timed_out;
    gboolean cancelled;
    GCancellable *cancel; /* ours: fired by the caller's, the deadline or a socket option */
    GSource *cancel_source;
    GSource *timer_source;
    GError *option_error; /* SO_BINDTODEVICE failed */
} TcpOp;

static void
drop_source(GSource **s)
{
    if (*s) {
        g_source_destroy(*s);
        g_source_unref(*s);
        *s = NULL;
    }
}

static void
tcp_op_free(gpointer data)
{
    TcpOp *op = data;
    drop_source(&op->cancel_source);
    drop_source(&op->timer_source);
    g_clear_object(&op->cancel);
    g_clear_error(&op->option_error);
    g_free(op->name);
    g_free(op->iface);
    g_free(op->bind);
    g_free(op);
}

gboolean
ots_interface_name_is_valid(const char *name)
{
    gsize n = name ? strlen(name) : 0;
    if (n == 0 || n >= IFNAMSIZ || g_str_equal(name, ".") || g_str_equal(name, ".."))
        return FALSE;
    for (const char *p = name; *p; p++)
        if (!g_ascii_isgraph(*p) || *p == '/' || *p == ':')
            return FALSE;
    return TRUE;
}

static void
on_client_event(GSocketClient *client, GSocketClientEvent event, GSocketConnectable *connectable,
                GIOStream *connection, gpointer data)
{
    (void)client;
    (void)connectable;
    TcpOp *op = g_task_get_task_data(G_TASK(data));
    if (event != G_SOCKET_CLIENT_CONNECTING || !op->iface || !G_IS_SOCKET_CONNECTION(connection))
        return;
    GSocket *s = g_socket_connection_get_socket(G_SOCKET_CONNECTION(connection));
    if (setsockopt(g_socket_get_fd(s), SOL_SOCKET, SO_BINDTODEVICE, op->iface,
                   (socklen_t)strlen(op->iface) + 1) == 0)
        return;
    int e = errno;
    if (!op->option_error) {
        const char *why = e == ENODEV  ? "no such network interface"
                          : e == EPERM ? "not permitted: SO_BINDTODEVICE needs CAP_NET_RAW on "
                                         "this kernel"
                                       : g_strerror(e);
        op->option_error = g_error_new(G_IO_ERROR, g_io_error_from_errno(e),
                                       "bind_interface %s: %s", op->iface, why);
    }
    /* The connect must not go out through another interface. */
    g_cancellable_cancel(op->cancel);
}

static void
on_connected(GObject *source, GAsyncResult *res, gpointer data)
{
    g_autoptr(GTask) task = data;
    TcpOp *op = g_task_get_task_data(task);
    g_autoptr(GError) error = NULL;
    GSocketConnection *conn = g_socket_client_connect_finish(G_SOCKET_CLIENT(source), res, &error);
    drop_source(&op->cancel_source);
    drop_source(&op->timer_source);
    gint64 took_us = g_get_monotonic_time() - op->start_us;
    if (conn) {
        GSocket *sock = g_socket_connection_get_socket(conn);
        /* A dead path shows up even while the uplink is idle. */
        g_socket_set_keepalive(sock, TRUE);
        g_socket_set_option(sock, IPPROTO_TCP, TCP_KEEPIDLE, KEEPALIVE_IDLE_S, NULL);
        g_socket_set_option(sock, IPPROTO_TCP, TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S, NULL);
        g_socket_set_option(sock, IPPROTO_TCP, TCP_KEEPCNT, KEEPALIVE_COUNT, NULL);
        if (op->cancelled || op->timed_out) {
            /* Connected in the same iteration as the cancel: honour the cancel. */
            g_object_unref(conn);
        } else {
            g_task_return_pointer(task, conn, g_object_unref);
            return;
        }
    }
    if (op->option_error) {
        g_task_return_new_error(task, G_IO_ERROR, op->option_error->code,
                                "cannot connect to %s: %s", op->name, op->option_error->message);
    } else if (op->timed_out) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                "cannot connect to %s: no answer within %" G_GINT64_FORMAT
                                " ms (connect_timeout_ms)",
                                op->name, op->timeout_ms);
    } else if (op->cancelled) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                "connect to %s cancelled after %.1f ms", op->name,
                                (double)took_us / 1000.0);
    } else {
        /* GSocketClient's "Could not connect to X: Y" already names the host. */
        int code = error && error->domain == G_IO_ERROR ? error->code : G_IO_ERROR_FAILED;
        const char *msg = error ? error->message : "failed";
        g_task_return_new_error(
            task, G_IO_ERROR, code, "cannot connect to %s%s%s: %s (after %.1f ms)", op->name,
            op->bind ? " from " : "", op->bind ? op->bind : "", msg, (double)took_us / 1000.0);
    }
}

static gboolean
on_timeout(gpointer data)
{
    TcpOp *op = g_task_get_task_data(G_TASK(data));
    op->timed_out = TRUE;
    g_source_unref(op->timer_source);
    op->timer_source = NULL;
    g_cancellable_cancel(op->cancel);
    return G_SOURCE_REMOVE;
}

static gboolean
on_cancelled(GCancellable *c, gpointer data)
{
    (void)c;
    TcpOp *op = g_task_get_task_data(G_TASK(data));
    op->cancelled = TRUE;
    g_source_unref(op->cancel_source);
    op->cancel_source = NULL;
    g_cancellable_cancel(op->cancel);
    return G_SOURCE_REMOVE;
}

static GSource *
attach(GTask *task, GSource *source, GSourceFunc func)
{
    g_source_set_callback(source, func, g_object_ref(task), g_object_unref);
    g_source_attach(source, g_task_get_context(task));
    return source;
}

void
ots_tcp_connect_async(const char *host, guint16 port, GInetAddress *bind_address,
                      const char *bind_interface, gint64 timeout_ms, GCancellable *cancellable,
                      GAsyncReadyCallback callback, gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_task_set_source_tag(task, ots_tcp_connect_async);
    g_task_set_check_cancellable(task, FALSE);
    TcpOp *op = g_new0(TcpOp, 1);
    op->name = ots_proxy_format_authority(host ? host : "", port);
    op->iface = g_strdup(bind_interface);
    op->bind = bind_address ? g_inet_address_to_string(bind_address) : NULL;
    op->timeout_ms = timeout_ms > 0 ? timeout_ms : OTS_PROXY_DEFAULT_CONNECT_TIMEOUT_MS;
    op->start_us = g_get_monotonic_time();
    op->cancel = g_cancellable_new();
    g_task_set_task_data(task, op, tcp_op_free);

    if (!host || !*host || port == 0) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "cannot connect to %s: no host or port", op->name);
        return;
    }
    if (op->iface && !ots_interface_name_is_valid(op->iface)) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "bind_interface '%s' is not a valid interface name", op->iface);
        return;
    }
    if (cancellable) {
        if (g_cancellable_is_cancelled(cancellable)) {
            op->cancelled = TRUE;
            g_cancellable_cancel(op->cancel);
        } else {
            op->cancel_source = attach(task, g_cancellable_source_new(cancellable),
                                       (GSourceFunc)(void (*)(void))on_cancelled);
        }
    }
    op->timer_source = attach(task, g_timeout_source_new((guint)op->timeout_ms), on_timeout);

    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_socket_client_set_enable_proxy(client, FALSE);
    if (bind_address) {
        g_autoptr(GSocketAddress) local = g_inet_socket_address_new(bind_address, 0);
        g_socket_client_set_local_address(client, local);
    }
    if (op->iface)
        g_signal_connect_data(client, "event", G_CALLBACK(on_client_event), g_object_ref(task),
                              (GClosureNotify)(void (*)(void))g_object_unref, 0);
    g_autoptr(GSocketConnectable) addr = g_network_address_new(host, port);
    g_socket_client_connect_async(client, addr, op->cancel, on_connected, g_object_ref(task));
}

GSocketConnection *
ots_tcp_connect_finish(GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}
