/* SPDX-License-Identifier: Apache-2.0 */
/* A third-party dissector for Omron FINS (FINS/TCP and FINS/UDP, port 9600),
 * written as an outside vendor would: only the installed SDK headers, built
 * with `pkg-config --cflags otsensor`, no access to the otsensor tree.
 *
 * FINS/TCP wraps each frame in a 16-byte header: "FINS", length of what
 * follows the length field, command (0/1 node address exchange, 2 frame,
 * 3 error notification), error code. FINS/UDP carries the frame alone.
 * A frame is a 10-byte header (ICF RSV GCT DNA DA1 DA2 SNA SA1 SA2 SID), the
 * command code (MRC SRC), then for a response the end code (MRES SRES).
 * Requests and responses pair by SID. */
#include <otsensor/dissector.h>

#include <string.h>

#ifndef FINS_ABI_MAJOR
#define FINS_ABI_MAJOR OTS_ABI_MAJOR
#endif
#ifndef FINS_NAME
#define FINS_NAME "fins"
#endif

#define FINS_TCP_HEADER 16
#define FINS_FRAME_HEADER 10
#define FINS_MAX_FRAME 2012 /* the largest FINS frame (header, command, data) */
#define FINS_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define ICF_RESPONSE 0x40

typedef struct {
    gboolean used;
    OtsDirection dir;
    guint16 command;
    gint64 ts;
    guint8 area;
    guint32 address;
    guint16 count;
} FinsPending;

typedef struct {
    FinsPending pending[256]; /* by SID */
    gboolean node_request;    /* a TCP node address request awaits its reply */
    gint64 node_request_ts;
} FinsState;

typedef struct {
    guint16 code;
    const char *name;
    OtsOpClass op;
} FinsCommand;

static const FinsCommand commands[] = {
    {0x0101, "memory_area_read", OTS_OP_READ},
    {0x0102, "memory_area_write", OTS_OP_WRITE},
    {0x0103, "memory_area_fill", OTS_OP_WRITE},
    {0x0104, "multiple_memory_area_read", OTS_OP_READ},
    {0x0105, "memory_area_transfer", OTS_OP_WRITE},
    {0x0306, "program_area_read", OTS_OP_PROGRAM_UPLOAD},
    {0x0307, "program_area_write", OTS_OP_PROGRAM_DOWNLOAD},
    {0x0401, "run", OTS_OP_RUN_STATE},
    {0x0402, "stop", OTS_OP_RUN_STATE},
    {0x0501, "controller_data_read", OTS_OP_DISCOVERY},
    {0x0601, "controller_status_read", OTS_OP_DIAGNOSTICS},
    {0x0701, "clock_read", OTS_OP_READ},
    {0x0702, "clock_write", OTS_OP_TIME_SET},
    {0x2101, "error_clear", OTS_OP_DIAGNOSTICS},
};

static const FinsCommand *
find_command(guint16 code)
{
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
        if (commands[i].code == code)
            return &commands[i];
    return NULL;
}

static gpointer
fins_state_new(OtsSession *s)
{
    return g_new0(FinsState, 1);
}

static void
fins_state_free(gpointer state)
{
    g_free(state);
}

