/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/**
 * SECTION:transport
 * @title: Transport plugins
 *
 * A transport opens a byte stream (#GIOStream) towards the cloud endpoint,
 * asynchronously, and reports each hop's progress for diagnosis. The core
 * runs end-to-end TLS and HTTP over that stream, so every transport gets the
 * same TLS policy and no proxy sees plaintext telemetry.
 *
 * A transport with %OTS_TRANSPORT_FLAG_RAW (the `local` one) is a sink: the
 * core writes NDJSON lines straight into the stream, no TLS, no HTTP.
 */

#include <gio/gio.h>
#include <gmodule.h>
#include <otsensor/event.h>
#include <otsensor/plugin.h>
#include <otsensor/settings.h>

G_BEGIN_DECLS

typedef enum {
    OTS_TRANSPORT_FLAG_NONE = 0,
    OTS_TRANSPORT_FLAG_RAW = 1 << 0,
} OtsTransportFlags;

/**
 * OtsEndpoint:
 * @host: the endpoint's host name (what TLS verifies)
 * @port: its TCP port
 *
 * Where the stream must lead.
 */
typedef struct {
    const char *host;
    guint16 port;
    gpointer reserved[4];
} OtsEndpoint;

typedef enum {
    OTS_HOP_RESOLVED,       /* DNS answered */
    OTS_HOP_TCP_CONNECTED,  /* TCP up to this hop */
    OTS_HOP_TLS_DONE,       /* TLS to a proxy done */
    OTS_HOP_CONNECT_OK,     /* CONNECT answered 2xx */
    OTS_HOP_FAILED,         /* this hop failed; @detail says why */
    OTS_HOP_INFO,           /* free-form progress */
} OtsHopStep;

/**
 * OtsHopReport:
 * @hop: 0-based index of the hop (0: first TCP connection)
 * @hop_name: (nullable): "proxy1", "127.0.0.1:3128", ...; never with credentials
 * @step: what happened
 * @elapsed_us: time since connect_async() was called
 * @detail: (nullable): human-readable detail; never with secrets
 */
typedef struct {
    guint hop;
    const char *hop_name;
    OtsHopStep step;
    gint64 elapsed_us;
    const char *detail;
} OtsHopReport;

typedef void (*OtsHopReportFunc)(const OtsHopReport *report, gpointer user_data);

/* Asks the core to end the current session at the next batch boundary (no
 * batch in flight, so nothing is sent twice) and connect again: for example
 * when multicloud's better path has finished its hold-down. Main thread. */
typedef void (*OtsReconnectFunc)(gpointer core_data, const char *reason);

typedef struct {
    guint32 abi_major;
    guint32 abi_minor;
    guint32 kind; /* OTS_PLUGIN_KIND_TRANSPORT */
    const char *name;
    const char *version;
    const char *description;
    guint32 flags;
    /* Keys accepted in the transport's config group. */
    const OtsSettingSpec *settings;
    /* Builds an instance from validated settings; NULL + @error on failure. */
    gpointer (*create)(const OtsSettings *settings, GError **error);
    void (*destroy)(gpointer self);
    void (*connect_async)(gpointer self, const OtsEndpoint *endpoint, GCancellable *cancellable,
                          OtsHopReportFunc report, gpointer report_data,
                          GAsyncReadyCallback callback, gpointer user_data);
    /* (transfer full) */
    GIOStream *(*connect_finish)(gpointer self, GAsyncResult *result, GError **error);
    /* Since ABI 1.1 (NULL in older plugins): adds the transport's own state to
     * the `sensor` health event, inside its `uplink.transport_status` object
     * (per-path or per-proxy health, last errors). Main thread. Never
     * credentials. */
    void (*status)(gpointer self, OtsEvent *event);
    /* Since ABI 1.1 (nullable): the core hands the transport its reconnect
     * request function (and NULL, NULL before it lets go of the instance). */
    void (*set_reconnect_func)(gpointer self, OtsReconnectFunc func, gpointer core_data);
    gpointer reserved[14];
} OtsTransportInfo;

#define OTS_TRANSPORT_DEFINE(info)                                                         \
    G_MODULE_EXPORT const OtsPluginHeader *ots_plugin_get_info(void);                      \
    G_MODULE_EXPORT const OtsPluginHeader *ots_plugin_get_info(void)                       \
    {                                                                                      \
        return (const OtsPluginHeader *)&(info);                                           \
    }

G_END_DECLS
