/* SPDX-License-Identifier: Apache-2.0 */
/* The `direct` transport: one TCP connection from the sensor to the cloud
 * endpoint (or to a configured private address for it). Asynchronous DNS,
 * addresses tried in resolver order within one overall connect timeout,
 * TCP keepalive, optional source address and interface. The core runs TLS
 * and HTTP over the returned stream. */
#include <otsensor/transport.h>

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_KEEPALIVE_IDLE_S 60
#define DEFAULT_KEEPALIVE_INTERVAL_S 15
#define DEFAULT_KEEPALIVE_COUNT 4

/* Shared by the instance and its connects in flight, so destroy() may run
 * while a connect is pending. Immutable after create(). */
typedef struct {
    char *address; /* connect here instead of the endpoint host, or NULL */
    guint16 port;  /* 0: the endpoint's */
    gint64 connect_timeout_ms;
    gboolean keepalive;
    int keepalive_idle_s;
    int keepalive_interval_s;
    int keepalive_count;
    GInetAddress *bind_address; /* source address, or NULL */
    char *bind_interface;       /* SO_BINDTODEVICE, or NULL */
    GSocketFamily family;       /* G_SOCKET_FAMILY_INVALID: any */
} Direct;

static const char *const family_choices[] = {"any", "ipv4", "ipv6", NULL};

static const OtsSettingSpec direct_settings[] = {
    {.name = "address",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 253,
     .help = "connect to this host name or IP instead of the endpoint host (private "
             "endpoints); TLS still verifies the endpoint name"},
    {.name = "port",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 65535,
     .help = "connect to this TCP port instead of the endpoint's"},
    {.name = "connect_timeout_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 600000,
     .help = "budget for DNS plus every TCP attempt, in milliseconds (default 10000)"},
    {.name = "keepalive",
     .type = OTS_SETTING_BOOL,
     .help = "enable TCP keepalive on the connection (default true)"},
    {.name = "keepalive_idle_s",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 32767,
     .help = "seconds of silence before the first keepalive probe (default 60)"},
    {.name = "keepalive_interval_s",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 32767,
     .help = "seconds between keepalive probes (default 15)"},
    {.name = "keepalive_count",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 127,
     .help = "unanswered probes before the connection is declared dead (default 4)"},
    {.name = "bind_address",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 64,
     .help = "source IP address of the connection"},
    {.name = "bind_interface",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = IFNAMSIZ - 1,
     .help = "network interface to send through (SO_BINDTODEVICE; may need CAP_NET_RAW)"},
    {.name = "family",
     .type = OTS_SETTING_STRING,
     .choices = family_choices,
     .help = "address family to use: any, ipv4 or ipv6 (default any)"},
    {.name = NULL, .type = OTS_SETTING_END},
};

static void
direct_clear(gpointer mem)
{
    Direct *d = mem;
    g_free(d->address);
    g_clear_object(&d->bind_address);
    g_free(d->bind_interface);
}

static Direct *
direct_ref(Direct *d)
{
    return g_atomic_rc_box_acquire(d);
}

static void
direct_unref(Direct *d)
{
    g_atomic_rc_box_release_full(d, direct_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Direct, direct_unref)

static const char *
family_name(GSocketFamily f)
{
    return f == G_SOCKET_FAMILY_IPV6 ? "IPv6" : "IPv4";
}

/* "file:line: key: message" (the location when the core knows it). */
static void G_GNUC_PRINTF(4, 5) setting_error(const OtsSettings *settings, const char *key,
                                              GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    const char *loc = settings ? ots_settings_get_location(settings, key) : NULL;
    if (loc)
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: %s: %s", loc, key, msg);
    else
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: %s", key, msg);
}

/* Settings arrive validated against direct_settings; the range checks here
 * only keep a plugin used without the core's validation from misbehaving. */
static gboolean
get_int(const OtsSettings *settings, const char *key, gint64 min, gint64 max, gint64 *value,
        GError **error)
{
    if (!settings || !ots_settings_get_int(settings, key, value))
        return TRUE;
    if (*value < min || *value > max) {
        setting_error(settings, key, error,
                      "%" G_GINT64_FORMAT " is out of range (%" G_GINT64_FORMAT
                      "..%" G_GINT64_FORMAT ")",
                      *value, min, max);
        return FALSE;
    }
    return TRUE;
}

static gboolean
is_host_name(const char *s)
{
    /* RFC 1123 labels: letters, digits, '-', not at a label's ends. */
    gsize len = strlen(s);
    if (len == 0 || len > 253)
        return FALSE;
    const char *label = s;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            gsize n = (gsize)(p - label);
            if (n == 0 ? *p != '\0' || p == s : n > 63 || label[0] == '-' || p[-1] == '-')
                return FALSE;
            if (*p == '\0')
                return TRUE;
            label = p + 1;
        } else if (!g_ascii_isalnum(*p) && *p != '-') {
            return FALSE;
        }
    }
}

