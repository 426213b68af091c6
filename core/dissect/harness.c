/* SPDX-License-Identifier: Apache-2.0 */
#include "core/dissect/harness.h"
#include "core/dissect/dissect.h"

#include <json-glib/json-glib.h>
#include <string.h>

struct _OtsHarness {
    const OtsDissectorInfo *info;
    OtsDissectRegistry *registry;
    OtsEventWriter writer;
    OtsDissectContext ctx;
    OtsFlow flow;
    OtsSession *session;
    gboolean ended;
    GPtrArray *lines;
    GPtrArray *parsed; /* JsonNode per line (NULL when invalid) */
    guint invalid;
    guint64 seq;
    OtsTimeCache tc;
};

static void
harness_batch_ready(OtsEventBatch *batch, gpointer user)
{
    OtsHarness *h = user;
    gsize off = 0;
    const OtsEventRecord *rec;
    const char *body;
    while (ots_event_batch_next(batch, &off, &rec, &body)) {
        OtsBuf line = {0};
        ots_event_format_line(&line, rec, body, "\"harness\"", ++h->seq, &h->tc);
        gchar *text = g_strndup((const char *)line.data, line.len - 1);
        ots_buf_clear(&line);
        g_autoptr(JsonParser) parser = json_parser_new();
        JsonNode *node = NULL;
        if (json_parser_load_from_data(parser, text, -1, NULL) &&
            JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
            node = json_node_copy(json_parser_get_root(parser));
            JsonObject *o = json_node_get_object(node);
            static const char *const required[] = {"ts", "sensor_id", "seq", "type"};
            for (guint i = 0; i < G_N_ELEMENTS(required); i++)
                if (!json_object_has_member(o, required[i]))
                    h->invalid++;
        } else {
            h->invalid++;
        }
        g_ptr_array_add(h->lines, text);
        g_ptr_array_add(h->parsed, node);
    }
    ots_event_batch_free(batch);
}

static void
node_free0(gpointer p)
{
    if (p)
        json_node_unref(p);
}

OtsHarness *
ots_harness_new(const OtsDissectorInfo *info, OtsL4Proto l4, guint16 server_port)
{
    OtsHarness *h = g_new0(OtsHarness, 1);
    h->info = info;
    h->registry = ots_dissect_registry_new();
    GArray *none = g_array_new(FALSE, FALSE, sizeof(guint16));
    OtsDissectorEntry *e =
        ots_dissect_registry_add(h->registry, info, TRUE, FALSE, none, none, NULL);
    g_array_unref(none);
    ots_event_writer_init(&h->writer, 1, harness_batch_ready, h); /* one event per batch */
    ots_dissect_context_init(&h->ctx, h->registry, &h->writer, 65536, FALSE);
    h->flow.ip[0].family = 4;
    h->flow.ip[0].addr[0] = 127;
    h->flow.ip[0].addr[3] = 1;
    h->flow.ip[1].family = 4;
    h->flow.ip[1].addr[0] = 127;
    h->flow.ip[1].addr[3] = 2;
    h->flow.port[0] = 40000;
    h->flow.port[1] = server_port;
    h->flow.l4_proto = l4;
    h->flow.first_ts = h->flow.last_ts = G_GINT64_CONSTANT(1700000000) * G_USEC_PER_SEC;
    h->lines = g_ptr_array_new_with_free_func(g_free);
    h->parsed = g_ptr_array_new_with_free_func(node_free0);
    h->session = ots_session_new(&h->ctx, &h->flow);
    ots_session_bind(h->session, e);
    return h;
}

OtsFlow *
ots_harness_flow(OtsHarness *h)
{
    return &h->flow;
}

void
ots_harness_set_memcap(OtsHarness *h, gsize bytes)
{
    h->ctx.mem_cap = bytes;
}

OtsSession *
ots_harness_session(OtsHarness *h)
{
    return h->session;
}

gsize
ots_harness_mem_used(OtsHarness *h)
{
    return h->ctx.stats.mem_used;
}

guint64
ots_harness_memcap_refused(OtsHarness *h)
{
    return h->ctx.stats.memcap_refused;
}

void
ots_harness_free(OtsHarness *h)
{
    if (!h)
        return;
    ots_harness_end(h);
    ots_session_free(h->session);
    ots_event_writer_flush(&h->writer);
    ots_event_writer_clear(&h->writer);
    ots_dissect_registry_free(h->registry);
    g_ptr_array_unref(h->lines);
    g_ptr_array_unref(h->parsed);
    g_free(h);
}

