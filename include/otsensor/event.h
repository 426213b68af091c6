/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/**
 * SECTION:event
 * @title: Event builder
 *
 * Dissectors report what they saw as events: transactions, asset facts and
 * protocol anomalies. An event is opened on the session with one of the
 * ots_session_begin_*() functions, filled with typed fields, and committed.
 * The core writes the envelope (`ts`, `sensor_id`, `seq`, `type`, the
 * 5-tuple, `proto`) itself; a dissector adds only its own fields, usually in
 * one object named after the protocol.
 *
 * The builder serialises straight into a per-worker buffer: no allocation per
 * event, and strings are JSON-escaped (invalid UTF-8 and control bytes are
 * escaped, never passed through). One event may be open per session at a
 * time; an event that is not committed is discarded by the next begin.
 */

#include <glib.h>

G_BEGIN_DECLS

typedef struct _OtsSession OtsSession;
typedef struct _OtsEvent OtsEvent;

/**
 * OtsDirection:
 * @OTS_DIR_TO_SERVER: client (initiator, master, requester) to server
 * @OTS_DIR_TO_CLIENT: server to client
 */
typedef enum {
    OTS_DIR_TO_SERVER = 0,
    OTS_DIR_TO_CLIENT = 1,
} OtsDirection;

#define OTS_DIR_REVERSE(d) ((OtsDirection)(1 - (d)))

/**
 * OtsOpClass:
 *
 * What an operation does to the process, for detection and reporting.
 * Serialised as the lower-case names in ots_op_class_to_string().
 */
typedef enum {
    OTS_OP_OTHER = 0,        /* "other" */
    OTS_OP_READ,             /* "read" */
    OTS_OP_WRITE,            /* "write" */
    OTS_OP_CONTROL,          /* "control": operate/command an output */
    OTS_OP_PROGRAM_UPLOAD,   /* "program_upload" (device to client) */
    OTS_OP_PROGRAM_DOWNLOAD, /* "program_download" (client to device) */
    OTS_OP_RUN_STATE,        /* "run_state": start/stop */
    OTS_OP_FIRMWARE,         /* "firmware" */
    OTS_OP_RESTART,          /* "restart" */
    OTS_OP_TIME_SET,         /* "time_set" */
    OTS_OP_DIAGNOSTICS,      /* "diagnostics" */
    OTS_OP_DISCOVERY,        /* "discovery" */
    OTS_OP_FILE_TRANSFER,    /* "file_transfer" */
    OTS_OP_COMM_CONTROL,     /* "communication_control" */
    OTS_OP_INTERROGATION,    /* "interrogation" */
    OTS_OP_SESSION,          /* "session": connect, register, setup, keep-alive */
    OTS_OP_MONITOR,          /* "monitor": spontaneous/periodic process data */
    OTS_OP_CONFIG,           /* "config": configuration changes */
    OTS_OP_N_CLASSES
} OtsOpClass;

/**
 * OtsTxStatus:
 *
 * Outcome of a transaction; serialised as `status`.
 */
typedef enum {
    OTS_TX_OK = 0,       /* "ok": a normal response */
    OTS_TX_EXCEPTION,    /* "exception": the server answered with an error */
    OTS_TX_UNANSWERED,   /* "unanswered": no response before flow end/timeout */
    OTS_TX_NO_REQUEST,   /* "no_request": a response whose request was not seen */
    OTS_TX_UNSOLICITED,  /* "unsolicited": server-initiated report (no request by design) */
    OTS_TX_NO_RESPONSE,  /* "no_response": one-way by design (broadcast, datagram) */
    OTS_TX_N_STATUS
} OtsTxStatus;

