/* SPDX-License-Identifier: Apache-2.0 */

/* Modbus/TCP dissector: MBAP framing, every public function code, request /
 * response pairing by (transaction id, unit id), device identification as
 * asset facts, out-of-spec PDUs as anomalies. This is the reference plugin
 * the other dissectors copy; README.md documents every field it emits.
 *
 * Each PDU is walked by one function per direction (walk_request,
 * walk_response) in one of three passes: a check pass that raises
 * anomalies, an emit pass that writes event fields, and a silent pass that
 * only counts problems (heuristics). Sharing the walker keeps what we check
 * and what we report from drifting apart. The passes are separate because a
 * session has one open event at a time: anomalies cannot be raised while a
 * transaction event is being written. */

#include <otsensor/dissector.h>

#define MBAP_HEADER_LEN 7   /* transaction id, protocol id, length, unit id */
#define MBAP_MIN_LENGTH 2   /* unit id + function code */
#define MBAP_MAX_LENGTH 254 /* unit id + the largest PDU (253 bytes) */
#define MAX_PENDING 512
#define PENDING_TIMEOUT_US (30 * G_USEC_PER_SEC)
#define MAX_VALUES 16 /* register/coil values reported per event */

enum {
    FC_READ_COILS = 1,
    FC_READ_DISCRETE_INPUTS = 2,
    FC_READ_HOLDING_REGISTERS = 3,
    FC_READ_INPUT_REGISTERS = 4,
    FC_WRITE_SINGLE_COIL = 5,
    FC_WRITE_SINGLE_REGISTER = 6,
    FC_READ_EXCEPTION_STATUS = 7,
    FC_DIAGNOSTICS = 8,
    FC_GET_COMM_EVENT_COUNTER = 11,
    FC_GET_COMM_EVENT_LOG = 12,
    FC_WRITE_MULTIPLE_COILS = 15,
    FC_WRITE_MULTIPLE_REGISTERS = 16,
    FC_REPORT_SERVER_ID = 17,
    FC_READ_FILE_RECORD = 20,
    FC_WRITE_FILE_RECORD = 21,
    FC_MASK_WRITE_REGISTER = 22,
    FC_READ_WRITE_MULTIPLE_REGISTERS = 23,
    FC_READ_FIFO_QUEUE = 24,
    FC_ENCAPSULATED_INTERFACE = 43,
};

#define FC_EXCEPTION_BIT 0x80
#define MEI_CANOPEN 13
#define MEI_READ_DEVICE_ID 14
#define DIAG_RESTART_COMMUNICATIONS 1
#define DIAG_FORCE_LISTEN_ONLY 4
#define FILE_REFERENCE_TYPE 6

static const char *const function_names[128] = {
    [FC_READ_COILS] = "read_coils",
    [FC_READ_DISCRETE_INPUTS] = "read_discrete_inputs",
    [FC_READ_HOLDING_REGISTERS] = "read_holding_registers",
    [FC_READ_INPUT_REGISTERS] = "read_input_registers",
    [FC_WRITE_SINGLE_COIL] = "write_single_coil",
    [FC_WRITE_SINGLE_REGISTER] = "write_single_register",
    [FC_READ_EXCEPTION_STATUS] = "read_exception_status",
    [FC_DIAGNOSTICS] = "diagnostics",
    [FC_GET_COMM_EVENT_COUNTER] = "get_comm_event_counter",
    [FC_GET_COMM_EVENT_LOG] = "get_comm_event_log",
    [FC_WRITE_MULTIPLE_COILS] = "write_multiple_coils",
    [FC_WRITE_MULTIPLE_REGISTERS] = "write_multiple_registers",
    [FC_REPORT_SERVER_ID] = "report_server_id",
    [FC_READ_FILE_RECORD] = "read_file_record",
    [FC_WRITE_FILE_RECORD] = "write_file_record",
    [FC_MASK_WRITE_REGISTER] = "mask_write_register",
    [FC_READ_WRITE_MULTIPLE_REGISTERS] = "read_write_multiple_registers",
    [FC_READ_FIFO_QUEUE] = "read_fifo_queue",
    [FC_ENCAPSULATED_INTERFACE] = "encapsulated_interface_transport",
};

static const OtsOpClass function_classes[128] = {
    [FC_READ_COILS] = OTS_OP_READ,
    [FC_READ_DISCRETE_INPUTS] = OTS_OP_READ,
    [FC_READ_HOLDING_REGISTERS] = OTS_OP_READ,
    [FC_READ_INPUT_REGISTERS] = OTS_OP_READ,
    [FC_WRITE_SINGLE_COIL] = OTS_OP_WRITE,
    [FC_WRITE_SINGLE_REGISTER] = OTS_OP_WRITE,
    [FC_READ_EXCEPTION_STATUS] = OTS_OP_DIAGNOSTICS,
    [FC_DIAGNOSTICS] = OTS_OP_DIAGNOSTICS,
    [FC_GET_COMM_EVENT_COUNTER] = OTS_OP_DIAGNOSTICS,
    [FC_GET_COMM_EVENT_LOG] = OTS_OP_DIAGNOSTICS,
    [FC_WRITE_MULTIPLE_COILS] = OTS_OP_WRITE,
    [FC_WRITE_MULTIPLE_REGISTERS] = OTS_OP_WRITE,
    [FC_REPORT_SERVER_ID] = OTS_OP_DIAGNOSTICS,
    [FC_READ_FILE_RECORD] = OTS_OP_READ,
    [FC_WRITE_FILE_RECORD] = OTS_OP_WRITE,
    [FC_MASK_WRITE_REGISTER] = OTS_OP_WRITE,
    /* Reads and writes in one request: classed by the riskier half. */
    [FC_READ_WRITE_MULTIPLE_REGISTERS] = OTS_OP_WRITE,
    [FC_READ_FIFO_QUEUE] = OTS_OP_READ,
};

static const char *const exception_names[] = {
    [1] = "illegal_function",
    [2] = "illegal_data_address",
    [3] = "illegal_data_value",
    [4] = "server_device_failure",
    [5] = "acknowledge",
    [6] = "server_device_busy",
    [7] = "negative_acknowledge",
    [8] = "memory_parity_error",
    [10] = "gateway_path_unavailable",
    [11] = "gateway_target_failed_to_respond",
};

static const char *const diagnostic_names[] = {
    [0] = "return_query_data",
    [1] = "restart_communications",
    [2] = "return_diagnostic_register",
    [3] = "change_ascii_input_delimiter",
    [4] = "force_listen_only_mode",
    [10] = "clear_counters_and_diagnostic_register",
    [11] = "return_bus_message_count",
    [12] = "return_bus_communication_error_count",
    [13] = "return_bus_exception_error_count",
    [14] = "return_server_message_count",
    [15] = "return_server_no_response_count",
    [16] = "return_server_nak_count",
    [17] = "return_server_busy_count",
    [18] = "return_bus_character_overrun_count",
    [20] = "clear_overrun_counter_and_flag",
};

