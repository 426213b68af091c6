/* SPDX-License-Identifier: Apache-2.0 */

/* S7comm dissector (ISO-on-TCP: TPKT RFC 1006 + COTP ISO 8073 class 0) with
 * the S7comm-plus header. TPKT framing with resync after gaps, COTP DT
 * reassembly (bounded), connection request/confirm with TSAPs (rack/slot
 * hints), S7comm job/ack/ack-data/userdata paired by PDU reference,
 * S7comm-plus requests/responses paired by sequence number, SZL module and
 * component identification as asset facts, out-of-spec PDUs as anomalies.
 * README.md documents every field.
 *
 * As in the Modbus reference plugin, one walker per message type runs in a
 * check pass (raises anomalies when the PDU arrives) and in an emit pass
 * (writes event fields): a session has one open event at a time, so the two
 * cannot be merged. Requests are kept as a bounded copy until answered. */

#include <otsensor/dissector.h>

#define TPKT_VERSION 3
#define TPKT_HEADER_LEN 4
#define TPKT_MIN_LEN 7 /* header + COTP LI + type + one byte */
#define MAX_PENDING 256
#define PENDING_TIMEOUT_US (30 * G_USEC_PER_SEC)
#define MAX_STORED 4096  /* bytes of a request kept for pairing */
#define MAX_ITEMS 64     /* items reported per PDU */
#define MAX_SZL_BUF 8192 /* reassembled userdata (SZL) bytes */
#define DEFAULT_MAX_MSG 65536

#define S7_PROTO_ID 0x32
#define S7P_PROTO_ID 0x72

enum {
    COTP_ED = 0x10,
    COTP_EA = 0x20,
    COTP_RJ = 0x50,
    COTP_AK = 0x60,
    COTP_ER = 0x70,
    COTP_DR = 0x80,
    COTP_DC = 0xc0,
    COTP_CC = 0xd0,
    COTP_CR = 0xe0,
    COTP_DT = 0xf0,
};

enum {
    ROSCTR_JOB = 1,
    ROSCTR_ACK = 2,
    ROSCTR_ACK_DATA = 3,
    ROSCTR_USERDATA = 7,
};

enum {
    FN_CPU_SERVICES = 0x00,
    FN_READ_VAR = 0x04,
    FN_WRITE_VAR = 0x05,
    FN_REQUEST_DOWNLOAD = 0x1a,
    FN_DOWNLOAD_BLOCK = 0x1b,
    FN_DOWNLOAD_ENDED = 0x1c,
    FN_START_UPLOAD = 0x1d,
    FN_UPLOAD = 0x1e,
    FN_END_UPLOAD = 0x1f,
    FN_PI_SERVICE = 0x28,
    FN_PLC_STOP = 0x29,
    FN_SETUP_COMM = 0xf0,
};

/* Userdata events use function = USERDATA_FUNCTION | group << 8 | subfunction
 * so that they never collide with a job function code. */
#define USERDATA_FUNCTION 0x10000u

enum {
    UD_GROUP_MODE = 0,
    UD_GROUP_PROG = 1,
    UD_GROUP_CYCLIC = 2,
    UD_GROUP_BLOCK = 3,
    UD_GROUP_CPU = 4,
    UD_GROUP_SECURITY = 5,
    UD_GROUP_PBC = 6,
    UD_GROUP_TIME = 7,
    UD_GROUP_NCK = 0xf,
};

enum {
    UD_TYPE_PUSH = 0,
    UD_TYPE_REQUEST = 4,
    UD_TYPE_RESPONSE = 8,
};

enum {
    S7P_OP_REQUEST = 0x31,
    S7P_OP_RESPONSE = 0x32,
    S7P_OP_NOTIFICATION = 0x33,
    S7P_OP_RESPONSE2 = 0x02,
};

/* ---- names and classes ------------------------------------------------- */

typedef struct {
    guint code;
    const char *name;
    OtsOpClass op;
} CodeInfo;

static const CodeInfo job_functions[] = {
    {FN_CPU_SERVICES, "cpu_services", OTS_OP_OTHER},
    {FN_READ_VAR, "read_var", OTS_OP_READ},
    {FN_WRITE_VAR, "write_var", OTS_OP_WRITE},
    {FN_REQUEST_DOWNLOAD, "request_download", OTS_OP_PROGRAM_DOWNLOAD},
    {FN_DOWNLOAD_BLOCK, "download_block", OTS_OP_PROGRAM_DOWNLOAD},
    {FN_DOWNLOAD_ENDED, "download_ended", OTS_OP_PROGRAM_DOWNLOAD},
    {FN_START_UPLOAD, "start_upload", OTS_OP_PROGRAM_UPLOAD},
    {FN_UPLOAD, "upload", OTS_OP_PROGRAM_UPLOAD},
    {FN_END_UPLOAD, "end_upload", OTS_OP_PROGRAM_UPLOAD},
    {FN_PI_SERVICE, "plc_control", OTS_OP_RUN_STATE},
    {FN_PLC_STOP, "plc_stop", OTS_OP_RUN_STATE},
    {FN_SETUP_COMM, "setup_communication", OTS_OP_SESSION},
};

/* (group << 8 | subfunction) */
static const CodeInfo userdata_functions[] = {
    {0x0100, "programmer_command", OTS_OP_DIAGNOSTICS},
    {0x0101, "request_diag_data", OTS_OP_DIAGNOSTICS},
    {0x0102, "var_tab", OTS_OP_DIAGNOSTICS},
    {0x010c, "erase", OTS_OP_DIAGNOSTICS},
    {0x010e, "read_diag_data", OTS_OP_DIAGNOSTICS},
    {0x010f, "remove_diag_data", OTS_OP_DIAGNOSTICS},
    {0x0110, "forces", OTS_OP_WRITE},
    {0x0113, "request_diag_data2", OTS_OP_DIAGNOSTICS},
    {0x0201, "cyclic_memory", OTS_OP_MONITOR},
    {0x0204, "cyclic_unsubscribe", OTS_OP_MONITOR},
    {0x0205, "cyclic_memory2", OTS_OP_MONITOR},
    {0x0301, "list_blocks", OTS_OP_DISCOVERY},
    {0x0302, "list_blocks_of_type", OTS_OP_DISCOVERY},
    {0x0303, "get_block_info", OTS_OP_DISCOVERY},
    {0x0401, "read_szl", OTS_OP_DIAGNOSTICS},
    {0x0402, "message_service", OTS_OP_MONITOR},
    {0x0403, "transition_to_stop", OTS_OP_RUN_STATE},
    {0x040b, "alarm_ack", OTS_OP_MONITOR},
    {0x040c, "alarm_ack_indication", OTS_OP_MONITOR},
    {0x040d, "alarm_lock", OTS_OP_MONITOR},
    {0x040e, "alarm_unlock", OTS_OP_MONITOR},
    {0x0411, "alarm_sq_indication", OTS_OP_MONITOR},
    {0x0412, "alarm_s_indication", OTS_OP_MONITOR},
    {0x0413, "alarm_query", OTS_OP_MONITOR},
    {0x0416, "notify8_indication", OTS_OP_MONITOR},
    {0x0501, "plc_password", OTS_OP_SESSION},
    {0x0502, "clean_session", OTS_OP_SESSION},
    {0x0601, "bsend_brcv", OTS_OP_OTHER},
    {0x0701, "read_clock", OTS_OP_READ},
    {0x0702, "set_clock", OTS_OP_TIME_SET},
    {0x0703, "read_clock_following", OTS_OP_READ},
    {0x0704, "set_clock_2", OTS_OP_TIME_SET},
};

static const CodeInfo plus_functions[] = {
    {0x04bb, "explore", OTS_OP_DISCOVERY},
    {0x04ca, "create_object", OTS_OP_SESSION},
    {0x04d4, "delete_object", OTS_OP_SESSION},
    {0x04f2, "set_variable", OTS_OP_WRITE},
    {0x04fc, "get_variable", OTS_OP_READ},
    {0x0506, "add_link", OTS_OP_CONFIG},
    {0x051a, "remove_link", OTS_OP_CONFIG},
    {0x0524, "get_link", OTS_OP_READ},
    {0x0542, "set_multi_variables", OTS_OP_WRITE},
    {0x054c, "get_multi_variables", OTS_OP_READ},
    {0x0556, "begin_sequence", OTS_OP_SESSION},
    {0x0560, "end_sequence", OTS_OP_SESSION},
    {0x056b, "invoke", OTS_OP_CONTROL},
    {0x057c, "set_var_sub_streamed", OTS_OP_WRITE},
    {0x0586, "get_var_sub_streamed", OTS_OP_READ},
    {0x0590, "get_variables_address", OTS_OP_READ},
    {0x059a, "abort", OTS_OP_SESSION},
    {0x05a9, "error", OTS_OP_OTHER},
    {0x05b3, "init_ssl", OTS_OP_SESSION},
};

