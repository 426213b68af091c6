/* SPDX-License-Identifier: Apache-2.0 */

/* BACnet/IP dissector (ASHRAE 135 Annex J over UDP 47808): BVLC (including
 * forwarded NPDUs and the BBMD / foreign-device functions), NPDU (routing
 * fields, network-layer messages), APDU (all eight PDU types), segmented
 * requests and complex ACKs reassembled (bounded), confirmed services paired
 * with their answers by (requester, invoke id), application tags of the
 * common services decoded, device identity as asset facts.
 *
 * BACnet is peer to peer: either endpoint of a flow may send confirmed
 * requests, so pending requests are keyed by the requester's direction too.
 * Every PDU ends up in exactly one transaction event: a confirmed request
 * with its answer ("request" and "response" objects), a one-way message
 * (unconfirmed service, network-layer message) with only "request", or an
 * answer whose request was not seen with only "response". A segmented
 * message is reassembled into its leg, which also lists each of its segments
 * and the segment ACKs answering them (time, sequence number, window,
 * flags: bounded), so that every PDU keeps its place on the wire; a segment
 * ACK of no pending segmented message is a one-way event of its own.
 *
 * Service data is walked once, while the event is written; the problems the
 * walker finds are collected and raised as anomalies after the commit (a
 * session has one open event at a time). A walk without an event (w.e NULL)
 * only counts problems. */

#include <otsensor/dissector.h>
#include "bacnet-private.h"

#define BACNET_PORT 47808
#define BVLC_TYPE_BIP 0x81
#define BVLC_HEADER_LEN 4
#define NPDU_VERSION 1
#define MAX_PENDING 256
#define PENDING_TIMEOUT_US (30 * G_USEC_PER_SEC)
#define MAX_REASSEMBLY (256 * 1024) /* per segmented message, also bounded by max_pdu */
#define MAX_MAC 18                  /* longest BACnet MAC (BACnet/IPv6 VMAC + port) */
#define MAX_SEG_RECORDS 64          /* segments, and segment ACKs, listed per message */
/* How long a complete segmented complex ACK waits for the client's segment
 * ACK of its last segment, which follows it on the wire. */
#define FINAL_ACK_WAIT_US (2 * G_USEC_PER_SEC)

enum {
    BVLC_RESULT = 0x00,
    BVLC_WRITE_BDT = 0x01,
    BVLC_READ_BDT = 0x02,
    BVLC_READ_BDT_ACK = 0x03,
    BVLC_FORWARDED_NPDU = 0x04,
    BVLC_REGISTER_FD = 0x05,
    BVLC_READ_FDT = 0x06,
    BVLC_READ_FDT_ACK = 0x07,
    BVLC_DELETE_FDT_ENTRY = 0x08,
    BVLC_DISTRIBUTE_BROADCAST = 0x09,
    BVLC_ORIGINAL_UNICAST = 0x0a,
    BVLC_ORIGINAL_BROADCAST = 0x0b,
    BVLC_SECURE_BVLL = 0x0c,
};

enum {
    APDU_CONFIRMED = 0,
    APDU_UNCONFIRMED,
    APDU_SIMPLE_ACK,
    APDU_COMPLEX_ACK,
    APDU_SEGMENT_ACK,
    APDU_ERROR,
    APDU_REJECT,
    APDU_ABORT,
};

/* ---- per-flow state ---------------------------------------------------- */

/* BVLC and NPDU header of one message, kept with a pending request. */
typedef struct {
    guint8 bvlc;
    gboolean forwarded;
    guint8 origin[6];
    gboolean has_npdu;
    guint8 control;
    guint16 dnet, snet;
    guint8 dlen, slen;
    guint8 dadr[MAX_MAC], sadr[MAX_MAC];
    guint8 hop_count;
} Hdr;

/* A segment or a segment ACK as it was on the wire, listed in the event so
 * that each PDU of a segmented transfer keeps its own time and flags. */
typedef struct {
    gint64 ts;
    guint8 seq;
    guint8 window; /* proposed (segment) or actual (segment ACK) window size */
    guint8 bvlc;   /* segment ACK: its BVLC function */
    gboolean more; /* segment: more follows */
    gboolean nak;  /* segment ACK: negative */
    gboolean srv;  /* segment ACK: sent by the server */
} SegRec;

/* At most MAX_SEG_RECORDS entries; @total counts all of them. */
typedef struct {
    GArray *recs; /* SegRec; NULL until the first */
    guint total;
    gboolean closed; /* the budget refused a record: later ones are only counted */
} SegList;

/* One confirmed request (possibly still arriving in segments), or the
 * segments of a complex ACK whose request was not seen. */
typedef struct {
    GList link;       /* in BacnetState.pending, oldest first; data points here */
    gsize charged;    /* to flows.memcap_mb: the struct, req/resp bytes, SegRecs */
    gboolean spilled; /* on the caller's stack, not kept: reported at once */
    gint64 ts;        /* first request segment */
    gint64 last;      /* last activity, for expiry */
    OtsDirection dir; /* requester's direction */
    guint8 invoke_id;
    guint8 service;
    gboolean has_request;
    gboolean req_done;
    gboolean req_broken; /* segments lost or over the bound */
    gboolean req_segmented;
    gboolean sa; /* segmented response accepted */
    guint8 max_segs, max_apdu;
    guint8 req_next_seq;
    Hdr req_hdr;
    GByteArray *req;
    SegList req_segs;
    SegList req_acks; /* from the server, for request segments */
    /* complex ACK segments */
    gboolean resp_started;
    gboolean resp_done; /* last segment seen: waiting for its segment ACK */
    gboolean resp_broken;
    gint64 resp_first_ts, resp_ts; /* first and last segment */
    guint8 resp_service;
    guint8 resp_next_seq;
    guint8 resp_last_seq;
    Hdr resp_hdr;
    GByteArray *resp;
    SegList resp_segs;
    SegList resp_acks; /* from the client, for response segments */
} Pending;

typedef struct {
    gboolean valid;
    gint64 ts;
    guint8 function;
    guint16 ttl;
    guint entries;
} BvlcPending;

typedef struct {
    GQueue pending;
    BvlcPending bvlc[2]; /* per requester direction */
    gint64 last_expiry;
    /* The last finished request, kept for the next one with its request
     * buffer: most flows are one request at a time, so this saves three
     * allocations per transaction. Bounded (SPARE_REQ_MAX), it is fixed
     * per-flow state like this struct: refunded when it becomes the spare,
     * charged again when it is reused. */
    Pending *spare;
    /* The header members last written per direction (put_hdr()); NULL
     * until the first, or if the memory budget refused them. */
    OtsEventMemo *hdr_memo;
    gboolean hdr_memo_refused;
} BacnetState;

/* One answer to a confirmed request. */
typedef struct {
    Hdr hdr;
    guint8 type;
    guint8 invoke_id;
    guint8 service;
    guint8 reason;
    gboolean srv;
    const guint8 *body;
    gsize body_len;
    gboolean segmented; /* the reassembled complex ACK kept in Pending */
    gboolean incomplete;
} Resp;

/* ---- headers ----------------------------------------------------------- */

static void
put_hdr_members(OtsEvent *e, const Hdr *h)
{
    ots_event_add_uint(e, "bvlc_function", h->bvlc);
    const char *name = bacnet_bvlc_name(h->bvlc);
    if (name)
        ots_event_add_string(e, "bvlc_function_name", name);
    if (h->forwarded) {
        char addr[32];
        g_snprintf(addr, sizeof(addr), "%u.%u.%u.%u:%u", h->origin[0], h->origin[1], h->origin[2],
                   h->origin[3], ((guint)h->origin[4] << 8) | h->origin[5]);
        ots_event_add_string(e, "forwarded_from", addr);
    }
    if (!h->has_npdu)
        return;
    ots_event_begin_object(e, "npdu");
    ots_event_add_uint(e, "control", h->control);
    ots_event_add_bool(e, "expecting_reply", (h->control & 0x04) != 0);
    ots_event_add_uint(e, "priority", h->control & 0x03);
    if (h->control & 0x20) {
        ots_event_add_uint(e, "dnet", h->dnet);
        if (h->dlen)
            ots_event_add_hex(e, "dadr", h->dadr, MIN(h->dlen, MAX_MAC));
        ots_event_add_uint(e, "hop_count", h->hop_count);
    }
    if (h->control & 0x08) {
        ots_event_add_uint(e, "snet", h->snet);
        ots_event_add_hex(e, "sadr", h->sadr, MIN(h->slen, MAX_MAC));
    }
    ots_event_end_object(e);
}