/* Basic, regular and extended device identification object names; the
 * asset event uses them as field names. */
static const char *const device_object_names[] = {
    [0] = "vendor",
    [1] = "product_code",
    [2] = "revision",
    [3] = "vendor_url",
    [4] = "product_name",
    [5] = "model_name",
    [6] = "user_application_name",
};

static gboolean
is_user_defined(guint fc)
{
    return (fc >= 65 && fc <= 72) || (fc >= 100 && fc <= 110);
}

static gboolean
is_public_function(guint fc)
{
    return fc < G_N_ELEMENTS(function_names) && function_names[fc] != NULL;
}

static const char *
exception_name(guint code)
{
    if (code < G_N_ELEMENTS(exception_names) && exception_names[code])
        return exception_names[code];
    return "unknown";
}

static const char *
diagnostic_name(guint sub)
{
    if (sub < G_N_ELEMENTS(diagnostic_names) && diagnostic_names[sub])
        return diagnostic_names[sub];
    return "unknown";
}

/* Name and class of request @fc; @body (the bytes after the function code,
 * may be NULL) refines diagnostics and MEI transports. */
static void
classify(guint fc, const guint8 *body, gsize body_len, const char **name, OtsOpClass *op)
{
    *name = "unknown";
    *op = OTS_OP_OTHER;
    if (is_public_function(fc)) {
        *name = function_names[fc];
        *op = function_classes[fc];
    } else if (is_user_defined(fc)) {
        *name = "user_defined";
    }
    if (fc == FC_DIAGNOSTICS && body && body_len >= 2) {
        guint sub = ((guint)body[0] << 8) | body[1];
        if (sub == DIAG_RESTART_COMMUNICATIONS)
            *op = OTS_OP_RESTART;
        else if (sub == DIAG_FORCE_LISTEN_ONLY)
            *op = OTS_OP_COMM_CONTROL; /* silences the server until a restart */
    } else if (fc == FC_ENCAPSULATED_INTERFACE && body && body_len >= 1) {
        if (body[0] == MEI_READ_DEVICE_ID) {
            *name = "read_device_identification";
            *op = OTS_OP_DISCOVERY;
        } else if (body[0] == MEI_CANOPEN) {
            *name = "canopen_general_reference";
        }
    }
}

/* ---- per-flow state ---------------------------------------------------- */

typedef struct {
    GList link; /* in ModbusState.pending, oldest first; data points here */
    gint64 ts;
    guint16 tid;
    guint8 unit;
    guint8 len; /* PDU bytes, function code included (1..253) */
    guint8 pdu[];
} Pending;

typedef struct {
    GQueue pending;
    gboolean resync[2]; /* per direction: after a gap or a framing error */
} ModbusState;

/* ---- PDU walker -------------------------------------------------------- */

typedef struct {
    OtsSession *s; /* check pass: raise anomalies here */
    OtsEvent *e;   /* emit pass: write fields here */
    OtsDirection dir;
    guint16 tid;
    guint8 unit;
    guint8 fc;
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
    /* One alert per code and PDU is enough to say what is wrong. */
    if (!ots_anomaly_once(&w->raised, code))
        return;
    va_list ap;
    va_start(ap, fmt);
    OtsEvent *a = ots_session_begin_anomalyv(w->s, w->dir, code, fmt, ap);
    va_end(ap);
    if (!a)
        return;
    ots_event_begin_object(a, "modbus");
    ots_event_add_uint(a, "transaction_id", w->tid);
    ots_event_add_uint(a, "unit_id", w->unit);
    ots_event_add_uint(a, "function", w->fc);
    ots_event_end_object(a);
    ots_event_commit(a);
}

/* Field @name, or response_@name when the response differs from its echo. */
#define K(resp, name) ((resp) ? "response_" name : name)

static void
put_uint(Walk *w, const char *k, guint64 v)
{
    if (w->e && k)
        ots_event_add_uint(w->e, k, v);
}

static void
put_bool(Walk *w, const char *k, gboolean v)
{
    if (w->e && k)
        ots_event_add_bool(w->e, k, v);
}

static void
put_string(Walk *w, const char *k, const char *v)
{
    if (w->e && k)
        ots_event_add_string(w->e, k, v);
}

static void
put_hex(Walk *w, const char *k, const guint8 *v, gsize len)
{
    if (w->e && k)
        ots_event_add_hex(w->e, k, v, len);
}

static gboolean
take_u8(Walk *w, OtsReader *r, const char *k, guint8 *out)
{
    guint8 v;
    if (!ots_reader_get_u8(r, &v)) {
        problem(w, "bad_length", "function %u: PDU ends before %s", w->fc, k ? k : "a field");
        return FALSE;
    }
    put_uint(w, k, v);
    if (out)
        *out = v;
    return TRUE;
}

static gboolean
take_u16(Walk *w, OtsReader *r, const char *k, guint16 *out)
{
    guint16 v;
    if (!ots_reader_get_u16_be(r, &v)) {
        problem(w, "bad_length", "function %u: PDU ends before %s", w->fc, k ? k : "a field");
        return FALSE;
    }
    put_uint(w, k, v);
    if (out)
        *out = v;
    return TRUE;
}

static void
expect_end(Walk *w, OtsReader *r)
{
    gsize rest = ots_reader_remaining(r);
    if (rest > 0) {
        problem(w, "bad_length", "function %u: %" G_GSIZE_FORMAT " unexpected trailing bytes",
                w->fc, rest);
        ots_reader_skip(r, rest);
    }
}

static void
check_quantity(Walk *w, const char *what, guint v, guint lo, guint hi)
{
    if (v < lo || v > hi)
        problem(w, "bad_quantity", "function %u: %s %u outside %u..%u", w->fc, what, v, lo, hi);
}

/* Takes a byte count of @bc bytes of data: the bytes actually there
 * (bounded by what remains) are returned in @data / @n. */
static void
take_data(Walk *w, OtsReader *r, guint bc, const guint8 **data, gsize *n)
{
    gsize rest = ots_reader_remaining(r);
    if (bc != rest)
        problem(w, "bad_byte_count",
                "function %u: byte count %u but %" G_GSIZE_FORMAT " bytes follow", w->fc, bc, rest);
    *n = MIN(bc, rest);
    *data = NULL;
    ots_reader_get_data(r, *n, data);
}

/* Borrows all bytes left in @r; returns how many. */
static gsize
take_rest(OtsReader *r, const guint8 **data)
{
    gsize n = ots_reader_remaining(r);
    *data = NULL;
    ots_reader_get_data(r, n, data);
    return n;
}

