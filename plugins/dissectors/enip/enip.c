/* SPDX-License-Identifier: Apache-2.0 */

/* EtherNet/IP + CIP dissector: encapsulation framing on TCP/UDP 44818,
 * common packet format items, CIP requests and replies (paths, general and
 * extended status, Multiple Service Packet, Unconnected Send, Forward Open /
 * Close), request/response pairing with latency, identity replies as asset
 * facts and connected I/O on UDP 2222 counted per connection.
 * README.md documents every field it emits.
 *
 * Each message is parsed into a small fixed-size summary (EncapMsg) while
 * anomalies are raised; the transaction event is written afterwards from the
 * request and response summaries, because a session has one open event at a
 * time. Pending requests keep only their summary, never the packet bytes. */

#include <otsensor/dissector.h>
#include <stdio.h>

#include "enip-cip.h"

#define ENIP_PORT 44818
#define ENIP_IO_PORT 2222
#define ENCAP_HEADER_LEN 24
#define MAX_PENDING 128
#define PENDING_TIMEOUT_US (30 * G_USEC_PER_SEC)
#define MAX_IO_CONNECTIONS 64
#define IO_REPORT_INTERVAL_US (60 * G_USEC_PER_SEC)
#define MAX_LIST_SERVICES 4

enum {
    CMD_NOP = 0x0000,
    CMD_LIST_SERVICES = 0x0004,
    CMD_LIST_IDENTITY = 0x0063,
    CMD_LIST_INTERFACES = 0x0064,
    CMD_REGISTER_SESSION = 0x0065,
    CMD_UNREGISTER_SESSION = 0x0066,
    CMD_SEND_RR_DATA = 0x006f,
    CMD_SEND_UNIT_DATA = 0x0070,
    CMD_INDICATE_STATUS = 0x0072,
    CMD_CANCEL = 0x0073,
};

enum {
    ITEM_NULL_ADDRESS = 0x0000,
    ITEM_LIST_IDENTITY = 0x000c,
    ITEM_CONNECTED_ADDRESS = 0x00a1,
    ITEM_CONNECTED_DATA = 0x00b1,
    ITEM_UNCONNECTED_DATA = 0x00b2,
    ITEM_LIST_SERVICES = 0x0100,
    ITEM_SOCKADDR_OT = 0x8000,
    ITEM_SOCKADDR_TO = 0x8001,
    ITEM_SEQUENCED_ADDRESS = 0x8002,
};

static const char *
command_name(guint16 cmd)
{
    switch (cmd) {
    case CMD_NOP:
        return "nop";
    case CMD_LIST_SERVICES:
        return "list_services";
    case CMD_LIST_IDENTITY:
        return "list_identity";
    case CMD_LIST_INTERFACES:
        return "list_interfaces";
    case CMD_REGISTER_SESSION:
        return "register_session";
    case CMD_UNREGISTER_SESSION:
        return "unregister_session";
    case CMD_SEND_RR_DATA:
        return "send_rr_data";
    case CMD_SEND_UNIT_DATA:
        return "send_unit_data";
    case CMD_INDICATE_STATUS:
        return "indicate_status";
    case CMD_CANCEL:
        return "cancel";
    default:
        return NULL;
    }
}

static OtsOpClass
command_class(guint16 cmd)
{
    switch (cmd) {
    case CMD_LIST_SERVICES:
    case CMD_LIST_IDENTITY:
    case CMD_LIST_INTERFACES:
        return OTS_OP_DISCOVERY;
    case CMD_NOP:
    case CMD_REGISTER_SESSION:
    case CMD_UNREGISTER_SESSION:
        return OTS_OP_SESSION;
    default:
        return OTS_OP_OTHER;
    }
}

/* Commands without a reply by design. */
static gboolean
command_one_way(guint16 cmd)
{
    return cmd == CMD_NOP || cmd == CMD_UNREGISTER_SESSION || cmd == CMD_INDICATE_STATUS ||
           cmd == CMD_CANCEL;
}

static const char *
encap_status_name(guint32 st)
{
    switch (st) {
    case 0x00:
        return "success";
    case 0x01:
        return "invalid_command";
    case 0x02:
        return "insufficient_memory";
    case 0x03:
        return "incorrect_data";
    case 0x64:
        return "invalid_session_handle";
    case 0x65:
        return "invalid_length";
    case 0x69:
        return "unsupported_protocol_version";
    default:
        return "unknown";
    }
}

/* ---- message summaries --------------------------------------------------- */

typedef CipIdentity Identity;

typedef struct {
    guint16 version;
    guint16 flags;
    char name[17];
} ServiceEntry;

/* One encapsulation message, as much of it as the event needs. */
typedef struct {
    gint64 ts;
    guint16 command;
    guint16 length;
    guint32 session;
    guint32 status;
    guint8 context[8];
    /* Common packet format */
    guint16 item_count;
    gboolean has_conn_id;
    guint32 conn_id;
    gboolean has_seq; /* CIP sequence count of a connected data item */
    guint16 seq;
    /* RegisterSession */
    gboolean has_register;
    guint16 protocol_version;
    guint16 session_options;
    /* ListIdentity / ListServices / ListInterfaces replies */
    gboolean has_identity;
    Identity identity;
    guint8 n_services;
    ServiceEntry services[MAX_LIST_SERVICES];
    gboolean has_interfaces;
    guint16 n_interfaces;
    /* CIP (last: see Pending) */
    gboolean has_cip;
    CipMessage cip;
} EncapMsg;

