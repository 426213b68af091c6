/* SPDX-License-Identifier: Apache-2.0 */
/* otsensord: wiring of config, plugins, capture workers and output on the
 * GLib main loop. Each stage lives in its own folder; nothing else here. */
#include "ots-build-config.h"
#include "core/capture/capture.h"
#include "core/config/config.h"
#include "core/control/server.h"
#include "core/dissect/dissect.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/privdrop.h"
#include "core/event/event-writer.h"
#include "core/output/sink.h"
#include "core/pipeline.h"
#include "core/plugin/loader.h"
#include "core/spool/spool.h"
#include "core/summary.h"
#include "core/uplink/uplink.h"

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <grp.h>
#include <locale.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

/* Output is written in chunks of about this size. */
#define OUT_CHUNK (256 * 1024)

typedef struct {
    GMainLoop *loop;
    OtsConfig *config; /* owned; replaced by a good reload */
    /* The configuration the daemon started with (owned; may be @config):
     * what only a restart applies keeps its values from here. */
    OtsConfig *start_config;
    OtsPipeline *pipeline;
    /* RAW transports (local): lines go straight to the sink. Network
     * transports: lines go to the spool, the uplink delivers them. */
    OtsSink *sink;
    OtsSpool *spool;
    OtsUplink *uplink;
    const OtsTransportInfo *transport;
    gpointer transport_instance;
    OtsSummary *summary;
    char *sensor_id_json;
    guint64 seq;
    OtsBuf out;
    OtsTimeCache tc;
    OtsEventWriter sensor_writer; /* main-thread events (health) */
    guint64 events[OTS_EVENT_N_TYPES];
    gint64 started;
    int exit_code;
    gboolean done;
    gboolean stopping;
    guint drain_timeout_ms;
    GCancellable *drain_cancel; /* the end-of-input drain, cut short by a signal */
    const char *config_path;
    const char *log_override;
    /* control socket (otsensorctl) */
    OtsControlServer *control;
    const OtsPluginSet *plugins;
    /* transport switch (make before break) */
    struct _Probe *switching; /* the switch in progress */
    gboolean drain_after_switch;
    guint heartbeat; /* the heartbeat timer, 0: none */
    gint64 heartbeat_s;
} Daemon;

static void
output_failed(Daemon *d, const GError *err)
{
    /* The local sink failing (disk full, closed pipe) is fatal for this
     * run; network transports have the spool. */
    g_printerr("otsensord: output failed: %s\n", err->message);
    d->exit_code = EX_IOERR;
    g_main_loop_quit(d->loop);
}

static void
flush_out(Daemon *d)
{
    if (!d->out.len || !d->sink)
        return;
    g_autoptr(GError) err = NULL;
    if (!ots_sink_write(d->sink, d->out.data, d->out.len, &err))
        output_failed(d, err);
    d->out.len = 0;
}

/* A local output's lines: each one's envelope is written into d->out, and
 * the body with its newline goes out from the batch as it is, all in one
 * writev(): no copy of the bodies (they were ~60% of the main thread's time
 * on the capture benchmark). */
static void
write_batch_local(Daemon *d, OtsEventBatch *batch)
{
    flush_out(d);
    gsize id_len = strlen(d->sensor_id_json);
    /* Reserved at once, so that the envelopes are written without a move;
     * the vectors get their addresses once all are written all the same. */
    ots_buf_reserve(&d->out, batch->n_events * (OTS_EVENT_PREFIX_MAX + id_len));
    g_autofree GOutputVector *v = g_new(GOutputVector, 2 * (gsize)batch->n_events);
    gsize n = 0, off = 0;
    const OtsEventRecord *rec;
    const char *body;
    while (ots_event_batch_next(batch, &off, &rec, &body) && n < 2 * (gsize)batch->n_events) {
        gsize start = d->out.len;
        ots_event_format_prefix(&d->out, rec, d->sensor_id_json, id_len, ++d->seq, &d->tc);
        v[n].buffer = GSIZE_TO_POINTER(start); /* an offset until the loop ends */
        v[n++].size = d->out.len - start;
        v[n].buffer = body;
        v[n++].size = rec->len + 1; /* the newline after it */
        d->events[rec->type]++;
    }
    for (gsize i = 0; i < n; i += 2)
        v[i].buffer = d->out.data + GPOINTER_TO_SIZE(v[i].buffer);
    g_autoptr(GError) err = NULL;
    if (n && !ots_sink_writev(d->sink, v, n, &err))
        output_failed(d, err);
    d->out.len = 0;
}

/* Takes the events of @batch (borrowed: the pipeline reuses its buffer). */
static void
on_batch(OtsEventBatch *batch, gpointer user)
{
    Daemon *d = user;
    gsize off = 0;
    const OtsEventRecord *rec;
    const char *body;
    if (d->spool) {
        /* seq comes from the spool: persistent across restarts. */
        while (ots_event_batch_next(batch, &off, &rec, &body)) {
            d->out.len = 0;
            ots_event_format_line(&d->out, rec, body, d->sensor_id_json,
                                  ots_spool_next_seq(d->spool), &d->tc);
            ots_spool_append(d->spool, rec->ts, d->out.data, d->out.len);
            d->events[rec->type]++;
        }
        d->out.len = 0;
        ots_spool_sync(d->spool);
        ots_uplink_notify(d->uplink);
        return;
    }
    if (d->sink) {
        write_batch_local(d, batch);
        return;
    }
    while (ots_event_batch_next(batch, &off, &rec, &body)) {
        ots_event_format_line(&d->out, rec, body, d->sensor_id_json, ++d->seq, &d->tc);
        d->events[rec->type]++;
        if (d->out.len >= OUT_CHUNK)
            flush_out(d);
    }
}

static void
sensor_batch(OtsEventBatch *batch, gpointer user)
{
    on_batch(batch, user);
    ots_event_batch_free(batch);
}

/* The `sensor` health event: capture and drop counters, queue drops,
 * events by type, anomalies, output state. */
