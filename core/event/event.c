/* SPDX-License-Identifier: Apache-2.0 */
/* The out-of-line writers the SDK's inline ones fall back to are defined
 * here: no macro may stand in for them. */
#define OTS_EVENT_NO_INLINE 1
#include "core/event/event-writer.h"
#include "core/event/json-inline.h"

static const char *const event_type_names[OTS_EVENT_N_TYPES] = {
    [OTS_EVENT_TRANSACTION] = "transaction", [OTS_EVENT_ASSET] = "asset",
    [OTS_EVENT_ALERT] = "alert",             [OTS_EVENT_FLOW] = "flow",
    [OTS_EVENT_SENSOR] = "sensor",
};

static const char *const op_class_names[OTS_OP_N_CLASSES] = {
    [OTS_OP_OTHER] = "other",
    [OTS_OP_READ] = "read",
    [OTS_OP_WRITE] = "write",
    [OTS_OP_CONTROL] = "control",
    [OTS_OP_PROGRAM_UPLOAD] = "program_upload",
    [OTS_OP_PROGRAM_DOWNLOAD] = "program_download",
    [OTS_OP_RUN_STATE] = "run_state",
    [OTS_OP_FIRMWARE] = "firmware",
    [OTS_OP_RESTART] = "restart",
    [OTS_OP_TIME_SET] = "time_set",
    [OTS_OP_DIAGNOSTICS] = "diagnostics",
    [OTS_OP_DISCOVERY] = "discovery",
    [OTS_OP_FILE_TRANSFER] = "file_transfer",
    [OTS_OP_COMM_CONTROL] = "communication_control",
    [OTS_OP_INTERROGATION] = "interrogation",
    [OTS_OP_SESSION] = "session",
    [OTS_OP_MONITOR] = "monitor",
    [OTS_OP_CONFIG] = "config",
};

static const char *const tx_status_names[OTS_TX_N_STATUS] = {
    [OTS_TX_OK] = "ok",
    [OTS_TX_EXCEPTION] = "exception",
    [OTS_TX_UNANSWERED] = "unanswered",
    [OTS_TX_NO_REQUEST] = "no_request",
    [OTS_TX_UNSOLICITED] = "unsolicited",
    [OTS_TX_NO_RESPONSE] = "no_response",
};

/* `"type":"..."`, the first member of every event body, ready to copy. */
#define TYPE_MEMBER(name) "\"type\":\"" name "\"", sizeof("\"type\":\"" name "\"") - 1
static const struct {
    const char *json;
    gsize len;
} type_members[OTS_EVENT_N_TYPES] = {
    [OTS_EVENT_TRANSACTION] = {TYPE_MEMBER("transaction")},
    [OTS_EVENT_ASSET] = {TYPE_MEMBER("asset")},
    [OTS_EVENT_ALERT] = {TYPE_MEMBER("alert")},
    [OTS_EVENT_FLOW] = {TYPE_MEMBER("flow")},
    [OTS_EVENT_SENSOR] = {TYPE_MEMBER("sensor")},
};

const char *
ots_event_type_to_string(OtsEventType t)
{
    return (guint)t < OTS_EVENT_N_TYPES ? event_type_names[t] : "unknown";
}

/**
 * ots_op_class_to_string:
 * @c: an operation class
 *
 * Returns: (transfer none): the class's name as serialised in `op_class`.
 */
const char *
ots_op_class_to_string(OtsOpClass c)
{
    return (guint)c < OTS_OP_N_CLASSES ? op_class_names[c] : "other";
}

/**
 * ots_tx_status_to_string:
 * @s: a transaction status
 *
 * Returns: (transfer none): the status's name as serialised in `status`.
 */
const char *
ots_tx_status_to_string(OtsTxStatus s)
{
    return (guint)s < OTS_TX_N_STATUS ? tx_status_names[s] : "ok";
}

