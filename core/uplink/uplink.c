/* SPDX-License-Identifier: Apache-2.0 */
#include "core/uplink/uplink.h"

#include <string.h>
#include <zlib.h>

#include "core/uplink/http.h"

G_DEFINE_QUARK(ots - uplink - error - quark, ots_uplink_error)

#define READ_CHUNK 16384
#define RETRY_AFTER_MAX_S 3600
#define TOKEN_MAX 4096
#define CERT_FILE_MAX (1024 * 1024)

struct _OtsUplink {
    gatomicrefcount rc;
    OtsUplinkConfig cfg;
    OtsSpool *spool;
    const OtsTransportInfo *transport;
    gpointer instance;
    char *sensor_id;
    gboolean raw;
    gboolean started;
    gboolean stopped;

    OtsUplinkState state;
    char *last_error;
    char *tls_desc;
    char *hop_detail; /* last hop failure reported by the transport */
    char *via;        /* the last proxy whose CONNECT succeeded, for later errors */

    /* One connection at a time; @gen tells its callbacks from stale ones. */
    guint gen;
    GCancellable *cancel;
    GIOStream *stream;
    OtsTlsSession *tls;
    gboolean reading;
    guint8 rbuf[READ_CHUNK];

    guint connect_timer;
    guint io_timer;
    guint delay_timer;
    guint retry_timer;
    guint backoff_ms;

    /* The batch in flight. */
    gboolean busy;
    gboolean writing;
    gboolean peer_closed; /* the response was framed by the close */
    OtsSpoolBatch batch;
    GByteArray *request;
    OtsHttpParser *parser;

    /* 413: smaller batches until this seq is acknowledged. */
    guint split_events;
    guint64 split_until;

    GTask *flush_task;
    guint flush_timer;

    /* The transport asked for a new session (multicloud fail-back). */
    gboolean reconnect_wanted;
    guint reconnect_idle;

    /* Stopping after the batch in flight (transport switch): no new batch
     * is read; @drain_task completes once nothing is in flight. */
    gboolean draining;
    GTask *drain_task;
    guint drain_timer;
    guint drain_idle;

    OtsUplinkStatus st;
};

typedef struct {
    OtsUplink *u;
    guint gen;
} OpRef;

static void do_connect(OtsUplink *u);
static void maybe_send(OtsUplink *u);
static void start_read(OtsUplink *u);

/* --- config --- */

void
ots_uplink_config_init(OtsUplinkConfig *c)
{
    memset(c, 0, sizeof(*c));
    c->port = 443;
    c->batch_max_events = 5000;
    c->batch_max_bytes = 4194304;
    c->batch_max_delay_ms = 1000;
    c->connect_timeout_ms = 10000;
    c->io_timeout_ms = 30000;
    c->backoff_min_ms = 500;
    c->backoff_max_ms = 60000;
}

void
ots_uplink_config_clear(OtsUplinkConfig *c)
{
    g_free(c->host);
    g_free(c->path);
    g_free(c->server_name);
    g_free(c->priority);
    g_clear_pointer(&c->credentials, ots_tls_credentials_unref);
    g_free(c->pins);
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    g_free(c->token);
    memset(c, 0, sizeof(*c));
}

static void
config_copy(OtsUplinkConfig *dst, const OtsUplinkConfig *src)
{
    *dst = *src;
    dst->host = g_strdup(src->host);
    dst->path = g_strdup(src->path);
    dst->server_name = g_strdup(src->server_name);
    dst->priority = g_strdup(src->priority);
    dst->credentials = src->credentials ? ots_tls_credentials_ref(src->credentials) : NULL;
    dst->pins = src->n_pins ? g_memdup2(src->pins, (gsize)src->n_pins * 32) : NULL;
    dst->token = g_strdup(src->token);
}

gboolean
ots_uplink_config_set_endpoint(OtsUplinkConfig *out, const char *url, GError **error)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GUri) uri = g_uri_parse(url, G_URI_FLAGS_NONE, &err);

    if (!uri) {
        g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                    "uplink.endpoint: '%s' is not a URL: %s", url, err->message);
        return FALSE;
    }
    if (g_strcmp0(g_uri_get_scheme(uri), "https") != 0 || !g_uri_get_host(uri) ||
        !*g_uri_get_host(uri) || g_uri_get_userinfo(uri) || g_uri_get_fragment(uri)) {
        g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                    "uplink.endpoint: '%s' must be https://host[:port][/path] (no user, no "
                    "fragment)",
                    url);
        return FALSE;
    }
    int port = g_uri_get_port(uri);
    const char *path = g_uri_get_path(uri);
    const char *query = g_uri_get_query(uri);
    g_free(out->host);
    g_free(out->path);
    out->host = g_strdup(g_uri_get_host(uri));
    out->port = port > 0 && port <= 65535 ? (guint16)port : 443;
    out->path = g_strdup_printf("%s%s%s", *path ? path : "/", query ? "?" : "", query ? query : "");
    return TRUE;
}

static gboolean
read_file(const char *key, const char *path, gsize max, GBytes **out, GError **error)
{
    g_autoptr(GError) err = NULL;
    char *data = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &data, &len, &err)) {
        g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG, "uplink.%s: %s", key,
                    err->message);
        return FALSE;
    }
    if (len > max) {
        g_free(data);
        g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                    "uplink.%s: %s is larger than %" G_GSIZE_FORMAT " bytes", key, path, max);
        return FALSE;
    }
    *out = g_bytes_new_take(data, len);
    return TRUE;
}

static const char *
get_str(const OtsSettings *root, const char *key, const char *def)
{
    const char *v = NULL;
    g_autofree char *path = g_strconcat("uplink.", key, NULL);
    return ots_settings_get_string(root, path, &v) ? v : def;
}

