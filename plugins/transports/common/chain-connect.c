/* SPDX-License-Identifier: Apache-2.0 */
/* The engine of the proxy transports: TCP to the first proxy, then per hop
 * optional TLS to the proxy and a CONNECT to the next hop (or the endpoint).
 * A one-hop chain is the plain `proxy` transport. Every step has its own
 * deadline, so a hop that accepts and never answers cannot block the uplink;
 * every failure names the hop, and no message or report holds credentials.
 *
 * The reply is read one byte at a time: the head is short (a few hundred
 * bytes from a 200), and a buffered read could swallow the first bytes of
 * the tunnel (the endpoint's TLS ServerHello, or the next hop's reply). */
#include "ots-transport-common.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 15
#define KEEPALIVE_COUNT 4

typedef enum { STEP_TCP, STEP_TLS, STEP_CONNECT } Step;

typedef struct {
    OtsProxyHop **hops;
    guint n_hops;
    guint i; /* current hop */
    GInetAddress *bind;
    char *ep_host;
    guint16 ep_port;
    guint hop_base;
    gpointer owner;
    GDestroyNotify owner_release;
    OtsHopReportFunc report;
    gpointer report_data;
    gint64 start_us;
    gint64 step_start_us;
    Step step;
    gint64 step_timeout_ms;
    gboolean timed_out;
    gboolean cancelled;
    gboolean done;
    GCancellable *step_cancel;
    GSource *cancel_source;
    GSource *timer_source;
    GIOStream *stream;
    char *request; /* secret: may hold the Basic credentials */
    char *target;  /* "host:port" of the current CONNECT */
    OtsConnectReply reply;
    guint8 byte;
} ChainOp;

static void
wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    g_free(s);
}

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
chain_op_free(gpointer data)
{
    ChainOp *op = data;
    drop_source(&op->cancel_source);
    drop_source(&op->timer_source);
    g_clear_object(&op->step_cancel);
    g_clear_object(&op->stream);
    g_clear_object(&op->bind);
    wipe_free(op->request);
    g_free(op->target);
    g_free(op->ep_host);
    if (op->owner_release)
        op->owner_release(op->owner);
    g_free(op);
}

static gint64
elapsed_us(const ChainOp *op)
{
    return g_get_monotonic_time() - op->start_us;
}

static char *
format_ms(gint64 us)
{
    return g_strdup_printf("%.1f ms", (double)us / 1000.0);
}

static OtsProxyHop *
cur(const ChainOp *op)
{
    return op->hops[op->i];
}

/* "proxy 127.0.0.1:3128" for one hop, "proxy 2/3 127.0.0.1:3128" in a chain. */
static char *
hop_label(const ChainOp *op)
{
    if (op->n_hops == 1)
        return g_strdup_printf("proxy %s", cur(op)->name);
    return g_strdup_printf("proxy %u/%u %s", op->i + 1, op->n_hops, cur(op)->name);
}

static void
report(ChainOp *op, OtsHopStep step, const char *detail)
{
    if (!op->report)
        return;
    OtsHopReport r = {
        .hop = op->hop_base + op->i,
        .hop_name = cur(op)->name,
        .step = step,
        .elapsed_us = elapsed_us(op),
        .detail = detail,
    };
    op->report(&r, op->report_data);
}

static void
end_step(ChainOp *op)
{
    drop_source(&op->timer_source);
    g_clear_object(&op->step_cancel);
}

static void
succeed(GTask *task)
{
    ChainOp *op = g_task_get_task_data(task);
    op->done = TRUE;
    end_step(op);
    drop_source(&op->cancel_source);
    g_task_return_pointer(task, g_steal_pointer(&op->stream), g_object_unref);
}

