/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/**
 * SECTION:reader
 * @title: OtsReader
 *
 * A bounds-checked cursor over borrowed bytes, modelled on GstByteReader.
 * Every getter returns %FALSE and leaves the cursor where it was when the
 * bytes are not there. Dissectors read packet bytes only through this.
 *
 * The functions are static inline: they sit on the per-packet path and the
 * struct layout is part of the ABI.
 */

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

typedef struct {
    const guint8 *data;
    gsize len;
    gsize pos;
} OtsReader;

#define OTS_READER_INIT(d, l) {(const guint8 *)(d), (l), 0}

static inline void
ots_reader_init(OtsReader *r, const guint8 *data, gsize len)
{
    r->data = data;
    r->len = len;
    r->pos = 0;
}

static inline gsize
ots_reader_remaining(const OtsReader *r)
{
    return r->len - r->pos;
}

static inline gsize
ots_reader_get_pos(const OtsReader *r)
{
    return r->pos;
}

/* Moves the cursor to an absolute position inside the reader. */
static inline gboolean
ots_reader_set_pos(OtsReader *r, gsize pos)
{
    if (pos > r->len)
        return FALSE;
    r->pos = pos;
    return TRUE;
}

static inline gboolean
ots_reader_skip(OtsReader *r, gsize n)
{
    if (ots_reader_remaining(r) < n)
        return FALSE;
    r->pos += n;
    return TRUE;
}

static inline gboolean
ots_reader_peek_u8(const OtsReader *r, gsize offset, guint8 *v)
{
    if (offset >= ots_reader_remaining(r))
        return FALSE;
    *v = r->data[r->pos + offset];
    return TRUE;
}

static inline gboolean
ots_reader_peek_u16_be(const OtsReader *r, gsize offset, guint16 *v)
{
    if (ots_reader_remaining(r) < 2 || offset > ots_reader_remaining(r) - 2)
        return FALSE;
    const guint8 *p = r->data + r->pos + offset;
    *v = (guint16)((p[0] << 8) | p[1]);
    return TRUE;
}

static inline gboolean
ots_reader_peek_u16_le(const OtsReader *r, gsize offset, guint16 *v)
{
    if (ots_reader_remaining(r) < 2 || offset > ots_reader_remaining(r) - 2)
        return FALSE;
    const guint8 *p = r->data + r->pos + offset;
    *v = (guint16)((p[1] << 8) | p[0]);
    return TRUE;
}

static inline gboolean
ots_reader_get_u8(OtsReader *r, guint8 *v)
{
    if (ots_reader_remaining(r) < 1)
        return FALSE;
    *v = r->data[r->pos++];
    return TRUE;
}

static inline gboolean
ots_reader_get_u16_be(OtsReader *r, guint16 *v)
{
    if (!ots_reader_peek_u16_be(r, 0, v))
        return FALSE;
    r->pos += 2;
    return TRUE;
}

static inline gboolean
ots_reader_get_u16_le(OtsReader *r, guint16 *v)
{
    if (!ots_reader_peek_u16_le(r, 0, v))
        return FALSE;
    r->pos += 2;
    return TRUE;
}

static inline gboolean
ots_reader_get_u24_be(OtsReader *r, guint32 *v)
{
    if (ots_reader_remaining(r) < 3)
        return FALSE;
    const guint8 *p = r->data + r->pos;
    *v = ((guint32)p[0] << 16) | ((guint32)p[1] << 8) | p[2];
    r->pos += 3;
    return TRUE;
}

static inline gboolean
ots_reader_get_u24_le(OtsReader *r, guint32 *v)
{
    if (ots_reader_remaining(r) < 3)
        return FALSE;
    const guint8 *p = r->data + r->pos;
    *v = ((guint32)p[2] << 16) | ((guint32)p[1] << 8) | p[0];
    r->pos += 3;
    return TRUE;
}

static inline gboolean
ots_reader_get_u32_be(OtsReader *r, guint32 *v)
{
    if (ots_reader_remaining(r) < 4)
        return FALSE;
    const guint8 *p = r->data + r->pos;
    *v = ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3];
    r->pos += 4;
    return TRUE;
}

static inline gboolean
ots_reader_get_u32_le(OtsReader *r, guint32 *v)
{
    if (ots_reader_remaining(r) < 4)
        return FALSE;
    const guint8 *p = r->data + r->pos;
    *v = ((guint32)p[3] << 24) | ((guint32)p[2] << 16) | ((guint32)p[1] << 8) | p[0];
    r->pos += 4;
    return TRUE;
}

static inline gboolean
ots_reader_get_u64_be(OtsReader *r, guint64 *v)
{
    guint32 hi, lo;
    gsize save = r->pos;
    if (!ots_reader_get_u32_be(r, &hi) || !ots_reader_get_u32_be(r, &lo)) {
        r->pos = save;
        return FALSE;
    }
    *v = ((guint64)hi << 32) | lo;
    return TRUE;
}

static inline gboolean
ots_reader_get_u64_le(OtsReader *r, guint64 *v)
{
    guint32 hi, lo;
    gsize save = r->pos;
    if (!ots_reader_get_u32_le(r, &lo) || !ots_reader_get_u32_le(r, &hi)) {
        r->pos = save;
        return FALSE;
    }
    *v = ((guint64)hi << 32) | lo;
    return TRUE;
}

/* Borrows @n bytes at the cursor (valid as long as the reader's data) and advances. */
static inline gboolean
ots_reader_get_data(OtsReader *r, gsize n, const guint8 **out)
{
    if (ots_reader_remaining(r) < n)
        return FALSE;
    *out = r->data != NULL ? r->data + r->pos : NULL; /* NULL + 0 is undefined */
    r->pos += n;
    return TRUE;
}

/* Copies @n bytes at the cursor into @dest and advances. */
static inline gboolean
ots_reader_copy(OtsReader *r, void *dest, gsize n)
{
    if (ots_reader_remaining(r) < n)
        return FALSE;
    if (n > 0)
        memcpy(dest, r->data + r->pos, n);
    r->pos += n;
    return TRUE;
}

/* A reader over the next @n bytes; the parent's cursor moves past them. */
static inline gboolean
ots_reader_get_sub_reader(OtsReader *r, OtsReader *sub, gsize n)
{
    if (ots_reader_remaining(r) < n)
        return FALSE;
    ots_reader_init(sub, r->data != NULL ? r->data + r->pos : NULL, n);
    r->pos += n;
    return TRUE;
}

/* A reader over the next @n bytes without moving the parent's cursor. */
static inline gboolean
ots_reader_peek_sub_reader(const OtsReader *r, OtsReader *sub, gsize n)
{
    if (ots_reader_remaining(r) < n)
        return FALSE;
    ots_reader_init(sub, r->data != NULL ? r->data + r->pos : NULL, n);
    return TRUE;
}

G_END_DECLS
