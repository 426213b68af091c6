/* SPDX-License-Identifier: Apache-2.0 */
/* The `multicloud` transport: a sensor in another cloud reaches the portal
 * over one of several paths (private interconnect, VPN, public internet),
 * each a direct TCP connection or a proxy or proxy chain, with its own
 * source address or interface and a priority.
 *
 * Policy `failover`: connect_async() tries the best healthy path and, when
 * it fails, the next ones within the same call, so the uplink is back within
 * one reconnect. A failed path is probed in the background (TCP, plus the
 * CONNECTs of a proxy path; never TLS) with exponential backoff. A path
 * better than the one in use must stay healthy for hold_down_s before it is
 * chosen again: probes keep checking it during the hold-down, so a flapping
 * path never takes the traffic back.
 *
 * Fail-back happens at the next connect_async(): the plugin cannot end the
 * uplink's live session (see README.md for the SDK hook that would make it
 * immediate). TLS is the core's, end to end, and verifies the endpoint's
 * name whatever address a path connects to. */
#include "ots-transport-common.h"

#include <net/if.h>
#include <otsensor/transport.h>
#include <string.h>

#define MAX_PATHS 16
#define MAX_HOPS 16
#define DEFAULT_HOLD_DOWN_S 60
#define DEFAULT_PROBE_MIN_MS 1000
#define DEFAULT_PROBE_MAX_MS 60000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000

typedef enum { PATH_DIRECT, PATH_PROXY, PATH_CHAIN } PathKind;

static const char *const kind_names[] = {"direct", "proxy", "proxy-chain", NULL};
static const char *const policy_names[] = {"failover", NULL};

typedef struct _Multi Multi;

typedef struct {
    /* Configuration: immutable after create(). */
    Multi *m; /* the owner (no reference: paths live in it) */
    guint index;
    char *name;
    PathKind kind;
    gint64 priority;
    char *address; /* direct: connect here; proxies: CONNECT here (instead of the endpoint host) */
    guint16 port;  /* direct: connect to this port instead of the endpoint's (0: the endpoint's) */
    GInetAddress *bind;
    char *iface;
    gint64 connect_timeout_ms;
    OtsProxyHop **hops;
    guint n_hops;

    /* Health, under Multi.lock. */
    gboolean failed;
    gint64 since_real;   /* wall clock, µs: when the path became failed or healthy */
    gint64 healthy_mono; /* monotonic µs it became healthy again; 0: never failed */
    char *last_error;
    gint64 last_error_real;
    guint failures; /* consecutive */
    guint64 total_failures;
    guint backoff_ms;
    gint64 next_probe_mono; /* 0: none scheduled */
    gint64 next_probe_real;
    GSource *probe_timer;
    GCancellable *probe_cancel; /* set while a probe runs */
    gint64 active_real;         /* when it last became the active path */
} Path;

struct _Multi {
    Path *paths;
    guint n_paths;
    guint *order; /* path indices by priority, then configuration order */
    guint *rank;  /* index -> position in order */
    gint64 hold_down_us;
    guint probe_min_ms;
    guint probe_max_ms;

    GMutex lock;
    gboolean destroyed;
    int active; /* the path of the last successful connect, -1: none yet */
    guint64 failovers;
    guint64 failbacks;
    GMainContext *context; /* where probes run: that of the last connect_async() */
    char *ep_host;         /* the endpoint, for probes */
    guint16 ep_port;
    /* The core's "end this session, connect again" (ABI 1.1); main thread. */
    OtsReconnectFunc reconnect;
    gpointer reconnect_data;
};

/* ---- settings ---------------------------------------------------------- */

static const OtsSettingSpec hop_settings[] = {
    OTS_PROXY_HOP_SETTING_SPECS,
    {.name = NULL, .type = OTS_SETTING_END},
};

static const OtsSettingSpec path_settings[] = {
    {.name = "name",
     .type = OTS_SETTING_STRING,
     .required = TRUE,
     .min = 1,
     .max = 64,
     .help = "the path's name, unique (\"interconnect\", \"vpn\", \"internet\")"},
    {.name = "transport",
     .type = OTS_SETTING_STRING,
     .required = TRUE,
     .choices = kind_names,
     .help = "how the path reaches the endpoint: direct, proxy or proxy-chain"},
    {.name = "priority",
     .type = OTS_SETTING_INT,
     .min = 0,
     .max = 1000000,
     .help = "lower is better (default 100); equal priorities keep the configuration order"},
    {.name = "address",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 253,
     .help = "direct: connect to this host or IP (a private endpoint) instead of the endpoint "
             "host; proxy paths: CONNECT to it. TLS still verifies the endpoint name"},
    {.name = "bind_address",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 64,
     .help = "source IP address of the path's TCP connection"},
    {.name = "bind_interface",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = IFNAMSIZ - 1,
     .help = "network interface of the path (SO_BINDTODEVICE; may need CAP_NET_RAW)"},
    {.name = "hops",
     .type = OTS_SETTING_LIST,
     .children = hop_settings,
     .help = "proxy-chain: the proxies from the sensor outwards, as in the proxy-chain transport"},
    /* host, port, user, password_file, tls..., headers, connect_timeout_ms,
     * reply_timeout_ms: the proxy's settings inline; for direct, `port` and
     * `connect_timeout_ms` only. */
    OTS_PROXY_HOP_SETTING_SPECS,
    {.name = NULL, .type = OTS_SETTING_END},
};