static void
write_sensor_event(Daemon *d, OtsEventWriter *w, const char *reason)
{
    OtsEvent *e = ots_event_writer_begin(w, OTS_EVENT_SENSOR, g_get_real_time());
    ots_event_add_string(e, "reason", reason);
    ots_event_add_string(e, "version", OTS_VERSION);
    const char *site = NULL;
    if (ots_settings_get_string(ots_config_get_root(d->config), "sensor.site", &site) && site &&
        *site)
        ots_event_add_string(e, "site", site);
    ots_event_add_int(e, "uptime_s", (g_get_monotonic_time() - d->started) / G_USEC_PER_SEC);
    ots_event_begin_array(e, "capture");
    guint64 queue_dropped = 0;
    for (guint i = 0; i < ots_pipeline_n_sources(d->pipeline); i++) {
        OtsSourceStats st = {0};
        ots_pipeline_get_stats(d->pipeline, i, &st);
        ots_event_begin_object(e, NULL);
        ots_event_add_string(e, "source", st.name);
        ots_event_add_bool(e, "live", st.live);
        ots_event_add_uint(e, "shards", st.shards);
        ots_event_add_uint(e, "packets", st.decode.packets);
        ots_event_add_uint(e, "bytes", st.decode.bytes);
        if (st.live) {
            ots_event_add_uint(e, "kernel_received", st.pcap_received);
            ots_event_add_uint(e, "kernel_dropped", st.pcap_dropped);
            ots_event_add_uint(e, "interface_dropped", st.pcap_ifdropped);
        }
        ots_event_add_uint(e, "queue_dropped_events", st.queue_dropped_events);
        ots_event_add_uint(e, "ipv4", st.decode.ipv4);
        ots_event_add_uint(e, "ipv6", st.decode.ipv6);
        ots_event_add_uint(e, "tcp", st.decode.tcp);
        ots_event_add_uint(e, "udp", st.decode.udp);
        ots_event_add_uint(e, "not_ip", st.decode.not_ip);
        ots_event_add_uint(e, "fragments", st.decode.fragments);
        ots_event_add_uint(e, "truncated", st.decode.truncated);
        ots_event_add_uint(e, "malformed", st.decode.malformed);
        ots_event_add_uint(e, "flows_active", st.flows.active);
        ots_event_add_uint(e, "flows_created", st.flows.created);
        ots_event_add_uint(e, "flows_evicted", st.flows.evicted);
        ots_event_add_uint(e, "tcp_gaps", st.tcp.gaps);
        ots_event_add_uint(e, "pdu_overflow", st.dissect.pending_overflow);
        ots_event_add_uint(e, "memory_used", st.dissect.mem_used);
        ots_event_add_uint(e, "memcap_refused", st.dissect.memcap_refused);
        ots_event_end_object(e);
        queue_dropped += st.queue_dropped_events;
        ots_source_stats_clear(&st);
    }
    ots_event_end_array(e);
    ots_event_add_uint(e, "queue_dropped_events", queue_dropped);
    ots_event_begin_object(e, "events");
    for (int t = 0; t < OTS_EVENT_N_TYPES; t++)
        ots_event_add_uint(e, ots_event_type_to_string(t), d->events[t]);
    ots_event_end_object(e);
    g_autoptr(GHashTable) anomalies = ots_pipeline_get_anomalies(d->pipeline);
    ots_event_begin_object(e, "anomalies");
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, anomalies);
    while (g_hash_table_iter_next(&it, &k, &v))
        ots_event_add_uint(e, k, *(guint64 *)v);
    ots_event_end_object(e);
    ots_event_begin_object(e, "uplink");
    if (d->uplink) {
        OtsUplinkStatus us;
        ots_uplink_get_status(d->uplink, &us);
        ots_event_add_string(e, "transport", d->transport->name);
        ots_event_add_string(e, "state", ots_uplink_state_to_string(us.state));
        if (us.last_error)
            ots_event_add_string(e, "last_error", us.last_error);
        if (us.tls)
            ots_event_add_string(e, "tls", us.tls);
        ots_event_add_uint(e, "batches_acked", us.batches_acked);
        ots_event_add_uint(e, "events_acked", us.events_acked);
        ots_event_add_uint(e, "bytes_acked", us.bytes_acked);
        ots_event_add_uint(e, "acked_seq", us.acked_seq);
        ots_event_add_uint(e, "retries", us.retries);
        ots_event_add_uint(e, "auth_failures", us.auth_failures);
        ots_event_add_uint(e, "connects", us.connects);
        ots_event_add_uint(e, "backoff_ms", us.current_backoff_ms);
        /* Only read a field the plugin's ABI minor has. */
        if (((const OtsPluginHeader *)d->transport)->abi_minor >= 1 && d->transport->status) {
            ots_event_begin_object(e, "transport_status");
            d->transport->status(d->transport_instance, e);
            ots_event_end_object(e);
        }
    } else {
        ots_event_add_string(e, "transport", ots_sink_get_transport_name(d->sink));
        ots_event_add_string(e, "state", "connected");
    }
    ots_event_end_object(e);
    if (d->spool) {
        OtsSpoolStats ss;
        ots_spool_get_stats(d->spool, &ss);
        ots_event_begin_object(e, "spool");
        ots_event_add_uint(e, "depth_events", ss.depth_events);
        ots_event_add_uint(e, "depth_bytes", ss.depth_bytes);
        if (ss.oldest_unacked_ts) {
            OtsBuf *b = ots_event_key(e, "oldest_unacked");
            ots_json_time(b, ss.oldest_unacked_ts, &d->tc);
        }
        ots_event_add_uint(e, "next_seq", ss.next_seq);
        ots_event_add_uint(e, "acked_seq", ss.acked_seq);
        ots_event_add_uint(e, "dropped_oldest", ss.dropped_oldest);
        ots_event_add_uint(e, "dropped_newest", ss.dropped_newest);
        ots_event_add_uint(e, "write_errors", ss.write_errors);
        ots_event_add_uint(e, "bad_crc", ss.bad_crc);
        ots_event_add_uint(e, "segments", ss.segments);
        ots_event_add_uint(e, "disk_bytes", ss.disk_bytes);
        ots_event_end_object(e);
    }
    ots_event_commit(e);
    ots_event_writer_flush(w);
}

static void
emit_sensor_event(Daemon *d, const char *reason)
{
    write_sensor_event(d, &d->sensor_writer, reason);
}

static gboolean
on_heartbeat(gpointer user)
{
    Daemon *d = user;
    if (d->spool)
        ots_spool_sync(d->spool); /* fsync policy "interval" on a quiet sensor */
    emit_sensor_event(d, "heartbeat");
    flush_out(d);
    return G_SOURCE_CONTINUE;
}

static void
drained(GObject *source, GAsyncResult *res, gpointer user)
{
    Daemon *d = user;
    g_autoptr(GError) err = NULL;
    if (!ots_uplink_flush_finish(d->uplink, res, &err)) {
        OtsSpoolStats ss;
        ots_spool_get_stats(d->spool, &ss);
        g_printerr("otsensord: %" G_GUINT64_FORMAT " events not yet acknowledged (%s); they stay "
                   "in the spool and are sent at the next start\n",
                   ss.depth_events, err->message);
        d->exit_code = EX_TEMPFAIL;
    }
    g_main_loop_quit(d->loop);
}

static void start_drain(Daemon *d);

static void
on_done(gpointer user)
{
    Daemon *d = user;
    d->done = TRUE;
    emit_sensor_event(d, "shutdown");
    flush_out(d);
    if (d->uplink) {
        d->drain_cancel = g_cancellable_new();
        if (d->switching)
            d->drain_after_switch = TRUE; /* the uplink that stays flushes */
        else
            start_drain(d);
        return;
    }
    g_main_loop_quit(d->loop);
}

static void
start_drain(Daemon *d)
{
    /* Everything queued is delivered before exit, or stays spooled. */
    ots_uplink_flush_async(d->uplink, d->drain_timeout_ms, d->drain_cancel, drained, d);
}

static gboolean
cancel_drain(gpointer user)
{
    Daemon *d = user;
    g_cancellable_cancel(d->drain_cancel);
    return G_SOURCE_REMOVE;
}

static gboolean
on_signal(gpointer user)
{
    Daemon *d = user;
    if (d->drain_cancel && !d->stopping) {
        /* Already draining the uplink at the end of the input: give it 5 s
         * more, then stop (the rest stays spooled). */
        d->stopping = TRUE;
        ots_notify("STOPPING=1");
        g_timeout_add_seconds(5, cancel_drain, d);
        return G_SOURCE_CONTINUE;
    }
    if (d->stopping) {
        /* A second signal: the operator does not want to wait. */
        g_message("second signal: exiting without flushing flows");
        _exit(1);
    }
    d->stopping = TRUE;
    ots_notify("STOPPING=1");
    /* A service stop should not hang on an unreachable cloud: what is not
     * acknowledged in 5 s stays in the spool for the next start. */
    d->drain_timeout_ms = 5000;
    g_message("stopping: ending flows and flushing events");
    ots_pipeline_stop(d->pipeline);
    return G_SOURCE_CONTINUE;
}

/* ---- transport switch and test (make before break) ---- */

/* Where `otsensorctl transport set NAME --persist` keeps its choice: it wins
 * over output.transport at start until `transport set --clear` removes it. */
#define TRANSPORT_OVERRIDE_FILE "transport.override"
/* The old uplink's batch in flight gets this long to be acknowledged. */
#define SWITCH_DRAIN_MAX_MS 5000

/* One trial of a transport: its own instance, connect_async towards the
 * uplink endpoint with every hop report kept, then the end-to-end TLS
 * handshake. `transport.test` reports and closes it; a switch keeps the
 * proven session and hands it to the new uplink. */
typedef struct _Probe Probe;
struct _Probe {
    Daemon *d;
    const OtsTransportInfo *t;
    gpointer instance;
    OtsUplinkConfig ucfg;
    OtsConfig *config; /* (nullable): a reload's configuration, in force once switched */
    GCancellable *cancel;
    JsonArray *steps;
    guint n_hops;
    char *last_step; /* the last hop report, for a timeout's message */
    char *failed_hop;
    char *error;
    char *tls_desc;
    GIOStream *stream;
    OtsTlsSession *tls;
    OtsUplink *next;
    gint64 t0;
    gint64 proven_us;
    guint timer;
    gboolean timed_out;
    gboolean switching;
    gboolean persist;
    gboolean abandoned; /* the daemon exits: touch nothing of it */
    char *previous;     /* switch: the transport it replaces */
    OtsControlReplyFunc reply;
    gpointer reply_data;
};

static void
probe_free(Probe *p)
{
    if (!p)
        return;
    if (p->timer)
        g_source_remove(p->timer);
    if (p->next)
        ots_uplink_free(p->next);
    if (p->tls) {
        ots_tls_session_close(p->tls);
        ots_tls_session_free(p->tls);
    } else if (p->stream) {
        g_io_stream_close(p->stream, NULL, NULL);
    }
    g_clear_object(&p->stream);
    if (p->instance)
        p->t->destroy(p->instance);
    ots_uplink_config_clear(&p->ucfg);
    ots_config_free(p->config);
    g_clear_object(&p->cancel);
    json_array_unref(p->steps);
    g_free(p->last_step);
    g_free(p->failed_hop);
    g_free(p->error);
    g_free(p->tls_desc);
    g_free(p->previous);
    g_free(p);
}

static const char *
hop_step_name(OtsHopStep step)
{
    switch (step) {
    case OTS_HOP_RESOLVED:
        return "resolved";
    case OTS_HOP_TCP_CONNECTED:
        return "tcp_connected";
    case OTS_HOP_TLS_DONE:
        return "tls_done";
    case OTS_HOP_CONNECT_OK:
        return "connect_ok";
    case OTS_HOP_FAILED:
        return "failed";
    case OTS_HOP_INFO:
        return "info";
    }
    return "?";
}