static gpointer
direct_create(const OtsSettings *settings, GError **error)
{
    g_autoptr(Direct) d = g_atomic_rc_box_new0(Direct);
    d->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    d->keepalive = TRUE;
    d->keepalive_idle_s = DEFAULT_KEEPALIVE_IDLE_S;
    d->keepalive_interval_s = DEFAULT_KEEPALIVE_INTERVAL_S;
    d->keepalive_count = DEFAULT_KEEPALIVE_COUNT;
    d->family = G_SOCKET_FAMILY_INVALID;
    if (!settings)
        return g_steal_pointer(&d);

    const char *family = NULL;
    if (ots_settings_get_string(settings, "family", &family)) {
        if (g_str_equal(family, "ipv4"))
            d->family = G_SOCKET_FAMILY_IPV4;
        else if (g_str_equal(family, "ipv6"))
            d->family = G_SOCKET_FAMILY_IPV6;
        else if (!g_str_equal(family, "any")) {
            setting_error(settings, "family", error, "'%s' is not one of any, ipv4, ipv6", family);
            return NULL;
        }
    }

    const char *address = NULL;
    if (ots_settings_get_string(settings, "address", &address)) {
        g_autoptr(GInetAddress) ip = g_inet_address_new_from_string(address);
        if (!ip && !is_host_name(address)) {
            setting_error(settings, "address", error,
                          "'%s' is neither an IP address nor a host name%s", address,
                          strchr(address, ':') || strchr(address, '/')
                              ? " (give the port with `port`, not in the address)"
                              : "");
            return NULL;
        }
        if (ip && d->family != G_SOCKET_FAMILY_INVALID &&
            g_inet_address_get_family(ip) != d->family) {
            setting_error(settings, "address", error, "%s is an %s address but family is %s",
                          address, family_name(g_inet_address_get_family(ip)), family);
            return NULL;
        }
        d->address = g_strdup(address);
    }

    gint64 v = 0;
    if (!get_int(settings, "port", 1, 65535, &v, error))
        return NULL;
    d->port = (guint16)v;
    v = d->connect_timeout_ms;
    if (!get_int(settings, "connect_timeout_ms", 100, 600000, &v, error))
        return NULL;
    d->connect_timeout_ms = v;
    ots_settings_get_bool(settings, "keepalive", &d->keepalive);
    v = d->keepalive_idle_s;
    if (!get_int(settings, "keepalive_idle_s", 1, 32767, &v, error))
        return NULL;
    d->keepalive_idle_s = (int)v;
    v = d->keepalive_interval_s;
    if (!get_int(settings, "keepalive_interval_s", 1, 32767, &v, error))
        return NULL;
    d->keepalive_interval_s = (int)v;
    v = d->keepalive_count;
    if (!get_int(settings, "keepalive_count", 1, 127, &v, error))
        return NULL;
    d->keepalive_count = (int)v;

    const char *bind = NULL;
    if (ots_settings_get_string(settings, "bind_address", &bind)) {
        d->bind_address = g_inet_address_new_from_string(bind);
        if (!d->bind_address) {
            setting_error(settings, "bind_address", error,
                          "'%s' is not an IP address (e.g. 192.0.2.10 or 2001:db8::10)", bind);
            return NULL;
        }
        GSocketFamily bf = g_inet_address_get_family(d->bind_address);
        if (d->family != G_SOCKET_FAMILY_INVALID && bf != d->family) {
            setting_error(settings, "bind_address", error, "%s is an %s address but family is %s",
                          bind, family_name(bf), family);
            return NULL;
        }
        if (d->family == G_SOCKET_FAMILY_INVALID)
            d->family = bf; /* only addresses of its family can be reached from it */
    }

    const char *ifname = NULL;
    if (ots_settings_get_string(settings, "bind_interface", &ifname)) {
        gsize n = strlen(ifname);
        gboolean ok =
            n > 0 && n < IFNAMSIZ && !g_str_equal(ifname, ".") && !g_str_equal(ifname, "..");
        for (const char *p = ifname; ok && *p; p++)
            ok = g_ascii_isgraph(*p) && *p != '/' && *p != ':';
        if (!ok) {
            setting_error(settings, "bind_interface", error,
                          "'%s' is not a valid interface name (1 to %d characters, no '/', ':' "
                          "or spaces)",
                          ifname, IFNAMSIZ - 1);
            return NULL;
        }
        /* Not checked for existence here: a VPN interface may come up later;
         * a missing one fails the connect with a clear message. */
        d->bind_interface = g_strdup(ifname);
    }
    return g_steal_pointer(&d);
}

