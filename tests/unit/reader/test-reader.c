/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the SDK's OtsReader: every getter at and past its
 * boundary, the cursor left alone on failure, sub readers, and offsets
 * and lengths near G_MAXSIZE that must not wrap around. */

#include <glib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <otsensor/reader.h>

static const guint8 bytes[16] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};

static void
test_init(void)
{
    OtsReader r;
    ots_reader_init(&r, bytes, sizeof(bytes));
    CU_ASSERT_PTR_EQUAL(r.data, bytes);
    CU_ASSERT_EQUAL(r.len, 16);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 16);

    OtsReader m = OTS_READER_INIT(bytes + 4, 5);
    CU_ASSERT_PTR_EQUAL(m.data, bytes + 4);
    CU_ASSERT_EQUAL(m.len, 5);
    CU_ASSERT_EQUAL(m.pos, 0);
    CU_ASSERT_EQUAL(ots_reader_remaining(&m), 5);

    /* Re-initialising resets the cursor. */
    CU_ASSERT_TRUE(ots_reader_skip(&r, 3));
    ots_reader_init(&r, bytes, 2);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 2);
}

static void
test_empty(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 0);
    guint8 u8 = 0x5a;
    guint16 u16 = 0x5a5a;
    guint32 u32 = 0x5a5a5a5a;
    guint64 u64 = 0x5a;
    const guint8 *p = NULL;
    OtsReader sub;

    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_FALSE(ots_reader_get_u8(&r, &u8));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, 0, &u8));
    CU_ASSERT_FALSE(ots_reader_get_u16_be(&r, &u16));
    CU_ASSERT_FALSE(ots_reader_get_u16_le(&r, &u16));
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, 0, &u16));
    CU_ASSERT_FALSE(ots_reader_peek_u16_le(&r, 0, &u16));
    CU_ASSERT_FALSE(ots_reader_get_u24_be(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u24_le(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u32_be(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u32_le(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u64_be(&r, &u64));
    CU_ASSERT_FALSE(ots_reader_get_u64_le(&r, &u64));
    CU_ASSERT_FALSE(ots_reader_skip(&r, 1));
    CU_ASSERT_FALSE(ots_reader_get_data(&r, 1, &p));
    CU_ASSERT_FALSE(ots_reader_get_sub_reader(&r, &sub, 1));
    CU_ASSERT_FALSE(ots_reader_peek_sub_reader(&r, &sub, 1));
    CU_ASSERT_EQUAL(u8, 0x5a);
    CU_ASSERT_EQUAL(u16, 0x5a5a);
    CU_ASSERT_EQUAL(u32, 0x5a5a5a5a);
    CU_ASSERT_EQUAL(u64, 0x5a);
    CU_ASSERT_PTR_NULL(p);

    /* Zero-length operations succeed on an empty reader. */
    CU_ASSERT_TRUE(ots_reader_skip(&r, 0));
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 0));
    CU_ASSERT_TRUE(ots_reader_get_data(&r, 0, &p));
    CU_ASSERT_PTR_EQUAL(p, bytes);
    CU_ASSERT_TRUE(ots_reader_get_sub_reader(&r, &sub, 0));
    CU_ASSERT_EQUAL(ots_reader_remaining(&sub), 0);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);
}

/* No bytes at all (an empty payload may come as NULL, 0): zero-length
 * operations succeed without doing arithmetic on the NULL pointer, which
 * UBSan reports as undefined. */
