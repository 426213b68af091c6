/* SPDX-License-Identifier: Apache-2.0 */
#include "core/event/json-inline.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

void
ots_buf_init(OtsBuf *b, gsize cap)
{
    b->data = cap ? g_malloc(cap) : NULL;
    b->len = 0;
    b->cap = cap;
}

void
ots_buf_clear(OtsBuf *b)
{
    g_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void
ots_buf_grow(OtsBuf *b, gsize need)
{
    gsize cap = b->cap ? b->cap : 256;
    while (cap - b->len < need)
        cap *= 2;
    b->data = g_realloc(b->data, cap);
    b->cap = cap;
}

void
ots_buf_consume(OtsBuf *b, gsize n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void
ots_json_i64(OtsBuf *b, gint64 v)
{
    if (v < 0) {
        ots_buf_putc(b, '-');
        /* -(v+1)+1 avoids overflow on G_MININT64 */
        ots_json_u64(b, (guint64)(-(v + 1)) + 1);
    } else {
        ots_json_u64(b, (guint64)v);
    }
}

/* 5^0 .. 5^27, the largest power of 5 below 2^63. */
static const guint64 pow5[] = {
    1, 5, 25, 125, 625, 3125, 15625, 78125, 390625, 1953125, 9765625, 48828125, 244140625,
    1220703125, G_GUINT64_CONSTANT(6103515625), G_GUINT64_CONSTANT(30517578125),
    G_GUINT64_CONSTANT(152587890625), G_GUINT64_CONSTANT(762939453125),
    G_GUINT64_CONSTANT(3814697265625), G_GUINT64_CONSTANT(19073486328125),
    G_GUINT64_CONSTANT(95367431640625), G_GUINT64_CONSTANT(476837158203125),
    G_GUINT64_CONSTANT(2384185791015625), G_GUINT64_CONSTANT(11920928955078125),
    G_GUINT64_CONSTANT(59604644775390625), G_GUINT64_CONSTANT(298023223876953125),
    G_GUINT64_CONSTANT(1490116119384765625), G_GUINT64_CONSTANT(7450580596923828125)};

/* %.17g of @v as glibc prints it, computed exactly in integers when that
 * fits: v = m x 2^e2, with m's trailing zero bits shed, is n / 10^k for the
 * integer n = m x 5^k (k = -e2) or m x 2^e2, and n must fit in 128 bits.
 * That takes every float32 (the REALs of BACnet, IEC 104 and most DNP3
 * analogs) down to ~1e-7, and any double with a short fraction; printf,
 * ~1,700 instructions a value on the capture benchmark, does the rest.
 * Rounding at 17 digits is half to even on the exact digits, as glibc does
 * in the default rounding mode. Returns the length written at @out (at
 * least 32 bytes), or 0. */
static int
format_g17(char *out, double v)
{
    enum { P = 17 };
    guint64 bits;
    memcpy(&bits, &v, sizeof(bits));
    int bexp = (int)((bits >> 52) & 0x7ff);
    guint64 m = bits & ((G_GUINT64_CONSTANT(1) << 52) - 1);
    if (bexp == 0x7ff || bexp == 0)
        return 0; /* not finite, zero or subnormal */
    m |= G_GUINT64_CONSTANT(1) << 52;
    int e2 = bexp - 1075;
    int tz = __builtin_ctzll(m);
    m >>= tz;
    e2 += tz;

    unsigned __int128 n;
    int k = 0;
    if (e2 >= 0) {
        if (e2 + (64 - __builtin_clzll(m)) > 128)
            return 0;
        n = (unsigned __int128)m << e2;
    } else {
        k = -e2;
        n = m;
        for (int left = k; left > 0;) {
            int step = MIN(left, (int)G_N_ELEMENTS(pow5) - 1);
            if (__builtin_mul_overflow(n, (unsigned __int128)pow5[step], &n))
                return 0;
            left -= step;
        }
    }

    /* The digits of n, most significant first. */
    char d[48];
    int nd = 0;
    {
        char rev[48];
        int r = 0;
        const guint64 e19 = G_GUINT64_CONSTANT(10000000000000000000);
        while (n > 0) {
            guint64 chunk = (guint64)(n % e19);
            n /= e19;
            for (int i = 0; i < 19 && (chunk || n); i++, chunk /= 10)
                rev[r++] = (char)(chunk % 10);
        }
        while (r > 0)
            d[nd++] = rev[--r];
    }
    int x = nd - 1 - k; /* v = d0.d1d2... x 10^x */
    if (nd > P) {
        gboolean rest = FALSE;
        for (int i = P + 1; i < nd; i++)
            rest |= d[i] != 0;
        gboolean up = d[P] > 5 || (d[P] == 5 && (rest || (d[P - 1] & 1)));
        nd = P;
        for (int i = P - 1; up && i >= 0; i--) {
            up = d[i] == 9;
            d[i] = up ? 0 : d[i] + 1;
        }
        if (up) {
            d[0] = 1; /* 99..9 rounded up: the rest are zeros */
            x++;
        }
    }
    while (nd > 1 && d[nd - 1] == 0)
        nd--;

    char *o = out;
    if (bits >> 63)
        *o++ = '-';
    if (x < -4 || x >= P) {
        *o++ = (char)('0' + d[0]);
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++)
                *o++ = (char)('0' + d[i]);
        }
        *o++ = 'e';
        *o++ = x < 0 ? '-' : '+';
        int ax = ABS(x);
        if (ax >= 100)
            *o++ = (char)('0' + ax / 100);
        *o++ = (char)('0' + ax / 10 % 10);
        *o++ = (char)('0' + ax % 10);
    } else if (x >= 0) {
        for (int i = 0; i <= x; i++)
            *o++ = (char)('0' + (i < nd ? d[i] : 0));
        if (nd > x + 1) {
            *o++ = '.';
            for (int i = x + 1; i < nd; i++)
                *o++ = (char)('0' + d[i]);
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > x; i--)
            *o++ = '0';
        for (int i = 0; i < nd; i++)
            *o++ = (char)('0' + d[i]);
    }
    return (int)(o - out);
}