static const CodeInfo *
code_lookup(const CodeInfo *table, gsize n, guint code)
{
    for (gsize i = 0; i < n; i++)
        if (table[i].code == code)
            return &table[i];
    return NULL;
}

static const char *
rosctr_name(guint r)
{
    switch (r) {
    case ROSCTR_JOB:
        return "job";
    case ROSCTR_ACK:
        return "ack";
    case ROSCTR_ACK_DATA:
        return "ack_data";
    case ROSCTR_USERDATA:
        return "userdata";
    default:
        return "unknown";
    }
}

static const char *
cotp_type_name(guint t)
{
    switch (t) {
    case COTP_ED:
        return "ED";
    case COTP_EA:
        return "EA";
    case COTP_RJ:
        return "RJ";
    case COTP_AK:
        return "AK";
    case COTP_ER:
        return "ER";
    case COTP_DR:
        return "DR";
    case COTP_DC:
        return "DC";
    case COTP_CC:
        return "CC";
    case COTP_CR:
        return "CR";
    case COTP_DT:
        return "DT";
    default:
        return NULL;
    }
}

static const char *
area_name(guint a)
{
    switch (a) {
    case 0x03:
        return "system_info";
    case 0x05:
        return "system_flags";
    case 0x06:
        return "analog_inputs";
    case 0x07:
        return "analog_outputs";
    case 0x1c:
        return "counter_s7";
    case 0x1d:
        return "timer_s7";
    case 0x1e:
        return "counter_iec";
    case 0x1f:
        return "timer_iec";
    case 0x80:
        return "peripheral";
    case 0x81:
        return "inputs";
    case 0x82:
        return "outputs";
    case 0x83:
        return "flags";
    case 0x84:
        return "data_block";
    case 0x85:
        return "instance_db";
    case 0x86:
        return "local";
    case 0x87:
        return "previous_local";
    default:
        return "unknown";
    }
}

static const char *
block_type_name(const guint8 *t)
{
    /* Upload/download file names carry the type as two ASCII hex digits. */
    static const struct {
        char code[3];
        const char *name;
    } types[] = {
        {"08", "OB"}, {"09", "CMOD"}, {"0A", "DB"}, {"0B", "SDB"},
        {"0C", "FC"}, {"0D", "SFC"},  {"0E", "FB"}, {"0F", "SFB"},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(types); i++)
        if (t[0] == (guint8)types[i].code[0] && g_ascii_toupper(t[1]) == (guint8)types[i].code[1])
            return types[i].name;
    return NULL;
}

/* ---- per-flow state ---------------------------------------------------- */

typedef enum {
    KEY_S7 = 0,   /* S7comm PDU reference */
    KEY_PLUS = 1, /* S7comm-plus sequence number */
    KEY_CONNECT = 2,
    KEY_DISCONNECT = 3,
} KeyKind;

typedef struct {
    GList link; /* in S7State.pending, oldest first; data points here */
    gint64 ts;
    OtsDirection dir;
    KeyKind kind;
    guint16 key;
    guint8 cotp_type;
    gboolean truncated;
    gsize len;
    guint8 msg[]; /* COTP payload (S7 PDU) or, for connect/disconnect, the COTP TPDU */
} Pending;

/* A reassembly buffer, charged to flows.memcap_mb by its capacity. */
typedef struct {
    guint8 *data;
    gsize len;
    gsize cap;
} ReBuf;

typedef struct {
    GQueue pending;
    gboolean resync[2];
    ReBuf dt[2]; /* COTP DT reassembly per direction */
    gboolean dt_overflow[2];
    ReBuf ud; /* userdata response reassembly (data unit) */
    guint8 ud_ref;
    gboolean ud_active;
    guint16 pdu_size; /* negotiated in setup communication */
} S7State;

/* ---- walker ------------------------------------------------------------ */

typedef struct {
    OtsSession *s; /* check pass: raise anomalies here */
    OtsEvent *e;   /* emit pass: write fields here */
    OtsDirection dir;
    const char *proto_obj; /* "s7comm" or "s7comm_plus" */
    guint problems;
    OtsAnomalyOnce raised; /* codes already raised for this PDU */
} Walk;