static const OtsSettingSpec multi_settings[] = {
    {.name = "paths",
     .type = OTS_SETTING_LIST,
     .required = TRUE,
     .children = path_settings,
     .help = "1 to 16 paths, each {name, transport, priority, address, bind_address, "
             "bind_interface, and the transport's own settings}"},
    {.name = "policy",
     .type = OTS_SETTING_STRING,
     .choices = policy_names,
     .help = "path selection: failover (the best healthy path; the only policy)"},
    {.name = "hold_down_s",
     .type = OTS_SETTING_INT,
     .min = 0,
     .max = 86400,
     .help = "a better path must stay healthy this long before it is used again (default 60)"},
    {.name = "probe_backoff_min_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 3600000,
     .help = "first probe of a failed path after this long (default 1000)"},
    {.name = "probe_backoff_max_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 3600000,
     .help = "probes of a failed path back off up to this interval (default 60000)"},
    {.name = "connect_timeout_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 600000,
     .help = "default per-path connect timeout, ms (default 5000); keep the sum over the paths "
             "below uplink.connect_timeout_ms"},
    {.name = NULL, .type = OTS_SETTING_END},
};

/* ---- instance ---------------------------------------------------------- */

static void
path_clear(Path *p)
{
    g_free(p->name);
    g_free(p->address);
    g_clear_object(&p->bind);
    g_free(p->iface);
    for (guint i = 0; i < p->n_hops; i++)
        ots_proxy_hop_free(p->hops[i]);
    g_free(p->hops);
    g_free(p->last_error);
    if (p->probe_timer) {
        g_source_destroy(p->probe_timer);
        g_source_unref(p->probe_timer);
    }
    g_clear_object(&p->probe_cancel);
}

static void
multi_clear(gpointer mem)
{
    Multi *m = mem;
    for (guint i = 0; i < m->n_paths; i++)
        path_clear(&m->paths[i]);
    g_free(m->paths);
    g_free(m->order);
    g_free(m->rank);
    if (m->context)
        g_main_context_unref(m->context);
    g_free(m->ep_host);
    g_mutex_clear(&m->lock);
}

static Multi *
multi_ref(Multi *m)
{
    return g_atomic_rc_box_acquire(m);
}

static void
multi_unref(gpointer m)
{
    g_atomic_rc_box_release_full(m, multi_clear);
}

static void
multi_unref_typed(Multi *m)
{
    multi_unref(m);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Multi, multi_unref_typed)

static const char *const direct_forbidden[] = {
    "host",           "user",    "password_file",    "tls",  "tls_ca_file", "tls_client_cert",
    "tls_client_key", "headers", "reply_timeout_ms", "hops", NULL};
static const char *const chain_forbidden[] = {
    "host",           "port",    "user", "password_file", "tls", "tls_ca_file", "tls_client_cert",
    "tls_client_key", "headers", NULL};

static gboolean
has_key(const OtsSettings *s, const char *key)
{
    const char *str;
    gint64 i;
    gboolean b;
    return ots_settings_get_string(s, key, &str) || ots_settings_get_int(s, key, &i) ||
           ots_settings_get_bool(s, key, &b) || ots_settings_get_length(s, key) > 0;
}