static void
direct_destroy(gpointer self)
{
    if (self)
        direct_unref(self);
}

/* ---- connect ---------------------------------------------------------- */

typedef struct {
    Direct *d;
    char *target;   /* host name or IP we connect to */
    char *endpoint; /* the endpoint host, for messages */
    guint16 port;
    char *hop_name; /* "host:port" */
    OtsHopReportFunc report;
    gpointer report_data;
    gint64 start_us;
    gint64 deadline_us;
    gint64 dns_us; /* elapsed when DNS answered */
    gboolean done;
    GCancellable *dns_cancel;
    GSource *cancel_source; /* the caller's cancellable */
    GSource *timer_source;  /* DNS deadline, or the current attempt's share */
    GSource *socket_source; /* the current attempt's writability */
    GList *addresses;       /* GInetAddress, resolver order */
    GList *next;            /* the next one to try */
    guint n_left;           /* addresses not tried yet, including next */
    GSocket *socket;        /* current attempt */
    GInetSocketAddress *remote;
    gint64 attempt_start_us;
    GString *failures; /* "addr: reason; ..." */
    GError *last_error;
} ConnectOp;

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
close_attempt(ConnectOp *op)
{
    drop_source(&op->socket_source);
    if (op->socket) {
        g_socket_close(op->socket, NULL);
        g_clear_object(&op->socket);
    }
    g_clear_object(&op->remote);
}

static void
connect_op_free(gpointer data)
{
    ConnectOp *op = data;
    close_attempt(op);
    drop_source(&op->cancel_source);
    drop_source(&op->timer_source);
    g_clear_object(&op->dns_cancel);
    g_list_free_full(op->addresses, g_object_unref);
    if (op->failures)
        g_string_free(op->failures, TRUE);
    g_clear_error(&op->last_error);
    g_free(op->target);
    g_free(op->endpoint);
    g_free(op->hop_name);
    direct_unref(op->d);
    g_free(op);
}

static gint64
elapsed_us(const ConnectOp *op)
{
    return g_get_monotonic_time() - op->start_us;
}

static void
report(ConnectOp *op, OtsHopStep step, const char *detail)
{
    if (!op->report)
        return;
    OtsHopReport r = {.hop = 0,
                      .hop_name = op->hop_name,
                      .step = step,
                      .elapsed_us = elapsed_us(op),
                      .detail = detail};
    op->report(&r, op->report_data);
}

static char *
format_ms(gint64 us)
{
    return g_strdup_printf("%.1f ms", (double)us / 1000.0);
}

static char *
format_sockaddr(GSocketAddress *sa)
{
    if (!G_IS_INET_SOCKET_ADDRESS(sa))
        return g_strdup("?");
    GInetSocketAddress *isa = G_INET_SOCKET_ADDRESS(sa);
    GInetAddress *ip = g_inet_socket_address_get_address(isa);
    g_autofree char *s = g_inet_address_to_string(ip);
    guint16 port = g_inet_socket_address_get_port(isa);
    if (g_inet_address_get_family(ip) == G_SOCKET_FAMILY_IPV6)
        return g_strdup_printf("[%s]:%u", s, port);
    return g_strdup_printf("%s:%u", s, port);
}