void
ots_json_double(OtsBuf *b, double v)
{
    if (!isfinite(v)) {
        /* JSON has no NaN/Infinity. */
        ots_buf_append_lit(b, "null");
        return;
    }
    /* Whole numbers (most process values) print as the integer "%.17g"
     * would give: every integer below 2^53 has at most 16 digits, so it is
     * printed exactly and without an exponent. -0 keeps its sign below. */
    if (v > -9007199254740992.0 && v < 9007199254740992.0) {
        gint64 i = (gint64)v;
        if ((double)i == v && (i != 0 || !signbit(v))) {
            ots_json_i64(b, i);
            return;
        }
    }
    char tmp[40];
    int n = format_g17(tmp, v);
    if (n == 0) {
        n = g_snprintf(tmp, sizeof(tmp), "%.17g", v);
        /* "%.17g" is locale independent only in the C locale: fix a comma. */
        for (int i = 0; i < n; i++)
            if (tmp[i] == ',')
                tmp[i] = '.';
    }
    ots_buf_append(b, tmp, (gsize)n);
}

static const char hexdigits[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at @p (at most @left bytes), 0 if invalid. */
static gsize
utf8_seq_len(const guint8 *p, gsize left)
{
    guint8 c = p[0];
    gsize n;
    guint32 cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (gsize i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Does any byte of @w need escaping (< 0x20, >= 0x80, '"' or '\\')? SWAR
 * tests on eight bytes at once: most strings on the wire are plain ASCII. */
static inline gboolean
word_needs_escape(guint64 w)
{
    const guint64 ones = G_GUINT64_CONSTANT(0x0101010101010101);
    const guint64 high = G_GUINT64_CONSTANT(0x8080808080808080);
    guint64 quote = w ^ (ones * '"');
    guint64 bslash = w ^ (ones * '\\');
    guint64 ctrl = (w - ones * 0x20) & ~w;          /* bytes < 0x20 (or >= 0x80 below) */
    guint64 zq = (quote - ones) & ~quote;           /* bytes equal to '"' */
    guint64 zb = (bslash - ones) & ~bslash;         /* bytes equal to '\\' */
    return ((ctrl | zq | zb) & high) != 0 || (w & high) != 0;
}

void
ots_json_string_body(OtsBuf *b, const char *s, gsize len, gboolean stop_at_nul)
{
    const guint8 *p = (const guint8 *)s;
    /* Worst case 6 output bytes per input byte. */
    ots_buf_reserve(b, len * 6);
    guint8 *o = b->data + b->len;
    gsize i = 0;
    while (i < len) {
        /* Plain runs: eight bytes at a time, then byte by byte. */
        while (len - i >= 8) {
            guint64 w;
            memcpy(&w, p + i, 8);
            if (word_needs_escape(w))
                break;
            memcpy(o, p + i, 8);
            o += 8;
            i += 8;
        }
        if (i >= len)
            break;
        guint8 c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = c;
            i++;
            continue;
        }
        if (c == 0 && stop_at_nul)
            break;
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hexdigits[c >> 4];
                *o++ = hexdigits[c & 0xf];
            }
            i++;
            continue;
        }
        gsize n = utf8_seq_len(p + i, len - i);
        if (n) {
            memcpy(o, p + i, n);
            o += n;
            i += n;
        } else {
            /* Not UTF-8: the byte as a Latin-1 code point. */
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hexdigits[c >> 4];
            *o++ = hexdigits[c & 0xf];
            i++;
        }
    }
    b->len = (gsize)(o - b->data);
}

void
ots_json_string(OtsBuf *b, const char *s, gsize len, gboolean stop_at_nul)
{
    ots_buf_reserve(b, len * 6 + 2);
    b->data[b->len++] = '"';
    ots_json_string_body(b, s, len, stop_at_nul);
    b->data[b->len++] = '"';
}

void
ots_json_u64(OtsBuf *b, guint64 v)
{
    ots_json_u64_inline(b, v);
}