static void
probe_add_step(Probe *p, guint hop, const char *name, const char *step, gint64 elapsed_us,
               const char *detail)
{
    JsonObject *o = json_object_new();
    json_object_set_int_member(o, "hop", hop);
    json_object_set_string_member(o, "name", name ? name : "-");
    json_object_set_string_member(o, "step", step);
    json_object_set_double_member(o, "elapsed_ms", (double)elapsed_us / 1000.0);
    if (detail)
        json_object_set_string_member(o, "detail", detail);
    json_array_add_object_element(p->steps, o);
    g_free(p->last_step);
    p->last_step = g_strdup_printf("hop %u (%s) %s%s%s", hop, name ? name : "-", step,
                                   detail ? ": " : "", detail ? detail : "");
}

/* Hop reports: strings are only valid during the call, so copied. Plugins
 * never put credentials in them (transport.h). */
static void
on_probe_hop(const OtsHopReport *r, gpointer user)
{
    Probe *p = user;
    probe_add_step(p, r->hop, r->hop_name, hop_step_name(r->step),
                   r->elapsed_us ? r->elapsed_us : g_get_monotonic_time() - p->t0, r->detail);
    p->n_hops = MAX(p->n_hops, r->hop);
    if (r->step == OTS_HOP_FAILED && !p->failed_hop) {
        p->failed_hop = g_strdup_printf("hop %u (%s)", r->hop, r->hop_name ? r->hop_name : "-");
        g_free(p->error);
        p->error = g_strdup(r->detail ? r->detail : "failed");
    }
}

static void probe_done(Probe *p, gboolean ok);

static void
probe_fail(Probe *p, const char *hop, const char *why)
{
    if (!p->failed_hop)
        p->failed_hop = g_strdup(hop);
    if (p->timed_out) {
        g_free(p->error);
        p->error =
            g_strdup_printf("no answer within %u ms%s%s", p->ucfg.connect_timeout_ms,
                            p->last_step ? "; last step: " : "", p->last_step ? p->last_step : "");
    } else if (!p->error) {
        p->error = g_strdup(why);
    }
    probe_done(p, FALSE);
}

static void
on_probe_handshake(GObject *source, GAsyncResult *res, gpointer user)
{
    Probe *p = user;
    g_autoptr(GError) err = NULL;
    g_autofree char *endpoint = g_strdup_printf("%s:%u", p->ucfg.host, p->ucfg.port);
    gint64 el = g_get_monotonic_time() - p->t0;
    if (!ots_tls_session_handshake_finish(p->tls, res, &err)) {
        probe_add_step(p, p->n_hops + 1, endpoint, "failed", el, err->message);
        g_autofree char *hop = g_strdup_printf("end-to-end TLS with %s", endpoint);
        probe_fail(p, hop, err->message);
        return;
    }
    p->tls_desc = ots_tls_session_get_description(p->tls);
    probe_add_step(p, p->n_hops + 1, endpoint, "tls_handshake", el, p->tls_desc);
    probe_done(p, TRUE);
}

static void
on_probe_connected(GObject *source, GAsyncResult *res, gpointer user)
{
    Probe *p = user;
    g_autoptr(GError) err = NULL;
    p->stream = p->t->connect_finish(p->instance, res, &err);
    if (!p->stream) {
        g_autofree char *hop = g_strdup_printf("transport %s", p->t->name);
        probe_fail(p, hop, err->message);
        return;
    }
    if (p->t->flags & OTS_TRANSPORT_FLAG_RAW) {
        probe_done(p, TRUE);
        return;
    }
    OtsTlsParams tp = {
        .credentials = p->ucfg.credentials,
        .verify_name = p->ucfg.server_name ? p->ucfg.server_name : p->ucfg.host,
        .priority = p->ucfg.priority,
        .pins = (const guint8(*)[32])p->ucfg.pins,
        .n_pins = p->ucfg.n_pins,
    };
    p->tls = ots_tls_session_new(p->stream, &tp, &err);
    if (!p->tls) {
        probe_fail(p, "end-to-end TLS", err->message);
        return;
    }
    ots_tls_session_handshake_async(p->tls, p->cancel, on_probe_handshake, p);
}

static gboolean
on_probe_timeout(gpointer user)
{
    Probe *p = user;
    p->timer = 0;
    p->timed_out = TRUE;
    g_cancellable_cancel(p->cancel); /* the pending callback reports it */
    return G_SOURCE_REMOVE;
}

/* Builds a probe of transport @name from @root (validated like at start).
 * Errors name the file and line of a bad setting. */
static Probe *
probe_new(Daemon *d, const OtsSettings *root, const char *name, GError **error)
{
    const OtsPlugin *pl =
        name ? ots_plugin_set_find(d->plugins, OTS_PLUGIN_KIND_TRANSPORT, name) : NULL;
    if (!pl) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_NOT_FOUND, "no such transport '%s'",
                    name ? name : "");
        return NULL;
    }
    const OtsTransportInfo *t = (const OtsTransportInfo *)pl->header;
    if (t->flags & OTS_TRANSPORT_FLAG_RAW) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
                    "transport '%s' writes locally, not to the cloud: changing between local "
                    "and network output needs a restart",
                    name);
        return NULL;
    }
    const OtsSettings *transports = ots_settings_get_group(root, "transports");
    const OtsSettings *group = transports ? ots_settings_get_group(transports, t->name) : NULL;
    if (group && t->settings) {
        g_autofree char *path = g_strdup_printf("transports.%s", t->name);
        if (!ots_settings_validate(group, t->settings, path, error))
            return NULL;
    }
    Probe *p = g_new0(Probe, 1);
    p->d = d;
    p->t = t;
    p->steps = json_array_new();
    ots_uplink_config_init(&p->ucfg);
    if (!ots_uplink_config_from_settings(root, &p->ucfg, error)) {
        probe_free(p);
        return NULL;
    }
    if (!p->ucfg.credentials) {
        p->ucfg.credentials = ots_tls_credentials_new(NULL, NULL, NULL, NULL, NULL, NULL, error);
        if (!p->ucfg.credentials) {
            probe_free(p);
            return NULL;
        }
    }
    p->instance = t->create(group, error);
    if (!p->instance) {
        probe_free(p);
        return NULL;
    }
    return p;
}

static void
probe_run(Probe *p)
{
    OtsEndpoint ep = {.host = p->ucfg.host, .port = p->ucfg.port};
    p->cancel = g_cancellable_new();
    p->t0 = g_get_monotonic_time();
    p->timer = g_timeout_add(p->ucfg.connect_timeout_ms, on_probe_timeout, p);
    p->t->connect_async(p->instance, &ep, p->cancel, on_probe_hop, p, on_probe_connected, p);
}

/* The result both commands share: the steps, and on failure which hop and
 * why. Never credentials: only hop reports and TLS errors go in. */
static JsonObject *
probe_result(Probe *p, gboolean ok)
{
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "transport", p->t->name);
    json_object_set_boolean_member(o, "ok", ok);
    g_autofree char *endpoint = g_strdup_printf("%s:%u", p->ucfg.host, p->ucfg.port);
    json_object_set_string_member(o, "endpoint", endpoint);
    json_object_set_double_member(o, "elapsed_ms",
                                  (double)(g_get_monotonic_time() - p->t0) / 1000.0);
    if (p->tls_desc)
        json_object_set_string_member(o, "tls", p->tls_desc);
    if (!ok) {
        json_object_set_string_member(o, "failed_hop", p->failed_hop ? p->failed_hop : "-");
        json_object_set_string_member(o, "error", p->error ? p->error : "failed");
    }
    json_object_set_array_member(o, "steps", json_array_ref(p->steps));
    return o;
}

static void switch_proven(Probe *p, gboolean ok);

static void
probe_done(Probe *p, gboolean ok)
{
    if (p->timer) {
        g_source_remove(p->timer);
        p->timer = 0;
    }
    if (p->switching) {
        switch_proven(p, ok);
        return;
    }
    JsonNode *r = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(r, probe_result(p, ok));
    p->reply(r, NULL, p->reply_data);
    probe_free(p);
}

static void
control_transport_test(gpointer user, const char *name, OtsControlReplyFunc reply,
                       gpointer reply_data)
{
    Daemon *d = user;
    g_autoptr(GError) err = NULL;
    if (!name)
        name = d->transport ? d->transport->name : "local";
    Probe *p = probe_new(d, ots_config_get_root(d->config), name, &err);
    if (!p) {
        reply(NULL, err, reply_data);
        return;
    }
    p->reply = reply;
    p->reply_data = reply_data;
    probe_run(p);
}

static char *
override_path(const OtsSettings *root)
{
    const char *dir = "/var/lib/otsensor";
    ots_settings_get_string(root, "sensor.state_dir", &dir);
    return g_build_filename(dir, TRANSPORT_OVERRIDE_FILE, NULL);
}

