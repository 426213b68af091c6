/* SPDX-License-Identifier: Apache-2.0 */
/* The `proxy-chain` transport: for sites where each Purdue level's proxy only
 * lets you reach the next level's. The sensor opens TCP to hop 1, CONNECTs
 * to hop 2 through it, and so on, then CONNECTs to the endpoint; the core
 * starts end-to-end TLS over the innermost tunnel. Each hop has its own
 * credentials, TLS-to-proxy option and timeouts. */
#include "ots-transport-common.h"

#include <otsensor/transport.h>

#define MAX_HOPS 16

typedef struct {
    OtsProxyHop **hops;
    guint n_hops;
    GInetAddress *bind;
} Chain;

static const OtsSettingSpec hop_settings[] = {
    OTS_PROXY_HOP_SETTING_SPECS,
    {.name = NULL, .type = OTS_SETTING_END},
};

static const OtsSettingSpec chain_settings[] = {
    {.name = "hops",
     .type = OTS_SETTING_LIST,
     .required = TRUE,
     .children = hop_settings,
     .help = "the proxies from the sensor outwards, each {host, port, user, password_file, tls, "
             "...}"},
    {.name = "connect_timeout_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 600000,
     .help = "default connect_timeout_ms of the hops (default 10000)"},
    {.name = "reply_timeout_ms",
     .type = OTS_SETTING_INT,
     .min = 100,
     .max = 600000,
     .help = "default reply_timeout_ms of the hops (default 10000)"},
    {.name = "bind_address",
     .type = OTS_SETTING_STRING,
     .min = 1,
     .max = 64,
     .help = "source IP address of the connection to hop 1"},
    {.name = NULL, .type = OTS_SETTING_END},
};

static void
chain_clear(gpointer mem)
{
    Chain *c = mem;
    for (guint i = 0; i < c->n_hops; i++)
        ots_proxy_hop_free(c->hops[i]);
    g_free(c->hops);
    g_clear_object(&c->bind);
}

static void
chain_unref(gpointer c)
{
    g_atomic_rc_box_release_full(c, chain_clear);
}

static void
chain_unref_typed(Chain *c)
{
    chain_unref(c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Chain, chain_unref_typed)

static gpointer
chain_create(const OtsSettings *settings, GError **error)
{
    g_autoptr(Chain) c = g_atomic_rc_box_new0(Chain);
    if (!settings) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the proxy-chain transport needs settings (hops)");
        return NULL;
    }
    if (!ots_proxy_parse_bind_address(settings, &c->bind, error))
        return NULL;
    /* Only the timeouts are defaults for the hops: credentials and TLS are
     * per level. */
    OtsProxyHop defaults = {
        .port = 3128,
        .connect_timeout_ms = OTS_PROXY_DEFAULT_CONNECT_TIMEOUT_MS,
        .reply_timeout_ms = OTS_PROXY_DEFAULT_REPLY_TIMEOUT_MS,
    };
    gint64 v = 0;
    if (ots_settings_get_int(settings, "connect_timeout_ms", &v))
        defaults.connect_timeout_ms = CLAMP(v, 100, 600000);
    if (ots_settings_get_int(settings, "reply_timeout_ms", &v))
        defaults.reply_timeout_ms = CLAMP(v, 100, 600000);
    guint n = ots_settings_get_length(settings, "hops");
    if (n == 0 || n > MAX_HOPS) {
        ots_proxy_setting_error(settings, "hops", error, "needs 1 to %d proxies (has %u)", MAX_HOPS,
                                n);
        return NULL;
    }
    c->hops = g_new0(OtsProxyHop *, n);
    for (guint i = 0; i < n; i++) {
        const OtsSettings *e = ots_settings_get_element(settings, "hops", i);
        OtsProxyHop *hop = e ? ots_proxy_hop_new(e, &defaults, TRUE, error) : NULL;
        if (!hop) {
            if (!e)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "hops: element %u is not a group", i + 1);
            else
                g_prefix_error(error, "hop %u: ", i + 1);
            return NULL;
        }
        c->hops[c->n_hops++] = hop;
    }
    return g_steal_pointer(&c);
}

static void
chain_destroy(gpointer self)
{
    if (self)
        chain_unref(self);
}

static void
chain_connect_async(gpointer self, const OtsEndpoint *endpoint, GCancellable *cancellable,
                    OtsHopReportFunc report, gpointer report_data, GAsyncReadyCallback callback,
                    gpointer user_data)
{
    Chain *c = self;
    ots_proxy_chain_connect_async(c->hops, c->n_hops, c->bind, endpoint, 0,
                                  g_atomic_rc_box_acquire(c), chain_unref, cancellable, report,
                                  report_data, callback, user_data);
}

static GIOStream *
chain_connect_finish(gpointer self, GAsyncResult *result, GError **error)
{
    (void)self;
    return ots_proxy_chain_connect_finish(result, error);
}

static const OtsTransportInfo chain_info = {
    .abi_major = OTS_TRANSPORT_ABI_MAJOR,
    .abi_minor = OTS_TRANSPORT_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "proxy-chain",
    .version = "0.1.0",
    .description = "nested HTTP CONNECTs through a chain of proxies built by the sensor (each "
                   "hop with its own credentials, TLS and timeouts)",
    .flags = OTS_TRANSPORT_FLAG_NONE,
    .settings = chain_settings,
    .create = chain_create,
    .destroy = chain_destroy,
    .connect_async = chain_connect_async,
    .connect_finish = chain_connect_finish,
};

OTS_TRANSPORT_DEFINE(chain_info)