/* A kept request. Most carry one CIP service, not CIP_MAX_SERVICES: it is
 * allocated up to the Multiple Service Packet entries it uses
 * (pending_size()), which req.cip.services, the last member, allows. */
typedef struct {
    GList link; /* in EnipState.pending, oldest first; data points here */
    EncapMsg req;
} Pending;

G_STATIC_ASSERT(G_STRUCT_OFFSET(CipMessage, services) + sizeof(((CipMessage *)NULL)->services) ==
                sizeof(CipMessage));
G_STATIC_ASSERT(G_STRUCT_OFFSET(Pending, req.cip) + sizeof(CipMessage) == sizeof(Pending));

typedef struct {
    guint32 conn_id;
    OtsDirection dir;
    gint64 first_ts;
    gint64 last_ts;
    guint64 packets;
    guint64 bytes;
    guint32 first_seq;
    guint32 last_seq;
    guint64 lost;
    guint64 out_of_order;
    gboolean has_seq;
} IoConn;

typedef struct {
    GQueue pending;
    gboolean resync[2];
    gboolean has_session;
    guint32 session;
    IoConn io[MAX_IO_CONNECTIONS];
    guint n_io;
    gint64 io_reported;
    guint64 io_overflow;
} EnipState;

/* ---- anomalies ------------------------------------------------------------ */

typedef struct {
    OtsSession *s;
    OtsDirection dir;
    guint16 command;
    const char *raised[4];
    guint problems;
} Check;

static void
check_raise(gpointer user, const char *code, const char *msg)
{
    Check *c = user;
    c->problems++;
    if (!c->s)
        return;
    guint i;
    for (i = 0; i < G_N_ELEMENTS(c->raised) && c->raised[i]; i++)
        if (strcmp(c->raised[i], code) == 0)
            return;
    if (i < G_N_ELEMENTS(c->raised))
        c->raised[i] = code;
    OtsEvent *a = ots_session_begin_anomaly(c->s, c->dir, code, msg);
    if (!a)
        return;
    ots_event_begin_object(a, "enip");
    ots_event_add_uint(a, "command", c->command);
    ots_event_end_object(a);
    ots_event_commit(a);
}