static gint64
get_int(const OtsSettings *root, const char *key, gint64 def)
{
    gint64 v;
    g_autofree char *path = g_strconcat("uplink.", key, NULL);
    return ots_settings_get_int(root, path, &v) ? v : def;
}

static gboolean
read_token(const char *file, char **out, GError **error)
{
    g_autoptr(GBytes) b = NULL;
    gsize len;

    if (!read_file("token_file", file, TOKEN_MAX, &b, error))
        return FALSE;
    const char *d = g_bytes_get_data(b, &len);
    while (len > 0 && g_ascii_isspace(d[len - 1]))
        len--;
    /* RFC 6750 b64token characters: nothing that could break a header. */
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(d[i]) && !strchr("-._~+/=", d[i])) {
            g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                        "uplink.token_file: %s holds a character not allowed in a bearer token",
                        file);
            return FALSE;
        }
    }
    if (len == 0) {
        g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                    "uplink.token_file: %s is empty", file);
        return FALSE;
    }
    *out = g_strndup(d, len);
    return TRUE;
}

gboolean
ots_uplink_config_from_settings(const OtsSettings *root, OtsUplinkConfig *out, GError **error)
{
    OtsUplinkConfig c;
    g_autoptr(GBytes) ca = NULL;
    g_autoptr(GBytes) cert = NULL;
    g_autoptr(GBytes) key = NULL;

    ots_uplink_config_init(&c);
    if (!ots_uplink_config_set_endpoint(&c, get_str(root, "endpoint", "https://cloud.test/ingest"),
                                        error))
        goto fail;
    const char *sn = get_str(root, "server_name", "");
    c.server_name = *sn ? g_strdup(sn) : NULL;
    const char *prio = get_str(root, "priority", "");
    if (*prio) {
        if (!ots_tls_check_priority(prio, error)) {
            g_prefix_error(error, "uplink.priority: ");
            goto fail;
        }
        c.priority = g_strdup(prio);
    }
    guint npins = ots_settings_get_length(root, "uplink.pins");
    if (npins) {
        c.pins = g_malloc0_n(npins, 32);
        for (guint i = 0; i < npins; i++) {
            const char *pin = ots_settings_get_string_element(root, "uplink.pins", i);
            if (!pin || !ots_tls_parse_pin(pin, c.pins[i], error)) {
                if (error && *error)
                    g_prefix_error(error, "uplink.pins[%u]: ", i);
                else
                    g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                                "uplink.pins[%u]: not a string", i);
                goto fail;
            }
        }
        c.n_pins = npins;
    }
    const char *ca_file = get_str(root, "ca_file", "");
    const char *cert_file = get_str(root, "client_cert", "");
    const char *key_file = get_str(root, "client_key", "");
    if (*ca_file && !read_file("ca_file", ca_file, CERT_FILE_MAX, &ca, error))
        goto fail;
    if (*cert_file && !read_file("client_cert", cert_file, CERT_FILE_MAX, &cert, error))
        goto fail;
    if (*key_file && !read_file("client_key", key_file, CERT_FILE_MAX, &key, error))
        goto fail;
    if (ca || cert || key) {
        c.credentials = ots_tls_credentials_new(ca, ca_file, cert, cert_file, key, key_file, error);
        if (!c.credentials) {
            g_prefix_error(error, "uplink: ");
            goto fail;
        }
    }
    const char *token_file = get_str(root, "token_file", "");
    if (*token_file && !read_token(token_file, &c.token, error))
        goto fail;
    gboolean gz = FALSE;
    if (ots_settings_get_bool(root, "uplink.gzip", &gz))
        c.gzip = gz;
    c.batch_max_events = (guint)CLAMP(get_int(root, "batch_max_events", 5000), 1, G_MAXINT);
    c.batch_max_bytes = (gsize)CLAMP(get_int(root, "batch_max_bytes", 4194304), 1, G_MAXINT);
    c.batch_max_delay_ms = (guint)CLAMP(get_int(root, "batch_max_delay_ms", 1000), 0, G_MAXINT);
    c.connect_timeout_ms = (guint)CLAMP(get_int(root, "connect_timeout_ms", 10000), 1, G_MAXINT);
    c.io_timeout_ms = (guint)CLAMP(get_int(root, "io_timeout_ms", 30000), 1, G_MAXINT);
    c.backoff_min_ms = (guint)CLAMP(get_int(root, "backoff_min_ms", 500), 1, G_MAXINT);
    c.backoff_max_ms = (guint)CLAMP(get_int(root, "backoff_max_ms", 60000), 1, G_MAXINT);
    if (c.backoff_max_ms < c.backoff_min_ms) {
        g_set_error(error, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_CONFIG,
                    "uplink.backoff_max_ms (%u) is below uplink.backoff_min_ms (%u)",
                    c.backoff_max_ms, c.backoff_min_ms);
        goto fail;
    }
    *out = c;
    return TRUE;
fail:
    ots_uplink_config_clear(&c);
    return FALSE;
}

/* --- state --- */

const char *
ots_uplink_state_to_string(OtsUplinkState state)
{
    switch (state) {
    case OTS_UPLINK_STATE_IDLE:
        return "idle";
    case OTS_UPLINK_STATE_CONNECTING:
        return "connecting";
    case OTS_UPLINK_STATE_HANDSHAKE:
        return "handshake";
    case OTS_UPLINK_STATE_CONNECTED:
        return "connected";
    case OTS_UPLINK_STATE_BACKOFF:
        return "backoff";
    case OTS_UPLINK_STATE_AUTH_FAILED:
        return "auth_failed";
    case OTS_UPLINK_STATE_STOPPED:
        return "stopped";
    }
    return "unknown";
}

static OtsUplink *
uplink_ref(OtsUplink *u)
{
    g_atomic_ref_count_inc(&u->rc);
    return u;
}

