/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A growable byte buffer and the JSON primitives the event path needs.
 * Written for the per-packet path: the buffer is reused, numbers and
 * timestamps are formatted without printf, strings are escaped in one pass. */

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

typedef struct {
    guint8 *data;
    gsize len;
    gsize cap;
} OtsBuf;

void ots_buf_init(OtsBuf *b, gsize cap);
void ots_buf_clear(OtsBuf *b);
void ots_buf_grow(OtsBuf *b, gsize need);

static inline void
ots_buf_reserve(OtsBuf *b, gsize n)
{
    if (G_UNLIKELY(b->cap - b->len < n))
        ots_buf_grow(b, n);
}

static inline void
ots_buf_append(OtsBuf *b, const void *p, gsize n)
{
    if (G_UNLIKELY(n == 0))
        return; /* p may be NULL: memcpy(NULL, 0) is undefined */
    ots_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void
ots_buf_putc(OtsBuf *b, char c)
{
    ots_buf_reserve(b, 1);
    b->data[b->len++] = (guint8)c;
}

#define ots_buf_append_lit(b, lit) ots_buf_append((b), (lit), sizeof(lit) - 1)

static inline void
ots_buf_append_str(OtsBuf *b, const char *s)
{
    ots_buf_append(b, s, strlen(s));
}

/* Removes the first @n bytes. */
void ots_buf_consume(OtsBuf *b, gsize n);

/* Decimal numbers. */
void ots_json_u64(OtsBuf *b, guint64 v);
void ots_json_i64(OtsBuf *b, gint64 v);
void ots_json_double(OtsBuf *b, double v);

/* A quoted JSON string from @len bytes: escapes quotes, backslash and control
 * characters; bytes that are not valid UTF-8 are taken as Latin-1 code points
 * (\u00XX), so the output is always valid UTF-8 JSON and nothing is lost.
 * Stops at a NUL byte when @stop_at_nul. */
void ots_json_string(OtsBuf *b, const char *s, gsize len, gboolean stop_at_nul);

/* The same for a NUL-terminated string (equal to ots_json_string(b, s,
 * strlen(s), FALSE), in one pass). */
void ots_json_cstring(OtsBuf *b, const char *s);

/* "key": */
void ots_json_key(OtsBuf *b, const char *key);

/* Quoted lower-case hex of @len bytes. */
void ots_json_hex(OtsBuf *b, const guint8 *p, gsize len);

/* Quoted RFC 3339 UTC time with microseconds: "2026-11-28T16:43:53.123456Z".
 * Caches the formatted second in @cache (one per thread). */
typedef struct {
    gint64 sec;
    char prefix[24]; /* "2026-11-28T16:43:53." */
} OtsTimeCache;

void ots_json_time(OtsBuf *b, gint64 ts_us, OtsTimeCache *cache);

/* The same at @o, which has OTS_JSON_TIME_MAX bytes of room; returns the end. */
#define OTS_JSON_TIME_MAX 32
guint8 *ots_json_time_put(guint8 *o, gint64 ts_us, OtsTimeCache *cache);

G_END_DECLS