static void problem(Walk *w, const char *code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
problem(Walk *w, const char *code, const char *fmt, ...)
{
    w->problems++;
    if (!w->s || w->e)
        return;
    if (!ots_anomaly_once(&w->raised, code))
        return;
    va_list ap;
    va_start(ap, fmt);
    OtsEvent *a = ots_session_begin_anomalyv(w->s, w->dir, code, fmt, ap);
    va_end(ap);
    if (a)
        ots_event_commit(a);
}

static void
put_uint(Walk *w, const char *k, guint64 v)
{
    if (w->e)
        ots_event_add_uint(w->e, k, v);
}

static void
put_string(Walk *w, const char *k, const char *v)
{
    if (w->e && v)
        ots_event_add_string(w->e, k, v);
}

static void
put_bool(Walk *w, const char *k, gboolean v)
{
    if (w->e)
        ots_event_add_bool(w->e, k, v);
}

static void
put_text(Walk *w, const char *k, const guint8 *v, gsize n)
{
    if (w->e)
        ots_event_add_string_len(w->e, k, v, n);
}

/* ---- S7comm parameter and data walkers --------------------------------- */

typedef struct {
    guint8 proto;
    guint8 rosctr;
    guint16 pduref;
    guint16 plen;
    guint16 dlen;
    guint8 err_class;
    guint8 err_code;
    gboolean has_error;
    OtsReader param;
    OtsReader data;
} S7Header;

/* Parses the 10/12-byte header and splits parameter and data. FALSE when
 * the PDU cannot be framed (anomalies raised through @w). */
static gboolean
s7_header(Walk *w, OtsReader *r, S7Header *h)
{
    guint16 reserved;
    memset(h, 0, sizeof(*h));
    if (!ots_reader_get_u8(r, &h->proto) || !ots_reader_get_u8(r, &h->rosctr) ||
        !ots_reader_get_u16_be(r, &reserved) || !ots_reader_get_u16_be(r, &h->pduref) ||
        !ots_reader_get_u16_be(r, &h->plen) || !ots_reader_get_u16_be(r, &h->dlen)) {
        problem(w, "bad_length", "S7comm header truncated");
        return FALSE;
    }
    if (h->rosctr == ROSCTR_ACK || h->rosctr == ROSCTR_ACK_DATA) {
        if (!ots_reader_get_u8(r, &h->err_class) || !ots_reader_get_u8(r, &h->err_code)) {
            problem(w, "bad_length", "S7comm ack header truncated");
            return FALSE;
        }
        h->has_error = TRUE;
    } else if (h->rosctr != ROSCTR_JOB && h->rosctr != ROSCTR_USERDATA) {
        problem(w, "bad_rosctr", "ROSCTR %u", h->rosctr);
    }
    gsize rest = ots_reader_remaining(r);
    if ((gsize)h->plen + h->dlen != rest)
        problem(w, "bad_length",
                "parameter length %u + data length %u but %" G_GSIZE_FORMAT " bytes follow",
                h->plen, h->dlen, rest);
    gsize plen = MIN((gsize)h->plen, rest);
    ots_reader_get_sub_reader(r, &h->param, plen);
    gsize dlen = MIN((gsize)h->dlen, ots_reader_remaining(r));
    ots_reader_get_sub_reader(r, &h->data, dlen);
    ots_reader_skip(r, ots_reader_remaining(r));
    return TRUE;
}

/* Read/write var request items in the parameter block. */
static void
walk_var_items(Walk *w, OtsReader *p, guint8 count)
{
    if (count > (ots_reader_remaining(p)) / 2u)
        problem(w, "bad_item_count", "item count %u does not fit the parameters", count);
    if (w->e)
        ots_event_begin_array(w->e, "items");
    for (guint i = 0; i < count; i++) {
        guint8 spec, slen, syntax;
        OtsReader it;
        if (!ots_reader_get_u8(p, &spec) || !ots_reader_get_u8(p, &slen) ||
            !ots_reader_get_sub_reader(p, &it, slen)) {
            problem(w, "bad_item", "item %u truncated", i);
            break;
        }
        if (spec != 0x12)
            problem(w, "bad_item", "item %u: variable specification 0x%02x", i, spec);
        if (!ots_reader_get_u8(&it, &syntax)) {
            problem(w, "bad_item", "item %u: empty address", i);
            continue;
        }
        if (i >= MAX_ITEMS || !w->e) {
            if (syntax == 0x10 && slen != 10)
                problem(w, "bad_item", "item %u: S7ANY address of %u bytes", i, slen);
            continue;
        }
        ots_event_begin_object(w->e, NULL);
        ots_event_add_uint(w->e, "syntax_id", syntax);
        guint8 tsize, area;
        guint16 length, db;
        guint32 addr;
        if (syntax == 0x10 && ots_reader_get_u8(&it, &tsize) &&
            ots_reader_get_u16_be(&it, &length) && ots_reader_get_u16_be(&it, &db) &&
            ots_reader_get_u8(&it, &area) && ots_reader_get_u24_be(&it, &addr)) {
            ots_event_add_uint(w->e, "transport_size", tsize);
            ots_event_add_uint(w->e, "length", length);
            ots_event_add_uint(w->e, "db", db);
            ots_event_add_uint(w->e, "area", area);
            ots_event_add_string(w->e, "area_name", area_name(area));
            ots_event_add_uint(w->e, "address", addr);
            /* Bits 19..23 are unused: the byte address has 16 bits. */
            ots_event_add_uint(w->e, "byte", (addr >> 3) & 0xffff);
            ots_event_add_uint(w->e, "bit", addr & 7);
        }
        ots_event_end_object(w->e);
    }
    if (w->e)
        ots_event_end_array(w->e);
    if (count > MAX_ITEMS)
        put_bool(w, "items_truncated", TRUE);
}

/* Data items (read response, write request): return code, transport size,
 * length, value; padded to even length except after the last. */
static void
walk_data_items(Walk *w, OtsReader *d, guint8 count, gboolean response)
{
    if (w->e)
        ots_event_begin_array(w->e, "return_codes");
    for (guint i = 0; i < count; i++) {
        guint8 rc, tsize;
        guint16 len;
        if (!ots_reader_get_u8(d, &rc)) {
            problem(w, "bad_item", "data item %u missing", i);
            break;
        }
        if (w->e && i < MAX_ITEMS)
            ots_event_add_uint(w->e, NULL, rc);
        /* A failed read item carries only its return code (and 3 zero bytes). */
        if (!ots_reader_get_u8(d, &tsize) || !ots_reader_get_u16_be(d, &len)) {
            if (ots_reader_remaining(d) == 0 && rc != 0xff && rc != 0x00)
                continue;
            problem(w, "bad_item", "data item %u header truncated", i);
            break;
        }
        /* A failed read item has no value, whatever its length says. */
        if (response && rc != 0xff)
            continue;
        /* Lengths are in bits for BIT/BYTE/INT transport sizes. */
        gsize bytes = (tsize == 0x03 || tsize == 0x04 || tsize == 0x05) ? (len + 7u) / 8u : len;
        if (!ots_reader_skip(d, bytes)) {
            problem(w, "bad_item", "data item %u: %" G_GSIZE_FORMAT " value bytes missing", i,
                    bytes);
            ots_reader_skip(d, ots_reader_remaining(d));
            break;
        }
        if ((bytes & 1) && i + 1 < count)
            ots_reader_skip(d, 1);
    }
    if (w->e)
        ots_event_end_array(w->e);
}

/* Upload/download file name "_TTNNNNNF": block type, number, file system. */
static void
walk_filename(Walk *w, OtsReader *p)
{
    guint8 n;
    const guint8 *name;
    if (!ots_reader_get_u8(p, &n) || !ots_reader_get_data(p, n, &name)) {
        problem(w, "bad_length", "block file name truncated");
        return;
    }
    put_text(w, "file_name", name, n);
    if (n >= 9 && name[0] == '_') {
        const char *type = block_type_name(name + 1);
        guint number = 0;
        gboolean digits = TRUE;
        for (gsize i = 3; i < 8; i++) {
            if (!g_ascii_isdigit(name[i]))
                digits = FALSE;
            else
                number = number * 10 + (guint)(name[i] - '0');
        }
        put_string(w, "block_type", type);
        if (digits)
            put_uint(w, "block_number", number);
        char fs[2] = {(char)name[8], 0};
        put_text(w, "file_system", (const guint8 *)fs, 1);
    }
}

/* Block transfer parameters after the function code. Acks of upload,
 * download block and the like carry the function status alone (parameter
 * length 2); end upload's ack not even that. */
static void
walk_block_params(Walk *w, guint8 fn, OtsReader *p, gboolean request)
{
    guint8 b;
    guint32 id;
    if (!ots_reader_get_u8(p, &b)) {
        if (request)
            problem(w, "bad_length", "block transfer parameters truncated");
        return;
    }
    put_uint(w, "function_status", b);
    /* Two reserved bytes (an error code in end upload / download ended). */
    if (!ots_reader_skip(p, 2)) {
        if (request)
            problem(w, "bad_length", "block transfer parameters truncated");
        return;
    }
    if (!ots_reader_get_u32_be(p, &id))
        return;
    put_uint(w, "upload_id", id);
    if (request && fn != FN_UPLOAD && fn != FN_END_UPLOAD)
        walk_filename(w, p);
    if (!request && fn == FN_START_UPLOAD && ots_reader_remaining(p) > 0) {
        const guint8 *blen;
        guint8 n;
        if (ots_reader_get_u8(p, &n) && ots_reader_get_data(p, n, &blen))
            put_text(w, "block_length", blen, n);
    }
}

static void
walk_job_params(Walk *w, guint8 fn, OtsReader *p, OtsReader *d, gboolean request)
{
    guint8 count, b;
    switch (fn) {
    case FN_SETUP_COMM: {
        guint16 calling, called, pdu;
        if (!ots_reader_get_u8(p, &b) || !ots_reader_get_u16_be(p, &calling) ||
            !ots_reader_get_u16_be(p, &called) || !ots_reader_get_u16_be(p, &pdu)) {
            problem(w, "bad_length", "setup communication parameters truncated");
            return;
        }
        put_uint(w, "max_amq_calling", calling);
        put_uint(w, "max_amq_called", called);
        put_uint(w, "pdu_size", pdu);
        break;
    }
    case FN_READ_VAR:
    case FN_WRITE_VAR:
        if (!ots_reader_get_u8(p, &count)) {
            problem(w, "bad_length", "item count missing");
            return;
        }
        put_uint(w, "item_count", count);
        if (request) {
            walk_var_items(w, p, count);
            if (fn == FN_WRITE_VAR)
                walk_data_items(w, d, count, FALSE);
        } else if (fn == FN_READ_VAR) {
            walk_data_items(w, d, count, TRUE);
        } else {
            if (w->e)
                ots_event_begin_array(w->e, "return_codes");
            for (guint i = 0; i < count; i++) {
                if (!ots_reader_get_u8(d, &b)) {
                    problem(w, "bad_item", "write var return code %u missing", i);
                    break;
                }
                if (w->e && i < MAX_ITEMS)
                    ots_event_add_uint(w->e, NULL, b);
            }
            if (w->e)
                ots_event_end_array(w->e);
        }
        break;
    case FN_REQUEST_DOWNLOAD:
    case FN_DOWNLOAD_BLOCK:
    case FN_DOWNLOAD_ENDED:
    case FN_START_UPLOAD:
    case FN_UPLOAD:
    case FN_END_UPLOAD:
        walk_block_params(w, fn, p, request);
        /* Block bytes (upload ack, download block ack): 2-byte length first. */
        if (d && ots_reader_remaining(d) >= 2) {
            guint16 dl;
            ots_reader_peek_u16_be(d, 0, &dl);
            put_uint(w, "block_data_length", dl);
        }
        break;
    case FN_PI_SERVICE: {
        if (!request)
            break;
        const guint8 *name, *block;
        guint16 blen;
        guint8 n;
        if (!ots_reader_skip(p, 7) || !ots_reader_get_u16_be(p, &blen) ||
            !ots_reader_get_data(p, blen, &block) || !ots_reader_get_u8(p, &n) ||
            !ots_reader_get_data(p, n, &name)) {
            problem(w, "bad_length", "PI service parameters truncated");
            return;
        }
        put_text(w, "pi_service", name, n);
        if (blen > 0)
            put_text(w, "pi_parameter", block, blen);
        break;
    }
    case FN_PLC_STOP: {
        if (!request)
            break;
        const guint8 *name;
        guint8 n;
        if (!ots_reader_skip(p, 5) || !ots_reader_get_u8(p, &n) ||
            !ots_reader_get_data(p, n, &name)) {
            problem(w, "bad_length", "PLC stop parameters truncated");
            return;
        }
        put_text(w, "pi_service", name, n);
        break;
    }
    default:
        break;
    }
}

typedef struct {
    guint8 method;
    guint8 type;
    guint8 group;
    guint8 subfunc;
    guint8 seq;
    gboolean has_ref;
    guint8 dataunit_ref;
    guint8 last_unit; /* 0 = last, 1 = more follow */
    guint16 error_code;
    gboolean has_data;
    guint8 return_code;
    guint8 tsize;
    OtsReader payload;
} UdParams;

static gboolean
ud_params(Walk *w, OtsReader *p, OtsReader *d, UdParams *u)
{
    guint8 head[3], plen, tg;
    memset(u, 0, sizeof(*u));
    if (!ots_reader_copy(p, head, 3) || !ots_reader_get_u8(p, &plen) ||
        !ots_reader_get_u8(p, &u->method) || !ots_reader_get_u8(p, &tg) ||
        !ots_reader_get_u8(p, &u->subfunc) || !ots_reader_get_u8(p, &u->seq)) {
        problem(w, "bad_userdata", "userdata parameters truncated");
        return FALSE;
    }
    if (head[0] != 0x00 || head[1] != 0x01 || head[2] != 0x12)
        problem(w, "bad_userdata", "userdata parameter head %02x%02x%02x", head[0], head[1],
                head[2]);
    u->type = tg >> 4;
    u->group = tg & 0x0f;
    if (plen >= 8) {
        if (!ots_reader_get_u8(p, &u->dataunit_ref) || !ots_reader_get_u8(p, &u->last_unit) ||
            !ots_reader_get_u16_be(p, &u->error_code)) {
            problem(w, "bad_userdata", "userdata parameters truncated");
            return FALSE;
        }
        u->has_ref = TRUE;
    } else if (plen != 4) {
        problem(w, "bad_userdata", "userdata parameter length %u", plen);
    }
    guint16 len;
    if (ots_reader_remaining(d) > 0) {
        if (!ots_reader_get_u8(d, &u->return_code) || !ots_reader_get_u8(d, &u->tsize) ||
            !ots_reader_get_u16_be(d, &len)) {
            problem(w, "bad_userdata", "userdata data header truncated");
            return TRUE;
        }
        u->has_data = TRUE;
        if (!ots_reader_get_sub_reader(d, &u->payload, len)) {
            problem(w, "bad_length", "userdata data length %u but %" G_GSIZE_FORMAT " bytes", len,
                    ots_reader_remaining(d));
            ots_reader_get_sub_reader(d, &u->payload, ots_reader_remaining(d));
        }
    }
    return TRUE;
}

static guint
ud_function(const UdParams *u)
{
    return ((guint)u->group << 8) | u->subfunc;
}

/* Writes the fields of one S7comm PDU into the current object. @szl (may
 * be NULL) is the reassembled SZL payload of a final userdata fragment. */
static void
walk_s7(Walk *w, OtsReader *r, const OtsReader *szl)
{
    S7Header h;
    if (!s7_header(w, r, &h))
        return;
    put_uint(w, "rosctr", h.rosctr);
    put_string(w, "rosctr_name", rosctr_name(h.rosctr));
    put_uint(w, "pdu_ref", h.pduref);
    put_uint(w, "param_length", h.plen);
    put_uint(w, "data_length", h.dlen);
    if (h.has_error) {
        put_uint(w, "error_class", h.err_class);
        put_uint(w, "error_code", h.err_code);
    }
    if (h.rosctr == ROSCTR_USERDATA) {
        UdParams u;
        if (!ud_params(w, &h.param, &h.data, &u))
            return;
        put_uint(w, "method", u.method);
        put_uint(w, "type", u.type);
        put_uint(w, "function_group", u.group);
        put_uint(w, "subfunction", u.subfunc);
        put_uint(w, "sequence_number", u.seq);
        if (u.has_ref) {
            put_uint(w, "data_unit_ref", u.dataunit_ref);
            put_bool(w, "last_data_unit", u.last_unit == 0);
            put_uint(w, "userdata_error_code", u.error_code);
        }
        if (!u.has_data)
            return;
        if (w->e) {
            ots_event_begin_array(w->e, "return_codes");
            ots_event_add_uint(w->e, NULL, u.return_code);
            ots_event_end_array(w->e);
        }
        OtsReader pl = szl ? *szl : u.payload;
        gboolean first = !u.has_ref || szl || u.last_unit == 0;
        /* Follow-up fragments carry SZL data without the SZL header. */
        if (u.group == UD_GROUP_CPU && u.subfunc == 1 && first && u.return_code == 0xff) {
            guint16 id, index;
            if (ots_reader_get_u16_be(&pl, &id) && ots_reader_get_u16_be(&pl, &index)) {
                put_uint(w, "szl_id", id);
                put_uint(w, "szl_index", index);
            } else {
                problem(w, "bad_userdata", "SZL id/index missing");
            }
        } else if (u.group == UD_GROUP_CPU && u.subfunc == 1 && u.has_ref && u.last_unit != 0) {
            put_bool(w, "fragment", TRUE);
        }
        if (u.group == UD_GROUP_BLOCK && (u.subfunc == 2 || u.subfunc == 3) &&
            u.type == UD_TYPE_REQUEST && u.method == 0x11) {
            const guint8 *bt;
            if (ots_reader_get_data(&pl, 2, &bt))
                put_text(w, "block_type", bt, 2);
            if (u.subfunc == 3) {
                const guint8 *num;
                if (ots_reader_get_data(&pl, 5, &num))
                    put_text(w, "block_number", num, 5);
            }
        }
        return;
    }
    guint8 fn;
    if (!ots_reader_get_u8(&h.param, &fn)) {
        if (h.rosctr == ROSCTR_JOB)
            problem(w, "bad_length", "job without a function");
        return;
    }
    put_uint(w, "function", fn);
    if (!code_lookup(job_functions, G_N_ELEMENTS(job_functions), fn))
        problem(w, "bad_function", "function 0x%02x", fn);
    walk_job_params(w, fn, &h.param, &h.data, h.rosctr == ROSCTR_JOB);
}

/* ---- S7comm-plus ------------------------------------------------------- */

typedef struct {
    guint8 version;
    guint16 dlen;
    gboolean integrity;
    guint8 opcode;
    guint16 function;
    guint16 seq;
    gboolean has_seq;
    guint32 session_id;
    gboolean has_session;
    guint8 transport_flags;
    gboolean has_flags;
} PlusHeader;

/* Request transport flag: the sender expects no response. */
#define S7P_FLAG_NO_RESPONSE 0x40

static gboolean
plus_header(Walk *w, OtsReader *r, PlusHeader *h)
{
    guint8 id;
    memset(h, 0, sizeof(*h));
    if (!ots_reader_get_u8(r, &id) || !ots_reader_get_u8(r, &h->version) ||
        !ots_reader_get_u16_be(r, &h->dlen)) {
        problem(w, "bad_length", "S7comm-plus header truncated");
        return FALSE;
    }
    OtsReader d;
    if (!ots_reader_get_sub_reader(r, &d, h->dlen)) {
        problem(w, "bad_length", "S7comm-plus data length %u but %" G_GSIZE_FORMAT " bytes",
                h->dlen, ots_reader_remaining(r));
        ots_reader_get_sub_reader(r, &d, ots_reader_remaining(r));
    }
    if (h->version == 0xfe) /* keep-alive: no opcode */
        return TRUE;
    if (h->version != 1 && h->version != 2 && h->version != 3)
        problem(w, "bad_version", "S7comm-plus version %u", h->version);
    /* V3 starts the data with the integrity digest (length byte + digest). */
    guint8 dig;
    if (h->version == 3 && ots_reader_peek_u8(&d, 0, &dig) && dig == 0x20) {
        if (!ots_reader_skip(&d, 1u + dig)) {
            problem(w, "bad_length", "integrity digest truncated");
            return FALSE;
        }
        h->integrity = TRUE;
    }
    if (!ots_reader_get_u8(&d, &h->opcode)) {
        problem(w, "bad_length", "S7comm-plus without an opcode");
        return FALSE;
    }
    guint16 reserved;
    if (h->opcode == S7P_OP_REQUEST || h->opcode == S7P_OP_RESPONSE ||
        h->opcode == S7P_OP_RESPONSE2) {
        if (!ots_reader_get_u16_be(&d, &reserved) || !ots_reader_get_u16_be(&d, &h->function) ||
            !ots_reader_get_u16_be(&d, &reserved) || !ots_reader_get_u16_be(&d, &h->seq)) {
            problem(w, "bad_length", "S7comm-plus %s header truncated",
                    h->opcode == S7P_OP_REQUEST ? "request" : "response");
            return FALSE;
        }
        h->has_seq = TRUE;
        if (h->opcode == S7P_OP_REQUEST && ots_reader_get_u32_be(&d, &h->session_id)) {
            h->has_session = TRUE;
            if (ots_reader_get_u8(&d, &h->transport_flags))
                h->has_flags = TRUE;
        }
    } else if (h->opcode == S7P_OP_NOTIFICATION) {
        if (ots_reader_get_u32_be(&d, &h->session_id))
            h->has_session = TRUE;
    } else {
        problem(w, "bad_opcode", "S7comm-plus opcode 0x%02x", h->opcode);
    }
    return TRUE;
}

static void
walk_plus(Walk *w, OtsReader *r)
{
    PlusHeader h;
    if (!plus_header(w, r, &h))
        return;
    put_uint(w, "version", h.version);
    put_uint(w, "data_length", h.dlen);
    if (h.version == 0xfe)
        return;
    put_bool(w, "integrity", h.integrity);
    put_uint(w, "opcode", h.opcode);
    if (h.has_seq) {
        put_uint(w, "function", h.function);
        put_uint(w, "sequence_number", h.seq);
    }
    if (h.has_session)
        put_uint(w, h.opcode == S7P_OP_NOTIFICATION ? "subscription_id" : "session_id",
                 h.session_id);
    if (h.has_flags) {
        put_uint(w, "transport_flags", h.transport_flags);
        put_bool(w, "no_response_expected", (h.transport_flags & S7P_FLAG_NO_RESPONSE) != 0);
    }
}

/* ---- COTP connection TPDUs ---------------------------------------------- */

static void
put_tsap(Walk *w, const char *k, const guint8 *v, gsize n)
{
    if (w->e)
        ots_event_add_hex(w->e, k, v, n);
}

/* @r covers the whole COTP TPDU (LI first). */
static void
walk_cotp_conn(Walk *w, OtsReader *r, gboolean *has_rack, guint8 *rack, guint8 *slot)
{
    guint8 li, type, cls;
    guint16 dst, src;
    if (!ots_reader_get_u8(r, &li) || !ots_reader_get_u8(r, &type))
        return;
    put_string(w, "cotp_type", cotp_type_name(type & 0xf0));
    if (!ots_reader_get_u16_be(r, &dst) || !ots_reader_get_u16_be(r, &src)) {
        problem(w, "bad_cotp", "COTP %s truncated", cotp_type_name(type & 0xf0));
        return;
    }
    put_uint(w, "dst_ref", dst);
    put_uint(w, "src_ref", src);
    if (!ots_reader_get_u8(r, &cls))
        return;
    if ((type & 0xf0) == COTP_DR || (type & 0xf0) == COTP_DC) {
        if ((type & 0xf0) == COTP_DR)
            put_uint(w, "reason", cls);
        return;
    }
    put_uint(w, "class", cls >> 4);
    while (ots_reader_remaining(r) > 0) {
        guint8 code, len;
        const guint8 *v;
        if (!ots_reader_get_u8(r, &code) || !ots_reader_get_u8(r, &len) ||
            !ots_reader_get_data(r, len, &v)) {
            problem(w, "bad_cotp", "COTP parameter truncated");
            return;
        }
        if (code == 0xc1) {
            put_tsap(w, "src_tsap", v, len);
        } else if (code == 0xc2) {
            put_tsap(w, "dst_tsap", v, len);
            /* S7 called TSAP: connection type, then rack << 5 | slot. */
            if (len == 2 && has_rack) {
                *has_rack = TRUE;
                *rack = v[1] >> 5;
                *slot = v[1] & 0x1f;
            }
        } else if (code == 0xc0 && len == 1) {
            put_uint(w, "tpdu_size", 1u << MIN(v[0], 16));
        }
    }
}

/* ---- events ------------------------------------------------------------ */

static void
classify_s7(const guint8 *msg, gsize len, guint32 *function, const char **name, OtsOpClass *op,
            gboolean *push)
{
    OtsReader r = OTS_READER_INIT(msg, len);
    Walk w = {0};
    S7Header h;
    *function = 0;
    *name = "unknown";
    *op = OTS_OP_OTHER;
    *push = FALSE;
    if (!s7_header(&w, &r, &h))
        return;
    if (h.rosctr == ROSCTR_USERDATA) {
        UdParams u;
        if (!ud_params(&w, &h.param, &h.data, &u))
            return;
        *function = USERDATA_FUNCTION | ud_function(&u);
        const CodeInfo *ci =
            code_lookup(userdata_functions, G_N_ELEMENTS(userdata_functions), ud_function(&u));
        *name = ci ? ci->name : "userdata";
        *op = ci ? ci->op : OTS_OP_OTHER;
        *push = u.type == UD_TYPE_PUSH || u.type == 3;
        return;
    }
    guint8 fn;
    if (!ots_reader_get_u8(&h.param, &fn))
        return;
    *function = fn;
    const CodeInfo *ci = code_lookup(job_functions, G_N_ELEMENTS(job_functions), fn);
    if (ci) {
        *name = ci->name;
        *op = ci->op;
    }
    if (fn == FN_PI_SERVICE) {
        /* Block management through PI services changes the program. */
        const guint8 *svc;
        guint16 blen;
        guint8 n;
        if (ots_reader_skip(&h.param, 7) && ots_reader_get_u16_be(&h.param, &blen) &&
            ots_reader_skip(&h.param, blen) && ots_reader_get_u8(&h.param, &n) &&
            ots_reader_get_data(&h.param, n, &svc)) {
            if ((n == 5 && memcmp(svc, "_INSE", 5) == 0) ||
                (n == 5 && memcmp(svc, "_DELE", 5) == 0))
                *op = OTS_OP_PROGRAM_DOWNLOAD;
            else if (n == 5 && memcmp(svc, "_GARB", 5) == 0)
                *op = OTS_OP_CONTROL;
            else if (n == 5 && memcmp(svc, "_MODU", 5) == 0)
                *op = OTS_OP_CONTROL;
        }
    }
}

static void
classify_plus(const guint8 *msg, gsize len, guint32 *function, const char **name, OtsOpClass *op,
              gboolean *oneway)
{
    OtsReader r = OTS_READER_INIT(msg, len);
    Walk w = {0};
    PlusHeader h;
    *function = 0;
    *name = "unknown";
    *op = OTS_OP_OTHER;
    *oneway = FALSE;
    if (!plus_header(&w, &r, &h))
        return;
    if (h.version == 0xfe) {
        *name = "keep_alive";
        *op = OTS_OP_SESSION;
        *oneway = TRUE;
        return;
    }
    if (h.opcode == S7P_OP_NOTIFICATION) {
        *name = "notification";
        *op = OTS_OP_MONITOR;
        *oneway = TRUE;
        return;
    }
    if (!h.has_seq) {
        *oneway = TRUE;
        return;
    }
    *function = h.function;
    *oneway = h.has_flags && (h.transport_flags & S7P_FLAG_NO_RESPONSE);
    const CodeInfo *ci = code_lookup(plus_functions, G_N_ELEMENTS(plus_functions), h.function);
    if (ci) {
        *name = ci->name;
        *op = ci->op;
    }
}

static void
emit_side(OtsEvent *e, const char *key, guint8 cotp_type, KeyKind kind, const guint8 *msg,
          gsize len, const OtsReader *szl, gboolean *has_rack, guint8 *rack, guint8 *slot)
{
    Walk w = {.e = e};
    OtsReader r = OTS_READER_INIT(msg, len);
    ots_event_begin_object(e, key);
    if (kind == KEY_CONNECT || kind == KEY_DISCONNECT) {
        walk_cotp_conn(&w, &r, has_rack, rack, slot);
    } else {
        ots_event_add_string(e, "cotp_type", "DT");
        if (kind == KEY_PLUS)
            walk_plus(&w, &r);
        else
            walk_s7(&w, &r, szl);
    }
    ots_event_end_object(e);
}

/* One transaction: @p (nullable) the request, @resp (nullable) the
 * response bytes (same layout as Pending.msg). */
static void
emit_transaction(OtsSession *s, KeyKind kind, const Pending *p, const guint8 *resp, gsize resp_len,
                 guint8 resp_cotp, OtsDirection resp_dir, const OtsReader *szl)
{
    OtsTransactionInfo info = {
        .request_dir = p ? p->dir : OTS_DIR_REVERSE(resp_dir),
        .request_ts = p ? p->ts : 0,
        .response_ts = resp ? ots_session_get_time(s) : 0,
    };
    const guint8 *cm = p ? p->msg : resp;
    gsize cl = p ? p->len : resp_len;
    gboolean oneway = FALSE;
    gboolean exception = FALSE;
    const char *obj = "s7comm";

    switch (kind) {
    case KEY_CONNECT:
        info.function = COTP_CR;
        info.function_name = "cotp_connect";
        info.op_class = OTS_OP_SESSION;
        break;
    case KEY_DISCONNECT:
        info.function = COTP_DR;
        info.function_name = "cotp_disconnect";
        info.op_class = OTS_OP_SESSION;
        break;
    case KEY_PLUS:
        classify_plus(cm, cl, &info.function, &info.function_name, &info.op_class, &oneway);
        info.proto = "s7comm_plus";
        obj = "s7comm_plus";
        if (resp && !p) {
            /* The response names the function too. */
        }
        break;
    case KEY_S7: {
        classify_s7(cm, cl, &info.function, &info.function_name, &info.op_class, &oneway);
        if (resp) {
            OtsReader r = OTS_READER_INIT(resp, resp_len);
            Walk w = {0};
            S7Header h;
            if (s7_header(&w, &r, &h)) {
                if (h.has_error && (h.err_class || h.err_code))
                    exception = TRUE;
                UdParams u;
                if (h.rosctr == ROSCTR_USERDATA && ud_params(&w, &h.param, &h.data, &u) &&
                    u.has_ref && u.error_code != 0)
                    exception = TRUE;
            }
        }
        break;
    }
    }

    if (oneway && !p) {
        /* Server pushes are unsolicited; other one-way messages are by design. */
        info.status = resp_dir == OTS_DIR_TO_CLIENT ? OTS_TX_UNSOLICITED : OTS_TX_NO_RESPONSE;
        info.request_dir = resp_dir;
        info.request_ts = info.response_ts;
        info.response_ts = 0;
    } else if (!resp) {
        info.status = OTS_TX_UNANSWERED;
    } else if (!p) {
        info.status = OTS_TX_NO_REQUEST;
    } else if (exception) {
        info.status = OTS_TX_EXCEPTION;
    } else {
        info.status = OTS_TX_OK;
    }

    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    gboolean has_rack = FALSE;
    guint8 rack = 0, slot = 0;
    ots_event_begin_object(e, obj);
    if (kind == KEY_S7 && info.function >= USERDATA_FUNCTION) {
        ots_event_add_uint(e, "function_group", (info.function >> 8) & 0xff);
        ots_event_add_uint(e, "subfunction", info.function & 0xff);
    }
    if (oneway && !p) {
        emit_side(e, resp_dir == OTS_DIR_TO_CLIENT ? "response" : "request", resp_cotp, kind, resp,
                  resp_len, szl, &has_rack, &rack, &slot);
    } else {
        if (p)
            emit_side(e, "request", p->cotp_type, kind, p->msg, p->len, NULL, &has_rack, &rack,
                      &slot);
        if (p && p->truncated)
            ots_event_add_bool(e, "request_truncated", TRUE);
        if (resp)
            emit_side(e, "response", resp_cotp, kind, resp, resp_len, szl, &has_rack, &rack, &slot);
    }
    if (has_rack) {
        ots_event_add_uint(e, "rack", rack);
        ots_event_add_uint(e, "slot", slot);
    }
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* ---- asset facts from SZL replies -------------------------------------- */

/* Trims trailing blanks and NULs of a fixed-width text field. */
static gsize
text_len(const guint8 *v, gsize n)
{
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == 0))
        n--;
    return n;
}