static void
uplink_unref(OtsUplink *u)
{
    if (!g_atomic_ref_count_dec(&u->rc))
        return;
    ots_uplink_config_clear(&u->cfg);
    g_free(u->sensor_id);
    g_free(u->last_error);
    g_free(u->tls_desc);
    g_free(u->hop_detail);
    g_free(u->via);
    g_clear_object(&u->cancel);
    g_clear_pointer(&u->request, g_byte_array_unref);
    ots_spool_batch_clear(&u->batch);
    ots_http_parser_free(u->parser);
    g_free(u);
}

static OpRef *
op_new(OtsUplink *u)
{
    OpRef *r = g_new(OpRef, 1);
    r->u = uplink_ref(u);
    r->gen = u->gen;
    return r;
}

/* Frees @r; returns the uplink when the operation is still current. */
static OtsUplink *
op_take(OpRef *r, OtsUplink **hold)
{
    OtsUplink *u = r->u;
    gboolean current = !u->stopped && r->gen == u->gen;

    g_free(r);
    *hold = u;
    return current ? u : NULL;
}

static void set_error(OtsUplink *u, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
set_error(OtsUplink *u, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(u->last_error);
    u->last_error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_message("%s", u->last_error);
}

static void
clear_source(guint *id)
{
    if (*id) {
        g_source_remove(*id);
        *id = 0;
    }
}

/* Ends the connection (if any); unacknowledged records go back to the spool's
 * read position so the next attempt sends them again. */
static void
close_connection(OtsUplink *u)
{
    clear_source(&u->connect_timer);
    clear_source(&u->io_timer);
    g_cancellable_cancel(u->cancel);
    g_clear_object(&u->cancel);
    u->cancel = g_cancellable_new();
    u->gen++;
    if (u->tls) {
        ots_tls_session_close(u->tls);
        g_clear_pointer(&u->tls, ots_tls_session_free);
    } else if (u->stream) {
        g_io_stream_close(u->stream, NULL, NULL);
    }
    g_clear_object(&u->stream);
    g_clear_pointer(&u->tls_desc, g_free);
    u->reading = FALSE;
    u->writing = FALSE;
    u->peer_closed = FALSE;
    if (u->busy) {
        ots_spool_batch_clear(&u->batch);
        u->busy = FALSE;
    }
    ots_spool_rewind(u->spool);
}

static void drain_check(OtsUplink *u);

static gboolean
on_retry(gpointer data)
{
    OtsUplink *u = data;

    u->retry_timer = 0;
    if (u->draining) {
        drain_check(u);
        return G_SOURCE_REMOVE;
    }
    if (u->stream) {
        u->state = OTS_UPLINK_STATE_CONNECTED;
        maybe_send(u);
    } else {
        do_connect(u);
    }
    return G_SOURCE_REMOVE;
}

/* Schedules the next attempt: exponential backoff with "equal jitter" (half
 * fixed, half random), at least @min_delay_ms (Retry-After). */
static void
schedule_retry(OtsUplink *u, gboolean auth, guint64 min_delay_ms)
{
    guint next;

    if (auth)
        next = u->cfg.backoff_max_ms;
    else if (u->backoff_ms == 0)
        next = u->cfg.backoff_min_ms;
    else
        next = (guint)MIN((guint64)u->backoff_ms * 2, u->cfg.backoff_max_ms);
    u->backoff_ms = next;
    guint64 delay = next / 2 + (guint64)g_random_int_range(0, (gint32)(next / 2) + 1);
    delay = MAX(delay, min_delay_ms);
    u->st.retries++;
    if (auth)
        u->st.auth_failures++;
    u->state = auth ? OTS_UPLINK_STATE_AUTH_FAILED : OTS_UPLINK_STATE_BACKOFF;
    u->st.current_backoff_ms = (guint)MIN(delay, G_MAXUINT);
    clear_source(&u->retry_timer);
    u->retry_timer = g_timeout_add((guint)MIN(delay, G_MAXUINT), on_retry, u);
    drain_check(u);
}

/* A connection-level failure: drop the session, retry later. */
static void
fail_connection(OtsUplink *u, gboolean auth)
{
    close_connection(u);
    schedule_retry(u, auth, 0);
}

static void
flush_check(OtsUplink *u)
{
    OtsSpoolStats ss;

    if (!u->flush_task)
        return;
    ots_spool_get_stats(u->spool, &ss);
    if (ss.depth_events > 0 || u->busy)
        return;
    clear_source(&u->flush_timer);
    GTask *t = g_steal_pointer(&u->flush_task);
    g_task_return_boolean(t, TRUE);
    g_object_unref(t);
}

/* --- connecting --- */

static void
on_hop(const OtsHopReport *r, gpointer data)
{
    OtsUplink *u = data;

    g_debug("hop %u (%s): step %d after %" G_GINT64_FORMAT " us%s%s", r->hop,
            r->hop_name ? r->hop_name : "-", r->step, r->elapsed_us, r->detail ? ": " : "",
            r->detail ? r->detail : "");
    if (r->step == OTS_HOP_CONNECT_OK && r->hop_name) {
        g_free(u->via);
        u->via = g_strdup(r->hop_name);
    }
    if (r->step == OTS_HOP_FAILED) {
        g_free(u->hop_detail);
        u->hop_detail = g_strdup_printf("hop %u (%s): %s", r->hop, r->hop_name ? r->hop_name : "-",
                                        r->detail ? r->detail : "failed");
    }
}

static gboolean
on_connect_timeout(gpointer data)
{
    OtsUplink *u = data;

    u->connect_timer = 0;
    set_error(u, "%s to %s:%u timed out after %u ms%s%s",
              u->state == OTS_UPLINK_STATE_HANDSHAKE ? "TLS handshake" : "connect", u->cfg.host,
              u->cfg.port, u->cfg.connect_timeout_ms, u->hop_detail ? "; " : "",
              u->hop_detail ? u->hop_detail : "");
    fail_connection(u, FALSE);
    return G_SOURCE_REMOVE;
}

static void
session_up(OtsUplink *u)
{
    clear_source(&u->connect_timer);
    u->state = OTS_UPLINK_STATE_CONNECTED;
    u->st.connects++;
    u->st.current_backoff_ms = 0;
    g_info("connected to %s:%u via %s%s%s", u->cfg.host, u->cfg.port, u->transport->name,
           u->tls_desc ? ", " : "", u->tls_desc ? u->tls_desc : "");
    if (!u->raw)
        start_read(u);
    maybe_send(u);
}

static void
on_handshake(GObject *source, GAsyncResult *res, gpointer data)
{
    OtsUplink *hold;
    OtsUplink *u = op_take(data, &hold);
    g_autoptr(GError) err = NULL;

    if (!u) {
        uplink_unref(hold);
        return;
    }
    if (!ots_tls_session_handshake_finish(u->tls, res, &err)) {
        gboolean auth = g_error_matches(err, OTS_TLS_ERROR, OTS_TLS_ERROR_AUTH);
        set_error(u, "TLS with %s:%u via %s: %s", u->cfg.host, u->cfg.port, u->transport->name,
                  err->message);
        fail_connection(u, auth);
    } else {
        u->tls_desc = ots_tls_session_get_description(u->tls);
        session_up(u);
    }
    uplink_unref(hold);
}

static void
on_connected(GObject *source, GAsyncResult *res, gpointer data)
{
    OtsUplink *hold;
    OtsUplink *u = op_take(data, &hold);
    g_autoptr(GError) err = NULL;

    /* Stopped: the owner may have destroyed the transport instance already. */
    if (hold->stopped) {
        uplink_unref(hold);
        return;
    }
    GIOStream *stream = hold->transport->connect_finish(hold->instance, res, &err);

    if (!u) {
        if (stream) {
            g_io_stream_close(stream, NULL, NULL);
            g_object_unref(stream);
        }
        uplink_unref(hold);
        return;
    }
    if (!stream) {
        set_error(u, "transport %s to %s:%u: %s%s%s", u->transport->name, u->cfg.host, u->cfg.port,
                  err->message, u->hop_detail ? "; " : "", u->hop_detail ? u->hop_detail : "");
        fail_connection(u, FALSE);
        uplink_unref(hold);
        return;
    }
    u->stream = stream;
    if (u->raw) {
        session_up(u);
        uplink_unref(hold);
        return;
    }
    OtsTlsParams p = {
        .credentials = u->cfg.credentials,
        .verify_name = u->cfg.server_name ? u->cfg.server_name : u->cfg.host,
        .priority = u->cfg.priority,
        .pins = (const guint8(*)[32])u->cfg.pins,
        .n_pins = u->cfg.n_pins,
    };
    u->tls = ots_tls_session_new(stream, &p, &err);
    if (!u->tls) {
        set_error(u, "TLS via %s: %s", u->transport->name, err->message);
        fail_connection(u, FALSE);
        uplink_unref(hold);
        return;
    }
    u->state = OTS_UPLINK_STATE_HANDSHAKE;
    ots_tls_session_handshake_async(u->tls, u->cancel, on_handshake, op_new(u));
    uplink_unref(hold);
}

static void
do_connect(OtsUplink *u)
{
    OtsEndpoint ep = {.host = u->cfg.host, .port = u->cfg.port};

    close_connection(u);
    if (u->draining) {
        /* Handing over to another uplink: no new session. */
        u->state = OTS_UPLINK_STATE_IDLE;
        drain_check(u);
        return;
    }
    g_clear_pointer(&u->hop_detail, g_free);
    g_clear_pointer(&u->via, g_free);
    u->state = OTS_UPLINK_STATE_CONNECTING;
    u->connect_timer = g_timeout_add(u->cfg.connect_timeout_ms, on_connect_timeout, u);
    u->transport->connect_async(u->instance, &ep, u->cancel, on_hop, u, on_connected, op_new(u));
}

/* --- responses --- */

/* A printable excerpt of a response body, for error text. */
static char *
body_excerpt(OtsHttpParser *p)
{
    gsize len;
    const guint8 *b = ots_http_parser_get_body(p, &len);
    GString *s = g_string_new(NULL);

    for (gsize i = 0; i < len && s->len < 120; i++)
        g_string_append_c(s, g_ascii_isprint(b[i]) ? (char)b[i] : ' ');
    return g_strstrip(g_string_free(s, FALSE));
}

static gboolean
body_contains(OtsHttpParser *p, const char *needle)
{
    gsize len;
    const guint8 *b = ots_http_parser_get_body(p, &len);
    /* The body is bounded (OtsHttpLimits.max_body); NULs would stop strstr. */
    g_autofree char *text = g_malloc(len + 1);
    for (gsize i = 0; i < len; i++)
        text[i] = b[i] ? (char)b[i] : ' ';
    text[len] = '\0';
    return strstr(text, needle) != NULL;
}

static void
handle_response(OtsUplink *u)
{
    guint code = ots_http_parser_get_status(u->parser);
    gboolean close = ots_http_parser_get_close(u->parser) || u->writing || u->peer_closed;
    guint64 first = u->batch.first_seq, last = u->batch.last_seq;
    guint n = u->batch.n_events;
    g_autofree char *excerpt = body_excerpt(u->parser);

    clear_source(&u->io_timer);
    if (code >= 200 && code < 300) {
        ots_spool_ack(u->spool, last);
        u->st.batches_acked++;
        u->st.events_acked += n;
        u->st.bytes_acked += u->batch.data ? u->batch.data->len : 0;
        u->st.acked_seq = last;
        u->backoff_ms = 0;
        u->st.current_backoff_ms = 0;
        if (u->split_events && last >= u->split_until)
            u->split_events = 0;
        ots_spool_batch_clear(&u->batch);
        u->busy = FALSE;
        if (close || u->reconnect_wanted) {
            u->reconnect_wanted = FALSE;
            close_connection(u);
        }
        flush_check(u);
        if (!u->stream)
            u->state = OTS_UPLINK_STATE_IDLE;
        maybe_send(u);
        return;
    }

    /* Not acknowledged: the records go back, nothing is dropped. */
    ots_spool_batch_clear(&u->batch);
    u->busy = FALSE;
    ots_spool_rewind(u->spool);
    if (code == 413 && n > 1) {
        u->split_events = MAX(n / 2, 1);
        u->split_until = last;
        u->st.retries++;
        set_error(u,
                  "HTTP 413 for seq %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                  " (%u events): sending it in halves",
                  first, last, n);
        if (close)
            close_connection(u);
        if (!u->stream)
            do_connect(u);
        else
            maybe_send(u);
        return;
    }
    gboolean auth = code == 401 || code == 403 ||
                    (code == 400 && (body_contains(u->parser, "No required SSL certificate") ||
                                     body_contains(u->parser, "SSL certificate error")));
    guint64 min_delay = 0;
    const char *ra = ots_http_parser_get_header(u->parser, "Retry-After");
    guint64 secs;
    if (ra && (code == 408 || code == 429 || code >= 500) &&
        ots_http_parse_retry_after(ra, g_get_real_time() / G_USEC_PER_SEC, RETRY_AFTER_MAX_S,
                                   &secs))
        min_delay = secs * 1000;
    if (auth)
        set_error(u, "authentication failed: HTTP %u %s from %s:%u%s%s", code,
                  ots_http_parser_get_reason(u->parser), u->cfg.host, u->cfg.port,
                  *excerpt ? ": " : "", excerpt);
    else if (code == 413)
        set_error(u,
                  "HTTP 413: the receiver refuses event seq %" G_GUINT64_FORMAT
                  " alone as too large; keeping it and retrying",
                  first);
    else
        set_error(u,
                  "HTTP %u %s from %s:%u for seq %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT "%s%s",
                  code, ots_http_parser_get_reason(u->parser), u->cfg.host, u->cfg.port, first,
                  last, *excerpt ? ": " : "", excerpt);
    if (close)
        close_connection(u);
    schedule_retry(u, auth, min_delay);
}

static void
protocol_failure(OtsUplink *u, const char *what)
{
    /* Through a proxy, the tunnel may have been cut by it, not the server. */
    if (u->via)
        set_error(u, "HTTP from %s:%u through proxy %s: %s", u->cfg.host, u->cfg.port, u->via,
                  what);
    else
        set_error(u, "HTTP from %s:%u: %s", u->cfg.host, u->cfg.port, what);
    fail_connection(u, FALSE);
}

static gboolean
on_io_timeout(gpointer data)
{
    OtsUplink *u = data;

    u->io_timer = 0;
    set_error(u, "no answer from %s:%u within %u ms", u->cfg.host, u->cfg.port,
              u->cfg.io_timeout_ms);
    fail_connection(u, FALSE);
    return G_SOURCE_REMOVE;
}

static void
arm_io_timer(OtsUplink *u)
{
    clear_source(&u->io_timer);
    u->io_timer = g_timeout_add(u->cfg.io_timeout_ms, on_io_timeout, u);
}

static void
on_read(GObject *source, GAsyncResult *res, gpointer data)
{
    OtsUplink *hold;
    OtsUplink *u = op_take(data, &hold);
    g_autoptr(GError) err = NULL;

    if (!u) {
        uplink_unref(hold);
        return;
    }
    u->reading = FALSE;
    gssize n = ots_tls_session_read_finish(u->tls, res, &err);
    if (n < 0) {
        /* Under TLS 1.3 a refused client certificate arrives here, at the
         * first read after the handshake. */
        gboolean auth = g_error_matches(err, OTS_TLS_ERROR, OTS_TLS_ERROR_AUTH);
        set_error(u, "%s from %s:%u: %s", auth ? "TLS" : "connection", u->cfg.host, u->cfg.port,
                  err->message);
        fail_connection(u, auth);
    } else if (n == 0) {
        if (u->busy) {
            g_autoptr(GError) perr = NULL;
            if (ots_http_parser_feed_eof(u->parser, &perr) == OTS_HTTP_PARSE_DONE) {
                u->peer_closed = TRUE;
                handle_response(u);
            } else {
                protocol_failure(u, "the connection closed before an answer (the server, or a proxy on "
                                    "the path)");
            }
        } else {
            /* An idle keep-alive connection ended: reconnect when needed. */
            g_debug("idle connection to %s:%u closed by the server", u->cfg.host, u->cfg.port);
            close_connection(u);
            if (u->state == OTS_UPLINK_STATE_CONNECTED) {
                /* In backoff the retry timer reconnects. */
                u->state = OTS_UPLINK_STATE_IDLE;
                maybe_send(u);
            }
        }
    } else if (!u->busy) {
        protocol_failure(u, "unsolicited data on an idle connection");
    } else {
        g_autoptr(GError) perr = NULL;
        gsize used = 0;
        guint gen = u->gen;
        arm_io_timer(u);
        OtsHttpParseResult r = ots_http_parser_feed(u->parser, u->rbuf, (gsize)n, &used, &perr);
        if (r == OTS_HTTP_PARSE_ERROR) {
            protocol_failure(u, perr->message);
        } else if (r == OTS_HTTP_PARSE_DONE) {
            gboolean extra = used < (gsize)n;
            handle_response(u);
            if (extra && u->gen == gen)
                protocol_failure(u, "data after the response");
            else if (u->gen == gen && u->tls && !u->reading)
                start_read(u);
        } else {
            start_read(u);
        }
    }
    uplink_unref(hold);
}

static void
start_read(OtsUplink *u)
{
    if (u->reading || !u->tls)
        return;
    u->reading = TRUE;
    ots_tls_session_read_async(u->tls, u->rbuf, sizeof(u->rbuf), u->cancel, on_read, op_new(u));
}

/* --- sending --- */

static GByteArray *
gzip_body(const guint8 *data, gsize len)
{
    z_stream z = {0};
    GByteArray *out;

    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    out = g_byte_array_sized_new((guint)deflateBound(&z, len));
    g_byte_array_set_size(out, (guint)deflateBound(&z, len));
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out->data;
    z.avail_out = out->len;
    int ret = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (ret != Z_STREAM_END) {
        g_byte_array_unref(out);
        return NULL;
    }
    g_byte_array_set_size(out, (guint)z.total_out);
    return out;
}

static void
on_raw_written(GObject *source, GAsyncResult *res, gpointer data)
{
    OtsUplink *hold;
    OtsUplink *u = op_take(data, &hold);
    g_autoptr(GError) err = NULL;
    gsize written = 0;
    gboolean ok = g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), res, &written, &err);

    if (!u) {
        uplink_unref(hold);
        return;
    }
    u->writing = FALSE;
    clear_source(&u->io_timer);
    if (!ok) {
        set_error(u, "writing to transport %s: %s", u->transport->name, err->message);
        fail_connection(u, FALSE);
    } else {
        ots_spool_ack(u->spool, u->batch.last_seq);
        u->st.batches_acked++;
        u->st.events_acked += u->batch.n_events;
        u->st.bytes_acked += u->batch.data->len;
        u->st.acked_seq = u->batch.last_seq;
        u->backoff_ms = 0;
        ots_spool_batch_clear(&u->batch);
        u->busy = FALSE;
        flush_check(u);
        maybe_send(u);
    }
    uplink_unref(hold);
}