static void
test_null_empty(void)
{
    OtsReader r = OTS_READER_INIT(NULL, 0);
    const guint8 *p = bytes;
    OtsReader sub = OTS_READER_INIT(bytes, 3);
    guint8 out[1] = {0xee};
    guint8 v;

    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_FALSE(ots_reader_get_u8(&r, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, 0, &v));
    CU_ASSERT_TRUE(ots_reader_skip(&r, 0));
    CU_ASSERT_TRUE(ots_reader_get_data(&r, 0, &p));
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_TRUE(ots_reader_copy(&r, out, 0));
    CU_ASSERT_EQUAL(out[0], 0xee);
    CU_ASSERT_TRUE(ots_reader_get_sub_reader(&r, &sub, 0));
    CU_ASSERT_EQUAL(ots_reader_remaining(&sub), 0);
    CU_ASSERT_TRUE(ots_reader_peek_sub_reader(&r, &sub, 0));
    CU_ASSERT_EQUAL(ots_reader_remaining(&sub), 0);
    CU_ASSERT_FALSE(ots_reader_get_sub_reader(&r, &sub, 1));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);
}

static void
test_set_pos(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 8);

    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 5));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 5);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 3);
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 8)); /* the end is a valid position */
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 2)); /* backwards too */
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 2);

    CU_ASSERT_FALSE(ots_reader_set_pos(&r, 9));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 2);
    CU_ASSERT_FALSE(ots_reader_set_pos(&r, G_MAXSIZE));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 2);
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 0));
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 8);
}

static void
test_skip(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 10);

    CU_ASSERT_TRUE(ots_reader_skip(&r, 0));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);
    CU_ASSERT_TRUE(ots_reader_skip(&r, 4));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 4);
    CU_ASSERT_FALSE(ots_reader_skip(&r, 7));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 4);
    CU_ASSERT_FALSE(ots_reader_skip(&r, G_MAXSIZE));
    CU_ASSERT_FALSE(ots_reader_skip(&r, G_MAXSIZE - 3)); /* pos + n would wrap to 0 */
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 4);
    CU_ASSERT_TRUE(ots_reader_skip(&r, 6)); /* exactly to the end */
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_FALSE(ots_reader_skip(&r, 1));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 10);
}

static void
test_peek_u8(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 6);
    guint8 v = 0;

    CU_ASSERT_TRUE(ots_reader_peek_u8(&r, 0, &v));
    CU_ASSERT_EQUAL(v, 0x01);
    CU_ASSERT_TRUE(ots_reader_peek_u8(&r, 5, &v));
    CU_ASSERT_EQUAL(v, 0x06);
    v = 0xee;
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, 6, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, G_MAXSIZE, &v));
    CU_ASSERT_EQUAL(v, 0xee);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);

    /* Offsets are relative to the cursor. */
    CU_ASSERT_TRUE(ots_reader_skip(&r, 2));
    CU_ASSERT_TRUE(ots_reader_peek_u8(&r, 0, &v));
    CU_ASSERT_EQUAL(v, 0x03);
    CU_ASSERT_TRUE(ots_reader_peek_u8(&r, 3, &v));
    CU_ASSERT_EQUAL(v, 0x06);
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, 4, &v));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 2);
}

static void
test_peek_u16(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 5);
    guint16 v = 0;

    CU_ASSERT_TRUE(ots_reader_peek_u16_be(&r, 0, &v));
    CU_ASSERT_EQUAL(v, 0x0102);
    CU_ASSERT_TRUE(ots_reader_peek_u16_le(&r, 0, &v));
    CU_ASSERT_EQUAL(v, 0x0201);
    CU_ASSERT_TRUE(ots_reader_peek_u16_be(&r, 3, &v)); /* last two bytes */
    CU_ASSERT_EQUAL(v, 0x0405);
    CU_ASSERT_TRUE(ots_reader_peek_u16_le(&r, 3, &v));
    CU_ASSERT_EQUAL(v, 0x0504);

    v = 0xeeee;
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, 4, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u16_le(&r, 4, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, 5, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, G_MAXSIZE, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u16_le(&r, G_MAXSIZE, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, G_MAXSIZE - 1, &v)); /* offset + 2 wraps */
    CU_ASSERT_FALSE(ots_reader_peek_u16_le(&r, G_MAXSIZE - 1, &v));
    CU_ASSERT_EQUAL(v, 0xeeee);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 0);

    /* One byte left: no 16-bit peek at any offset. */
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 4));
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, 0, &v));
    CU_ASSERT_FALSE(ots_reader_peek_u16_le(&r, 0, &v));
    CU_ASSERT_EQUAL(v, 0xeeee);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 4);
}