/* The memo of the headers sent in direction @dir, charged to the flow's
 * memory budget when first needed; NULL if the budget refuses it. */
static OtsEventMemo *
hdr_memo(OtsSession *s, BacnetState *st, OtsDirection dir)
{
    if (G_UNLIKELY(!st->hdr_memo)) {
        if (st->hdr_memo_refused || !ots_session_charge(s, 2 * sizeof(OtsEventMemo))) {
            st->hdr_memo_refused = TRUE;
            return NULL;
        }
        st->hdr_memo = g_new0(OtsEventMemo, 2);
    }
    return &st->hdr_memo[dir == OTS_DIR_TO_SERVER ? 0 : 1];
}

/* The BVLC and NPDU members of @h. A polled device's header is the same
 * PDU after PDU: in a transaction, its members are kept rendered in @m (one
 * per direction) and copied while the header stays the same (the whole Hdr
 * is the memo's key; put_hdr_members() is a function of it alone). That
 * took the header from ~480 instructions to ~140 (callgrind). */
G_STATIC_ASSERT(sizeof(Hdr) <= OTS_EVENT_MEMO_KEY_MAX);
static void
put_hdr(OtsEvent *e, const Hdr *h, OtsEventMemo *m)
{
    if (!m) {
        put_hdr_members(e, h);
        return;
    }
    if (ots_event_memo_put(e, m, h, sizeof(*h)))
        return;
    ots_event_memo_begin(e, m, h, sizeof(*h));
    put_hdr_members(e, h);
    ots_event_memo_end(e, m);
}

/* Fixed part of an APDU and the service data after it. */
typedef struct {
    guint8 type;
    gboolean seg, more, sa, nak, srv;
    guint8 max_segs, max_apdu;
    guint8 invoke_id;
    guint8 seq, window;
    guint8 service;
    guint8 reason;
    const guint8 *body;
    gsize body_len;
} Apdu;

static const guint16 max_apdu_values[] = {50, 128, 206, 480, 1024, 1476};
static const guint8 max_segs_values[] = {0, 2, 4, 8, 16, 32, 64, 65};

static gboolean
parse_apdu(Walk *w, OtsReader *r, Apdu *a)
{
    guint8 b0, b1 = 0;
    memset(a, 0, sizeof(*a));
    if (!ots_reader_get_u8(r, &b0)) {
        bacnet_problem(w, "bad_length", "NPDU without an APDU");
        return FALSE;
    }
    a->type = b0 >> 4;
    a->seg = (b0 & 0x08) != 0;
    a->more = (b0 & 0x04) != 0;
    a->sa = (b0 & 0x02) != 0;
    a->nak = (b0 & 0x02) != 0;
    a->srv = (b0 & 0x01) != 0;
    gboolean ok = TRUE;
    switch (a->type) {
    case APDU_CONFIRMED:
        ok = ots_reader_get_u8(r, &b1) && ots_reader_get_u8(r, &a->invoke_id);
        a->max_segs = (b1 >> 4) & 0x07;
        a->max_apdu = b1 & 0x0f;
        if (ok && a->seg)
            ok = ots_reader_get_u8(r, &a->seq) && ots_reader_get_u8(r, &a->window);
        ok = ok && ots_reader_get_u8(r, &a->service);
        break;
    case APDU_UNCONFIRMED:
        ok = ots_reader_get_u8(r, &a->service);
        break;
    case APDU_SIMPLE_ACK:
    case APDU_ERROR:
        ok = ots_reader_get_u8(r, &a->invoke_id) && ots_reader_get_u8(r, &a->service);
        break;
    case APDU_COMPLEX_ACK:
        ok = ots_reader_get_u8(r, &a->invoke_id);
        if (ok && a->seg)
            ok = ots_reader_get_u8(r, &a->seq) && ots_reader_get_u8(r, &a->window);
        ok = ok && ots_reader_get_u8(r, &a->service);
        break;
    case APDU_SEGMENT_ACK:
        ok = ots_reader_get_u8(r, &a->invoke_id) && ots_reader_get_u8(r, &a->seq) &&
             ots_reader_get_u8(r, &a->window);
        break;
    case APDU_REJECT:
    case APDU_ABORT:
        ok = ots_reader_get_u8(r, &a->invoke_id) && ots_reader_get_u8(r, &a->reason);
        break;
    default:
        bacnet_problem(w, "bad_apdu_type", "reserved APDU type %u", a->type);
        return FALSE;
    }
    if (!ok) {
        bacnet_problem(w, "bad_length", "%s APDU header truncated", bacnet_apdu_type_name(a->type));
        return FALSE;
    }
    if (a->type == APDU_CONFIRMED && a->max_apdu >= G_N_ELEMENTS(max_apdu_values))
        bacnet_problem(w, "bad_value", "reserved max-APDU code %u", a->max_apdu);
    if ((a->type == APDU_CONFIRMED || a->type == APDU_COMPLEX_ACK) && a->seg && a->window == 0)
        bacnet_problem(w, "bad_value", "segment window size 0");
    a->body_len = ots_reader_remaining(r);
    ots_reader_get_data(r, a->body_len, &a->body);
    if ((a->type == APDU_SIMPLE_ACK || a->type == APDU_SEGMENT_ACK || a->type == APDU_REJECT ||
         a->type == APDU_ABORT) &&
        a->body_len > 0)
        bacnet_problem(w, "bad_length", "%" G_GSIZE_FORMAT " bytes after a %s APDU", a->body_len,
                       bacnet_apdu_type_name(a->type));
    return TRUE;
}

/* ---- events ------------------------------------------------------------ */

static void
put_apdu_head(OtsEvent *e, guint8 type, guint8 invoke_id, gboolean has_invoke)
{
    ots_event_add_uint(e, "apdu_type", type);
    ots_event_add_string(e, "apdu_type_name", bacnet_apdu_type_name(type));
    if (has_invoke)
        ots_event_add_uint(e, "invoke_id", invoke_id);
}

static void
put_service(OtsEvent *e, gboolean confirmed, guint8 service)
{
    ots_event_add_uint(e, "service", service);
    const char *name = bacnet_service_name(confirmed, service);
    if (name)
        ots_event_add_string(e, "service_name", name);
}