static void
on_written(GObject *source, GAsyncResult *res, gpointer data)
{
    OtsUplink *hold;
    OtsUplink *u = op_take(data, &hold);
    g_autoptr(GError) err = NULL;

    if (!u) {
        uplink_unref(hold);
        return;
    }
    u->writing = FALSE;
    if (!ots_tls_session_write_all_finish(u->tls, res, &err)) {
        gboolean auth = g_error_matches(err, OTS_TLS_ERROR, OTS_TLS_ERROR_AUTH);
        set_error(u, "sending to %s:%u: %s", u->cfg.host, u->cfg.port, err->message);
        fail_connection(u, auth);
    } else if (u->busy) {
        arm_io_timer(u); /* now waiting for the answer */
    }
    uplink_unref(hold);
}

static void
send_batch(OtsUplink *u)
{
    guint max_events = u->split_events ? u->split_events : u->cfg.batch_max_events;

    clear_source(&u->delay_timer);
    if (!ots_spool_read(u->spool, max_events, u->cfg.batch_max_bytes, &u->batch))
        return;
    u->busy = TRUE;
    u->writing = TRUE;
    g_clear_pointer(&u->request, g_byte_array_unref);
    arm_io_timer(u);
    if (u->raw) {
        GOutputStream *out = g_io_stream_get_output_stream(u->stream);
        g_output_stream_write_all_async(out, u->batch.data->data, u->batch.data->len,
                                        G_PRIORITY_DEFAULT, u->cancel, on_raw_written, op_new(u));
        return;
    }
    g_autoptr(GByteArray) gz =
        u->cfg.gzip ? gzip_body(u->batch.data->data, u->batch.data->len) : NULL;
    const GByteArray *body = gz ? gz : u->batch.data;
    OtsHttpRequest req = {
        .host = u->cfg.server_name ? u->cfg.server_name : u->cfg.host,
        .port = u->cfg.port,
        .path = u->cfg.path,
        .sensor_id = u->sensor_id,
        .first_seq = u->batch.first_seq,
        .last_seq = u->batch.last_seq,
        .gzip = gz != NULL,
        .token = u->cfg.token,
        .body_len = body->len,
    };
    g_autoptr(GString) head = g_string_sized_new(512);
    if (!ots_http_request_write_head(head, &req)) {
        /* Checked at config load; reaching this is a bug. */
        set_error(u, "cannot build the request head (a control character in a header value)");
        fail_connection(u, FALSE);
        return;
    }
    u->request = g_byte_array_sized_new((guint)(head->len + body->len));
    g_byte_array_append(u->request, (const guint8 *)head->str, (guint)head->len);
    g_byte_array_append(u->request, body->data, body->len);
    memset(head->str, 0, head->len); /* it held the token */
    ots_http_parser_reset(u->parser);
    ots_tls_session_write_all_async(u->tls, u->request->data, u->request->len, u->cancel,
                                    on_written, op_new(u));
}