static void
emit_szl_asset(OtsSession *s, OtsReader *szl)
{
    guint16 id, index, rec_len, count;
    if (!ots_reader_get_u16_be(szl, &id) || !ots_reader_get_u16_be(szl, &index) ||
        !ots_reader_get_u16_be(szl, &rec_len) || !ots_reader_get_u16_be(szl, &count))
        return;
    if ((id & 0x00ff) != 0x11 && (id & 0x00ff) != 0x1c)
        return;
    if (rec_len < 4 || count == 0)
        return;

    OtsEvent *e = ots_session_begin_asset(s, OTS_DIR_TO_CLIENT, OTS_ROLE_CONTROLLER);
    if (!e)
        return;
    ots_event_add_string(e, "vendor", "Siemens");
    for (guint i = 0; i < count; i++) {
        const guint8 *rec;
        if (!ots_reader_get_data(szl, rec_len, &rec))
            break;
        guint idx = ((guint)rec[0] << 8) | rec[1];
        const guint8 *v = rec + 2;
        gsize n = rec_len - 2u;
        if ((id & 0xff) == 0x11) {
            /* Module identification: index, MLFB (20), BGTyp, Ausbg, Ausbe. */
            if (rec_len < 28)
                break;
            if (idx == 0x0001)
                ots_event_add_string_len(e, "product_code", v, text_len(v, 20));
            else if (idx == 0x0006)
                ots_event_add_string_len(e, "hardware_order_number", v, text_len(v, 20));
            else if (idx == 0x0007 && rec[24] == 'V') {
                char fw[32];
                g_snprintf(fw, sizeof(fw), "V%u.%u.%u", rec[25], rec[26], rec[27]);
                ots_event_add_string(e, "firmware", fw);
            } else if (idx == 0x0081 && rec[24] == 'V') {
                char fw[32];
                g_snprintf(fw, sizeof(fw), "V%u.%u.%u", rec[25], rec[26], rec[27]);
                ots_event_add_string(e, "firmware_extension", fw);
            }
        } else {
            /* Component identification: index, text (32 bytes). */
            n = MIN(n, (gsize)32);
            static const char *const keys[] = {
                [1] = "name",   [2] = "module_name", [3] = "plant_id",           [4] = "copyright",
                [5] = "serial", [7] = "model",       [8] = "memory_card_serial", [11] = "location",
            };
            if (idx < G_N_ELEMENTS(keys) && keys[idx])
                ots_event_add_string_len(e, keys[idx], v, text_len(v, n));
            if (idx == 7)
                ots_event_add_string_len(e, "product", v, text_len(v, n));
        }
    }
    ots_event_begin_object(e, "s7comm");
    ots_event_add_uint(e, "szl_id", id);
    ots_event_add_uint(e, "szl_index", index);
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* ---- reassembly buffers ------------------------------------------------ */

/* Appends @n bytes, growing the capacity (at most to @limit, which the
 * caller has checked covers len + n) and charging what it grows by. FALSE
 * when the budget refuses it: @b is left as it was. */
static gboolean
rebuf_append(OtsSession *s, ReBuf *b, const guint8 *v, gsize n, gsize limit)
{
    if (b->len + n > b->cap) {
        gsize cap = MAX(b->cap, (gsize)256);
        while (cap < b->len + n)
            cap *= 2;
        cap = MAX(MIN(cap, limit), b->len + n);
        if (!ots_session_charge(s, cap - b->cap))
            return FALSE;
        b->data = g_realloc(b->data, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, v, n);
    b->len += n;
    return TRUE;
}

/* Frees the buffer and refunds what it was charged. */
static void
rebuf_clear(OtsSession *s, ReBuf *b)
{
    if (b->cap)
        ots_session_refund(s, b->cap);
    g_free(b->data);
    *b = (ReBuf){0};
}

/* ---- pairing ----------------------------------------------------------- */

/* What a kept request is charged to flows.memcap_mb: its whole allocation. */
static gsize
pending_cost(const Pending *p)
{
    return sizeof(Pending) + p->len;
}

/* Frees a request that was kept (and so charged); @p is unlinked. */
static void
pending_free(OtsSession *s, Pending *p)
{
    ots_session_refund(s, pending_cost(p));
    g_free(p);
}

static void
pending_unanswered(OtsSession *s, S7State *st, Pending *p)
{
    g_queue_unlink(&st->pending, &p->link);
    emit_transaction(s, p->kind, p, NULL, 0, 0, OTS_DIR_REVERSE(p->dir), NULL);
    pending_free(s, p);
}

static Pending *
pending_find(S7State *st, KeyKind kind, guint16 key, OtsDirection req_dir)
{
    for (GList *l = st->pending.head; l; l = l->next) {
        Pending *p = l->data;
        if (p->kind == kind && p->key == key && p->dir == req_dir)
            return p;
    }
    return NULL;
}

static void
pending_add(OtsSession *s, S7State *st, OtsDirection dir, KeyKind kind, guint16 key,
            guint8 cotp_type, const guint8 *msg, gsize len)
{
    Pending *old = pending_find(st, kind, key, dir);
    if (old)
        pending_unanswered(s, st, old);
    if (st->pending.length >= MAX_PENDING)
        pending_unanswered(s, st, st->pending.head->data);
    gsize keep = MIN(len, (gsize)MAX_STORED);
    Pending *p = g_malloc(sizeof(Pending) + keep);
    p->link.data = p;
    p->link.prev = p->link.next = NULL;
    p->ts = ots_session_get_time(s);
    p->dir = dir;
    p->kind = kind;
    p->key = key;
    p->cotp_type = cotp_type;
    p->truncated = keep < len;
    p->len = keep;
    if (keep)
        memcpy(p->msg, msg, keep);

    /* Past the thread's memory budget: the oldest request goes as when the
     * table is full, and if that is not enough this one is reported now,
     * unanswered, rather than lost. */
    gboolean kept = ots_session_charge(s, pending_cost(p));
    if (!kept && st->pending.head) {
        pending_unanswered(s, st, st->pending.head->data);
        kept = ots_session_charge(s, pending_cost(p));
    }
    if (!kept) {
        emit_transaction(s, kind, p, NULL, 0, 0, OTS_DIR_REVERSE(dir), NULL);
        g_free(p);
        return;
    }
    g_queue_push_tail_link(&st->pending, &p->link);
}

static void
handle_response(OtsSession *s, S7State *st, OtsDirection dir, KeyKind kind, guint16 key,
                guint8 cotp_type, const guint8 *msg, gsize len, const OtsReader *szl)
{
    Pending *p = pending_find(st, kind, key, OTS_DIR_REVERSE(dir));
    if (p) {
        g_queue_unlink(&st->pending, &p->link);
    } else {
        Walk w = {.s = s, .dir = dir};
        if (kind == KEY_CONNECT)
            problem(&w, "response_without_request", "COTP connection confirm without request");
        else
            problem(&w, "response_without_request", "response to reference %u", key);
    }
    emit_transaction(s, kind, p, msg, len, cotp_type, dir, szl);
    if (p)
        pending_free(s, p);
}

/* Userdata response reassembly (SZL lists longer than one PDU). Returns
 * a reader over the reassembled payload when @u completes one. */
static gboolean
ud_reassemble(OtsSession *s, S7State *st, OtsDirection dir, const UdParams *u, OtsReader *out)
{
    if (!u->has_ref || !u->has_data)
        return FALSE;
    const guint8 *v = u->payload.data + u->payload.pos;
    gsize n = ots_reader_remaining(&u->payload);
    if (u->last_unit != 0) {
        if (!st->ud_active || st->ud_ref != u->dataunit_ref) {
            st->ud.len = 0;
            st->ud_active = TRUE;
            st->ud_ref = u->dataunit_ref;
        }
        if (st->ud.len + n > MAX_SZL_BUF) {
            Walk w = {.s = s, .dir = dir};
            problem(&w, "reassembly_overflow", "userdata data unit over %u bytes", MAX_SZL_BUF);
            st->ud_active = FALSE;
            rebuf_clear(s, &st->ud);
            return FALSE;
        }
        if (!rebuf_append(s, &st->ud, v, n, MAX_SZL_BUF)) {
            Walk w = {.s = s, .dir = dir};
            problem(&w, "memcap",
                    "flows.memcap_mb reached: userdata data unit of %" G_GSIZE_FORMAT
                    " bytes dropped",
                    st->ud.len + n);
            st->ud_active = FALSE;
            rebuf_clear(s, &st->ud);
        }
        return FALSE;
    }
    if (!st->ud_active || st->ud_ref != u->dataunit_ref)
        return FALSE;
    st->ud_active = FALSE;
    if (st->ud.len + n > MAX_SZL_BUF) {
        rebuf_clear(s, &st->ud);
        return FALSE;
    }
    if (!rebuf_append(s, &st->ud, v, n, MAX_SZL_BUF)) {
        Walk w = {.s = s, .dir = dir};
        problem(&w, "memcap",
                "flows.memcap_mb reached: userdata data unit of %" G_GSIZE_FORMAT " bytes dropped",
                st->ud.len + n);
        rebuf_clear(s, &st->ud);
        return FALSE;
    }
    ots_reader_init(out, st->ud.data, st->ud.len);
    return TRUE;
}

static void
handle_s7(OtsSession *s, S7State *st, OtsDirection dir, const guint8 *msg, gsize len)
{
    Walk w = {.s = s, .dir = dir};
    OtsReader r = OTS_READER_INIT(msg, len);
    walk_s7(&w, &r, NULL); /* check pass */

    OtsReader hr = OTS_READER_INIT(msg, len);
    Walk quiet = {0};
    S7Header h;
    if (!s7_header(&quiet, &hr, &h))
        return;

    if (h.rosctr == ROSCTR_USERDATA) {
        UdParams u;
        if (!ud_params(&quiet, &h.param, &h.data, &u))
            return;
        if (u.type == UD_TYPE_PUSH || u.type == 3) {
            emit_transaction(s, KEY_S7, NULL, msg, len, COTP_DT, dir, NULL);
            return;
        }
        if (u.type == UD_TYPE_REQUEST || u.type == 7) {
            pending_add(s, st, dir, KEY_S7, h.pduref, COTP_DT, msg, len);
            return;
        }
        /* SZL answers: reassemble data units, then report identity facts. */
        OtsReader szl = OTS_READER_INIT(NULL, 0);
        gboolean reassembled = FALSE, identity = FALSE;
        if (u.group == UD_GROUP_CPU && u.subfunc == 1 && u.return_code == 0xff && u.has_data) {
            reassembled = ud_reassemble(s, st, dir, &u, &szl);
            if (reassembled) {
                identity = TRUE;
            } else if (!u.has_ref || u.last_unit == 0) {
                szl = u.payload;
                identity = !st->ud_active;
            }
        }
        handle_response(s, st, dir, KEY_S7, h.pduref, COTP_DT, msg, len, reassembled ? &szl : NULL);
        if (identity) {
            OtsReader a = szl;
            emit_szl_asset(s, &a);
        }
        if (reassembled)
            rebuf_clear(s, &st->ud); /* @szl pointed into it */
        return;
    }
    if (h.rosctr == ROSCTR_JOB) {
        pending_add(s, st, dir, KEY_S7, h.pduref, COTP_DT, msg, len);
        return;
    }
    if (h.rosctr == ROSCTR_ACK || h.rosctr == ROSCTR_ACK_DATA) {
        guint8 fn;
        OtsReader pr = h.param;
        if (ots_reader_get_u8(&pr, &fn) && fn == FN_SETUP_COMM) {
            guint16 pdu;
            if (ots_reader_skip(&pr, 5) && ots_reader_get_u16_be(&pr, &pdu))
                st->pdu_size = pdu;
        }
        handle_response(s, st, dir, KEY_S7, h.pduref, COTP_DT, msg, len, NULL);
        return;
    }
    /* Unknown ROSCTR (already an anomaly): still one event for the PDU. */
    emit_transaction(s, KEY_S7, NULL, msg, len, COTP_DT, dir, NULL);
}

static void
handle_plus(OtsSession *s, S7State *st, OtsDirection dir, const guint8 *msg, gsize len)
{
    Walk w = {.s = s, .dir = dir};
    OtsReader r = OTS_READER_INIT(msg, len);
    walk_plus(&w, &r);

    Walk quiet = {0};
    PlusHeader h;
    OtsReader hr = OTS_READER_INIT(msg, len);
    if (!plus_header(&quiet, &hr, &h) || !h.has_seq) {
        emit_transaction(s, KEY_PLUS, NULL, msg, len, COTP_DT, dir, NULL);
        return;
    }
    if (h.opcode == S7P_OP_REQUEST && h.has_flags && (h.transport_flags & S7P_FLAG_NO_RESPONSE))
        emit_transaction(s, KEY_PLUS, NULL, msg, len, COTP_DT, dir, NULL);
    else if (h.opcode == S7P_OP_REQUEST)
        pending_add(s, st, dir, KEY_PLUS, h.seq, COTP_DT, msg, len);
    else
        handle_response(s, st, dir, KEY_PLUS, h.seq, COTP_DT, msg, len, NULL);
}

static void
handle_message(OtsSession *s, S7State *st, OtsDirection dir, const guint8 *msg, gsize len)
{
    if (len == 0) {
        Walk w = {.s = s, .dir = dir};
        problem(&w, "bad_length", "empty COTP DT");
        return;
    }
    if (msg[0] == S7_PROTO_ID) {
        handle_s7(s, st, dir, msg, len);
    } else if (msg[0] == S7P_PROTO_ID) {
        handle_plus(s, st, dir, msg, len);
    } else {
        Walk w = {.s = s, .dir = dir};
        problem(&w, "bad_protocol_id", "COTP payload protocol id 0x%02x", msg[0]);
    }
}

/* ---- framing ----------------------------------------------------------- */

static gsize
max_msg(OtsSession *s)
{
    gsize m = ots_session_get_max_pdu(s);
    return m ? m : DEFAULT_MAX_MSG;
}

/* One TPKT's COTP TPDU. */
static void
handle_tpdu(OtsSession *s, S7State *st, OtsDirection dir, OtsReader *t)
{
    Walk w = {.s = s, .dir = dir};
    guint8 li = 0, type = 0;
    if (!ots_reader_peek_u8(t, 0, &li) || !ots_reader_peek_u8(t, 1, &type) || li < 1 ||
        (gsize)li + 1 > ots_reader_remaining(t)) {
        problem(&w, "bad_cotp", "COTP length indicator %u in a %" G_GSIZE_FORMAT "-byte TPKT", li,
                ots_reader_remaining(t));
        return;
    }
    type &= 0xf0;
    const guint8 *all = t->data + t->pos;
    gsize all_len = ots_reader_remaining(t);

    switch (type) {
    case COTP_DT: {
        guint8 nr;
        if (li < 2 || !ots_reader_peek_u8(t, 2, &nr)) {
            problem(&w, "bad_cotp", "COTP DT header of %u bytes", li);
            return;
        }
        const guint8 *payload = all + li + 1;
        gsize plen = all_len - li - 1u;
        gboolean eot = (nr & 0x80) != 0;
        ReBuf *buf = &st->dt[dir];
        if (!eot || buf->len > 0) {
            if (st->dt_overflow[dir] || buf->len + plen > max_msg(s)) {
                if (!st->dt_overflow[dir])
                    problem(&w, "reassembly_overflow",
                            "COTP DT sequence over %" G_GSIZE_FORMAT " bytes", max_msg(s));
                st->dt_overflow[dir] = !eot;
                rebuf_clear(s, buf);
                return;
            }
            if (!rebuf_append(s, buf, payload, plen, max_msg(s))) {
                /* The rest of the sequence is skipped as after an overflow. */
                problem(&w, "memcap",
                        "flows.memcap_mb reached: COTP DT sequence of %" G_GSIZE_FORMAT
                        " bytes dropped",
                        buf->len + plen);
                st->dt_overflow[dir] = !eot;
                rebuf_clear(s, buf);
                return;
            }
            if (!eot)
                return;
            ReBuf whole = *buf;
            *buf = (ReBuf){0};
            handle_message(s, st, dir, whole.data, whole.len);
            rebuf_clear(s, &whole);
            return;
        }
        st->dt_overflow[dir] = FALSE;
        handle_message(s, st, dir, payload, plen);
        return;
    }
    case COTP_CR:
    case COTP_DR:
        if (li < 6) {
            problem(&w, "bad_cotp", "COTP %s header of %u bytes", cotp_type_name(type), li);
            return;
        }
        pending_add(s, st, dir, type == COTP_CR ? KEY_CONNECT : KEY_DISCONNECT, 0, type, all,
                    li + 1u);
        {
            OtsReader c = OTS_READER_INIT(all, li + 1u);
            walk_cotp_conn(&w, &c, NULL, NULL, NULL);
        }
        return;
    case COTP_CC:
    case COTP_DC:
        /* DC has no class/reason octet after the references: LI 5. */
        if (li < (type == COTP_DC ? 5 : 6)) {
            problem(&w, "bad_cotp", "COTP %s header of %u bytes", cotp_type_name(type), li);
            return;
        }
        {
            OtsReader c = OTS_READER_INIT(all, li + 1u);
            walk_cotp_conn(&w, &c, NULL, NULL, NULL);
        }
        handle_response(s, st, dir, type == COTP_CC ? KEY_CONNECT : KEY_DISCONNECT, 0, type, all,
                        li + 1u, NULL);
        return;
    case COTP_ER:
    case COTP_ED:
    case COTP_EA:
    case COTP_AK:
    case COTP_RJ:
        /* Class 0 over TCP does not use these; ER reports a protocol error. */
        problem(&w, type == COTP_ER ? "cotp_error" : "unexpected_cotp_type", "COTP %s TPDU",
                cotp_type_name(type));
        return;
    default:
        problem(&w, "bad_cotp", "COTP TPDU type 0x%02x", type);
        return;
    }
}

/* Is there a plausible TPKT + COTP header at @off? */
static OtsProbeResult
plausible_at(const OtsReader *r, gsize off)
{
    OtsReader c = *r;
    guint8 v, res, li, type;
    guint16 len;
    if (!ots_reader_skip(&c, off))
        return OTS_PROBE_NEED_MORE;
    if (ots_reader_peek_u8(&c, 0, &v) && v != TPKT_VERSION)
        return OTS_PROBE_NO;
    if (ots_reader_peek_u8(&c, 1, &res) && res != 0)
        return OTS_PROBE_NO;
    if (!ots_reader_peek_u16_be(&c, 2, &len))
        return OTS_PROBE_NEED_MORE;
    if (len < TPKT_MIN_LEN)
        return OTS_PROBE_NO;
    if (!ots_reader_peek_u8(&c, 4, &li) || !ots_reader_peek_u8(&c, 5, &type))
        return OTS_PROBE_NEED_MORE;
    if (li < 2 || (gsize)li + 5 > len || !cotp_type_name(type & 0xf0))
        return OTS_PROBE_NO;
    if ((type & 0xf0) == COTP_DT) {
        guint8 proto;
        if (li != 2)
            return OTS_PROBE_NO;
        if (len == 7)
            return OTS_PROBE_YES;
        if (!ots_reader_peek_u8(&c, 7, &proto))
            return OTS_PROBE_NEED_MORE;
        if (proto != S7_PROTO_ID && proto != S7P_PROTO_ID)
            return OTS_PROBE_NO;
    }
    return OTS_PROBE_YES;
}

static OtsParseResult
resync(S7State *st, OtsDirection dir, OtsReader *r)
{
    gsize rem = ots_reader_remaining(r);
    for (gsize off = 0; off < rem; off++) {
        OtsProbeResult res = plausible_at(r, off);
        if (res == OTS_PROBE_NO)
            continue;
        ots_reader_skip(r, off);
        if (res == OTS_PROBE_NEED_MORE)
            return OTS_PARSE_NEED_MORE;
        st->resync[dir] = FALSE;
        return OTS_PARSE_OK;
    }
    ots_reader_skip(r, rem);
    return OTS_PARSE_NEED_MORE;
}

static OtsParseResult
s7comm_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    S7State *st = state;

    for (;;) {
        if (st->resync[dir] && resync(st, dir, r) != OTS_PARSE_OK)
            return ots_reader_remaining(r) ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK;
        if (ots_reader_remaining(r) == 0)
            return OTS_PARSE_OK;

        guint8 v, res;
        guint16 len;
        if (!ots_reader_peek_u8(r, 0, &v) || !ots_reader_peek_u8(r, 1, &res) ||
            !ots_reader_peek_u16_be(r, 2, &len))
            return OTS_PARSE_NEED_MORE;
        if (v != TPKT_VERSION || len < TPKT_MIN_LEN) {
            Walk w = {.s = s, .dir = dir};
            if (v != TPKT_VERSION)
                problem(&w, "bad_tpkt", "TPKT version %u (expected 3)", v);
            else
                problem(&w, "bad_tpkt", "TPKT length %u below %u", len, TPKT_MIN_LEN);
            st->resync[dir] = TRUE;
            rebuf_clear(s, &st->dt[dir]);
            ots_reader_skip(r, 1);
            continue;
        }
        if (ots_reader_remaining(r) < len)
            return OTS_PARSE_NEED_MORE;
        OtsReader t = OTS_READER_INIT(NULL, 0);
        ots_reader_skip(r, TPKT_HEADER_LEN);
        ots_reader_get_sub_reader(r, &t, len - TPKT_HEADER_LEN);
        handle_tpdu(s, st, dir, &t);
    }
}

static OtsProbeResult
s7comm_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    if (l4 != OTS_L4_TCP)
        return OTS_PROBE_NO;
    return plausible_at(r, 0);
}