/* Finishes the operation exactly once. Takes @error (NULL: success). */
static void
finish(GTask *task, GSocketConnection *conn, GError *error)
{
    ConnectOp *op = g_task_get_task_data(task);
    if (op->done) {
        g_clear_error(&error);
        g_clear_object(&conn);
        return;
    }
    op->done = TRUE;
    drop_source(&op->cancel_source);
    drop_source(&op->timer_source);
    if (op->dns_cancel)
        g_cancellable_cancel(op->dns_cancel);
    if (error) {
        close_attempt(op);
        report(op, OTS_HOP_FAILED, error->message);
        g_task_return_error(task, error);
    } else if (g_cancellable_is_cancelled(g_task_get_cancellable(task))) {
        /* Cancelled from another thread just as the connect succeeded. */
        g_object_unref(conn);
        close_attempt(op);
        error =
            g_error_new(G_IO_ERROR, G_IO_ERROR_CANCELLED, "connect to %s cancelled", op->hop_name);
        report(op, OTS_HOP_FAILED, error->message);
        g_task_return_error(task, error);
    } else {
        /* The socket now belongs to the connection. */
        drop_source(&op->socket_source);
        g_clear_object(&op->socket);
        g_task_return_pointer(task, conn, g_object_unref);
    }
}

static void fail(GTask *task, GQuark domain, int code, const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static void
fail(GTask *task, GQuark domain, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    GError *error = g_error_new_valist(domain, code, fmt, ap);
    va_end(ap);
    finish(task, NULL, error);
}

static const char *
connect_reason(const GError *e)
{
    if (e->domain == G_IO_ERROR) {
        switch (e->code) {
        case G_IO_ERROR_CONNECTION_REFUSED:
            return "connection refused";
        case G_IO_ERROR_HOST_UNREACHABLE:
            return "host unreachable";
        case G_IO_ERROR_NETWORK_UNREACHABLE:
            return "network unreachable";
        case G_IO_ERROR_TIMED_OUT:
            return "timed out";
        default:
            break;
        }
    }
    return e->message;
}

static void try_next(GTask *task);

static gboolean
on_cancelled(GCancellable *cancellable, gpointer data)
{
    GTask *task = data;
    ConnectOp *op = g_task_get_task_data(task);
    g_autofree char *ms = format_ms(elapsed_us(op));
    fail(task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "connect to %s cancelled after %s", op->hop_name,
         ms);
    return G_SOURCE_REMOVE;
}

/* One address failed: remember why, then try the next one or give up. */
static void
attempt_failed(GTask *task, GError *error)
{
    ConnectOp *op = g_task_get_task_data(task);
    g_autofree char *where = format_sockaddr(G_SOCKET_ADDRESS(op->remote));
    g_autofree char *took = format_ms(g_get_monotonic_time() - op->attempt_start_us);
    g_autofree char *line =
        g_strdup_printf("%s: %s (after %s)", where, connect_reason(error), took);
    close_attempt(op);
    drop_source(&op->timer_source);
    if (op->failures->len)
        g_string_append(op->failures, "; ");
    g_string_append(op->failures, line);
    g_clear_error(&op->last_error);
    op->last_error = error;
    if (op->next) {
        g_autofree char *detail = g_strdup_printf("%s; trying the next address", line);
        report(op, OTS_HOP_INFO, detail);
    }
    try_next(task);
}

static void
attempt_connected(GTask *task)
{
    ConnectOp *op = g_task_get_task_data(task);
    drop_source(&op->socket_source);
    drop_source(&op->timer_source);
    GSocketConnection *conn = g_socket_connection_factory_create_connection(op->socket);
    g_autoptr(GSocketAddress) local = g_socket_get_local_address(op->socket, NULL);
    g_autofree char *l = local ? format_sockaddr(local) : g_strdup("?");
    g_autofree char *r = format_sockaddr(G_SOCKET_ADDRESS(op->remote));
    g_autofree char *tcp = format_ms(g_get_monotonic_time() - op->attempt_start_us);
    g_autofree char *dns = format_ms(op->dns_us);
    g_autofree char *total = format_ms(elapsed_us(op));
    g_autofree char *detail =
        g_strdup_printf("%s -> %s (tcp %s, dns %s, total %s%s%s)", l, r, tcp, dns, total,
                        op->d->bind_interface ? ", interface " : "",
                        op->d->bind_interface ? op->d->bind_interface : "");
    report(op, OTS_HOP_TCP_CONNECTED, detail);
    finish(task, conn, NULL);
}

static gboolean
on_socket_ready(GSocket *socket, GIOCondition cond, gpointer data)
{
    GTask *task = data;
    GError *error = NULL;
    if (g_socket_check_connect_result(socket, &error))
        attempt_connected(task);
    else
        attempt_failed(task, error);
    return G_SOURCE_REMOVE;
}

static gboolean
on_attempt_timeout(gpointer data)
{
    GTask *task = data;
    ConnectOp *op = g_task_get_task_data(task);
    gint64 took = g_get_monotonic_time() - op->attempt_start_us;
    attempt_failed(task, g_error_new(G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                     "no answer within %" G_GINT64_FORMAT " ms", took / 1000));
    return G_SOURCE_REMOVE;
}

static GSource *
attach(GTask *task, GSource *source, GSourceFunc func)
{
    g_source_set_callback(source, func, g_object_ref(task), g_object_unref);
    g_source_set_priority(source, g_task_get_priority(task));
    g_source_attach(source, g_task_get_context(task));
    return source;
}

static gboolean
set_int_option(GSocket *s, int level, int name, int value, const char *what, GError **error)
{
    if (!g_socket_set_option(s, level, name, value, error)) {
        g_prefix_error(error, "cannot set %s: ", what);
        return FALSE;
    }
    return TRUE;
}

/* A non-blocking socket for @family with the configured options. A bind or
 * interface failure is a G_IO_ERROR with a message naming the setting. */
static GSocket *
open_socket(const Direct *d, GSocketFamily family, GError **error)
{
    g_autoptr(GSocket) s = g_socket_new(family, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, error);
    if (!s)
        return NULL;
    g_socket_set_blocking(s, FALSE);
    if (d->keepalive) {
        g_socket_set_keepalive(s, TRUE);
        if (!set_int_option(s, IPPROTO_TCP, TCP_KEEPIDLE, d->keepalive_idle_s, "TCP_KEEPIDLE",
                            error) ||
            !set_int_option(s, IPPROTO_TCP, TCP_KEEPINTVL, d->keepalive_interval_s, "TCP_KEEPINTVL",
                            error) ||
            !set_int_option(s, IPPROTO_TCP, TCP_KEEPCNT, d->keepalive_count, "TCP_KEEPCNT", error))
            return NULL;
    }
    if (d->bind_interface) {
        int fd = g_socket_get_fd(s);
        if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, d->bind_interface,
                       (socklen_t)strlen(d->bind_interface) + 1) < 0) {
            int e = errno;
            const char *why = e == ENODEV  ? "no such network interface"
                              : e == EPERM ? "not permitted: SO_BINDTODEVICE needs CAP_NET_RAW "
                                             "on this kernel (grant it to the daemon or remove "
                                             "bind_interface)"
                                           : g_strerror(e);
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "bind_interface %s: %s",
                        d->bind_interface, why);
            return NULL;
        }
    }
    if (d->bind_address) {
        if (family == G_SOCKET_FAMILY_IPV4) {
            /* Many connects from one source address must not run out of
             * ports at bind() time; best effort (Linux >= 4.2). */
            int one = 1;
            (void)setsockopt(g_socket_get_fd(s), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                             sizeof one);
        }
        g_autoptr(GSocketAddress) local = g_inet_socket_address_new(d->bind_address, 0);
        if (!g_socket_bind(s, local, FALSE, error)) {
            g_autofree char *ip = g_inet_address_to_string(d->bind_address);
            g_prefix_error(error, "bind_address %s: cannot bind: ", ip);
            return NULL;
        }
    }
    return g_steal_pointer(&s);
}