static void problem(Check *c, const char *code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
problem(Check *c, const char *code, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    g_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    check_raise(c, code, msg);
}

/* ---- command-specific data -------------------------------------------------- */

static void
copy_text(char *dst, gsize cap, const guint8 *src, gsize n)
{
    gsize k = MIN(n, cap - 1);
    for (gsize i = 0; i < k; i++)
        dst[i] = src[i] ? (char)src[i] : ' ';
    dst[k] = '\0';
}

/* The body of a ListIdentity (0x0c) item. */
static gboolean
parse_identity(OtsReader *r, Identity *id)
{
    guint16 version, family, port;
    guint32 addr;
    guint8 name_len;
    const guint8 *name;
    memset(id, 0, sizeof(*id));
    if (!ots_reader_get_u16_le(r, &version) || !ots_reader_get_u16_be(r, &family) ||
        !ots_reader_get_u16_be(r, &port) || !ots_reader_get_u32_be(r, &addr) ||
        !ots_reader_skip(r, 8) || !ots_reader_get_u16_le(r, &id->vendor) ||
        !ots_reader_get_u16_le(r, &id->device_type) ||
        !ots_reader_get_u16_le(r, &id->product_code) || !ots_reader_get_u8(r, &id->rev_major) ||
        !ots_reader_get_u8(r, &id->rev_minor) || !ots_reader_get_u16_le(r, &id->status) ||
        !ots_reader_get_u32_le(r, &id->serial) || !ots_reader_get_u8(r, &name_len) ||
        !ots_reader_get_data(r, name_len, &name))
        return FALSE;
    id->sock_addr = addr;
    id->sock_port = port;
    copy_text(id->name, sizeof(id->name), name, name_len);
    id->has_state = ots_reader_get_u8(r, &id->state);
    return TRUE;
}

/* Walks the common packet format of a ListIdentity / ListServices /
 * ListInterfaces reply. */
static void
parse_list_reply(Check *c, EncapMsg *m, OtsReader *r)
{
    guint16 count;
    if (ots_reader_remaining(r) == 0)
        return; /* an empty reply: no items */
    if (!ots_reader_get_u16_le(r, &count)) {
        problem(c, "bad_cpf", "%s reply: truncated item count", command_name(m->command));
        return;
    }
    m->item_count = count;
    if (m->command == CMD_LIST_INTERFACES) {
        m->has_interfaces = TRUE;
        m->n_interfaces = count;
    }
    for (guint i = 0; i < count; i++) {
        guint16 type, len;
        OtsReader item;
        if (!ots_reader_get_u16_le(r, &type) || !ots_reader_get_u16_le(r, &len) ||
            !ots_reader_get_sub_reader(r, &item, len)) {
            problem(c, "bad_cpf", "%s reply: item %u runs past the message",
                    command_name(m->command), i);
            return;
        }
        if (type == ITEM_LIST_IDENTITY && m->command == CMD_LIST_IDENTITY && !m->has_identity) {
            if (parse_identity(&item, &m->identity))
                m->has_identity = TRUE;
            else
                problem(c, "bad_identity", "identity item of %u bytes is truncated", len);
        } else if (type == ITEM_LIST_SERVICES && m->command == CMD_LIST_SERVICES &&
                   m->n_services < MAX_LIST_SERVICES) {
            ServiceEntry *se = &m->services[m->n_services];
            const guint8 *name;
            if (ots_reader_get_u16_le(&item, &se->version) &&
                ots_reader_get_u16_le(&item, &se->flags) && ots_reader_get_data(&item, 16, &name)) {
                copy_text(se->name, sizeof(se->name), name, strnlen((const char *)name, 16));
                m->n_services++;
            } else {
                problem(c, "bad_cpf", "services item of %u bytes is truncated", len);
            }
        }
    }
    if (ots_reader_remaining(r) > 0)
        problem(c, "bad_length", "%s reply: %" G_GSIZE_FORMAT " bytes after the last item",
                command_name(m->command), ots_reader_remaining(r));
}

/* SendRRData / SendUnitData: interface handle, timeout, CPF items; the data
 * item carries the CIP message. */
static void
parse_send_data(Check *c, EncapMsg *m, OtsReader *r, gboolean request, const CipMessage *req_cip)
{
    guint32 handle;
    guint16 timeout, count;
    if (!ots_reader_get_u32_le(r, &handle) || !ots_reader_get_u16_le(r, &timeout) ||
        !ots_reader_get_u16_le(r, &count)) {
        problem(c, "bad_length", "%s: command data shorter than 8 bytes", command_name(m->command));
        return;
    }
    if (handle != 0)
        problem(c, "bad_interface_handle", "interface handle %u (CIP is 0)", handle);
    m->item_count = count;
    if (count < 2)
        problem(c, "bad_cpf", "%u CPF items (an address and a data item are required)", count);
    gboolean seen_data = FALSE;
    for (guint i = 0; i < count; i++) {
        guint16 type, len;
        OtsReader item;
        if (!ots_reader_get_u16_le(r, &type) || !ots_reader_get_u16_le(r, &len) ||
            !ots_reader_get_sub_reader(r, &item, len)) {
            problem(c, "bad_cpf", "CPF item %u runs past the message", i);
            return;
        }
        switch (type) {
        case ITEM_NULL_ADDRESS:
            if (len != 0)
                problem(c, "bad_cpf", "null address item of %u bytes", len);
            break;
        case ITEM_CONNECTED_ADDRESS:
            if (len != 4 || !ots_reader_get_u32_le(&item, &m->conn_id))
                problem(c, "bad_cpf", "connected address item of %u bytes", len);
            else
                m->has_conn_id = TRUE;
            break;
        case ITEM_SEQUENCED_ADDRESS:
            if (len != 8 || !ots_reader_get_u32_le(&item, &m->conn_id))
                problem(c, "bad_cpf", "sequenced address item of %u bytes", len);
            else
                m->has_conn_id = TRUE;
            break;
        case ITEM_CONNECTED_DATA:
        case ITEM_UNCONNECTED_DATA:
            if (seen_data) {
                problem(c, "bad_cpf", "more than one data item");
                break;
            }
            seen_data = TRUE;
            if (type == ITEM_CONNECTED_DATA) {
                if (!ots_reader_get_u16_le(&item, &m->seq)) {
                    problem(c, "bad_cpf", "connected data item without a sequence count");
                    break;
                }
                m->has_seq = TRUE;
            }
            m->has_cip = TRUE;
            if (request)
                cip_parse_request(&item, &m->cip, check_raise, c);
            else
                cip_parse_response(&item, &m->cip, req_cip, check_raise, c);
            break;
        case ITEM_SOCKADDR_OT:
        case ITEM_SOCKADDR_TO:
            break;
        default:
            problem(c, "bad_cpf", "unknown CPF item type 0x%04x", type);
            break;
        }
    }
    if (!seen_data)
        problem(c, "bad_cpf", "%s without a data item", command_name(m->command));
    if (ots_reader_remaining(r) > 0)
        problem(c, "bad_length", "%" G_GSIZE_FORMAT " bytes after the last CPF item",
                ots_reader_remaining(r));
}

/* Parses one whole encapsulation message (@r covers header + data). */
static void
parse_message(Check *c, EncapMsg *m, OtsReader *r, gboolean request, const EncapMsg *req)
{
    memset(m, 0, sizeof(*m));
    guint32 options = 0;
    ots_reader_get_u16_le(r, &m->command);
    ots_reader_get_u16_le(r, &m->length);
    ots_reader_get_u32_le(r, &m->session);
    ots_reader_get_u32_le(r, &m->status);
    ots_reader_copy(r, m->context, 8);
    ots_reader_get_u32_le(r, &options);
    c->command = m->command;

    if (options != 0)
        problem(c, "bad_options", "encapsulation options 0x%08x (must be 0)", options);
    if (request && m->status != 0)
        problem(c, "bad_status", "request with encapsulation status 0x%08x", m->status);
    /* An error reply carries no command data worth parsing. */
    if (!request && m->status != 0)
        return;

    switch (m->command) {
    case CMD_LIST_IDENTITY:
    case CMD_LIST_SERVICES:
    case CMD_LIST_INTERFACES:
        if (request) {
            if (ots_reader_remaining(r) != 0)
                problem(c, "bad_length", "%s request with %" G_GSIZE_FORMAT " data bytes",
                        command_name(m->command), ots_reader_remaining(r));
        } else {
            parse_list_reply(c, m, r);
        }
        break;
    case CMD_REGISTER_SESSION:
        if (ots_reader_remaining(r) != 4 || !ots_reader_get_u16_le(r, &m->protocol_version) ||
            !ots_reader_get_u16_le(r, &m->session_options)) {
            problem(c, "bad_length", "register_session with %" G_GSIZE_FORMAT " data bytes (4)",
                    ots_reader_remaining(r));
            break;
        }
        m->has_register = TRUE;
        if (m->protocol_version != 1)
            problem(c, "bad_version", "encapsulation protocol version %u", m->protocol_version);
        break;
    case CMD_SEND_RR_DATA:
    case CMD_SEND_UNIT_DATA:
        parse_send_data(c, m, r, request, req && req->has_cip ? &req->cip : NULL);
        break;
    default:
        break;
    }
}

/* ---- events ------------------------------------------------------------------ */

static void
add_side(OtsEvent *e, const char *key, const EncapMsg *m)
{
    ots_event_begin_object(e, key);
    ots_event_add_uint(e, "session", m->session);
    ots_event_add_uint(e, "status", m->status);
    if (m->status != 0)
        ots_event_add_string(e, "status_name", encap_status_name(m->status));
    ots_event_add_uint(e, "length", m->length);
    if (m->has_conn_id)
        ots_event_add_uint(e, "connection_id", m->conn_id);
    if (m->has_seq)
        ots_event_add_uint(e, "sequence", m->seq);
    ots_event_end_object(e);
}

static void
add_identity(OtsEvent *e, const Identity *id)
{
    char rev[16];
    g_snprintf(rev, sizeof(rev), "%u.%03u", id->rev_major, id->rev_minor);
    ots_event_add_uint(e, "vendor_id", id->vendor);
    ots_event_add_uint(e, "device_type", id->device_type);
    ots_event_add_uint(e, "product_code", id->product_code);
    ots_event_add_string(e, "revision", rev);
    ots_event_add_uint(e, "status", id->status);
    ots_event_add_uint(e, "serial", id->serial);
    ots_event_add_string(e, "product_name", id->name);
    if (id->has_state)
        ots_event_add_uint(e, "state", id->state);
}

static void
emit_asset(OtsSession *s, OtsDirection dir, const Identity *id, const char *source)
{
    char buf[24];
    OtsEvent *e = ots_session_begin_asset(s, dir, OTS_ROLE_UNKNOWN);
    if (!e)
        return;
    const char *vendor = cip_vendor_name(id->vendor);
    if (vendor) {
        ots_event_add_string(e, "vendor", vendor);
    } else {
        g_snprintf(buf, sizeof(buf), "vendor %u", id->vendor);
        ots_event_add_string(e, "vendor", buf);
    }
    if (id->name[0])
        ots_event_add_string(e, "product", id->name);
    g_snprintf(buf, sizeof(buf), "%u", id->product_code);
    ots_event_add_string(e, "product_code", buf);
    g_snprintf(buf, sizeof(buf), "%u.%03u", id->rev_major, id->rev_minor);
    ots_event_add_string(e, "firmware", buf);
    g_snprintf(buf, sizeof(buf), "0x%08x", id->serial);
    ots_event_add_string(e, "serial", buf);
    const char *dt = cip_device_type_name(id->device_type);
    if (dt)
        ots_event_add_string(e, "model", dt);
    ots_event_begin_object(e, "enip");
    ots_event_add_string(e, "source", source);
    ots_event_add_uint(e, "vendor_id", id->vendor);
    ots_event_add_uint(e, "device_type", id->device_type);
    if (dt)
        ots_event_add_string(e, "device_type_name", dt);
    ots_event_add_uint(e, "status", id->status);
    if (id->has_state)
        ots_event_add_uint(e, "state", id->state);
    if (id->sock_port) {
        g_snprintf(buf, sizeof(buf), "%u.%u.%u.%u", id->sock_addr >> 24,
                   (id->sock_addr >> 16) & 0xff, (id->sock_addr >> 8) & 0xff, id->sock_addr & 0xff);
        ots_event_add_string(e, "socket_address", buf);
        ots_event_add_uint(e, "socket_port", id->sock_port);
    }
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* One transaction event from a request and/or response summary. */
static void
emit_transaction(OtsSession *s, const EncapMsg *req, const EncapMsg *rsp, OtsTxStatus status)
{
    const EncapMsg *any = req ? req : rsp;
    const CipMessage *qc = req && req->has_cip ? &req->cip : NULL;
    const CipMessage *rc = rsp && rsp->has_cip ? &rsp->cip : NULL;
    OtsTransactionInfo info = {
        .request_dir = OTS_DIR_TO_SERVER,
        .function = any->command,
        .function_name = command_name(any->command),
        .op_class = command_class(any->command),
        .status = status,
        .request_ts = req ? req->ts : 0,
        .response_ts = rsp ? rsp->ts : 0,
    };
    if (!info.function_name)
        info.function_name = "unknown";
    if (qc || rc) {
        const CipMessage *m = qc ? qc : rc;
        info.function = cip_function(m);
        info.function_name = cip_function_name(m);
        info.op_class = cip_op_class(m);
    }
    if (status == OTS_TX_OK && rsp && (rsp->status != 0 || (rc && cip_is_error(rc))))
        info.status = OTS_TX_EXCEPTION;

    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    ots_event_begin_object(e, "enip");
    ots_event_add_uint(e, "command", any->command);
    ots_event_add_string(e, "command_name",
                         command_name(any->command) ? command_name(any->command) : "unknown");
    ots_event_add_hex(e, "sender_context", any->context, 8);
    if (req)
        add_side(e, "request", req);
    if (rsp)
        add_side(e, "response", rsp);
    const EncapMsg *reg = rsp && rsp->has_register ? rsp : req && req->has_register ? req : NULL;
    if (reg) {
        ots_event_add_uint(e, "protocol_version", reg->protocol_version);
        ots_event_add_uint(e, "options", reg->session_options);
    }
    if (rsp && rsp->has_identity) {
        ots_event_begin_object(e, "identity");
        add_identity(e, &rsp->identity);
        ots_event_end_object(e);
    }
    if (rsp && rsp->n_services) {
        ots_event_begin_array(e, "services");
        for (guint i = 0; i < rsp->n_services; i++) {
            ots_event_begin_object(e, NULL);
            ots_event_add_string(e, "name", rsp->services[i].name);
            ots_event_add_uint(e, "version", rsp->services[i].version);
            ots_event_add_uint(e, "capability_flags", rsp->services[i].flags);
            ots_event_end_object(e);
        }
        ots_event_end_array(e);
    }
    if (rsp && rsp->has_interfaces)
        ots_event_add_uint(e, "interface_count", rsp->n_interfaces);
    ots_event_end_object(e);
    if (qc || rc)
        cip_emit(e, qc, rc);
    ots_event_commit(e);

    if (rsp && rsp->has_identity)
        emit_asset(s, OTS_DIR_TO_CLIENT, &rsp->identity, "list_identity");
    if (rc && rc->has_identity)
        emit_asset(s, OTS_DIR_TO_CLIENT, &rc->identity, "get_attributes_all");
}

/* ---- pairing ------------------------------------------------------------------ */

/* Bytes allocated for a request with @n_services Multiple Service Packet
 * entries, and what it is charged to flows.memcap_mb. */
static gsize
pending_size(guint n_services)
{
    return G_STRUCT_OFFSET(Pending, req.cip.services) +
           MIN(n_services, (guint)CIP_MAX_SERVICES) * sizeof(CipService);
}

/* Frees a request that was kept (and so charged); @p is unlinked. */
static void
pending_free(OtsSession *s, Pending *p)
{
    ots_session_refund(s, pending_size(p->req.cip.n_services));
    g_free(p);
}

static void
pending_unanswered(OtsSession *s, EnipState *st, Pending *p)
{
    g_queue_unlink(&st->pending, &p->link);
    emit_transaction(s, &p->req, NULL, OTS_TX_UNANSWERED);
    pending_free(s, p);
}

/* Replies echo the sender context; connected messages are matched by their
 * CIP sequence count instead (the context is usually zero and the reply
 * uses the other connection id). */
static Pending *
pending_find(EnipState *st, const EncapMsg *rsp)
{
    Pending *fallback = NULL;
    for (GList *l = st->pending.head; l; l = l->next) {
        Pending *p = l->data;
        if (p->req.command != rsp->command)
            continue;
        if (rsp->command == CMD_SEND_UNIT_DATA) {
            if (p->req.has_seq && rsp->has_seq && p->req.seq == rsp->seq)
                return p;
            continue;
        }
        if (memcmp(p->req.context, rsp->context, 8) == 0)
            return p;
        if (!fallback)
            fallback = p;
    }
    /* An error reply may not echo the request faithfully. */
    return rsp->status != 0 ? fallback : NULL;
}

static void
handle_request(OtsSession *s, EnipState *st, OtsReader *msg, OtsDirection dir)
{
    Check c = {.s = s, .dir = dir};
    /* Parsed on the stack (as a reply is), kept in a Pending sized to it. */
    EncapMsg req_msg;
    EncapMsg *req = &req_msg;
    parse_message(&c, req, msg, TRUE, NULL);
    req->ts = ots_session_get_time(s);

    if (st->has_session && req->session != st->session &&
        (req->command == CMD_SEND_RR_DATA || req->command == CMD_SEND_UNIT_DATA ||
         req->command == CMD_UNREGISTER_SESSION))
        problem(&c, "session_mismatch", "session handle 0x%08x, registered 0x%08x", req->session,
                st->session);
    if (req->command == CMD_UNREGISTER_SESSION)
        st->has_session = FALSE;

    if (command_one_way(req->command)) {
        emit_transaction(s, req, NULL, OTS_TX_NO_RESPONSE);
        return;
    }
    if (st->pending.length >= MAX_PENDING)
        pending_unanswered(s, st, st->pending.head->data);

    /* Past the thread's memory budget: the oldest request goes as when the
     * table is full, and if that is not enough this one is reported now,
     * unanswered, rather than lost. */
    gsize size = pending_size(req->cip.n_services);
    gboolean kept = ots_session_charge(s, size);
    if (!kept && st->pending.head) {
        pending_unanswered(s, st, st->pending.head->data);
        kept = ots_session_charge(s, size);
    }
    if (!kept) {
        emit_transaction(s, req, NULL, OTS_TX_UNANSWERED);
        return;
    }
    Pending *p = g_malloc(size);
    p->link = (GList){.data = p};
    memcpy(&p->req, req, size - G_STRUCT_OFFSET(Pending, req));
    g_queue_push_tail_link(&st->pending, &p->link);
}

static void
handle_response(OtsSession *s, EnipState *st, OtsReader *msg, OtsDirection dir)
{
    Check c = {.s = s, .dir = dir};
    /* On the stack: a reply lives only for this call (a few KiB). */
    EncapMsg rsp_msg;
    memset(&rsp_msg, 0, sizeof(rsp_msg));
    EncapMsg *rsp = &rsp_msg;
    /* Peek the header to find the request, then parse with its context. */
    OtsReader h = *msg;
    ots_reader_get_u16_le(&h, &rsp->command);
    ots_reader_skip(&h, 2);
    ots_reader_get_u32_le(&h, &rsp->session);
    ots_reader_get_u32_le(&h, &rsp->status);
    ots_reader_copy(&h, rsp->context, 8);
    if (rsp->command == CMD_SEND_UNIT_DATA) {
        /* The sequence count sits at a fixed place in the usual layout:
         * handle, timeout, count, address item (8 bytes), data item header. */
        OtsReader q = *msg;
        guint16 seq, t1, t2;
        if (ots_reader_skip(&q, ENCAP_HEADER_LEN + 8) && ots_reader_get_u16_le(&q, &t1) &&
            ots_reader_skip(&q, 6) && ots_reader_get_u16_le(&q, &t2) && ots_reader_skip(&q, 2) &&
            ots_reader_get_u16_le(&q, &seq) && t1 == ITEM_CONNECTED_ADDRESS &&
            t2 == ITEM_CONNECTED_DATA) {
            rsp->has_seq = TRUE;
            rsp->seq = seq;
        }
    }
    Pending *p = command_one_way(rsp->command) ? NULL : pending_find(st, rsp);
    if (p)
        g_queue_unlink(&st->pending, &p->link);

    parse_message(&c, rsp, msg, FALSE, p ? &p->req : NULL);
    rsp->ts = ots_session_get_time(s);
    /* A broadcast ListIdentity is answered by each device in its own flow:
     * a lone discovery reply over UDP is normal. */
    gboolean broadcast_reply =
        ots_session_get_l4(s) == OTS_L4_UDP && command_class(rsp->command) == OTS_OP_DISCOVERY;
    if (!p && !broadcast_reply)
        problem(&c, "response_without_request", "%s reply without a request",
                command_name(rsp->command) ? command_name(rsp->command) : "unknown");
    if (rsp->command == CMD_REGISTER_SESSION && rsp->status == 0) {
        st->has_session = TRUE;
        st->session = rsp->session;
    }
    emit_transaction(s, p ? &p->req : NULL, rsp, p ? OTS_TX_OK : OTS_TX_NO_REQUEST);
    if (p)
        pending_free(s, p);
}

/* ListIdentity and friends go to a broadcast address over UDP; a reply
 * comes from the device's 44818 to the requester's port. On TCP the
 * direction says which side is which; on UDP a message from the server
 * port with an empty body is a request as well (devices also probe). */
static void
handle_message(OtsSession *s, EnipState *st, OtsDirection dir, OtsReader *msg)
{
    if (dir == OTS_DIR_TO_SERVER)
        handle_request(s, st, msg, dir);
    else
        handle_response(s, st, msg, dir);
}

/* ---- framing --------------------------------------------------------------------- */

/* Is there a plausible encapsulation header at @off? */
static OtsProbeResult
plausible_at(const OtsReader *r, gsize off, OtsDirection dir)
{
    OtsReader c = *r;
    guint16 cmd, len = 0;
    guint32 status = 0, options = 0, handle = 0;
    if (!ots_reader_skip(&c, off))
        return OTS_PROBE_NEED_MORE;
    if (!ots_reader_peek_u16_le(&c, 0, &cmd))
        return OTS_PROBE_NEED_MORE;
    /* NOP carries nothing to check and a run of zeros looks like one: it
     * never starts a flow or ends a resynchronisation. */
    if (!command_name(cmd) || cmd == CMD_NOP)
        return OTS_PROBE_NO;
    if (ots_reader_remaining(&c) < ENCAP_HEADER_LEN)
        return OTS_PROBE_NEED_MORE;
    ots_reader_peek_u16_le(&c, 2, &len);
    ots_reader_skip(&c, 8);
    ots_reader_get_u32_le(&c, &status);
    ots_reader_skip(&c, 8);
    ots_reader_get_u32_le(&c, &options);
    if (options != 0 || (dir == OTS_DIR_TO_SERVER && status != 0) || status > 0xffff)
        return OTS_PROBE_NO;
    switch (cmd) {
    case CMD_LIST_IDENTITY:
    case CMD_LIST_SERVICES:
    case CMD_LIST_INTERFACES:
        if (dir == OTS_DIR_TO_SERVER && len != 0)
            return OTS_PROBE_NO;
        break;
    case CMD_REGISTER_SESSION:
        if (len != 4 && status == 0)
            return OTS_PROBE_NO;
        break;
    case CMD_SEND_RR_DATA:
    case CMD_SEND_UNIT_DATA:
        if (status == 0) {
            guint16 count = 0;
            if (len < 8)
                return OTS_PROBE_NO;
            if (!ots_reader_get_u32_le(&c, &handle) || !ots_reader_skip(&c, 2) ||
                !ots_reader_get_u16_le(&c, &count))
                return OTS_PROBE_NEED_MORE;
            if (handle != 0 || count < 1 || count > 8)
                return OTS_PROBE_NO;
        }
        break;
    default:
        break;
    }
    return OTS_PROBE_YES;
}

static gboolean
resync(EnipState *st, OtsDirection dir, OtsReader *r)
{
    gsize rem = ots_reader_remaining(r);
    for (gsize off = 0; off < rem; off++) {
        OtsProbeResult res = plausible_at(r, off, dir);
        if (res == OTS_PROBE_NO)
            continue;
        ots_reader_skip(r, off);
        if (res == OTS_PROBE_NEED_MORE)
            return FALSE;
        st->resync[dir] = FALSE;
        return TRUE;
    }
    ots_reader_skip(r, rem);
    return FALSE;
}

/* ---- connected I/O (UDP 2222) ------------------------------------------------------ */

static void
emit_io(OtsSession *s, IoConn *io)
{
    OtsTransactionInfo info = {
        .request_dir = io->dir,
        .function = ITEM_CONNECTED_DATA,
        .function_name = "connected_io",
        .op_class = OTS_OP_MONITOR,
        .status = OTS_TX_NO_RESPONSE,
        .request_ts = io->first_ts,
    };
    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    ots_event_begin_object(e, "enip");
    ots_event_begin_object(e, "io");
    ots_event_add_uint(e, "connection_id", io->conn_id);
    ots_event_add_uint(e, "packets", io->packets);
    ots_event_add_uint(e, "bytes", io->bytes);
    ots_event_add_int(e, "duration_us", io->last_ts - io->first_ts);
    if (io->has_seq) {
        ots_event_add_uint(e, "first_sequence", io->first_seq);
        ots_event_add_uint(e, "last_sequence", io->last_seq);
        ots_event_add_uint(e, "lost", io->lost);
        ots_event_add_uint(e, "out_of_order", io->out_of_order);
    }
    ots_event_end_object(e);
    ots_event_end_object(e);
    ots_event_commit(e);
    io->packets = 0;
    io->bytes = 0;
    io->lost = 0;
    io->out_of_order = 0;
}

static void
io_report(OtsSession *s, EnipState *st)
{
    for (guint i = 0; i < st->n_io; i++)
        if (st->io[i].packets)
            emit_io(s, &st->io[i]);
}

/* Is this datagram a class 0/1 I/O packet: CPF with an address item first? */
static gboolean
looks_like_io(const OtsReader *r)
{
    guint16 count, type, len;
    return ots_reader_peek_u16_le(r, 0, &count) && ots_reader_peek_u16_le(r, 2, &type) &&
           ots_reader_peek_u16_le(r, 4, &len) && count >= 1 && count <= 4 &&
           ((type == ITEM_SEQUENCED_ADDRESS && len == 8) ||
            (type == ITEM_CONNECTED_ADDRESS && len == 4));
}

static OtsParseResult
parse_io(OtsSession *s, EnipState *st, OtsDirection dir, OtsReader *r)
{
    Check c = {.s = s, .dir = dir, .command = 0};
    guint16 count = 0, type, len;
    guint32 conn_id = 0, seq = 0;
    gboolean has_seq = FALSE;
    gsize size = ots_reader_remaining(r);
    ots_reader_get_u16_le(r, &count);
    for (guint i = 0; i < count; i++) {
        OtsReader item;
        if (!ots_reader_get_u16_le(r, &type) || !ots_reader_get_u16_le(r, &len) ||
            !ots_reader_get_sub_reader(r, &item, len)) {
            problem(&c, "bad_cpf", "I/O CPF item %u runs past the datagram", i);
            ots_reader_skip(r, ots_reader_remaining(r));
            return OTS_PARSE_OK;
        }
        if (i == 0) {
            ots_reader_get_u32_le(&item, &conn_id);
            has_seq = ots_reader_get_u32_le(&item, &seq);
        }
    }
    ots_reader_skip(r, ots_reader_remaining(r));

    gint64 now = ots_session_get_time(s);
    IoConn *io = NULL;
    for (guint i = 0; i < st->n_io && !io; i++)
        if (st->io[i].conn_id == conn_id && st->io[i].dir == dir)
            io = &st->io[i];
    if (!io) {
        if (st->n_io >= MAX_IO_CONNECTIONS) {
            st->io_overflow++;
            if (st->io_overflow == 1)
                problem(&c, "too_many_connections", "more than %u I/O connections in one flow",
                        MAX_IO_CONNECTIONS);
            return OTS_PARSE_OK;
        }
        io = &st->io[st->n_io++];
        memset(io, 0, sizeof(*io));
        io->conn_id = conn_id;
        io->dir = dir;
    }
    if (io->packets == 0) {
        io->first_ts = now;
        io->has_seq = has_seq;
        io->first_seq = seq;
    } else if (has_seq && io->has_seq) {
        guint32 delta = seq - io->last_seq;
        if (delta == 0 || delta > 0x80000000u)
            io->out_of_order++;
        else
            io->lost += delta - 1;
    }
    if (has_seq && (io->packets == 0 || (gint32)(seq - io->last_seq) > 0))
        io->last_seq = seq;
    io->last_ts = now;
    io->packets++;
    io->bytes += size;
    if (st->io_reported == 0)
        st->io_reported = now;
    return OTS_PARSE_OK;
}

/* ---- callbacks ---------------------------------------------------------------------- */

static OtsParseResult
enip_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    EnipState *st = state;

    if (ots_session_get_l4(s) == OTS_L4_UDP) {
        if (ots_session_get_server_port(s) != ENIP_PORT && looks_like_io(r))
            return parse_io(s, st, dir, r);
        OtsReader msg;
        guint16 len;
        guint16 cmd = 0;
        ots_reader_peek_u16_le(r, 0, &cmd);
        if ((cmd != CMD_NOP && plausible_at(r, 0, dir) != OTS_PROBE_YES) ||
            !ots_reader_peek_u16_le(r, 2, &len) ||
            !ots_reader_peek_sub_reader(r, &msg, ENCAP_HEADER_LEN + (gsize)len)) {
            Check c = {.s = s, .dir = dir};
            ots_reader_peek_u16_le(r, 0, &c.command);
            problem(&c, "bad_header",
                    "datagram of %" G_GSIZE_FORMAT " bytes is not an encapsulation message",
                    ots_reader_remaining(r));
            ots_reader_skip(r, ots_reader_remaining(r));
            return OTS_PARSE_MALFORMED;
        }
        ots_reader_skip(r, ENCAP_HEADER_LEN + (gsize)len);
        handle_message(s, st, dir, &msg);
        if (ots_reader_remaining(r) > 0) {
            Check c = {.s = s, .dir = dir};
            problem(&c, "bad_length", "%" G_GSIZE_FORMAT " bytes after the message",
                    ots_reader_remaining(r));
            ots_reader_skip(r, ots_reader_remaining(r));
        }
        return OTS_PARSE_OK;
    }

    for (;;) {
        if (st->resync[dir] && !resync(st, dir, r))
            return ots_reader_remaining(r) ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK;
        if (ots_reader_remaining(r) == 0)
            return OTS_PARSE_OK;
        guint16 cmd, len;
        if (!ots_reader_peek_u16_le(r, 0, &cmd) || !ots_reader_peek_u16_le(r, 2, &len))
            return OTS_PARSE_NEED_MORE;
        if (!command_name(cmd)) {
            Check c = {.s = s, .dir = dir, .command = cmd};
            problem(&c, "unknown_command", "encapsulation command 0x%04x", cmd);
            /* The length of an unknown command is not to be trusted. */
            st->resync[dir] = TRUE;
            ots_reader_skip(r, 1);
            continue;
        }
        OtsReader msg;
        if (!ots_reader_get_sub_reader(r, &msg, ENCAP_HEADER_LEN + (gsize)len))
            return OTS_PARSE_NEED_MORE;
        handle_message(s, st, dir, &msg);
    }
}

static OtsProbeResult
enip_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    if (l4 == OTS_L4_UDP && looks_like_io(r))
        return OTS_PROBE_YES;
    OtsProbeResult res = plausible_at(r, 0, dir);
    guint16 len;
    if (res == OTS_PROBE_YES && l4 == OTS_L4_UDP && ots_reader_peek_u16_le(r, 2, &len) &&
        ots_reader_remaining(r) != ENCAP_HEADER_LEN + (gsize)len)
        return OTS_PROBE_NO;
    return res;
}

