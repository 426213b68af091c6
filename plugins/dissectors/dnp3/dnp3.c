/* SPDX-License-Identifier: Apache-2.0 */

/* DNP3 dissector (IEEE 1815) over TCP and UDP: link frames with their CRCs,
 * transport segments reassembled into application fragments, object headers
 * walked with the object library's sizes, request / response pairing by link
 * association and application sequence, device attributes (group 0) as
 * asset facts, out-of-spec frames and fragments as anomalies. README.md
 * documents every field.
 *
 * As in the Modbus reference, each fragment is walked by one function in
 * two passes: a check pass that raises anomalies and an emit pass that
 * writes event fields (a session has one open event at a time, so anomalies
 * cannot be raised while a transaction is written). */

#include <math.h>
#include <otsensor/dissector.h>

#define LINK_HEADER_LEN 10      /* start(2) length control dst(2) src(2) crc(2) */
#define LINK_MIN_LENGTH 5       /* control + dst + src */
#define LINK_BLOCK 16           /* user data bytes per CRC block */
#define LINK_MAX_USER 250       /* 255 - 5 */
#define FRAGMENT_MIN_LIMIT 2048 /* the spec's default maximum fragment size */
#define FRAGMENT_MAX_LIMIT 65536
/* A reassembly buffer up to this size stays with the flow between fragments
 * as fixed per-flow state; a larger one is charged to flows.memcap_mb and
 * given back when its fragment ends. */
#define REASM_KEEP FRAGMENT_MIN_LIMIT
#define MAX_PENDING 16 /* one outstanding request per association is normal */
#define PENDING_TIMEOUT_US (30 * G_USEC_PER_SEC)
#define MAX_OBJECTS 32       /* object headers reported per fragment */
#define MAX_POINTS 16        /* indexes / command details reported per header */
#define BROADCAST_MIN 0xfffd /* 0xfffd..0xffff are broadcast addresses */

enum {
    LINK_DIR = 0x80,
    LINK_PRM = 0x40,
    LINK_FCB = 0x20,
    LINK_FCV = 0x10,
    LINK_FUNC_MASK = 0x0f,
    LINK_CONFIRMED_USER_DATA = 3,
    LINK_UNCONFIRMED_USER_DATA = 4,
};

enum {
    TP_FIN = 0x80,
    TP_FIR = 0x40,
    TP_SEQ_MASK = 0x3f,
    AC_FIR = 0x80,
    AC_FIN = 0x40,
    AC_CON = 0x20,
    AC_UNS = 0x10,
    AC_SEQ_MASK = 0x0f,
};

enum {
    FC_CONFIRM = 0,
    FC_READ = 1,
    FC_WRITE = 2,
    FC_SELECT = 3,
    FC_OPERATE = 4,
    FC_DIRECT_OPERATE = 5,
    FC_DIRECT_OPERATE_NR = 6,
    FC_IMMED_FREEZE = 7,
    FC_IMMED_FREEZE_NR = 8,
    FC_FREEZE_CLEAR = 9,
    FC_FREEZE_CLEAR_NR = 10,
    FC_FREEZE_AT_TIME = 11,
    FC_FREEZE_AT_TIME_NR = 12,
    FC_COLD_RESTART = 13,
    FC_WARM_RESTART = 14,
    FC_INITIALIZE_DATA = 15,
    FC_INITIALIZE_APPL = 16,
    FC_START_APPL = 17,
    FC_STOP_APPL = 18,
    FC_SAVE_CONFIG = 19,
    FC_ENABLE_UNSOLICITED = 20,
    FC_DISABLE_UNSOLICITED = 21,
    FC_ASSIGN_CLASS = 22,
    FC_DELAY_MEASURE = 23,
    FC_RECORD_CURRENT_TIME = 24,
    FC_OPEN_FILE = 25,
    FC_CLOSE_FILE = 26,
    FC_DELETE_FILE = 27,
    FC_GET_FILE_INFO = 28,
    FC_AUTHENTICATE_FILE = 29,
    FC_ABORT_FILE = 30,
    FC_ACTIVATE_CONFIG = 31,
    FC_AUTH_REQUEST = 32,
    FC_AUTH_REQUEST_NR = 33,
    FC_RESPONSE = 129,
    FC_UNSOLICITED_RESPONSE = 130,
    FC_AUTH_RESPONSE = 131,
};

static const char *const function_names[] = {
    [FC_CONFIRM] = "confirm",
    [FC_READ] = "read",
    [FC_WRITE] = "write",
    [FC_SELECT] = "select",
    [FC_OPERATE] = "operate",
    [FC_DIRECT_OPERATE] = "direct_operate",
    [FC_DIRECT_OPERATE_NR] = "direct_operate_no_ack",
    [FC_IMMED_FREEZE] = "immediate_freeze",
    [FC_IMMED_FREEZE_NR] = "immediate_freeze_no_ack",
    [FC_FREEZE_CLEAR] = "freeze_and_clear",
    [FC_FREEZE_CLEAR_NR] = "freeze_and_clear_no_ack",
    [FC_FREEZE_AT_TIME] = "freeze_at_time",
    [FC_FREEZE_AT_TIME_NR] = "freeze_at_time_no_ack",
    [FC_COLD_RESTART] = "cold_restart",
    [FC_WARM_RESTART] = "warm_restart",
    [FC_INITIALIZE_DATA] = "initialize_data",
    [FC_INITIALIZE_APPL] = "initialize_application",
    [FC_START_APPL] = "start_application",
    [FC_STOP_APPL] = "stop_application",
    [FC_SAVE_CONFIG] = "save_configuration",
    [FC_ENABLE_UNSOLICITED] = "enable_unsolicited",
    [FC_DISABLE_UNSOLICITED] = "disable_unsolicited",
    [FC_ASSIGN_CLASS] = "assign_class",
    [FC_DELAY_MEASURE] = "delay_measurement",
    [FC_RECORD_CURRENT_TIME] = "record_current_time",
    [FC_OPEN_FILE] = "open_file",
    [FC_CLOSE_FILE] = "close_file",
    [FC_DELETE_FILE] = "delete_file",
    [FC_GET_FILE_INFO] = "get_file_info",
    [FC_AUTHENTICATE_FILE] = "authenticate_file",
    [FC_ABORT_FILE] = "abort_file",
    [FC_ACTIVATE_CONFIG] = "activate_config",
    [FC_AUTH_REQUEST] = "authentication_request",
    [FC_AUTH_REQUEST_NR] = "authentication_request_no_ack",
    [FC_RESPONSE] = "response",
    [FC_UNSOLICITED_RESPONSE] = "unsolicited_response",
    [FC_AUTH_RESPONSE] = "authentication_response",
};