static void
try_next(GTask *task)
{
    ConnectOp *op = g_task_get_task_data(task);
    if (op->done)
        return;
    if (!op->next) {
        /* Every address failed: the last error's code, every reason. */
        GError *last = g_steal_pointer(&op->last_error);
        int code = last && last->domain == G_IO_ERROR ? last->code : G_IO_ERROR_FAILED;
        g_clear_error(&last);
        g_autofree char *limit =
            code == G_IO_ERROR_TIMED_OUT
                ? g_strdup_printf(" (connect_timeout_ms = %" G_GINT64_FORMAT ")",
                                  op->d->connect_timeout_ms)
                : NULL;
        fail(task, G_IO_ERROR, code, "cannot connect to %s: %s%s", op->hop_name,
             op->failures->len ? op->failures->str : "no usable address", limit ? limit : "");
        return;
    }
    GInetAddress *ip = op->next->data;
    op->next = op->next->next;
    guint share_of = op->n_left--;

    gint64 now = g_get_monotonic_time();
    gint64 left = op->deadline_us - now;
    if (left <= 0) {
        g_autofree char *ms = format_ms(now - op->start_us);
        fail(task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
             "cannot connect to %s: connect timeout (%" G_GINT64_FORMAT " ms) reached after %s%s%s",
             op->hop_name, op->d->connect_timeout_ms, ms, op->failures->len ? ": " : "",
             op->failures->str);
        return;
    }
    /* The rest of the budget is shared by the addresses not tried yet, so
     * one silent address cannot starve the others. */
    gint64 slice = left / share_of;

    op->attempt_start_us = now;
    op->remote = G_INET_SOCKET_ADDRESS(g_inet_socket_address_new(ip, op->port));
    GError *error = NULL;
    op->socket = open_socket(op->d, g_inet_address_get_family(ip), &error);
    if (!op->socket) {
        attempt_failed(task, error);
        return;
    }
    if (g_socket_connect(op->socket, G_SOCKET_ADDRESS(op->remote), NULL, &error)) {
        attempt_connected(task);
        return;
    }
    if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_PENDING)) {
        attempt_failed(task, error);
        return;
    }
    g_clear_error(&error);
    op->socket_source = attach(task, g_socket_create_source(op->socket, G_IO_OUT, NULL),
                               (GSourceFunc)(void (*)(void))on_socket_ready);
    op->timer_source =
        attach(task, g_timeout_source_new((guint)((slice + 999) / 1000)), on_attempt_timeout);
}