static void
emit_facts(OtsSession *s, OtsDirection dir, const Facts *f)
{
    OtsEvent *e = ots_session_begin_asset(s, dir, OTS_ROLE_CONTROLLER);
    if (!e)
        return;
    for (guint i = 0; i < N_FACTS; i++)
        if (f->str[i])
            ots_event_add_string_len(e, bacnet_fact_keys[i], f->str[i], f->len[i]);
    if (f->str[FACT_MODEL])
        ots_event_add_string_len(e, "product", f->str[FACT_MODEL], f->len[FACT_MODEL]);
    if (f->have_vendor_id)
        ots_event_add_uint(e, "vendor_id", f->vendor_id);
    ots_event_begin_object(e, "bacnet");
    ots_event_add_uint(e, "device_instance", f->instance);
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* ---- memory budget ----------------------------------------------------- */

/* What a pending entry holds beyond its struct is charged to it as it grows
 * and refunded all at once when it is freed (pending_free); a spilled entry
 * is freed within the call that made it, so it charges nothing. */
static gboolean
pending_charge(OtsSession *s, Pending *p, gsize n)
{
    if (p->spilled)
        return TRUE;
    if (!ots_session_charge(s, n))
        return FALSE;
    p->charged += n;
    return TRUE;
}

static void
pending_refund(OtsSession *s, Pending *p, gsize n)
{
    n = MIN(n, p->charged);
    if (n)
        ots_session_refund(s, n);
    p->charged -= n;
}

/* ---- segment lists ----------------------------------------------------- */

static void
seglist_add(OtsSession *s, Pending *p, SegList *l, const SegRec *r)
{
    l->total++;
    if (l->closed || (l->recs && l->recs->len >= MAX_SEG_RECORDS))
        return;
    if (!pending_charge(s, p, sizeof(SegRec))) {
        l->closed = TRUE; /* listed as truncated, like past the bound */
        return;
    }
    if (!l->recs)
        l->recs = g_array_sized_new(FALSE, FALSE, sizeof(SegRec), 4);
    g_array_append_vals(l->recs, r, 1);
}

static void
seglist_clear(SegList *l)
{
    if (l->recs)
        g_array_unref(l->recs);
    l->recs = NULL;
    l->total = 0;
    l->closed = FALSE;
}

static void
add_segment_rec(OtsSession *s, Pending *p, SegList *l, const Apdu *a)
{
    SegRec r = {
        .ts = ots_session_get_time(s),
        .seq = a->seq,
        .window = a->window,
        .more = a->more,
    };
    seglist_add(s, p, l, &r);
}

/* The segments of one message (@base: the event's ts). */
static void
put_segments(OtsEvent *e, const SegList *l, gint64 base)
{
    guint n = l->recs ? l->recs->len : 0;
    ots_event_add_uint(e, "segment_count", l->total);
    ots_event_begin_array(e, "segments");
    for (guint i = 0; i < n; i++) {
        const SegRec *r = &g_array_index(l->recs, SegRec, i);
        ots_event_begin_object(e, NULL);
        ots_event_add_int(e, "offset_us", r->ts - base);
        ots_event_add_uint(e, "sequence_number", r->seq);
        ots_event_add_uint(e, "window_size", r->window);
        ots_event_add_bool(e, "more_follows", r->more);
        ots_event_end_object(e);
    }
    ots_event_end_array(e);
    if (l->total > n)
        ots_event_add_bool(e, "segments_truncated", TRUE);
}

/* The segment ACKs answering the segments of one message. */
static void
put_segment_acks(OtsEvent *e, const SegList *l, gint64 base)
{
    guint n = l->recs ? l->recs->len : 0;
    if (l->total == 0)
        return;
    ots_event_add_uint(e, "segment_ack_count", l->total);
    ots_event_begin_array(e, "segment_acks");
    for (guint i = 0; i < n; i++) {
        const SegRec *r = &g_array_index(l->recs, SegRec, i);
        ots_event_begin_object(e, NULL);
        ots_event_add_int(e, "offset_us", r->ts - base);
        ots_event_add_uint(e, "bvlc_function", r->bvlc);
        ots_event_add_uint(e, "sequence_number", r->seq);
        ots_event_add_uint(e, "window_size", r->window);
        ots_event_add_bool(e, "negative_ack", r->nak);
        ots_event_add_bool(e, "sent_by_server", r->srv);
        ots_event_end_object(e);
    }
    ots_event_end_array(e);
    if (l->total > n)
        ots_event_add_bool(e, "segment_acks_truncated", TRUE);
}

/* ---- confirmed transactions -------------------------------------------- */

/* Emits @p with its answer @resp: NULL for none, or a segmented complex ACK
 * (resp->segmented) whose segments are in @p. */
static void
emit_confirmed(OtsSession *s, BacnetState *st, Pending *p, const Resp *resp)
{
    gboolean exception =
        resp && (resp->type == APDU_ERROR || resp->type == APDU_REJECT || resp->type == APDU_ABORT);
    guint8 service = p->has_request ? p->service : resp ? resp->service : 0;
    gboolean known_service =
        p->has_request || (resp && (resp->type == APDU_SIMPLE_ACK ||
                                    resp->type == APDU_COMPLEX_ACK || resp->type == APDU_ERROR));
    /* A segmented answer is timed at its last segment (the latency is the
     * whole transfer); one without its request at its first, the event's
     * ts being the first PDU of the transaction either way. */
    gint64 resp_ts = 0;
    if (resp && resp->segmented)
        resp_ts = p->has_request ? p->resp_ts : p->resp_first_ts;
    else if (resp)
        resp_ts = ots_session_get_time(s);
    OtsTransactionInfo info = {
        .request_dir = p->dir,
        .function = service,
        .function_name = known_service ? bacnet_service_name(TRUE, service) : NULL,
        .op_class = known_service ? bacnet_service_class(TRUE, service) : OTS_OP_OTHER,
        .request_ts = p->has_request ? p->ts : 0,
        .response_ts = resp_ts,
    };
    if (!info.function_name)
        info.function_name = "unknown";
    if (!resp)
        info.status = OTS_TX_UNANSWERED;
    else if (!p->has_request)
        info.status = OTS_TX_NO_REQUEST;
    else if (exception)
        info.status = OTS_TX_EXCEPTION;
    else
        info.status = OTS_TX_OK;
    /* The event's ts, as the core chooses it: segment offsets count from it. */
    gint64 base = info.request_ts    ? info.request_ts
                  : info.response_ts ? info.response_ts
                                     : ots_session_get_time(s);

    Facts facts; /* the rest is zeroed at the first fact (facts_begin()) */
    facts.device_object = FALSE;
    facts.instance = 0;
    facts.property = 0;
    facts.any = FALSE;
    facts.ready = FALSE;
    Ident req_id = {0};
    Problem raised[MAX_PROBLEMS];
    Walk w = {.dir = p->dir, .ident = &req_id, .raised = raised};
    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    w.e = e;
    ots_event_begin_object(e, "bacnet");
    ots_event_add_string(e, "layer", "application");
    if (p->has_request) {
        ots_event_begin_object(e, "request");
        put_hdr(e, &p->req_hdr, hdr_memo(s, st, p->dir));
        put_apdu_head(e, APDU_CONFIRMED, p->invoke_id, TRUE);
        /* The service is the event's function / function_name. */
        ots_event_add_uint(e, "max_segments_accepted", max_segs_values[p->max_segs & 7]);
        if (p->max_apdu < G_N_ELEMENTS(max_apdu_values))
            ots_event_add_uint(e, "max_apdu_length_accepted", max_apdu_values[p->max_apdu]);
        ots_event_add_bool(e, "segmented_response_accepted", p->sa);
        if (p->req_segmented)
            put_segments(e, &p->req_segs, base);
        put_segment_acks(e, &p->req_acks, base);
        if (!p->req_done || p->req_broken) {
            ots_event_add_bool(e, "incomplete", TRUE);
        } else {
            OtsReader body =
                OTS_READER_INIT(p->req ? p->req->data : NULL, p->req ? p->req->len : 0);
            bacnet_walk_confirmed_request(&w, &body, p->service);
        }
        ots_event_end_object(e);
    }
    if (resp) {
        /* An answer to a request in the event does not repeat what pairs it
         * with the request: the invoke id, the service when the same, and a
         * ReadProperty ACK's identifiers when the same (w.echo). */
        gboolean own_service = !p->has_request || resp->service != p->service;
        w.dir = OTS_DIR_REVERSE(p->dir);
        w.ident = NULL;
        w.echo = &req_id;
        ots_event_begin_object(e, "response");
        put_hdr(e, &resp->hdr, hdr_memo(s, st, OTS_DIR_REVERSE(p->dir)));
        put_apdu_head(e, resp->type, resp->invoke_id, !p->has_request);
        OtsReader body = OTS_READER_INIT(resp->body, resp->body_len);
        switch (resp->type) {
        case APDU_SIMPLE_ACK:
            if (own_service)
                put_service(e, TRUE, resp->service);
            break;
        case APDU_COMPLEX_ACK:
            if (own_service)
                put_service(e, TRUE, resp->service);
            if (resp->segmented) {
                put_segments(e, &p->resp_segs, base);
                put_segment_acks(e, &p->resp_acks, base);
            }
            if (resp->incomplete) {
                ots_event_add_bool(e, "incomplete", TRUE);
            } else {
                w.facts = &facts;
                bacnet_walk_complex_ack(&w, &body, resp->service);
                w.facts = NULL;
            }
            break;
        case APDU_ERROR:
            if (own_service)
                put_service(e, TRUE, resp->service);
            bacnet_walk_error(&w, &body);
            break;
        case APDU_REJECT:
            ots_event_add_uint(e, "reject_reason", resp->reason);
            if (bacnet_reject_reason_name(resp->reason))
                ots_event_add_string(e, "reject_reason_name",
                                     bacnet_reject_reason_name(resp->reason));
            break;
        case APDU_ABORT:
            ots_event_add_bool(e, "sent_by_server", resp->srv);
            ots_event_add_uint(e, "abort_reason", resp->reason);
            if (bacnet_abort_reason_name(resp->reason))
                ots_event_add_string(e, "abort_reason_name",
                                     bacnet_abort_reason_name(resp->reason));
            break;
        }
        ots_event_end_object(e);
    }
    ots_event_end_object(e);
    ots_event_commit(e);
    bacnet_raise_problems(s, &w);
    if (facts.any)
        emit_facts(s, OTS_DIR_REVERSE(p->dir), &facts);
}

/* A one-way PDU (unconfirmed service, network message, stray segment ACK,
 * BVLC message): the sender is the requester. */
static OtsEvent *
begin_one_way(OtsSession *s, OtsDirection dir, guint function, const char *name, OtsOpClass op,
              OtsTxStatus status, const char *layer, const Hdr *h, const char *obj)
{
    OtsTransactionInfo info = {
        .request_dir = dir,
        .function = function,
        .function_name = name ? name : "unknown",
        .op_class = op,
        .status = status,
        .request_ts = status == OTS_TX_NO_REQUEST ? 0 : ots_session_get_time(s),
        .response_ts = status == OTS_TX_NO_REQUEST ? ots_session_get_time(s) : 0,
    };
    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return NULL;
    ots_event_begin_object(e, "bacnet");
    ots_event_add_string(e, "layer", layer);
    ots_event_begin_object(e, obj);
    put_hdr(e, h, NULL);
    return e;
}

static void
handle_unconfirmed(OtsSession *s, OtsDirection dir, const Hdr *h, const Apdu *a)
{
    IAm iam;
    gboolean have_iam = FALSE;
    OtsTxStatus status = OTS_TX_NO_RESPONSE;
    if (a->service == SU_UNCONFIRMED_COV_NOTIFICATION ||
        a->service == SU_UNCONFIRMED_EVENT_NOTIFICATION ||
        a->service == SU_UNCONFIRMED_COV_NOTIFICATION_MULTIPLE ||
        a->service == SU_UNCONFIRMED_AUDIT_NOTIFICATION)
        status = OTS_TX_UNSOLICITED;
    Problem raised[MAX_PROBLEMS];
    Walk w = {.dir = dir, .raised = raised};
    OtsEvent *e =
        begin_one_way(s, dir, a->service, bacnet_service_name(FALSE, a->service),
                      bacnet_service_class(FALSE, a->service), status, "application", h, "request");
    if (!e)
        return;
    w.e = e;
    put_apdu_head(e, APDU_UNCONFIRMED, 0, FALSE); /* the service: function */
    OtsReader body = OTS_READER_INIT(a->body, a->body_len);
    bacnet_walk_unconfirmed(&w, &body, a->service, &iam, &have_iam);
    ots_event_commit(e);
    if (!bacnet_service_name(FALSE, a->service))
        bacnet_problem(&w, "unknown_service", "unconfirmed service choice %u", a->service);
    bacnet_raise_problems(s, &w);

    if (have_iam) {
        OtsEvent *as = ots_session_begin_asset(s, dir, OTS_ROLE_CONTROLLER);
        if (!as)
            return;
        ots_event_add_uint(as, "vendor_id", iam.vendor_id);
        ots_event_begin_object(as, "bacnet");
        ots_event_add_uint(as, "device_instance", iam.instance);
        ots_event_add_uint(as, "max_apdu_length_accepted", iam.max_apdu);
        ots_event_add_uint(as, "segmentation_supported", iam.segmentation);
        const char *seg = bacnet_segmentation_name(iam.segmentation);
        if (seg)
            ots_event_add_string(as, "segmentation_supported_name", seg);
        ots_event_add_uint(as, "vendor_id", iam.vendor_id);
        ots_event_end_object(as);
        ots_event_commit(as);
    }
}

/* ---- pairing ----------------------------------------------------------- */

/* A kept request buffer is at most this long (the memory a flow holds). */
#define SPARE_REQ_MAX 256

/* Frees @p, or keeps it as the spare, and refunds what it was charged (@s
 * NULL: from state_free, where the core refunds what is left). */
static void
pending_free(OtsSession *s, BacnetState *st, Pending *p)
{
    if (s)
        pending_refund(s, p, p->charged);
    if (p->resp)
        g_byte_array_unref(g_steal_pointer(&p->resp));
    seglist_clear(&p->req_segs);
    seglist_clear(&p->req_acks);
    seglist_clear(&p->resp_segs);
    seglist_clear(&p->resp_acks);
    if (st && !p->spilled && !st->spare && (!p->req || p->req->len <= SPARE_REQ_MAX)) {
        if (p->req)
            g_byte_array_set_size(p->req, 0);
        st->spare = p;
        return;
    }
    if (p->req)
        g_byte_array_unref(g_steal_pointer(&p->req));
    if (!p->spilled)
        g_free(p);
}

/* A zeroed Pending; its request buffer, if any, is empty. */
static Pending *
pending_alloc(BacnetState *st)
{
    Pending *p = g_steal_pointer(&st->spare);
    if (!p)
        return g_new0(Pending, 1);
    GByteArray *req = p->req;
    memset(p, 0, sizeof(*p));
    p->req = req;
    return p;
}

static Pending *
pending_find(BacnetState *st, OtsDirection dir, guint8 invoke_id)
{
    for (GList *l = st->pending.head; l; l = l->next) {
        Pending *p = l->data;
        if (p->dir == dir && p->invoke_id == invoke_id)
            return p;
    }
    return NULL;
}

/* Ends @p with what came of it: the request unanswered, or with its
 * segmented complex ACK (complete, or incomplete when it stopped early). */
static void
pending_finish(OtsSession *s, BacnetState *st, Pending *p)
{
    if (!p->spilled)
        g_queue_unlink(&st->pending, &p->link);
    if (p->resp_started) {
        gboolean complete = p->resp_done && !p->resp_broken;
        Resp resp = {
            .hdr = p->resp_hdr,
            .type = APDU_COMPLEX_ACK,
            .invoke_id = p->invoke_id,
            .service = p->resp_service,
            .body = complete && p->resp ? p->resp->data : NULL,
            .body_len = complete && p->resp ? p->resp->len : 0,
            .segmented = TRUE,
            .incomplete = !complete,
        };
        emit_confirmed(s, st, p, &resp);
    } else if (p->has_request) {
        emit_confirmed(s, st, p, NULL);
    }
    pending_free(s, st, p);
}

/* Charges a new entry of @size bytes. When the budget is spent the oldest
 * entry goes, as when the table is full, and the charge is tried once more. */
static gboolean
pending_budget(OtsSession *s, BacnetState *st, gsize size)
{
    if (G_LIKELY(ots_session_charge(s, size)))
        return TRUE;
    if (!st->pending.head)
        return FALSE;
    pending_finish(s, st, st->pending.head->data);
    return ots_session_charge(s, size);
}

/* A pending entry for (@dir, @invoke_id), charged with @extra bytes the
 * caller will keep in it. When flows.memcap_mb refuses it, @spill is filled
 * in instead (spilled: not kept, nothing charged): the caller completes it
 * as usual, then reports it at once with pending_finish(). */
static Pending *
pending_new(OtsSession *s, BacnetState *st, OtsDirection dir, guint8 invoke_id, gsize extra,
            Pending *spill)
{
    Pending *old = pending_find(st, dir, invoke_id);
    if (old)
        pending_finish(s, st, old); /* the invoke id was reused: the old one is given up */
    if (st->pending.length >= MAX_PENDING)
        pending_finish(s, st, st->pending.head->data);
    Pending *p;
    if (G_LIKELY(pending_budget(s, st, sizeof(Pending) + extra))) {
        p = pending_alloc(st);
        p->charged = sizeof(Pending) + extra;
    } else {
        p = memset(spill, 0, sizeof(*spill));
        p->spilled = TRUE;
    }
    p->link.data = p;
    p->ts = p->last = ots_session_get_time(s);
    p->dir = dir;
    p->invoke_id = invoke_id;
    if (!p->spilled)
        g_queue_push_tail_link(&st->pending, &p->link);
    return p;
}

static gsize
reassembly_limit(OtsSession *s)
{
    gsize max = ots_session_get_max_pdu(s);
    return max ? MIN(max, (gsize)MAX_REASSEMBLY) : MAX_REASSEMBLY;
}

/* Gives up the message being rebuilt in @buf (of @p, which was charged its
 * bytes). */
static void
reassembly_drop(OtsSession *s, Pending *p, GByteArray **buf)
{
    if (!*buf)
        return;
    pending_refund(s, p, (*buf)->len);
    g_byte_array_unref(g_steal_pointer(buf));
}

/* Appends segment @seq to @buf (of @p); FALSE when the message cannot be
 * rebuilt. A segment already received (a retransmission within the window,
 * after a lost or negative segment ACK) is a @duplicate and changes nothing. */
static gboolean
add_segment(OtsSession *s, Walk *w, Pending *p, GByteArray **buf, guint8 *next_seq, const Apdu *a,
            gboolean *duplicate)
{
    *duplicate = FALSE;
    if (a->seq != *next_seq) {
        guint8 behind = (guint8)(*next_seq - a->seq);
        if (behind <= MAX(a->window, 1) && behind < 128) {
            *duplicate = TRUE;
            return TRUE;
        }
        bacnet_problem(w, "segment_out_of_order", "segment %u of invoke id %u, expected %u", a->seq,
                       a->invoke_id, *next_seq);
        return FALSE;
    }
    if (!*buf)
        *buf = g_byte_array_new();
    if ((*buf)->len + a->body_len > reassembly_limit(s)) {
        bacnet_problem(w, "segment_overflow",
                       "segmented message of invoke id %u over %" G_GSIZE_FORMAT " bytes",
                       a->invoke_id, reassembly_limit(s));
        reassembly_drop(s, p, buf);
        return FALSE;
    }
    if (a->body_len && !pending_charge(s, p, a->body_len)) {
        bacnet_problem(w, "memcap",
                       "flows.memcap_mb reached: segmented message of invoke id %u abandoned",
                       a->invoke_id);
        reassembly_drop(s, p, buf);
        return FALSE;
    }
    if (a->body_len)
        g_byte_array_append(*buf, a->body, (guint)a->body_len);
    (*next_seq)++;
    return TRUE;
}

/* A segmented message whose pending entry was refused cannot be rebuilt:
 * its first segment is reported at once, and what follows on its own. */
static void
spilled_segments(Walk *w, const Apdu *a)
{
    if (a->more)
        bacnet_problem(w, "memcap",
                       "flows.memcap_mb reached: segmented message of invoke id %u not kept",
                       a->invoke_id);
}

/* A request whose first PDU is @a (segment 0, a lone segment, or a
 * segment whose start was not seen); @extra, @spill: see pending_new(). */
static Pending *
request_new(OtsSession *s, BacnetState *st, OtsDirection dir, const Hdr *h, const Apdu *a,
            gsize extra, Pending *spill)
{
    Pending *p = pending_new(s, st, dir, a->invoke_id, extra, spill);
    p->has_request = TRUE;
    p->service = a->service;
    p->max_segs = a->max_segs;
    p->max_apdu = a->max_apdu;
    p->sa = a->sa;
    p->req_hdr = *h;
    p->req_segmented = a->seg;
    return p;
}

static void
handle_confirmed(OtsSession *s, BacnetState *st, OtsDirection dir, const Hdr *h, const Apdu *a,
                 Walk *w)
{
    if (!bacnet_service_name(TRUE, a->service))
        bacnet_problem(w, "unknown_service", "confirmed service choice %u", a->service);
    Pending spill;
    if (!a->seg) {
        Pending *p = request_new(s, st, dir, h, a, a->body_len, &spill);
        if (!p->req)
            p->req = g_byte_array_sized_new((guint)a->body_len);
        g_byte_array_append(p->req, a->body, (guint)a->body_len);
        p->req_done = TRUE;
        if (p->spilled)
            pending_finish(s, st, p); /* not kept: unanswered now */
        return;
    }
    Pending *p = pending_find(st, dir, a->invoke_id);
    gboolean ours = p && p->has_request && p->req_segmented;
    if (a->seq == 0 && !(ours && p->req_next_seq == 1 && !p->req_broken)) {
        p = request_new(s, st, dir, h, a, 0, &spill);
        if (p->spilled) {
            spilled_segments(w, a);
            p->req_broken = a->more;
        }
    } else if (!ours) {
        /* The capture began mid-transfer, or segment 0 was lost: what
         * follows is still this request's, reported incomplete. */
        bacnet_problem(w, "segment_without_start", "segment %u of invoke id %u without segment 0",
                       a->seq, a->invoke_id);
        p = request_new(s, st, dir, h, a, 0, &spill);
        if (p->spilled)
            spilled_segments(w, a);
        p->req_broken = TRUE;
        p->req_next_seq = (guint8)(a->seq + 1);
        add_segment_rec(s, p, &p->req_segs, a);
        if (!a->more)
            p->req_done = TRUE;
        if (p->spilled)
            pending_finish(s, st, p);
        return;
    } else {
        p->last = ots_session_get_time(s);
        if (a->service != p->service)
            bacnet_problem(w, "service_mismatch", "segment of service %u continues service %u",
                           a->service, p->service);
    }
    add_segment_rec(s, p, &p->req_segs, a);
    gboolean dup = FALSE;
    if (!p->req_broken && !add_segment(s, w, p, &p->req, &p->req_next_seq, a, &dup))
        p->req_broken = TRUE;
    if (!a->more && !dup)
        p->req_done = TRUE;
    if (p->spilled)
        pending_finish(s, st, p);
}

/* A segment of a complex ACK answering (@req_dir, invoke id). */
static void
handle_ack_segment(OtsSession *s, BacnetState *st, OtsDirection req_dir, const Hdr *h,
                   const Apdu *a, Walk *w)
{
    Pending spill;
    Pending *p = pending_find(st, req_dir, a->invoke_id);
    gint64 now = ots_session_get_time(s);
    gboolean started = p && p->resp_started;
    if (!p) {
        p = pending_new(s, st, req_dir, a->invoke_id, 0, &spill);
        if (p->spilled) {
            spilled_segments(w, a);
            p->resp_broken = a->more;
        }
    }
    if (a->seq == 0 && started && p->resp_next_seq == 1 && !p->resp_broken) {
        /* segment 0 again: a retransmission, recorded below */
    } else if (a->seq == 0) {
        if (started) { /* restarted from segment 0 */
            reassembly_drop(s, p, &p->resp);
            p->resp_next_seq = 0;
            p->resp_broken = FALSE;
            p->resp_done = FALSE;
        } else {
            p->resp_first_ts = now;
        }
        p->resp_started = TRUE;
        p->resp_service = a->service;
        p->resp_hdr = *h;
    } else if (!started) {
        bacnet_problem(w, "segment_without_start", "segment %u of invoke id %u without segment 0",
                       a->seq, a->invoke_id);
        p->resp_started = TRUE;
        p->resp_broken = TRUE;
        p->resp_first_ts = now;
        p->resp_service = a->service;
        p->resp_hdr = *h;
        p->resp_next_seq = (guint8)(a->seq + 1);
    }
    if (!started && p->has_request && p->service != a->service)
        bacnet_problem(w, "service_mismatch", "answer for service %u to request for service %u",
                       a->service, p->service);
    if (!started && p->has_request && !p->req_done)
        bacnet_problem(w, "bad_segmentation", "answer to invoke id %u before its last segment",
                       a->invoke_id);
    p->last = now;
    add_segment_rec(s, p, &p->resp_segs, a);
    gboolean dup = FALSE;
    if (!p->resp_broken && !add_segment(s, w, p, &p->resp, &p->resp_next_seq, a, &dup))
        p->resp_broken = TRUE;
    if (!a->more && !dup && !p->resp_done) {
        /* Complete; the client's segment ACK of this last segment follows
         * it and belongs to the transaction too (handle_segment_ack). */
        p->resp_done = TRUE;
        p->resp_ts = now;
        p->resp_last_seq = a->seq;
    } else if (!p->resp_done) {
        p->resp_ts = now;
    }
    if (p->spilled)
        pending_finish(s, st, p); /* not kept: reported now */
}

static void
handle_answer(OtsSession *s, BacnetState *st, OtsDirection dir, const Hdr *h, const Apdu *a,
              Walk *w)
{
    /* An abort from the client (SRV clear) ends its own request. */
    OtsDirection req_dir = a->type == APDU_ABORT && !a->srv ? dir : OTS_DIR_REVERSE(dir);

    if (a->type == APDU_COMPLEX_ACK && a->seg) {
        handle_ack_segment(s, st, req_dir, h, a, w);
        bacnet_raise_problems(s, w);
        return;
    }

    Pending *p = pending_find(st, req_dir, a->invoke_id);
    gboolean after_segments = FALSE;
    if (p && p->resp_started) {
        /* An answer after (or aborting) a segmented complex ACK: that
         * message is reported as it stands, then this answer on its own. */
        bacnet_raise_problems(s, w);
        pending_finish(s, st, p);
        p = NULL;
        after_segments = TRUE;
    }
    if ((!p || !p->has_request) && !after_segments)
        bacnet_problem(w, "response_without_request", "%s for invoke id %u without a request",
                       bacnet_apdu_type_name(a->type), a->invoke_id);
    else if (p &&
             (a->type == APDU_SIMPLE_ACK || a->type == APDU_COMPLEX_ACK || a->type == APDU_ERROR) &&
             a->service != p->service)
        bacnet_problem(w, "service_mismatch", "answer for service %u to request for service %u",
                       a->service, p->service);
    if (p && p->has_request && !p->req_done && a->type != APDU_ABORT)
        bacnet_problem(w, "bad_segmentation", "answer to invoke id %u before its last segment",
                       a->invoke_id);
    Resp resp = {
        .hdr = *h,
        .type = a->type,
        .invoke_id = a->invoke_id,
        .service = a->service,
        .reason = a->reason,
        .srv = a->srv,
        .body = a->body,
        .body_len = a->body_len,
    };
    bacnet_raise_problems(s, w);
    if (p) {
        g_queue_unlink(&st->pending, &p->link);
        emit_confirmed(s, st, p, &resp);
        pending_free(s, st, p);
    } else {
        Pending orphan = {.dir = req_dir, .invoke_id = a->invoke_id};
        emit_confirmed(s, st, &orphan, &resp);
    }
}

static void
handle_segment_ack(OtsSession *s, BacnetState *st, OtsDirection dir, const Hdr *h, const Apdu *a)
{
    /* A server acknowledges request segments, a client response segments;
     * the ACK joins the message it acknowledges while that is pending. */
    OtsDirection req_dir = a->srv ? OTS_DIR_REVERSE(dir) : dir;
    Pending *p = pending_find(st, req_dir, a->invoke_id);
    SegList *list = NULL;
    if (p && a->srv && p->has_request && p->req_segmented)
        list = &p->req_acks;
    else if (p && !a->srv && p->resp_started)
        list = &p->resp_acks;
    if (list) {
        SegRec r = {
            .ts = ots_session_get_time(s),
            .seq = a->seq,
            .window = a->window,
            .bvlc = h->bvlc,
            .nak = a->nak,
            .srv = a->srv,
        };
        seglist_add(s, p, list, &r);
        p->last = r.ts;
        /* The ACK of the last segment ends the transfer (a negative one
         * asks for segments again). */
        if (list == &p->resp_acks && p->resp_done && !a->nak && a->seq == p->resp_last_seq)
            pending_finish(s, st, p);
        return;
    }
    OtsEvent *e = begin_one_way(s, dir, 0, "segment_ack", OTS_OP_OTHER, OTS_TX_NO_RESPONSE,
                                "application", h, "request");
    if (!e)
        return;
    put_apdu_head(e, APDU_SEGMENT_ACK, a->invoke_id, TRUE);
    ots_event_add_uint(e, "sequence_number", a->seq);
    ots_event_add_uint(e, "window_size", a->window);
    ots_event_add_bool(e, "negative_ack", a->nak);
    ots_event_add_bool(e, "sent_by_server", a->srv);
    ots_event_commit(e);
}

/* ---- network layer ----------------------------------------------------- */

static void
handle_network_message(OtsSession *s, OtsDirection dir, const Hdr *h, guint8 type,
                       gboolean has_vendor, guint16 vendor, OtsReader *r)
{
    OtsOpClass op = OTS_OP_OTHER;
    switch (type) {
    case 0x00:
    case 0x01:
    case 0x02:
    case 0x12:
    case 0x13:
        op = OTS_OP_DISCOVERY;
        break;
    case 0x06:
    case 0x07:
    case 0x08:
    case 0x09:
        op = OTS_OP_CONFIG;
        break;
    case 0x04:
    case 0x05:
        op = OTS_OP_COMM_CONTROL;
        break;
    }
    const char *name = bacnet_network_message_name(type);
    if (!name)
        name = type >= 0x80 ? "proprietary" : "unknown";
    Problem raised[MAX_PROBLEMS];
    Walk w = {.dir = dir, .raised = raised};
    OtsEvent *e =
        begin_one_way(s, dir, type, name, op, OTS_TX_NO_RESPONSE, "network", h, "request");
    if (!e)
        return;
    w.e = e;
    ots_event_add_uint(e, "network_message_type", type);
    ots_event_add_string(e, "network_message_name", name);
    if (has_vendor)
        ots_event_add_uint(e, "vendor_id", vendor);
    guint16 net;
    guint8 b;
    switch (type) {
    case 0x00: /* who-is-router: optional network */
    case 0x12:
        if (ots_reader_get_u16_be(r, &net))
            ots_event_add_uint(e, "network", net);
        break;
    case 0x01:
    case 0x04:
    case 0x05: { /* lists of networks */
        guint n = 0;
        ots_event_begin_array(e, "networks");
        while (ots_reader_get_u16_be(r, &net))
            if (n++ < MAX_ITEMS)
                ots_event_add_uint(e, NULL, net);
        ots_event_end_array(e);
        if (type == 0x01 && n == 0)
            bacnet_problem(&w, "bad_length", "i-am-router-to-network without networks");
        break;
    }
    case 0x02: /* i-could-be-router: network, performance index */
        if (ots_reader_get_u16_be(r, &net) && ots_reader_get_u8(r, &b)) {
            ots_event_add_uint(e, "network", net);
            ots_event_add_uint(e, "performance_index", b);
        } else {
            bacnet_problem(&w, "bad_length", "i-could-be-router-to-network truncated");
        }
        break;
    case 0x03: /* reject: reason, network */
        if (ots_reader_get_u8(r, &b) && ots_reader_get_u16_be(r, &net)) {
            ots_event_add_uint(e, "reject_reason", b);
            ots_event_add_uint(e, "network", net);
        } else {
            bacnet_problem(&w, "bad_length", "reject-message-to-network truncated");
        }
        break;
    case 0x13: /* network-number-is: network, configured flag */
        if (ots_reader_get_u16_be(r, &net) && ots_reader_get_u8(r, &b)) {
            ots_event_add_uint(e, "network", net);
            ots_event_add_bool(e, "configured", b != 0);
        } else {
            bacnet_problem(&w, "bad_length", "network-number-is truncated");
        }
        break;
    default:
        ots_event_add_uint(e, "data_length", ots_reader_remaining(r));
        ots_reader_skip(r, ots_reader_remaining(r));
        break;
    }
    ots_event_commit(e);
    if (type < 0x80 && !bacnet_network_message_name(type))
        bacnet_problem(&w, "unknown_network_message", "network message type %u", type);
    bacnet_raise_problems(s, &w);
}

/* ---- BVLC-only functions (BBMD and foreign devices) -------------------- */

static OtsOpClass
bvlc_class(guint8 f)
{
    switch (f) {
    case BVLC_WRITE_BDT:
    case BVLC_DELETE_FDT_ENTRY:
        return OTS_OP_CONFIG;
    case BVLC_READ_BDT:
    case BVLC_READ_FDT:
        return OTS_OP_READ;
    case BVLC_REGISTER_FD:
        return OTS_OP_SESSION;
    default:
        return OTS_OP_OTHER;
    }
}

static void
emit_bvlc(OtsSession *s, OtsDirection req_dir, const BvlcPending *req, const Hdr *rh, guint result,
          guint entries)
{
    guint8 f = req ? req->function : rh->bvlc;
    OtsTransactionInfo info = {
        .request_dir = req_dir,
        .function = f,
        .function_name = bacnet_bvlc_name(f) ? bacnet_bvlc_name(f) : "unknown",
        .op_class = bvlc_class(f),
        .request_ts = req ? req->ts : 0,
        .response_ts = rh ? ots_session_get_time(s) : 0,
    };
    if (!rh)
        info.status = OTS_TX_UNANSWERED;
    else if (!req)
        info.status = OTS_TX_NO_REQUEST;
    else if (rh->bvlc == BVLC_RESULT && result != 0)
        info.status = OTS_TX_EXCEPTION;
    else
        info.status = OTS_TX_OK;
    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    ots_event_begin_object(e, "bacnet");
    ots_event_add_string(e, "layer", "bvlc");
    if (req) {
        Hdr qh = {.bvlc = req->function};
        ots_event_begin_object(e, "request");
        put_hdr(e, &qh, NULL);
        if (req->function == BVLC_REGISTER_FD)
            ots_event_add_uint(e, "time_to_live", req->ttl);
        if (req->function == BVLC_WRITE_BDT)
            ots_event_add_uint(e, "entries", req->entries);
        ots_event_end_object(e);
    }
    if (rh) {
        ots_event_begin_object(e, "response");
        put_hdr(e, rh, NULL);
        if (rh->bvlc == BVLC_RESULT)
            ots_event_add_uint(e, "result_code", result);
        else
            ots_event_add_uint(e, "entries", entries);
        ots_event_end_object(e);
    }
    ots_event_end_object(e);
    ots_event_commit(e);
}

static void
handle_bvlc_only(OtsSession *s, BacnetState *st, OtsDirection dir, const Hdr *h, OtsReader *r,
                 Walk *w)
{
    guint16 v16 = 0;
    gsize rest = ots_reader_remaining(r);
    BvlcPending *mine = &st->bvlc[dir];
    BvlcPending *theirs = &st->bvlc[OTS_DIR_REVERSE(dir)];

    switch (h->bvlc) {
    case BVLC_WRITE_BDT:
    case BVLC_READ_BDT:
    case BVLC_REGISTER_FD:
    case BVLC_READ_FDT:
    case BVLC_DELETE_FDT_ENTRY:
        if (h->bvlc == BVLC_WRITE_BDT && rest % 10)
            bacnet_problem(w, "bad_bvlc_length", "write-BDT of %" G_GSIZE_FORMAT " bytes", rest);
        if (h->bvlc == BVLC_REGISTER_FD && (rest != 2 || !ots_reader_get_u16_be(r, &v16)))
            bacnet_problem(w, "bad_bvlc_length",
                           "register-foreign-device of %" G_GSIZE_FORMAT " bytes", rest);
        if (h->bvlc == BVLC_DELETE_FDT_ENTRY && rest != 6)
            bacnet_problem(w, "bad_bvlc_length", "delete-FDT-entry of %" G_GSIZE_FORMAT " bytes",
                           rest);
        if ((h->bvlc == BVLC_READ_BDT || h->bvlc == BVLC_READ_FDT) && rest != 0)
            bacnet_problem(w, "bad_bvlc_length", "%" G_GSIZE_FORMAT " bytes after %s", rest,
                           bacnet_bvlc_name(h->bvlc));
        bacnet_raise_problems(s, w);
        if (mine->valid) {
            BvlcPending old = *mine;
            mine->valid = FALSE;
            emit_bvlc(s, dir, &old, NULL, 0, 0);
        }
        *mine = (BvlcPending){
            .valid = TRUE,
            .ts = ots_session_get_time(s),
            .function = h->bvlc,
            .ttl = v16,
            .entries = (guint)(rest / 10),
        };
        return;
    case BVLC_RESULT:
    case BVLC_READ_BDT_ACK:
    case BVLC_READ_FDT_ACK: {
        /* BDT entries: address, port, mask; FDT entries: address, port, TTL, remaining. */
        guint entry_len = 10;
        if (h->bvlc == BVLC_RESULT) {
            if (rest != 2 || !ots_reader_get_u16_be(r, &v16))
                bacnet_problem(w, "bad_bvlc_length", "BVLC-result of %" G_GSIZE_FORMAT " bytes",
                               rest);
        } else if (rest % entry_len) {
            bacnet_problem(w, "bad_bvlc_length", "%s of %" G_GSIZE_FORMAT " bytes",
                           bacnet_bvlc_name(h->bvlc), rest);
        }
        if (!theirs->valid)
            bacnet_problem(w, "response_without_request", "%s without a request",
                           bacnet_bvlc_name(h->bvlc));
        bacnet_raise_problems(s, w);
        BvlcPending req = *theirs;
        theirs->valid = FALSE;
        emit_bvlc(s, OTS_DIR_REVERSE(dir), req.valid ? &req : NULL, h, v16,
                  (guint)(rest / entry_len));
        return;
    }
    default: { /* secure BVLL: one way, opaque */
        bacnet_raise_problems(s, w);
        OtsEvent *e = begin_one_way(s, dir, h->bvlc, bacnet_bvlc_name(h->bvlc), OTS_OP_OTHER,
                                    OTS_TX_NO_RESPONSE, "bvlc", h, "request");
        if (!e)
            return;
        ots_event_add_uint(e, "data_length", rest);
        ots_event_commit(e);
        return;
    }
    }
}

/* ---- framing ----------------------------------------------------------- */

/* NPDU header into @h; @r is left on the APDU or network message body. */
static gboolean
parse_npdu(Walk *w, OtsReader *r, Hdr *h, gboolean *netmsg, guint8 *msg_type, gboolean *has_vendor,
           guint16 *vendor)
{
    guint8 version;
    if (!ots_reader_get_u8(r, &version) || !ots_reader_get_u8(r, &h->control)) {
        bacnet_problem(w, "bad_npdu", "NPDU header truncated");
        return FALSE;
    }
    if (version != NPDU_VERSION) {
        bacnet_problem(w, "bad_npdu_version", "NPDU version %u (expected 1)", version);
        return FALSE;
    }
    h->has_npdu = TRUE;
    if (h->control & 0x50)
        bacnet_problem(w, "bad_npdu", "reserved NPDU control bits set (0x%02x)", h->control);
    if (h->control & 0x20) {
        const guint8 *a;
        if (!ots_reader_get_u16_be(r, &h->dnet) || !ots_reader_get_u8(r, &h->dlen) ||
            !ots_reader_get_data(r, h->dlen, &a)) {
            bacnet_problem(w, "bad_npdu", "NPDU destination truncated");
            return FALSE;
        }
        memcpy(h->dadr, a, MIN(h->dlen, MAX_MAC));
        if (h->dnet == 0)
            bacnet_problem(w, "bad_npdu", "destination network 0");
    }
    if (h->control & 0x08) {
        const guint8 *a;
        if (!ots_reader_get_u16_be(r, &h->snet) || !ots_reader_get_u8(r, &h->slen) ||
            !ots_reader_get_data(r, h->slen, &a)) {
            bacnet_problem(w, "bad_npdu", "NPDU source truncated");
            return FALSE;
        }
        memcpy(h->sadr, a, MIN(h->slen, MAX_MAC));
        if (h->snet == 0 || h->snet == 0xffff || h->slen == 0)
            bacnet_problem(w, "bad_npdu", "source network %u with a %u-byte address", h->snet,
                           h->slen);
    }
    if ((h->control & 0x20) && !ots_reader_get_u8(r, &h->hop_count)) {
        bacnet_problem(w, "bad_npdu", "NPDU hop count missing");
        return FALSE;
    }
    *netmsg = (h->control & 0x80) != 0;
    *has_vendor = FALSE;
    if (*netmsg) {
        if (!ots_reader_get_u8(r, msg_type)) {
            bacnet_problem(w, "bad_npdu", "network message type missing");
            return FALSE;
        }
        if (*msg_type >= 0x80) {
            if (!ots_reader_get_u16_be(r, vendor)) {
                bacnet_problem(w, "bad_npdu", "proprietary network message without vendor id");
                return FALSE;
            }
            *has_vendor = TRUE;
        }
    }
    return TRUE;
}

static void expire(OtsSession *s, BacnetState *st, gint64 now);

static OtsParseResult
bacnet_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    BacnetState *st = state;
    Problem raised[MAX_PROBLEMS];
    Walk w = {.dir = dir, .raised = raised};
    Hdr h;
    memset(&h, 0, sizeof(h)); /* padding too: the header is a memo key (put_hdr()) */
    guint8 type;
    guint16 len;
    gsize total = ots_reader_remaining(r);
    gint64 now = ots_session_get_time(s);

    /* Expire here too, not only on tick(): the core ticks after the parse
     * and at most once a second, and an expiry must precede the datagram
     * that reveals it. */
    if (now - st->last_expiry >= G_USEC_PER_SEC)
        expire(s, st, now);

    if (!ots_reader_get_u8(r, &type) || !ots_reader_get_u8(r, &h.bvlc) ||
        !ots_reader_get_u16_be(r, &len)) {
        ots_session_anomaly(s, dir, "bad_bvlc_length", "datagram shorter than a BVLC header");
        ots_reader_skip(r, ots_reader_remaining(r));
        return OTS_PARSE_MALFORMED;
    }
    if (type != BVLC_TYPE_BIP) {
        ots_session_anomaly(s, dir, "bad_bvlc_type", "BVLC type is not BACnet/IP (0x81)");
        ots_reader_skip(r, ots_reader_remaining(r));
        return OTS_PARSE_MALFORMED;
    }
    if (len < BVLC_HEADER_LEN) {
        ots_session_anomaly(s, dir, "bad_bvlc_length", "BVLC length shorter than its header");
        ots_reader_skip(r, ots_reader_remaining(r));
        return OTS_PARSE_MALFORMED;
    }
    /* UDP says where the datagram ends; a BVLC length that disagrees is
     * reported, and the datagram is dissected whole (as Wireshark does:
     * devices that get the length wrong still get answered). */
    if (len != total)
        bacnet_problem(&w, "bad_bvlc_length",
                       "BVLC length %u in a datagram of %" G_GSIZE_FORMAT " bytes", len, total);
    OtsReader body = OTS_READER_INIT(NULL, 0);
    ots_reader_get_sub_reader(r, &body, total - BVLC_HEADER_LEN);

    switch (h.bvlc) {
    case BVLC_FORWARDED_NPDU:
        if (!ots_reader_copy(&body, h.origin, sizeof(h.origin))) {
            bacnet_problem(&w, "bad_bvlc_length", "forwarded NPDU without its origin address");
            bacnet_raise_problems(s, &w);
            return OTS_PARSE_MALFORMED;
        }
        h.forwarded = TRUE;
        break;
    case BVLC_DISTRIBUTE_BROADCAST:
    case BVLC_ORIGINAL_UNICAST:
    case BVLC_ORIGINAL_BROADCAST:
        break;
    case BVLC_RESULT:
    case BVLC_WRITE_BDT:
    case BVLC_READ_BDT:
    case BVLC_READ_BDT_ACK:
    case BVLC_REGISTER_FD:
    case BVLC_READ_FDT:
    case BVLC_READ_FDT_ACK:
    case BVLC_DELETE_FDT_ENTRY:
    case BVLC_SECURE_BVLL:
        handle_bvlc_only(s, st, dir, &h, &body, &w);
        return OTS_PARSE_OK;
    default:
        bacnet_problem(&w, "unknown_bvlc_function", "BVLC function 0x%02x", h.bvlc);
        bacnet_raise_problems(s, &w);
        return OTS_PARSE_MALFORMED;
    }

    gboolean netmsg, has_vendor;
    guint8 msg_type = 0;
    guint16 vendor = 0;
    if (!parse_npdu(&w, &body, &h, &netmsg, &msg_type, &has_vendor, &vendor)) {
        bacnet_raise_problems(s, &w);
        return OTS_PARSE_MALFORMED;
    }
    if (netmsg) {
        bacnet_raise_problems(s, &w);
        handle_network_message(s, dir, &h, msg_type, has_vendor, vendor, &body);
        return OTS_PARSE_OK;
    }
    Apdu a;
    if (!parse_apdu(&w, &body, &a)) {
        bacnet_raise_problems(s, &w);
        return OTS_PARSE_MALFORMED;
    }
    switch (a.type) {
    case APDU_CONFIRMED:
        handle_confirmed(s, st, dir, &h, &a, &w);
        bacnet_raise_problems(s, &w);
        break;
    case APDU_UNCONFIRMED:
        bacnet_raise_problems(s, &w);
        handle_unconfirmed(s, dir, &h, &a);
        break;
    case APDU_SEGMENT_ACK:
        bacnet_raise_problems(s, &w);
        handle_segment_ack(s, st, dir, &h, &a);
        break;
    default:
        handle_answer(s, st, dir, &h, &a, &w);
        bacnet_raise_problems(s, &w);
        break;
    }
    return OTS_PARSE_OK;
}