/* The persisted choice, when there is a valid one. */
static char *
read_override(const OtsSettings *root)
{
    g_autofree char *path = override_path(root);
    g_autofree char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &text, &len, NULL) || len > 256)
        return NULL;
    g_strstrip(text);
    for (const char *c = text; *c; c++)
        if (!g_ascii_isalnum(*c) && *c != '_' && *c != '-' && *c != '.')
            return NULL;
    return *text ? g_steal_pointer(&text) : NULL;
}

static gboolean
write_override(const OtsSettings *root, const char *name, GError **error)
{
    g_autofree char *path = override_path(root);
    if (!name) {
        if (g_unlink(path) != 0 && errno != ENOENT) {
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot remove %s: %s",
                        path, g_strerror(errno));
            return FALSE;
        }
        return TRUE;
    }
    g_autofree char *line = g_strconcat(name, "\n", NULL);
    return g_file_set_contents(path, line, -1, error);
}

static void start_drain(Daemon *d);
static void config_take(Daemon *d, OtsConfig *next);

/* The input ended during a switch: the final flush waits for its end. */
static void
switch_finished(Daemon *d)
{
    d->switching = NULL;
    if (d->drain_after_switch) {
        d->drain_after_switch = FALSE;
        start_drain(d);
    }
}

static void
on_old_uplink_stopped(GObject *source, GAsyncResult *res, gpointer user)
{
    Probe *p = user;
    Daemon *d = p->d;
    g_autoptr(GError) err = NULL;
    if (p->abandoned)
        return; /* the daemon is freeing the old uplink on its way out */
    if (!ots_uplink_stop_after_batch_finish(d->uplink, res, &err))
        g_message("transport switch: %s; that batch is sent again on the new path", err->message);
    /* Freeing rewinds anything not acknowledged: the spool keeps it, the
     * new uplink sends it (at most one batch twice, never a gap). */
    ots_uplink_free(d->uplink);
    d->transport->destroy(d->transport_instance);
    d->uplink = g_steal_pointer(&p->next);
    d->transport = p->t;
    d->transport_instance = g_steal_pointer(&p->instance);
    ots_uplink_start_with_session(d->uplink, g_steal_pointer(&p->stream), g_steal_pointer(&p->tls));
    if (p->config)
        config_take(d, g_steal_pointer(&p->config)); /* a reload's switch: in force now */
    gboolean persisted = FALSE;
    g_autoptr(GError) perr = NULL;
    if (p->persist) {
        persisted = write_override(ots_config_get_root(d->start_config), p->t->name, &perr);
        if (!persisted)
            g_message("transport switch: not persisted: %s", perr->message);
    }
    gint64 took = g_get_monotonic_time() - p->t0;
    g_message("transport switched from %s to %s in %" G_GINT64_FORMAT " ms%s", p->previous,
              p->t->name, took / 1000, persisted ? " (persisted)" : "");
    switch_finished(d);
    emit_sensor_event(d, "transport_switch");
    if (p->reply) {
        JsonObject *o = probe_result(p, TRUE);
        json_object_set_string_member(o, "previous", p->previous);
        json_object_set_double_member(o, "proven_ms", (double)p->proven_us / 1000.0);
        json_object_set_boolean_member(o, "persisted", persisted);
        if (perr)
            json_object_set_string_member(o, "persist_error", perr->message);
        OtsUplinkStatus us;
        ots_uplink_get_status(d->uplink, &us);
        json_object_set_string_member(o, "state", ots_uplink_state_to_string(us.state));
        JsonNode *r = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(r, o);
        p->reply(r, NULL, p->reply_data);
    }
    probe_free(p);
}

/* The new path is proven (or not). Not: the old uplink was never touched.
 * Proven: the new uplink waits, the old one finishes its batch in flight,
 * then the new one takes over on the proven session. */
static void
switch_proven(Probe *p, gboolean ok)
{
    Daemon *d = p->d;
    g_autoptr(GError) err = NULL;
    if (ok) {
        /* The running identity: a new sensor.id waits for a restart. */
        const char *sensor_id = "otsensor";
        ots_settings_get_string(ots_config_get_root(d->start_config), "sensor.id", &sensor_id);
        p->next = ots_uplink_new(&p->ucfg, d->spool, p->t, p->instance, sensor_id, &err);
        if (!p->next) {
            g_free(p->error);
            p->error = g_strdup(err->message);
            ok = FALSE;
        }
    }
    if (!ok) {
        g_autoptr(GError) e = g_error_new(
            OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
            "cannot switch to transport %s: %s: %s; still delivering through %s", p->t->name,
            p->failed_hop ? p->failed_hop : "setup", p->error ? p->error : "failed", p->previous);
        g_message("%s", e->message);
        switch_finished(d);
        if (p->reply)
            p->reply(NULL, e, p->reply_data);
        probe_free(p);
        return;
    }
    p->proven_us = g_get_monotonic_time() - p->t0;
    guint drain = MIN(p->ucfg.io_timeout_ms, SWITCH_DRAIN_MAX_MS);
    ots_uplink_stop_after_batch_async(d->uplink, drain, on_old_uplink_stopped, p);
}

/* The one switch path (`transport set`, and a reload whose output.transport
 * changed). @config: (transfer full) (nullable): the reload's configuration,
 * in force once switched; NULL: the running one. */
static gboolean
switch_start(Daemon *d, const char *name, OtsConfig *config, gboolean persist,
             OtsControlReplyFunc reply, gpointer reply_data, GError **error)
{
    g_autoptr(OtsConfig) owned = config;
    if (!d->uplink) {
        g_set_error_literal(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
                            "this sensor writes locally (-o or a local transport): switching to "
                            "a network transport needs a restart");
        return FALSE;
    }
    if (d->switching) {
        g_set_error(error, OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED,
                    "a switch to %s is already running", d->switching->t->name);
        return FALSE;
    }
    const OtsSettings *root = ots_config_get_root(config ? config : d->config);
    Probe *p = probe_new(d, root, name, error);
    if (!p)
        return FALSE;
    p->switching = TRUE;
    p->persist = persist;
    p->config = g_steal_pointer(&owned);
    p->previous = g_strdup(d->transport->name);
    p->reply = reply;
    p->reply_data = reply_data;
    d->switching = p;
    g_message("switching transport from %s to %s", d->transport->name, p->t->name);
    probe_run(p);
    return TRUE;
}

/* ---- end of transport switch ---- */

/* ---- reload (SIGHUP, `otsensorctl reload`) ---- */

/* What a reload applies while running; anything else that differs from the
 * configuration the daemon started with needs a restart. A key stands for
 * itself and every key below it. */
static const char *const live_keys[] = {
    "sensor.site", /* read for each health event */
    "output.transport",
    "output.heartbeat_interval",
    "transports", /* the active one's: a switch to a new instance of it */
    "uplink",     /* ots_uplink_reconfigure(), or the switch's new uplink */
    "logging",
    "dissectors",
    NULL,
};

static gboolean
key_under(const char *path, const char *key)
{
    gsize n = strlen(key);
    return strncmp(path, key, n) == 0 && (path[n] == '\0' || path[n] == '.');
}

/* output.transport of @root, and whether it differs from @was's. */
static const char *
output_transport(const OtsConfig *was, const OtsSettings *root, gboolean *changed)
{
    const char *before = "local", *now = "local";
    ots_settings_get_string(ots_config_get_root(was), "output.transport", &before);
    ots_settings_get_string(root, "output.transport", &now);
    *changed = g_strcmp0(before, now) != 0;
    return now;
}

/* A transport that writes locally (RAW): the uplink cannot switch to it. */
static gboolean
is_local_transport(Daemon *d, const char *name)
{
    const OtsPlugin *pl = ots_plugin_set_find(d->plugins, OTS_PLUGIN_KIND_TRANSPORT, name);
    return pl && (((const OtsTransportInfo *)pl->header)->flags & OTS_TRANSPORT_FLAG_RAW);
}

/* The keys of @next that differ from the configuration the daemon started
 * with and only a restart applies. (transfer full) (element-type utf8) */
static GPtrArray *
restart_required(Daemon *d, const OtsSettings *next)
{
    g_autoptr(GPtrArray) changed = ots_settings_diff(ots_config_get_root(d->start_config), next,
                                                     ots_config_core_schema(), NULL);
    /* A local output (a sink, not an uplink) is opened once. */
    g_autofree char *sink_group =
        d->uplink ? NULL : g_strdup_printf("transports.%s", ots_sink_get_transport_name(d->sink));
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < changed->len; i++) {
        const char *path = changed->pdata[i];
        gboolean live = FALSE;
        for (guint k = 0; live_keys[k] && !live; k++)
            live = key_under(path, live_keys[k]);
        if (sink_group && (key_under(path, "output.transport") || key_under(path, sink_group)))
            live = FALSE;
        if (!live)
            g_ptr_array_add(out, g_strdup(path));
    }
    /* From the cloud to a local file: only at the start. */
    gboolean moved = FALSE;
    const char *now = output_transport(d->start_config, next, &moved);
    if (d->uplink && moved && is_local_transport(d, now))
        g_ptr_array_add(out, g_strdup("output.transport"));
    return out;
}