static void
start_connecting(GTask *task, GList *addresses, gboolean literal)
{
    ConnectOp *op = g_task_get_task_data(task);
    op->dns_us = elapsed_us(op);
    /* Keep only the addresses the family (or the source address) allows. */
    GString *list = g_string_new(NULL);
    guint skipped = 0;
    for (GList *l = addresses; l; l = l->next) {
        GInetAddress *ip = l->data;
        g_autofree char *s = g_inet_address_to_string(ip);
        g_string_append_printf(list, "%s%s", list->len ? ", " : "", s);
        if (op->d->family != G_SOCKET_FAMILY_INVALID &&
            g_inet_address_get_family(ip) != op->d->family) {
            g_string_append_printf(list, " (skipped: not %s)", family_name(op->d->family));
            skipped++;
            continue;
        }
        op->addresses = g_list_append(op->addresses, g_object_ref(ip));
    }
    op->next = op->addresses;
    op->n_left = g_list_length(op->addresses);
    g_autofree char *dns = format_ms(op->dns_us);
    g_autofree char *detail = literal
                                  ? g_strdup_printf("%s (IP literal, no DNS)%s%s", list->str,
                                                    op->d->address ? "; endpoint " : "",
                                                    op->d->address ? op->endpoint : "")
                                  : g_strdup_printf("%s -> %s (dns %s)%s%s", op->target, list->str,
                                                    dns, op->d->address ? "; endpoint " : "",
                                                    op->d->address ? op->endpoint : "");
    g_string_free(list, TRUE);
    report(op, OTS_HOP_RESOLVED, detail);
    if (!op->addresses) {
        const char *why =
            op->d->bind_address ? "of the bind_address's family" : "of the configured family";
        fail(task, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
             "cannot connect to %s: none of its %u address(es) is %s (%s)", op->hop_name, skipped,
             why, family_name(op->d->family));
        return;
    }
    try_next(task);
}

static void
on_resolved(GObject *source, GAsyncResult *res, gpointer data)
{
    g_autoptr(GTask) task = data;
    ConnectOp *op = g_task_get_task_data(task);
    g_autoptr(GError) error = NULL;
    GList *addresses = g_resolver_lookup_by_name_with_flags_finish(G_RESOLVER(source), res, &error);
    if (op->done) {
        g_resolver_free_addresses(addresses);
        return;
    }
    drop_source(&op->timer_source);
    if (!addresses) {
        g_autofree char *ms = format_ms(elapsed_us(op));
        fail(task, G_IO_ERROR, G_IO_ERROR_HOST_NOT_FOUND, "cannot resolve %s: %s (after %s)",
             op->target, error ? error->message : "no address", ms);
        return;
    }
    start_connecting(task, addresses, FALSE);
    g_resolver_free_addresses(addresses);
}