static gboolean
on_delay(gpointer data)
{
    OtsUplink *u = data;

    u->delay_timer = 0;
    if (u->draining)
        drain_check(u);
    else if (u->state == OTS_UPLINK_STATE_CONNECTED && !u->busy)
        send_batch(u);
    else
        maybe_send(u);
    return G_SOURCE_REMOVE;
}

/* Sends when connected and something is pending: at once for a full batch
 * or a flush, after batch_max_delay_ms otherwise. Connects when idle. */
static void
maybe_send(OtsUplink *u)
{
    OtsSpoolStats ss;

    if (u->stopped || !u->started)
        return;
    if (u->draining) {
        drain_check(u);
        return;
    }
    ots_spool_get_stats(u->spool, &ss);
    if (ss.depth_events == 0)
        return;
    if (u->state == OTS_UPLINK_STATE_IDLE) {
        do_connect(u);
        return;
    }
    if (u->state != OTS_UPLINK_STATE_CONNECTED || u->busy)
        return;
    if (u->flush_task || ss.depth_events >= u->cfg.batch_max_events ||
        ss.depth_bytes >= u->cfg.batch_max_bytes || u->cfg.batch_max_delay_ms == 0 ||
        u->split_events) {
        send_batch(u);
        return;
    }
    if (!u->delay_timer)
        u->delay_timer = g_timeout_add(u->cfg.batch_max_delay_ms, on_delay, u);
}