/**
 * OtsTransactionInfo:
 * @request_dir: direction of the request; the requester becomes `src_*`
 * @function: the protocol's numeric request code (`function`)
 * @function_name: (nullable): its name (`function_name`); static string
 * @op_class: operation class
 * @status: outcome
 * @request_ts: request time in µs since the epoch, 0 if not seen
 * @response_ts: response time in µs since the epoch, 0 if not seen
 * @proto: (nullable): protocol name when it differs from the plugin's name
 *   (for example `s7comm_plus` from the `s7comm` plugin); static string
 *
 * When both times are set the core writes `latency_us`.
 */
typedef struct {
    OtsDirection request_dir;
    guint32 function;
    const char *function_name;
    OtsOpClass op_class;
    OtsTxStatus status;
    gint64 request_ts;
    gint64 response_ts;
    const char *proto;
    gpointer reserved[4];
} OtsTransactionInfo;

/**
 * OtsAssetRole:
 *
 * What the endpoint is to the process; serialised as `role`.
 */
typedef enum {
    OTS_ROLE_UNKNOWN = 0, /* "unknown" */
    OTS_ROLE_CONTROLLER,  /* "controller": PLC, RTU, outstation, IED */
    OTS_ROLE_CLIENT,      /* "client": HMI, SCADA master, engineering station */
    OTS_ROLE_IO,          /* "io": I/O adapter, drive, field device */
    OTS_ROLE_GATEWAY,     /* "gateway" */
} OtsAssetRole;

/* Transactions: the core writes type, tuple, proto, function, function_name,
 * op_class, status and latency_us; the dissector adds its protocol object. */
OtsEvent *ots_session_begin_transaction(OtsSession *s, const OtsTransactionInfo *info);

/* Asset facts about one endpoint of the flow: the sender of direction @dir
 * (the server of the flow for %OTS_DIR_TO_CLIENT). The core writes `ip`,
 * `port`, `proto` and `role`; the dissector adds `vendor`, `product`,
 * `firmware`, `serial`, `name`, ... */
OtsEvent *ots_session_begin_asset(OtsSession *s, OtsDirection dir, OtsAssetRole role);

/* A protocol anomaly seen in direction @dir: counted by the core per
 * (proto, @code) and emitted as an `alert` event with `category`
 * "protocol_anomaly", `code` and `message`. @code is a static
 * lower_snake_case string such as "bad_length". Returns an event for
 * optional extra fields; commit it. */
OtsEvent *ots_session_begin_anomaly(OtsSession *s, OtsDirection dir, const char *code,
                                    const char *message);

/* Shorthand: begin_anomaly + commit. */
void ots_session_anomaly(OtsSession *s, OtsDirection dir, const char *code, const char *message);

/* Since ABI 1.2: ots_session_begin_anomaly() with the message formatted
 * printf-style (at most OTS_ANOMALY_MESSAGE_MAX - 1 bytes, cut beyond). */
#define OTS_ANOMALY_MESSAGE_MAX 160
OtsEvent *ots_session_begin_anomalyf(OtsSession *s, OtsDirection dir, const char *code,
                                     const char *format, ...) G_GNUC_PRINTF(4, 5);
OtsEvent *ots_session_begin_anomalyv(OtsSession *s, OtsDirection dir, const char *code,
                                     const char *format, va_list args) G_GNUC_PRINTF(4, 0);

/* The codes already raised for the PDU being parsed, so that a PDU with
 * many faults of one kind gives one alert per kind. Zero it per PDU. */
typedef struct {
    const char *code[4];
} OtsAnomalyOnce;

/* TRUE the first time @code is seen in @once (also once @once is full:
 * then every further code is raised). @code is a static string. */
static inline gboolean
ots_anomaly_once(OtsAnomalyOnce *once, const char *code)
{
    guint i;
    for (i = 0; i < G_N_ELEMENTS(once->code) && once->code[i]; i++)
        if (once->code[i] == code || g_strcmp0(once->code[i], code) == 0)
            return FALSE;
    if (i < G_N_ELEMENTS(once->code))
        once->code[i] = code;
    return TRUE;
}

