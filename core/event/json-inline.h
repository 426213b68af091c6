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

/* Quoted NUL-terminated string, then @suffix if it is not 0: the general
 * case (long strings, escapes, page ends), in json-writer.c. */
void ots_json_cstring_slow(OtsBuf *b, const char *s, char suffix);

/* The same, with the common case inline (the SDK's ots_event_put_short_(),
 * so plugins and core write the same bytes): a key or value of fewer than
 * 32 plain bytes, copied with two loads and stores at most. */
static inline void
ots_json_cstring_inline(OtsBuf *b, const char *s, char suffix)
{
    if (G_LIKELY(b->cap - b->len >= 36)) {
        guint8 *o = ots_event_put_short_(b->data + b->len, s);
        if (G_LIKELY(o)) {
            *o = (guint8)suffix;
            b->len = (gsize)(o - b->data) + (suffix != 0);
            return;
        }
    }
    ots_json_cstring_slow(b, s, suffix);
}

G_END_DECLS