static void fail(GTask *task, int code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Ends the operation: the message gets the hop's label, and is reported. */
static void
fail(GTask *task, int code, const char *fmt, ...)
{
    ChainOp *op = g_task_get_task_data(task);
    if (op->done)
        return;
    op->done = TRUE;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *label = hop_label(op);
    g_autofree char *full = g_strdup_printf("%s: %s", label, msg);
    report(op, OTS_HOP_FAILED, full);
    end_step(op);
    drop_source(&op->cancel_source);
    /* Closing the socket is all the teardown a failed proxy leg needs. */
    g_clear_object(&op->stream);
    g_task_return_new_error(task, G_IO_ERROR, code, "%s", full);
}

static const char *
step_name(Step s)
{
    switch (s) {
    case STEP_TCP:
        return "TCP connect";
    case STEP_TLS:
        return "TLS handshake with the proxy";
    case STEP_CONNECT:
    default:
        return "CONNECT";
    }
}

/* A step's I/O failed: tell a timeout or a cancel from the error itself. */
static void
step_failed(GTask *task, GError *error)
{
    ChainOp *op = g_task_get_task_data(task);
    g_autofree char *took = format_ms(g_get_monotonic_time() - op->step_start_us);
    gboolean was_cancel = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    if (was_cancel && op->timed_out) {
        if (op->step == STEP_CONNECT) {
            if (op->reply.total == 0)
                fail(task, G_IO_ERROR_TIMED_OUT,
                     "no CONNECT reply within %" G_GINT64_FORMAT
                     " ms (reply_timeout_ms) for CONNECT %s: the proxy accepted the request "
                     "but never answered",
                     op->step_timeout_ms, op->target);
            else
                fail(task, G_IO_ERROR_TIMED_OUT,
                     "CONNECT reply to %s incomplete after %" G_GINT64_FORMAT
                     " ms (reply_timeout_ms): %" G_GSIZE_FORMAT " bytes of its head received",
                     op->target, op->step_timeout_ms, op->reply.total);
        } else {
            fail(task, G_IO_ERROR_TIMED_OUT,
                 "%s timed out after %" G_GINT64_FORMAT " ms (connect_timeout_ms)",
                 step_name(op->step), op->step_timeout_ms);
        }
    } else if (was_cancel) {
        fail(task, G_IO_ERROR_CANCELLED, "%s cancelled after %s", step_name(op->step), took);
    } else if (op->step == STEP_TCP) {
        fail(task, error->domain == G_IO_ERROR ? error->code : G_IO_ERROR_FAILED,
             "cannot connect: %s (after %s)", error->message, took);
    } else if (op->step == STEP_TLS) {
        fail(task, error->domain == G_IO_ERROR ? error->code : G_IO_ERROR_FAILED,
             "TLS to the proxy failed: %s (after %s)", error->message, took);
    } else {
        fail(task, error->domain == G_IO_ERROR ? error->code : G_IO_ERROR_FAILED,
             "CONNECT %s: %s (after %s, %" G_GSIZE_FORMAT " bytes of the reply received)",
             op->target, error->message, took, op->reply.total);
    }
    g_error_free(error);
}

static gboolean
on_step_timeout(gpointer data)
{
    ChainOp *op = g_task_get_task_data(G_TASK(data));
    op->timed_out = TRUE;
    g_source_unref(op->timer_source);
    op->timer_source = NULL;
    if (op->step_cancel)
        g_cancellable_cancel(op->step_cancel);
    return G_SOURCE_REMOVE;
}

static gboolean
on_cancelled(GCancellable *c, gpointer data)
{
    (void)c;
    ChainOp *op = g_task_get_task_data(G_TASK(data));
    op->cancelled = TRUE;
    g_source_unref(op->cancel_source);
    op->cancel_source = NULL;
    if (op->step_cancel)
        g_cancellable_cancel(op->step_cancel);
    return G_SOURCE_REMOVE;
}

static GSource *
attach(GTask *task, GSource *source, GSourceFunc func)
{
    g_source_set_callback(source, func, g_object_ref(task), g_object_unref);
    g_source_attach(source, g_task_get_context(task));
    return source;
}

static void
begin_step(GTask *task, Step step, gint64 timeout_ms)
{
    ChainOp *op = g_task_get_task_data(task);
    end_step(op);
    op->step = step;
    op->step_timeout_ms = timeout_ms;
    op->step_start_us = g_get_monotonic_time();
    op->timed_out = FALSE;
    op->step_cancel = g_cancellable_new();
    if (op->cancelled)
        g_cancellable_cancel(op->step_cancel);
    op->timer_source = attach(task, g_timeout_source_new((guint)timeout_ms), on_step_timeout);
}

static void start_hop(GTask *task);

/* ---- CONNECT ------------------------------------------------------------ */

static void read_next_byte(GTask *task);

static void
reply_done(GTask *task)
{
    ChainOp *op = g_task_get_task_data(task);
    const OtsConnectReply *r = &op->reply;
    OtsProxyHop *hop = cur(op);
    g_autofree char *took = format_ms(g_get_monotonic_time() - op->step_start_us);
    guint st = r->status;
    if (st >= 200 && st < 300) {
        g_autofree char *detail =
            g_strdup_printf("CONNECT %s -> %u %s (%s, %" G_GSIZE_FORMAT " bytes of head)",
                            op->target, st, r->reason, took, r->total);
        report(op, OTS_HOP_CONNECT_OK, detail);
        op->i++;
        if (op->i < op->n_hops) {
            start_hop(task);
        } else {
            op->i--; /* reports of the last step stay on the last hop */
            succeed(task);
        }
        return;
    }
    if (st == 407 || st == 401) {
        const char *tiny = st == 401 ? " (some proxies, tinyproxy among them, answer wrong "
                                       "credentials with 401 instead of 407)"
                                     : "";
        if (hop->auth_header)
            fail(task, G_IO_ERROR_PROXY_AUTH_FAILED,
                 "proxy authentication failed: %u %s: the proxy rejected the configured user and "
                 "password%s",
                 st, r->reason, tiny);
        else
            fail(task, G_IO_ERROR_PROXY_NEED_AUTH,
                 "proxy authentication required: %u %s: no credentials are configured for this "
                 "proxy (set user and password_file)",
                 st, r->reason);
    } else if (st == 403) {
        fail(task, G_IO_ERROR_PROXY_NOT_ALLOWED,
             "the proxy refused CONNECT to %s: 403 %s (destination or port not allowed by its "
             "rules)",
             op->target, r->reason);
    } else if (st >= 500 && st < 600) {
        fail(task, G_IO_ERROR_PROXY_FAILED,
             "the proxy could not reach %s: %u %s (upstream unreachable or down)", op->target, st,
             r->reason);
    } else {
        fail(task, G_IO_ERROR_PROXY_FAILED, "unexpected answer to CONNECT %s: %u %s", op->target,
             st, r->reason);
    }
}

static void
on_byte(GObject *source, GAsyncResult *res, gpointer data)
{
    g_autoptr(GTask) task = data;
    ChainOp *op = g_task_get_task_data(task);
    GError *error = NULL;
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), res, &error);
    if (op->done) {
        g_clear_error(&error);
        return;
    }
    if (n < 0) {
        step_failed(task, error);
        return;
    }
    if (n == 0) {
        if (op->reply.total == 0)
            fail(task, G_IO_ERROR_CONNECTION_CLOSED,
                 "the proxy closed the connection before answering CONNECT %s", op->target);
        else
            fail(task, G_IO_ERROR_CONNECTION_CLOSED,
                 "the proxy closed the connection in the middle of its CONNECT reply (after "
                 "%" G_GSIZE_FORMAT " bytes)",
                 op->reply.total);
        return;
    }
    switch (ots_connect_reply_feed(&op->reply, op->byte)) {
    case OTS_CONNECT_REPLY_MORE:
        read_next_byte(task);
        break;
    case OTS_CONNECT_REPLY_DONE:
        reply_done(task);
        break;
    case OTS_CONNECT_REPLY_ERROR:
    default: {
        g_autofree char *why = ots_connect_reply_describe_error(&op->reply);
        fail(task, G_IO_ERROR_INVALID_DATA, "CONNECT %s: %s", op->target, why);
        break;
    }
    }
}