/* The transport a reload switches to: output.transport when the file
 * changed it (unless that is the one running, or a local one: see
 * restart_required()), else the active one when its own settings changed
 * (a new instance of it, proven before it takes over). NULL: no switch. */
static char *
reload_target(Daemon *d, const OtsSettings *next)
{
    if (!d->uplink)
        return NULL;
    gboolean moved = FALSE;
    const char *now = output_transport(d->config, next, &moved);
    if (moved && g_strcmp0(now, d->transport->name) != 0)
        return is_local_transport(d, now) ? NULL : g_strdup(now);
    g_autofree char *group = g_strdup_printf("transports.%s", d->transport->name);
    g_autoptr(GPtrArray) changed =
        ots_settings_diff(ots_settings_get_group(ots_config_get_root(d->config), group),
                          ots_settings_get_group(next, group), NULL, group);
    return changed->len ? g_strdup(d->transport->name) : NULL;
}

static void
heartbeat_set(Daemon *d, gint64 seconds)
{
    if (d->heartbeat && seconds == d->heartbeat_s)
        return;
    if (d->heartbeat)
        g_source_remove(d->heartbeat);
    d->heartbeat = seconds > 0 ? g_timeout_add_seconds((guint)seconds, on_heartbeat, d) : 0;
    d->heartbeat_s = seconds;
}

static gboolean check_dissector_names(const OtsSettings *root, const OtsPluginSet *plugins,
                                      GError **error);
static OtsDissectRegistry *build_registry(const OtsSettings *root, const OtsPluginSet *plugins,
                                          GError **error);

/* @next: (transfer full): a reload's configuration, in force from here on;
 * what follows it without a new transport (log levels, the heartbeat
 * period, dissector enablement and ports) is applied now. */
static void
config_take(Daemon *d, OtsConfig *next)
{
    const OtsSettings *root = ots_config_get_root(next);
    g_autoptr(GError) err = NULL;
    if (d->pipeline) {
        /* Checked by daemon_reload(): cannot fail here. */
        g_autoptr(OtsDissectRegistry) reg = build_registry(root, d->plugins, &err);
        if (reg)
            ots_pipeline_set_registry(d->pipeline, reg);
        else
            g_message("reload: dissectors: %s", err->message);
        g_clear_error(&err);
    }
    if (!ots_log_configure(root, d->log_override, &err))
        g_message("reload: logging: %s", err->message);
    gint64 hb = 0;
    ots_settings_get_int(root, "output.heartbeat_interval", &hb);
    heartbeat_set(d, hb);
    if (d->config != d->start_config)
        ots_config_free(d->config);
    d->config = next;
}

/* A reload under way: its answer waits for the switch it set off. */
typedef struct {
    Daemon *d;
    GPtrArray *restart;        /* the keys that need a restart */
    OtsControlReplyFunc reply; /* (nullable): SIGHUP has none */
    gpointer reply_data;
} Reload;

static void
reload_free(Reload *r)
{
    g_ptr_array_unref(r->restart);
    g_free(r);
}

static void
reload_refused(Daemon *d, const char *why, OtsControlReplyFunc reply, gpointer reply_data)
{
    g_message("reload refused, still running the previous configuration: %s", why);
    ots_notify("READY=1");
    if (reply) {
        g_autoptr(GError) e =
            g_error_new(OTS_CONTROL_ERROR, OTS_CONTROL_ERROR_FAILED, "reload refused: %s", why);
        reply(NULL, e, reply_data);
    }
}

/* The reload is in force. @switched: (transfer full) (nullable): the
 * switch's result, as `transport set` answers it. Key names only: never a
 * value, so no secret. */
static void
reload_finish(Reload *r, JsonNode *switched)
{
    Daemon *d = r->d;
    JsonArray *keys = json_array_new();
    for (guint i = 0; i < r->restart->len; i++)
        json_array_add_string_element(keys, r->restart->pdata[i]);
    if (r->restart->len) {
        g_ptr_array_add(r->restart, NULL);
        g_autofree char *list = g_strjoinv(", ", (char **)r->restart->pdata);
        g_ptr_array_set_size(r->restart, r->restart->len - 1);
        g_message("reload: %s changed but only a restart applies %s; the running values stay "
                  "in force",
                  list, r->restart->len > 1 ? "them" : "it");
    }
    g_message("reloaded %s", d->config_path);
    ots_notify("READY=1");
    JsonObject *o = json_object_new();
    json_object_set_boolean_member(o, "reloaded", TRUE);
    json_object_set_string_member(o, "config", d->config_path);
    json_object_set_array_member(o, "restart_required", keys);
    if (switched)
        json_object_set_member(o, "switch", switched);
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, o);
    if (r->reply)
        r->reply(n, NULL, r->reply_data);
    else
        json_node_unref(n);
    reload_free(r);
}

/* switch_start()'s answer to a reload: in force (the switch's result), or
 * refused with the failing hop and its reason. */
static void
reload_switched(JsonNode *result, const GError *error, gpointer user)
{
    Reload *r = user;
    if (!result) {
        g_autofree char *why =
            g_strdup_printf("%s; the previous configuration stays in force",
                            error ? error->message : "the transport switch failed");
        reload_refused(r->d, why, r->reply, r->reply_data);
        reload_free(r);
        return;
    }
    reload_finish(r, result);
}

/* SIGHUP (@reply NULL) and `otsensorctl reload`: parse and validate the
 * whole file first; on any error keep running as before and say file:line.
 * Then apply what can change live: log levels, the heartbeat period,
 * dissector enablement and ports, the uplink's TLS files and batching
 * (certificates are re-read); the rest waits for a restart and is named
 * (restart_required(), against the configuration started with). When
 * output.transport or the active transport's settings changed, the
 * transport switch runs (make before break) and the new configuration is
 * in force once the new path is proven; a failing path keeps everything as
 * it was. @reply is called once all that is done: with the switch's result
 * and the keys that need a restart, or with why the reload was refused. */
static void
daemon_reload(Daemon *d, OtsControlReplyFunc reply, gpointer reply_data)
{
    ots_notify("RELOADING=1");
    g_autoptr(GError) err = NULL;
    if (!d->config_path) {
        reload_refused(d, "no configuration file (-c) to re-read", reply, reply_data);
        return;
    }
    if (d->switching) {
        g_autofree char *why = g_strdup_printf(
            "a switch to transport %s is running; reload once it is done", d->switching->t->name);
        reload_refused(d, why, reply, reply_data);
        return;
    }
    g_autoptr(OtsConfig) next = ots_config_load_file(d->config_path, &err);
    if (!next) {
        reload_refused(d, err->message, reply, reply_data);
        return;
    }
    const OtsSettings *root = ots_config_get_root(next);
    if (!check_dissector_names(root, d->plugins, &err)) {
        reload_refused(d, err->message, reply, reply_data);
        return;
    }
    Reload *r = g_new0(Reload, 1);
    r->d = d;
    r->restart = restart_required(d, root);
    r->reply = reply;
    r->reply_data = reply_data;
    g_autofree char *target = reload_target(d, root);
    if (target) {
        if (!switch_start(d, target, g_steal_pointer(&next), FALSE, reload_switched, r, &err)) {
            reload_free(r);
            reload_refused(d, err->message, reply, reply_data);
            return;
        }
        g_message("reloading %s: switching to transport %s", d->config_path, target);
        return;
    }
    if (d->uplink) {
        OtsUplinkConfig ucfg;
        ots_uplink_config_init(&ucfg);
        gboolean ok = ots_uplink_config_from_settings(root, &ucfg, &err) &&
                      ots_uplink_reconfigure(d->uplink, &ucfg, &err);
        ots_uplink_config_clear(&ucfg);
        if (!ok) {
            reload_free(r);
            reload_refused(d, err->message, reply, reply_data);
            return;
        }
    }
    config_take(d, g_steal_pointer(&next));
    reload_finish(r, NULL);
}

static gboolean
on_reload(gpointer user)
{
    daemon_reload(user, NULL, NULL); /* the outcome is logged */
    return G_SOURCE_CONTINUE;
}

/* ---- end of reload ---- */

/* ---- control socket (otsensorctl): what the daemon lends core/control ---- */

static void
take_batch(OtsEventBatch *batch, gpointer user)
{
    OtsEventBatch **slot = user;
    ots_event_batch_free(*slot);
    *slot = batch;
}

/* `status` is the `sensor` health event's body, built on demand. */
static char *
control_status(gpointer user)
{
    Daemon *d = user;
    OtsEventBatch *batch = NULL;
    OtsEventWriter w;
    ots_event_writer_init(&w, 1, take_batch, &batch);
    write_sensor_event(d, &w, "status");
    ots_event_writer_clear(&w);
    gsize off = 0;
    const OtsEventRecord *rec;
    const char *body;
    char *json = NULL;
    if (batch && ots_event_batch_next(batch, &off, &rec, &body))
        json = g_strdup_printf("{%.*s", (int)rec->len, body);
    ots_event_batch_free(batch);
    return json;
}