void ots_event_add_uint(OtsEvent *e, const char *key, guint64 value);
void ots_event_add_int(OtsEvent *e, const char *key, gint64 value);
void ots_event_add_bool(OtsEvent *e, const char *key, gboolean value);
void ots_event_add_double(OtsEvent *e, const char *key, double value);
/* NUL-terminated string, escaped. */
void ots_event_add_string(OtsEvent *e, const char *key, const char *value);
/* Bytes of a protocol text field, escaped; stops at the first NUL. */
void ots_event_add_string_len(OtsEvent *e, const char *key, const guint8 *value, gsize len);
/* Bytes as lower-case hex (binary never goes out raw). */
void ots_event_add_hex(OtsEvent *e, const char *key, const guint8 *value, gsize len);
void ots_event_add_null(OtsEvent *e, const char *key);

/* Nesting: @key is NULL for elements of an array. */
void ots_event_begin_object(OtsEvent *e, const char *key);
void ots_event_end_object(OtsEvent *e);
void ots_event_begin_array(OtsEvent *e, const char *key);
void ots_event_end_array(OtsEvent *e);

/* Closes any open object/array and hands the event to the core. */
void ots_event_commit(OtsEvent *e);

/* Since ABI 1.4: a memo for a run of members that repeats from event to
 * event, such as the header fields of a device that is polled: rendered
 * once, then copied while its inputs stay the same.
 *
 *     if (!ots_event_memo_put(e, &st->memo, &key, sizeof(key))) {
 *         ots_event_memo_begin(e, &st->memo, &key, sizeof(key));
 *         ...the members, written as usual...
 *         ots_event_memo_end(e, &st->memo);
 *     }
 *
 * @key must hold every input of those members as bytes (zero a struct with
 * memset() first: its padding is compared too), at most
 * OTS_EVENT_MEMO_KEY_MAX bytes. The run must be whole members of the object
 * open at begin (whatever it opens it closes), and at most OTS_EVENT_MEMO_MAX
 * bytes of JSON; anything else is simply not kept, and the next put misses.
 * A memo belongs to one flow's state (zeroed before first use), so to one
 * thread. Each is ~0.5 KiB: charge it with the state. */
#define OTS_EVENT_MEMO_KEY_MAX 96
#define OTS_EVENT_MEMO_MAX 384

typedef struct {
    guint32 key_len;
    guint32 json_len; /* 0: nothing kept */
    /* Set by begin for end; not API. */
    gsize start_;
    gsize record_;
    guint32 state_, depth_, arrays_;
    guint8 key[OTS_EVENT_MEMO_KEY_MAX];
    char json[OTS_EVENT_MEMO_MAX];
} OtsEventMemo;

/* Writes the kept members and returns TRUE if @key is the memo's; FALSE
 * (nothing written) otherwise. */
gboolean ots_event_memo_put(OtsEvent *e, const OtsEventMemo *m, const void *key, gsize key_len);
/* Starts keeping the members written from now on under @key. */
void ots_event_memo_begin(OtsEvent *e, OtsEventMemo *m, const void *key, gsize key_len);
/* Keeps the members written since ots_event_memo_begin(). */
void ots_event_memo_end(OtsEvent *e, OtsEventMemo *m);

const char *ots_op_class_to_string(OtsOpClass c);
const char *ots_tx_status_to_string(OtsTxStatus s);

/* ---- Inline fast path (ABI 1.3) -----------------------------------------
 *
 * A member whose key is a string literal of plain characters (printable
 * ASCII but '"' and '\\') is written by code inlined into the caller: no
 * call, and no escaping of the key, on the per-event path where those were
 * most of the work. That covers numbers, booleans, strings (a plain literal
 * copied as it is, a short run-time one checked with SSE2), and opening and
 * closing objects and arrays. Anything else (a key computed at run time, an
 * element of an array, a long string or one to escape, a buffer short of
 * room, a compiler without these builtins, a build defining
 * OTS_EVENT_NO_INLINE) calls the functions above, which write the same
 * bytes.
 *
 * The two structures are the head of the core's event, here only for that
 * inline code: not API, never to be touched by a plugin. */
