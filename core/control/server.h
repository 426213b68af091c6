/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The control socket: a local UNIX stream socket (no network listener) on
 * the main loop. Each connection's peer credentials are checked; requests
 * are JSON lines (core/control/request.h) answered by the commands below. */

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <otsensor/settings.h>
#include "core/control/request.h"
#include "core/plugin/loader.h"

G_BEGIN_DECLS

/* Answers an asynchronous command once: @result (transfer full) on success,
 * else @error. Main thread. */
typedef void (*OtsControlReplyFunc)(JsonNode *result, const GError *error, gpointer reply_data);

/**
 * OtsControlProvider:
 * @status: the `sensor` health event's members as a JSON object text
 *   (transfer full), the content of `status`
 * @reload: re-reads the configuration (the SIGHUP path) and applies it,
 *   a transport switch it sets off included. Calls @reply once, possibly
 *   later (after the switch): what changed, or an error saying why the
 *   reload was refused (file:line, or the failing hop and its reason)
 * @settings: the configuration in force
 * @active_transport: the name of the transport in use
 * @plugins: the plugins loaded and refused (for version and transport.*)
 * @transport_set: (nullable): switches the uplink to transport @name (make
 *   before break), persisted across restarts with @persist; @name NULL:
 *   removes the persisted choice. Calls @reply once, possibly later.
 * @transport_test: (nullable): walks the hops of transport @name (NULL: the
 *   active one) and the end-to-end TLS handshake, without touching the
 *   running uplink. Calls @reply once, possibly later.
 * @user: passed to the callbacks
 *
 * What the daemon lends the control server; called on the main thread.
 */
typedef struct {
    char *(*status)(gpointer user);
    void (*reload)(gpointer user, OtsControlReplyFunc reply, gpointer reply_data);
    const OtsSettings *(*settings)(gpointer user);
    const char *(*active_transport)(gpointer user);
    const OtsPluginSet *plugins;
    void (*transport_set)(gpointer user, const char *name, gboolean persist,
                          OtsControlReplyFunc reply, gpointer reply_data);
    void (*transport_test)(gpointer user, const char *name, OtsControlReplyFunc reply,
                           gpointer reply_data);
    gpointer user;
} OtsControlProvider;

/**
 * OtsControlServerConfig:
 * @path: the socket's path (its directory is created when missing)
 * @group: (nullable): members of this group may connect ("" or NULL: none)
 * @max_clients: connections served at once (0: 16)
 * @idle_timeout_ms: a connection silent this long is closed (0: 60 s)
 */
typedef struct {
    const char *path;
    const char *group;
    guint max_clients;
    guint idle_timeout_ms;
} OtsControlServerConfig;

typedef struct _OtsControlServer OtsControlServer;

OtsControlServer *ots_control_server_new(const OtsControlServerConfig *cfg,
                                         const OtsControlProvider *provider, GError **error);
/* Closes every connection and removes the socket file. */
void ots_control_server_free(OtsControlServer *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsControlServer, ots_control_server_free)

guint ots_control_server_n_clients(const OtsControlServer *s);

/* Whether a peer may use the socket: root, the daemon's own uid, or a member
 * of @group_gid (primary @gid or one of @groups). @group_gid (gid_t)-1: none. */
gboolean ots_control_peer_allowed(uid_t uid, gid_t gid, const gid_t *groups, guint n_groups,
                                  uid_t own_uid, gid_t group_gid);

/* The events/s sampler kept between `status` requests. */
typedef struct {
    gint64 t; /* monotonic µs of the last sample (0: none) */
    guint64 events;
    double per_s;
} OtsControlRate;

/* Runs one request against @provider. Returns the result, or NULL with @error. */
JsonNode *ots_control_dispatch(const OtsControlProvider *provider, OtsControlRate *rate,
                               const OtsControlRequest *req, GError **error);

/* `stats`: the counters of a `status` result (numbers only). */
JsonNode *ots_control_stats_from_status(JsonNode *status);

G_END_DECLS