static void
read_next_byte(GTask *task)
{
    ChainOp *op = g_task_get_task_data(task);
    g_input_stream_read_async(g_io_stream_get_input_stream(op->stream), &op->byte, 1,
                              G_PRIORITY_DEFAULT, op->step_cancel, on_byte, g_object_ref(task));
}

static void
on_request_written(GObject *source, GAsyncResult *res, gpointer data)
{
    g_autoptr(GTask) task = data;
    ChainOp *op = g_task_get_task_data(task);
    GError *error = NULL;
    gboolean ok = g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), res, NULL, &error);
    wipe_free(op->request);
    op->request = NULL;
    if (op->done) {
        g_clear_error(&error);
        return;
    }
    if (!ok) {
        step_failed(task, error);
        return;
    }
    read_next_byte(task);
}

static void
start_connect(GTask *task)
{
    ChainOp *op = g_task_get_task_data(task);
    OtsProxyHop *hop = cur(op);
    const char *host = op->ep_host;
    guint16 port = op->ep_port;
    if (op->i + 1 < op->n_hops) {
        host = op->hops[op->i + 1]->host;
        port = op->hops[op->i + 1]->port;
    }
    g_free(op->target);
    op->target = ots_proxy_format_authority(host, port);
    ots_connect_reply_init(&op->reply);
    begin_step(task, STEP_CONNECT, hop->reply_timeout_ms);
    op->request = ots_proxy_connect_request(hop, host, port);
    g_output_stream_write_all_async(g_io_stream_get_output_stream(op->stream), op->request,
                                    strlen(op->request), G_PRIORITY_DEFAULT, op->step_cancel,
                                    on_request_written, g_object_ref(task));
}