static const OtsOpClass function_classes[] = {
    [FC_CONFIRM] = OTS_OP_SESSION,
    [FC_READ] = OTS_OP_READ,
    [FC_WRITE] = OTS_OP_WRITE,
    [FC_SELECT] = OTS_OP_CONTROL,
    [FC_OPERATE] = OTS_OP_CONTROL,
    [FC_DIRECT_OPERATE] = OTS_OP_CONTROL,
    [FC_DIRECT_OPERATE_NR] = OTS_OP_CONTROL,
    /* Freezing copies counters; freeze-and-clear also resets them. */
    [FC_IMMED_FREEZE] = OTS_OP_OTHER,
    [FC_IMMED_FREEZE_NR] = OTS_OP_OTHER,
    [FC_FREEZE_CLEAR] = OTS_OP_WRITE,
    [FC_FREEZE_CLEAR_NR] = OTS_OP_WRITE,
    [FC_FREEZE_AT_TIME] = OTS_OP_OTHER,
    [FC_FREEZE_AT_TIME_NR] = OTS_OP_OTHER,
    [FC_COLD_RESTART] = OTS_OP_RESTART,
    [FC_WARM_RESTART] = OTS_OP_RESTART,
    [FC_INITIALIZE_DATA] = OTS_OP_CONFIG,
    [FC_INITIALIZE_APPL] = OTS_OP_RUN_STATE,
    [FC_START_APPL] = OTS_OP_RUN_STATE,
    [FC_STOP_APPL] = OTS_OP_RUN_STATE,
    [FC_SAVE_CONFIG] = OTS_OP_CONFIG,
    [FC_ENABLE_UNSOLICITED] = OTS_OP_COMM_CONTROL,
    [FC_DISABLE_UNSOLICITED] = OTS_OP_COMM_CONTROL,
    [FC_ASSIGN_CLASS] = OTS_OP_CONFIG,
    [FC_DELAY_MEASURE] = OTS_OP_TIME_SET,
    [FC_RECORD_CURRENT_TIME] = OTS_OP_TIME_SET,
    [FC_OPEN_FILE] = OTS_OP_FILE_TRANSFER,
    [FC_CLOSE_FILE] = OTS_OP_FILE_TRANSFER,
    [FC_DELETE_FILE] = OTS_OP_FILE_TRANSFER,
    [FC_GET_FILE_INFO] = OTS_OP_FILE_TRANSFER,
    [FC_AUTHENTICATE_FILE] = OTS_OP_FILE_TRANSFER,
    [FC_ABORT_FILE] = OTS_OP_FILE_TRANSFER,
    [FC_ACTIVATE_CONFIG] = OTS_OP_CONFIG,
    [FC_AUTH_REQUEST] = OTS_OP_SESSION,
    [FC_AUTH_REQUEST_NR] = OTS_OP_SESSION,
    [FC_RESPONSE] = OTS_OP_OTHER,
    [FC_UNSOLICITED_RESPONSE] = OTS_OP_MONITOR,
    [FC_AUTH_RESPONSE] = OTS_OP_SESSION,
};

/* IIN1 bits 0..7 then IIN2 bits 0..7. */
static const char *const iin_names[16] = {
    "broadcast",         "class_1_events",  "class_2_events",
    "class_3_events",    "need_time",       "local_control",
    "device_trouble",    "device_restart",  "no_func_code_support",
    "object_unknown",    "parameter_error", "event_buffer_overflow",
    "already_executing", "config_corrupt",  "reserved_2",
    "reserved_1",
};
#define IIN2_ERROR_MASK 0x07 /* function unsupported, object unknown, parameter error */

static const char *const crob_op_names[] = {
    "nul", "pulse_on", "pulse_off", "latch_on", "latch_off",
};
static const char *const crob_tcc_names[] = {"nul", "close", "trip", "reserved"};

static const char *const command_status_names[] = {
    "success",
    "timeout",
    "no_select",
    "format_error",
    "not_supported",
    "already_active",
    "hardware_error",
    "local",
    "too_many_objs",
    "not_authorized",
    "automation_inhibit",
    "processing_limited",
    "out_of_range",
    "downstream_local",
    "already_complete",
    "blocked",
    "canceled",
    "blocked_other_master",
    "downstream_fail",
};

/* Group 0 device attribute variations reported as asset fields. */
static const struct {
    guint8 variation;
    const char *key;
} device_attributes[] = {
    {252, "vendor"},           {250, "product"},  {248, "serial"},           {247, "name"},
    {246, "id_code"},          {245, "location"}, {243, "hardware_version"}, {242, "firmware"},
    {249, "dnp3_conformance"},
};

static const char *
function_name(guint fc)
{
    if (fc < G_N_ELEMENTS(function_names) && function_names[fc])
        return function_names[fc];
    return "unknown";
}

static gboolean
is_known_function(guint fc)
{
    return fc < G_N_ELEMENTS(function_names) && function_names[fc] != NULL;
}

static gboolean
is_response_function(guint fc)
{
    return fc == FC_RESPONSE || fc == FC_UNSOLICITED_RESPONSE || fc == FC_AUTH_RESPONSE;
}

/* Requests the outstation never answers. */
static gboolean
is_no_ack_function(guint fc)
{
    return fc == FC_CONFIRM || fc == FC_DIRECT_OPERATE_NR || fc == FC_IMMED_FREEZE_NR ||
           fc == FC_FREEZE_CLEAR_NR || fc == FC_FREEZE_AT_TIME_NR || fc == FC_AUTH_REQUEST_NR;
}

static const char *
command_status_name(guint st)
{
    if (st < G_N_ELEMENTS(command_status_names))
        return command_status_names[st];
    if (st == 126)
        return "non_participating";
    return "undefined";
}

/* DNP3 CRC: polynomial 0x3d65 (reflected 0xa6bc), complemented, sent low
 * byte first. Table-driven, a byte per step: every link frame's header and
 * data blocks are checked. Entry i is i shifted through the bitwise CRC
 * eight times (crc = crc & 1 ? (crc >> 1) ^ 0xa6bc : crc >> 1). */
static const guint16 crc_table[256] = {
    0x0000, 0x365e, 0x6cbc, 0x5ae2, 0xd978, 0xef26, 0xb5c4, 0x839a, 0xff89, 0xc9d7, 0x9335, 0xa56b,
    0x26f1, 0x10af, 0x4a4d, 0x7c13, 0xb26b, 0x8435, 0xded7, 0xe889, 0x6b13, 0x5d4d, 0x07af, 0x31f1,
    0x4de2, 0x7bbc, 0x215e, 0x1700, 0x949a, 0xa2c4, 0xf826, 0xce78, 0x29af, 0x1ff1, 0x4513, 0x734d,
    0xf0d7, 0xc689, 0x9c6b, 0xaa35, 0xd626, 0xe078, 0xba9a, 0x8cc4, 0x0f5e, 0x3900, 0x63e2, 0x55bc,
    0x9bc4, 0xad9a, 0xf778, 0xc126, 0x42bc, 0x74e2, 0x2e00, 0x185e, 0x644d, 0x5213, 0x08f1, 0x3eaf,
    0xbd35, 0x8b6b, 0xd189, 0xe7d7, 0x535e, 0x6500, 0x3fe2, 0x09bc, 0x8a26, 0xbc78, 0xe69a, 0xd0c4,
    0xacd7, 0x9a89, 0xc06b, 0xf635, 0x75af, 0x43f1, 0x1913, 0x2f4d, 0xe135, 0xd76b, 0x8d89, 0xbbd7,
    0x384d, 0x0e13, 0x54f1, 0x62af, 0x1ebc, 0x28e2, 0x7200, 0x445e, 0xc7c4, 0xf19a, 0xab78, 0x9d26,
    0x7af1, 0x4caf, 0x164d, 0x2013, 0xa389, 0x95d7, 0xcf35, 0xf96b, 0x8578, 0xb326, 0xe9c4, 0xdf9a,
    0x5c00, 0x6a5e, 0x30bc, 0x06e2, 0xc89a, 0xfec4, 0xa426, 0x9278, 0x11e2, 0x27bc, 0x7d5e, 0x4b00,
    0x3713, 0x014d, 0x5baf, 0x6df1, 0xee6b, 0xd835, 0x82d7, 0xb489, 0xa6bc, 0x90e2, 0xca00, 0xfc5e,
    0x7fc4, 0x499a, 0x1378, 0x2526, 0x5935, 0x6f6b, 0x3589, 0x03d7, 0x804d, 0xb613, 0xecf1, 0xdaaf,
    0x14d7, 0x2289, 0x786b, 0x4e35, 0xcdaf, 0xfbf1, 0xa113, 0x974d, 0xeb5e, 0xdd00, 0x87e2, 0xb1bc,
    0x3226, 0x0478, 0x5e9a, 0x68c4, 0x8f13, 0xb94d, 0xe3af, 0xd5f1, 0x566b, 0x6035, 0x3ad7, 0x0c89,
    0x709a, 0x46c4, 0x1c26, 0x2a78, 0xa9e2, 0x9fbc, 0xc55e, 0xf300, 0x3d78, 0x0b26, 0x51c4, 0x679a,
    0xe400, 0xd25e, 0x88bc, 0xbee2, 0xc2f1, 0xf4af, 0xae4d, 0x9813, 0x1b89, 0x2dd7, 0x7735, 0x416b,
    0xf5e2, 0xc3bc, 0x995e, 0xaf00, 0x2c9a, 0x1ac4, 0x4026, 0x7678, 0x0a6b, 0x3c35, 0x66d7, 0x5089,
    0xd313, 0xe54d, 0xbfaf, 0x89f1, 0x4789, 0x71d7, 0x2b35, 0x1d6b, 0x9ef1, 0xa8af, 0xf24d, 0xc413,
    0xb800, 0x8e5e, 0xd4bc, 0xe2e2, 0x6178, 0x5726, 0x0dc4, 0x3b9a, 0xdc4d, 0xea13, 0xb0f1, 0x86af,
    0x0535, 0x336b, 0x6989, 0x5fd7, 0x23c4, 0x159a, 0x4f78, 0x7926, 0xfabc, 0xcce2, 0x9600, 0xa05e,
    0x6e26, 0x5878, 0x029a, 0x34c4, 0xb75e, 0x8100, 0xdbe2, 0xedbc, 0x91af, 0xa7f1, 0xfd13, 0xcb4d,
    0x48d7, 0x7e89, 0x246b, 0x1235,
};