OtsEventBatch *
ots_event_batch_new(gsize cap)
{
    OtsEventBatch *b = g_new0(OtsEventBatch, 1);
    ots_buf_init(&b->buf, cap);
    ots_buf_init(&b->index, 64 * sizeof(OtsEventIndex));
    b->created = g_get_monotonic_time();
    return b;
}

void
ots_event_batch_free(OtsEventBatch *b)
{
    if (!b)
        return;
    ots_buf_clear(&b->buf);
    ots_buf_clear(&b->index);
    g_free(b);
}

void
ots_event_batch_reset(OtsEventBatch *b)
{
    b->buf.len = 0;
    b->index.len = 0;
    b->n_events = 0;
    b->created = g_get_monotonic_time();
}

#define RECORD_ALIGN(n) (((n) + 7) & ~(gsize)7)

/* The SDK's inline writers see the batch's OtsBuf as an OtsEventBuf_. */
G_STATIC_ASSERT(sizeof(OtsBuf) == sizeof(OtsEventBuf_));
G_STATIC_ASSERT(G_STRUCT_OFFSET(OtsBuf, data) == G_STRUCT_OFFSET(OtsEventBuf_, data));
G_STATIC_ASSERT(G_STRUCT_OFFSET(OtsBuf, len) == G_STRUCT_OFFSET(OtsEventBuf_, len));
G_STATIC_ASSERT(G_STRUCT_OFFSET(OtsBuf, cap) == G_STRUCT_OFFSET(OtsEventBuf_, cap));
G_STATIC_ASSERT(G_STRUCT_OFFSET(struct _OtsEvent, head) == 0);

#define EV_OPEN(e) (((e)->head.state & OTS_EVENT_OPEN_) != 0)

static inline OtsBuf *
ev_buf(OtsEvent *e)
{
    return (OtsBuf *)(void *)e->head.buf;
}

gboolean
ots_event_batch_next(const OtsEventBatch *b, gsize *offset, const OtsEventRecord **rec,
                     const char **body)
{
    if (*offset + sizeof(OtsEventIndex) > b->index.len)
        return FALSE;
    const OtsEventIndex *x = (const OtsEventIndex *)(const void *)(b->index.data + *offset);
    *rec = &x->rec;
    *body = (const char *)b->buf.data + x->body;
    *offset += sizeof(OtsEventIndex);
    return TRUE;
}

void
ots_event_writer_init(OtsEventWriter *w, gsize batch_limit, OtsBatchReadyFunc ready, gpointer user)
{
    memset(w, 0, sizeof(*w));
    w->batch_limit = batch_limit;
    w->ready = ready;
    w->ready_user = user;
    w->ev.writer = w;
    w->anomaly_counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}

void
ots_event_writer_set_alloc(OtsEventWriter *w, OtsBatchAllocFunc alloc, gpointer user)
{
    w->alloc = alloc;
    w->alloc_user = user;
}

void
ots_event_writer_clear(OtsEventWriter *w)
{
    ots_event_batch_free(w->batch);
    w->batch = NULL;
    g_clear_pointer(&w->anomaly_counts, g_hash_table_unref);
}

void
ots_event_writer_flush(OtsEventWriter *w)
{
    if (EV_OPEN(&w->ev)) {
        /* Never hand over half an event. */
        w->batch->buf.len = w->ev.record_start;
        w->ev.head.state = 0;
    }
    if (w->batch && w->batch->n_events > 0) {
        OtsEventBatch *b = g_steal_pointer(&w->batch);
        w->ready(b, w->ready_user);
    }
}

OtsEvent *
ots_event_writer_begin(OtsEventWriter *w, OtsEventType type, gint64 ts)
{
    OtsEvent *e = &w->ev;
    if (!w->batch)
        w->batch = w->alloc ? w->alloc(w->batch_limit + 4096, w->alloc_user)
                            : ots_event_batch_new(w->batch_limit + 4096);
    OtsBuf *b = &w->batch->buf;
    if (EV_OPEN(e))
        b->len = e->record_start; /* discard the unfinished one */
    e->record_start = b->len;
    OtsEventRecord rec = {.ts = ts, .len = 0, .type = type};
    ots_buf_append(b, &rec, sizeof(rec));
    ots_buf_append(b, type_members[type].json, type_members[type].len);
    e->head.buf = (OtsEventBuf_ *)(void *)b;
    e->head.state = OTS_EVENT_OPEN_ | OTS_EVENT_COMMA_; /* "type" is written */
    e->head.depth = 0;
    e->head.arrays = 0;
    return e;
}

