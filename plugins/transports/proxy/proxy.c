/* SPDX-License-Identifier: Apache-2.0 */
/* The `proxy` transport: HTTP CONNECT to the endpoint through the site's
 * proxy, or through the first that works of a list of proxies. A proxy that
 * failed is remembered as unhealthy for `unhealthy_s` and tried after the
 * healthy ones, so one dead proxy costs one connect timeout, not one per
 * reconnect. TLS stays end to end: the core runs it over the tunnel. */
#include "ots-transport-common.h"

#include <otsensor/transport.h>

#define DEFAULT_UNHEALTHY_S 60

typedef struct {
    OtsProxyHop **hops; /* the proxies, in the configured order */
    guint n_hops;
    GInetAddress *bind;
    gint64 unhealthy_us;
    GMutex lock;
    gint64 *bad_until; /* per proxy, monotonic us; 0: healthy */
    gint64 *bad_since;
    guint64 *failures; /* per proxy, for the health event */
    char **last_error; /* per proxy; never holds credentials */
} Proxy;

static const OtsSettingSpec proxy_entry_settings[] = {
    OTS_PROXY_HOP_SETTING_SPECS,
    {.name = NULL, .type = OTS_SETTING_END},
};

static const OtsSettingSpec proxy_settings[] = {
    OTS_PROXY_HOP_SETTING_SPECS,
    {.name = "proxies",
     .type = OTS_SETTING_LIST,
     .children = proxy_entry_settings,
     .help = "several proxies tried in order, each {host, port, ...}; keys an entry leaves out "
             "come from this group (instead of host/port)"},
    {.name = "unhealthy_s",
     .type = OTS_SETTING_INT,
     .min = 1,
     .max = 86400,
     .help = "how long a failed proxy of the list is tried last (default 60)"},
    {.name = "bind_address",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 64,
     .help = "source IP address of the connection to the proxy"},
    {.name = NULL, .type = OTS_SETTING_END},
};

static void
proxy_clear(gpointer mem)
{
    Proxy *p = mem;
    for (guint i = 0; i < p->n_hops; i++)
        ots_proxy_hop_free(p->hops[i]);
    g_free(p->hops);
    g_free(p->bad_until);
    g_free(p->bad_since);
    g_free(p->failures);
    if (p->last_error)
        for (guint i = 0; i < p->n_hops; i++)
            g_free(p->last_error[i]);
    g_free(p->last_error);
    g_clear_object(&p->bind);
    g_mutex_clear(&p->lock);
}

static Proxy *
proxy_ref(Proxy *p)
{
    return g_atomic_rc_box_acquire(p);
}

static void
proxy_unref(gpointer p)
{
    g_atomic_rc_box_release_full(p, proxy_clear);
}

static void
proxy_unref_typed(Proxy *p)
{
    proxy_unref(p);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Proxy, proxy_unref_typed)

static gpointer
proxy_create(const OtsSettings *settings, GError **error)
{
    g_autoptr(Proxy) p = g_atomic_rc_box_new0(Proxy);
    g_mutex_init(&p->lock);
    p->unhealthy_us = (gint64)DEFAULT_UNHEALTHY_S * G_USEC_PER_SEC;
    if (!settings) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the proxy transport needs settings (host and port, or proxies)");
        return NULL;
    }
    gint64 v = 0;
    if (ots_settings_get_int(settings, "unhealthy_s", &v)) {
        if (v < 1 || v > 86400) {
            ots_proxy_setting_error(settings, "unhealthy_s", error, "out of range (1..86400)");
            return NULL;
        }
        p->unhealthy_us = v * G_USEC_PER_SEC;
    }
    if (!ots_proxy_parse_bind_address(settings, &p->bind, error))
        return NULL;

    g_autoptr(OtsProxyHop) top = ots_proxy_hop_new(settings, NULL, FALSE, error);
    if (!top)
        return NULL;
    guint n = ots_settings_get_length(settings, "proxies");
    if (top->host && n > 0) {
        ots_proxy_setting_error(settings, "proxies", error,
                                "set either host (one proxy) or proxies (a list), not both");
        return NULL;
    }
    if (!top->host && n == 0) {
        ots_proxy_setting_error(settings, "host", error,
                                "is required (or give a list of proxies with `proxies`)");
        return NULL;
    }
    if (n == 0) {
        p->n_hops = 1;
        p->hops = g_new0(OtsProxyHop *, 1);
        p->hops[0] = g_steal_pointer(&top);
    } else {
        p->hops = g_new0(OtsProxyHop *, n);
        for (guint i = 0; i < n; i++) {
            const OtsSettings *e = ots_settings_get_element(settings, "proxies", i);
            OtsProxyHop *hop = e ? ots_proxy_hop_new(e, top, TRUE, error) : NULL;
            if (!hop) {
                if (!e)
                    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "proxies: element %u is not a group", i + 1);
                return NULL;
            }
            p->hops[p->n_hops++] = hop;
        }
    }
    p->bad_until = g_new0(gint64, p->n_hops);
    p->bad_since = g_new0(gint64, p->n_hops);
    p->failures = g_new0(guint64, p->n_hops);
    p->last_error = g_new0(char *, p->n_hops);
    return g_steal_pointer(&p);
}