static guint16
dnp3_crc(const guint8 *p, gsize n)
{
    guint16 crc = 0;
    for (gsize i = 0; i < n; i++)
        crc = (guint16)((crc >> 8) ^ crc_table[(crc ^ p[i]) & 0xff]);
    return (guint16)~crc;
}

static gboolean
crc_ok(const guint8 *p, gsize n)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* A fuzzer cannot forge CRCs: let it reach the layers above. */
    return TRUE;
#endif
    guint16 crc = dnp3_crc(p, n);
    return p[n] == (crc & 0xff) && p[n + 1] == (crc >> 8);
}

/* Whole link frame length for length field @len (>= 5). */
static gsize
frame_size(guint8 len)
{
    gsize user = (gsize)len - LINK_MIN_LENGTH;
    return LINK_HEADER_LEN + user + 2 * ((user + LINK_BLOCK - 1) / LINK_BLOCK);
}

/* ---- object library sizes ---------------------------------------------- */

enum {
    SIZE_UNKNOWN = -1,
    SIZE_BITS1 = -2,     /* packed, 1 bit a point */
    SIZE_BITS2 = -3,     /* packed, 2 bits a point */
    SIZE_ATTRIBUTE = -4, /* group 0: data type, length, value */
};

/* Bytes per object of group @g variation @v, or one of SIZE_*. */
static gint
object_size(guint g, guint v)
{
    /* Sizes per variation 1..n, 0 = not defined. */
    static const guint8 g2[] = {1, 7, 3}, g11[] = {1, 7}, g12[] = {11, 11, 0},
                        g20[] = {5, 3, 5, 3, 4, 2, 4, 2},
                        g21[] = {5, 3, 5, 3, 11, 9, 11, 9, 4, 2, 4, 2},
                        g22[] = {5, 3, 5, 3, 11, 9, 11, 9}, g30[] = {5, 3, 4, 2, 5, 9},
                        g31[] = {5, 3, 11, 9, 4, 2, 5, 9}, g32[] = {5, 3, 11, 9, 5, 9, 11, 15},
                        g34[] = {2, 4, 4}, g40[] = {5, 3, 5, 9}, g50[] = {6, 10, 6, 11},
                        g51[] = {6, 6}, g52[] = {2, 2};
    const guint8 *t = NULL;
    gsize n = 0;

#define TABLE(a) (t = (a), n = G_N_ELEMENTS(a))
    switch (g) {
    case 0:
        return v == 0 ? SIZE_UNKNOWN : SIZE_ATTRIBUTE;
    case 1:
    case 10:
    case 80:
        return v == 1 ? SIZE_BITS1 : (v == 2 && g != 80) ? 1 : SIZE_UNKNOWN;
    case 3:
        return v == 1 ? SIZE_BITS2 : v == 2 ? 1 : SIZE_UNKNOWN;
    case 2:
    case 4:
        TABLE(g2);
        break;
    case 11:
    case 13:
        TABLE(g11);
        break;
    case 12:
        if (v == 3)
            return SIZE_BITS1; /* pattern mask */
        TABLE(g12);
        break;
    case 20:
        TABLE(g20);
        break;
    case 21:
        TABLE(g21);
        break;
    case 22:
    case 23:
        TABLE(g22);
        break;
    case 30:
        TABLE(g30);
        break;
    case 31:
        TABLE(g31);
        break;
    case 32:
    case 33:
    case 42:
    case 43:
        TABLE(g32);
        break;
    case 34:
        TABLE(g34);
        break;
    case 40:
    case 41:
        TABLE(g40);
        break;
    case 50:
        TABLE(g50);
        break;
    case 51:
        TABLE(g51);
        break;
    case 52:
        TABLE(g52);
        break;
    case 60:
        return v >= 1 && v <= 4 ? 0 : SIZE_UNKNOWN;
    case 110:
    case 111:
    case 112:
    case 113:
        return v; /* the variation is the string length */
    default:
        return SIZE_UNKNOWN;
    }
#undef TABLE
    if (v == 0 || v > n || t[v - 1] == 0)
        return SIZE_UNKNOWN;
    return t[v - 1];
}

/* Does a header of group @g in a fragment of function @fc carry object
 * data? Reads, freezes, class assignments and unsolicited enables name
 * points without values. */
static gboolean
has_data(guint fc, gboolean response, guint g, guint range_code)
{
    if (g == 60 || range_code == 6)
        return FALSE;
    if (response)
        return TRUE;
    switch (fc) {
    case FC_READ:
    case FC_IMMED_FREEZE:
    case FC_IMMED_FREEZE_NR:
    case FC_FREEZE_CLEAR:
    case FC_FREEZE_CLEAR_NR:
    case FC_ENABLE_UNSOLICITED:
    case FC_DISABLE_UNSOLICITED:
    case FC_ASSIGN_CLASS:
        return FALSE;
    case FC_FREEZE_AT_TIME:
    case FC_FREEZE_AT_TIME_NR:
        return g == 50; /* the time-and-interval object */
    default:
        return TRUE;
    }
}

/* ---- per-flow state ---------------------------------------------------- */

typedef struct {
    guint8 *buf; /* application fragment being reassembled */
    gsize len;
    gsize cap;
    gboolean active;
    gboolean discard; /* oversize: drop segments until the next FIR */
    guint8 next_seq;
    guint16 src, dst;
    guint segments;
} Reassembly;

typedef struct {
    GList link; /* in Dnp3State.pending, oldest first; data points here */
    gint64 ts;
    OtsDirection dir;
    guint16 src, dst; /* link addresses of the request */
    guint8 fc;
    guint8 seq; /* application sequence expected in the next response */
    guint8 link_control;
    guint8 transport_seq;
    gboolean answered; /* a non-final response fragment was seen */
    guint segments;
    gsize len;
    guint8 frag[];
} Pending;

typedef struct {
    GQueue pending;
    gboolean resync[2];
    Reassembly reasm[2];
    gsize limit; /* largest application fragment accepted */
} Dnp3State;