/* The transport's reconnect request, deferred to an idle callback so it
 * never runs inside the transport's own code. Between batches the session
 * ends at once; with a batch in flight, right after its acknowledgement. */
static gboolean
on_reconnect_idle(gpointer data)
{
    OtsUplink *u = data;
    u->reconnect_idle = 0;
    if (u->stopped || !u->stream)
        return G_SOURCE_REMOVE;
    if (u->busy) {
        u->reconnect_wanted = TRUE;
        return G_SOURCE_REMOVE;
    }
    close_connection(u);
    u->state = OTS_UPLINK_STATE_IDLE;
    maybe_send(u); /* connects at once if anything is pending, else on the next event */
    return G_SOURCE_REMOVE;
}

static void
on_transport_reconnect(gpointer data, const char *reason)
{
    OtsUplink *u = data;
    g_message("transport %s asks for a new session: %s", u->transport->name,
              reason ? reason : "no reason given");
    if (!u->reconnect_idle)
        u->reconnect_idle = g_idle_add(on_reconnect_idle, u);
}

/* --- public --- */

OtsUplink *
ots_uplink_new(const OtsUplinkConfig *cfg, OtsSpool *spool, const OtsTransportInfo *transport,
               gpointer transport_instance, const char *sensor_id, GError **error)
{
    g_return_val_if_fail(cfg && cfg->host && cfg->path && spool && transport && sensor_id, NULL);
    OtsUplink *u = g_new0(OtsUplink, 1);

    g_atomic_ref_count_init(&u->rc);
    config_copy(&u->cfg, cfg);
    u->spool = spool;
    u->transport = transport;
    u->instance = transport_instance;
    u->sensor_id = g_strdup(sensor_id);
    u->raw = (transport->flags & OTS_TRANSPORT_FLAG_RAW) != 0;
    u->cancel = g_cancellable_new();
    u->parser = ots_http_parser_new(NULL);
    u->st.transport = transport->name;
    if (!u->raw && !u->cfg.credentials) {
        u->cfg.credentials = ots_tls_credentials_new(NULL, NULL, NULL, NULL, NULL, NULL, error);
        if (!u->cfg.credentials) {
            uplink_unref(u);
            return NULL;
        }
    }
    /* Plugins built against ABI 1.0 have NULL in that slot anyway. */
    if (transport->abi_minor >= 1 && transport->set_reconnect_func)
        transport->set_reconnect_func(transport_instance, on_transport_reconnect, u);
    return u;
}