static gboolean
reject_keys(const OtsSettings *s, const char *const *keys, const char *transport, GError **error)
{
    for (guint i = 0; keys[i]; i++) {
        if (has_key(s, keys[i])) {
            ots_proxy_setting_error(s, keys[i], error, "is not a setting of a %s path", transport);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
path_init(Path *p, const OtsSettings *s, gint64 default_timeout_ms, GError **error)
{
    const char *v = NULL;
    ots_settings_get_string(s, "name", &v);
    if (!v || !*v) {
        ots_proxy_setting_error(s, "name", error, "is required (a unique name for the path)");
        return FALSE;
    }
    for (const char *c = v; *c; c++) {
        if (!g_ascii_isgraph(*c) && *c != ' ') {
            ots_proxy_setting_error(s, "name", error, "must be printable text");
            return FALSE;
        }
    }
    p->name = g_strdup(v);
    v = NULL;
    ots_settings_get_string(s, "transport", &v);
    if (!v) {
        ots_proxy_setting_error(s, "transport", error,
                                "is required (direct, proxy or proxy-chain)");
        return FALSE;
    }
    if (g_str_equal(v, "direct"))
        p->kind = PATH_DIRECT;
    else if (g_str_equal(v, "proxy"))
        p->kind = PATH_PROXY;
    else if (g_str_equal(v, "proxy-chain"))
        p->kind = PATH_CHAIN;
    else {
        ots_proxy_setting_error(s, "transport", error,
                                "'%s' is not one of direct, proxy, proxy-chain", v);
        return FALSE;
    }
    p->priority = 100;
    gint64 n = 0;
    if (ots_settings_get_int(s, "priority", &n))
        p->priority = CLAMP(n, 0, 1000000);
    p->connect_timeout_ms = default_timeout_ms;
    if (ots_settings_get_int(s, "connect_timeout_ms", &n))
        p->connect_timeout_ms = CLAMP(n, 100, 600000);
    if (ots_settings_get_string(s, "address", &v)) {
        g_autoptr(GInetAddress) ip = g_inet_address_new_from_string(v);
        gboolean ok = ip != NULL || (strlen(v) <= 253 && *v != '.' && *v != '-');
        for (const char *c = v; ok && !ip && *c; c++)
            ok = g_ascii_isalnum(*c) || *c == '-' || *c == '.';
        if (!ok) {
            ots_proxy_setting_error(
                s, "address", error, "'%s' is neither an IP address nor a host name%s", v,
                strchr(v, ':') ? " (give a direct path's port with `port`)" : "");
            return FALSE;
        }
        p->address = g_strdup(v);
    }
    if (!ots_proxy_parse_bind_address(s, &p->bind, error))
        return FALSE;
    if (ots_settings_get_string(s, "bind_interface", &v)) {
        if (!ots_interface_name_is_valid(v)) {
            ots_proxy_setting_error(s, "bind_interface", error,
                                    "'%s' is not a valid interface name (1 to %d characters, no "
                                    "'/', ':' or spaces)",
                                    v, IFNAMSIZ - 1);
            return FALSE;
        }
        p->iface = g_strdup(v);
    }

    if (p->kind == PATH_DIRECT) {
        if (!reject_keys(s, direct_forbidden, "direct", error))
            return FALSE;
        if (ots_settings_get_int(s, "port", &n)) {
            if (n < 1 || n > 65535) {
                ots_proxy_setting_error(s, "port", error, "%" G_GINT64_FORMAT " is not a TCP port",
                                        n);
                return FALSE;
            }
            p->port = (guint16)n;
        }
        return TRUE;
    }
    OtsProxyHop defaults = {
        .port = 3128,
        .connect_timeout_ms = p->connect_timeout_ms,
        .reply_timeout_ms = OTS_PROXY_DEFAULT_REPLY_TIMEOUT_MS,
    };
    if (ots_settings_get_int(s, "reply_timeout_ms", &n))
        defaults.reply_timeout_ms = CLAMP(n, 100, 600000);
    if (p->kind == PATH_PROXY) {
        if (ots_settings_get_length(s, "hops") > 0) {
            ots_proxy_setting_error(s, "hops", error,
                                    "is for proxy-chain paths (a proxy path has host and port)");
            return FALSE;
        }
        OtsProxyHop *hop = ots_proxy_hop_new(s, &defaults, TRUE, error);
        if (!hop)
            return FALSE;
        p->hops = g_new0(OtsProxyHop *, 1);
        p->hops[p->n_hops++] = hop;
        return TRUE;
    }
    if (!reject_keys(s, chain_forbidden, "proxy-chain (set them per hop)", error))
        return FALSE;
    guint nh = ots_settings_get_length(s, "hops");
    if (nh == 0 || nh > MAX_HOPS) {
        ots_proxy_setting_error(s, "hops", error, "a proxy-chain path needs 1 to %d hops (has %u)",
                                MAX_HOPS, nh);
        return FALSE;
    }
    p->hops = g_new0(OtsProxyHop *, nh);
    for (guint i = 0; i < nh; i++) {
        const OtsSettings *e = ots_settings_get_element(s, "hops", i);
        OtsProxyHop *hop = e ? ots_proxy_hop_new(e, &defaults, TRUE, error) : NULL;
        if (!hop) {
            if (!e)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "hops: element %u is not a group", i + 1);
            else
                g_prefix_error(error, "hop %u: ", i + 1);
            return FALSE;
        }
        p->hops[p->n_hops++] = hop;
    }
    return TRUE;
}

static gpointer
multi_create(const OtsSettings *settings, GError **error)
{
    if (!settings) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the multicloud transport needs settings (paths)");
        return NULL;
    }
    g_autoptr(Multi) m = g_atomic_rc_box_new0(Multi);
    g_mutex_init(&m->lock);
    m->active = -1;
    m->hold_down_us = (gint64)DEFAULT_HOLD_DOWN_S * G_USEC_PER_SEC;
    m->probe_min_ms = DEFAULT_PROBE_MIN_MS;
    m->probe_max_ms = DEFAULT_PROBE_MAX_MS;
    gint64 v = 0;
    if (ots_settings_get_int(settings, "hold_down_s", &v))
        m->hold_down_us = CLAMP(v, 0, 86400) * G_USEC_PER_SEC;
    if (ots_settings_get_int(settings, "probe_backoff_min_ms", &v))
        m->probe_min_ms = (guint)CLAMP(v, 100, 3600000);
    if (ots_settings_get_int(settings, "probe_backoff_max_ms", &v))
        m->probe_max_ms = (guint)CLAMP(v, 100, 3600000);
    if (m->probe_max_ms < m->probe_min_ms) {
        ots_proxy_setting_error(settings, "probe_backoff_max_ms", error,
                                "(%u) is below probe_backoff_min_ms (%u)", m->probe_max_ms,
                                m->probe_min_ms);
        return NULL;
    }
    const char *policy = NULL;
    if (ots_settings_get_string(settings, "policy", &policy) && !g_str_equal(policy, "failover")) {
        ots_proxy_setting_error(settings, "policy", error,
                                "'%s' is not a policy (the only one is failover)", policy);
        return NULL;
    }
    gint64 timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (ots_settings_get_int(settings, "connect_timeout_ms", &v))
        timeout_ms = CLAMP(v, 100, 600000);

    guint n = ots_settings_get_length(settings, "paths");
    if (n == 0 || n > MAX_PATHS) {
        ots_proxy_setting_error(settings, "paths", error, "needs 1 to %d paths (has %u)", MAX_PATHS,
                                n);
        return NULL;
    }
    m->paths = g_new0(Path, n);
    for (guint i = 0; i < n; i++) {
        const OtsSettings *e = ots_settings_get_element(settings, "paths", i);
        Path *p = &m->paths[i];
        p->m = m;
        p->index = i;
        m->n_paths++;
        if (!e) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "paths: element %u is not a group", i + 1);
            return NULL;
        }
        if (!path_init(p, e, timeout_ms, error)) {
            g_prefix_error(error, "path %u%s%s%s: ", i + 1, p->name ? " (" : "",
                           p->name ? p->name : "", p->name ? ")" : "");
            return NULL;
        }
        for (guint j = 0; j < i; j++) {
            if (g_str_equal(m->paths[j].name, p->name)) {
                ots_proxy_setting_error(e, "name", error,
                                        "'%s' is the name of path %u too (names must be unique)",
                                        p->name, j + 1);
                return NULL;
            }
        }
    }
    /* By priority; a stable insertion sort keeps the configuration order. */
    m->order = g_new0(guint, n);
    m->rank = g_new0(guint, n);
    for (guint i = 0; i < n; i++) {
        guint k = i;
        while (k > 0 && m->paths[m->order[k - 1]].priority > m->paths[i].priority) {
            m->order[k] = m->order[k - 1];
            k--;
        }
        m->order[k] = i;
    }
    for (guint k = 0; k < n; k++)
        m->rank[m->order[k]] = k;
    return g_steal_pointer(&m);
}