static void
proxy_destroy(gpointer self)
{
    if (self)
        proxy_unref(self);
}

/* ---- connect: the proxies in order, healthy ones first ------------------ */

typedef struct {
    Proxy *p;
    OtsEndpoint endpoint;
    char *ep_host;
    GCancellable *cancellable;
    OtsHopReportFunc report;
    gpointer report_data;
    guint *order;
    guint n_order;
    guint pos;
    gint64 start_us;
    GString *errors;
    int last_code;
} ProxyOp;

static void
proxy_op_free(gpointer data)
{
    ProxyOp *op = data;
    g_clear_object(&op->cancellable);
    g_free(op->ep_host);
    g_free(op->order);
    g_string_free(op->errors, TRUE);
    proxy_unref(op->p);
    g_free(op);
}

static void
info_report(ProxyOp *op, guint idx, const char *detail)
{
    if (!op->report)
        return;
    OtsHopReport r = {
        .hop = 0,
        .hop_name = op->p->hops[idx]->name,
        .step = OTS_HOP_INFO,
        .elapsed_us = g_get_monotonic_time() - op->start_us,
        .detail = detail,
    };
    op->report(&r, op->report_data);
}

static void try_proxy(GTask *task);

static void
on_proxy_done(GObject *source, GAsyncResult *res, gpointer data)
{
    (void)source;
    g_autoptr(GTask) task = data;
    ProxyOp *op = g_task_get_task_data(task);
    Proxy *p = op->p;
    guint idx = op->order[op->pos];
    g_autoptr(GError) error = NULL;
    GIOStream *stream = ots_proxy_chain_connect_finish(res, &error);
    gint64 now = g_get_monotonic_time();
    if (stream) {
        g_mutex_lock(&p->lock);
        gboolean was_bad = p->bad_until[idx] != 0;
        p->bad_until[idx] = 0;
        p->bad_since[idx] = 0;
        g_mutex_unlock(&p->lock);
        if (was_bad && p->n_hops > 1)
            g_message("proxy %s is healthy again", p->hops[idx]->name);
        g_task_return_pointer(task, stream, g_object_unref);
        return;
    }
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    g_mutex_lock(&p->lock);
    p->failures[idx]++;
    g_free(p->last_error[idx]);
    p->last_error[idx] = g_strdup(error->message);
    g_mutex_unlock(&p->lock);
    if (p->n_hops > 1) {
        g_mutex_lock(&p->lock);
        gboolean was_bad = p->bad_until[idx] != 0;
        p->bad_until[idx] = now + p->unhealthy_us;
        if (!was_bad)
            p->bad_since[idx] = now;
        g_mutex_unlock(&p->lock);
        if (!was_bad)
            g_message("%s; tried after the others for %" G_GINT64_FORMAT " s", error->message,
                      p->unhealthy_us / G_USEC_PER_SEC);
    }
    if (op->errors->len)
        g_string_append(op->errors, "; ");
    g_string_append(op->errors, error->message);
    op->last_code = error->domain == G_IO_ERROR ? error->code : G_IO_ERROR_FAILED;
    op->pos++;
    if (op->pos < op->n_order) {
        g_autofree char *d = g_strdup_printf("%s failed; trying the next proxy, %s",
                                             p->hops[idx]->name, p->hops[op->order[op->pos]]->name);
        info_report(op, op->order[op->pos], d);
        try_proxy(task);
        return;
    }
    if (op->n_order == 1)
        g_task_return_new_error(task, G_IO_ERROR, op->last_code, "%s", op->errors->str);
    else
        g_task_return_new_error(task, G_IO_ERROR, op->last_code, "all %u proxies failed: %s",
                                op->n_order, op->errors->str);
}

static void
try_proxy(GTask *task)
{
    ProxyOp *op = g_task_get_task_data(task);
    guint idx = op->order[op->pos];
    ots_proxy_chain_connect_async(&op->p->hops[idx], 1, op->p->bind, &op->endpoint, 0,
                                  proxy_ref(op->p), proxy_unref, op->cancellable, op->report,
                                  op->report_data, on_proxy_done, g_object_ref(task));
}