static gpointer
s7comm_state_new(OtsSession *s)
{
    S7State *st = g_new0(S7State, 1);
    g_queue_init(&st->pending);
    return st;
}

/* flow_end() has drained and refunded everything; whatever is left was
 * charged to the flow and the core refunds it when the flow goes. */
static void
s7comm_state_free(gpointer state)
{
    S7State *st = state;
    GList *l;
    while ((l = g_queue_pop_head_link(&st->pending)))
        g_free(l->data);
    g_free(st->dt[0].data);
    g_free(st->dt[1].data);
    g_free(st->ud.data);
    g_free(st);
}

static void
s7comm_gap(OtsSession *s, gpointer state, OtsDirection dir, guint32 len)
{
    S7State *st = state;
    st->resync[dir] = TRUE;
    /* A COTP DT sequence with a hole cannot be completed. */
    rebuf_clear(s, &st->dt[dir]);
    if (dir == OTS_DIR_TO_CLIENT) {
        st->ud_active = FALSE;
        rebuf_clear(s, &st->ud);
    }
}

static void
s7comm_flow_end(OtsSession *s, gpointer state)
{
    S7State *st = state;
    while (st->pending.head)
        pending_unanswered(s, st, st->pending.head->data);
    rebuf_clear(s, &st->dt[0]);
    rebuf_clear(s, &st->dt[1]);
    rebuf_clear(s, &st->ud);
}

static void
s7comm_tick(OtsSession *s, gpointer state, gint64 now)
{
    S7State *st = state;
    while (st->pending.head) {
        Pending *p = st->pending.head->data;
        if (now - p->ts <= PENDING_TIMEOUT_US)
            break;
        pending_unanswered(s, st, p);
    }
}

static const OtsDissectorInfo s7comm_info = {
    .abi_major = OTS_DISSECTOR_ABI_MAJOR,
    .abi_minor = OTS_DISSECTOR_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "s7comm",
    .version = "0.1.0",
    .description = "Siemens S7comm and S7comm-plus over ISO-on-TCP (TPKT/COTP)",
    .tcp_ports = (const guint16[]){102, 0},
    .probe = s7comm_probe,
    .state_new = s7comm_state_new,
    .state_free = s7comm_state_free,
    .parse = s7comm_parse,
    .gap = s7comm_gap,
    .flow_end = s7comm_flow_end,
    .tick = s7comm_tick,
};

OTS_DISSECTOR_DEFINE(s7comm_info)