static gpointer
enip_state_new(OtsSession *s)
{
    EnipState *st = g_new0(EnipState, 1);
    g_queue_init(&st->pending);
    return st;
}

/* flow_end() has drained and refunded the queue; whatever is left was
 * charged to the flow and the core refunds it when the flow goes. */
static void
enip_state_free(gpointer state)
{
    EnipState *st = state;
    GList *l;
    while ((l = g_queue_pop_head_link(&st->pending)))
        g_free(l->data);
    g_free(st);
}

static void
enip_gap(OtsSession *s, gpointer state, OtsDirection dir, guint32 len)
{
    EnipState *st = state;
    st->resync[dir] = TRUE;
}

static void
enip_flow_end(OtsSession *s, gpointer state)
{
    EnipState *st = state;
    while (st->pending.head)
        pending_unanswered(s, st, st->pending.head->data);
    io_report(s, st);
}

static void
enip_tick(OtsSession *s, gpointer state, gint64 now)
{
    EnipState *st = state;
    while (st->pending.head) {
        Pending *p = st->pending.head->data;
        if (now - p->req.ts <= PENDING_TIMEOUT_US)
            break;
        pending_unanswered(s, st, p);
    }
    if (st->io_reported && now - st->io_reported >= IO_REPORT_INTERVAL_US) {
        io_report(s, st);
        st->io_reported = now;
    }
}

static const OtsDissectorInfo enip_info = {
    .abi_major = OTS_DISSECTOR_ABI_MAJOR,
    .abi_minor = OTS_DISSECTOR_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "enip",
    .version = "0.1.0",
    .description = "EtherNet/IP encapsulation and CIP: explicit messaging, identity, I/O",
    .tcp_ports = (const guint16[]){ENIP_PORT, 0},
    .udp_ports = (const guint16[]){ENIP_PORT, ENIP_IO_PORT, 0},
    .probe = enip_probe,
    .state_new = enip_state_new,
    .state_free = enip_state_free,
    .parse = enip_parse,
    .gap = enip_gap,
    .flow_end = enip_flow_end,
    .tick = enip_tick,
};

OTS_DISSECTOR_DEFINE(enip_info)