/* One reassembled application fragment. */
typedef struct {
    const guint8 *data;
    gsize len;
    guint16 src, dst;
    guint8 link_control;
    guint8 transport_seq; /* of the final segment */
    guint segments;
} Fragment;

/* ---- fragment walker --------------------------------------------------- */

typedef struct {
    const guint8 *value;
    guint8 len;
} AttrValue;

typedef struct {
    OtsSession *s; /* check pass: raise anomalies here */
    OtsEvent *e;   /* emit pass: write fields here */
    OtsDirection dir;
    guint16 src, dst;
    guint8 fc;
    gboolean response;
    guint problems;
    guint command_errors; /* non-zero CROB / analog output status in a response */
    AttrValue *attrs;     /* emit pass of a response: group 0 values, by device_attributes[] */
    const char *raised[6];
} Walk;

static void problem(Walk *w, const char *code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
raise_anomaly(OtsSession *s, OtsDirection dir, guint16 src, guint16 dst, gint fc, const char *code,
              const char *msg)
{
    OtsEvent *a = ots_session_begin_anomaly(s, dir, code, msg);
    if (!a)
        return;
    ots_event_begin_object(a, "dnp3");
    ots_event_add_uint(a, "src", src);
    ots_event_add_uint(a, "dst", dst);
    if (fc >= 0)
        ots_event_add_uint(a, "function", (guint)fc);
    ots_event_end_object(a);
    ots_event_commit(a);
}

static void
problem(Walk *w, const char *code, const char *fmt, ...)
{
    w->problems++;
    if (!w->s || w->e)
        return;
    /* One alert per code and fragment is enough to say what is wrong. */
    guint i;
    for (i = 0; i < G_N_ELEMENTS(w->raised) && w->raised[i]; i++)
        if (strcmp(w->raised[i], code) == 0)
            return;
    if (i < G_N_ELEMENTS(w->raised))
        w->raised[i] = code;

    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    g_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    raise_anomaly(w->s, w->dir, w->src, w->dst, w->fc, code, msg);
}

static gboolean
read_le(OtsReader *r, guint nbytes, guint32 *v)
{
    guint8 b;
    guint16 h;
    switch (nbytes) {
    case 0:
        *v = 0;
        return TRUE;
    case 1:
        if (!ots_reader_get_u8(r, &b))
            return FALSE;
        *v = b;
        return TRUE;
    case 2:
        if (!ots_reader_get_u16_le(r, &h))
            return FALSE;
        *v = h;
        return TRUE;
    default:
        return ots_reader_get_u32_le(r, v);
    }
}

static void
walk_attribute(Walk *w, guint8 variation, const guint8 *value, guint8 len)
{
    if (!w->attrs)
        return;
    for (gsize i = 0; i < G_N_ELEMENTS(device_attributes); i++) {
        if (device_attributes[i].variation == variation) {
            w->attrs[i].value = value;
            w->attrs[i].len = len;
        }
    }
}

/* Control relay output block (g12v1/v2): 11 bytes. */
static void
walk_crob(Walk *w, OtsReader *obj, gboolean emit)
{
    guint8 code = 0, count = 0, status = 0;
    guint32 on = 0, off = 0;
    ots_reader_get_u8(obj, &code);
    ots_reader_get_u8(obj, &count);
    ots_reader_get_u32_le(obj, &on);
    ots_reader_get_u32_le(obj, &off);
    ots_reader_get_u8(obj, &status);
    guint op = code & 0x0f, tcc = code >> 6;
    if (op >= G_N_ELEMENTS(crob_op_names))
        problem(w, "bad_value", "control relay output block: operation type %u", op);
    if (tcc == 3)
        problem(w, "bad_value", "control relay output block: trip-close code 3");
    if (w->response && status != 0)
        w->command_errors++;
    if (!w->e || !emit)
        return;
    ots_event_add_uint(w->e, "control_code", code);
    ots_event_add_string(w->e, "op_type",
                         op < G_N_ELEMENTS(crob_op_names) ? crob_op_names[op] : "unknown");
    ots_event_add_string(w->e, "trip_close", crob_tcc_names[tcc]);
    ots_event_add_bool(w->e, "queue", (code & 0x10) != 0);
    ots_event_add_bool(w->e, "clear", (code & 0x20) != 0);
    ots_event_add_uint(w->e, "count", count);
    ots_event_add_uint(w->e, "on_time_ms", on);
    ots_event_add_uint(w->e, "off_time_ms", off);
    ots_event_add_uint(w->e, "status", status);
    ots_event_add_string(w->e, "status_name", command_status_name(status));
}

/* Analog output block (g41v1..v4): value then status. */
static void
walk_aob(Walk *w, guint variation, OtsReader *obj, gboolean emit)
{
    guint32 u32 = 0;
    guint16 u16 = 0;
    guint64 u64 = 0;
    guint8 status = 0;
    double value = 0;
    gint64 ivalue = 0;
    gboolean is_int = TRUE;

    switch (variation) {
    case 1:
        ots_reader_get_u32_le(obj, &u32);
        ivalue = (gint32)u32;
        break;
    case 2:
        ots_reader_get_u16_le(obj, &u16);
        ivalue = (gint16)u16;
        break;
    case 3: {
        ots_reader_get_u32_le(obj, &u32);
        float f;
        memcpy(&f, &u32, sizeof(f));
        value = f;
        is_int = FALSE;
        break;
    }
    default:
        ots_reader_get_u64_le(obj, &u64);
        memcpy(&value, &u64, sizeof(value));
        is_int = FALSE;
        break;
    }
    ots_reader_get_u8(obj, &status);
    if (w->response && status != 0)
        w->command_errors++;
    if (!w->e || !emit)
        return;
    if (is_int)
        ots_event_add_int(w->e, "value", ivalue);
    else if (isfinite(value))
        ots_event_add_double(w->e, "value", value);
    else
        ots_event_add_null(w->e, "value");
    ots_event_add_uint(w->e, "status", status);
    ots_event_add_string(w->e, "status_name", command_status_name(status));
}

/* One object header and its objects. FALSE when walking must stop (the
 * rest of the fragment cannot be located). */
static gboolean
walk_object(Walk *w, OtsReader *r, gboolean emit)
{
    guint8 g, v, q;
    if (!ots_reader_get_u8(r, &g) || !ots_reader_get_u8(r, &v) || !ots_reader_get_u8(r, &q)) {
        problem(w, "bad_object_length", "truncated object header");
        ots_reader_skip(r, ots_reader_remaining(r));
        return FALSE;
    }
    guint prefix = (q >> 4) & 0x07, range = q & 0x0f;
    static const guint8 prefix_bytes[] = {0, 1, 2, 4, 1, 2, 4, 0};
    guint32 start = 0, stop = 0, count = 0;

    if (emit) {
        ots_event_begin_object(w->e, NULL);
        ots_event_add_uint(w->e, "group", g);
        ots_event_add_uint(w->e, "variation", v);
        ots_event_add_uint(w->e, "qualifier", q);
        ots_event_add_uint(w->e, "prefix_code", prefix);
        ots_event_add_uint(w->e, "range_code", range);
    }
#define FAIL()                                                                                     \
    do {                                                                                           \
        if (emit)                                                                                  \
            ots_event_end_object(w->e);                                                            \
        ots_reader_skip(r, ots_reader_remaining(r));                                               \
        return FALSE;                                                                              \
    } while (0)

    if (prefix == 7 || (q & 0x80)) {
        problem(w, "bad_qualifier", "object %u.%u: qualifier 0x%02x", g, v, q);
        FAIL();
    }
    switch (range) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5: {
        guint nb = range % 3 == 0 ? 1 : range % 3 == 1 ? 2 : 4;
        if (!read_le(r, nb, &start) || !read_le(r, nb, &stop)) {
            problem(w, "bad_object_length", "object %u.%u: truncated range", g, v);
            FAIL();
        }
        if (emit) {
            ots_event_add_uint(w->e, "start", start);
            ots_event_add_uint(w->e, "stop", stop);
        }
        if (stop < start) {
            problem(w, "bad_range", "object %u.%u: stop %u < start %u", g, v, stop, start);
            FAIL();
        }
        count = stop - start + 1; /* wraps to 0 only for 0..0xffffffff */
        if (count == 0)
            count = G_MAXUINT32;
        break;
    }
    case 6:
        count = 0;
        if (prefix != 0)
            problem(w, "bad_qualifier", "object %u.%u: qualifier 0x%02x", g, v, q);
        break;
    case 7:
    case 8:
    case 9:
    case 11: {
        guint nb = range == 7 || range == 11 ? 1 : range == 8 ? 2 : 4;
        if (!read_le(r, nb, &count)) {
            problem(w, "bad_object_length", "object %u.%u: truncated count", g, v);
            FAIL();
        }
        if (emit)
            ots_event_add_uint(w->e, "count", count);
        break;
    }
    default:
        problem(w, "bad_qualifier", "object %u.%u: range code %u", g, v, range);
        FAIL();
    }

    gboolean data = has_data(w->fc, w->response, g, range);
    gint size = data ? object_size(g, v) : 0;
    guint pb = prefix <= 3 ? prefix_bytes[prefix] : 0; /* index prefix */
    guint sb = prefix >= 4 ? prefix_bytes[prefix] : 0; /* object size prefix */

    if (data && size == SIZE_UNKNOWN && sb == 0) {
        problem(w, "unknown_object", "object %u.%u: size unknown, rest of fragment skipped", g, v);
        FAIL();
    }
    if (count > 0 && pb == 0 && sb == 0 && (size == SIZE_BITS1 || size == SIZE_BITS2)) {
        /* Packed points: the whole range in ceil(count * bits / 8) bytes. */
        guint64 bits = (guint64)count * (size == SIZE_BITS1 ? 1 : 2);
        if (!ots_reader_skip(r, (gsize)MIN((bits + 7) / 8, (guint64)G_MAXSIZE))) {
            problem(w, "bad_object_length", "object %u.%u: %u packed points past the end", g, v,
                    count);
            FAIL();
        }
    } else if (count > 0 && pb == 0 && sb == 0 && size > 0 && g != 12 && g != 41 && g != 50) {
        /* Fixed-size objects without index prefixes, of a group with no
         * per-point detail (analog and counter values, say): nothing is
         * reported or checked per object, so they are stepped over at once,
         * as the loop below would, with its message for the first object
         * past the end. A class poll's response is mostly these. */
        gsize left = ots_reader_remaining(r);
        if ((guint64)count * (guint64)size > left) {
            problem(w, "bad_object_length", "object %u.%u: object %u past the end", g, v,
                    (guint)(left / (gsize)size));
            FAIL();
        }
        ots_reader_skip(r, (gsize)count * (gsize)size);
    } else if (count > 0 && (pb > 0 || sb > 0 || size != 0)) {
        gboolean list_open = FALSE;
        for (guint32 i = 0; i < count; i++) {
            guint32 index = start + i, osize = 0;
            if (pb > 0 && !read_le(r, pb, &index)) {
                problem(w, "bad_object_length", "object %u.%u: object %u past the end", g, v, i);
                if (list_open)
                    ots_event_end_array(w->e);
                FAIL();
            }
            if (sb > 0 && !read_le(r, sb, &osize)) {
                problem(w, "bad_object_length", "object %u.%u: object %u past the end", g, v, i);
                if (list_open)
                    ots_event_end_array(w->e);
                FAIL();
            }
            OtsReader obj = OTS_READER_INIT(NULL, 0);
            gboolean ok = TRUE;
            const guint8 *value = NULL;
            guint8 atype = 0, alen = 0;
            if (sb > 0) {
                ok = ots_reader_get_sub_reader(r, &obj, osize);
            } else if (size == SIZE_ATTRIBUTE) {
                ok = ots_reader_get_u8(r, &atype) && ots_reader_get_u8(r, &alen) &&
                     ots_reader_get_data(r, alen, &value);
            } else if (size == SIZE_BITS1 || size == SIZE_BITS2) {
                ok = ots_reader_get_sub_reader(r, &obj, 1);
            } else if (size > 0) {
                ok = ots_reader_get_sub_reader(r, &obj, (gsize)size);
            }
            if (!ok) {
                problem(w, "bad_object_length", "object %u.%u: object %u past the end", g, v, i);
                if (list_open)
                    ots_event_end_array(w->e);
                FAIL();
            }
            if (size == SIZE_ATTRIBUTE && data && w->response && atype == 1)
                walk_attribute(w, v, value, alen);

            gboolean detail = (g == 12 && (v == 1 || v == 2) && obj.len == 11) ||
                              (g == 41 && obj.len == (gsize)object_size(41, v)) ||
                              (g == 50 && (v == 1 || v == 3) && obj.len == 6);
            if (emit && i == 0 && (pb > 0 || detail)) {
                ots_event_begin_array(w->e, "points");
                list_open = TRUE;
            }
            gboolean report = list_open && i < MAX_POINTS;
            if (report) {
                ots_event_begin_object(w->e, NULL);
                ots_event_add_uint(w->e, "index", index);
            }
            if (g == 12 && (v == 1 || v == 2) && obj.len == 11)
                walk_crob(w, &obj, report);
            else if (g == 41 && detail)
                walk_aob(w, v, &obj, report);
            else if (report && g == 50 && detail) {
                guint32 lo = 0;
                guint16 hi = 0;
                ots_reader_get_u32_le(&obj, &lo);
                ots_reader_get_u16_le(&obj, &hi);
                ots_event_add_uint(w->e, "time_ms", ((guint64)hi << 32) | lo);
            }
            if (report)
                ots_event_end_object(w->e);
        }
        if (list_open) {
            ots_event_end_array(w->e);
            ots_event_add_bool(w->e, "points_truncated", count > MAX_POINTS);
        }
    }
    if (emit)
        ots_event_end_object(w->e);
#undef FAIL
    return TRUE;
}