static void
multi_destroy(gpointer self)
{
    Multi *m = self;
    if (!m)
        return;
    /* Probes hold references: stop them so the instance can go. */
    g_mutex_lock(&m->lock);
    m->destroyed = TRUE;
    for (guint i = 0; i < m->n_paths; i++) {
        Path *p = &m->paths[i];
        if (p->probe_timer) {
            g_source_destroy(p->probe_timer);
            g_source_unref(p->probe_timer);
            p->probe_timer = NULL;
        }
        if (p->probe_cancel)
            g_cancellable_cancel(p->probe_cancel);
    }
    g_mutex_unlock(&m->lock);
    multi_unref(m);
}

/* ---- health (all under Multi.lock) --------------------------------------- */

static const char *
kind_name(const Path *p)
{
    return kind_names[p->kind];
}

/* Healthy, better than the active path, and not yet healthy for hold_down_s. */
static gboolean
in_hold_down(const Multi *m, const Path *p, gint64 now)
{
    if (p->failed || p->healthy_mono == 0 || now - p->healthy_mono >= m->hold_down_us)
        return FALSE;
    if (m->active < 0 || m->paths[m->active].failed)
        return FALSE;
    return m->rank[p->index] < m->rank[m->active];
}

static void schedule_probe_locked(Multi *m, Path *p, guint delay_ms);

static void
mark_failed_locked(Multi *m, Path *p, const char *message)
{
    if (!p->failed) {
        p->failed = TRUE;
        p->since_real = g_get_real_time();
        p->backoff_ms = m->probe_min_ms;
    }
    p->healthy_mono = 0;
    p->failures++;
    p->total_failures++;
    g_free(p->last_error);
    p->last_error = g_strdup(message);
    p->last_error_real = g_get_real_time();
    if (!p->probe_cancel && !p->probe_timer)
        schedule_probe_locked(m, p, p->backoff_ms);
}

static void
stop_probe_locked(Path *p)
{
    if (p->probe_timer) {
        g_source_destroy(p->probe_timer);
        g_source_unref(p->probe_timer);
        p->probe_timer = NULL;
    }
    if (p->probe_cancel)
        g_cancellable_cancel(p->probe_cancel);
    p->next_probe_mono = 0;
    p->next_probe_real = 0;
}

static void
mark_healthy_locked(Multi *m, Path *p)
{
    (void)m;
    if (p->failed) {
        p->failed = FALSE;
        p->since_real = g_get_real_time();
        p->healthy_mono = g_get_monotonic_time();
    }
    p->failures = 0;
    p->backoff_ms = 0;
}

/* ---- probes -------------------------------------------------------------- */

typedef struct {
    Multi *m;
    Path *p;
    GCancellable *cancel;
    OtsEndpoint ep;
    char *ep_host;
} Probe;

static void
probe_free(Probe *pr)
{
    g_clear_object(&pr->cancel);
    g_free(pr->ep_host);
    multi_unref(pr->m);
    g_free(pr);
}

/* The interval of the probes that confirm a recovered path during its
 * hold-down: a path that fails again within it starts over. */
static guint
confirm_interval_ms(const Multi *m)
{
    gint64 half = m->hold_down_us / 2000;
    return (guint)MAX(MIN((gint64)m->probe_max_ms, half), 100);
}