void
ots_uplink_start(OtsUplink *u)
{
    if (u->started || u->stopped)
        return;
    u->started = TRUE;
    /* Always on: connect now, even with nothing to send yet. */
    do_connect(u);
}

void
ots_uplink_notify(OtsUplink *u)
{
    maybe_send(u);
}

gboolean
ots_uplink_reconfigure(OtsUplink *u, const OtsUplinkConfig *cfg, GError **error)
{
    OtsUplinkConfig next;

    config_copy(&next, cfg);
    if (!u->raw && !next.credentials) {
        next.credentials = ots_tls_credentials_new(NULL, NULL, NULL, NULL, NULL, NULL, error);
        if (!next.credentials) {
            ots_uplink_config_clear(&next);
            return FALSE;
        }
    }
    ots_uplink_config_clear(&u->cfg);
    u->cfg = next;
    u->split_events = 0;
    /* Certificates, names or the endpoint may have changed: new session. */
    if (u->started && !u->stopped) {
        clear_source(&u->retry_timer);
        clear_source(&u->delay_timer);
        u->backoff_ms = 0;
        do_connect(u);
    }
    return TRUE;
}

void
ots_uplink_get_status(OtsUplink *u, OtsUplinkStatus *status)
{
    *status = u->st;
    status->state = u->state;
    status->last_error = u->last_error;
    status->tls = u->tls_desc;
    status->transport = u->transport->name;
    if (u->state != OTS_UPLINK_STATE_BACKOFF && u->state != OTS_UPLINK_STATE_AUTH_FAILED)
        status->current_backoff_ms = 0;
}

static gboolean
on_flush_deadline(gpointer data)
{
    OtsUplink *u = data;
    OtsSpoolStats ss;

    u->flush_timer = 0;
    ots_spool_get_stats(u->spool, &ss);
    GTask *t = g_steal_pointer(&u->flush_task);
    g_task_return_new_error(t, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_TIMEOUT,
                            "%" G_GUINT64_FORMAT " event(s) not acknowledged in time%s%s",
                            ss.depth_events, u->last_error ? "; last error: " : "",
                            u->last_error ? u->last_error : "");
    g_object_unref(t);
    return G_SOURCE_REMOVE;
}