static void
report(OtsSession *s, const FinsPending *p, guint8 sid, OtsTxStatus status, gint64 response_ts,
       gboolean has_end, guint16 end_code)
{
    const FinsCommand *c = find_command(p->command);
    OtsTransactionInfo tx = {
        .request_dir = p->dir,
        .function = p->command,
        .function_name = c ? c->name : "unknown",
        .op_class = c ? c->op : OTS_OP_OTHER,
        .status = status,
        .request_ts = p->ts,
        .response_ts = response_ts,
    };
    OtsEvent *e = ots_session_begin_transaction(s, &tx);
    ots_event_begin_object(e, "fins");
    ots_event_add_uint(e, "sid", sid);
    if (p->command == 0x0101 || p->command == 0x0102) {
        ots_event_add_uint(e, "area", p->area);
        ots_event_add_uint(e, "address", p->address);
        ots_event_add_uint(e, "count", p->count);
    }
    if (has_end)
        ots_event_add_uint(e, "end_code", end_code);
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* Length of a fixed-size text field without its NUL or space padding. */
static gsize
text_len(const guint8 *text, gsize size)
{
    gsize n = 0;
    while (n < size && text[n] != 0)
        n++;
    while (n > 0 && text[n - 1] == ' ')
        n--;
    return n;
}

/* Controller data read reply: model and version, 20 ASCII bytes each. */
static void
report_identity(OtsSession *s, OtsDirection dir, OtsReader *r)
{
    const guint8 *model, *version;
    if (!ots_reader_get_data(r, 20, &model) || !ots_reader_get_data(r, 20, &version))
        return;
    OtsEvent *e = ots_session_begin_asset(s, dir, OTS_ROLE_CONTROLLER);
    ots_event_add_string(e, "vendor", "OMRON");
    ots_event_add_string_len(e, "product", model, text_len(model, 20));
    ots_event_add_string_len(e, "firmware", version, text_len(version, 20));
    ots_event_commit(e);
}

/* One FINS frame (without the TCP header). */
static OtsParseResult
parse_frame(OtsSession *s, FinsState *st, OtsDirection dir, OtsReader *r)
{
    guint8 icf, rsv, gct, sid;
    guint16 command;
    if (!ots_reader_get_u8(r, &icf) || !ots_reader_get_u8(r, &rsv) || !ots_reader_get_u8(r, &gct) ||
        !ots_reader_skip(r, 6) || !ots_reader_get_u8(r, &sid) ||
        !ots_reader_get_u16_be(r, &command)) {
        ots_session_anomaly(s, dir, "short_frame", "FINS frame shorter than its header");
        return OTS_PARSE_MALFORMED;
    }
    if ((icf & 0x80) == 0 || rsv != 0) {
        ots_session_anomaly(s, dir, "bad_header", "FINS ICF bit 7 clear or RSV not zero");
        return OTS_PARSE_MALFORMED;
    }
    gint64 now = ots_session_get_time(s);
    FinsPending *p = &st->pending[sid];
    if (!(icf & ICF_RESPONSE)) {
        if (p->used) /* SID reused before a reply: the old request went unanswered */
            report(s, p, sid, OTS_TX_UNANSWERED, 0, FALSE, 0);
        *p = (FinsPending){.used = TRUE, .dir = dir, .command = command, .ts = now};
        if (command == 0x0101 || command == 0x0102) {
            guint8 area = 0, bit = 0;
            guint16 word = 0, count = 0;
            if (ots_reader_get_u8(r, &area) && ots_reader_get_u16_be(r, &word) &&
                ots_reader_get_u8(r, &bit) && ots_reader_get_u16_be(r, &count)) {
                p->area = area;
                p->address = word;
                p->count = count;
            }
        }
        return OTS_PARSE_OK;
    }
    guint8 mres = 0, sres = 0;
    gboolean has_end = ots_reader_get_u8(r, &mres) && ots_reader_get_u8(r, &sres);
    /* Bit 7 of MRES and bits 6-7 of SRES are relay and CPU error flags. */
    gboolean ok = has_end && (mres & 0x7f) == 0 && (sres & 0x3f) == 0;
    if (!p->used || p->command != command) {
        FinsPending orphan = {.dir = !dir, .command = command};
        report(s, &orphan, sid, OTS_TX_NO_REQUEST, now, has_end, (guint16)(mres << 8 | sres));
        return OTS_PARSE_OK;
    }
    report(s, p, sid, ok ? OTS_TX_OK : OTS_TX_EXCEPTION, now, has_end, (guint16)(mres << 8 | sres));
    if (ok && command == 0x0501)
        report_identity(s, dir, r);
    p->used = FALSE;
    return OTS_PARSE_OK;
}

static OtsParseResult
parse_tcp(OtsSession *s, FinsState *st, OtsDirection dir, OtsReader *r)
{
    while (ots_reader_remaining(r) > 0) {
        guint8 magic[4];
        guint16 len_hi, len_lo;
        if (ots_reader_remaining(r) < 8)
            return OTS_PARSE_NEED_MORE;
        if (!ots_reader_peek_u8(r, 0, &magic[0]) || !ots_reader_peek_u8(r, 1, &magic[1]) ||
            !ots_reader_peek_u8(r, 2, &magic[2]) || !ots_reader_peek_u8(r, 3, &magic[3]) ||
            memcmp(magic, "FINS", 4) != 0) {
            ots_session_anomaly(s, dir, "bad_magic", "FINS/TCP header does not start with FINS");
            return OTS_PARSE_MALFORMED;
        }
        if (!ots_reader_peek_u16_be(r, 4, &len_hi) || !ots_reader_peek_u16_be(r, 6, &len_lo))
            return OTS_PARSE_NEED_MORE;
        guint32 len = (guint32)len_hi << 16 | len_lo;
        if (len < 8 || len > 8 + FINS_MAX_FRAME) {
            ots_session_anomaly(s, dir, "bad_length", "FINS/TCP length out of range");
            return OTS_PARSE_MALFORMED;
        }
        if (ots_reader_remaining(r) < 8 + (gsize)len)
            return OTS_PARSE_NEED_MORE;
        OtsReader msg;
        guint32 command, error;
        if (!ots_reader_skip(r, 8) || !ots_reader_get_sub_reader(r, &msg, len) ||
            !ots_reader_get_u32_be(&msg, &command) || !ots_reader_get_u32_be(&msg, &error))
            return OTS_PARSE_MALFORMED; /* cannot happen: lengths checked above */
        if (error != 0) {
            OtsEvent *e = ots_session_begin_anomaly(s, dir, "tcp_error",
                                                    "FINS/TCP header carries an error code");
            ots_event_add_uint(e, "error_code", error);
            ots_event_commit(e);
        }
        gint64 now = ots_session_get_time(s);
        if (command == 0) {
            st->node_request = TRUE;
            st->node_request_ts = now;
        } else if (command == 1) {
            OtsTransactionInfo tx = {
                .request_dir = !dir,
                .function = 0,
                .function_name = "node_address_exchange",
                .op_class = OTS_OP_SESSION,
                .status = st->node_request ? OTS_TX_OK : OTS_TX_NO_REQUEST,
                .request_ts = st->node_request ? st->node_request_ts : 0,
                .response_ts = now,
            };
            guint32 client_node = 0, server_node = 0;
            OtsEvent *e = ots_session_begin_transaction(s, &tx);
            if (ots_reader_get_u32_be(&msg, &client_node) &&
                ots_reader_get_u32_be(&msg, &server_node)) {
                ots_event_begin_object(e, "fins");
                ots_event_add_uint(e, "client_node", client_node);
                ots_event_add_uint(e, "server_node", server_node);
                ots_event_end_object(e);
            }
            ots_event_commit(e);
            st->node_request = FALSE;
        } else if (command == 2) {
            if (parse_frame(s, st, dir, &msg) == OTS_PARSE_MALFORMED)
                return OTS_PARSE_MALFORMED;
        }
    }
    return OTS_PARSE_OK;
}

static OtsParseResult
fins_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    FinsState *st = state;
    if (ots_session_get_l4(s) == OTS_L4_TCP)
        return parse_tcp(s, st, dir, r);
    OtsParseResult res = parse_frame(s, st, dir, r);
    ots_reader_skip(r, ots_reader_remaining(r));
    return res;
}