static OtsProbeResult
bacnet_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    guint8 type, function;
    guint16 len;
    if (l4 != OTS_L4_UDP)
        return OTS_PROBE_NO;
    if (!ots_reader_peek_u8(r, 0, &type) || !ots_reader_peek_u8(r, 1, &function) ||
        !ots_reader_peek_u16_be(r, 2, &len))
        return OTS_PROBE_NO;
    if (type != BVLC_TYPE_BIP || function > BVLC_SECURE_BVLL || len != ots_reader_remaining(r))
        return OTS_PROBE_NO;
    if (function == BVLC_ORIGINAL_UNICAST || function == BVLC_ORIGINAL_BROADCAST ||
        function == BVLC_DISTRIBUTE_BROADCAST) {
        guint8 version;
        if (!ots_reader_peek_u8(r, 4, &version) || version != NPDU_VERSION)
            return OTS_PROBE_NO;
    }
    return OTS_PROBE_YES;
}

static gpointer
bacnet_state_new(OtsSession *s)
{
    BacnetState *st = g_new0(BacnetState, 1);
    g_queue_init(&st->pending);
    return st;
}

static void
bacnet_state_free(gpointer state)
{
    BacnetState *st = state;
    GList *l;
    while ((l = g_queue_pop_head_link(&st->pending)))
        pending_free(NULL, NULL, l->data);
    if (st->spare)
        pending_free(NULL, NULL, st->spare);
    g_free(st->hdr_memo); /* flow end frees it; not if the flow never ended */
    g_free(st);
}