static void
test_get_u8(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 2);
    guint8 v = 0;

    CU_ASSERT_TRUE(ots_reader_get_u8(&r, &v));
    CU_ASSERT_EQUAL(v, 0x01);
    CU_ASSERT_TRUE(ots_reader_get_u8(&r, &v));
    CU_ASSERT_EQUAL(v, 0x02);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 2);
    v = 0xee;
    CU_ASSERT_FALSE(ots_reader_get_u8(&r, &v));
    CU_ASSERT_EQUAL(v, 0xee);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 2);
}

/* Each multi-byte getter: reads the right value at pos 1, consumes exactly
 * its width, succeeds with exactly its width left and fails, leaving cursor
 * and output alone, with one byte less. */
typedef gboolean (*Get32)(OtsReader *, guint32 *);
typedef gboolean (*Get64)(OtsReader *, guint64 *);

static gboolean
get16be(OtsReader *r, guint32 *v)
{
    guint16 x = (guint16)*v;
    gboolean ok = ots_reader_get_u16_be(r, &x);
    *v = x;
    return ok;
}

static gboolean
get16le(OtsReader *r, guint32 *v)
{
    guint16 x = (guint16)*v;
    gboolean ok = ots_reader_get_u16_le(r, &x);
    *v = x;
    return ok;
}

static void
check_get32(Get32 get, gsize width, guint32 expected_at_1)
{
    OtsReader r = OTS_READER_INIT(bytes, sizeof(bytes));
    guint32 v = 0;

    CU_ASSERT_TRUE(ots_reader_skip(&r, 1));
    CU_ASSERT_TRUE(get(&r, &v));
    CU_ASSERT_EQUAL(v, expected_at_1);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 1 + width);

    /* Exactly width bytes left. */
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, sizeof(bytes) - width));
    CU_ASSERT_TRUE(get(&r, &v));
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);

    /* One byte short. */
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, sizeof(bytes) - width + 1));
    v = (width == 2) ? 0xeeee : 0xeeeeee;
    guint32 before = v;
    CU_ASSERT_FALSE(get(&r, &v));
    CU_ASSERT_EQUAL(v, before);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), sizeof(bytes) - width + 1);
}

static void
test_get_u16_u24_u32(void)
{
    check_get32(get16be, 2, 0x0203);
    check_get32(get16le, 2, 0x0302);
    check_get32(ots_reader_get_u24_be, 3, 0x020304);
    check_get32(ots_reader_get_u24_le, 3, 0x040302);
    check_get32(ots_reader_get_u32_be, 4, 0x02030405);
    check_get32(ots_reader_get_u32_le, 4, 0x05040302);

    /* High bits are not sign-extended. */
    const guint8 high[4] = {0xff, 0xfe, 0xfd, 0xfc};
    OtsReader r = OTS_READER_INIT(high, 4);
    guint32 v;
    guint16 w;
    CU_ASSERT_TRUE(ots_reader_get_u32_be(&r, &v));
    CU_ASSERT_EQUAL(v, 0xfffefdfcu);
    ots_reader_init(&r, high, 4);
    CU_ASSERT_TRUE(ots_reader_get_u32_le(&r, &v));
    CU_ASSERT_EQUAL(v, 0xfcfdfeffu);
    ots_reader_init(&r, high, 4);
    CU_ASSERT_TRUE(ots_reader_get_u24_be(&r, &v));
    CU_ASSERT_EQUAL(v, 0xfffefdu);
    guint8 b;
    CU_ASSERT_TRUE(ots_reader_get_u8(&r, &b));
    CU_ASSERT_EQUAL(b, 0xfc);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    ots_reader_init(&r, high, 4);
    CU_ASSERT_TRUE(ots_reader_get_u16_be(&r, &w));
    CU_ASSERT_EQUAL(w, 0xfffe);
    CU_ASSERT_TRUE(ots_reader_get_u16_le(&r, &w));
    CU_ASSERT_EQUAL(w, 0xfcfd);
}

