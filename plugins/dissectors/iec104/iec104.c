/* SPDX-License-Identifier: Apache-2.0 */

/* IEC 60870-5-104 dissector: APCI framing (I, S and U formats), send and
 * receive sequence tracking, ASDU decoding (type id, cause of transmission,
 * common address, information objects with values and quality), pairing of
 * activations with their confirmations and of U-format act with con, asset
 * facts for controlled stations and control stations, out-of-spec APDUs as
 * anomalies. README.md documents every field it emits.
 *
 * As in the Modbus reference plugin, one walker (walk_apdu) serves two
 * passes: a check pass that raises anomalies and an emit pass that writes
 * event fields, so what we check and what we report cannot drift apart.
 * The passes are separate because a session has one open event at a time. */

#include <otsensor/dissector.h>
#include <math.h>

#define APCI_START 0x68
#define APCI_LEN 6        /* start, length, four control octets */
#define APDU_MIN_LENGTH 4 /* the control field alone (S and U formats) */
#define APDU_MAX_LENGTH 253
#define ASDU_HEADER_LEN 6 /* type, vsq, cot (2), common address (2) */
#define IOA_LEN 3
#define SEQ_MOD 32768u
#define MAX_PENDING 256
#define PENDING_TIMEOUT_US (30 * G_USEC_PER_SEC)
#define MAX_STATIONS 32 /* common addresses remembered per flow for asset facts */

enum {
    COT_PERIODIC = 1,
    COT_SPONTANEOUS = 3,
    COT_REQUEST = 5,
    COT_ACTIVATION = 6,
    COT_ACTIVATION_CON = 7,
    COT_DEACTIVATION = 8,
    COT_DEACTIVATION_CON = 9,
    COT_ACTIVATION_TERM = 10,
    COT_FILE_TRANSFER = 13,
    COT_INTERROGATED = 20,
    COT_COUNTER_GROUP_4 = 41,
    COT_UNKNOWN_TYPE = 44,
    COT_UNKNOWN_IOA = 47,
};

enum {
    TYPE_M_EI_NA_1 = 70,
    TYPE_C_IC_NA_1 = 100,
    TYPE_C_RD_NA_1 = 102,
    TYPE_F_SG_NA_1 = 125,
};

/* U-format functions: the first control octet (bits 0-1 set). */
enum {
    U_STARTDT_ACT = 0x07,
    U_STARTDT_CON = 0x0b,
    U_STOPDT_ACT = 0x13,
    U_STOPDT_CON = 0x23,
    U_TESTFR_ACT = 0x43,
    U_TESTFR_CON = 0x83,
};

/* How an information element is laid out, for the emit pass. */
typedef enum {
    EL_RAW = 0, /* reported as hex */
    EL_SIQ,
    EL_DIQ,
    EL_VTI_QDS,
    EL_BSI_QDS,
    EL_NVA_QDS,
    EL_SVA_QDS,
    EL_FLT_QDS,
    EL_BCR,
    EL_NVA,
    EL_SCO,
    EL_DCO,
    EL_RCO,
    EL_NVA_QOS,
    EL_SVA_QOS,
    EL_FLT_QOS,
    EL_BSI,
    EL_COI,
    EL_QOI,
    EL_QCC,
    EL_NONE,
    EL_TIME,
    EL_TEST,
    EL_QRP,
    EL_DELAY,
    EL_TEST_TIME,
    EL_NVA_QPM,
    EL_SVA_QPM,
    EL_FLT_QPM,
    EL_QPA,
    EL_FILE,
} ElementKind;

typedef enum {
    TIME_NONE = 0,
    TIME_CP24,
    TIME_CP56,
} TimeTag;

typedef struct {
    const char *name;
    guint8 size; /* element bytes after the IOA, time tag included */
    ElementKind kind;
    TimeTag time;
    OtsOpClass op;
} TypeInfo;

#define T(n, sz, k, t, o)                                                                          \
    {                                                                                              \
        n, sz, k, t, o                                                                             \
    }