static void
fins_tick(OtsSession *s, gpointer state, gint64 now)
{
    FinsState *st = state;
    for (guint sid = 0; sid < G_N_ELEMENTS(st->pending); sid++) {
        FinsPending *p = &st->pending[sid];
        if (p->used && now - p->ts > FINS_TIMEOUT_US) {
            report(s, p, (guint8)sid, OTS_TX_UNANSWERED, 0, FALSE, 0);
            p->used = FALSE;
        }
    }
}

static void
fins_flow_end(OtsSession *s, gpointer state)
{
    FinsState *st = state;
    for (guint sid = 0; sid < G_N_ELEMENTS(st->pending); sid++) {
        FinsPending *p = &st->pending[sid];
        if (p->used)
            report(s, p, (guint8)sid, OTS_TX_UNANSWERED, 0, FALSE, 0);
        p->used = FALSE;
    }
}

static OtsProbeResult
fins_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    guint8 b[4];
    for (guint i = 0; i < 4; i++)
        if (!ots_reader_peek_u8(r, i, &b[i]))
            return OTS_PROBE_NEED_MORE;
    if (l4 == OTS_L4_TCP)
        return memcmp(b, "FINS", 4) == 0 ? OTS_PROBE_YES : OTS_PROBE_NO;
    /* UDP: ICF with bit 7 set and only known bits, RSV 0, gateway count <= 7. */
    return (b[0] & 0xbe) == 0x80 && b[1] == 0 && b[2] <= 7 ? OTS_PROBE_YES : OTS_PROBE_NO;
}

static const OtsDissectorInfo fins_info = {
    .abi_major = FINS_ABI_MAJOR,
    .abi_minor = OTS_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = FINS_NAME,
    .version = "1.0.0",
    .description = "Omron FINS over TCP and UDP (third-party SDK test plugin)",
    .tcp_ports = (const guint16[]){9600, 0},
    .udp_ports = (const guint16[]){9600, 0},
    .probe = fins_probe,
    .state_new = fins_state_new,
    .state_free = fins_state_free,
    .parse = fins_parse,
    .flow_end = fins_flow_end,
    .tick = fins_tick,
};
OTS_DISSECTOR_DEFINE(fins_info)