static inline gboolean
byte_is_plain(guint8 c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* Copies the leading plain bytes of the NUL-terminated @s to @o, writing at
 * most @room bytes (bytes past the returned count may be scribbled on).
 * Returns how many were copied: s[n] is then the first byte that is not
 * plain (NUL included), or a plain byte when @room ran out. */
static inline gsize
copy_plain_cstr(guint8 *o, const char *s, gsize room)
{
    const guint8 *p = (const guint8 *)s;
    gsize n = 0;
#ifdef OTS_EVENT_SIMD_ /* from <otsensor/event.h>: SSE2, no sanitizer */
    while (n + 16 <= room) {
        if (G_UNLIKELY(((guintptr)(p + n) & 4095) > 4096 - 16)) {
            /* Up to the page boundary one byte at a time. */
            gsize stop = n + (4096 - ((guintptr)(p + n) & 4095));
            for (; n < stop; n++) {
                if (!byte_is_plain(p[n]))
                    return n;
                o[n] = p[n];
            }
            continue;
        }
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + n));
        _mm_storeu_si128((__m128i *)(void *)(o + n), v);
        guint mask = ots_event_special_mask_(v);
        if (mask)
            return n + (gsize)__builtin_ctz(mask);
        n += 16;
    }
#endif
    while (n < room && byte_is_plain(p[n])) {
        o[n] = p[n];
        n++;
    }
    return n;
}

void
ots_json_cstring_slow(OtsBuf *b, const char *s, char suffix)
{
    /* Room for the quotes, the suffix and a few words of plain bytes. */
    ots_buf_reserve(b, 64);
    guint8 *o = b->data + b->len;
    *o++ = '"';
    for (;;) {
        gsize room = (gsize)(b->data + b->cap - o);
        gsize n = copy_plain_cstr(o, s, room - 2);
        o += n;
        s += n;
        guint8 c = (guint8)*s;
        if (G_LIKELY(c == 0))
            break;
        b->len = (gsize)(o - b->data);
        if (byte_is_plain(c)) {
            /* Out of room: grow and go on. */
            ots_buf_reserve(b, 64);
            o = b->data + b->len;
            continue;
        }
        /* Something to escape: the general path for the rest. */
        ots_json_string_body(b, s, strlen(s), FALSE);
        ots_buf_reserve(b, 2);
        o = b->data + b->len;
        break;
    }
    *o++ = '"';
    if (suffix)
        *o++ = (guint8)suffix;
    b->len = (gsize)(o - b->data);
}

void
ots_json_cstring(OtsBuf *b, const char *s)
{
    ots_json_cstring_inline(b, s, 0);
}

void
ots_json_key(OtsBuf *b, const char *key)
{
    /* Keys are short static identifiers: copied a word at a time without a
     * separate strlen. */
    ots_json_cstring_inline(b, key, ':');
}

void
ots_json_hex(OtsBuf *b, const guint8 *p, gsize len)
{
    ots_buf_reserve(b, len * 2 + 2);
    guint8 *o = b->data + b->len;
    *o++ = '"';
    for (gsize i = 0; i < len; i++) {
        *o++ = hexdigits[p[i] >> 4];
        *o++ = hexdigits[p[i] & 0xf];
    }
    *o++ = '"';
    b->len = (gsize)(o - b->data);
}

/* Two decimal digits of @v (< 100) at @o. */
static inline guint8 *
put_2digits(guint8 *o, guint v)
{
    memcpy(o, ots_event_digit_pairs_ + 2 * v, 2);
    return o + 2;
}

guint8 *
ots_json_time_put(guint8 *o, gint64 ts_us, OtsTimeCache *cache)
{
    gint64 sec = ts_us / G_USEC_PER_SEC;
    gint64 usec = ts_us % G_USEC_PER_SEC;
    if (usec < 0) {
        usec += G_USEC_PER_SEC;
        sec--;
    }
    if (G_UNLIKELY(sec != cache->sec || cache->prefix[0] == 0)) {
        time_t t = (time_t)sec;
        struct tm tm;
        if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
            memset(&tm, 0, sizeof(tm)), tm.tm_year = 70, tm.tm_mday = 1;
        g_snprintf(cache->prefix, sizeof(cache->prefix), "%04d-%02d-%02dT%02d:%02d:%02d.",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec);
        cache->sec = sec;
    }
    *o++ = '"';
    memcpy(o, cache->prefix, 20);
    o += 20;
    guint u = (guint)usec;
    o = put_2digits(o, u / 10000);
    o = put_2digits(o, u / 100 % 100);
    o = put_2digits(o, u % 100);
    *o++ = 'Z';
    *o++ = '"';
    return o;
}

void
ots_json_time(OtsBuf *b, gint64 ts_us, OtsTimeCache *cache)
{
    ots_buf_reserve(b, OTS_JSON_TIME_MAX);
    b->len = (gsize)(ots_json_time_put(b->data + b->len, ts_us, cache) - b->data);
}