static void
check_get64(Get64 get, guint64 expected_at_1)
{
    OtsReader r = OTS_READER_INIT(bytes, sizeof(bytes));
    guint64 v = 0;

    CU_ASSERT_TRUE(ots_reader_skip(&r, 1));
    CU_ASSERT_TRUE(get(&r, &v));
    CU_ASSERT_EQUAL(v, expected_at_1);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 9);

    CU_ASSERT_TRUE(ots_reader_set_pos(&r, 8));
    CU_ASSERT_TRUE(get(&r, &v));
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);

    /* 7, 4 and 3 bytes left: the first half may be there, the whole is not;
     * the cursor must come back. */
    for (gsize left = 1; left < 8; left++) {
        CU_ASSERT_TRUE(ots_reader_set_pos(&r, sizeof(bytes) - left));
        v = G_GUINT64_CONSTANT(0xeeeeeeeeeeeeeeee);
        CU_ASSERT_FALSE(get(&r, &v));
        CU_ASSERT_EQUAL(v, G_GUINT64_CONSTANT(0xeeeeeeeeeeeeeeee));
        CU_ASSERT_EQUAL(ots_reader_get_pos(&r), sizeof(bytes) - left);
    }
}

static void
test_get_u64(void)
{
    check_get64(ots_reader_get_u64_be, G_GUINT64_CONSTANT(0x0203040506070809));
    check_get64(ots_reader_get_u64_le, G_GUINT64_CONSTANT(0x0908070605040302));

    const guint8 high[8] = {0xff, 0, 0, 0, 0, 0, 0, 0x80};
    OtsReader r = OTS_READER_INIT(high, 8);
    guint64 v;
    CU_ASSERT_TRUE(ots_reader_get_u64_be(&r, &v));
    CU_ASSERT_EQUAL(v, G_GUINT64_CONSTANT(0xff00000000000080));
    ots_reader_init(&r, high, 8);
    CU_ASSERT_TRUE(ots_reader_get_u64_le(&r, &v));
    CU_ASSERT_EQUAL(v, G_GUINT64_CONSTANT(0x80000000000000ff));
}

static void
test_get_data(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 10);
    const guint8 *p = NULL;

    CU_ASSERT_TRUE(ots_reader_skip(&r, 3));
    CU_ASSERT_TRUE(ots_reader_get_data(&r, 4, &p));
    CU_ASSERT_PTR_EQUAL(p, bytes + 3); /* borrowed, not copied */
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 7);
    CU_ASSERT_TRUE(ots_reader_get_data(&r, 0, &p));
    CU_ASSERT_PTR_EQUAL(p, bytes + 7);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 7);

    p = NULL;
    CU_ASSERT_FALSE(ots_reader_get_data(&r, 4, &p));
    CU_ASSERT_FALSE(ots_reader_get_data(&r, G_MAXSIZE, &p));
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 7);
    CU_ASSERT_TRUE(ots_reader_get_data(&r, 3, &p));
    CU_ASSERT_PTR_EQUAL(p, bytes + 7);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
}

