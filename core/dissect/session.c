/* SPDX-License-Identifier: Apache-2.0 */
#include "core/dissect/dissect.h"

#include <string.h>

/* How many payload chunks a flow without a port match is shown to the
 * heuristic probes before it is left undissected. */
#define MAX_PROBE_TRIES 4

/* What a transaction's members after the tuple ("proto" to "status") are
 * made of: the key of the session's memo of them, since a polling master
 * asks the same again and again. Strings by content (a plugin may reuse a
 * buffer for a name); longer ones are not kept. */
typedef struct {
    guint64 function;
    guint8 op_class;
    guint8 status;
    guint8 has_function_name;
    char proto[24];
    char function_name[48];
} TxHeadKey;
G_STATIC_ASSERT(sizeof(TxHeadKey) <= OTS_EVENT_MEMO_KEY_MAX);

/* Formatted once per flow, when its first event is written. */
typedef struct {
    char ip[2][48];
    char tuple[2][256];
    gsize tuple_len[2];
    OtsEventMemo head; /* keyed by TxHeadKey */
} SessionStrings;

struct _OtsSession {
    OtsDissectContext *ctx;
    OtsFlow *flow;
    const OtsDissectorInfo *info; /* bound dissector; plugins outlive every registry */
    gpointer state;
    gboolean state_live;
    gboolean undecided; /* waiting for a heuristic probe */
    guint8 probe_tries;
    gint64 now;
    gint64 last_tick;
    OtsBuf pending[2];
    SessionStrings *strings;
    guint64 gaps;
    gsize charged; /* bytes counted in ctx->stats.mem_used for this session */
};

/* What the thread's memory budget (OtsDissectContext.mem_cap) has left;
 * G_MAXSIZE without a cap. */
static inline gsize
budget_left(const OtsDissectContext *ctx)
{
    if (!ctx->mem_cap)
        return G_MAXSIZE;
    return ctx->mem_cap > ctx->stats.mem_used ? ctx->mem_cap - ctx->stats.mem_used : 0;
}

static gboolean
budget_charge(OtsSession *s, gsize bytes)
{
    OtsDissectContext *ctx = s->ctx;
    if (bytes > budget_left(ctx)) {
        ctx->stats.memcap_refused += bytes;
        return FALSE;
    }
    ctx->stats.mem_used += bytes;
    s->charged += bytes;
    return TRUE;
}

static void
budget_refund(OtsSession *s, gsize bytes)
{
    bytes = MIN(bytes, s->charged);
    s->charged -= bytes;
    s->ctx->stats.mem_used -= bytes;
}

/**
 * ots_session_charge:
 * @s: the session
 * @bytes: what the dissector is about to keep (a pending request, a
 *   reassembly buffer)
 *
 * Charges @bytes to the budget every flow of this thread shares
 * (flows.memcap_mb). Returns FALSE, and counts it, when that budget is
 * spent: the dissector must not keep the state (report what it has now, or
 * let its oldest state go and try again). What a session still holds is
 * refunded when its flow ends.
 */
gboolean
ots_session_charge(OtsSession *s, gsize bytes)
{
    g_return_val_if_fail(s != NULL, FALSE);
    return budget_charge(s, bytes);
}

/**
 * ots_session_refund:
 * @s: the session
 * @bytes: what the dissector charged and has now freed
 */
void
ots_session_refund(OtsSession *s, gsize bytes)
{
    g_return_if_fail(s != NULL);
    budget_refund(s, bytes);
}

void
ots_dissect_context_init(OtsDissectContext *ctx, const OtsDissectRegistry *registry,
                         OtsEventWriter *writer, gsize max_pdu, gboolean flow_events)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->registry = registry;
    ctx->writer = writer;
    ctx->max_pdu = max_pdu;
    ctx->flow_events = flow_events;
}

OtsSession *
ots_session_new(OtsDissectContext *ctx, OtsFlow *flow)
{
    OtsSession *s = g_new0(OtsSession, 1);
    s->ctx = ctx;
    s->flow = flow;
    s->now = flow->first_ts;
    s->last_tick = flow->first_ts;
    return s;
}

void
ots_session_bind(OtsSession *s, const OtsDissectorEntry *entry)
{
    g_return_if_fail(!s->info);
    s->info = entry->info;
    s->undecided = FALSE;
    s->ctx->stats.flows_bound++;
    if (s->info->state_new)
        s->state = s->info->state_new(s);
    s->state_live = TRUE;
}