typedef struct {
    guint8 *data;
    gsize len;
    gsize cap;
} OtsEventBuf_;

typedef struct {
    OtsEventBuf_ *buf; /* the batch being written */
    guint32 state;     /* OTS_EVENT_*_ of the innermost object or array */
    guint32 depth;     /* objects and arrays open inside the event */
    guint32 arrays;    /* bit i: the container i levels up is an array */
} OtsEventHead_;

#define OTS_EVENT_OPEN_ 1u  /* an event is open */
#define OTS_EVENT_COMMA_ 2u /* the innermost object or array has a member */
#define OTS_EVENT_ARRAY_ 4u /* the innermost container is an array */
/* Deeper nesting is a plugin bug: refused (the JSON stays valid). */
#define OTS_EVENT_MAX_DEPTH_ 16

/* "00" to "99", for writing numbers two digits at a time (the core's JSON
 * writer uses them too). */
static const char ots_event_digit_pairs_[] =
    "00010203040506070809101112131415161718192021222324"
    "25262728293031323334353637383940414243444546474849"
    "50515253545556575859606162636465666768697071727374"
    "75767778798081828384858687888990919293949596979899";

/* Writes the decimal digits of @v at @o; returns the end. The core's JSON
 * writer uses it too. */
static inline guint8 *
ots_event_put_u64_(guint8 *o, guint64 v)
{
    const char *pairs = ots_event_digit_pairs_;
    guint n = 1;
    for (guint64 t = v;; t /= 10000, n += 4) {
        if (t < 10)
            break;
        if (t < 100) {
            n += 1;
            break;
        }
        if (t < 1000) {
            n += 2;
            break;
        }
        if (t < 10000) {
            n += 3;
            break;
        }
    }
    guint8 *end = o + n;
    o = end;
    while (v >= 100) {
        guint r = (guint)(v % 100) * 2;
        v /= 100;
        *--o = (guint8)pairs[r + 1];
        *--o = (guint8)pairs[r];
    }
    if (v >= 10) {
        *--o = (guint8)pairs[v * 2 + 1];
        *--o = (guint8)pairs[v * 2];
    } else {
        *--o = (guint8)('0' + v);
    }
    return end;
}

/* The value of a member whose key the inline path wrote: @value escaped
 * and quoted, or null. For that path only. */
void ots_event_put_string_(OtsEvent *e, const char *value);

/* NUL-terminated strings are scanned 16 bytes at a time with SSE2. Those
 * loads may read past the terminator, never past the page holding it (near
 * a page end the general path takes over). The sanitizers would report
 * those bytes, so their builds (and hosts without SSE2) always take the
 * general path, which gives the same output. */
#if defined(__SSE2__)
#define OTS_EVENT_SIMD_ 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#undef OTS_EVENT_SIMD_
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#undef OTS_EVENT_SIMD_
#endif
#endif

#ifdef OTS_EVENT_SIMD_
#include <emmintrin.h>

/* One bit per byte of @v that is not plain: < 0x20 or >= 0x80 (the bytes
 * below 0x20 as signed chars), '"' or '\\'. */
static inline guint
ots_event_special_mask_(__m128i v)
{
    __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                               _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                            _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
    return (guint)_mm_movemask_epi8(bad);
}
#endif

/* @s quoted at @o, which has 35 bytes of room, if it is shorter than 32
 * bytes and plain (nothing to escape); returns the end, or NULL and the
 * caller takes the general path (what is at @o is then undefined). */