/* Walks application fragment @f (control, function, [IIN], objects). */
static void
walk_fragment(Walk *w, const Fragment *f)
{
    OtsReader r = OTS_READER_INIT(f->data, f->len);
    guint8 ac = 0, fc = 0;
    guint16 iin = 0;
    ots_reader_get_u8(&r, &ac);
    ots_reader_get_u8(&r, &fc);
    if (w->response && !ots_reader_get_u16_be(&r, &iin))
        return; /* checked by the caller */

    if (!is_known_function(fc))
        problem(w, "bad_function_code", "application function code %u", fc);
    if (!w->response && fc != FC_CONFIRM && (ac & (AC_FIR | AC_FIN)) != (AC_FIR | AC_FIN))
        problem(w, "bad_app_control", "request %u not in a single fragment (control 0x%02x)", fc,
                ac);
    if (fc == FC_UNSOLICITED_RESPONSE && !(ac & AC_UNS))
        problem(w, "bad_app_control", "unsolicited response without the UNS bit");
    if (fc == FC_RESPONSE && (ac & AC_UNS))
        problem(w, "bad_app_control", "solicited response with the UNS bit");

    if (w->e) {
        ots_event_add_uint(w->e, "src", f->src);
        ots_event_add_uint(w->e, "dst", f->dst);
        ots_event_add_uint(w->e, "link_control", f->link_control);
        ots_event_add_uint(w->e, "segments", f->segments);
        ots_event_add_uint(w->e, "transport_seq", f->transport_seq);
        ots_event_add_bool(w->e, "fir", (ac & AC_FIR) != 0);
        ots_event_add_bool(w->e, "fin", (ac & AC_FIN) != 0);
        ots_event_add_bool(w->e, "con", (ac & AC_CON) != 0);
        ots_event_add_bool(w->e, "uns", (ac & AC_UNS) != 0);
        ots_event_add_uint(w->e, "seq", ac & AC_SEQ_MASK);
        ots_event_add_uint(w->e, "function", fc);
        ots_event_add_string(w->e, "function_name", function_name(fc));
        if (w->response) {
            ots_event_add_uint(w->e, "iin", iin);
            ots_event_begin_array(w->e, "iin_flags");
            /* IIN1 is the first byte on the wire, IIN2 the second. */
            for (guint b = 0; b < 16; b++) {
                guint bit = b < 8 ? (0x100u << b) : (1u << (b - 8));
                if (iin & bit)
                    ots_event_add_string(w->e, NULL, iin_names[b]);
            }
            ots_event_end_array(w->e);
        }
        ots_event_add_uint(w->e, "length", f->len);
    }

    if (w->e)
        ots_event_begin_array(w->e, "objects");
    guint n = 0;
    gboolean complete = TRUE;
    while (ots_reader_remaining(&r) > 0) {
        gboolean emit = w->e && n < MAX_OBJECTS;
        if (!walk_object(w, &r, emit)) {
            complete = FALSE;
            break;
        }
        n++;
    }
    if (w->e) {
        ots_event_end_array(w->e);
        ots_event_add_uint(w->e, "object_count", n);
        ots_event_add_bool(w->e, "objects_truncated", n > MAX_OBJECTS || !complete);
    }
}