static void
probe_done(Probe *pr, GIOStream *stream, GError *error)
{
    Multi *m = pr->m;
    Path *p = pr->p;
    if (stream) {
        /* Only the path was tested: no TLS, nothing sent through the tunnel. */
        g_io_stream_close(stream, NULL, NULL);
        g_object_unref(stream);
    }
    g_mutex_lock(&m->lock);
    if (p->probe_cancel == pr->cancel)
        g_clear_object(&p->probe_cancel);
    gboolean cancelled = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    if (m->destroyed || cancelled) {
        g_mutex_unlock(&m->lock);
        g_clear_error(&error);
        probe_free(pr);
        return;
    }
    gint64 now = g_get_monotonic_time();
    gboolean fail_back = FALSE;
    if (error) {
        gboolean was_failed = p->failed;
        if (was_failed)
            p->backoff_ms = MIN(p->backoff_ms * 2, m->probe_max_ms);
        g_autofree char *msg = g_strdup_printf("probe: %s", error->message);
        mark_failed_locked(m, p, msg); /* schedules the next probe after backoff_ms */
        if (!was_failed)
            g_message("path %s failed again during its hold-down: %s", p->name, error->message);
        else
            g_debug("path %s still down: %s (next probe in %u ms)", p->name, error->message,
                    p->backoff_ms);
    } else {
        gboolean was_failed = p->failed;
        mark_healthy_locked(m, p);
        if (was_failed)
            g_message("path %s answers again; %s", p->name,
                      m->active >= 0 && m->rank[p->index] < m->rank[m->active] &&
                              m->hold_down_us > 0
                          ? "it takes the traffic back after its hold-down"
                          : "standby");
        if (in_hold_down(m, p, now)) {
            schedule_probe_locked(m, p, confirm_interval_ms(m));
        } else {
            p->next_probe_mono = 0;
            p->next_probe_real = 0;
            if (!was_failed && m->active >= 0 && m->rank[p->index] < m->rank[m->active]) {
                g_message("path %s has been healthy for its hold-down (%" G_GINT64_FORMAT
                          " s): failing back to it",
                          p->name, m->hold_down_us / G_USEC_PER_SEC);
                fail_back = TRUE;
            }
        }
    }
    OtsReconnectFunc reconnect = fail_back ? m->reconnect : NULL;
    gpointer reconnect_data = m->reconnect_data;
    g_autofree char *reason = fail_back ? g_strdup_printf("fail back to path %s", p->name) : NULL;
    g_mutex_unlock(&m->lock);
    /* Outside the lock: the core may call connect_async from it. */
    if (reconnect)
        reconnect(reconnect_data, reason);
    g_clear_error(&error);
    probe_free(pr);
}

static void
on_probe_chain(GObject *source, GAsyncResult *res, gpointer data)
{
    (void)source;
    GError *error = NULL;
    GIOStream *s = ots_proxy_chain_connect_finish(res, &error);
    probe_done(data, s, error);
}

static void
on_probe_tcp(GObject *source, GAsyncResult *res, gpointer data)
{
    (void)source;
    Probe *pr = data;
    GError *error = NULL;
    GSocketConnection *conn = ots_tcp_connect_finish(res, &error);
    if (!conn || pr->p->kind == PATH_DIRECT) {
        probe_done(pr, conn ? G_IO_STREAM(conn) : NULL, error);
        return;
    }
    ots_proxy_chain_connect_over_async(G_IO_STREAM(conn), pr->p->hops, pr->p->n_hops, &pr->ep, 0,
                                       multi_ref(pr->m), multi_unref, pr->cancel, NULL, NULL,
                                       on_probe_chain, pr);
    g_object_unref(conn);
}

static gboolean
on_probe_timer(gpointer data)
{
    Path *p = data;
    Multi *m = p->m;
    g_mutex_lock(&m->lock);
    if (m->destroyed || !p->probe_timer) {
        g_mutex_unlock(&m->lock);
        return G_SOURCE_REMOVE;
    }
    g_source_unref(p->probe_timer); /* the dispatch holds it until we return */
    p->probe_timer = NULL;
    p->next_probe_mono = 0;
    p->next_probe_real = 0;
    Probe *pr = g_new0(Probe, 1);
    pr->m = multi_ref(m);
    pr->p = p;
    pr->cancel = g_cancellable_new();
    g_set_object(&p->probe_cancel, pr->cancel);
    /* direct: where to connect; proxy paths: what to CONNECT to. */
    pr->ep_host = g_strdup(p->address ? p->address : m->ep_host);
    pr->ep.host = pr->ep_host;
    pr->ep.port = m->ep_port;
    const char *host = p->kind == PATH_DIRECT ? pr->ep_host : p->hops[0]->host;
    guint16 port = p->kind == PATH_DIRECT ? (p->port ? p->port : m->ep_port) : p->hops[0]->port;
    gint64 timeout =
        p->kind == PATH_DIRECT ? p->connect_timeout_ms : p->hops[0]->connect_timeout_ms;
    g_mutex_unlock(&m->lock);
    /* The operations below complete in the context this timer runs in. */
    g_main_context_push_thread_default(g_source_get_context(g_main_current_source()));
    ots_tcp_connect_async(host, port, p->bind, p->iface, timeout, pr->cancel, on_probe_tcp, pr);
    g_main_context_pop_thread_default(g_source_get_context(g_main_current_source()));
    return G_SOURCE_REMOVE;
}

static void
probe_timer_release(gpointer data)
{
    multi_unref(((Path *)data)->m);
}