#if defined(__GNUC__) && !defined(__clang__)
/* The 16-byte loads past a short string's end are deliberate (within its
 * page, see above); GCC flags them when it knows the string's size. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#endif
static inline guint8 *
ots_event_put_short_(guint8 *o, const char *s)
{
#ifdef OTS_EVENT_SIMD_
    if (G_LIKELY(((guintptr)s & 4095) <= 4096 - 32)) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
        _mm_storeu_si128((__m128i *)(void *)(o + 1), v);
        guint mask = ots_event_special_mask_(v);
        guint n = 0;
        if (!mask) {
            v = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
            _mm_storeu_si128((__m128i *)(void *)(o + 17), v);
            mask = ots_event_special_mask_(v);
            n = 16;
        }
        if (G_LIKELY(mask)) {
            n += (guint)__builtin_ctz(mask);
            if (G_LIKELY(s[n] == 0)) {
                o[0] = '"';
                o[n + 1] = '"';
                return o + n + 2;
            }
        }
    }
#else
    (void)o;
    (void)s;
#endif
    return NULL;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(OTS_EVENT_NO_INLINE)

#define OTS_EVENT_KEY_CHARS_                                                                       \
    " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"

/* TRUE when @s is known at compile time to be a string with nothing to
 * escape (GCC folds it for a literal); FALSE for anything else, at no cost.
 * A macro: through a function call the test would not fold. */
#define OTS_EVENT_PLAIN_LITERAL_(s)                                                                \
    (__builtin_constant_p(__builtin_strspn((s), OTS_EVENT_KEY_CHARS_) == __builtin_strlen(s)) &&  \
     __builtin_strspn((s), OTS_EVENT_KEY_CHARS_) == __builtin_strlen(s))

/* Where the value of member @key goes, with @room bytes free after it; NULL
 * for the general path. The key test folds at compile time (GCC), so a key
 * that is not a plain literal costs nothing here. */
G_ALWAYS_INLINE static inline guint8 *
ots_event_fast_key_(OtsEvent *e, const char *key, gsize room)
{
    if (!key || !OTS_EVENT_PLAIN_LITERAL_(key))
        return NULL;
    OtsEventHead_ *h = (OtsEventHead_ *)(void *)e;
    if (G_UNLIKELY(!e || (h->state & (OTS_EVENT_OPEN_ | OTS_EVENT_ARRAY_)) != OTS_EVENT_OPEN_))
        return NULL;
    gsize klen = __builtin_strlen(key);
    OtsEventBuf_ *b = h->buf;
    if (G_UNLIKELY(b->cap - b->len < klen + 4 + room))
        return NULL;
    guint8 *o = b->data + b->len;
    *o = ',';
    o += (h->state & OTS_EVENT_COMMA_) >> 1;
    h->state |= OTS_EVENT_COMMA_;
    *o++ = '"';
    __builtin_memcpy(o, key, klen);
    o += klen;
    o[0] = '"';
    o[1] = ':';
    return o + 2;
}

G_ALWAYS_INLINE static inline void
ots_event_fast_end_(OtsEvent *e, guint8 *end)
{
    OtsEventBuf_ *b = ((OtsEventHead_ *)(void *)e)->buf;
    b->len = (gsize)(end - b->data);
}

G_ALWAYS_INLINE static inline void
ots_event_add_uint_inline_(OtsEvent *e, const char *key, guint64 value)
{
    guint8 *o = ots_event_fast_key_(e, key, 20);
    if (o)
        ots_event_fast_end_(e, ots_event_put_u64_(o, value));
    else
        (ots_event_add_uint)(e, key, value);
}

G_ALWAYS_INLINE static inline void
ots_event_add_int_inline_(OtsEvent *e, const char *key, gint64 value)
{
    guint8 *o = ots_event_fast_key_(e, key, 21);
    if (!o) {
        (ots_event_add_int)(e, key, value);
        return;
    }
    guint64 mag = (guint64)value;
    if (value < 0) {
        *o++ = '-';
        mag = ~mag + 1; /* also right for G_MININT64 */
    }
    ots_event_fast_end_(e, ots_event_put_u64_(o, mag));
}