static void
test_copy(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 6);
    guint8 out[8];

    memset(out, 0xee, sizeof(out));
    CU_ASSERT_TRUE(ots_reader_skip(&r, 1));
    CU_ASSERT_TRUE(ots_reader_copy(&r, out, 3));
    CU_ASSERT_EQUAL(memcmp(out, bytes + 1, 3), 0);
    CU_ASSERT_EQUAL(out[3], 0xee);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 4);

    memset(out, 0xee, sizeof(out));
    CU_ASSERT_FALSE(ots_reader_copy(&r, out, 3));
    CU_ASSERT_FALSE(ots_reader_copy(&r, out, G_MAXSIZE));
    for (gsize i = 0; i < sizeof(out); i++)
        CU_ASSERT_EQUAL(out[i], 0xee);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 4);

    CU_ASSERT_TRUE(ots_reader_copy(&r, out, 2));
    CU_ASSERT_EQUAL(out[0], 0x05);
    CU_ASSERT_EQUAL(out[1], 0x06);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_TRUE(ots_reader_copy(&r, out, 0));
}

static void
test_sub_reader(void)
{
    OtsReader r = OTS_READER_INIT(bytes, sizeof(bytes));
    OtsReader sub, subsub;
    guint8 v;
    guint16 h;
    guint32 w;

    CU_ASSERT_TRUE(ots_reader_skip(&r, 2));
    CU_ASSERT_TRUE(ots_reader_get_sub_reader(&r, &sub, 5));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 7); /* the parent moved past it */
    CU_ASSERT_PTR_EQUAL(sub.data, bytes + 2);
    CU_ASSERT_EQUAL(sub.len, 5);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&sub), 0);

    /* The sub reader ends at its own length, though the parent has more. */
    CU_ASSERT_TRUE(ots_reader_get_u32_be(&sub, &w));
    CU_ASSERT_EQUAL(w, 0x03040506);
    CU_ASSERT_FALSE(ots_reader_get_u16_be(&sub, &h));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&sub, 1, &v));
    CU_ASSERT_TRUE(ots_reader_get_u8(&sub, &v));
    CU_ASSERT_EQUAL(v, 0x07);
    CU_ASSERT_FALSE(ots_reader_get_u8(&sub, &v));
    CU_ASSERT_FALSE(ots_reader_set_pos(&sub, 6));
    /* Reading the sub reader does not move the parent. */
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 7);

    /* Sub of a sub, relative to the child's cursor. */
    CU_ASSERT_TRUE(ots_reader_set_pos(&sub, 1));
    CU_ASSERT_TRUE(ots_reader_get_sub_reader(&sub, &subsub, 4));
    CU_ASSERT_PTR_EQUAL(subsub.data, bytes + 3);
    CU_ASSERT_EQUAL(subsub.len, 4);
    CU_ASSERT_FALSE(ots_reader_get_sub_reader(&subsub, &sub, 5));

    /* Too long: fails, parent unchanged, output untouched. */
    OtsReader untouched = {(const guint8 *)0x1, 77, 7};
    OtsReader out = untouched;
    CU_ASSERT_FALSE(ots_reader_get_sub_reader(&r, &out, 10));
    CU_ASSERT_FALSE(ots_reader_get_sub_reader(&r, &out, G_MAXSIZE));
    CU_ASSERT_FALSE(ots_reader_peek_sub_reader(&r, &out, 10));
    CU_ASSERT_FALSE(ots_reader_peek_sub_reader(&r, &out, G_MAXSIZE));
    CU_ASSERT_EQUAL(memcmp(&out, &untouched, sizeof(out)), 0);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 7);

    /* Exactly the rest. */
    CU_ASSERT_TRUE(ots_reader_get_sub_reader(&r, &sub, 9));
    CU_ASSERT_EQUAL(ots_reader_remaining(&sub), 9);
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_TRUE(ots_reader_get_sub_reader(&r, &sub, 0));
    CU_ASSERT_EQUAL(ots_reader_remaining(&sub), 0);
}