void
ots_harness_set_time(OtsHarness *h, gint64 ts)
{
    h->flow.last_ts = ts;
    ots_session_set_time(h->session, ts);
}

OtsParseResult
ots_harness_feed(OtsHarness *h, OtsDirection dir, const guint8 *data, gsize len)
{
    g_return_val_if_fail(!h->ended, OTS_PARSE_UNSUPPORTED);
    /* Copy so the dissector cannot rely on bytes past a call (ASan sees it). */
    g_autofree guint8 *copy = g_memdup2(data, len);
    h->flow.packets[dir]++;
    h->flow.bytes[dir] += len;
    OtsParseResult res = h->flow.l4_proto == OTS_L4_TCP
                             ? ots_session_stream_data(h->session, dir, copy, len)
                             : ots_session_datagram(h->session, dir, copy, len);
    /* As the pipeline does after each packet. */
    ots_session_maybe_tick(h->session, ots_session_get_time(h->session));
    return res;
}

void
ots_harness_gap(OtsHarness *h, OtsDirection dir, guint32 len)
{
    ots_session_stream_gap(h->session, dir, len);
}

void
ots_harness_tick(OtsHarness *h, gint64 now)
{
    ots_harness_set_time(h, now);
    ots_session_maybe_tick(h->session, now);
}

void
ots_harness_end(OtsHarness *h)
{
    if (h->ended)
        return;
    h->ended = TRUE;
    ots_session_finish(h->session);
    ots_event_writer_flush(&h->writer);
}

guint
ots_harness_n_events(OtsHarness *h)
{
    ots_event_writer_flush(&h->writer);
    return h->lines->len;
}

const char *
ots_harness_event(OtsHarness *h, guint i)
{
    ots_event_writer_flush(&h->writer);
    return i < h->lines->len ? g_ptr_array_index(h->lines, i) : NULL;
}

static const char *
event_type(OtsHarness *h, guint i)
{
    JsonNode *n = g_ptr_array_index(h->parsed, i);
    if (!n)
        return NULL;
    return json_object_get_string_member_with_default(json_node_get_object(n), "type", NULL);
}

guint
ots_harness_count(OtsHarness *h, const char *type)
{
    guint c = 0;
    ots_event_writer_flush(&h->writer);
    for (guint i = 0; i < h->parsed->len; i++)
        if (g_strcmp0(event_type(h, i), type) == 0)
            c++;
    return c;
}

gint
ots_harness_find(OtsHarness *h, const char *type, guint nth)
{
    ots_event_writer_flush(&h->writer);
    for (guint i = 0; i < h->parsed->len; i++)
        if (g_strcmp0(event_type(h, i), type) == 0 && nth-- == 0)
            return (gint)i;
    return -1;
}

gchar *
ots_harness_field(OtsHarness *h, guint i, const char *path)
{
    ots_event_writer_flush(&h->writer);
    if (i >= h->parsed->len || !g_ptr_array_index(h->parsed, i))
        return NULL;
    JsonNode *node = g_ptr_array_index(h->parsed, i);
    g_auto(GStrv) parts = g_strsplit(path, ".", -1);
    for (guint k = 0; parts[k]; k++) {
        if (JSON_NODE_HOLDS_OBJECT(node)) {
            JsonObject *o = json_node_get_object(node);
            if (!json_object_has_member(o, parts[k]))
                return NULL;
            node = json_object_get_member(o, parts[k]);
        } else if (JSON_NODE_HOLDS_ARRAY(node)) {
            JsonArray *a = json_node_get_array(node);
            char *end;
            guint64 idx = g_ascii_strtoull(parts[k], &end, 10);
            if (*end || end == parts[k] || idx >= json_array_get_length(a))
                return NULL;
            node = json_array_get_element(a, (guint)idx);
        } else {
            return NULL;
        }
    }
    return json_to_string(node, FALSE);
}

gboolean
ots_harness_field_is(OtsHarness *h, guint i, const char *path, const char *json)
{
    g_autofree gchar *v = ots_harness_field(h, i, path);
    if (g_strcmp0(v, json) != 0) {
        g_printerr("harness: event %u field %s is %s, expected %s\n  event: %s\n", i, path,
                   v ? v : "(absent)", json, i < h->lines->len ? (char *)h->lines->pdata[i] : "");
        return FALSE;
    }
    return TRUE;
}

guint
ots_harness_invalid_events(OtsHarness *h)
{
    ots_event_writer_flush(&h->writer);
    return h->invalid;
}
