/* SPDX-License-Identifier: Apache-2.0 */
#include "core/output/sink.h"

struct _OtsSink {
    const OtsTransportInfo *info;
    gpointer instance;
    GIOStream *stream;
    GOutputStream *out;
};

typedef struct {
    gboolean done;
    GAsyncResult *result;
} ConnectWait;

static void
connect_done(GObject *source, GAsyncResult *res, gpointer user)
{
    ConnectWait *w = user;
    w->result = g_object_ref(res);
    w->done = TRUE;
}

static void
hop_report(const OtsHopReport *r, gpointer user)
{
    g_debug("transport hop %u (%s): step %d after %" G_GINT64_FORMAT " us%s%s", r->hop,
            r->hop_name ? r->hop_name : "-", r->step, r->elapsed_us, r->detail ? ": " : "",
            r->detail ? r->detail : "");
}

OtsSink *
ots_sink_new(const OtsTransportInfo *transport, const OtsSettings *settings, GError **error)
{
    if (!(transport->flags & OTS_TRANSPORT_FLAG_RAW)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "transport %s needs the TLS uplink, which this build does not include yet; "
                    "use the local transport",
                    transport->name);
        return NULL;
    }
    gpointer inst = transport->create(settings, error);
    if (!inst)
        return NULL;
    OtsEndpoint ep = {.host = "localhost", .port = 0};
    ConnectWait w = {0};
    transport->connect_async(inst, &ep, NULL, hop_report, NULL, connect_done, &w);
    /* Runs before the main loop: spin the default context until it answers. */
    while (!w.done)
        g_main_context_iteration(NULL, TRUE);
    GIOStream *stream = transport->connect_finish(inst, w.result, error);
    g_object_unref(w.result);
    if (!stream) {
        transport->destroy(inst);
        return NULL;
    }
    OtsSink *s = g_new0(OtsSink, 1);
    s->info = transport;
    s->instance = inst;
    s->stream = stream;
    s->out = g_io_stream_get_output_stream(stream);
    return s;
}

gboolean
ots_sink_write(OtsSink *s, const guint8 *data, gsize len, GError **error)
{
    return g_output_stream_write_all(s->out, data, len, NULL, NULL, error);
}

gboolean
ots_sink_writev(OtsSink *s, GOutputVector *v, gsize n, GError **error)
{
    return g_output_stream_writev_all(s->out, v, n, NULL, NULL, error);
}

gboolean
ots_sink_flush(OtsSink *s, GError **error)
{
    return g_output_stream_flush(s->out, NULL, error);
}

const char *
ots_sink_get_transport_name(OtsSink *s)
{
    return s->info->name;
}

void
ots_sink_free(OtsSink *s)
{
    if (!s)
        return;
    g_io_stream_close(s->stream, NULL, NULL);
    g_object_unref(s->stream);
    s->info->destroy(s->instance);
    g_free(s);
}