static const TypeInfo types[128] = {
    [1] = T("M_SP_NA_1", 1, EL_SIQ, TIME_NONE, OTS_OP_MONITOR),
    [2] = T("M_SP_TA_1", 4, EL_SIQ, TIME_CP24, OTS_OP_MONITOR),
    [3] = T("M_DP_NA_1", 1, EL_DIQ, TIME_NONE, OTS_OP_MONITOR),
    [4] = T("M_DP_TA_1", 4, EL_DIQ, TIME_CP24, OTS_OP_MONITOR),
    [5] = T("M_ST_NA_1", 2, EL_VTI_QDS, TIME_NONE, OTS_OP_MONITOR),
    [6] = T("M_ST_TA_1", 5, EL_VTI_QDS, TIME_CP24, OTS_OP_MONITOR),
    [7] = T("M_BO_NA_1", 5, EL_BSI_QDS, TIME_NONE, OTS_OP_MONITOR),
    [8] = T("M_BO_TA_1", 8, EL_BSI_QDS, TIME_CP24, OTS_OP_MONITOR),
    [9] = T("M_ME_NA_1", 3, EL_NVA_QDS, TIME_NONE, OTS_OP_MONITOR),
    [10] = T("M_ME_TA_1", 6, EL_NVA_QDS, TIME_CP24, OTS_OP_MONITOR),
    [11] = T("M_ME_NB_1", 3, EL_SVA_QDS, TIME_NONE, OTS_OP_MONITOR),
    [12] = T("M_ME_TB_1", 6, EL_SVA_QDS, TIME_CP24, OTS_OP_MONITOR),
    [13] = T("M_ME_NC_1", 5, EL_FLT_QDS, TIME_NONE, OTS_OP_MONITOR),
    [14] = T("M_ME_TC_1", 8, EL_FLT_QDS, TIME_CP24, OTS_OP_MONITOR),
    [15] = T("M_IT_NA_1", 5, EL_BCR, TIME_NONE, OTS_OP_MONITOR),
    [16] = T("M_IT_TA_1", 8, EL_BCR, TIME_CP24, OTS_OP_MONITOR),
    [17] = T("M_EP_TA_1", 6, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [18] = T("M_EP_TB_1", 7, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [19] = T("M_EP_TC_1", 7, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [20] = T("M_PS_NA_1", 5, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [21] = T("M_ME_ND_1", 2, EL_NVA, TIME_NONE, OTS_OP_MONITOR),
    [30] = T("M_SP_TB_1", 8, EL_SIQ, TIME_CP56, OTS_OP_MONITOR),
    [31] = T("M_DP_TB_1", 8, EL_DIQ, TIME_CP56, OTS_OP_MONITOR),
    [32] = T("M_ST_TB_1", 9, EL_VTI_QDS, TIME_CP56, OTS_OP_MONITOR),
    [33] = T("M_BO_TB_1", 12, EL_BSI_QDS, TIME_CP56, OTS_OP_MONITOR),
    [34] = T("M_ME_TD_1", 10, EL_NVA_QDS, TIME_CP56, OTS_OP_MONITOR),
    [35] = T("M_ME_TE_1", 10, EL_SVA_QDS, TIME_CP56, OTS_OP_MONITOR),
    [36] = T("M_ME_TF_1", 12, EL_FLT_QDS, TIME_CP56, OTS_OP_MONITOR),
    [37] = T("M_IT_TB_1", 12, EL_BCR, TIME_CP56, OTS_OP_MONITOR),
    [38] = T("M_EP_TD_1", 10, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [39] = T("M_EP_TE_1", 11, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [40] = T("M_EP_TF_1", 11, EL_RAW, TIME_NONE, OTS_OP_MONITOR),
    [45] = T("C_SC_NA_1", 1, EL_SCO, TIME_NONE, OTS_OP_CONTROL),
    [46] = T("C_DC_NA_1", 1, EL_DCO, TIME_NONE, OTS_OP_CONTROL),
    [47] = T("C_RC_NA_1", 1, EL_RCO, TIME_NONE, OTS_OP_CONTROL),
    [48] = T("C_SE_NA_1", 3, EL_NVA_QOS, TIME_NONE, OTS_OP_CONTROL),
    [49] = T("C_SE_NB_1", 3, EL_SVA_QOS, TIME_NONE, OTS_OP_CONTROL),
    [50] = T("C_SE_NC_1", 5, EL_FLT_QOS, TIME_NONE, OTS_OP_CONTROL),
    [51] = T("C_BO_NA_1", 4, EL_BSI, TIME_NONE, OTS_OP_CONTROL),
    [58] = T("C_SC_TA_1", 8, EL_SCO, TIME_CP56, OTS_OP_CONTROL),
    [59] = T("C_DC_TA_1", 8, EL_DCO, TIME_CP56, OTS_OP_CONTROL),
    [60] = T("C_RC_TA_1", 8, EL_RCO, TIME_CP56, OTS_OP_CONTROL),
    [61] = T("C_SE_TA_1", 10, EL_NVA_QOS, TIME_CP56, OTS_OP_CONTROL),
    [62] = T("C_SE_TB_1", 10, EL_SVA_QOS, TIME_CP56, OTS_OP_CONTROL),
    [63] = T("C_SE_TC_1", 12, EL_FLT_QOS, TIME_CP56, OTS_OP_CONTROL),
    [64] = T("C_BO_TA_1", 11, EL_BSI, TIME_CP56, OTS_OP_CONTROL),
    [70] = T("M_EI_NA_1", 1, EL_COI, TIME_NONE, OTS_OP_MONITOR),
    [100] = T("C_IC_NA_1", 1, EL_QOI, TIME_NONE, OTS_OP_INTERROGATION),
    [101] = T("C_CI_NA_1", 1, EL_QCC, TIME_NONE, OTS_OP_INTERROGATION),
    [102] = T("C_RD_NA_1", 0, EL_NONE, TIME_NONE, OTS_OP_READ),
    [103] = T("C_CS_NA_1", 7, EL_TIME, TIME_CP56, OTS_OP_TIME_SET),
    [104] = T("C_TS_NA_1", 2, EL_TEST, TIME_NONE, OTS_OP_DIAGNOSTICS),
    [105] = T("C_RP_NA_1", 1, EL_QRP, TIME_NONE, OTS_OP_RESTART),
    /* Delay acquisition feeds the clock synchronisation that follows. */
    [106] = T("C_CD_NA_1", 2, EL_DELAY, TIME_NONE, OTS_OP_TIME_SET),
    [107] = T("C_TS_TA_1", 9, EL_TEST_TIME, TIME_CP56, OTS_OP_DIAGNOSTICS),
    [110] = T("P_ME_NA_1", 3, EL_NVA_QPM, TIME_NONE, OTS_OP_CONFIG),
    [111] = T("P_ME_NB_1", 3, EL_SVA_QPM, TIME_NONE, OTS_OP_CONFIG),
    [112] = T("P_ME_NC_1", 5, EL_FLT_QPM, TIME_NONE, OTS_OP_CONFIG),
    [113] = T("P_AC_NA_1", 1, EL_QPA, TIME_NONE, OTS_OP_CONFIG),
    [120] = T("F_FR_NA_1", 6, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER),
    [121] = T("F_SR_NA_1", 7, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER),
    [122] = T("F_SC_NA_1", 4, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER),
    [123] = T("F_LS_NA_1", 5, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER),
    [124] = T("F_AF_NA_1", 4, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER),
    [125] = T("F_SG_NA_1", 4, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER), /* + segment */
    [126] = T("F_DR_TA_1", 13, EL_FILE, TIME_CP56, OTS_OP_FILE_TRANSFER),
    [127] = T("F_SC_NB_1", 16, EL_FILE, TIME_NONE, OTS_OP_FILE_TRANSFER),
};
#undef T

static const char *const cot_names[48] = {
    [1] = "periodic",
    [2] = "background",
    [3] = "spontaneous",
    [4] = "initialized",
    [5] = "request",
    [6] = "activation",
    [7] = "activation_con",
    [8] = "deactivation",
    [9] = "deactivation_con",
    [10] = "activation_termination",
    [11] = "return_remote",
    [12] = "return_local",
    [13] = "file_transfer",
    [20] = "interrogated_station",
    [21] = "interrogated_group_1",
    [22] = "interrogated_group_2",
    [23] = "interrogated_group_3",
    [24] = "interrogated_group_4",
    [25] = "interrogated_group_5",
    [26] = "interrogated_group_6",
    [27] = "interrogated_group_7",
    [28] = "interrogated_group_8",
    [29] = "interrogated_group_9",
    [30] = "interrogated_group_10",
    [31] = "interrogated_group_11",
    [32] = "interrogated_group_12",
    [33] = "interrogated_group_13",
    [34] = "interrogated_group_14",
    [35] = "interrogated_group_15",
    [36] = "interrogated_group_16",
    [37] = "counter_interrogated_general",
    [38] = "counter_interrogated_group_1",
    [39] = "counter_interrogated_group_2",
    [40] = "counter_interrogated_group_3",
    [41] = "counter_interrogated_group_4",
    [44] = "unknown_type_id",
    [45] = "unknown_cause",
    [46] = "unknown_common_address",
    [47] = "unknown_ioa",
};

static const TypeInfo *
type_info(guint type)
{
    if (type < G_N_ELEMENTS(types) && types[type].name)
        return &types[type];
    return NULL;
}

static const char *
type_name(guint type)
{
    const TypeInfo *ti = type_info(type);
    return ti ? ti->name : "unknown";
}

static const char *
cot_name(guint cot)
{
    if (cot < G_N_ELEMENTS(cot_names) && cot_names[cot])
        return cot_names[cot];
    return "unknown";
}

static const char *
u_function_name(guint8 c)
{
    switch (c) {
    case U_STARTDT_ACT:
        return "startdt_act";
    case U_STARTDT_CON:
        return "startdt_con";
    case U_STOPDT_ACT:
        return "stopdt_act";
    case U_STOPDT_CON:
        return "stopdt_con";
    case U_TESTFR_ACT:
        return "testfr_act";
    case U_TESTFR_CON:
        return "testfr_con";
    default:
        return "unknown";
    }
}

/* Index 0..2 (STARTDT, STOPDT, TESTFR) of a valid U function, -1 otherwise. */
static gint
u_index(guint8 c)
{
    switch (c) {
    case U_STARTDT_ACT:
    case U_STARTDT_CON:
        return 0;
    case U_STOPDT_ACT:
    case U_STOPDT_CON:
        return 1;
    case U_TESTFR_ACT:
    case U_TESTFR_CON:
        return 2;
    default:
        return -1;
    }
}

static const guint8 u_act_codes[3] = {U_STARTDT_ACT, U_STOPDT_ACT, U_TESTFR_ACT};
static const char *const u_names[3] = {"startdt", "stopdt", "testfr"};
/* STOPDT silences the station's data transfer, a communication-control act;
 * STARTDT and TESTFR set up and keep alive the session. */
static const OtsOpClass u_classes[3] = {OTS_OP_SESSION, OTS_OP_COMM_CONTROL, OTS_OP_SESSION};

static gboolean
u_is_act(guint8 c)
{
    return c == U_STARTDT_ACT || c == U_STOPDT_ACT || c == U_TESTFR_ACT;
}

/* ---- per-flow state ---------------------------------------------------- */

typedef struct {
    GList link; /* in Iec104State.pending, oldest first; data points here */
    gint64 ts;
    OtsDirection dir; /* the requester's direction */
    guint8 type;
    guint8 cot;
    guint16 ca;
    guint32 ioa;
    guint8 len; /* APDU bytes, start and length octets included */
    guint8 apdu[];
} Pending;

typedef struct {
    gboolean have_ns; /* next_ns is known (an I-frame was seen since start or gap) */
    guint16 next_ns;  /* the N(S) expected on the next I-frame */
    gboolean have_nr;
    guint16 last_nr; /* the last N(R) this direction sent */
} SeqState;

typedef struct {
    GQueue pending;
    gboolean resync[2]; /* per direction: after a gap or a framing error */
    SeqState seq[2];
    gint64 u_pending[2][3]; /* act time of STARTDT/STOPDT/TESTFR per sender */
    guint8 u_apdu[2][3];    /* ... and its control octet, 0 when none is pending */
    guint16 stations[2][MAX_STATIONS];
    guint n_stations[2];
    gboolean controller_seen[2]; /* a control station asset was reported for a side */
} Iec104State;

/* ---- APDU walker ------------------------------------------------------- */

typedef struct {
    OtsSession *s; /* check pass: raise anomalies here */
    OtsEvent *e;   /* emit pass: write fields here */
    OtsDirection dir;
    guint problems;
    gint type; /* -1 until known */
    gint cot;
    gint ca;
    OtsAnomalyOnce raised; /* codes already raised for this APDU */
} Walk;

static void problem(Walk *w, const char *code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
problem(Walk *w, const char *code, const char *fmt, ...)
{
    w->problems++;
    if (!w->s || w->e)
        return;
    /* One alert per code and APDU is enough to say what is wrong. */
    if (!ots_anomaly_once(&w->raised, code))
        return;
    va_list ap;
    va_start(ap, fmt);
    OtsEvent *a = ots_session_begin_anomalyv(w->s, w->dir, code, fmt, ap);
    va_end(ap);
    if (!a)
        return;
    ots_event_begin_object(a, "iec104");
    if (w->type >= 0)
        ots_event_add_uint(a, "type_id", (guint)w->type);
    if (w->cot >= 0)
        ots_event_add_uint(a, "cot", (guint)w->cot);
    if (w->ca >= 0)
        ots_event_add_uint(a, "common_address", (guint)w->ca);
    ots_event_end_object(a);
    ots_event_commit(a);
}

/* Inlined into every caller: the SDK writes a literal key inline only where
 * the compiler sees the literal (a wrapper left out of line, as GCC chose,
 * sent each field through the general path, ~100 instructions instead of ~30). */
G_ALWAYS_INLINE static inline void
put_uint(Walk *w, const char *k, guint64 v)
{
    if (w->e)
        ots_event_add_uint(w->e, k, v);
}

G_ALWAYS_INLINE static inline void
put_int(Walk *w, const char *k, gint64 v)
{
    if (w->e)
        ots_event_add_int(w->e, k, v);
}

G_ALWAYS_INLINE static inline void
put_bool(Walk *w, const char *k, gboolean v)
{
    if (w->e)
        ots_event_add_bool(w->e, k, v);
}

G_ALWAYS_INLINE static inline void
put_double(Walk *w, const char *k, double v)
{
    if (w->e)
        ots_event_add_double(w->e, k, v);
}

G_ALWAYS_INLINE static inline void
put_string(Walk *w, const char *k, const char *v)
{
    if (w->e)
        ots_event_add_string(w->e, k, v);
}

static void
put_hex(Walk *w, const char *k, const guint8 *v, gsize len)
{
    if (w->e)
        ots_event_add_hex(w->e, k, v, len);
}

/* Quality descriptor bits (QDS, and the flag bits of SIQ/DIQ): the names
 * of the set flags, absent when the value is good. */
static void
put_quality(Walk *w, guint8 q, gboolean with_ov)
{
    if (!w->e || (q & (with_ov ? 0xf1 : 0xf0)) == 0)
        return;
    ots_event_begin_array(w->e, "quality");
    if (with_ov && (q & 0x01))
        ots_event_add_string(w->e, NULL, "overflow");
    if (q & 0x10)
        ots_event_add_string(w->e, NULL, "blocked");
    if (q & 0x20)
        ots_event_add_string(w->e, NULL, "substituted");
    if (q & 0x40)
        ots_event_add_string(w->e, NULL, "not_topical");
    if (q & 0x80)
        ots_event_add_string(w->e, NULL, "invalid");
    ots_event_end_array(w->e);
}

static guint32
le24(const guint8 *p)
{
    return (guint32)p[0] | ((guint32)p[1] << 8) | ((guint32)p[2] << 16);
}

static guint16
le16(const guint8 *p)
{
    return (guint16)(p[0] | (p[1] << 8));
}

static float
le_float(const guint8 *p)
{
    guint32 bits =
        (guint32)p[0] | ((guint32)p[1] << 8) | ((guint32)p[2] << 16) | ((guint32)p[3] << 24);
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* A float goes out as JSON only when finite (JSON has no NaN/Inf). */
static void
put_float(Walk *w, const char *k, float f)
{
    if (isfinite(f))
        put_double(w, k, f);
    else if (w->e)
        ots_event_add_null(w->e, k);
}

/* CP56Time2a (7 octets): checked, and written as "time" (local time of the
 * station, no zone) with its invalid and summer-time bits. */
static void
walk_cp56(Walk *w, const guint8 *p)
{
    guint ms = le16(p), min = p[2] & 0x3f, hour = p[3] & 0x1f, day = p[4] & 0x1f,
          month = p[5] & 0x0f, year = p[6] & 0x7f;
    if (ms > 59999 || min > 59 || hour > 23 || day == 0 || month == 0 || month > 12)
        problem(w, "bad_time", "CP56Time2a %02u-%02u %02u:%02u %u ms out of range", month, day,
                hour, min, ms);
    if (w->e) {
        char buf[40];
        g_snprintf(buf, sizeof(buf), "%04u-%02u-%02uT%02u:%02u:%02u.%03u", 2000 + year, month, day,
                   hour, min, ms / 1000, ms % 1000);
        ots_event_add_string(w->e, "time", buf);
        ots_event_add_bool(w->e, "time_invalid", (p[2] & 0x80) != 0);
        ots_event_add_bool(w->e, "summer_time", (p[3] & 0x80) != 0);
    }
}

/* CP24Time2a (3 octets): milliseconds and minutes of the hour. */
static void
walk_cp24(Walk *w, const guint8 *p)
{
    guint ms = le16(p), min = p[2] & 0x3f;
    if (ms > 59999 || min > 59)
        problem(w, "bad_time", "CP24Time2a %u min %u ms out of range", min, ms);
    put_uint(w, "time_minute", min);
    put_uint(w, "time_ms", ms);
    put_bool(w, "time_invalid", (p[2] & 0x80) != 0);
}

/* Command qualifier (SCO/DCO/RCO low bits are the state): QU and S/E. */
static void
put_command_qualifier(Walk *w, guint8 v)
{
    put_bool(w, "select", (v & 0x80) != 0);
    put_uint(w, "qualifier", (v >> 2) & 0x1f);
}

/* One information element of @ti (@n bytes at @p, time tag included). */
static void
walk_element(Walk *w, const TypeInfo *ti, const guint8 *p, gsize n)
{
    gsize tsz = ti->time == TIME_CP56 ? 7 : ti->time == TIME_CP24 ? 3 : 0;
    gsize vsz = n - tsz; /* n >= tsz: sizes in the table include the tag */

    switch (ti->kind) {
    case EL_SIQ:
        put_bool(w, "value", p[0] & 0x01);
        put_quality(w, p[0], FALSE);
        break;
    case EL_DIQ:
        put_uint(w, "value", p[0] & 0x03);
        put_quality(w, p[0], FALSE);
        break;
    case EL_VTI_QDS: {
        gint v = p[0] & 0x7f;
        put_int(w, "value", v >= 64 ? v - 128 : v);
        put_bool(w, "transient", (p[0] & 0x80) != 0);
        put_quality(w, p[1], TRUE);
        break;
    }
    case EL_BSI_QDS:
        put_uint(w, "value", le16(p) | ((guint32)le16(p + 2) << 16));
        put_quality(w, p[4], TRUE);
        break;
    case EL_NVA_QDS:
        put_double(w, "value", (gint16)le16(p) / 32768.0);
        put_quality(w, p[2], TRUE);
        break;
    case EL_SVA_QDS:
        put_int(w, "value", (gint16)le16(p));
        put_quality(w, p[2], TRUE);
        break;
    case EL_FLT_QDS:
        put_float(w, "value", le_float(p));
        put_quality(w, p[4], TRUE);
        break;
    case EL_BCR:
        put_int(w, "value", (gint32)(le16(p) | ((guint32)le16(p + 2) << 16)));
        put_uint(w, "sequence", p[4] & 0x1f);
        put_bool(w, "carry", (p[4] & 0x20) != 0);
        put_bool(w, "adjusted", (p[4] & 0x40) != 0);
        put_bool(w, "invalid", (p[4] & 0x80) != 0);
        break;
    case EL_NVA:
        put_double(w, "value", (gint16)le16(p) / 32768.0);
        break;
    case EL_SCO:
        put_bool(w, "value", p[0] & 0x01);
        put_command_qualifier(w, p[0]);
        if (p[0] & 0x02)
            problem(w, "bad_value", "SCO reserved bit set (0x%02x)", p[0]);
        break;
    case EL_DCO:
    case EL_RCO:
        put_uint(w, "value", p[0] & 0x03);
        put_command_qualifier(w, p[0]);
        /* 0 and 3 are "not permitted" for both double and regulating commands. */
        if ((p[0] & 0x03) == 0 || (p[0] & 0x03) == 3)
            problem(w, "bad_value", "%s state %u not permitted", ti->name, p[0] & 0x03);
        break;
    case EL_NVA_QOS:
        put_double(w, "value", (gint16)le16(p) / 32768.0);
        put_bool(w, "select", (p[2] & 0x80) != 0);
        put_uint(w, "qualifier", p[2] & 0x7f);
        break;
    case EL_SVA_QOS:
        put_int(w, "value", (gint16)le16(p));
        put_bool(w, "select", (p[2] & 0x80) != 0);
        put_uint(w, "qualifier", p[2] & 0x7f);
        break;
    case EL_FLT_QOS:
        put_float(w, "value", le_float(p));
        put_bool(w, "select", (p[4] & 0x80) != 0);
        put_uint(w, "qualifier", p[4] & 0x7f);
        break;
    case EL_BSI:
        put_uint(w, "value", le16(p) | ((guint32)le16(p + 2) << 16));
        break;
    case EL_COI:
        put_uint(w, "cause", p[0] & 0x7f);
        put_bool(w, "after_parameter_change", (p[0] & 0x80) != 0);
        break;
    case EL_QOI:
        put_uint(w, "qualifier", p[0]);
        if (p[0] != 0 && (p[0] < 20 || p[0] > 36))
            problem(w, "bad_value", "interrogation qualifier %u (expected 20..36)", p[0]);
        break;
    case EL_QCC:
        put_uint(w, "request", p[0] & 0x3f);
        put_uint(w, "freeze", p[0] >> 6);
        if ((p[0] & 0x3f) > 5)
            problem(w, "bad_value", "counter interrogation request %u (expected 0..5)",
                    p[0] & 0x3f);
        break;
    case EL_NONE:
    case EL_TIME:
        break;
    case EL_TEST:
        put_uint(w, "test_pattern", le16(p));
        break;
    case EL_QRP:
        put_uint(w, "qualifier", p[0]);
        break;
    case EL_DELAY:
        put_uint(w, "delay_ms", le16(p));
        break;
    case EL_TEST_TIME:
        put_uint(w, "test_sequence", le16(p));
        break;
    case EL_NVA_QPM:
        put_double(w, "value", (gint16)le16(p) / 32768.0);
        put_uint(w, "qpm", p[2]);
        break;
    case EL_SVA_QPM:
        put_int(w, "value", (gint16)le16(p));
        put_uint(w, "qpm", p[2]);
        break;
    case EL_FLT_QPM:
        put_float(w, "value", le_float(p));
        put_uint(w, "qpm", p[4]);
        break;
    case EL_QPA:
        put_uint(w, "qpa", p[0]);
        break;
    case EL_FILE:
        /* Every file type starts with the name of file (NOF). */
        put_uint(w, "file_name", le16(p));
        if (vsz >= 3 && ti != &types[120] && ti != &types[126] && ti != &types[127])
            put_uint(w, "section", p[2]);
        if (ti == &types[120] || ti == &types[126])
            put_uint(w, "file_length", le24(p + 2));
        else if (ti == &types[121])
            put_uint(w, "section_length", le24(p + 3));
        else if (ti == &types[125])
            put_uint(w, "segment_length", p[3]);
        else if (ti == &types[123])
            put_uint(w, "checksum", p[4]);
        if (ti == &types[127])
            put_hex(w, "time_range", p + 2, 14); /* start and stop CP56Time2a */
        break;
    case EL_RAW:
        put_hex(w, "data", p, vsz);
        break;
    }
    if (ti->time == TIME_CP56)
        walk_cp56(w, p + vsz);
    else if (ti->time == TIME_CP24)
        walk_cp24(w, p + vsz);
}

/* The information objects of an ASDU of known type @ti; @r starts at the
 * first IOA. */
static void
walk_objects(Walk *w, OtsReader *r, const TypeInfo *ti, guint type, gboolean sq, guint n)
{
    gsize rest = ots_reader_remaining(r);
    gsize need;
    gsize el = ti->size;

    if (type == TYPE_F_SG_NA_1) {
        /* A segment: NOF, NOS, LOS, then LOS octets. */
        guint8 los = 0;
        ots_reader_peek_u8(r, IOA_LEN + 3, &los);
        el = 4 + (gsize)los;
    }
    need = sq ? IOA_LEN + (gsize)n * el : (gsize)n * (IOA_LEN + el);
    if (rest != need)
        problem(w, "bad_asdu_length",
                "%s: %u objects need %" G_GSIZE_FORMAT " octets, %" G_GSIZE_FORMAT " present",
                ti->name, n, need, rest);
    if (w->e)
        ots_event_begin_array(w->e, "objects");
    guint32 ioa = 0;
    for (guint i = 0; i < n; i++) {
        const guint8 *p;
        if (!sq || i == 0) {
            if (!ots_reader_get_data(r, IOA_LEN, &p))
                break;
            ioa = le24(p);
        } else {
            ioa = (ioa + 1) & 0xffffff;
        }
        if (!ots_reader_get_data(r, el, &p))
            break;
        if (w->e) {
            ots_event_begin_object(w->e, NULL);
            ots_event_add_uint(w->e, "ioa", ioa);
        }
        walk_element(w, ti, p, el);
        if (w->e)
            ots_event_end_object(w->e);
    }
    if (w->e)
        ots_event_end_array(w->e);
    ots_reader_skip(r, ots_reader_remaining(r));
}

/* Parsed APCI: the format and its sequence numbers. */
typedef struct {
    char format; /* 'i', 's' or 'u' */
    guint8 c1;
    guint16 ns, nr;
} Apci;

static void
apci_decode(const guint8 *ctl, Apci *a)
{
    a->c1 = ctl[0];
    a->ns = (guint16)(((ctl[0] >> 1) | (ctl[1] << 7)) & 0x7fff);
    a->nr = (guint16)(((ctl[2] >> 1) | (ctl[3] << 7)) & 0x7fff);
    if ((ctl[0] & 0x01) == 0)
        a->format = 'i';
    else if ((ctl[0] & 0x03) == 0x01)
        a->format = 's';
    else
        a->format = 'u';
}

/* Summary of an ASDU header, for pairing and classification. */
typedef struct {
    gboolean ok; /* the 6-octet header is there */
    guint8 type, n, cot, oa;
    gboolean sq, negative, test;
    guint16 ca;
    gboolean have_ioa;
    guint32 ioa; /* first object's */
} AsduHead;

static void
asdu_head(const guint8 *apdu, gsize len, AsduHead *h)
{
    memset(h, 0, sizeof(*h));
    if (len < APCI_LEN + ASDU_HEADER_LEN)
        return;
    const guint8 *a = apdu + APCI_LEN;
    h->ok = TRUE;
    h->type = a[0];
    h->sq = (a[1] & 0x80) != 0;
    h->n = a[1] & 0x7f;
    h->cot = a[2] & 0x3f;
    h->negative = (a[2] & 0x40) != 0;
    h->test = (a[2] & 0x80) != 0;
    h->oa = a[3];
    h->ca = le16(a + 4);
    if (len >= APCI_LEN + ASDU_HEADER_LEN + IOA_LEN) {
        h->have_ioa = TRUE;
        h->ioa = le24(a + ASDU_HEADER_LEN);
    }
}

/* A whole APDU (@len bytes at @apdu, start octet included; len >= 6). */
static void
walk_apdu(Walk *w, const guint8 *apdu, gsize len)
{
    Apci a;
    apci_decode(apdu + 2, &a);
    char fmt[2] = {a.format, 0};
    put_string(w, "apci_type", fmt);

    if (a.format == 'u') {
        put_string(w, "u_function", u_function_name(a.c1));
        if (u_index(a.c1) < 0)
            problem(w, "bad_u_function", "U-format control octet 0x%02x is not one function", a.c1);
        if (apdu[3] || apdu[4] || apdu[5])
            problem(w, "bad_control_field", "U-format control octets 2..4 not zero");
        if (len != APCI_LEN)
            problem(w, "bad_length", "U-format APDU length %u (expected 4)", apdu[1]);
        return;
    }
    if (a.format == 's') {
        put_uint(w, "recv_seq", a.nr);
        if (apdu[2] != 0x01 || apdu[3] != 0 || (apdu[4] & 0x01))
            problem(w, "bad_control_field", "S-format reserved bits set");
        if (len != APCI_LEN)
            problem(w, "bad_length", "S-format APDU length %u (expected 4)", apdu[1]);
        return;
    }
    put_uint(w, "send_seq", a.ns);
    put_uint(w, "recv_seq", a.nr);
    if (apdu[4] & 0x01)
        problem(w, "bad_control_field", "I-format receive sequence octet bit 0 set");

    AsduHead h;
    asdu_head(apdu, len, &h);
    if (!h.ok) {
        problem(w, "asdu_too_short", "I-format APDU length %u leaves no ASDU header", apdu[1]);
        put_hex(w, "data", apdu + APCI_LEN, len - APCI_LEN);
        return;
    }
    w->type = h.type;
    w->cot = h.cot;
    w->ca = h.ca;
    const TypeInfo *ti = type_info(h.type);
    put_uint(w, "type_id", h.type);
    put_string(w, "type_name", type_name(h.type));
    put_bool(w, "sq", h.sq);
    put_uint(w, "num_objects", h.n);
    put_uint(w, "cot", h.cot);
    put_string(w, "cot_name", cot_name(h.cot));
    put_bool(w, "negative", h.negative);
    put_bool(w, "test", h.test);
    put_uint(w, "originator_address", h.oa);
    put_uint(w, "common_address", h.ca);

    /* Causes 44..47 (unknown type, cause, address, IOA) are defined
     * negative answers, not anomalies; only undefined causes are. */
    if (h.cot >= G_N_ELEMENTS(cot_names) || cot_names[h.cot] == NULL)
        problem(w, "bad_cot", "%s with undefined cause of transmission %u", type_name(h.type),
                h.cot);
    if (h.n == 0)
        problem(w, "no_objects", "%s with zero information objects", type_name(h.type));

    OtsReader r =
        OTS_READER_INIT(apdu + APCI_LEN + ASDU_HEADER_LEN, len - APCI_LEN - ASDU_HEADER_LEN);
    if (!ti) {
        problem(w, "unknown_type_id", "ASDU type id %u is not defined", h.type);
        gsize n = ots_reader_remaining(&r);
        const guint8 *p = NULL;
        ots_reader_get_data(&r, n, &p);
        put_hex(w, "data", p, n);
        return;
    }
    walk_objects(w, &r, ti, h.type, h.sq, h.n);
}

/* ---- events ------------------------------------------------------------ */

/* Classifies APDU @apdu for a transaction event. */
static void
classify(const guint8 *apdu, gsize len, guint32 *function, const char **name, OtsOpClass *op)
{
    Apci a;
    apci_decode(apdu + 2, &a);
    *op = OTS_OP_OTHER;
    if (a.format == 's') {
        *function = apdu[2];
        *name = "s_frame";
        *op = OTS_OP_SESSION;
        return;
    }
    if (a.format == 'u') {
        gint i = u_index(a.c1);
        *function = i >= 0 ? u_act_codes[i] : a.c1;
        *name = i >= 0 ? u_names[i] : "unknown";
        *op = i >= 0 ? u_classes[i] : OTS_OP_OTHER;
        return;
    }
    AsduHead h;
    asdu_head(apdu, len, &h);
    if (!h.ok) {
        *function = 0;
        *name = "unknown";
        return;
    }
    const TypeInfo *ti = type_info(h.type);
    *function = h.type;
    *name = type_name(h.type);
    *op = ti ? ti->op : OTS_OP_OTHER;
    /* Process data sent because it was asked for is a read, not a report. */
    if (*op == OTS_OP_MONITOR && h.type != TYPE_M_EI_NA_1 &&
        (h.cot == COT_REQUEST || (h.cot >= COT_INTERROGATED && h.cot <= COT_COUNTER_GROUP_4)))
        *op = OTS_OP_READ;
}

static void
emit_pdu_object(OtsEvent *e, const char *key, const guint8 *apdu, gsize len)
{
    Walk w = {.e = e, .type = -1, .cot = -1, .ca = -1};
    ots_event_begin_object(e, key);
    walk_apdu(&w, apdu, len);
    ots_event_end_object(e);
}

/* One transaction event: @req (nullable) the request APDU sent in @req_dir
 * at @req_ts, @resp (nullable) the response APDU, sent now. */
static void
emit_transaction(OtsSession *s, OtsDirection req_dir, const guint8 *req, gsize req_len,
                 gint64 req_ts, const guint8 *resp, gsize resp_len, OtsTxStatus status)
{
    OtsTransactionInfo info = {
        .request_dir = req_dir,
        .status = status,
        .request_ts = req ? req_ts : 0,
        .response_ts = resp ? ots_session_get_time(s) : 0,
    };
    if (req)
        classify(req, req_len, &info.function, &info.function_name, &info.op_class);
    else
        classify(resp, resp_len, &info.function, &info.function_name, &info.op_class);

    OtsEvent *e = ots_session_begin_transaction(s, &info);
    if (!e)
        return;
    ots_event_begin_object(e, "iec104");
    if (req) {
        /* The request (or the one-way APDU) at the top of the object, as
         * in the other dissectors; the response in its own object. */
        Walk w = {.e = e, .type = -1, .cot = -1, .ca = -1};
        walk_apdu(&w, req, req_len);
    }
    if (resp)
        emit_pdu_object(e, "response", resp, resp_len);
    ots_event_end_object(e);
    ots_event_commit(e);
}

/* A one-way APDU (monitor data, S frames, terminations, file transfer). */
static void
emit_one_way(OtsSession *s, OtsDirection dir, const guint8 *apdu, gsize len, OtsTxStatus status)
{
    emit_transaction(s, dir, apdu, len, ots_session_get_time(s), NULL, 0, status);
}

static gboolean
station_known(Iec104State *st, OtsDirection dir, guint16 ca)
{
    for (guint i = 0; i < st->n_stations[dir]; i++)
        if (st->stations[dir][i] == ca)
            return TRUE;
    if (st->n_stations[dir] < MAX_STATIONS)
        st->stations[dir][st->n_stations[dir]++] = ca;
    return FALSE;
}

/* Asset facts: the sender of monitor-direction data is a controlled
 * station (one fact per common address; end of initialisation is always
 * reported); the sender of commands is a control station. */
static void
emit_assets(OtsSession *s, Iec104State *st, OtsDirection dir, const AsduHead *h, const guint8 *apdu,
            gsize len)
{
    const TypeInfo *ti = type_info(h->type);
    if (!h->ok || !ti)
        return;
    gboolean monitor = ti->op == OTS_OP_MONITOR;
    gboolean command =
        !monitor && h->type < 120 &&
        (h->cot == COT_ACTIVATION || h->cot == COT_DEACTIVATION || h->cot == COT_REQUEST);

    if (monitor && (h->type == TYPE_M_EI_NA_1 || !station_known(st, dir, h->ca))) {
        OtsEvent *e = ots_session_begin_asset(s, dir, OTS_ROLE_CONTROLLER);
        if (!e)
            return;
        ots_event_begin_object(e, "iec104");
        ots_event_add_uint(e, "common_address", h->ca);
        if (h->type == TYPE_M_EI_NA_1 && len > APCI_LEN + ASDU_HEADER_LEN + IOA_LEN) {
            guint8 coi = apdu[APCI_LEN + ASDU_HEADER_LEN + IOA_LEN];
            ots_event_add_uint(e, "end_of_initialization_cause", coi & 0x7f);
        }
        ots_event_end_object(e);
        ots_event_commit(e);
    } else if (command && !st->controller_seen[dir]) {
        st->controller_seen[dir] = TRUE;
        OtsEvent *e = ots_session_begin_asset(s, dir, OTS_ROLE_CLIENT);
        if (!e)
            return;
        ots_event_begin_object(e, "iec104");
        ots_event_add_uint(e, "controlled_common_address", h->ca);
        ots_event_add_uint(e, "originator_address", h->oa);
        ots_event_end_object(e);
        ots_event_commit(e);
    }
}

/* ---- pairing ----------------------------------------------------------- */

/* What a kept activation is charged to flows.memcap_mb: its whole allocation. */
static gsize
pending_cost(const Pending *p)
{
    return sizeof(Pending) + p->len;
}

/* Frees an activation that was kept (and so charged); @p is unlinked. */
static void
pending_free(OtsSession *s, Pending *p)
{
    ots_session_refund(s, pending_cost(p));
    g_free(p);
}

static void
pending_unanswered(OtsSession *s, Iec104State *st, Pending *p)
{
    g_queue_unlink(&st->pending, &p->link);
    emit_transaction(s, p->dir, p->apdu, p->len, p->ts, NULL, 0, OTS_TX_UNANSWERED);
    pending_free(s, p);
}

static void
u_unanswered(OtsSession *s, Iec104State *st, OtsDirection dir, guint i)
{
    guint8 apdu[APCI_LEN] = {APCI_START, 4, st->u_apdu[dir][i], 0, 0, 0};
    st->u_apdu[dir][i] = 0;
    emit_transaction(s, dir, apdu, sizeof(apdu), st->u_pending[dir][i], NULL, 0, OTS_TX_UNANSWERED);
}

/* Is @h (sent in @dir) an answer to @p? */
static gboolean
answers(const Pending *p, OtsDirection dir, const AsduHead *h)
{
    if (p->dir == dir || p->ca != h->ca)
        return FALSE;
    /* A request with no object carries no IOA to compare. */
    guint32 ioa = h->have_ioa ? h->ioa : 0;
    if (p->ioa != ioa)
        return FALSE;
    if (h->cot >= COT_UNKNOWN_TYPE && h->cot <= COT_UNKNOWN_IOA)
        return p->type == h->type;
    if (h->cot == COT_ACTIVATION_CON)
        return p->type == h->type && p->cot == COT_ACTIVATION;
    if (h->cot == COT_DEACTIVATION_CON)
        return p->type == h->type && p->cot == COT_DEACTIVATION;
    /* A read is answered by the object itself, with cause "request". */
    if (h->cot == COT_REQUEST)
        return p->type == TYPE_C_RD_NA_1 && h->type != TYPE_C_RD_NA_1;
    return FALSE;
}

static gboolean
is_request(const AsduHead *h)
{
    if (h->type < 45 || h->type == TYPE_M_EI_NA_1 || h->type >= 120)
        return FALSE;
    return h->cot == COT_ACTIVATION || h->cot == COT_DEACTIVATION ||
           (h->cot == COT_REQUEST && h->type == TYPE_C_RD_NA_1);
}

static gboolean
is_response(const AsduHead *h)
{
    return h->cot == COT_ACTIVATION_CON || h->cot == COT_DEACTIVATION_CON ||
           (h->cot >= COT_UNKNOWN_TYPE && h->cot <= COT_UNKNOWN_IOA);
}

static void
handle_i_frame(OtsSession *s, Iec104State *st, OtsDirection dir, const guint8 *apdu, gsize len)
{
    AsduHead h;
    asdu_head(apdu, len, &h);

    if (h.ok && is_request(&h)) {
        /* A repeated activation is kept beside the first: stations confirm
         * each one, and confirmations pair oldest first. */
        if (st->pending.length >= MAX_PENDING)
            pending_unanswered(s, st, st->pending.head->data);
        Pending *p = g_malloc(sizeof(Pending) + len);
        p->link.data = p;
        p->link.prev = p->link.next = NULL;
        p->ts = ots_session_get_time(s);
        p->dir = dir;
        p->type = h.type;
        p->cot = h.cot;
        p->ca = h.ca;
        p->ioa = h.have_ioa ? h.ioa : 0;
        p->len = (guint8)len;
        memcpy(p->apdu, apdu, len);
        /* Past the thread's memory budget: the oldest activation goes as
         * when the table is full, and if that is not enough this one is
         * reported now, unanswered, rather than lost. */
        gboolean kept = ots_session_charge(s, pending_cost(p));
        if (!kept && st->pending.head) {
            pending_unanswered(s, st, st->pending.head->data);
            kept = ots_session_charge(s, pending_cost(p));
        }
        if (kept) {
            g_queue_push_tail_link(&st->pending, &p->link);
        } else {
            emit_transaction(s, dir, p->apdu, p->len, p->ts, NULL, 0, OTS_TX_UNANSWERED);
            g_free(p);
        }
        emit_assets(s, st, dir, &h, apdu, len);
        return;
    }

    Pending *p = NULL;
    if (h.ok && (is_response(&h) || h.cot == COT_REQUEST)) {
        for (GList *l = st->pending.head; l; l = l->next) {
            if (answers(l->data, dir, &h)) {
                p = l->data;
                break;
            }
        }
    }
    if (p) {
        g_queue_unlink(&st->pending, &p->link);
        gboolean negative = h.negative || h.cot >= COT_UNKNOWN_TYPE;
        emit_transaction(s, p->dir, p->apdu, p->len, p->ts, apdu, len,
                         negative ? OTS_TX_EXCEPTION : OTS_TX_OK);
        pending_free(s, p);
        return;
    }
    if (h.ok && is_response(&h)) {
        Walk w = {.s = s, .dir = dir, .type = h.type, .cot = h.cot, .ca = h.ca};
        problem(&w, "response_without_request", "%s %s to an activation not seen",
                type_name(h.type), cot_name(h.cot));
        emit_transaction(s, OTS_DIR_REVERSE(dir), NULL, 0, 0, apdu, len, OTS_TX_NO_REQUEST);
        return;
    }
    /* Process data, terminations, file transfer: one-way by design. */
    emit_one_way(s, dir, apdu, len, OTS_TX_UNSOLICITED);
    emit_assets(s, st, dir, &h, apdu, len);
}

static void
handle_u_frame(OtsSession *s, Iec104State *st, OtsDirection dir, const guint8 *apdu, gsize len)
{
    guint8 c = apdu[2];
    gint i = u_index(c);
    if (i < 0) {
        emit_one_way(s, dir, apdu, len, OTS_TX_NO_RESPONSE);
        return;
    }
    if (u_is_act(c)) {
        if (st->u_apdu[dir][i])
            u_unanswered(s, st, dir, (guint)i);
        st->u_pending[dir][i] = ots_session_get_time(s);
        st->u_apdu[dir][i] = c;
        return;
    }
    OtsDirection req_dir = OTS_DIR_REVERSE(dir);
    if (st->u_apdu[req_dir][i]) {
        guint8 req[APCI_LEN] = {APCI_START, 4, st->u_apdu[req_dir][i], 0, 0, 0};
        st->u_apdu[req_dir][i] = 0;
        emit_transaction(s, req_dir, req, sizeof(req), st->u_pending[req_dir][i], apdu, len,
                         OTS_TX_OK);
        return;
    }
    Walk w = {.s = s, .dir = dir, .type = -1, .cot = -1, .ca = -1};
    problem(&w, "response_without_request", "%s without %s act", u_function_name(c), u_names[i]);
    emit_transaction(s, req_dir, NULL, 0, 0, apdu, len, OTS_TX_NO_REQUEST);
}

/* Send and receive sequence numbers: N(S) must count up by one per
 * I-frame in each direction; N(R) acknowledges I-frames of the other
 * direction and can neither go back nor run ahead of what was sent. */
static void
check_sequence(OtsSession *s, Iec104State *st, OtsDirection dir, const Apci *a, Walk *w)
{
    SeqState *me = &st->seq[dir], *peer = &st->seq[OTS_DIR_REVERSE(dir)];

    if (a->format == 'i') {
        if (me->have_ns && a->ns != me->next_ns) {
            guint diff = (a->ns - me->next_ns + SEQ_MOD) % SEQ_MOD;
            if (diff < SEQ_MOD / 2)
                problem(w, "sequence_gap", "N(S) %u, expected %u: %u I-frames missing", a->ns,
                        me->next_ns, diff);
            else
                problem(w, "sequence_out_of_order", "N(S) %u, expected %u", a->ns, me->next_ns);
        }
        me->have_ns = TRUE;
        me->next_ns = (guint16)((a->ns + 1) % SEQ_MOD);
    }
    if (a->format == 'i' || a->format == 's') {
        if (peer->have_ns) {
            guint ahead = (a->nr - peer->next_ns + SEQ_MOD) % SEQ_MOD;
            if (ahead != 0 && ahead < SEQ_MOD / 2)
                problem(w, "bad_ack", "N(R) %u acknowledges I-frames not sent (next is %u)", a->nr,
                        peer->next_ns);
        }
        if (me->have_nr) {
            guint back = (me->last_nr - a->nr + SEQ_MOD) % SEQ_MOD;
            if (back != 0 && back < SEQ_MOD / 2)
                problem(w, "bad_ack", "N(R) %u goes back from %u", a->nr, me->last_nr);
        }
        me->have_nr = TRUE;
        me->last_nr = a->nr;
    }
    (void)s;
}

static void
handle_apdu(OtsSession *s, Iec104State *st, OtsDirection dir, const guint8 *apdu, gsize len)
{
    Apci a;
    apci_decode(apdu + 2, &a);

    /* Check pass: anomalies before any event is open. */
    Walk w = {.s = s, .dir = dir, .type = -1, .cot = -1, .ca = -1};
    check_sequence(s, st, dir, &a, &w);
    walk_apdu(&w, apdu, len);

    if (a.format == 'i')
        handle_i_frame(s, st, dir, apdu, len);
    else if (a.format == 'u')
        handle_u_frame(s, st, dir, apdu, len);
    else
        emit_one_way(s, dir, apdu, len, OTS_TX_NO_RESPONSE);
}

/* ---- framing ----------------------------------------------------------- */

/* Is there a plausible APDU at @off? NEED_MORE when the bytes so far fit
 * but do not decide. Used after a gap and by the probe. */
static OtsProbeResult
plausible_at(const OtsReader *r, gsize off)
{
    OtsReader c = *r;
    guint8 start, len, ctl[4];

    if (!ots_reader_skip(&c, off) || !ots_reader_peek_u8(&c, 0, &start))
        return OTS_PROBE_NEED_MORE;
    if (start != APCI_START)
        return OTS_PROBE_NO;
    if (!ots_reader_peek_u8(&c, 1, &len))
        return OTS_PROBE_NEED_MORE;
    if (len < APDU_MIN_LENGTH || len > APDU_MAX_LENGTH)
        return OTS_PROBE_NO;
    for (guint i = 0; i < 4; i++)
        if (!ots_reader_peek_u8(&c, 2 + i, &ctl[i]))
            return OTS_PROBE_NEED_MORE;
    if (ctl[2] & 0x01)
        return OTS_PROBE_NO;
    if ((ctl[0] & 0x03) == 0x03) {
        if (len != 4 || u_index(ctl[0]) < 0 || ctl[1] || ctl[2] || ctl[3])
            return OTS_PROBE_NO;
    } else if (ctl[0] & 0x01) {
        if (len != 4 || ctl[0] != 0x01 || ctl[1])
            return OTS_PROBE_NO;
    } else {
        guint8 type, cot;
        if (len < 4 + ASDU_HEADER_LEN)
            return OTS_PROBE_NO;
        if (!ots_reader_peek_u8(&c, APCI_LEN, &type) || !ots_reader_peek_u8(&c, APCI_LEN + 2, &cot))
            return OTS_PROBE_NEED_MORE;
        if (!type_info(type) || (cot & 0x3f) == 0 || cot_name(cot & 0x3f)[0] == 'u')
            return OTS_PROBE_NO;
    }
    /* The next APDU, when already there, must start right after this one. */
    guint8 next;
    if (ots_reader_peek_u8(&c, 2u + len, &next) && next != APCI_START)
        return OTS_PROBE_NO;
    return OTS_PROBE_YES;
}

/* Skips to the next plausible APDU. OK with the reader on it, or NEED_MORE
 * with the undecided tail kept. */
static OtsParseResult
resync(Iec104State *st, OtsDirection dir, OtsReader *r)
{
    gsize rem = ots_reader_remaining(r);
    for (gsize off = 0; off < rem; off++) {
        OtsProbeResult res = plausible_at(r, off);
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
iec104_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    Iec104State *st = state;

    for (;;) {
        if (st->resync[dir] && resync(st, dir, r) != OTS_PARSE_OK)
            return ots_reader_remaining(r) ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK;
        if (ots_reader_remaining(r) == 0)
            return OTS_PARSE_OK;

        guint8 start, len;
        if (!ots_reader_peek_u8(r, 0, &start))
            return OTS_PARSE_NEED_MORE;
        if (start != APCI_START) {
            Walk w = {.s = s, .dir = dir, .type = -1, .cot = -1, .ca = -1};
            problem(&w, "bad_start_byte", "APDU start octet 0x%02x (expected 0x68)", start);
            st->resync[dir] = TRUE;
            st->seq[dir].have_ns = FALSE;
            ots_reader_skip(r, 1);
            continue;
        }
        if (!ots_reader_peek_u8(r, 1, &len))
            return OTS_PARSE_NEED_MORE;
        if (len < APDU_MIN_LENGTH || len > APDU_MAX_LENGTH) {
            Walk w = {.s = s, .dir = dir, .type = -1, .cot = -1, .ca = -1};
            problem(&w, "bad_length", "APDU length %u outside %u..%u", len, APDU_MIN_LENGTH,
                    APDU_MAX_LENGTH);
            st->resync[dir] = TRUE;
            st->seq[dir].have_ns = FALSE;
            ots_reader_skip(r, 1);
            continue;
        }
        const guint8 *apdu;
        if (!ots_reader_get_data(r, 2u + len, &apdu))
            return OTS_PARSE_NEED_MORE;
        handle_apdu(s, st, dir, apdu, 2u + len);
    }
}

static OtsProbeResult
iec104_probe(OtsReader *r, OtsDirection dir, OtsL4Proto l4)
{
    if (l4 != OTS_L4_TCP)
        return OTS_PROBE_NO;
    return plausible_at(r, 0);
}

static gpointer
iec104_state_new(OtsSession *s)
{
    Iec104State *st = g_new0(Iec104State, 1);
    g_queue_init(&st->pending);
    return st;
}

/* flow_end() has drained and refunded the queue; whatever is left was
 * charged to the flow and the core refunds it when the flow goes. */
static void
iec104_state_free(gpointer state)
{
    Iec104State *st = state;
    GList *l;
    while ((l = g_queue_pop_head_link(&st->pending)))
        g_free(l->data);
    g_free(st);
}

static void
iec104_gap(OtsSession *s, gpointer state, OtsDirection dir, guint32 len)
{
    Iec104State *st = state;
    st->resync[dir] = TRUE;
    /* Lost bytes may hold I-frames: sequence numbers restart from what
     * comes next. */
    st->seq[dir].have_ns = FALSE;
    st->seq[dir].have_nr = FALSE;
}

static void
iec104_flow_end(OtsSession *s, gpointer state)
{
    Iec104State *st = state;
    while (st->pending.head)
        pending_unanswered(s, st, st->pending.head->data);
    for (guint d = 0; d < 2; d++)
        for (guint i = 0; i < 3; i++)
            if (st->u_apdu[d][i])
                u_unanswered(s, st, (OtsDirection)d, i);
}

static void
iec104_tick(OtsSession *s, gpointer state, gint64 now)
{
    Iec104State *st = state;
    while (st->pending.head) {
        Pending *p = st->pending.head->data;
        if (now - p->ts <= PENDING_TIMEOUT_US)
            break;
        pending_unanswered(s, st, p);
    }
    for (guint d = 0; d < 2; d++)
        for (guint i = 0; i < 3; i++)
            if (st->u_apdu[d][i] && now - st->u_pending[d][i] > PENDING_TIMEOUT_US)
                u_unanswered(s, st, (OtsDirection)d, i);
}

static const OtsDissectorInfo iec104_info = {
    .abi_major = OTS_DISSECTOR_ABI_MAJOR,
    .abi_minor = OTS_DISSECTOR_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "iec104",
    .version = "0.1.0",
    .description = "IEC 60870-5-104: APCI I/S/U frames, ASDUs, commands, interrogation",
    .tcp_ports = (const guint16[]){2404, 0},
    .probe = iec104_probe,
    .state_new = iec104_state_new,
    .state_free = iec104_state_free,
    .parse = iec104_parse,
    .gap = iec104_gap,
    .flow_end = iec104_flow_end,
    .tick = iec104_tick,
};

OTS_DISSECTOR_DEFINE(iec104_info)
