/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The uplink: reads batches from the spool and delivers them through the
 * active transport's stream, as HTTP/1.1 POSTs of NDJSON over end-to-end TLS
 * (GnuTLS), or, for a RAW transport (`local`), as lines written straight to
 * the stream. A 2xx (RAW: a completed write) acknowledges the batch and
 * advances the spool cursor. Everything runs on the main loop, main thread
 * only; nothing blocks on the network.
 *
 * Retries: 408, 429, 5xx, a malformed answer and a lost connection resend
 * the batch after an exponential backoff with jitter (Retry-After honoured);
 * 413 halves the batch; 401, 403, a rejected client certificate (a TLS alert,
 * or nginx's 400 "No required SSL certificate was sent") are authentication
 * failures, retried at the slowest backoff. No event is ever dropped because
 * the receiver misbehaves: unacknowledged events stay in the spool. */

#include <gio/gio.h>
#include <otsensor/settings.h>
#include <otsensor/transport.h>

#include "core/spool/spool.h"
#include "core/uplink/tls.h"

G_BEGIN_DECLS

#define OTS_UPLINK_ERROR (ots_uplink_error_quark())
GQuark ots_uplink_error_quark(void);

typedef enum {
    OTS_UPLINK_ERROR_CONFIG,  /* bad endpoint, unreadable file, bad pin ... */
    OTS_UPLINK_ERROR_TIMEOUT, /* flush deadline passed */
} OtsUplinkError;

/**
 * OtsUplinkConfig:
 *
 * The `uplink` config group, with its files read. Fill it with
 * ots_uplink_config_from_settings(); free with ots_uplink_config_clear().
 * ots_uplink_new() copies what it needs.
 */
typedef struct {
    char *host;        /* endpoint host (an IPv6 literal without brackets) */
    guint16 port;      /* endpoint port */
    char *path;        /* request target, "/ingest" */
    char *server_name; /* (nullable): name TLS verifies instead of @host */
    char *priority;    /* (nullable): GnuTLS priority string; NULL: default policy */
    /* Built from ca_file / client_cert / client_key when one is set;
     * NULL: built by ots_uplink_new() from the system trust store. */
    OtsTlsCredentials *credentials;
    guint8 (*pins)[32];
    guint n_pins;
    char *token; /* (nullable): bearer token (secret: never logged) */
    gboolean gzip;
    guint batch_max_events;
    gsize batch_max_bytes;
    guint batch_max_delay_ms;
    guint connect_timeout_ms;
    guint io_timeout_ms;
    guint backoff_min_ms;
    guint backoff_max_ms;
} OtsUplinkConfig;

/* Reads the `uplink` group of the (validated) root settings; missing keys
 * take the documented defaults. Reads ca_file, client_cert, client_key and
 * token_file now (a reload reads them again) and checks them: the error
 * names the file. */
gboolean ots_uplink_config_from_settings(const OtsSettings *root, OtsUplinkConfig *out,
                                         GError **error);
/* Parses "https://host[:port][/path]" into @out's host, port and path. */
gboolean ots_uplink_config_set_endpoint(OtsUplinkConfig *out, const char *url, GError **error);
/* Sets every field to its default (endpoint unset). */
void ots_uplink_config_init(OtsUplinkConfig *out);
void ots_uplink_config_clear(OtsUplinkConfig *cfg);

typedef enum {
    OTS_UPLINK_STATE_IDLE,        /* not started, or disconnected with nothing to send */
    OTS_UPLINK_STATE_CONNECTING,  /* the transport is opening its stream */
    OTS_UPLINK_STATE_HANDSHAKE,   /* TLS handshake with the endpoint */
    OTS_UPLINK_STATE_CONNECTED,   /* session up: sending, or waiting for events */
    OTS_UPLINK_STATE_BACKOFF,     /* waiting before a retry */
    OTS_UPLINK_STATE_AUTH_FAILED, /* the endpoint refused our identity; retrying slowly */
    OTS_UPLINK_STATE_STOPPED,
} OtsUplinkState;

const char *ots_uplink_state_to_string(OtsUplinkState state);

/**
 * OtsUplinkStatus:
 *
 * For the `sensor` health event and `otsensorctl status`. Strings are
 * borrowed: valid until the uplink runs again (next main loop dispatch).
 * Never holds a secret.
 */
typedef struct {
    OtsUplinkState state;
    const char *transport;  /* transport name */
    const char *last_error; /* (nullable): last failure, with the hop or the phase */
    const char *tls;        /* (nullable): "TLS1.3 AES-256-GCM" while connected */
    guint64 batches_acked;
    guint64 events_acked;
    guint64 bytes_acked; /* NDJSON bytes, before compression */
    guint64 retries;     /* failed attempts (any cause) */
    guint64 auth_failures;
    guint64 connects; /* sessions established */
    guint current_backoff_ms;
    guint64 acked_seq; /* last seq acknowledged by this uplink (0: none yet) */
} OtsUplinkStatus;

typedef struct _OtsUplink OtsUplink;

/* @cfg: copied. @spool, @transport, @transport_instance: borrowed; they
 * must outlive the uplink, and the instance is not destroyed by it.
 * @sensor_id: X-Sensor-Id. Fails when TLS credentials cannot be built. */
OtsUplink *ots_uplink_new(const OtsUplinkConfig *cfg, OtsSpool *spool,
                          const OtsTransportInfo *transport, gpointer transport_instance,
                          const char *sensor_id, GError **error);
/* Connects and starts delivering what the spool holds. */
void ots_uplink_start(OtsUplink *u);
/* New records were appended to the spool. Cheap: call after each batch. */
void ots_uplink_notify(OtsUplink *u);
/* Takes a new configuration (reload): a change of endpoint or TLS settings
 * closes the session, and the next one uses them. @cfg: copied. */
gboolean ots_uplink_reconfigure(OtsUplink *u, const OtsUplinkConfig *cfg, GError **error);
void ots_uplink_get_status(OtsUplink *u, OtsUplinkStatus *status);

/* Sends everything the spool holds without waiting for the batch delay,
 * and completes once every record is acknowledged (TRUE) or when
 * @timeout_ms passes (FALSE, OTS_UPLINK_ERROR_TIMEOUT; the rest stays in
 * the spool for the next start). One flush at a time. */
void ots_uplink_flush_async(OtsUplink *u, guint timeout_ms, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
gboolean ots_uplink_flush_finish(OtsUplink *u, GAsyncResult *result, GError **error);

/* Transport switch (make before break): the old uplink finishes its batch
 * in flight and reads no more (free it in @callback); the new one starts on
 * the session proven by the caller. See uplink.c. */
void ots_uplink_stop_after_batch_async(OtsUplink *u, guint timeout_ms, GAsyncReadyCallback callback,
                                       gpointer user_data);
gboolean ots_uplink_stop_after_batch_finish(OtsUplink *u, GAsyncResult *result, GError **error);
void ots_uplink_start_with_session(OtsUplink *u, GIOStream *stream, OtsTlsSession *tls);

/* Stops at once: the batch in flight is not acknowledged and will be sent
 * again by the next start (at-least-once). */
void ots_uplink_free(OtsUplink *u);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsUplink, ots_uplink_free)

G_END_DECLS