void
ots_uplink_flush_async(OtsUplink *u, guint timeout_ms, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data)
{
    GTask *t = g_task_new(NULL, cancellable, callback, user_data);

    g_task_set_source_tag(t, ots_uplink_flush_async);
    if (u->flush_task) {
        g_task_return_new_error(t, G_IO_ERROR, G_IO_ERROR_PENDING, "a flush is already running");
        g_object_unref(t);
        return;
    }
    u->flush_task = t;
    u->flush_timer = g_timeout_add(timeout_ms, on_flush_deadline, u);
    flush_check(u);
    if (!u->flush_task)
        return;
    if (!u->started)
        ots_uplink_start(u);
    else if (u->state == OTS_UPLINK_STATE_BACKOFF && u->stream == NULL)
        ; /* the retry timer reconnects */
    else
        maybe_send(u);
}

gboolean
ots_uplink_flush_finish(OtsUplink *u, GAsyncResult *result, GError **error)
{
    return g_task_propagate_boolean(G_TASK(result), error);
}

/* --- handing over to another uplink (transport switch) --- */

static gboolean
on_drain_idle(gpointer data)
{
    OtsUplink *u = data;

    u->drain_idle = 0;
    if (!u->drain_task || u->busy)
        return G_SOURCE_REMOVE;
    clear_source(&u->drain_timer);
    GTask *t = g_steal_pointer(&u->drain_task);
    g_task_return_boolean(t, TRUE);
    g_object_unref(t);
    return G_SOURCE_REMOVE;
}

/* Completes the drain once no batch is in flight. From an idle callback:
 * the owner frees the uplink in its callback, which must not happen inside
 * the uplink's own I/O callbacks. */
static void
drain_check(OtsUplink *u)
{
    if (!u->draining || !u->drain_task || u->busy || u->drain_idle)
        return;
    u->drain_idle = g_idle_add(on_drain_idle, u);
}

static gboolean
on_drain_deadline(gpointer data)
{
    OtsUplink *u = data;

    u->drain_timer = 0;
    clear_source(&u->drain_idle);
    GTask *t = g_steal_pointer(&u->drain_task);
    g_task_return_new_error(t, OTS_UPLINK_ERROR, OTS_UPLINK_ERROR_TIMEOUT,
                            "the batch in flight was not acknowledged in time%s%s",
                            u->last_error ? "; last error: " : "",
                            u->last_error ? u->last_error : "");
    g_object_unref(t);
    return G_SOURCE_REMOVE;
}

/**
 * ots_uplink_stop_after_batch_async:
 * @u: an uplink
 * @timeout_ms: how long to wait for the batch in flight
 * @callback: called once nothing is in flight (or on the deadline)
 * @user_data: for @callback
 *
 * Reads no further batch from the spool and waits for the answer to the one
 * in flight, if any, so that a following ots_uplink_free() rewinds nothing
 * that was already delivered. Connection attempts and retries stop too. The
 * uplink stays in that state until freed: free it in @callback. TRUE when
 * nothing is in flight; FALSE with OTS_UPLINK_ERROR_TIMEOUT on the deadline
 * (freeing then rewinds the batch: the next uplink sends it again).
 */
void
ots_uplink_stop_after_batch_async(OtsUplink *u, guint timeout_ms, GAsyncReadyCallback callback,
                                  gpointer user_data)
{
    GTask *t = g_task_new(NULL, NULL, callback, user_data);

    g_task_set_source_tag(t, ots_uplink_stop_after_batch_async);
    if (u->drain_task) {
        g_task_return_new_error(t, G_IO_ERROR, G_IO_ERROR_PENDING, "already stopping");
        g_object_unref(t);
        return;
    }
    u->draining = TRUE;
    u->drain_task = t;
    clear_source(&u->delay_timer);
    clear_source(&u->retry_timer);
    u->drain_timer = g_timeout_add(timeout_ms, on_drain_deadline, u);
    drain_check(u);
}

gboolean
ots_uplink_stop_after_batch_finish(OtsUplink *u, GAsyncResult *result, GError **error)
{
    return g_task_propagate_boolean(G_TASK(result), error);
}

/**
 * ots_uplink_start_with_session:
 * @u: an uplink not started yet
 * @stream: (transfer full): the transport's stream, already connected
 * @tls: (transfer full) (nullable): the TLS session over @stream, handshake
 *   done (NULL for a RAW transport)
 *
 * Starts @u on a session proven beforehand (make before break), without
 * connecting again. Should the session have ended meanwhile, the uplink
 * reconnects as usual.
 */
void
ots_uplink_start_with_session(OtsUplink *u, GIOStream *stream, OtsTlsSession *tls)
{
    g_return_if_fail(!u->started && !u->stopped);
    u->started = TRUE;
    close_connection(u);
    u->stream = stream;
    u->tls = tls;
    if (tls)
        u->tls_desc = ots_tls_session_get_description(tls);
    session_up(u);
}

void
ots_uplink_free(OtsUplink *u)
{
    if (!u)
        return;
    if (u->transport->abi_minor >= 1 && u->transport->set_reconnect_func)
        u->transport->set_reconnect_func(u->instance, NULL, NULL);
    clear_source(&u->reconnect_idle);
    clear_source(&u->drain_timer);
    clear_source(&u->drain_idle);
    if (u->drain_task) {
        GTask *t = g_steal_pointer(&u->drain_task);
        g_task_return_new_error(t, G_IO_ERROR, G_IO_ERROR_CANCELLED, "uplink stopped");
        g_object_unref(t);
    }
    close_connection(u);
    u->stopped = TRUE;
    u->state = OTS_UPLINK_STATE_STOPPED;
    clear_source(&u->retry_timer);
    clear_source(&u->delay_timer);
    clear_source(&u->flush_timer);
    if (u->flush_task) {
        GTask *t = g_steal_pointer(&u->flush_task);
        g_task_return_new_error(t, G_IO_ERROR, G_IO_ERROR_CANCELLED, "uplink stopped");
        g_object_unref(t);
    }
    uplink_unref(u);
}