static void
test_peek_sub_reader(void)
{
    OtsReader r = OTS_READER_INIT(bytes, 8);
    OtsReader sub;
    guint16 v;

    CU_ASSERT_TRUE(ots_reader_skip(&r, 3));
    CU_ASSERT_TRUE(ots_reader_peek_sub_reader(&r, &sub, 4));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 3); /* the parent stays */
    CU_ASSERT_PTR_EQUAL(sub.data, bytes + 3);
    CU_ASSERT_EQUAL(sub.len, 4);
    CU_ASSERT_EQUAL(sub.pos, 0);
    CU_ASSERT_TRUE(ots_reader_get_u16_be(&sub, &v));
    CU_ASSERT_EQUAL(v, 0x0405);
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 3);

    CU_ASSERT_TRUE(ots_reader_peek_sub_reader(&r, &sub, 5)); /* exactly the rest */
    CU_ASSERT_FALSE(ots_reader_peek_sub_reader(&r, &sub, 6));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), 3);
}

/* A reader whose length and cursor are near G_MAXSIZE: only the failing paths
 * are taken (no byte is read), and none of them may wrap and succeed. */
static void
test_huge_values(void)
{
    OtsReader r = {bytes, G_MAXSIZE, G_MAXSIZE - 1};
    const guint8 *p = NULL;
    OtsReader sub;
    guint8 u8 = 0;
    guint16 u16 = 0;
    guint32 u32 = 0;
    guint64 u64 = 0;

    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 1);
    CU_ASSERT_FALSE(ots_reader_skip(&r, 2));
    CU_ASSERT_FALSE(ots_reader_skip(&r, G_MAXSIZE));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, 1, &u8));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, G_MAXSIZE, &u8));
    CU_ASSERT_FALSE(ots_reader_peek_u16_be(&r, 0, &u16));
    CU_ASSERT_FALSE(ots_reader_peek_u16_le(&r, G_MAXSIZE, &u16));
    CU_ASSERT_FALSE(ots_reader_get_u16_be(&r, &u16));
    CU_ASSERT_FALSE(ots_reader_get_u16_le(&r, &u16));
    CU_ASSERT_FALSE(ots_reader_get_u24_be(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u24_le(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u32_be(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u32_le(&r, &u32));
    CU_ASSERT_FALSE(ots_reader_get_u64_be(&r, &u64));
    CU_ASSERT_FALSE(ots_reader_get_u64_le(&r, &u64));
    CU_ASSERT_FALSE(ots_reader_get_data(&r, 2, &p));
    CU_ASSERT_FALSE(ots_reader_get_data(&r, G_MAXSIZE, &p));
    CU_ASSERT_FALSE(ots_reader_copy(&r, &u64, G_MAXSIZE));
    CU_ASSERT_FALSE(ots_reader_get_sub_reader(&r, &sub, 2));
    CU_ASSERT_FALSE(ots_reader_peek_sub_reader(&r, &sub, G_MAXSIZE));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), G_MAXSIZE - 1);
    CU_ASSERT_TRUE(ots_reader_set_pos(&r, G_MAXSIZE)); /* the end is allowed */
    CU_ASSERT_EQUAL(ots_reader_remaining(&r), 0);
    CU_ASSERT_FALSE(ots_reader_skip(&r, 1));
    CU_ASSERT_FALSE(ots_reader_peek_u8(&r, 0, &u8));
    CU_ASSERT_EQUAL(ots_reader_get_pos(&r), G_MAXSIZE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(u8 + u16 + u32 + u64, 0);

    /* A normal reader with a cursor in the middle and huge offsets. */
    OtsReader m = OTS_READER_INIT(bytes, sizeof(bytes));
    CU_ASSERT_TRUE(ots_reader_skip(&m, 8));
    for (gsize off = G_MAXSIZE - 16; off != 0; off++) {
        CU_ASSERT_FALSE(ots_reader_peek_u8(&m, off, &u8));
        CU_ASSERT_FALSE(ots_reader_peek_u16_be(&m, off, &u16));
        CU_ASSERT_FALSE(ots_reader_skip(&m, off));
        CU_ASSERT_FALSE(ots_reader_get_data(&m, off, &p));
        CU_ASSERT_FALSE(ots_reader_set_pos(&m, off));
    }
    CU_ASSERT_EQUAL(ots_reader_get_pos(&m), 8);
}

/* Walks every getter over every prefix of a buffer: a getter succeeds exactly
 * when its width fits, and the position always stays within the length. */
static void
test_exhaustive_prefixes(void)
{
    for (gsize len = 0; len <= sizeof(bytes); len++) {
        for (gsize pos = 0; pos <= len; pos++) {
            gsize left = len - pos;
            OtsReader r = OTS_READER_INIT(bytes, len);
            guint8 u8;
            guint16 u16;
            guint32 u32;
            guint64 u64;
            const guint8 *p;
            OtsReader sub;

#define CHECK(expr, width)                                                                         \
    do {                                                                                           \
        CU_ASSERT_TRUE(ots_reader_set_pos(&r, pos));                                               \
        gboolean ok_ = (expr);                                                                     \
        CU_ASSERT_EQUAL(ok_, (width) <= left);                                                     \
        CU_ASSERT_EQUAL(ots_reader_get_pos(&r), ok_ ? pos + (width) : pos);                        \
    } while (0)
            CHECK(ots_reader_get_u8(&r, &u8), 1);
            CHECK(ots_reader_get_u16_be(&r, &u16), 2);
            CHECK(ots_reader_get_u16_le(&r, &u16), 2);
            CHECK(ots_reader_get_u24_be(&r, &u32), 3);
            CHECK(ots_reader_get_u24_le(&r, &u32), 3);
            CHECK(ots_reader_get_u32_be(&r, &u32), 4);
            CHECK(ots_reader_get_u32_le(&r, &u32), 4);
            CHECK(ots_reader_get_u64_be(&r, &u64), 8);
            CHECK(ots_reader_get_u64_le(&r, &u64), 8);
            for (gsize n = 0; n <= sizeof(bytes) + 1; n++) {
                CHECK(ots_reader_skip(&r, n), n);
                CHECK(ots_reader_get_data(&r, n, &p), n);
                CHECK(ots_reader_get_sub_reader(&r, &sub, n), n);
                /* Peeks check a width of n (or n + 2) but never move the cursor. */
                CU_ASSERT_TRUE(ots_reader_set_pos(&r, pos));
                CU_ASSERT_EQUAL(ots_reader_peek_sub_reader(&r, &sub, n), n <= left);
                CU_ASSERT_EQUAL(ots_reader_peek_u8(&r, n, &u8), n < left);
                CU_ASSERT_EQUAL(ots_reader_peek_u16_be(&r, n, &u16), n + 2 <= left);
                CU_ASSERT_EQUAL(ots_reader_peek_u16_le(&r, n, &u16), n + 2 <= left);
                CU_ASSERT_EQUAL(ots_reader_get_pos(&r), pos);
            }
#undef CHECK
        }
    }
}

static CU_TestInfo reader_tests[] = {
    {"init", test_init},
    {"empty reader", test_empty},
    {"null data, zero length", test_null_empty},
    {"set_pos", test_set_pos},
    {"skip", test_skip},
    {"peek_u8", test_peek_u8},
    {"peek_u16 be/le", test_peek_u16},
    {"get_u8", test_get_u8},
    {"get_u16/u24/u32 be/le", test_get_u16_u24_u32},
    {"get_u64 be/le", test_get_u64},
    {"get_data", test_get_data},
    {"copy", test_copy},
    {"sub reader", test_sub_reader},
    {"peek sub reader", test_peek_sub_reader},
    {"huge offsets and lengths", test_huge_values},
    {"every getter on every prefix", test_exhaustive_prefixes},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "reader", NULL, NULL, NULL, NULL, reader_tests                                             \
    }
#include "cunit-main.h"