void
ots_session_set_time(OtsSession *s, gint64 now)
{
    s->now = now;
}

const char *
ots_session_get_proto(OtsSession *s)
{
    return s->info ? s->info->name : NULL;
}

gpointer
ots_session_get_state(OtsSession *s)
{
    return s->state;
}

/* SDK accessors */

gint64
ots_session_get_time(OtsSession *s)
{
    g_return_val_if_fail(s, 0);
    return s->now;
}

OtsL4Proto
ots_session_get_l4(OtsSession *s)
{
    g_return_val_if_fail(s, OTS_L4_TCP);
    return (OtsL4Proto)s->flow->l4_proto;
}

guint16
ots_session_get_server_port(OtsSession *s)
{
    g_return_val_if_fail(s, 0);
    return s->flow->port[1];
}

guint16
ots_session_get_client_port(OtsSession *s)
{
    g_return_val_if_fail(s, 0);
    return s->flow->port[0];
}

gsize
ots_session_get_max_pdu(OtsSession *s)
{
    g_return_val_if_fail(s, 0);
    return s->ctx->max_pdu;
}

/* Event envelope parts */

/* @a as text into @buf (48 bytes). IPv4 by hand: glibc's inet_ntop()
 * formats it with sprintf(), and this runs for every new flow. */
static void
ip_text(const OtsIpAddr *a, char *buf)
{
    if (a->family != 4) {
        ots_ip_addr_to_string(a, buf, 48);
        return;
    }
    guint8 *o = (guint8 *)buf;
    for (int i = 0; i < 4; i++) {
        if (i)
            *o++ = '.';
        o = ots_event_put_u64_(o, a->addr[i]);
    }
    *o = '\0';
}