/* Writes the separator and key for the next member; returns the buffer.
 * Inlined into each ots_event_add_*(): it is most of their work. */
G_ALWAYS_INLINE static inline OtsBuf *
member(OtsEvent *e, const char *key)
{
    OtsBuf *b = ev_buf(e);
    if (e->head.state & OTS_EVENT_COMMA_)
        ots_buf_putc(b, ',');
    e->head.state |= OTS_EVENT_COMMA_;
    if (key && !(e->head.state & OTS_EVENT_ARRAY_))
        ots_json_cstring_inline(b, key, ':');
    return b;
}

OtsBuf *
ots_event_key(OtsEvent *e, const char *key)
{
    return member(e, key);
}

void
ots_event_add_raw(OtsEvent *e, const char *json, gsize len)
{
    g_return_if_fail(e && EV_OPEN(e));
    OtsBuf *b = ev_buf(e);
    if (e->head.state & OTS_EVENT_COMMA_)
        ots_buf_putc(b, ',');
    e->head.state |= OTS_EVENT_COMMA_;
    ots_buf_append(b, json, len);
}

/**
 * ots_event_add_uint:
 * @e: an open event
 * @key: (nullable): member name; NULL inside an array
 * @value: the value
 */
void
ots_event_add_uint(OtsEvent *e, const char *key, guint64 value)
{
    g_return_if_fail(e && EV_OPEN(e));
    ots_json_u64_inline(member(e, key), value);
}

void
ots_event_add_int(OtsEvent *e, const char *key, gint64 value)
{
    g_return_if_fail(e && EV_OPEN(e));
    ots_json_i64(member(e, key), value);
}

void
ots_event_add_bool(OtsEvent *e, const char *key, gboolean value)
{
    g_return_if_fail(e && EV_OPEN(e));
    OtsBuf *b = member(e, key);
    if (value)
        ots_buf_append_lit(b, "true");
    else
        ots_buf_append_lit(b, "false");
}

void
ots_event_add_double(OtsEvent *e, const char *key, double value)
{
    g_return_if_fail(e && EV_OPEN(e));
    ots_json_double(member(e, key), value);
}

void
ots_event_add_string(OtsEvent *e, const char *key, const char *value)
{
    g_return_if_fail(e && EV_OPEN(e));
    if (!value) {
        ots_buf_append_lit(member(e, key), "null");
        return;
    }
    ots_json_cstring_inline(member(e, key), value, 0);
}

void
ots_event_put_string_(OtsEvent *e, const char *value)
{
    g_return_if_fail(e && EV_OPEN(e));
    if (!value)
        ots_buf_append_lit(ev_buf(e), "null");
    else
        ots_json_cstring_inline(ev_buf(e), value, 0);
}

void
ots_event_add_string_len(OtsEvent *e, const char *key, const guint8 *value, gsize len)
{
    g_return_if_fail(e && EV_OPEN(e));
    g_return_if_fail(value || len == 0);
    ots_json_string(member(e, key), (const char *)value, len, TRUE);
}

/* ---- memos (ABI 1.4) ---- */

gboolean
ots_event_memo_put(OtsEvent *e, const OtsEventMemo *m, const void *key, gsize key_len)
{
    g_return_val_if_fail(e && m && (key || key_len == 0), FALSE);
    if (!EV_OPEN(e) || (e->head.state & OTS_EVENT_ARRAY_) || m->json_len == 0 ||
        m->key_len != key_len || memcmp(m->key, key, key_len) != 0)
        return FALSE;
    OtsBuf *b = ev_buf(e);
    ots_buf_reserve(b, (gsize)m->json_len + 1);
    guint8 *o = b->data + b->len;
    *o = ',';
    o += (e->head.state & OTS_EVENT_COMMA_) >> 1;
    memcpy(o, m->json, m->json_len);
    b->len = (gsize)(o + m->json_len - b->data);
    e->head.state |= OTS_EVENT_COMMA_;
    return TRUE;
}