static void
control_reload(gpointer user, OtsControlReplyFunc reply, gpointer reply_data)
{
    daemon_reload(user, reply, reply_data);
}

static const OtsSettings *
control_settings(gpointer user)
{
    return ots_config_get_root(((Daemon *)user)->config);
}

static const char *
control_transport(gpointer user)
{
    Daemon *d = user;
    return d->uplink ? d->transport->name : ots_sink_get_transport_name(d->sink);
}

static void
control_transport_set(gpointer user, const char *name, gboolean persist, OtsControlReplyFunc reply,
                      gpointer reply_data)
{
    Daemon *d = user;
    g_autoptr(GError) err = NULL;
    if (!name) {
        /* `transport set --clear`: the file's output.transport wins again
         * at the next start; the running transport stays. */
        if (!write_override(ots_config_get_root(d->start_config), NULL, &err)) {
            reply(NULL, err, reply_data);
            return;
        }
        JsonNode *r = json_node_new(JSON_NODE_OBJECT);
        JsonObject *o = json_object_new();
        json_object_set_boolean_member(o, "cleared", TRUE);
        json_object_set_string_member(o, "transport", control_transport(d));
        json_node_take_object(r, o);
        reply(r, NULL, reply_data);
        return;
    }
    if (!switch_start(d, name, NULL, persist, reply, reply_data, &err))
        reply(NULL, err, reply_data);
}

/* A sensor without its control socket still captures: failing is logged
 * (quietly for offline reads, which seldom have /run/otsensor). */
static void
control_start(Daemon *d, gboolean offline)
{
    const OtsSettings *root = ots_config_get_root(d->config);
    gboolean enabled = TRUE;
    ots_settings_get_bool(root, "control.enabled", &enabled);
    if (!enabled)
        return;
    OtsControlServerConfig cc = {.path = "/run/otsensor/control.sock"};
    ots_settings_get_string(root, "control.socket", &cc.path);
    ots_settings_get_string(root, "control.group", &cc.group);
    OtsControlProvider prov = {
        .status = control_status,
        .reload = control_reload,
        .settings = control_settings,
        .active_transport = control_transport,
        .plugins = d->plugins,
        .transport_set = control_transport_set,
        .transport_test = control_transport_test,
        .user = d,
    };
    g_autoptr(GError) err = NULL;
    d->control = ots_control_server_new(&cc, &prov, &err);
    if (!d->control && offline)
        g_info("no control socket: %s", err->message);
    else if (!d->control)
        g_message("no control socket: %s", err->message);
}

/* ---- end of control socket ---- */

/* Gives the spool directory to the user we are about to become, so the
 * daemon can still create segments after dropping root. */
static void
chown_spool(const char *dir, const char *user)
{
    struct passwd *pw = getpwnam(user);
    if (!pw || !dir)
        return;
    if (chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        return;
    g_autoptr(GDir) gd = g_dir_open(dir, 0, NULL);
    const char *name;
    while (gd && (name = g_dir_read_name(gd))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        if (chown(p, pw->pw_uid, pw->pw_gid) != 0)
            g_message("cannot hand %s to %s: %s", p, user, g_strerror(errno));
    }
}

static gboolean
on_progress(gpointer user)
{
    Daemon *d = user;
    flush_out(d); /* a quiet live sensor still writes promptly */
    if (d->summary)
        ots_summary_progress(d->summary, d->pipeline, d->events);
    return G_SOURCE_CONTINUE;
}

static int
config_error(const GError *err)
{
    g_printerr("otsensord: %s\n", err->message);
    return OTS_EXIT_CONFIG;
}

static gint64
get_int(const OtsSettings *root, const char *key)
{
    gint64 v = 0;
    if (!ots_settings_get_int(root, key, &v))
        g_error("embedded defaults lack %s", key); /* a bug: defaults cover every key */
    return v;
}

/* An explicit port list from the config (empty: the dissector claims no port). */
static GArray *
port_array(const OtsSettings *group, const char *key)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(guint16));
    for (guint i = 0; i < ots_settings_get_length(group, key); i++) {
        guint16 p = (guint16)ots_settings_get_int_element(group, key, i);
        g_array_append_val(a, p);
    }
    return a;
}

/* Loads plugins from the configured and default directories. */
static OtsPluginSet *
load_plugins(const OtsSettings *root)
{
    OtsPluginSet *set = ots_plugin_set_new();
    guint n = ots_settings_get_length(root, "plugins.disable");
    set->disable = g_new0(char *, n + 1);
    for (guint i = 0; i < n; i++)
        set->disable[i] = g_strdup(ots_settings_get_string_element(root, "plugins.disable", i));
    for (guint i = 0; i < ots_settings_get_length(root, "plugins.paths"); i++)
        ots_plugin_set_load_dir(set, ots_settings_get_string_element(root, "plugins.paths", i), 0);
    guint depth;
    const char *dir = ots_plugin_default_dir(&depth);
    ots_plugin_set_load_dir(set, dir, depth);
    return set;
}

/* A `dissectors` section naming no loaded plugin is an error. */
static gboolean
check_dissector_names(const OtsSettings *root, const OtsPluginSet *plugins, GError **error)
{
    const OtsSettings *sect = ots_settings_get_group(root, "dissectors");
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    for (guint i = 0; i < plugins->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(plugins->plugins, i);
        if (pl->header->kind == OTS_PLUGIN_KIND_DISSECTOR)
            g_ptr_array_add(names, (gpointer)pl->header->name);
    }
    if (sect) {
        g_autoptr(GPtrArray) keys = ots_settings_get_keys(sect);
        for (guint i = 0; i < keys->len; i++) {
            const char *k = keys->pdata[i];
            gboolean found = FALSE;
            for (guint j = 0; j < names->len; j++)
                found |= strcmp(k, names->pdata[j]) == 0;
            if (!found) {
                const char *hint = ots_config_suggest(k, (const char *const *)names->pdata,
                                                      names->len);
                g_autofree char *path = g_strdup_printf("dissectors.%s", k);
                ots_settings_set_error(sect, k, path, error, OTS_CONFIG_ERROR_UNKNOWN_KEY,
                                       "no dissector plugin named '%s'%s%s%s", k,
                                       hint ? " (did you mean '" : "", hint ? hint : "",
                                       hint ? "'?)" : "");
                return FALSE;
            }
        }
    }
    return TRUE;
}

/* Builds the dispatch registry from the dissector plugins and the
 * `dissectors` section (checked by check_dissector_names()). */
static OtsDissectRegistry *
build_registry(const OtsSettings *root, const OtsPluginSet *plugins, GError **error)
{
    if (!check_dissector_names(root, plugins, error))
        return NULL;
    const OtsSettings *sect = ots_settings_get_group(root, "dissectors");
    g_autoptr(OtsDissectRegistry) reg = ots_dissect_registry_new();
    for (guint i = 0; i < plugins->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(plugins->plugins, i);
        if (pl->header->kind != OTS_PLUGIN_KIND_DISSECTOR)
            continue;
        const OtsSettings *g = sect ? ots_settings_get_group(sect, pl->header->name) : NULL;
        gboolean enabled = TRUE, heuristic = TRUE;
        if (g) {
            ots_settings_get_bool(g, "enabled", &enabled);
            ots_settings_get_bool(g, "heuristic", &heuristic);
        }
        g_autoptr(GArray) tcp = g && ots_settings_get_location(g, "tcp_ports") ? port_array(g, "tcp_ports") : NULL;
        g_autoptr(GArray) udp = g && ots_settings_get_location(g, "udp_ports") ? port_array(g, "udp_ports") : NULL;
        g_autoptr(GError) warn = NULL;
        ots_dissect_registry_add(reg, (const OtsDissectorInfo *)pl->header, enabled, heuristic,
                                 tcp, udp, &warn);
        if (warn)
            g_message("%s", warn->message);
    }
    return g_steal_pointer(&reg);
}