G_ALWAYS_INLINE static inline void
ots_event_add_bool_inline_(OtsEvent *e, const char *key, gboolean value)
{
    guint8 *o = ots_event_fast_key_(e, key, 5);
    if (!o) {
        (ots_event_add_bool)(e, key, value);
        return;
    }
    if (value) {
        __builtin_memcpy(o, "true", 4);
        o += 4;
    } else {
        __builtin_memcpy(o, "false", 5);
        o += 5;
    }
    ots_event_fast_end_(e, o);
}

G_ALWAYS_INLINE static inline void
ots_event_add_string_inline_(OtsEvent *e, const char *key, const char *value)
{
    guint8 *o = ots_event_fast_key_(e, key, 35);
    if (!o) {
        (ots_event_add_string)(e, key, value);
        return;
    }
    guint8 *end = NULL;
    if (value && OTS_EVENT_PLAIN_LITERAL_(value) && __builtin_strlen(value) <= 32) {
        /* A plain literal: copied as it is. */
        gsize n = __builtin_strlen(value);
        *o = '"';
        __builtin_memcpy(o + 1, value, n);
        o[n + 1] = '"';
        end = o + n + 2;
    } else if (value) {
        end = ots_event_put_short_(o, value);
    }
    if (end) {
        ots_event_fast_end_(e, end);
        return;
    }
    ots_event_fast_end_(e, o);
    ots_event_put_string_(e, value);
}

G_ALWAYS_INLINE static inline void
ots_event_begin_inline_(OtsEvent *e, const char *key, gboolean array)
{
    OtsEventHead_ *h = (OtsEventHead_ *)(void *)e;
    guint8 *o = e && h->depth < OTS_EVENT_MAX_DEPTH_ ? ots_event_fast_key_(e, key, 1) : NULL;
    if (!o) {
        if (array)
            (ots_event_begin_array)(e, key);
        else
            (ots_event_begin_object)(e, key);
        return;
    }
    *o++ = array ? '[' : '{';
    ots_event_fast_end_(e, o);
    h->depth++;
    h->arrays = (h->arrays << 1) | (array ? 1u : 0u);
    h->state = OTS_EVENT_OPEN_ | (array ? OTS_EVENT_ARRAY_ : 0);
}

G_ALWAYS_INLINE static inline void
ots_event_end_inline_(OtsEvent *e, gboolean array)
{
    OtsEventHead_ *h = (OtsEventHead_ *)(void *)e;
    if (G_UNLIKELY(!e || !(h->state & OTS_EVENT_OPEN_) || h->depth == 0 ||
                   (h->arrays & 1u) != (array ? 1u : 0u) || h->buf->cap == h->buf->len)) {
        if (array)
            (ots_event_end_array)(e);
        else
            (ots_event_end_object)(e);
        return;
    }
    h->buf->data[h->buf->len++] = array ? ']' : '}';
    h->depth--;
    h->arrays >>= 1;
    /* The parent has a member now: the container just closed. */
    h->state = OTS_EVENT_OPEN_ | OTS_EVENT_COMMA_ | ((h->arrays & 1u) ? OTS_EVENT_ARRAY_ : 0);
}

#define ots_event_add_string(e, key, value) ots_event_add_string_inline_((e), (key), (value))
#define ots_event_begin_object(e, key) ots_event_begin_inline_((e), (key), FALSE)
#define ots_event_begin_array(e, key) ots_event_begin_inline_((e), (key), TRUE)
#define ots_event_end_object(e) ots_event_end_inline_((e), FALSE)
#define ots_event_end_array(e) ots_event_end_inline_((e), TRUE)
#define ots_event_add_uint(e, key, value) ots_event_add_uint_inline_((e), (key), (value))
#define ots_event_add_int(e, key, value) ots_event_add_int_inline_((e), (key), (value))
#define ots_event_add_bool(e, key, value) ots_event_add_bool_inline_((e), (key), (value))

#endif

G_END_DECLS