static void
put_bits(Walk *w, const char *k, const char *k_truncated, const guint8 *data, gsize nbits)
{
    if (!w->e)
        return;
    ots_event_begin_array(w->e, k);
    for (gsize i = 0; i < nbits && i < MAX_VALUES; i++)
        ots_event_add_bool(w->e, NULL, (data[i / 8] >> (i % 8)) & 1);
    ots_event_end_array(w->e);
    ots_event_add_bool(w->e, k_truncated, nbits > MAX_VALUES);
}

static void
put_registers(Walk *w, const char *k, const char *k_truncated, const guint8 *data, gsize nregs)
{
    if (!w->e)
        return;
    ots_event_begin_array(w->e, k);
    for (gsize i = 0; i < nregs && i < MAX_VALUES; i++)
        ots_event_add_uint(w->e, NULL, ((guint)data[2 * i] << 8) | data[2 * i + 1]);
    ots_event_end_array(w->e);
    ots_event_add_bool(w->e, k_truncated, nregs > MAX_VALUES);
}

static gboolean
is_printable(const guint8 *p, gsize n)
{
    if (n == 0)
        return FALSE;
    for (gsize i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return FALSE;
    return TRUE;
}

/* Reads request field at @offset (after the function code) if present. */
static gboolean
req_u16(const OtsReader *req, gsize offset, guint16 *v)
{
    return req && ots_reader_peek_u16_be(req, offset, v);
}

/* FC 20 sub-requests: reference type, file, record, length (7 bytes each). */
static void
walk_file_read_requests(Walk *w, OtsReader *r)
{
    if (w->e)
        ots_event_begin_array(w->e, "file_records");
    while (ots_reader_remaining(r) > 0) {
        guint8 type;
        guint16 file, record, length;
        if (!ots_reader_get_u8(r, &type) || !ots_reader_get_u16_be(r, &file) ||
            !ots_reader_get_u16_be(r, &record) || !ots_reader_get_u16_be(r, &length)) {
            problem(w, "bad_byte_count", "function %u: truncated file sub-request", w->fc);
            ots_reader_skip(r, ots_reader_remaining(r));
            break;
        }
        if (type != FILE_REFERENCE_TYPE)
            problem(w, "bad_value", "function %u: reference type %u (expected 6)", w->fc, type);
        if (record > 9999)
            problem(w, "bad_value", "function %u: record number %u > 9999", w->fc, record);
        if (w->e) {
            ots_event_begin_object(w->e, NULL);
            ots_event_add_uint(w->e, "reference_type", type);
            ots_event_add_uint(w->e, "file_number", file);
            ots_event_add_uint(w->e, "record_number", record);
            ots_event_add_uint(w->e, "record_length", length);
            ots_event_end_object(w->e);
        }
    }
    if (w->e)
        ots_event_end_array(w->e);
}

/* FC 21 sub-requests: as FC 20, each followed by record_length registers. */
static void
walk_file_write_requests(Walk *w, OtsReader *r)
{
    if (w->e)
        ots_event_begin_array(w->e, "file_records");
    while (ots_reader_remaining(r) > 0) {
        guint8 type;
        guint16 file, record, length;
        const guint8 *data;
        if (!ots_reader_get_u8(r, &type) || !ots_reader_get_u16_be(r, &file) ||
            !ots_reader_get_u16_be(r, &record) || !ots_reader_get_u16_be(r, &length) ||
            !ots_reader_get_data(r, 2 * (gsize)length, &data)) {
            problem(w, "bad_byte_count", "function %u: truncated file sub-request", w->fc);
            ots_reader_skip(r, ots_reader_remaining(r));
            break;
        }
        if (type != FILE_REFERENCE_TYPE)
            problem(w, "bad_value", "function %u: reference type %u (expected 6)", w->fc, type);
        if (record > 9999)
            problem(w, "bad_value", "function %u: record number %u > 9999", w->fc, record);
        if (w->e) {
            ots_event_begin_object(w->e, NULL);
            ots_event_add_uint(w->e, "reference_type", type);
            ots_event_add_uint(w->e, "file_number", file);
            ots_event_add_uint(w->e, "record_number", record);
            ots_event_add_uint(w->e, "record_length", length);
            ots_event_add_hex(w->e, "data", data, 2 * (gsize)length);
            ots_event_end_object(w->e);
        }
    }
    if (w->e)
        ots_event_end_array(w->e);
}

/* A request PDU; @r starts after the function code. */
static void
walk_request(Walk *w, OtsReader *r)
{
    guint16 qty, value, sub;
    guint8 bc, mei, code;
    const guint8 *data;
    gsize n;

    switch (w->fc) {
    case FC_READ_COILS:
    case FC_READ_DISCRETE_INPUTS:
        if (!take_u16(w, r, "address", NULL) || !take_u16(w, r, "quantity", &qty))
            return;
        check_quantity(w, "quantity", qty, 1, 2000);
        break;
    case FC_READ_HOLDING_REGISTERS:
    case FC_READ_INPUT_REGISTERS:
        if (!take_u16(w, r, "address", NULL) || !take_u16(w, r, "quantity", &qty))
            return;
        check_quantity(w, "quantity", qty, 1, 125);
        break;
    case FC_WRITE_SINGLE_COIL: {
        if (!take_u16(w, r, "address", NULL) || !take_u16(w, r, NULL, &value))
            return;
        if (value != 0x0000 && value != 0xff00)
            problem(w, "bad_value", "coil value 0x%04x (expected 0x0000 or 0xff00)", value);
        guint8 bit = value ? 1 : 0;
        put_bits(w, "values", "values_truncated", &bit, 1);
        break;
    }
    case FC_WRITE_SINGLE_REGISTER: {
        if (!take_u16(w, r, "address", NULL))
            return;
        const guint8 *reg;
        if (!ots_reader_get_data(r, 2, &reg)) {
            problem(w, "bad_length", "function %u: PDU ends before the value", w->fc);
            return;
        }
        put_registers(w, "values", "values_truncated", reg, 1);
        break;
    }
    case FC_READ_EXCEPTION_STATUS:
    case FC_GET_COMM_EVENT_COUNTER:
    case FC_GET_COMM_EVENT_LOG:
    case FC_REPORT_SERVER_ID:
        break;
    case FC_DIAGNOSTICS:
        if (!take_u16(w, r, "sub_function", &sub))
            return;
        put_string(w, "sub_function_name", diagnostic_name(sub));
        n = take_rest(r, &data);
        /* Only "return query data" echoes an arbitrary payload. */
        if (sub != 0 && n != 2)
            problem(w, "bad_length", "diagnostics %u: %" G_GSIZE_FORMAT " data bytes (expected 2)",
                    sub, n);
        put_hex(w, "data", data, n);
        break;
    case FC_WRITE_MULTIPLE_COILS:
        if (!take_u16(w, r, "address", NULL) || !take_u16(w, r, "quantity", &qty) ||
            !take_u8(w, r, "byte_count", &bc))
            return;
        check_quantity(w, "quantity", qty, 1, 1968);
        if (bc != (qty + 7u) / 8u)
            problem(w, "bad_byte_count", "byte count %u for %u coils", bc, qty);
        take_data(w, r, bc, &data, &n);
        put_bits(w, "values", "values_truncated", data, MIN((gsize)qty, n * 8));
        break;
    case FC_WRITE_MULTIPLE_REGISTERS:
        if (!take_u16(w, r, "address", NULL) || !take_u16(w, r, "quantity", &qty) ||
            !take_u8(w, r, "byte_count", &bc))
            return;
        check_quantity(w, "quantity", qty, 1, 123);
        if (bc != 2u * qty)
            problem(w, "bad_byte_count", "byte count %u for %u registers", bc, qty);
        take_data(w, r, bc, &data, &n);
        put_registers(w, "values", "values_truncated", data, MIN((gsize)qty, n / 2));
        break;
    case FC_READ_FILE_RECORD: {
        if (!take_u8(w, r, "byte_count", &bc))
            return;
        if (bc < 7 || bc > 0xf5 || bc % 7 != 0)
            problem(w, "bad_byte_count", "read file record byte count %u", bc);
        take_data(w, r, bc, &data, &n);
        OtsReader sub_r = OTS_READER_INIT(data, n);
        walk_file_read_requests(w, &sub_r);
        break;
    }
    case FC_WRITE_FILE_RECORD: {
        if (!take_u8(w, r, "byte_count", &bc))
            return;
        if (bc < 9 || bc > 0xfb)
            problem(w, "bad_byte_count", "write file record byte count %u", bc);
        take_data(w, r, bc, &data, &n);
        OtsReader sub_r = OTS_READER_INIT(data, n);
        walk_file_write_requests(w, &sub_r);
        break;
    }
    case FC_MASK_WRITE_REGISTER:
        if (!take_u16(w, r, "address", NULL) || !take_u16(w, r, "and_mask", NULL) ||
            !take_u16(w, r, "or_mask", NULL))
            return;
        break;
    case FC_READ_WRITE_MULTIPLE_REGISTERS: {
        guint16 wqty;
        if (!take_u16(w, r, "read_address", NULL) || !take_u16(w, r, "read_quantity", &qty) ||
            !take_u16(w, r, "write_address", NULL) || !take_u16(w, r, "write_quantity", &wqty) ||
            !take_u8(w, r, "byte_count", &bc))
            return;
        check_quantity(w, "read quantity", qty, 1, 125);
        check_quantity(w, "write quantity", wqty, 1, 121);
        if (bc != 2u * wqty)
            problem(w, "bad_byte_count", "byte count %u for %u registers", bc, wqty);
        take_data(w, r, bc, &data, &n);
        put_registers(w, "values", "values_truncated", data, MIN((gsize)wqty, n / 2));
        break;
    }
    case FC_READ_FIFO_QUEUE:
        if (!take_u16(w, r, "address", NULL))
            return;
        break;
    case FC_ENCAPSULATED_INTERFACE:
        if (!take_u8(w, r, "mei_type", &mei))
            return;
        if (mei == MEI_READ_DEVICE_ID) {
            if (!take_u8(w, r, "read_device_id_code", &code) || !take_u8(w, r, "object_id", NULL))
                return;
            if (code < 1 || code > 4)
                problem(w, "bad_value", "read device id code %u (expected 1..4)", code);
        } else {
            n = take_rest(r, &data);
            put_hex(w, "data", data, n);
        }
        break;
    default:
        /* Unknown and user-defined codes: keep the payload, bounded by the PDU. */
        n = take_rest(r, &data);
        put_hex(w, "data", data, n);
        break;
    }
    expect_end(w, r);
}

/* Responses that repeat @n bytes of the request (5, 6, 15, 16, 22):
 * returns TRUE when the echo matches and there is nothing more to report;
 * otherwise sets *differs when the fields must be written as response_*
 * (FALSE without a request: the response's fields are all we know). */
static gboolean
echo_matches(Walk *w, const OtsReader *r, const OtsReader *req, gsize n, gboolean *differs)
{
    *differs = FALSE;
    if (!req)
        return FALSE;
    OtsReader a, b;
    if (ots_reader_peek_sub_reader(r, &a, n) && ots_reader_peek_sub_reader(req, &b, n) &&
        memcmp(a.data, b.data, n) == 0)
        return TRUE;
    if (ots_reader_remaining(r) >= n)
        problem(w, "response_mismatch", "function %u: response does not echo the request", w->fc);
    *differs = TRUE;
    return FALSE;
}

/* The server-id heuristic for FC 17: the spec leaves the id's length to the
 * device. Many devices send a one-byte id then the run indicator; others a
 * text id with the run indicator last. */
static void
split_server_id(const guint8 *data, gsize n, gsize *id_len, gint *run)
{
    *run = -1;
    *id_len = n;
    if (n >= 2 && (data[1] == 0x00 || data[1] == 0xff)) {
        *id_len = 1;
        *run = data[1];
    } else if (n >= 2 && (data[n - 1] == 0x00 || data[n - 1] == 0xff)) {
        *id_len = n - 1;
        *run = data[n - 1];
    }
}

static void
walk_device_id_objects(Walk *w, OtsReader *r, guint n_objects)
{
    if (w->e)
        ots_event_begin_array(w->e, "objects");
    for (guint i = 0; i < n_objects; i++) {
        guint8 id, len;
        const guint8 *value;
        if (!ots_reader_get_u8(r, &id) || !ots_reader_get_u8(r, &len) ||
            !ots_reader_get_data(r, len, &value)) {
            problem(w, "bad_length", "device identification: object %u of %u truncated", i + 1,
                    n_objects);
            ots_reader_skip(r, ots_reader_remaining(r));
            break;
        }
        if (w->e) {
            ots_event_begin_object(w->e, NULL);
            ots_event_add_uint(w->e, "id", id);
            if (id < G_N_ELEMENTS(device_object_names))
                ots_event_add_string(w->e, "name", device_object_names[id]);
            /* Standard objects are text; vendor objects may be binary. */
            if (id < G_N_ELEMENTS(device_object_names) || is_printable(value, len))
                ots_event_add_string_len(w->e, "value", value, len);
            else
                ots_event_add_hex(w->e, "value_hex", value, len);
            ots_event_end_object(w->e);
        }
    }
    if (w->e)
        ots_event_end_array(w->e);
}

/* A normal (non-exception) response; @r starts after the function code,
 * @req (nullable) over the request after its function code. */
static void
walk_response(Walk *w, OtsReader *r, const OtsReader *req)
{
    guint16 qty, v16, count;
    guint8 bc, mei, code, v8;
    const guint8 *data;
    gboolean rk;
    gsize n;

    switch (w->fc) {
    case FC_READ_COILS:
    case FC_READ_DISCRETE_INPUTS:
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        if (req_u16(req, 2, &qty) && bc != (qty + 7u) / 8u)
            problem(w, "bad_byte_count", "byte count %u for %u bits requested", bc, qty);
        take_data(w, r, bc, &data, &n);
        put_bits(w, "values", "values_truncated", data,
                 req_u16(req, 2, &qty) ? MIN((gsize)qty, n * 8) : n * 8);
        break;
    case FC_READ_HOLDING_REGISTERS:
    case FC_READ_INPUT_REGISTERS:
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        if (req_u16(req, 2, &qty) ? bc != 2u * qty : bc % 2 != 0)
            problem(w, "bad_byte_count", "byte count %u for the registers requested", bc);
        take_data(w, r, bc, &data, &n);
        put_registers(w, "values", "values_truncated", data, n / 2);
        break;
    case FC_WRITE_SINGLE_COIL: {
        if (echo_matches(w, r, req, 4, &rk)) {
            ots_reader_skip(r, 4);
            break;
        }
        if (!take_u16(w, r, K(rk, "address"), NULL) || !take_u16(w, r, NULL, &v16))
            return;
        guint8 bit = v16 ? 1 : 0;
        put_bits(w, K(rk, "values"), K(rk, "values_truncated"), &bit, 1);
        break;
    }
    case FC_WRITE_SINGLE_REGISTER:
        if (echo_matches(w, r, req, 4, &rk)) {
            ots_reader_skip(r, 4);
            break;
        }
        if (!take_u16(w, r, K(rk, "address"), NULL))
            return;
        if (!ots_reader_get_data(r, 2, &data)) {
            problem(w, "bad_length", "function %u: PDU ends before the value", w->fc);
            return;
        }
        put_registers(w, K(rk, "values"), K(rk, "values_truncated"), data, 1);
        break;
    case FC_WRITE_MULTIPLE_COILS:
    case FC_WRITE_MULTIPLE_REGISTERS:
        if (echo_matches(w, r, req, 4, &rk)) {
            ots_reader_skip(r, 4);
            break;
        }
        if (!take_u16(w, r, K(rk, "address"), NULL) || !take_u16(w, r, K(rk, "quantity"), NULL))
            return;
        break;
    case FC_MASK_WRITE_REGISTER:
        if (echo_matches(w, r, req, 6, &rk)) {
            ots_reader_skip(r, 6);
            break;
        }
        if (!take_u16(w, r, K(rk, "address"), NULL) || !take_u16(w, r, K(rk, "and_mask"), NULL) ||
            !take_u16(w, r, K(rk, "or_mask"), NULL))
            return;
        break;
    case FC_READ_EXCEPTION_STATUS:
        if (!take_u8(w, r, "exception_status", NULL))
            return;
        break;
    case FC_DIAGNOSTICS: {
        guint16 req_sub;
        gboolean have_req = req_u16(req, 0, &req_sub);
        if (!ots_reader_get_u16_be(r, &v16)) {
            problem(w, "bad_length", "function %u: PDU ends before the sub-function", w->fc);
            return;
        }
        if (!have_req) {
            put_uint(w, "sub_function", v16);
            put_string(w, "sub_function_name", diagnostic_name(v16));
        } else if (v16 != req_sub) {
            problem(w, "response_mismatch", "diagnostics: sub-function %u answers %u", v16,
                    req_sub);
            put_uint(w, "response_sub_function", v16);
        }
        n = take_rest(r, &data);
        put_hex(w, "response_data", data, n);
        break;
    }
    case FC_GET_COMM_EVENT_COUNTER:
        if (!take_u16(w, r, "comm_status", NULL) || !take_u16(w, r, "event_count", NULL))
            return;
        break;
    case FC_GET_COMM_EVENT_LOG:
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        if (bc < 6 || bc > 70)
            problem(w, "bad_byte_count", "comm event log byte count %u (expected 6..70)", bc);
        take_data(w, r, bc, &data, &n);
        {
            OtsReader log = OTS_READER_INIT(data, n);
            if (!take_u16(w, &log, "comm_status", NULL) ||
                !take_u16(w, &log, "event_count", NULL) ||
                !take_u16(w, &log, "message_count", NULL))
                return;
            n = take_rest(&log, &data);
            put_hex(w, "events", data, n);
        }
        break;
    case FC_REPORT_SERVER_ID: {
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        take_data(w, r, bc, &data, &n);
        gsize id_len;
        gint run;
        split_server_id(data, n, &id_len, &run);
        put_hex(w, "server_id", data, id_len);
        if (is_printable(data, id_len) && w->e)
            ots_event_add_string_len(w->e, "server_id_text", data, id_len);
        if (run >= 0) {
            put_bool(w, "run_indicator", run == 0xff);
            gsize extra = n - id_len - 1;
            if (extra > 0)
                put_hex(w, "additional_data", data + id_len + 1, extra);
        }
        break;
    }
    case FC_READ_FILE_RECORD: {
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        if (bc < 2 || bc > 0xf5)
            problem(w, "bad_byte_count", "read file record response byte count %u", bc);
        take_data(w, r, bc, &data, &n);
        OtsReader sub = OTS_READER_INIT(data, n);
        if (w->e)
            ots_event_begin_array(w->e, "response_file_records");
        while (ots_reader_remaining(&sub) > 0) {
            guint8 len, type;
            const guint8 *rec;
            if (!ots_reader_get_u8(&sub, &len) || len < 1 || !ots_reader_get_u8(&sub, &type) ||
                !ots_reader_get_data(&sub, len - 1u, &rec)) {
                problem(w, "bad_byte_count", "read file record: truncated sub-response");
                break;
            }
            if (type != FILE_REFERENCE_TYPE)
                problem(w, "bad_value", "read file record: reference type %u", type);
            if (w->e) {
                ots_event_begin_object(w->e, NULL);
                ots_event_add_uint(w->e, "byte_count", len);
                ots_event_add_uint(w->e, "reference_type", type);
                ots_event_add_hex(w->e, "data", rec, len - 1u);
                ots_event_end_object(w->e);
            }
        }
        if (w->e)
            ots_event_end_array(w->e);
        break;
    }
    case FC_WRITE_FILE_RECORD: {
        /* The normal response is an echo of the whole request. */
        gboolean echo =
            req && ots_reader_remaining(req) == ots_reader_remaining(r) &&
            memcmp(req->data + req->pos, r->data + r->pos, ots_reader_remaining(r)) == 0;
        if (req && !echo)
            problem(w, "response_mismatch",
                    "write file record: response does not echo the request");
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        take_data(w, r, bc, &data, &n);
        if (!req) {
            OtsReader sub = OTS_READER_INIT(data, n);
            walk_file_write_requests(w, &sub);
        }
        break;
    }
    case FC_READ_WRITE_MULTIPLE_REGISTERS:
        if (!take_u8(w, r, "response_byte_count", &bc))
            return;
        if (req_u16(req, 2, &qty) ? bc != 2u * qty : bc % 2 != 0)
            problem(w, "bad_byte_count", "byte count %u for the registers requested", bc);
        take_data(w, r, bc, &data, &n);
        put_registers(w, "read_values", "read_values_truncated", data, n / 2);
        break;
    case FC_READ_FIFO_QUEUE:
        if (!take_u16(w, r, "response_byte_count", &v16) || !take_u16(w, r, "fifo_count", &count))
            return;
        if (count > 31)
            problem(w, "bad_quantity", "FIFO count %u > 31", count);
        if (v16 != 2u + 2u * count)
            problem(w, "bad_byte_count", "FIFO byte count %u for %u registers", v16, count);
        n = ots_reader_remaining(r);
        if (n != 2u * count)
            problem(w, "bad_length", "FIFO: %" G_GSIZE_FORMAT " data bytes for %u registers", n,
                    count);
        n = MIN(n, 2u * count);
        data = NULL;
        ots_reader_get_data(r, n, &data);
        put_registers(w, "values", "values_truncated", data, n / 2);
        break;
    case FC_ENCAPSULATED_INTERFACE: {
        guint8 req_mei = 0, req_code = 0;
        gboolean have_req = req && ots_reader_peek_u8(req, 0, &req_mei);
        if (!ots_reader_get_u8(r, &mei)) {
            problem(w, "bad_length", "function %u: PDU ends before the MEI type", w->fc);
            return;
        }
        if (!have_req)
            put_uint(w, "mei_type", mei);
        else if (mei != req_mei) {
            problem(w, "response_mismatch", "MEI type %u answers %u", mei, req_mei);
            put_uint(w, "response_mei_type", mei);
        }
        if (mei != MEI_READ_DEVICE_ID) {
            n = take_rest(r, &data);
            put_hex(w, "response_data", data, n);
            break;
        }
        if (!ots_reader_get_u8(r, &code)) {
            problem(w, "bad_length", "device identification: PDU ends before the id code");
            return;
        }
        if (!have_req)
            put_uint(w, "read_device_id_code", code);
        else if (req_mei != MEI_READ_DEVICE_ID || !ots_reader_peek_u8(req, 1, &req_code) ||
                 code != req_code)
            put_uint(w, "response_read_device_id_code", code);
        if (!take_u8(w, r, "conformity_level", NULL) || !take_u8(w, r, NULL, &v8))
            return;
        if (v8 != 0x00 && v8 != 0xff)
            problem(w, "bad_value", "more follows 0x%02x (expected 0x00 or 0xff)", v8);
        put_bool(w, "more_follows", v8 == 0xff);
        if (!take_u8(w, r, "next_object_id", NULL) || !take_u8(w, r, "number_of_objects", &v8))
            return;
        walk_device_id_objects(w, r, v8);
        break;
    }
    default:
        n = take_rest(r, &data);
        put_hex(w, "response_data", data, n);
        break;
    }
    expect_end(w, r);
}

/* An exception response; @r starts after the function code. */
static void
walk_exception(Walk *w, OtsReader *r)
{
    guint8 code;
    if (!ots_reader_get_u8(r, &code)) {
        problem(w, "bad_length", "exception response without an exception code");
        return;
    }
    put_uint(w, "exception_code", code);
    put_string(w, "exception", exception_name(code));
    if (code >= G_N_ELEMENTS(exception_names) || !exception_names[code])
        problem(w, "bad_exception_code", "exception code %u", code);
    expect_end(w, r);
}

/* ---- events ------------------------------------------------------------ */

static void
emit_device_identity(OtsSession *s, guint8 unit, OtsReader *r)
{
    guint8 mei, code, conformity, more, next, n_objects;
    /* Already validated by the check pass; stop quietly at any short read. */
    if (!ots_reader_get_u8(r, &mei) || !ots_reader_get_u8(r, &code) ||
        !ots_reader_get_u8(r, &conformity) || !ots_reader_get_u8(r, &more) ||
        !ots_reader_get_u8(r, &next) || !ots_reader_get_u8(r, &n_objects) ||
        mei != MEI_READ_DEVICE_ID || n_objects == 0)
        return;

    OtsEvent *e = ots_session_begin_asset(s, OTS_DIR_TO_CLIENT, OTS_ROLE_CONTROLLER);
    if (!e)
        return;
    const guint8 *product_name = NULL, *product_code = NULL;
    guint8 product_name_len = 0, product_code_len = 0;
    gboolean extra_open = FALSE;
    for (guint i = 0; i < n_objects; i++) {
        guint8 id, len;
        const guint8 *value;
        if (!ots_reader_get_u8(r, &id) || !ots_reader_get_u8(r, &len) ||
            !ots_reader_get_data(r, len, &value))
            break;
        if (id < G_N_ELEMENTS(device_object_names)) {
            if (extra_open) {
                ots_event_end_array(e);
                extra_open = FALSE;
            }
            ots_event_add_string_len(e, device_object_names[id], value, len);
            if (id == 2)
                ots_event_add_string_len(e, "firmware", value, len);
            if (id == 1) {
                product_code = value;
                product_code_len = len;
            } else if (id == 4) {
                product_name = value;
                product_name_len = len;
            }
            continue;
        }
        /* Vendor-specific objects (0x80..0xff) and reserved ids. */
        if (!extra_open) {
            ots_event_begin_array(e, "extra");
            extra_open = TRUE;
        }
        ots_event_begin_object(e, NULL);
        ots_event_add_uint(e, "object_id", id);
        if (is_printable(value, len))
            ots_event_add_string_len(e, "value", value, len);
        else
            ots_event_add_hex(e, "value_hex", value, len);
        ots_event_end_object(e);
    }
    if (extra_open)
        ots_event_end_array(e);
    if (product_name)
        ots_event_add_string_len(e, "product", product_name, product_name_len);
    else if (product_code)
        ots_event_add_string_len(e, "product", product_code, product_code_len);
    ots_event_begin_object(e, "modbus");
    ots_event_add_uint(e, "unit_id", unit);
    ots_event_add_uint(e, "conformity_level", conformity);
    ots_event_end_object(e);
    ots_event_commit(e);
}

static void
emit_server_id(OtsSession *s, guint8 unit, OtsReader *r)
{
    guint8 bc;
    const guint8 *data;
    if (!ots_reader_get_u8(r, &bc) || bc == 0 || !ots_reader_get_data(r, bc, &data))
        return;
    gsize id_len;
    gint run;
    split_server_id(data, bc, &id_len, &run);

    OtsEvent *e = ots_session_begin_asset(s, OTS_DIR_TO_CLIENT, OTS_ROLE_CONTROLLER);
    if (!e)
        return;
    ots_event_add_hex(e, "server_id", data, id_len);
    if (is_printable(data, id_len))
        ots_event_add_string_len(e, "server_id_text", data, id_len);
    if (run >= 0)
        ots_event_add_string(e, "run_indicator", run == 0xff ? "on" : "off");
    ots_event_begin_object(e, "modbus");
    ots_event_add_uint(e, "unit_id", unit);
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* One transaction event: @p (nullable) the request, @resp (nullable) the
 * response PDU with its function code. */
static void
emit_transaction(OtsSession *s, guint16 tid, guint8 unit, const Pending *p, const guint8 *resp,
                 gsize resp_len)
{
    OtsReader req_body = OTS_READER_INIT(NULL, 0);
    OtsReader resp_body = OTS_READER_INIT(NULL, 0);
    guint8 resp_fc = 0;
    guint8 fc;
    gboolean exception = FALSE;

    if (p)
        ots_reader_init(&req_body, p->pdu + 1, p->len - 1u);
    if (resp) {
        resp_fc = resp[0];
        exception = (resp_fc & FC_EXCEPTION_BIT) != 0;
        ots_reader_init(&resp_body, resp + 1, resp_len - 1);
    }
    fc = p ? p->pdu[0] : (guint8)(resp_fc & ~FC_EXCEPTION_BIT);

    OtsTransactionInfo info = {
        .request_dir = OTS_DIR_TO_SERVER,
        .function = fc,
        .request_ts = p ? p->ts : 0,
        .response_ts = resp ? ots_session_get_time(s) : 0,
    };
    if (p)
        classify(fc, req_body.data, req_body.len, &info.function_name, &info.op_class);
    else if (!exception)
        classify(fc, resp_body.data, resp_body.len, &info.function_name, &info.op_class);
    else
        classify(fc, NULL, 0, &info.function_name, &info.op_class);
    /* An exception to a request we did not see is no_request: the status
     * holds one fact, and exception_code still says what the server did. */
    if (!resp)
        info.status = OTS_TX_UNANSWERED;
    else if (!p)
        info.status = OTS_TX_NO_REQUEST;
    else if (exception)
        info.status = OTS_TX_EXCEPTION;
    else
        info.status = OTS_TX_OK;

    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    ots_event_begin_object(e, "modbus");
    ots_event_add_uint(e, "transaction_id", tid);
    ots_event_add_uint(e, "unit_id", unit);
    Walk w = {.e = e, .tid = tid, .unit = unit, .fc = fc};
    if (p) {
        OtsReader rb = req_body;
        walk_request(&w, &rb);
    }
    if (resp) {
        guint8 base = resp_fc & ~FC_EXCEPTION_BIT;
        gboolean mismatch = p && base != (fc & ~FC_EXCEPTION_BIT);
        OtsReader rb = resp_body;
        if (mismatch)
            ots_event_add_uint(e, "response_function", resp_fc);
        if (exception) {
            walk_exception(&w, &rb);
        } else if (!mismatch) {
            /* (A mismatched response's fields would collide with the request's.) */
            w.fc = base;
            OtsReader qb = req_body;
            walk_response(&w, &rb, p ? &qb : NULL);
        }
    }
    ots_event_end_object(e);
    ots_event_commit(e);

    if (resp && !exception) {
        OtsReader rb = resp_body;
        if (resp_fc == FC_REPORT_SERVER_ID)
            emit_server_id(s, unit, &rb);
        else if (resp_fc == FC_ENCAPSULATED_INTERFACE)
            emit_device_identity(s, unit, &rb);
    }
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
pending_unanswered(OtsSession *s, ModbusState *st, Pending *p)
{
    g_queue_unlink(&st->pending, &p->link);
    emit_transaction(s, p->tid, p->unit, p, NULL, 0);
    pending_free(s, p);
}

static Pending *
pending_find(ModbusState *st, guint16 tid, guint8 unit)
{
    for (GList *l = st->pending.head; l; l = l->next) {
        Pending *p = l->data;
        if (p->tid == tid && p->unit == unit)
            return p;
    }
    return NULL;
}

static void
handle_request(OtsSession *s, ModbusState *st, guint16 tid, guint8 unit, OtsReader *pdu)
{
    guint8 fc = pdu->data[0];
    Walk w = {.s = s, .dir = OTS_DIR_TO_SERVER, .tid = tid, .unit = unit, .fc = fc};

    if (fc == 0 || (fc & FC_EXCEPTION_BIT))
        problem(&w, "bad_function_code", "request with function code %u", fc);
    OtsReader body = OTS_READER_INIT(pdu->data + 1, pdu->len - 1);
    walk_request(&w, &body);

    /* A reused (transaction id, unit id) means the client gave up on the
     * older request. */
    Pending *old = pending_find(st, tid, unit);
    if (old)
        pending_unanswered(s, st, old);
    if (st->pending.length >= MAX_PENDING)
        pending_unanswered(s, st, st->pending.head->data);

    Pending *p = g_malloc(sizeof(Pending) + pdu->len);
    p->link.data = p;
    p->link.prev = p->link.next = NULL;
    p->ts = ots_session_get_time(s);
    p->tid = tid;
    p->unit = unit;
    p->len = (guint8)pdu->len;
    memcpy(p->pdu, pdu->data, pdu->len);

    /* Past the thread's memory budget: the oldest request goes as when the
     * table is full, and if that is not enough this one is reported now,
     * unanswered, rather than lost. */
    gboolean kept = ots_session_charge(s, pending_cost(p));
    if (!kept && st->pending.head) {
        pending_unanswered(s, st, st->pending.head->data);
        kept = ots_session_charge(s, pending_cost(p));
    }
    if (!kept) {
        emit_transaction(s, tid, unit, p, NULL, 0);
        g_free(p);
        return;
    }
    g_queue_push_tail_link(&st->pending, &p->link);
}

static void
handle_response(OtsSession *s, ModbusState *st, guint16 tid, guint8 unit, OtsReader *pdu)
{
    guint8 fc = pdu->data[0];
    guint8 base = fc & ~FC_EXCEPTION_BIT;
    Walk w = {.s = s, .dir = OTS_DIR_TO_CLIENT, .tid = tid, .unit = unit, .fc = base};

    Pending *p = pending_find(st, tid, unit);
    if (p)
        g_queue_unlink(&st->pending, &p->link);
    else
        problem(&w, "response_without_request", "response to transaction %u, unit %u", tid, unit);

    gboolean same = p && (p->pdu[0] & ~FC_EXCEPTION_BIT) == base;
    if (p && !same)
        problem(&w, "function_mismatch", "function %u answers request function %u", base,
                p->pdu[0]);
    OtsReader body = OTS_READER_INIT(pdu->data + 1, pdu->len - 1);
    if (fc & FC_EXCEPTION_BIT) {
        walk_exception(&w, &body);
    } else {
        OtsReader req = OTS_READER_INIT(NULL, 0);
        if (same)
            ots_reader_init(&req, p->pdu + 1, p->len - 1u);
        walk_response(&w, &body, same ? &req : NULL);
    }

    emit_transaction(s, tid, unit, p, pdu->data, pdu->len);
    if (p)
        pending_free(s, p);
}

/* ---- framing ----------------------------------------------------------- */

/* Is there a plausible Modbus/TCP ADU at @off? NEED_MORE when the bytes so
 * far fit but do not decide. Used after a gap and by the probe, so only
 * public function codes and well-formed PDUs count. */
static OtsProbeResult
plausible_at(const OtsReader *r, gsize off, OtsDirection dir)
{
    OtsReader c = *r;
    guint16 pid, len;
    guint8 fc;

    if (!ots_reader_skip(&c, off))
        return OTS_PROBE_NEED_MORE;
    if (ots_reader_peek_u16_be(&c, 2, &pid) && pid != 0)
        return OTS_PROBE_NO;
    if (ots_reader_peek_u16_be(&c, 4, &len) && (len < MBAP_MIN_LENGTH || len > MBAP_MAX_LENGTH))
        return OTS_PROBE_NO;
    if (!ots_reader_peek_u8(&c, MBAP_HEADER_LEN, &fc))
        return OTS_PROBE_NEED_MORE;
    guint8 base = fc & ~FC_EXCEPTION_BIT;
    if (!is_public_function(base) || ((fc & FC_EXCEPTION_BIT) && dir == OTS_DIR_TO_SERVER))
        return OTS_PROBE_NO;
    OtsReader pdu;
    if (!ots_reader_skip(&c, MBAP_HEADER_LEN + 1) ||
        !ots_reader_peek_sub_reader(&c, &pdu, len - 2u))
        return OTS_PROBE_NEED_MORE;

    Walk w = {.dir = dir, .fc = base};
    if (fc & FC_EXCEPTION_BIT)
        walk_exception(&w, &pdu);
    else if (dir == OTS_DIR_TO_SERVER)
        walk_request(&w, &pdu);
    else
        walk_response(&w, &pdu, NULL);
    return w.problems == 0 ? OTS_PROBE_YES : OTS_PROBE_NO;
}

/* Skips to the next plausible ADU. OK with the reader on it, or NEED_MORE
 * with the undecided tail kept (at most one ADU). */
static OtsParseResult
resync(ModbusState *st, OtsDirection dir, OtsReader *r)
{
    gsize rem = ots_reader_remaining(r);
    for (gsize off = 0; off < rem; off++) {
        OtsProbeResult res = plausible_at(r, off, dir);
        if (res == OTS_PROBE_NO)
            continue;
        ots_reader_skip(r, off);
        if (res == OTS_PROBE_NEED_MORE)
            return OTS_PARSE_NEED_MORE;
        g_debug("resynchronised after %" G_GSIZE_FORMAT " bytes", off);
        st->resync[dir] = FALSE;
        return OTS_PARSE_OK;
    }
    ots_reader_skip(r, rem);
    return OTS_PARSE_NEED_MORE;
}

static OtsParseResult
modbus_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    ModbusState *st = state;

    for (;;) {
        if (st->resync[dir] && resync(st, dir, r) != OTS_PARSE_OK)
            return ots_reader_remaining(r) ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK;
        if (ots_reader_remaining(r) == 0)
            return OTS_PARSE_OK;

        guint16 tid = 0, pid, len;
        guint8 unit;
        if (!ots_reader_peek_u16_be(r, 2, &pid) || !ots_reader_peek_u16_be(r, 4, &len))
            return OTS_PARSE_NEED_MORE;
        ots_reader_peek_u16_be(r, 0, &tid);
        if (len < MBAP_MIN_LENGTH || len > MBAP_MAX_LENGTH || pid != 0) {
            Walk w = {.s = s, .dir = dir, .tid = tid};
            ots_reader_peek_u8(r, 6, &w.unit);
            ots_reader_peek_u8(r, 7, &w.fc);
            if (pid != 0)
                problem(&w, "bad_protocol_id", "MBAP protocol id %u (expected 0)", pid);
            else
                problem(&w, "bad_length", "MBAP length %u outside %u..%u", len, MBAP_MIN_LENGTH,
                        MBAP_MAX_LENGTH);
            /* Framing is lost: look for the next plausible header. */
            st->resync[dir] = TRUE;
            ots_reader_skip(r, 1);
            continue;
        }
        OtsReader pdu;
        if (ots_reader_remaining(r) < (gsize)MBAP_HEADER_LEN - 1 + len ||
            !ots_reader_skip(r, MBAP_HEADER_LEN - 1) || !ots_reader_get_u8(r, &unit) ||
            !ots_reader_get_sub_reader(r, &pdu, len - 1u))
            return OTS_PARSE_NEED_MORE;
        if (dir == OTS_DIR_TO_SERVER)
            handle_request(s, st, tid, unit, &pdu);
        else
            handle_response(s, st, tid, unit, &pdu);
    }
}

static OtsProbeResult
modbus_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    return plausible_at(r, 0, dir);
}

static gpointer
modbus_state_new(OtsSession *s)
{
    ModbusState *st = g_new0(ModbusState, 1);
    g_queue_init(&st->pending);
    return st;
}

/* flow_end() has drained and refunded the queue; whatever is left was
 * charged to the flow and the core refunds it when the flow goes. */
static void
modbus_state_free(gpointer state)
{
    ModbusState *st = state;
    GList *l;
    while ((l = g_queue_pop_head_link(&st->pending)))
        g_free(l->data);
    g_free(st);
}

static void
modbus_gap(OtsSession *s, gpointer state, OtsDirection dir, guint32 len)
{
    ModbusState *st = state;
    st->resync[dir] = TRUE;
}

static void
modbus_flow_end(OtsSession *s, gpointer state)
{
    ModbusState *st = state;
    while (st->pending.head)
        pending_unanswered(s, st, st->pending.head->data);
}

static void
modbus_tick(OtsSession *s, gpointer state, gint64 now)
{
    ModbusState *st = state;
    while (st->pending.head) {
        Pending *p = st->pending.head->data;
        if (now - p->ts <= PENDING_TIMEOUT_US)
            break;
        pending_unanswered(s, st, p);
    }
}

static const OtsDissectorInfo modbus_info = {
    .abi_major = OTS_DISSECTOR_ABI_MAJOR,
    .abi_minor = OTS_DISSECTOR_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "modbus",
    .version = "0.1.0",
    .description = "Modbus/TCP (MBAP): all public function codes, device identification",
    .tcp_ports = (const guint16[]){502, 0},
    .probe = modbus_probe,
    .state_new = modbus_state_new,
    .state_free = modbus_state_free,
    .parse = modbus_parse,
    .gap = modbus_gap,
    .flow_end = modbus_flow_end,
    .tick = modbus_tick,
};

OTS_DISSECTOR_DEFINE(modbus_info)