static gboolean
on_dns_timeout(gpointer data)
{
    GTask *task = data;
    ConnectOp *op = g_task_get_task_data(task);
    g_autofree char *ms = format_ms(elapsed_us(op));
    fail(task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
         "cannot resolve %s: no DNS answer within the connect timeout (%" G_GINT64_FORMAT
         " ms, %s elapsed)",
         op->target, op->d->connect_timeout_ms, ms);
    return G_SOURCE_REMOVE;
}

static void
direct_connect_async(gpointer self, const OtsEndpoint *endpoint, GCancellable *cancellable,
                     OtsHopReportFunc report_func, gpointer report_data,
                     GAsyncReadyCallback callback, gpointer user_data)
{
    Direct *d = self;
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_task_set_source_tag(task, direct_connect_async);
    /* Cancellation is answered by on_cancelled(), with a message saying
     * where the connect was; GTask's check would replace it. */
    g_task_set_check_cancellable(task, FALSE);
    ConnectOp *op = g_new0(ConnectOp, 1);
    op->d = direct_ref(d);
    op->start_us = g_get_monotonic_time();
    op->deadline_us = op->start_us + d->connect_timeout_ms * 1000;
    op->report = report_func;
    op->report_data = report_data;
    op->failures = g_string_new(NULL);
    op->endpoint = g_strdup(endpoint && endpoint->host ? endpoint->host : "");
    op->target = g_strdup(d->address ? d->address : op->endpoint);
    op->port = d->port ? d->port : (endpoint ? endpoint->port : 0);
    g_task_set_task_data(task, op, connect_op_free);

    g_autoptr(GInetAddress) literal = g_inet_address_new_from_string(op->target);
    op->hop_name = literal && g_inet_address_get_family(literal) == G_SOCKET_FAMILY_IPV6
                       ? g_strdup_printf("[%s]:%u", op->target, op->port)
                       : g_strdup_printf("%s:%u", op->target, op->port);

    if (!*op->target || op->port == 0) {
        fail(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
             "no %s to connect to (endpoint %s:%u; set the endpoint or the transport's "
             "address/port)",
             *op->target ? "port" : "host", op->endpoint, endpoint ? endpoint->port : 0);
        return;
    }
    if (g_cancellable_is_cancelled(cancellable)) {
        fail(task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "connect to %s cancelled before it started",
             op->hop_name);
        return;
    }
    if (cancellable)
        op->cancel_source = attach(task, g_cancellable_source_new(cancellable),
                                   (GSourceFunc)(void (*)(void))on_cancelled);

    if (literal) {
        GList one = {.data = literal};
        start_connecting(task, &one, TRUE);
        return;
    }
    if (!is_host_name(op->target)) {
        fail(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
             "cannot resolve '%s': not a valid host name", op->target);
        return;
    }
    GResolverNameLookupFlags flags =
        d->family == G_SOCKET_FAMILY_IPV4   ? G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY
        : d->family == G_SOCKET_FAMILY_IPV6 ? G_RESOLVER_NAME_LOOKUP_FLAGS_IPV6_ONLY
                                            : G_RESOLVER_NAME_LOOKUP_FLAGS_DEFAULT;
    op->dns_cancel = g_cancellable_new();
    op->timer_source =
        attach(task, g_timeout_source_new((guint)d->connect_timeout_ms), on_dns_timeout);
    g_autoptr(GResolver) resolver = g_resolver_get_default();
    /* The resolver calls back in the thread-default context of this call,
     * the same one the task and its sources use. */
    g_resolver_lookup_by_name_with_flags_async(resolver, op->target, flags, op->dns_cancel,
                                               on_resolved, g_object_ref(task));
}

static GIOStream *
direct_connect_finish(gpointer self, GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}

static const OtsTransportInfo direct_info = {
    .abi_major = OTS_TRANSPORT_ABI_MAJOR,
    .abi_minor = OTS_TRANSPORT_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "direct",
    .version = "0.1.0",
    .description = "one TCP connection to the endpoint (async DNS, connect timeout, keepalive, "
                   "source address or interface)",
    .flags = OTS_TRANSPORT_FLAG_NONE,
    .settings = direct_settings,
    .create = direct_create,
    .destroy = direct_destroy,
    .connect_async = direct_connect_async,
    .connect_finish = direct_connect_finish,
};

OTS_TRANSPORT_DEFINE(direct_info)