void
ots_event_memo_begin(OtsEvent *e, OtsEventMemo *m, const void *key, gsize key_len)
{
    g_return_if_fail(e && m && (key || key_len == 0));
    m->json_len = 0; /* kept again only by a good end */
    m->key_len = 0;
    if (!EV_OPEN(e) || (e->head.state & OTS_EVENT_ARRAY_) || key_len == 0 ||
        key_len > sizeof(m->key)) {
        m->record_ = G_MAXSIZE; /* end keeps nothing */
        return;
    }
    memcpy(m->key, key, key_len);
    m->key_len = (guint32)key_len;
    m->start_ = ev_buf(e)->len;
    m->record_ = e->record_start;
    m->state_ = e->head.state;
    m->depth_ = e->head.depth;
    m->arrays_ = e->head.arrays;
}

void
ots_event_memo_end(OtsEvent *e, OtsEventMemo *m)
{
    g_return_if_fail(e && m);
    OtsBuf *b = ev_buf(e);
    /* Kept only if this is the event begin saw, at the same level, and the
     * run is whole members: nothing written, or the state grew a comma. */
    if (m->record_ != e->record_start || !EV_OPEN(e) || e->head.depth != m->depth_ ||
        e->head.arrays != m->arrays_ || (e->head.state & OTS_EVENT_ARRAY_) ||
        b->len < m->start_ || !(e->head.state & OTS_EVENT_COMMA_))
        return;
    gsize start = m->start_ + ((m->state_ & OTS_EVENT_COMMA_) ? 1 : 0);
    if (b->len <= start || b->len - start > sizeof(m->json))
        return;
    memcpy(m->json, b->data + start, b->len - start);
    m->json_len = (guint32)(b->len - start);
}

void
ots_event_add_hex(OtsEvent *e, const char *key, const guint8 *value, gsize len)
{
    g_return_if_fail(e && EV_OPEN(e));
    g_return_if_fail(value || len == 0);
    ots_json_hex(member(e, key), value, len);
}

void
ots_event_add_null(OtsEvent *e, const char *key)
{
    g_return_if_fail(e && EV_OPEN(e));
    ots_buf_append_lit(member(e, key), "null");
}

static void
open_container(OtsEvent *e, const char *key, char c, gboolean array)
{
    g_return_if_fail(e && EV_OPEN(e));
    if (G_UNLIKELY(e->head.depth >= OTS_EVENT_MAX_DEPTH)) {
        /* A plugin bug. Keep the JSON valid by refusing to nest; the
         * members land in the current container. */
        g_critical("event nesting deeper than %d", OTS_EVENT_MAX_DEPTH);
        return;
    }
    ots_buf_putc(member(e, key), c);
    e->head.depth++;
    e->head.arrays = (e->head.arrays << 1) | (array ? 1u : 0u);
    e->head.state = OTS_EVENT_OPEN_ | (array ? OTS_EVENT_ARRAY_ : 0);
}

static void
close_container(OtsEvent *e, char c, gboolean array)
{
    g_return_if_fail(e && EV_OPEN(e));
    if (e->head.depth == 0 || (e->head.arrays & 1u) != (array ? 1u : 0u)) {
        g_critical("unbalanced event %s close", array ? "array" : "object");
        return;
    }
    ots_buf_putc(ev_buf(e), c);
    e->head.depth--;
    e->head.arrays >>= 1;
    /* The parent now has a member: the container just closed. */
    e->head.state =
        OTS_EVENT_OPEN_ | OTS_EVENT_COMMA_ | ((e->head.arrays & 1u) ? OTS_EVENT_ARRAY_ : 0);
}