static OtsSink *
open_sink(const OtsSettings *root, const OtsPluginSet *plugins, const char *output_path,
          GError **error)
{
    const char *name = "local";
    ots_settings_get_string(root, "output.transport", &name);
    const OtsPlugin *pl = ots_plugin_set_find(plugins, OTS_PLUGIN_KIND_TRANSPORT, name);
    if (!pl) {
        ots_settings_set_error(root, "output.transport", "output.transport", error,
                               OTS_CONFIG_ERROR_VALUE, "no transport plugin named '%s'", name);
        return NULL;
    }
    const OtsTransportInfo *t = (const OtsTransportInfo *)pl->header;
    const OtsSettings *transports = ots_settings_get_group(root, "transports");
    const OtsSettings *group = transports ? ots_settings_get_group(transports, name) : NULL;
    if (group && t->settings) {
        g_autofree char *path = g_strdup_printf("transports.%s", name);
        if (!ots_settings_validate(group, t->settings, path, error))
            return NULL;
    }
    if (output_path) {
        /* -o PATH: the local transport to that path, whatever the config says. */
        GString *quoted = g_string_new(NULL);
        for (const char *q = output_path; *q; q++) {
            if (*q == '"' || *q == '\\')
                g_string_append_c(quoted, '\\');
            g_string_append_c(quoted, *q);
        }
        /* A whole config (sensor.id is required) holding just that group. */
        g_autofree char *text = g_strdup_printf("sensor: { id = \"o\"; };\n"
                                                "transports: { local: { path = \"%s\"; }; };\n",
                                                quoted->str);
        g_string_free(quoted, TRUE);
        g_autoptr(OtsConfig) c = ots_config_load_string(text, "-o", error);
        if (!c)
            return NULL;
        const OtsPlugin *lp = ots_plugin_set_find(plugins, OTS_PLUGIN_KIND_TRANSPORT, "local");
        if (!lp) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no local transport plugin");
            return NULL;
        }
        const OtsSettings *tr = ots_settings_get_group(ots_config_get_root(c), "transports");
        return ots_sink_new((const OtsTransportInfo *)lp->header,
                            ots_settings_get_group(tr, "local"), error);
    }
    return ots_sink_new(t, group, error);
}

static OtsSpoolFsync
fsync_policy(const char *name)
{
    if (g_strcmp0(name, "always") == 0)
        return OTS_SPOOL_FSYNC_ALWAYS;
    if (g_strcmp0(name, "interval") == 0)
        return OTS_SPOOL_FSYNC_INTERVAL;
    return OTS_SPOOL_FSYNC_BATCH;
}

/* A network transport: spool + TLS/HTTP uplink over the transport's stream. */
static gboolean
open_uplink(Daemon *d, const OtsSettings *root, const OtsTransportInfo *t, GError **error)
{
    const OtsSettings *transports = ots_settings_get_group(root, "transports");
    const OtsSettings *group = transports ? ots_settings_get_group(transports, t->name) : NULL;
    if (group && t->settings) {
        g_autofree char *path = g_strdup_printf("transports.%s", t->name);
        if (!ots_settings_validate(group, t->settings, path, error))
            return FALSE;
    }
    OtsUplinkConfig ucfg;
    ots_uplink_config_init(&ucfg);
    if (!ots_uplink_config_from_settings(root, &ucfg, error)) {
        ots_uplink_config_clear(&ucfg);
        return FALSE;
    }
    const char *path = "/var/lib/otsensor/spool", *fs = "batch", *drop = "oldest";
    gint64 max_mb = 1024, seg_mb = 16, interval = 1000;
    ots_settings_get_string(root, "spool.path", &path);
    ots_settings_get_int(root, "spool.max_size_mb", &max_mb);
    ots_settings_get_int(root, "spool.segment_size_mb", &seg_mb);
    ots_settings_get_string(root, "spool.fsync", &fs);
    ots_settings_get_int(root, "spool.fsync_interval_ms", &interval);
    ots_settings_get_string(root, "spool.drop", &drop);
    OtsSpoolConfig sc = {
        .path = path,
        .max_bytes = (guint64)max_mb << 20,
        .segment_bytes = (guint64)seg_mb << 20,
        .fsync = fsync_policy(fs),
        .fsync_interval_ms = (guint)interval,
        .drop = g_strcmp0(drop, "newest") == 0 ? OTS_SPOOL_DROP_NEWEST : OTS_SPOOL_DROP_OLDEST,
    };
    d->spool = ots_spool_open(&sc, error);
    if (!d->spool) {
        ots_uplink_config_clear(&ucfg);
        return FALSE;
    }
    d->transport_instance = t->create(group, error);
    if (!d->transport_instance) {
        ots_uplink_config_clear(&ucfg);
        return FALSE;
    }
    d->transport = t;
    const char *sensor_id = "otsensor";
    ots_settings_get_string(root, "sensor.id", &sensor_id);
    d->uplink = ots_uplink_new(&ucfg, d->spool, t, d->transport_instance, sensor_id, error);
    ots_uplink_config_clear(&ucfg);
    return d->uplink != NULL;
}