static void
proxy_connect_async(gpointer self, const OtsEndpoint *endpoint, GCancellable *cancellable,
                    OtsHopReportFunc report, gpointer report_data, GAsyncReadyCallback callback,
                    gpointer user_data)
{
    Proxy *p = self;
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_task_set_source_tag(task, proxy_connect_async);
    g_task_set_check_cancellable(task, FALSE);
    ProxyOp *op = g_new0(ProxyOp, 1);
    op->p = proxy_ref(p);
    op->ep_host = g_strdup(endpoint && endpoint->host ? endpoint->host : "");
    op->endpoint.host = op->ep_host;
    op->endpoint.port = endpoint ? endpoint->port : 0;
    op->cancellable = cancellable ? g_object_ref(cancellable) : NULL;
    op->report = report;
    op->report_data = report_data;
    op->start_us = g_get_monotonic_time();
    op->errors = g_string_new(NULL);
    g_task_set_task_data(task, op, proxy_op_free);

    /* Healthy proxies in the configured order, then the unhealthy ones, the
     * one whose penalty ends first first (all are tried: a stale mark must
     * not leave the sensor without a way out). */
    gint64 now = g_get_monotonic_time();
    op->order = g_new0(guint, p->n_hops);
    g_autofree guint *bad = g_new0(guint, p->n_hops);
    guint n_bad = 0;
    g_autofree gint64 *until = g_new0(gint64, p->n_hops);
    g_autofree gint64 *since = g_new0(gint64, p->n_hops);
    g_mutex_lock(&p->lock);
    for (guint i = 0; i < p->n_hops; i++) {
        if (p->bad_until[i] != 0 && p->bad_until[i] <= now) {
            p->bad_until[i] = 0; /* the penalty is over: in order again */
            p->bad_since[i] = 0;
        }
        until[i] = p->bad_until[i];
        since[i] = p->bad_since[i];
    }
    g_mutex_unlock(&p->lock);
    for (guint i = 0; i < p->n_hops; i++) {
        if (until[i] == 0)
            op->order[op->n_order++] = i;
        else
            bad[n_bad++] = i;
    }
    for (guint a = 1; a < n_bad; a++) /* insertion sort by penalty end */
        for (guint b = a; b > 0 && until[bad[b]] < until[bad[b - 1]]; b--) {
            guint t = bad[b];
            bad[b] = bad[b - 1];
            bad[b - 1] = t;
        }
    for (guint k = 0; k < n_bad; k++) {
        guint i = bad[k];
        op->order[op->n_order++] = i;
        if (n_bad < p->n_hops) {
            g_autofree char *d = g_strdup_printf(
                "%s is marked unhealthy (failed %.1f s ago, for %.1f s more): tried last",
                p->hops[i]->name, (double)(now - since[i]) / G_USEC_PER_SEC,
                (double)(until[i] - now) / G_USEC_PER_SEC);
            info_report(op, i, d);
        }
    }
    try_proxy(task);
}

static GIOStream *
proxy_connect_finish(gpointer self, GAsyncResult *result, GError **error)
{
    (void)self;
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}

/* The `sensor` event's uplink.transport_status: each proxy's health, so an
 * operator sees a dead proxy of the list even while the next one carries
 * the traffic. The messages name host:port only, never credentials. */
static void
proxy_status(gpointer self, OtsEvent *event)
{
    Proxy *p = self;
    gint64 now = g_get_monotonic_time();

    ots_event_begin_array(event, "proxies");
    g_mutex_lock(&p->lock);
    for (guint i = 0; i < p->n_hops; i++) {
        gboolean bad = p->bad_until[i] != 0 && p->bad_until[i] > now;
        ots_event_begin_object(event, NULL);
        ots_event_add_string(event, "proxy", p->hops[i]->name);
        ots_event_add_string(event, "state", bad ? "unhealthy" : "healthy");
        if (bad) { /* whole seconds left, rounded up */
            gint64 left = p->bad_until[i] - now + G_USEC_PER_SEC - 1;
            ots_event_add_uint(event, "tried_last_for_s", (guint64)(left / G_USEC_PER_SEC));
        }
        ots_event_add_uint(event, "failures", p->failures[i]);
        if (p->last_error[i])
            ots_event_add_string(event, "last_error", p->last_error[i]);
        ots_event_end_object(event);
    }
    g_mutex_unlock(&p->lock);
    ots_event_end_array(event);
}

static const OtsTransportInfo proxy_info = {
    .abi_major = OTS_TRANSPORT_ABI_MAJOR,
    .abi_minor = OTS_TRANSPORT_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "proxy",
    .version = "0.1.0",
    .description = "HTTP CONNECT through the site's proxy (Basic auth, TLS to the proxy, a list "
                   "of proxies with health memory)",
    .flags = OTS_TRANSPORT_FLAG_NONE,
    .settings = proxy_settings,
    .create = proxy_create,
    .destroy = proxy_destroy,
    .connect_async = proxy_connect_async,
    .connect_finish = proxy_connect_finish,
    .status = proxy_status,
};

OTS_TRANSPORT_DEFINE(proxy_info)