/* ---- TLS to a proxy ----------------------------------------------------- */

static void
on_tls_done(GObject *source, GAsyncResult *res, gpointer data)
{
    g_autoptr(GTask) task = data;
    ChainOp *op = g_task_get_task_data(task);
    GError *error = NULL;
    gboolean ok = g_tls_connection_handshake_finish(G_TLS_CONNECTION(source), res, &error);
    if (op->done) {
        g_clear_error(&error);
        return;
    }
    if (!ok) {
        step_failed(task, error);
        return;
    }
    g_clear_object(&op->stream);
    op->stream = G_IO_STREAM(g_object_ref(source));
    g_autofree char *took = format_ms(g_get_monotonic_time() - op->step_start_us);
    GTlsConnection *tls = G_TLS_CONNECTION(source);
    g_autofree char *suite = g_tls_connection_get_ciphersuite_name(tls); /* transfer full */
    GTlsProtocolVersion v = g_tls_connection_get_protocol_version(tls);
    g_autofree char *detail = g_strdup_printf("TLS%s %s (%s)",
                                              v == G_TLS_PROTOCOL_VERSION_TLS_1_3   ? "1.3"
                                              : v == G_TLS_PROTOCOL_VERSION_TLS_1_2 ? "1.2"
                                                                                    : "",
                                              suite ? suite : "", took);
    report(op, OTS_HOP_TLS_DONE, detail);
    start_connect(task);
}

static void
start_tls(GTask *task)
{
    ChainOp *op = g_task_get_task_data(task);
    OtsProxyHop *hop = cur(op);
    begin_step(task, STEP_TLS, hop->connect_timeout_ms);
    g_autoptr(GSocketConnectable) id = g_network_address_new(hop->host, hop->port);
    GError *error = NULL;
    g_autoptr(GIOStream) tls = g_tls_client_connection_new(op->stream, id, &error);
    if (!tls) {
        step_failed(task, error);
        return;
    }
    if (hop->ca)
        g_tls_connection_set_database(G_TLS_CONNECTION(tls), hop->ca);
    if (hop->client_cert)
        g_tls_connection_set_certificate(G_TLS_CONNECTION(tls), hop->client_cert);
    g_tls_connection_handshake_async(G_TLS_CONNECTION(tls), G_PRIORITY_DEFAULT, op->step_cancel,
                                     on_tls_done, g_object_ref(task));
}

static void
start_hop(GTask *task)
{
    ChainOp *op = g_task_get_task_data(task);
    if (cur(op)->tls)
        start_tls(task);
    else
        start_connect(task);
}

/* ---- TCP to the first hop ---------------------------------------------- */

static char *
format_sockaddr(GSocketAddress *a)
{
    if (!G_IS_INET_SOCKET_ADDRESS(a))
        return g_strdup("?");
    GInetSocketAddress *ia = G_INET_SOCKET_ADDRESS(a);
    g_autofree char *ip = g_inet_address_to_string(g_inet_socket_address_get_address(ia));
    return ots_proxy_format_authority(ip, g_inet_socket_address_get_port(ia));
}

static void
on_tcp_connected(GObject *source, GAsyncResult *res, gpointer data)
{
    g_autoptr(GTask) task = data;
    ChainOp *op = g_task_get_task_data(task);
    GError *error = NULL;
    GSocketConnection *conn = g_socket_client_connect_finish(G_SOCKET_CLIENT(source), res, &error);
    if (op->done) {
        g_clear_error(&error);
        g_clear_object(&conn);
        return;
    }
    if (!conn) {
        step_failed(task, error);
        return;
    }
    op->stream = G_IO_STREAM(conn);
    GSocket *sock = g_socket_connection_get_socket(conn);
    /* A dead proxy leg shows up even while the uplink is idle. */
    g_socket_set_keepalive(sock, TRUE);
    g_socket_set_option(sock, IPPROTO_TCP, TCP_KEEPIDLE, KEEPALIVE_IDLE_S, NULL);
    g_socket_set_option(sock, IPPROTO_TCP, TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S, NULL);
    g_socket_set_option(sock, IPPROTO_TCP, TCP_KEEPCNT, KEEPALIVE_COUNT, NULL);
    g_autoptr(GSocketAddress) local = g_socket_get_local_address(sock, NULL);
    g_autoptr(GSocketAddress) remote = g_socket_get_remote_address(sock, NULL);
    g_autofree char *l = local ? format_sockaddr(local) : g_strdup("?");
    g_autofree char *r = remote ? format_sockaddr(remote) : g_strdup("?");
    g_autofree char *took = format_ms(g_get_monotonic_time() - op->step_start_us);
    g_autofree char *detail = g_strdup_printf("%s -> %s (tcp %s)", l, r, took);
    report(op, OTS_HOP_TCP_CONNECTED, detail);
    start_hop(task);
}