static char *
put_str(char *o, const char *s)
{
    gsize n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

static SessionStrings *
session_strings(OtsSession *s)
{
    if (G_LIKELY(s->strings))
        return s->strings;
    SessionStrings *st = g_new(SessionStrings, 1);
    st->head.json_len = 0; /* nothing kept yet */
    OtsFlow *f = s->flow;
    const char *l4 = f->l4_proto == OTS_L4_TCP ? "tcp" : "udp";
    for (int i = 0; i < 2; i++)
        ip_text(&f->ip[i], st->ip[i]);
    for (int d = 0; d < 2; d++) {
        int src = d, dst = 1 - d;
        /* At most 2 x 46 address bytes, 2 x 5 port digits, 5 vlan digits
         * and the fixed text: well within the 256 bytes. */
        char *o = st->tuple[d];
        o = put_str(o, "\"src_ip\":\"");
        o = put_str(o, st->ip[src]);
        o = put_str(o, "\",\"src_port\":");
        o = (char *)ots_event_put_u64_((guint8 *)o, f->port[src]);
        o = put_str(o, ",\"dst_ip\":\"");
        o = put_str(o, st->ip[dst]);
        o = put_str(o, "\",\"dst_port\":");
        o = (char *)ots_event_put_u64_((guint8 *)o, f->port[dst]);
        o = put_str(o, ",\"transport\":\"");
        o = put_str(o, l4);
        *o++ = '"';
        if (f->vlan_id) {
            o = put_str(o, ",\"vlan\":");
            o = (char *)ots_event_put_u64_((guint8 *)o, f->vlan_id);
        }
        st->tuple_len[d] = (gsize)(o - st->tuple[d]);
    }
    s->strings = st;
    return st;
}

static void
add_tuple(OtsSession *s, OtsEvent *e, OtsDirection dir)
{
    SessionStrings *st = session_strings(s);
    ots_event_add_raw(e, st->tuple[dir], st->tuple_len[dir]);
}

/* @key for @info's members after the tuple; FALSE if a name is too long to
 * be a key. */
static gboolean
tx_head_key(TxHeadKey *key, const char *proto, const OtsTransactionInfo *info)
{
    gsize plen = strlen(proto);
    gsize flen = info->function_name ? strlen(info->function_name) : 0;
    if (plen >= sizeof(key->proto) || flen >= sizeof(key->function_name) ||
        (guint)info->op_class > G_MAXUINT8 || (guint)info->status > G_MAXUINT8)
        return FALSE;
    memset(key, 0, sizeof(*key)); /* padding and string tails too: compared as bytes */
    key->function = info->function;
    key->op_class = (guint8)info->op_class;
    key->status = (guint8)info->status;
    key->has_function_name = info->function_name != NULL;
    memcpy(key->proto, proto, plen);
    if (flen)
        memcpy(key->function_name, info->function_name, flen);
    return TRUE;
}

/**
 * ots_session_begin_transaction:
 * @s: the session of the current callback
 * @info: what the transaction was
 *
 * Returns: (transfer none): the open event; add the protocol object, then commit.
 */
OtsEvent *
ots_session_begin_transaction(OtsSession *s, const OtsTransactionInfo *info)
{
    g_return_val_if_fail(s && s->info && info, NULL);
    gint64 ts = info->request_ts ? info->request_ts : info->response_ts ? info->response_ts : s->now;
    OtsEvent *e = ots_event_writer_begin(s->ctx->writer, OTS_EVENT_TRANSACTION, ts);
    add_tuple(s, e, info->request_dir);
    const char *proto = info->proto ? info->proto : s->info->name;
    OtsEventMemo *m = &s->strings->head;
    TxHeadKey key;
    gboolean keyed = tx_head_key(&key, proto, info);
    if (!keyed || !ots_event_memo_put(e, m, &key, sizeof(key))) {
        if (keyed)
            ots_event_memo_begin(e, m, &key, sizeof(key));
        ots_event_add_string(e, "proto", proto);
        ots_event_add_uint(e, "function", info->function);
        if (info->function_name)
            ots_event_add_string(e, "function_name", info->function_name);
        ots_event_add_string(e, "op_class", ots_op_class_to_string(info->op_class));
        ots_event_add_string(e, "status", ots_tx_status_to_string(info->status));
        if (keyed)
            ots_event_memo_end(e, m);
    }
    if (info->request_ts && info->response_ts)
        ots_event_add_int(e, "latency_us", info->response_ts - info->request_ts);
    return e;
}

static const char *const role_names[] = {"unknown", "controller", "client", "io", "gateway"};

OtsEvent *
ots_session_begin_asset(OtsSession *s, OtsDirection dir, OtsAssetRole role)
{
    g_return_val_if_fail(s && s->info, NULL);
    SessionStrings *st = session_strings(s);
    OtsFlow *f = s->flow;
    int side = dir == OTS_DIR_TO_SERVER ? 0 : 1; /* the sender */
    OtsEvent *e = ots_event_writer_begin(s->ctx->writer, OTS_EVENT_ASSET, s->now);
    ots_event_add_string(e, "ip", st->ip[side]);
    if (side == 1)
        ots_event_add_uint(e, "port", f->port[1]);
    ots_event_add_string(e, "transport", f->l4_proto == OTS_L4_TCP ? "tcp" : "udp");
    if (f->vlan_id)
        ots_event_add_uint(e, "vlan", f->vlan_id);
    ots_event_add_string(e, "proto", s->info->name);
    ots_event_add_string(e, "role", (guint)role < G_N_ELEMENTS(role_names) ? role_names[role]
                                                                           : "unknown");
    return e;
}

OtsEvent *
ots_session_begin_anomaly(OtsSession *s, OtsDirection dir, const char *code, const char *message)
{
    g_return_val_if_fail(s && code, NULL);
    const char *proto = s->info ? s->info->name : "core";
    ots_event_writer_count_anomaly(s->ctx->writer, proto, code);
    OtsEvent *e = ots_event_writer_begin(s->ctx->writer, OTS_EVENT_ALERT, s->now);
    ots_event_add_string(e, "category", "protocol_anomaly");
    ots_event_add_string(e, "severity", "low");
    add_tuple(s, e, dir);
    ots_event_add_string(e, "proto", proto);
    ots_event_add_string(e, "code", code);
    if (message)
        ots_event_add_string(e, "message", message);
    return e;
}

OtsEvent *
ots_session_begin_anomalyv(OtsSession *s, OtsDirection dir, const char *code, const char *format,
                           va_list args)
{
    char message[OTS_ANOMALY_MESSAGE_MAX];
    g_vsnprintf(message, sizeof(message), format, args);
    return ots_session_begin_anomaly(s, dir, code, message);
}

OtsEvent *
ots_session_begin_anomalyf(OtsSession *s, OtsDirection dir, const char *code, const char *format,
                           ...)
{
    va_list args;
    va_start(args, format);
    OtsEvent *e = ots_session_begin_anomalyv(s, dir, code, format, args);
    va_end(args);
    return e;
}

void
ots_session_anomaly(OtsSession *s, OtsDirection dir, const char *code, const char *message)
{
    OtsEvent *e = ots_session_begin_anomaly(s, dir, code, message);
    if (e)
        ots_event_commit(e);
}

/* Parsing */

static void
call_gap(OtsSession *s, OtsDirection dir, guint32 len)
{
    s->pending[dir].len = 0;
    s->gaps++;
    if (s->info && s->info->gap)
        s->info->gap(s, s->state, dir, len);
}

static void
try_probes(OtsSession *s, OtsDirection dir, const guint8 *data, gsize len)
{
    const OtsDissectRegistry *reg = s->ctx->registry;
    gboolean need_more = FALSE;
    for (guint i = 0; i < ots_dissect_registry_size(reg); i++) {
        const OtsDissectorEntry *e = ots_dissect_registry_get(reg, i);
        if (!e->enabled || !e->heuristic)
            continue;
        OtsReader r = OTS_READER_INIT(data, len);
        OtsProbeResult pr = e->info->probe(&r, dir, (OtsL4Proto)s->flow->l4_proto);
        if (pr == OTS_PROBE_YES) {
            ots_session_bind(s, e);
            s->ctx->stats.flows_heuristic++;
            return;
        }
        if (pr == OTS_PROBE_NEED_MORE)
            need_more = TRUE;
    }
    if (!need_more || ++s->probe_tries >= MAX_PROBE_TRIES)
        s->undecided = FALSE;
}

static OtsParseResult
run_parse(OtsSession *s, OtsDirection dir, OtsReader *r)
{
    s->ctx->stats.pdu_calls++;
    OtsParseResult res = s->info->parse(s, s->state, dir, r);
    if (res == OTS_PARSE_MALFORMED)
        s->ctx->stats.malformed++;
    return res;
}

/* Charges what @p grew by since it had @cap_before bytes. */
static void
pending_grew(OtsSession *s, const OtsBuf *p, gsize cap_before)
{
    if (p->cap > cap_before) {
        s->ctx->stats.mem_used += p->cap - cap_before;
        s->charged += p->cap - cap_before;
    }
}

/* An empty pending buffer that grew large is given back (a flow that once
 * carried a big PDU does not hold max_pdu bytes for the rest of its life). */
static void
pending_done(OtsSession *s, OtsBuf *p)
{
    p->len = 0;
    if (p->cap > 4096) {
        budget_refund(s, p->cap);
        ots_buf_clear(p);
    }
}

static void
keep_pending(OtsSession *s, OtsDirection dir, const guint8 *rest, gsize n)
{
    OtsBuf *p = &s->pending[dir];
    if (n > s->ctx->max_pdu) {
        /* An incomplete PDU larger than allowed: drop it and resynchronise. */
        s->ctx->stats.pending_overflow++;
        ots_session_anomaly(s, dir, "pdu_too_large",
                            "incomplete PDU exceeds flows.max_pdu_bytes; bytes skipped");
        call_gap(s, dir, (guint32)MIN(n, G_MAXUINT32));
        return;
    }
    gboolean in_place = p->len && rest >= p->data && rest < p->data + p->len;
    if (!in_place && n > p->cap && n - p->cap > budget_left(s->ctx)) {
        /* The thread's budget is spent: skip, as for a PDU too large. */
        s->ctx->stats.memcap_refused += n;
        ots_session_anomaly(s, dir, "memcap",
                            "flows.memcap_mb reached: an incomplete PDU was not kept; bytes "
                            "skipped");
        call_gap(s, dir, (guint32)MIN(n, G_MAXUINT32));
        return;
    }
    if (in_place) {
        ots_buf_consume(p, (gsize)(rest - p->data));
    } else {
        gsize cap = p->cap;
        p->len = 0;
        ots_buf_append(p, rest, n);
        pending_grew(s, p, cap);
    }
}

OtsParseResult
ots_session_stream_data(OtsSession *s, OtsDirection dir, const guint8 *data, gsize len)
{
    if (!s->info) {
        if (!s->undecided)
            return OTS_PARSE_UNSUPPORTED;
        try_probes(s, dir, data, len);
        if (!s->info)
            return OTS_PARSE_UNSUPPORTED;
    }
    OtsBuf *p = &s->pending[dir];
    const guint8 *buf = data;
    gsize buf_len = len;
    if (p->len) {
        /* pending holds at most max_pdu bytes (keep_pending bounds it) */
        gsize cap = p->cap;
        ots_buf_append(p, data, len);
        pending_grew(s, p, cap);
        buf = p->data;
        buf_len = p->len;
    }
    OtsReader r = OTS_READER_INIT(buf, buf_len);
    OtsParseResult res = run_parse(s, dir, &r);
    gsize rest = buf_len - MIN(r.pos, buf_len);
    switch (res) {
    case OTS_PARSE_NEED_MORE:
        if (rest)
            keep_pending(s, dir, buf + (buf_len - rest), rest);
        else
            pending_done(s, p);
        break;
    case OTS_PARSE_MALFORMED:
        /* The dissector raised its anomaly; drop what is buffered and let it
         * resynchronise on what comes next. */
        call_gap(s, dir, 0);
        break;
    default:
        pending_done(s, p);
        break;
    }
    return res;
}

void
ots_session_stream_gap(OtsSession *s, OtsDirection dir, guint32 len)
{
    if (s->info)
        call_gap(s, dir, len);
}

OtsParseResult
ots_session_datagram(OtsSession *s, OtsDirection dir, const guint8 *data, gsize len)
{
    if (!s->info) {
        if (!s->undecided)
            return OTS_PARSE_UNSUPPORTED;
        try_probes(s, dir, data, len);
        if (!s->info)
            return OTS_PARSE_UNSUPPORTED;
    }
    OtsReader r = OTS_READER_INIT(data, len);
    return run_parse(s, dir, &r);
}

void
ots_session_finish(OtsSession *s)
{
    if (!s->state_live)
        return;
    s->state_live = FALSE;
    if (s->info->flow_end)
        s->info->flow_end(s, s->state);
    if (s->info->state_free && s->state)
        s->info->state_free(s->state);
    s->state = NULL;
}

void
ots_session_unbind(OtsSession *s)
{
    if (!s->info)
        return;
    ots_session_finish(s);
    s->info = NULL;
    s->undecided = FALSE;
    s->pending[0].len = 0;
    s->pending[1].len = 0;
}

static void
rebind_flow(OtsFlow *flow, gpointer user)
{
    const OtsDissectRegistry *r = user;
    OtsSession *s = flow->app;
    if (!s || !s->info)
        return;
    const OtsDissectorEntry *e = ots_dissect_registry_lookup(r, s->info->name);
    if (!e || !e->enabled)
        ots_session_unbind(s);
}

void
ots_dissect_context_set_registry(OtsDissectContext *ctx, const OtsDissectRegistry *registry,
                                 OtsFlowTable *flows)
{
    ctx->registry = registry;
    if (flows)
        ots_flow_table_foreach(flows, rebind_flow, (gpointer)registry);
}

void
ots_session_free(OtsSession *s)
{
    if (!s)
        return;
    ots_session_finish(s);
    budget_refund(s, s->charged); /* pending buffers and what the dissector left charged */
    ots_buf_clear(&s->pending[0]);
    ots_buf_clear(&s->pending[1]);
    g_free(s->strings);
    g_free(s);
}

/* Pipeline glue */

typedef struct {
    OtsSession *s;
    OtsDirection dir;
} SinkCtx;

static void
sink_data(gpointer user, const guint8 *data, gsize len)
{
    SinkCtx *c = user;
    ots_session_stream_data(c->s, c->dir, data, len);
}

static void
sink_gap(gpointer user, guint32 len)
{
    SinkCtx *c = user;
    ots_session_stream_gap(c->s, c->dir, len);
}

static const OtsTcpSink tcp_sink = {.data = sink_data, .gap = sink_gap};

static OtsSession *
session_for_flow(OtsDissectContext *ctx, OtsFlow *flow)
{
    OtsSession *s = ots_session_new(ctx, flow);
    const OtsDissectorEntry *e = ots_dissect_registry_port(ctx->registry, flow->l4_proto,
                                                           flow->port[1]);
    if (!e)
        e = ots_dissect_registry_port(ctx->registry, flow->l4_proto, flow->port[0]);
    if (e) {
        ots_session_bind(s, e);
        return s;
    }
    for (guint i = 0; i < ots_dissect_registry_size(ctx->registry); i++) {
        const OtsDissectorEntry *h = ots_dissect_registry_get(ctx->registry, i);
        if (h->enabled && h->heuristic) {
            s->undecided = TRUE;
            break;
        }
    }
    return s;
}

gboolean
ots_dissect_is_server_port(guint8 l4, guint16 port, gpointer user)
{
    OtsDissectContext *ctx = user;
    return ots_dissect_registry_port(ctx->registry, l4, port) != NULL;
}

void
ots_dissect_packet(OtsDissectContext *ctx, OtsFlow *flow, OtsDirection dir, const OtsPacket *pkt,
                   guint32 max_ooo)
{
    OtsSession *s = flow->app;
    if (G_UNLIKELY(!s))
        s = flow->app = session_for_flow(ctx, flow);
    s->now = pkt->ts;
    if (!s->info && !s->undecided)
        return; /* nothing will look at the bytes: skip reassembly */

    if (flow->l4_proto == OTS_L4_TCP) {
        SinkCtx c = {s, dir};
        OtsTcpStream *st = &flow->stream[dir];
        guint32 held = st->ooo_bytes;
        /* Out-of-order bytes may grow only by what the budget has left;
         * past it the stream stops waiting for the hole (a gap). */
        guint32 bound = max_ooo;
        gsize left = budget_left(ctx);
        if (left < bound && held + left < bound)
            bound = (guint32)(held + left);
        guint64 gaps = ctx->tcp.gaps;
        ots_tcp_stream_add(st, pkt->tcp_seq, pkt->tcp_flags, pkt->payload, pkt->payload_len,
                           bound, &tcp_sink, &c, &ctx->tcp);
        if (bound < max_ooo && ctx->tcp.gaps > gaps)
            ctx->stats.memcap_refused += pkt->payload_len;
        /* The streams' out-of-order bytes are counted as the flow's own, not
         * a session's: they are refunded when the flow ends. */
        ctx->stats.mem_used += st->ooo_bytes;
        ctx->stats.mem_used -= held;
    } else if (pkt->payload_len) {
        ots_session_datagram(s, dir, pkt->payload, pkt->payload_len);
    }

    ots_session_maybe_tick(s, pkt->ts);
}

void
ots_session_maybe_tick(OtsSession *s, gint64 now)
{
    if (s->info && s->state_live && s->info->tick && now - s->last_tick >= G_USEC_PER_SEC) {
        s->last_tick = now;
        s->info->tick(s, s->state, now);
    }
}

static void
emit_flow_event(OtsDissectContext *ctx, OtsSession *s, OtsFlow *f, OtsFlowEndReason reason)
{
    OtsEvent *e = ots_event_writer_begin(ctx->writer, OTS_EVENT_FLOW, f->last_ts);
    add_tuple(s, e, OTS_DIR_TO_SERVER);
    if (s->info)
        ots_event_add_string(e, "proto", s->info->name);
    else
        ots_event_add_null(e, "proto");
    OtsBuf *b = ots_event_key(e, "start");
    ots_json_time(b, f->first_ts, &ctx->writer->time_cache);
    ots_event_add_int(e, "duration_us", f->last_ts - f->first_ts);
    ots_event_add_uint(e, "packets_to_server", f->packets[0]);
    ots_event_add_uint(e, "packets_to_client", f->packets[1]);
    ots_event_add_uint(e, "bytes_to_server", f->bytes[0]);
    ots_event_add_uint(e, "bytes_to_client", f->bytes[1]);
    ots_event_add_string(e, "end_reason", ots_flow_end_reason_to_string(reason));
    if (f->l4_proto == OTS_L4_TCP)
        ots_event_add_uint(e, "gaps", s->gaps);
    ots_event_commit(e);
}

void
ots_dissect_flow_end(OtsFlow *flow, OtsFlowEndReason reason, gpointer user)
{
    OtsDissectContext *ctx = user;
    OtsSession *s = flow->app;
    if (!s)
        s = flow->app = ots_session_new(ctx, flow);
    s->now = flow->last_ts;
    if (flow->l4_proto == OTS_L4_TCP) /* the flow table frees the segments next */
        ctx->stats.mem_used -= flow->stream[0].ooo_bytes + flow->stream[1].ooo_bytes;
    if (s->info && flow->l4_proto == OTS_L4_TCP) {
        for (int d = 0; d < 2; d++) {
            SinkCtx c = {s, (OtsDirection)d};
            ots_tcp_stream_flush(&flow->stream[d], &tcp_sink, &c, &ctx->tcp);
        }
    }
    ots_session_finish(s);
    if (ctx->flow_events)
        emit_flow_event(ctx, s, flow, reason);
    ots_session_free(s);
    flow->app = NULL;
}