static gboolean
fragment_is_exception(const Fragment *f, guint command_errors)
{
    if (f->len >= 4 && (f->data[3] & IIN2_ERROR_MASK))
        return TRUE;
    return command_errors > 0;
}

/* ---- events ------------------------------------------------------------ */

static void
emit_device_attributes(OtsSession *s, OtsDirection dir, guint16 address, const AttrValue *attrs)
{
    gboolean any = FALSE;
    for (gsize i = 0; i < G_N_ELEMENTS(device_attributes); i++)
        any |= attrs[i].value != NULL;
    if (!any)
        return;
    OtsEvent *e = ots_session_begin_asset(s, dir, OTS_ROLE_CONTROLLER);
    if (!e)
        return;
    for (gsize i = 0; i < G_N_ELEMENTS(device_attributes); i++)
        if (attrs[i].value)
            ots_event_add_string_len(e, device_attributes[i].key, attrs[i].value, attrs[i].len);
    ots_event_begin_object(e, "dnp3");
    ots_event_add_uint(e, "address", address);
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* One transaction event. @req (nullable) the request fragment seen in
 * @req_dir at @req_ts, @resp (nullable) a response fragment seen now. */
static void
emit_transaction(OtsSession *s, OtsDirection req_dir, guint8 fc, OtsTxStatus status,
                 const Fragment *req, gint64 req_ts, const Fragment *resp, OtsDirection resp_dir,
                 gboolean continuation)
{
    OtsTransactionInfo info = {
        .request_dir = req_dir,
        .function = fc,
        .function_name = function_name(fc),
        .op_class = fc < G_N_ELEMENTS(function_classes) ? function_classes[fc] : OTS_OP_OTHER,
        .status = status,
        .request_ts = req ? req_ts : 0,
        .response_ts = resp ? ots_session_get_time(s) : 0,
    };
    /* Writing the time object sets the outstation's clock. */
    if (req && fc == FC_WRITE && req->len >= 4 && req->data[2] == 50 &&
        (req->data[3] == 1 || req->data[3] == 3))
        info.op_class = OTS_OP_TIME_SET;

    AttrValue attrs[G_N_ELEMENTS(device_attributes)] = {{0}};
    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    ots_event_begin_object(e, "dnp3");
    /* The association: requests go master -> outstation, responses back. */
    ots_event_add_uint(e, "master", req ? req->src : resp->dst);
    ots_event_add_uint(e, "outstation", req ? req->dst : resp->src);
    if (continuation)
        ots_event_add_bool(e, "continuation", TRUE);
    if (req) {
        Walk w = {.e = e, .fc = fc, .src = req->src, .dst = req->dst};
        ots_event_begin_object(e, "request");
        walk_fragment(&w, req);
        ots_event_end_object(e);
    }
    if (resp) {
        Walk w = {.e = e,
                  .fc = resp->data[1],
                  .response = TRUE,
                  .src = resp->src,
                  .dst = resp->dst,
                  .attrs = attrs};
        ots_event_begin_object(e, "response");
        walk_fragment(&w, resp);
        ots_event_end_object(e);
    }
    ots_event_end_object(e);
    ots_event_commit(e);

    if (resp)
        emit_device_attributes(s, resp_dir, resp->src, attrs);
}

/* ---- pairing ----------------------------------------------------------- */

static void
pending_fragment(const Pending *p, Fragment *f)
{
    f->data = p->frag;
    f->len = p->len;
    f->src = p->src;
    f->dst = p->dst;
    f->link_control = p->link_control;
    f->transport_seq = p->transport_seq;
    f->segments = p->segments;
}

/* What a pending request is charged to flows.memcap_mb. */
static gsize
pending_size(gsize frag_len)
{
    return sizeof(Pending) + frag_len;
}

static void
pending_free(OtsSession *s, Dnp3State *st, Pending *p)
{
    g_queue_unlink(&st->pending, &p->link);
    ots_session_refund(s, pending_size(p->len));
    g_free(p);
}

static void
pending_unanswered(OtsSession *s, Dnp3State *st, Pending *p)
{
    if (!p->answered) {
        Fragment f;
        pending_fragment(p, &f);
        emit_transaction(s, p->dir, p->fc, OTS_TX_UNANSWERED, &f, p->ts, NULL, p->dir, FALSE);
    }
    pending_free(s, st, p);
}

/* Charges a new request of @size bytes. When the budget is spent the oldest
 * goes, as when the table is full, and the charge is tried once more. */
static gboolean
pending_budget(OtsSession *s, Dnp3State *st, gsize size)
{
    if (G_LIKELY(ots_session_charge(s, size)))
        return TRUE;
    if (!st->pending.head)
        return FALSE;
    pending_unanswered(s, st, st->pending.head->data);
    return ots_session_charge(s, size);
}

/* The oldest request of association (master @master, outstation
 * @outstation) that a response fragment with @ac may answer: a first
 * fragment answers a request not answered yet, a later one continues a
 * response in progress. Same sequence number first; otherwise the oldest
 * candidate (@exact tells which). */
static Pending *
pending_find(Dnp3State *st, guint16 master, guint16 outstation, guint8 ac, gboolean *exact)
{
    gboolean first = (ac & AC_FIR) != 0;
    Pending *any = NULL;
    for (GList *l = st->pending.head; l; l = l->next) {
        Pending *p = l->data;
        if (p->src != master || p->dst != outstation || p->answered == first)
            continue;
        if (p->seq == (ac & AC_SEQ_MASK)) {
            *exact = TRUE;
            return p;
        }
        if (!any)
            any = p;
    }
    *exact = FALSE;
    return any;
}

static void
handle_request(OtsSession *s, Dnp3State *st, OtsDirection dir, const Fragment *f)
{
    guint8 ac = f->data[0], fc = f->data[1];
    Walk w = {.s = s, .dir = dir, .fc = fc, .src = f->src, .dst = f->dst};
    walk_fragment(&w, f);

    if (is_no_ack_function(fc) || f->dst >= BROADCAST_MIN) {
        emit_transaction(s, dir, fc, OTS_TX_NO_RESPONSE, f, ots_session_get_time(s), NULL, dir,
                         FALSE);
        return;
    }
    /* The spec allows one outstanding request per association, but masters
     * retry and pipeline (select / operate back to back): keep them all,
     * bounded, and pair responses by sequence number. */
    if (st->pending.length >= MAX_PENDING)
        pending_unanswered(s, st, st->pending.head->data);
    if (!pending_budget(s, st, pending_size(f->len))) {
        /* flows.memcap_mb refuses to keep it: reported now, unanswered. */
        emit_transaction(s, dir, fc, OTS_TX_UNANSWERED, f, ots_session_get_time(s), NULL, dir,
                         FALSE);
        return;
    }

    Pending *p = g_malloc(pending_size(f->len));
    p->link.data = p;
    p->link.prev = p->link.next = NULL;
    p->ts = ots_session_get_time(s);
    p->dir = dir;
    p->src = f->src;
    p->dst = f->dst;
    p->fc = fc;
    p->seq = ac & AC_SEQ_MASK;
    p->answered = FALSE;
    p->link_control = f->link_control;
    p->transport_seq = f->transport_seq;
    p->segments = f->segments;
    p->len = f->len;
    memcpy(p->frag, f->data, f->len);
    g_queue_push_tail_link(&st->pending, &p->link);
}

static void
handle_response(OtsSession *s, Dnp3State *st, OtsDirection dir, const Fragment *f)
{
    guint8 ac = f->data[0], fc = f->data[1];
    guint8 seq = ac & AC_SEQ_MASK;
    Walk w = {.s = s, .dir = dir, .fc = fc, .response = TRUE, .src = f->src, .dst = f->dst};
    walk_fragment(&w, f);
    OtsTxStatus status = fragment_is_exception(f, w.command_errors) ? OTS_TX_EXCEPTION : OTS_TX_OK;

    if (fc == FC_UNSOLICITED_RESPONSE) {
        emit_transaction(s, dir, fc, OTS_TX_UNSOLICITED, NULL, 0, f, dir, FALSE);
        return;
    }

    gboolean exact;
    Pending *p = pending_find(st, f->dst, f->src, ac, &exact);
    if (p && !exact)
        problem(&w, "sequence_mismatch", "response sequence %u, expected %u", seq, p->seq);
    if (!p) {
        problem(&w, "response_without_request", "response from %u to %u, sequence %u", f->src,
                f->dst, seq);
        emit_transaction(s, OTS_DIR_REVERSE(dir), FC_RESPONSE, OTS_TX_NO_REQUEST, NULL, 0, f, dir,
                         !(ac & AC_FIR));
        return;
    }

    if (!p->answered) {
        Fragment req;
        pending_fragment(p, &req);
        emit_transaction(s, p->dir, p->fc, status, &req, p->ts, f, dir, FALSE);
    } else {
        /* Later fragments of a multi-fragment response: the request was
         * already reported with the first one. */
        emit_transaction(s, p->dir, p->fc, status, NULL, 0, f, dir, TRUE);
    }
    if (ac & AC_FIN) {
        pending_free(s, st, p);
    } else {
        p->answered = TRUE;
        p->seq = (seq + 1) & AC_SEQ_MASK;
    }
}

static void
handle_fragment(OtsSession *s, Dnp3State *st, OtsDirection dir, const Fragment *f)
{
    guint8 fc = f->len >= 2 ? f->data[1] : 0;
    gboolean response = is_response_function(fc);
    if (f->len < 2 || (response && f->len < 4)) {
        raise_anomaly(s, dir, f->src, f->dst, f->len >= 2 ? fc : -1, "bad_length",
                      "application fragment too short");
        return;
    }
    if (response)
        handle_response(s, st, dir, f);
    else
        handle_request(s, st, dir, f);
}

/* ---- transport --------------------------------------------------------- */

/* What a reassembly buffer of @cap bytes is charged to flows.memcap_mb. */
static gsize
reasm_charged(gsize cap)
{
    return cap > REASM_KEEP ? cap : 0;
}

static void
reasm_free(OtsSession *s, Reassembly *ra)
{
    ots_session_refund(s, reasm_charged(ra->cap));
    g_clear_pointer(&ra->buf, g_free);
    ra->cap = 0;
}

/* Drops the fragment in progress; a buffer that grew past REASM_KEEP is
 * given back. */
static void
reasm_reset(OtsSession *s, Reassembly *ra)
{
    ra->len = 0;
    ra->active = FALSE;
    ra->discard = FALSE;
    ra->segments = 0;
    if (ra->cap > REASM_KEEP)
        reasm_free(s, ra);
}

/* Room for @need bytes, charged; FALSE when flows.memcap_mb refuses it. */
static gboolean
reasm_grow(OtsSession *s, Dnp3State *st, Reassembly *ra, gsize need)
{
    gsize cap = MIN(st->limit, MAX(ra->cap * 2, need + 256));
    gsize more = reasm_charged(cap) - reasm_charged(ra->cap);
    if (more && !ots_session_charge(s, more))
        return FALSE;
    ra->buf = g_realloc(ra->buf, cap);
    ra->cap = cap;
    return TRUE;
}

static void
handle_segment(OtsSession *s, Dnp3State *st, OtsDirection dir, guint8 link_control, guint16 dst,
               guint16 src, const guint8 *user, gsize n)
{
    Reassembly *ra = &st->reasm[dir];
    guint8 th = user[0];
    guint8 seq = th & TP_SEQ_MASK;

    if (th & TP_FIR) {
        if (ra->active && !ra->discard)
            raise_anomaly(s, dir, src, dst, -1, "incomplete_fragment",
                          "new fragment starts before the previous one ended");
        reasm_reset(s, ra);
        ra->active = TRUE;
        ra->src = src;
        ra->dst = dst;
    } else if (!ra->active) {
        raise_anomaly(s, dir, src, dst, -1, "transport_sequence",
                      "transport segment without a first segment");
        return;
    } else if (ra->src != src || ra->dst != dst || seq != ra->next_seq) {
        if (!ra->discard)
            raise_anomaly(s, dir, src, dst, -1, "transport_sequence",
                          "transport segment out of sequence");
        reasm_reset(s, ra);
        return;
    }
    ra->next_seq = (seq + 1) & TP_SEQ_MASK;
    if (ra->discard) {
        if (th & TP_FIN)
            reasm_reset(s, ra);
        return;
    }
    if (ra->len + (n - 1) > st->limit) {
        raise_anomaly(s, dir, src, dst, -1, "fragment_too_large",
                      "application fragment exceeds the size limit");
        ra->len = 0;
        ra->discard = !(th & TP_FIN);
        if (th & TP_FIN)
            reasm_reset(s, ra);
        return;
    }
    if (ra->len + (n - 1) > ra->cap && !reasm_grow(s, st, ra, ra->len + (n - 1))) {
        /* Dropped with its remaining segments, as an oversize fragment is. */
        raise_anomaly(s, dir, src, dst, -1, "memcap",
                      "flows.memcap_mb reached: application fragment dropped");
        reasm_free(s, ra);
        ra->len = 0;
        ra->discard = !(th & TP_FIN);
        if (th & TP_FIN)
            reasm_reset(s, ra);
        return;
    }
    if (n > 1)
        memcpy(ra->buf + ra->len, user + 1, n - 1);
    ra->len += n - 1;
    ra->segments++;
    if (!(th & TP_FIN))
        return;

    Fragment f = {.data = ra->buf,
                  .len = ra->len,
                  .src = src,
                  .dst = dst,
                  .link_control = link_control,
                  .transport_seq = seq,
                  .segments = ra->segments};
    handle_fragment(s, st, dir, &f);
    reasm_reset(s, ra);
}

/* ---- framing ----------------------------------------------------------- */

/* Is there a link header with a valid CRC at @off? NEED_MORE when the
 * bytes so far fit but do not decide. */
static OtsProbeResult
header_at(const OtsReader *r, gsize off)
{
    OtsReader c = *r;
    const guint8 *h;
    guint8 b;
    if (!ots_reader_skip(&c, off))
        return OTS_PROBE_NEED_MORE;
    if (ots_reader_peek_u8(&c, 0, &b) && b != 0x05)
        return OTS_PROBE_NO;
    if (ots_reader_peek_u8(&c, 1, &b) && b != 0x64)
        return OTS_PROBE_NO;
    if (ots_reader_peek_u8(&c, 2, &b) && b < LINK_MIN_LENGTH)
        return OTS_PROBE_NO;
    if (!ots_reader_get_data(&c, LINK_HEADER_LEN, &h))
        return OTS_PROBE_NEED_MORE;
    return crc_ok(h, 8) ? OTS_PROBE_YES : OTS_PROBE_NO;
}

static OtsParseResult
resync(Dnp3State *st, OtsDirection dir, OtsReader *r)
{
    gsize rem = ots_reader_remaining(r);
    for (gsize off = 0; off < rem; off++) {
        OtsProbeResult res = header_at(r, off);
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

/* One complete link frame of @size bytes at the cursor. */
static void
handle_frame(OtsSession *s, Dnp3State *st, OtsDirection dir, const guint8 *fr, gsize size)
{
    guint8 len = fr[2], ctl = fr[3];
    guint16 dst = (guint16)(fr[4] | (fr[5] << 8)), src = (guint16)(fr[6] | (fr[7] << 8));
    gsize user_len = (gsize)len - LINK_MIN_LENGTH;
    guint8 user[LINK_MAX_USER];
    gsize n = 0;

    for (gsize off = LINK_HEADER_LEN; off < size;) {
        gsize blk = MIN((gsize)LINK_BLOCK, user_len - n);
        if (!crc_ok(fr + off, blk)) {
            raise_anomaly(s, dir, src, dst, -1, "bad_crc", "link data block CRC error");
            /* The spec discards the frame; the fragment it belonged to is
             * incomplete now. */
            reasm_reset(s, &st->reasm[dir]);
            return;
        }
        memcpy(user + n, fr + off, blk);
        n += blk;
        off += blk + 2;
    }

    guint func = ctl & LINK_FUNC_MASK;
    gboolean carries = (ctl & LINK_PRM) &&
                       (func == LINK_CONFIRMED_USER_DATA || func == LINK_UNCONFIRMED_USER_DATA);
    if (carries && n == 0) {
        raise_anomaly(s, dir, src, dst, -1, "bad_length", "user data frame without data");
        return;
    }
    if (!carries) {
        /* Link services (reset, test, status, ack) carry no user data. */
        if (n > 0)
            raise_anomaly(s, dir, src, dst, -1, "bad_link_function",
                          "link function with user data");
        return;
    }
    handle_segment(s, st, dir, ctl, dst, src, user, n);
}

static OtsParseResult
dnp3_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    Dnp3State *st = state;
    gboolean udp = ots_session_get_l4(s) == OTS_L4_UDP;

    for (;;) {
        if (st->resync[dir] && resync(st, dir, r) != OTS_PARSE_OK)
            break;
        if (ots_reader_remaining(r) == 0)
            return OTS_PARSE_OK;

        guint8 b0 = 0, b1 = 0, len = 0;
        const guint8 *hdr;
        ots_reader_peek_u8(r, 0, &b0);
        if (ots_reader_peek_u8(r, 1, &b1) && (b0 != 0x05 || b1 != 0x64)) {
            raise_anomaly(s, dir, 0, 0, -1, "bad_start", "link frame without 0x0564 start bytes");
            st->resync[dir] = TRUE;
            reasm_reset(s, &st->reasm[dir]);
            continue;
        }
        if (b0 != 0x05) {
            st->resync[dir] = TRUE;
            continue;
        }
        OtsReader peek = *r;
        if (!ots_reader_get_data(&peek, LINK_HEADER_LEN, &hdr))
            break;
        len = hdr[2];
        guint16 dst = (guint16)(hdr[4] | (hdr[5] << 8)), src = (guint16)(hdr[6] | (hdr[7] << 8));
        if (!crc_ok(hdr, 8) || len < LINK_MIN_LENGTH) {
            if (!crc_ok(hdr, 8))
                raise_anomaly(s, dir, src, dst, -1, "bad_crc", "link header CRC error");
            else
                raise_anomaly(s, dir, src, dst, -1, "bad_length", "link length below 5");
            /* Framing is lost: look for the next valid header. */
            st->resync[dir] = TRUE;
            reasm_reset(s, &st->reasm[dir]);
            ots_reader_skip(r, 1);
            continue;
        }
        gsize size = frame_size(len);
        const guint8 *fr;
        if (!ots_reader_get_data(r, size, &fr))
            break;
        handle_frame(s, st, dir, fr, size);
    }
    if (udp && ots_reader_remaining(r) > 0) {
        /* A datagram ends every frame: the rest can never complete. */
        raise_anomaly(s, dir, 0, 0, -1, "bad_length", "truncated link frame in datagram");
        ots_reader_skip(r, ots_reader_remaining(r));
        return OTS_PARSE_OK;
    }
    return ots_reader_remaining(r) ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK;
}

static OtsProbeResult
dnp3_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    return header_at(r, 0);
}

static gpointer
dnp3_state_new(OtsSession *s)
{
    Dnp3State *st = g_new0(Dnp3State, 1);
    g_queue_init(&st->pending);
    st->limit = CLAMP(ots_session_get_max_pdu(s), FRAGMENT_MIN_LIMIT, FRAGMENT_MAX_LIMIT);
    return st;
}

static void
dnp3_state_free(gpointer state)
{
    Dnp3State *st = state;
    GList *l;
    /* flow_end() refunded everything; the core refunds what is left otherwise. */
    while ((l = g_queue_pop_head_link(&st->pending)))
        g_free(l->data);
    g_free(st->reasm[0].buf);
    g_free(st->reasm[1].buf);
    g_free(st);
}

static void
dnp3_gap(OtsSession *s, gpointer state, OtsDirection dir, guint32 len)
{
    Dnp3State *st = state;
    st->resync[dir] = TRUE;
    /* Segments after the gap cannot be appended to what came before it. */
    reasm_reset(s, &st->reasm[dir]);
}

static void
dnp3_flow_end(OtsSession *s, gpointer state)
{
    Dnp3State *st = state;
    while (st->pending.head)
        pending_unanswered(s, st, st->pending.head->data);
    reasm_free(s, &st->reasm[0]);
    reasm_free(s, &st->reasm[1]);
}

static void
dnp3_tick(OtsSession *s, gpointer state, gint64 now)
{
    Dnp3State *st = state;
    while (st->pending.head) {
        Pending *p = st->pending.head->data;
        if (now - p->ts <= PENDING_TIMEOUT_US)
            break;
        pending_unanswered(s, st, p);
    }
}

static const OtsDissectorInfo dnp3_info = {
    .abi_major = OTS_DISSECTOR_ABI_MAJOR,
    .abi_minor = OTS_DISSECTOR_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "dnp3",
    .version = "0.1.0",
    .description = "DNP3 (IEEE 1815) over TCP/UDP: link, transport, application objects",
    .tcp_ports = (const guint16[]){20000, 0},
    .udp_ports = (const guint16[]){20000, 0},
    .probe = dnp3_probe,
    .state_new = dnp3_state_new,
    .state_free = dnp3_state_free,
    .parse = dnp3_parse,
    .gap = dnp3_gap,
    .flow_end = dnp3_flow_end,
    .tick = dnp3_tick,
};

OTS_DISSECTOR_DEFINE(dnp3_info)