/* The operation shared by both entry points; NULL when it already ended
 * (bad arguments: the error is returned through the task). */
static GTask *
chain_task_new(OtsProxyHop *const *hops, guint n_hops, GInetAddress *bind_address,
               const OtsEndpoint *endpoint, guint hop_base, gpointer owner,
               GDestroyNotify owner_release, GCancellable *cancellable,
               OtsHopReportFunc report_func, gpointer report_data, GAsyncReadyCallback callback,
               gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_task_set_source_tag(task, ots_proxy_chain_connect_async);
    /* Our own messages say where a cancel hit; GTask's would replace them. */
    g_task_set_check_cancellable(task, FALSE);
    ChainOp *op = g_new0(ChainOp, 1);
    op->hops = (OtsProxyHop **)hops;
    op->n_hops = n_hops;
    op->bind = bind_address ? g_object_ref(bind_address) : NULL;
    op->ep_host = g_strdup(endpoint && endpoint->host ? endpoint->host : "");
    op->ep_port = endpoint ? endpoint->port : 0;
    op->hop_base = hop_base;
    op->owner = owner;
    op->owner_release = owner_release;
    op->report = report_func;
    op->report_data = report_data;
    op->start_us = g_get_monotonic_time();
    g_task_set_task_data(task, op, chain_op_free);

    if (n_hops == 0 || !hops[0]->host) {
        op->done = TRUE;
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "no proxy to connect to");
        return NULL;
    }
    if (!*op->ep_host || op->ep_port == 0) {
        fail(task, G_IO_ERROR_INVALID_ARGUMENT, "no endpoint to CONNECT to (%s:%u)", op->ep_host,
             op->ep_port);
        return NULL;
    }
    if (cancellable) {
        if (g_cancellable_is_cancelled(cancellable))
            op->cancelled = TRUE;
        else
            op->cancel_source = attach(task, g_cancellable_source_new(cancellable),
                                       (GSourceFunc)(void (*)(void))on_cancelled);
    }
    return g_steal_pointer(&task);
}

void
ots_proxy_chain_connect_async(OtsProxyHop *const *hops, guint n_hops, GInetAddress *bind_address,
                              const OtsEndpoint *endpoint, guint hop_base, gpointer owner,
                              GDestroyNotify owner_release, GCancellable *cancellable,
                              OtsHopReportFunc report_func, gpointer report_data,
                              GAsyncReadyCallback callback, gpointer user_data)
{
    g_autoptr(GTask) task =
        chain_task_new(hops, n_hops, bind_address, endpoint, hop_base, owner, owner_release,
                       cancellable, report_func, report_data, callback, user_data);
    if (!task)
        return;
    ChainOp *op = g_task_get_task_data(task);
    OtsProxyHop *first = hops[0];
    begin_step(task, STEP_TCP, first->connect_timeout_ms);
    g_autoptr(GSocketClient) client = g_socket_client_new();
    /* Never the system proxy settings: this transport is the proxy. */
    g_socket_client_set_enable_proxy(client, FALSE);
    if (op->bind) {
        g_autoptr(GSocketAddress) local = g_inet_socket_address_new(op->bind, 0);
        g_socket_client_set_local_address(client, local);
    }
    g_autoptr(GSocketConnectable) addr = g_network_address_new(first->host, first->port);
    g_socket_client_connect_async(client, addr, op->step_cancel, on_tcp_connected,
                                  g_object_ref(task));
}

void
ots_proxy_chain_connect_over_async(GIOStream *stream, OtsProxyHop *const *hops, guint n_hops,
                                   const OtsEndpoint *endpoint, guint hop_base, gpointer owner,
                                   GDestroyNotify owner_release, GCancellable *cancellable,
                                   OtsHopReportFunc report_func, gpointer report_data,
                                   GAsyncReadyCallback callback, gpointer user_data)
{
    g_autoptr(GTask) task =
        chain_task_new(hops, n_hops, NULL, endpoint, hop_base, owner, owner_release, cancellable,
                       report_func, report_data, callback, user_data);
    if (!task)
        return;
    ChainOp *op = g_task_get_task_data(task);
    op->stream = g_object_ref(stream);
    start_hop(task);
}

GIOStream *
ots_proxy_chain_connect_finish(GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}