/* Arms the probe timer of @p in the context of the last connect. */
static void
schedule_probe_locked(Multi *m, Path *p, guint delay_ms)
{
    if (m->destroyed || !m->context || !m->ep_host)
        return;
    if (p->probe_timer) {
        g_source_destroy(p->probe_timer);
        g_source_unref(p->probe_timer);
    }
    p->probe_timer = g_timeout_source_new(delay_ms);
    /* The timer holds the instance; destroy() removes pending timers. */
    multi_ref(m);
    g_source_set_callback(p->probe_timer, on_probe_timer, p, probe_timer_release);
    g_source_attach(p->probe_timer, m->context);
    p->next_probe_mono = g_get_monotonic_time() + (gint64)delay_ms * 1000;
    p->next_probe_real = g_get_real_time() + (gint64)delay_ms * 1000;
}

/* ---- connect --------------------------------------------------------------- */

typedef struct {
    Multi *m;
    OtsEndpoint ep;
    char *ep_host;
    OtsEndpoint path_ep; /* the endpoint as the current path CONNECTs to it */
    GCancellable *cancellable;
    OtsHopReportFunc report;
    gpointer report_data;
    guint *order;
    guint n_order;
    guint pos;
    gint64 start_us;
    gint64 attempt_us;
    GString *errors;
    int last_code;
} ConnectOp;

static void
connect_op_free(gpointer data)
{
    ConnectOp *op = data;
    g_clear_object(&op->cancellable);
    g_free(op->ep_host);
    g_free(op->order);
    g_string_free(op->errors, TRUE);
    multi_unref(op->m);
    g_free(op);
}

static Path *
cur_path(ConnectOp *op)
{
    return &op->m->paths[op->order[op->pos]];
}

static void
report_path(ConnectOp *op, guint hop, const char *hop_name, OtsHopStep step, gint64 elapsed_us,
            const char *detail)
{
    if (!op->report)
        return;
    g_autofree char *d = g_strdup_printf("path %s: %s", cur_path(op)->name, detail ? detail : "");
    OtsHopReport r = {
        .hop = hop,
        .hop_name = hop_name,
        .step = step,
        .elapsed_us = elapsed_us,
        .detail = d,
    };
    op->report(&r, op->report_data);
}

/* The chain engine's reports, named after the path, timed from our start. */
static void
on_chain_report(const OtsHopReport *r, gpointer data)
{
    ConnectOp *op = data;
    report_path(op, r->hop, r->hop_name, r->step, r->elapsed_us + (op->attempt_us - op->start_us),
                r->detail);
}

static void try_path(GTask *task);

static void
path_succeeded(GTask *task, GIOStream *stream)
{
    ConnectOp *op = g_task_get_task_data(task);
    Multi *m = op->m;
    Path *p = cur_path(op);
    g_mutex_lock(&m->lock);
    mark_healthy_locked(m, p);
    stop_probe_locked(p);
    int prev = m->active;
    if (prev != (int)p->index) {
        m->active = (int)p->index;
        p->active_real = g_get_real_time();
        if (prev >= 0) {
            gboolean back = m->rank[p->index] < m->rank[prev];
            if (back)
                m->failbacks++;
            else
                m->failovers++;
            g_message("multicloud: now on path %s (%s), %s path %s", p->name, kind_name(p),
                      back ? "failed back from" : "failed over from", m->paths[prev].name);
        }
    }
    g_mutex_unlock(&m->lock);
    g_autofree char *d =
        g_strdup_printf("selected (%s, priority %" G_GINT64_FORMAT ")", kind_name(p), p->priority);
    report_path(op, 0, p->name, OTS_HOP_INFO, g_get_monotonic_time() - op->start_us, d);
    g_task_return_pointer(task, stream, g_object_unref);
}

static void
path_failed(GTask *task, GError *error)
{
    ConnectOp *op = g_task_get_task_data(task);
    Multi *m = op->m;
    Path *p = cur_path(op);
    gint64 took_us = g_get_monotonic_time() - op->attempt_us;
    gboolean cancelled = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_autofree char *msg =
        cancelled ? g_strdup_printf("abandoned after %.1f ms: the uplink cancelled the connect "
                                    "(uplink.connect_timeout_ms reached, or shutdown)",
                                    (double)took_us / 1000.0)
                  : g_strdup(error->message);
    g_mutex_lock(&m->lock);
    /* A path slower than the uplink's own timeout is failed too: otherwise
     * every reconnect would try it first and never reach the next one. */
    mark_failed_locked(m, p, msg);
    g_mutex_unlock(&m->lock);
    g_string_append_printf(op->errors, "%spath %s (%s): %s", op->errors->len ? "; " : "", p->name,
                           kind_name(p), msg);
    op->last_code = error->domain == G_IO_ERROR ? error->code : G_IO_ERROR_FAILED;
    if (cancelled) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "%s", op->errors->str);
        g_error_free(error);
        return;
    }
    g_error_free(error);
    op->pos++;
    if (op->pos < op->n_order) {
        Path *next = cur_path(op);
        g_message("path %s failed: %s; trying path %s", p->name, msg, next->name);
        return try_path(task);
    }
    if (op->n_order == 1)
        g_task_return_new_error(task, G_IO_ERROR, op->last_code, "%s", op->errors->str);
    else
        g_task_return_new_error(task, G_IO_ERROR, op->last_code, "all %u paths failed: %s",
                                op->n_order, op->errors->str);
}

static void
on_chain_done(GObject *source, GAsyncResult *res, gpointer data)
{
    (void)source;
    g_autoptr(GTask) task = data;
    GError *error = NULL;
    GIOStream *stream = ots_proxy_chain_connect_finish(res, &error);
    if (stream)
        path_succeeded(task, stream);
    else
        path_failed(task, error);
}