static void
print_version(const OtsPluginSet *plugins)
{
    g_print("otsensord %s (SDK ABI %d.%d)\n", OTS_VERSION, OTS_ABI_MAJOR, OTS_ABI_MINOR);
    for (guint i = 0; i < plugins->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(plugins->plugins, i);
        g_print("  %-10s %-12s %-8s ABI %u.%u  %s\n",
                pl->header->kind == OTS_PLUGIN_KIND_DISSECTOR ? "dissector" : "transport",
                pl->header->name, pl->header->version ? pl->header->version : "?",
                pl->header->abi_major, pl->header->abi_minor, pl->path);
    }
    for (guint i = 0; i < plugins->refused->len; i++)
        g_print("  refused    %s\n", (char *)plugins->refused->pdata[i]);
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    /* A file-size limit must give the spool a write error, not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    ots_log_init(OTS_LOG_TARGET_AUTO);
    g_autofree char *config_path = NULL;
    gboolean read_files = FALSE, check_config = FALSE, show_version = FALSE;
    gboolean force_summary = FALSE, no_summary = FALSE;
    gint drain_timeout = 60;
    g_autofree char *output_path = NULL;
    g_autofree char *log_level = NULL;
    g_auto(GStrv) interfaces = NULL;
    g_auto(GStrv) rest = NULL;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "Configuration file", "FILE"},
        {"read", 'r', 0, G_OPTION_ARG_NONE, &read_files,
         "Read the capture files given as arguments, in order, then exit", NULL},
        {"interface", 'i', 0, G_OPTION_ARG_STRING_ARRAY, &interfaces,
         "Capture on this interface (repeatable; replaces capture.interfaces)", "IFACE"},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output_path,
         "Write NDJSON to this file (\"-\": stdout) with the local transport", "PATH"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &check_config,
         "Validate the configuration and the plugins it names, then exit", NULL},
        {"summary", 0, 0, G_OPTION_ARG_NONE, &force_summary,
         "Print progress and a summary on stderr even when it is not a terminal", NULL},
        {"no-summary", 0, 0, G_OPTION_ARG_NONE, &no_summary, "No progress or summary", NULL},
        {"drain-timeout", 0, 0, G_OPTION_ARG_INT, &drain_timeout,
         "With -r: seconds to wait at the end for the cloud to acknowledge everything "
         "(default 60; what is left stays spooled, exit 75)",
         "SEC"},
        {"log-level", 'l', 0, G_OPTION_ARG_STRING, &log_level,
         "error, critical, warning, message, info or debug (overrides logging.level)", "LEVEL"},
        {"version", 'V', 0, G_OPTION_ARG_NONE, &show_version,
         "Version, SDK ABI and the plugins found", NULL},
        {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, "FILE…"},
        {NULL},
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("[-r FILE…]");
    g_option_context_set_summary(octx, "Passive OT/ICS network security sensor.");
    g_option_context_add_main_entries(octx, entries, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        g_printerr("otsensord: %s\n", err->message);
        return EX_USAGE;
    }
    if (rest && !read_files) {
        g_printerr("otsensord: capture files need -r (otsensord -r FILE…)\n");
        return EX_USAGE;
    }

    g_autoptr(OtsConfig) config = NULL;
    if (config_path)
        config = ots_config_load_file(config_path, &err);
    else
        config = ots_config_load_defaults();
    if (!config)
        return config_error(err);
    const OtsSettings *root = ots_config_get_root(config);

    if (!ots_log_configure(root, log_level, &err)) {
        g_printerr("otsensord: %s\n", err->message);
        return EX_USAGE;
    }

    g_autoptr(OtsPluginSet) plugins = load_plugins(root);
    if (show_version) {
        print_version(plugins);
        return 0;
    }
    g_autoptr(OtsDissectRegistry) registry = build_registry(root, plugins, &err);
    if (!registry)
        return config_error(err);

    if (check_config) {
        /* The transport's own settings too, without connecting. */
        const char *tname = "local";
        ots_settings_get_string(root, "output.transport", &tname);
        const OtsPlugin *tp = ots_plugin_set_find(plugins, OTS_PLUGIN_KIND_TRANSPORT, tname);
        if (!tp) {
            ots_settings_set_error(root, "output.transport", "output.transport", &err,
                                   OTS_CONFIG_ERROR_VALUE, "no transport plugin named '%s'",
                                   tname);
            return config_error(err);
        }
        const OtsSettings *tr = ots_settings_get_group(root, "transports");
        const OtsSettings *tg = tr ? ots_settings_get_group(tr, tname) : NULL;
        const OtsTransportInfo *ti = (const OtsTransportInfo *)tp->header;
        g_autofree char *tpath = g_strdup_printf("transports.%s", tname);
        if (tg && ti->settings && !ots_settings_validate(tg, ti->settings, tpath, &err))
            return config_error(err);
        g_print("%s: configuration OK (%u dissectors, transport %s)\n",
                ots_config_get_name(config), ots_dissect_registry_size(registry), tname);
        return 0;
    }

    /* Capture sources: -r files, else capture.files, else interfaces. */
    g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
    if (read_files) {
        for (guint i = 0; rest && rest[i]; i++)
            g_ptr_array_add(files, g_strdup(rest[i]));
        if (files->len == 0) {
            g_printerr("otsensord: -r needs at least one capture file\n");
            return EX_USAGE;
        }
    } else if (!interfaces) {
        for (guint i = 0; i < ots_settings_get_length(root, "capture.files"); i++)
            g_ptr_array_add(files, g_strdup(ots_settings_get_string_element(root, "capture.files", i)));
    }
    for (guint i = 0; i < files->len; i++) {
        pcap_t *p = ots_capture_open_file(files->pdata[i], &err);
        if (!p) {
            g_printerr("otsensord: %s\n", err->message);
            return EX_NOINPUT;
        }
        pcap_close(p);
    }

    Daemon d = {0};
    d.config = g_steal_pointer(&config);
    d.start_config = d.config;
    d.config_path = config_path;
    d.log_override = log_level;
    d.plugins = plugins;
    d.started = g_get_monotonic_time();
    d.loop = g_main_loop_new(NULL, FALSE);
    const char *sensor_id = "otsensor";
    ots_settings_get_string(root, "sensor.id", &sensor_id);
    OtsBuf idbuf = {0};
    ots_json_string(&idbuf, sensor_id, strlen(sensor_id), FALSE);
    d.sensor_id_json = g_strndup((const char *)idbuf.data, idbuf.len);
    ots_buf_clear(&idbuf);
    ots_event_writer_init(&d.sensor_writer, 1, sensor_batch, &d);

    d.drain_timeout_ms = (guint)CLAMP(drain_timeout, 0, 86400) * 1000;
    const char *tname = "local";
    ots_settings_get_string(root, "output.transport", &tname);
    /* `otsensorctl transport set NAME --persist` wins over the file. */
    g_autofree char *override = output_path ? NULL : read_override(root);
    if (override && ots_plugin_set_find(plugins, OTS_PLUGIN_KIND_TRANSPORT, override)) {
        g_message("transport %s (persisted by otsensorctl in %s; `otsensorctl transport set "
                  "--clear` returns to output.transport = \"%s\")",
                  override, TRANSPORT_OVERRIDE_FILE, tname);
        tname = override;
    } else if (override) {
        g_message("ignoring the persisted transport '%s': no such transport plugin", override);
    }
    const OtsPlugin *tp = ots_plugin_set_find(plugins, OTS_PLUGIN_KIND_TRANSPORT, tname);
    if (!output_path && tp && !(((const OtsTransportInfo *)tp->header)->flags &
                                OTS_TRANSPORT_FLAG_RAW)) {
        if (!open_uplink(&d, root, (const OtsTransportInfo *)tp->header, &err)) {
            int code = err->domain == OTS_CONFIG_ERROR || err->domain == OTS_UPLINK_ERROR
                           ? OTS_EXIT_CONFIG
                           : EX_CANTCREAT;
            g_printerr("otsensord: %s\n", err->message);
            return code;
        }
        ots_uplink_start(d.uplink);
    } else {
        d.sink = open_sink(root, plugins, output_path, &err);
        if (!d.sink) {
            int code = err->domain == OTS_CONFIG_ERROR ? OTS_EXIT_CONFIG : EX_CANTCREAT;
            g_printerr("otsensord: %s\n", err->message);
            return code;
        }
    }

    OtsPipelineConfig pc = {
        .max_flows = (guint)get_int(root, "flows.max_flows"),
        .tcp_idle_timeout = get_int(root, "flows.tcp_idle_timeout") * G_USEC_PER_SEC,
        .udp_idle_timeout = get_int(root, "flows.udp_idle_timeout") * G_USEC_PER_SEC,
        .max_ooo_bytes = (guint32)get_int(root, "flows.max_ooo_bytes"),
        .max_pdu_bytes = (gsize)get_int(root, "flows.max_pdu_bytes"),
        .flow_events = TRUE,
        .queue_batches = (guint)get_int(root, "capture.event_queue_batches"),
        .workers = (guint)get_int(root, "capture.workers"),
        .memcap = (gsize)get_int(root, "flows.memcap_mb") * 1024 * 1024,
    };
    ots_settings_get_bool(root, "flows.flow_events", &pc.flow_events);
    d.pipeline = ots_pipeline_new(&pc, registry, on_batch, on_done, &d);

    if (files->len) {
        g_ptr_array_add(files, NULL);
        ots_pipeline_add_files(d.pipeline, (const char *const *)files->pdata);
    } else {
        guint n = interfaces ? g_strv_length(interfaces)
                             : ots_settings_get_length(root, "capture.interfaces");
        if (n == 0) {
            g_printerr("otsensord: nothing to capture: give -r FILE…, -i IFACE, or "
                       "capture.interfaces / capture.files in the config\n");
            return EX_USAGE;
        }
        for (guint i = 0; i < n; i++) {
            OtsLiveOptions lo = {.snaplen = 65535, .promiscuous = TRUE, .buffer_size_mb = 32,
                                 .timeout_ms = 100};
            if (interfaces) {
                lo.interface = interfaces[i];
            } else {
                const OtsSettings *g = ots_settings_get_element(root, "capture.interfaces", i);
                gint64 v;
                ots_settings_get_string(g, "name", &lo.interface);
                ots_settings_get_string(g, "filter", &lo.filter);
                if (ots_settings_get_int(g, "snaplen", &v))
                    lo.snaplen = (int)v;
                if (ots_settings_get_int(g, "buffer_size_mb", &v))
                    lo.buffer_size_mb = (int)v;
                ots_settings_get_bool(g, "promiscuous", &lo.promiscuous);
            }
            pcap_t *p = ots_capture_open_live(&lo, &err);
            if (!p) {
                g_printerr("otsensord: %s\n", err->message);
                return EX_NOINPUT;
            }
            ots_pipeline_add_live(d.pipeline, lo.interface, p);
        }
    }

    gboolean tty = isatty(STDERR_FILENO);
    if ((tty || force_summary) && !no_summary)
        d.summary = ots_summary_new(tty);

    g_unix_signal_add(SIGINT, on_signal, &d);
    g_unix_signal_add(SIGTERM, on_signal, &d);
    g_unix_signal_add(SIGHUP, on_reload, &d);

    /* Captures and outputs are open: root is no longer needed. Offline
     * reads open their files later, so only live capture drops here. */
    if (!files->len && ots_privdrop_needed()) {
        const char *user = "otsensor";
        ots_settings_get_string(root, "sensor.user", &user);
        if (d.spool) {
            const char *sp = NULL;
            ots_settings_get_string(root, "spool.path", &sp);
            chown_spool(sp, user);
        }
        if (!ots_privdrop_to_user(user, &err)) {
            g_printerr("otsensord: %s\n", err->message);
            return g_error_matches(err, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_NO_USER)
                       ? OTS_EXIT_CONFIG
                       : EX_OSERR;
        }
    }
    heartbeat_set(&d, get_int(root, "output.heartbeat_interval"));
    g_timeout_add(500, on_progress, &d);

    ots_pipeline_start(d.pipeline);
    control_start(&d, files->len > 0);
    ots_notify("READY=1");
    guint watchdog = ots_notify_watchdog_add();
    if (!d.done)
        g_main_loop_run(d.loop);
    if (watchdog)
        g_source_remove(watchdog);

    flush_out(&d);
    g_autoptr(GError) ferr = NULL;
    if (d.sink && !ots_sink_flush(d.sink, &ferr) && d.exit_code == 0) {
        g_printerr("otsensord: output failed: %s\n", ferr->message);
        d.exit_code = EX_IOERR;
    }
    if (d.summary) {
        ots_summary_finish(d.summary, d.pipeline, d.events);
        ots_summary_free(d.summary);
    }
    ots_control_server_free(d.control);
    if (d.switching) {
        /* Exiting mid-switch: the old uplink below rewinds; the trial is
         * left to the process exit. */
        d.switching->abandoned = TRUE;
        d.switching->reply = NULL;
    }
    ots_pipeline_free(d.pipeline);
    ots_sink_free(d.sink);
    if (d.uplink) {
        ots_uplink_free(d.uplink);
        d.transport->destroy(d.transport_instance);
    }
    if (d.spool)
        ots_spool_close(d.spool);
    g_clear_object(&d.drain_cancel);
    ots_event_writer_clear(&d.sensor_writer);
    ots_buf_clear(&d.out);
    g_free(d.sensor_id_json);
    g_main_loop_unref(d.loop);
    if (d.config != d.start_config)
        ots_config_free(d.config);
    ots_config_free(d.start_config);
    return d.exit_code;
}
