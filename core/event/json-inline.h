/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The hot JSON primitives as inline functions, for the event builder
 * (event.c) and json-writer.c only: a key and a number per field are the
 * per-event path, where a call per primitive is a measurable share. */

#include <otsensor/event.h>
#include "core/event/json-writer.h"

G_BEGIN_DECLS

/* The escaped bytes of @len bytes at @s, without the quotes (the general
 * path of ots_json_string()). */
void ots_json_string_body(OtsBuf *b, const char *s, gsize len, gboolean stop_at_nul);

static inline void
ots_json_u64_inline(OtsBuf *b, guint64 v)
{
    /* The SDK's digit writer: the same bytes as the plugins' inline path. */
    ots_buf_reserve(b, 20);
    b->len = (gsize)(ots_event_put_u64_(b->data + b->len, v) - b->data);
}

/* NUL-terminated strings are scanned 16 bytes at a time with SSE2. Those
 * loads may read past the terminator, never past the page holding it (near
 * a page end the bytes are read one at a time instead). The sanitizers
 * would report those bytes, so their builds (and hosts without SSE2) take
 * the byte loop, which gives the same output. */
#if defined(__SSE2__)
#define OTS_SIMD_CSTRING 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#undef OTS_SIMD_CSTRING
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#undef OTS_SIMD_CSTRING
#endif
#endif

#ifdef OTS_SIMD_CSTRING
#include <emmintrin.h>
#endif

/* Quoted NUL-terminated string, then @suffix if it is not 0: the general
 * case (long strings, escapes, page ends), in json-writer.c. */
void ots_json_cstring_slow(OtsBuf *b, const char *s, char suffix);

#ifdef OTS_SIMD_CSTRING
/* One bit per byte of @v that is not plain: < 0x20 or >= 0x80 (the bytes
 * below 0x20 as signed chars), '"' or '\\'. */
static inline guint
ots_simd_special_mask(__m128i v)
{
    __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                               _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                            _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
    return (guint)_mm_movemask_epi8(bad);
}
#endif

/* The same, with the common case inline: a key or value of fewer than 32
 * plain bytes, copied with two loads and stores at most. */
static inline void
ots_json_cstring_inline(OtsBuf *b, const char *s, char suffix)
{
#ifdef OTS_SIMD_CSTRING
    if (G_LIKELY(b->cap - b->len >= 36 && ((guintptr)s & 4095) <= 4096 - 32)) {
        guint8 *o = b->data + b->len;
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
        _mm_storeu_si128((__m128i *)(void *)(o + 1), v);
        guint mask = ots_simd_special_mask(v);
        guint n = 0;
        if (!mask) {
            v = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
            _mm_storeu_si128((__m128i *)(void *)(o + 17), v);
            mask = ots_simd_special_mask(v);
            n = 16;
        }
        if (G_LIKELY(mask)) {
            n += (guint)__builtin_ctz(mask);
            if (G_LIKELY(s[n] == 0)) {
                o[0] = '"';
                o[n + 1] = '"';
                o[n + 2] = (guint8)suffix;
                b->len += n + 2 + (suffix != 0);
                return;
            }
        }
    }
#endif
    ots_json_cstring_slow(b, s, suffix);
}

G_END_DECLS