static char *
format_local_remote(GSocketConnection *conn)
{
    GSocket *s = g_socket_connection_get_socket(conn);
    g_autoptr(GSocketAddress) l = g_socket_get_local_address(s, NULL);
    g_autoptr(GSocketAddress) r = g_socket_get_remote_address(s, NULL);
    char *parts[2] = {NULL, NULL};
    GSocketAddress *a[2] = {l, r};
    for (int i = 0; i < 2; i++) {
        if (a[i] && G_IS_INET_SOCKET_ADDRESS(a[i])) {
            GInetSocketAddress *ia = G_INET_SOCKET_ADDRESS(a[i]);
            g_autofree char *ip = g_inet_address_to_string(g_inet_socket_address_get_address(ia));
            parts[i] = ots_proxy_format_authority(ip, g_inet_socket_address_get_port(ia));
        } else {
            parts[i] = g_strdup("?");
        }
    }
    char *out = g_strdup_printf("%s -> %s", parts[0], parts[1]);
    g_free(parts[0]);
    g_free(parts[1]);
    return out;
}

static void
on_tcp_done(GObject *source, GAsyncResult *res, gpointer data)
{
    (void)source;
    g_autoptr(GTask) task = data;
    ConnectOp *op = g_task_get_task_data(task);
    Path *p = cur_path(op);
    GError *error = NULL;
    GSocketConnection *conn = ots_tcp_connect_finish(res, &error);
    if (!conn) {
        if (p->kind != PATH_DIRECT && !g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            g_prefix_error(&error, "%s: ", p->n_hops > 1 ? "proxy 1" : "proxy");
        return path_failed(task, error);
    }
    gint64 now = g_get_monotonic_time();
    g_autofree char *lr = format_local_remote(conn);
    g_autofree char *d =
        g_strdup_printf("%s (tcp %.1f ms)", lr, (double)(now - op->attempt_us) / 1000.0);
    const char *hop_name = p->kind == PATH_DIRECT ? NULL : p->hops[0]->name;
    g_autofree char *direct_name =
        p->kind == PATH_DIRECT ? ots_proxy_format_authority(p->address ? p->address : op->ep_host,
                                                            p->port ? p->port : op->ep.port)
                               : NULL;
    report_path(op, 0, hop_name ? hop_name : direct_name, OTS_HOP_TCP_CONNECTED, now - op->start_us,
                d);
    if (p->kind == PATH_DIRECT)
        return path_succeeded(task, G_IO_STREAM(conn));
    op->path_ep.host = p->address ? p->address : op->ep_host;
    op->path_ep.port = op->ep.port;
    ots_proxy_chain_connect_over_async(G_IO_STREAM(conn), p->hops, p->n_hops, &op->path_ep, 0,
                                       multi_ref(op->m), multi_unref, op->cancellable,
                                       on_chain_report, op, on_chain_done, g_object_ref(task));
    g_object_unref(conn);
}

static void
try_path(GTask *task)
{
    ConnectOp *op = g_task_get_task_data(task);
    Path *p = cur_path(op);
    op->attempt_us = g_get_monotonic_time();
    const char *host;
    guint16 port;
    gint64 timeout;
    if (p->kind == PATH_DIRECT) {
        host = p->address ? p->address : op->ep_host;
        port = p->port ? p->port : op->ep.port;
        timeout = p->connect_timeout_ms;
    } else {
        host = p->hops[0]->host;
        port = p->hops[0]->port;
        timeout = p->hops[0]->connect_timeout_ms;
    }
    g_autofree char *src = p->bind ? g_inet_address_to_string(p->bind) : NULL;
    g_autofree char *d =
        g_strdup_printf("trying (%s, priority %" G_GINT64_FORMAT ", %u of %u)%s%s%s%s",
                        kind_name(p), p->priority, op->pos + 1, op->n_order, src ? " from " : "",
                        src ? src : "", p->iface ? " via " : "", p->iface ? p->iface : "");
    report_path(op, 0, p->name, OTS_HOP_INFO, op->attempt_us - op->start_us, d);
    ots_tcp_connect_async(host, port, p->bind, p->iface, timeout, op->cancellable, on_tcp_done,
                          g_object_ref(task));
}

static void
multi_connect_async(gpointer self, const OtsEndpoint *endpoint, GCancellable *cancellable,
                    OtsHopReportFunc report, gpointer report_data, GAsyncReadyCallback callback,
                    gpointer user_data)
{
    Multi *m = self;
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_task_set_source_tag(task, multi_connect_async);
    g_task_set_check_cancellable(task, FALSE);
    ConnectOp *op = g_new0(ConnectOp, 1);
    op->m = multi_ref(m);
    op->ep_host = g_strdup(endpoint && endpoint->host ? endpoint->host : "");
    op->ep.host = op->ep_host;
    op->ep.port = endpoint ? endpoint->port : 0;
    op->cancellable = cancellable ? g_object_ref(cancellable) : NULL;
    op->report = report;
    op->report_data = report_data;
    op->start_us = g_get_monotonic_time();
    op->errors = g_string_new(NULL);
    g_task_set_task_data(task, op, connect_op_free);
    if (!*op->ep_host || op->ep.port == 0) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "no endpoint to connect to (%s:%u)", op->ep_host, op->ep.port);
        return;
    }

    /* The order of this attempt: healthy paths by priority (one that is
     * better than the active path but still in its hold-down after), then
     * the failed ones by priority: all are tried, since a stale mark must
     * not leave the sensor without a way out. */
    gint64 now = g_get_monotonic_time();
    op->order = g_new0(guint, m->n_paths);
    g_autofree guint *held = g_new0(guint, m->n_paths);
    g_autofree guint *failed = g_new0(guint, m->n_paths);
    guint n_held = 0, n_failed = 0;
    g_mutex_lock(&m->lock);
    GMainContext *ctx = g_main_context_ref_thread_default();
    if (m->context != ctx) {
        if (m->context)
            g_main_context_unref(m->context);
        m->context = g_main_context_ref(ctx);
    }
    g_main_context_unref(ctx);
    if (g_strcmp0(m->ep_host, op->ep_host) != 0) {
        g_free(m->ep_host);
        m->ep_host = g_strdup(op->ep_host);
    }
    m->ep_port = op->ep.port;
    for (guint k = 0; k < m->n_paths; k++) {
        Path *p = &m->paths[m->order[k]];
        if (p->failed)
            failed[n_failed++] = p->index;
        else if (in_hold_down(m, p, now))
            held[n_held++] = p->index;
        else
            op->order[op->n_order++] = p->index;
    }
    for (guint k = 0; k < n_held; k++)
        op->order[op->n_order++] = held[k];
    for (guint k = 0; k < n_failed; k++)
        op->order[op->n_order++] = failed[k];
    g_mutex_unlock(&m->lock);
    try_path(task);
}