void
ots_event_begin_object(OtsEvent *e, const char *key)
{
    open_container(e, key, '{', FALSE);
}

void
ots_event_end_object(OtsEvent *e)
{
    close_container(e, '}', FALSE);
}

void
ots_event_begin_array(OtsEvent *e, const char *key)
{
    open_container(e, key, '[', TRUE);
}

void
ots_event_end_array(OtsEvent *e)
{
    close_container(e, ']', TRUE);
}

void
ots_event_commit(OtsEvent *e)
{
    g_return_if_fail(e && EV_OPEN(e));
    OtsEventWriter *w = e->writer;
    OtsBuf *b = &w->batch->buf;
    for (; e->head.depth > 0; e->head.depth--, e->head.arrays >>= 1)
        ots_buf_putc(b, (e->head.arrays & 1u) ? ']' : '}');
    ots_buf_putc(b, '}');
    guint32 len = (guint32)(b->len - e->record_start - sizeof(OtsEventRecord));
    /* Not part of the body: the line's end, so that the main thread can
     * write body and newline from the batch as they are (writev, no copy).
     * It may move the buffer: the record is located after it. */
    ots_buf_putc(b, '\n');
    OtsEventRecord *rec = (OtsEventRecord *)(b->data + e->record_start);
    rec->len = len;
    w->counts[rec->type]++;
    OtsEventIndex x = {.rec = *rec, .body = e->record_start + sizeof(OtsEventRecord)};
    ots_buf_append(&w->batch->index, &x, sizeof(x));
    /* Keep records 8-byte aligned. */
    gsize pad = RECORD_ALIGN(b->len) - b->len;
    if (pad) {
        static const guint8 zeros[8];
        ots_buf_append(b, zeros, pad);
    }
    e->head.state = 0;
    w->batch->n_events++;
    if (b->len >= w->batch_limit)
        ots_event_writer_flush(w);
}

void
ots_event_writer_count_anomaly(OtsEventWriter *w, const char *proto, const char *code)
{
    char key[128];
    g_snprintf(key, sizeof(key), "%s.%s", proto, code);
    guint64 *n = g_hash_table_lookup(w->anomaly_counts, key);
    if (!n) {
        n = g_new0(guint64, 1);
        g_hash_table_insert(w->anomaly_counts, g_strdup(key), n);
    }
    (*n)++;
    w->anomalies++;
}

void
ots_event_format_prefix(OtsBuf *out, const OtsEventRecord *rec, const char *sensor_id_json,
                        gsize id_len, guint64 seq, OtsTimeCache *tc)
{
    /* Written in place after one reservation: the main thread runs this
     * for every event (it was half its time on the capture benchmark). */
    G_STATIC_ASSERT(OTS_EVENT_PREFIX_MAX >= 6 + OTS_JSON_TIME_MAX + 13 + 7 + 20 + 1);
    ots_buf_reserve(out, OTS_EVENT_PREFIX_MAX + id_len);
    guint8 *o = out->data + out->len;
    memcpy(o, "{\"ts\":", 6);
    o = ots_json_time_put(o + 6, rec->ts, tc);
    memcpy(o, ",\"sensor_id\":", 13);
    o += 13;
    memcpy(o, sensor_id_json, id_len);
    o += id_len;
    memcpy(o, ",\"seq\":", 7);
    o = ots_event_put_u64_(o + 7, seq);
    *o++ = ',';
    out->len = (gsize)(o - out->data);
}

void
ots_event_format_line(OtsBuf *out, const OtsEventRecord *rec, const char *body,
                      const char *sensor_id_json, guint64 seq, OtsTimeCache *tc)
{
    gsize id_len = strlen(sensor_id_json);
    /* One reservation for the whole line: envelope, body and newline. */
    ots_buf_reserve(out, OTS_EVENT_PREFIX_MAX + id_len + rec->len + 1);
    ots_event_format_prefix(out, rec, sensor_id_json, id_len, seq, tc);
    ots_buf_append(out, body, rec->len);
    ots_buf_putc(out, '\n');
}