static void
bacnet_flow_end(OtsSession *s, gpointer state)
{
    BacnetState *st = state;
    while (st->pending.head)
        pending_finish(s, st, st->pending.head->data);
    for (guint d = 0; d < 2; d++) {
        if (st->bvlc[d].valid) {
            BvlcPending old = st->bvlc[d];
            st->bvlc[d].valid = FALSE;
            emit_bvlc(s, (OtsDirection)d, &old, NULL, 0, 0);
        }
    }
    if (st->hdr_memo) {
        /* No more transactions: the memos go back to the budget now. */
        g_clear_pointer(&st->hdr_memo, g_free);
        ots_session_refund(s, 2 * sizeof(OtsEventMemo));
    }
}

/* Ends what has waited too long; a segmented transfer still moving is kept. */
static void
expire(OtsSession *s, BacnetState *st, gint64 now)
{
    st->last_expiry = now;
    GList *l = st->pending.head;
    while (l) {
        GList *next = l->next;
        Pending *p = l->data;
        if (now - p->last > (p->resp_done ? FINAL_ACK_WAIT_US : PENDING_TIMEOUT_US))
            pending_finish(s, st, p);
        l = next;
    }
    for (guint d = 0; d < 2; d++) {
        if (st->bvlc[d].valid && now - st->bvlc[d].ts > PENDING_TIMEOUT_US) {
            BvlcPending old = st->bvlc[d];
            st->bvlc[d].valid = FALSE;
            emit_bvlc(s, (OtsDirection)d, &old, NULL, 0, 0);
        }
    }
}

static void
bacnet_tick(OtsSession *s, gpointer state, gint64 now)
{
    expire(s, state, now);
}

static const OtsDissectorInfo bacnet_info = {
    .abi_major = OTS_DISSECTOR_ABI_MAJOR,
    .abi_minor = OTS_DISSECTOR_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "bacnet",
    .version = "0.1.0",
    .description = "BACnet/IP: BVLC, NPDU, APDU, segmentation, common services",
    .udp_ports = (const guint16[]){BACNET_PORT, 0},
    .probe = bacnet_probe,
    .state_new = bacnet_state_new,
    .state_free = bacnet_state_free,
    .parse = bacnet_parse,
    .flow_end = bacnet_flow_end,
    .tick = bacnet_tick,
};

OTS_DISSECTOR_DEFINE(bacnet_info)