static GIOStream *
multi_connect_finish(gpointer self, GAsyncResult *result, GError **error)
{
    (void)self;
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}

/* ---- status ---------------------------------------------------------------- */

static void
add_time(OtsEvent *e, const char *key, gint64 real_us)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(real_us / G_USEC_PER_SEC);
    g_autofree char *s = t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : NULL;
    if (s)
        ots_event_add_string(e, key, s);
}

static void
multi_status(gpointer self, OtsEvent *e)
{
    Multi *m = self;
    gint64 now = g_get_monotonic_time();
    g_mutex_lock(&m->lock);
    ots_event_add_string(e, "policy", "failover");
    if (m->active >= 0 && !m->paths[m->active].failed)
        ots_event_add_string(e, "active", m->paths[m->active].name);
    else
        ots_event_add_null(e, "active");
    ots_event_add_uint(e, "hold_down_s", (guint64)(m->hold_down_us / G_USEC_PER_SEC));
    ots_event_add_uint(e, "failovers", m->failovers);
    ots_event_add_uint(e, "failbacks", m->failbacks);
    ots_event_begin_array(e, "paths");
    for (guint i = 0; i < m->n_paths; i++) {
        Path *p = &m->paths[i];
        const char *state = p->probe_cancel && p->failed ? "probing"
                            : p->failed                  ? "failed"
                            : (int)i == m->active        ? "active"
                                                         : "standby";
        ots_event_begin_object(e, NULL);
        ots_event_add_string(e, "name", p->name);
        ots_event_add_string(e, "transport", kind_name(p));
        ots_event_add_int(e, "priority", p->priority);
        ots_event_add_string(e, "state", state);
        if ((int)i == m->active && !p->failed)
            add_time(e, "since", p->active_real);
        else if (p->since_real)
            add_time(e, "since", p->since_real);
        if (in_hold_down(m, p, now))
            ots_event_add_uint(e, "hold_down_left_ms",
                               (guint64)(m->hold_down_us - (now - p->healthy_mono)) / 1000);
        ots_event_add_uint(e, "consecutive_failures", p->failures);
        ots_event_add_uint(e, "failures", p->total_failures);
        if (p->last_error) {
            ots_event_add_string(e, "last_error", p->last_error);
            add_time(e, "last_error_at", p->last_error_real);
        }
        if (p->next_probe_mono) {
            add_time(e, "next_probe", p->next_probe_real);
            ots_event_add_uint(e, "next_probe_in_ms",
                               (guint64)MAX(p->next_probe_mono - now, 0) / 1000);
        }
        ots_event_end_object(e);
    }
    ots_event_end_array(e);
    g_mutex_unlock(&m->lock);
}

static void
multi_set_reconnect_func(gpointer self, OtsReconnectFunc func, gpointer core_data)
{
    Multi *m = self;
    g_mutex_lock(&m->lock);
    m->reconnect = func;
    m->reconnect_data = core_data;
    g_mutex_unlock(&m->lock);
}

static const OtsTransportInfo multi_info = {
    .abi_major = OTS_TRANSPORT_ABI_MAJOR,
    .abi_minor = OTS_TRANSPORT_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "multicloud",
    .version = "0.1.0",
    .description = "several paths to the endpoint (direct, proxy, proxy chain; own source address "
                   "or interface; priority) with failover, background probes and hold-down "
                   "fail-back",
    .flags = OTS_TRANSPORT_FLAG_NONE,
    .settings = multi_settings,
    .create = multi_create,
    .destroy = multi_destroy,
    .connect_async = multi_connect_async,
    .connect_finish = multi_connect_finish,
    .status = multi_status,
    .set_reconnect_func = multi_set_reconnect_func,
};

OTS_TRANSPORT_DEFINE(multi_info)
