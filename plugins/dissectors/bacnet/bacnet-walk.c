/* SPDX-License-Identifier: Apache-2.0 */

/* BACnet service walker: application and context tags, and the service data
 * of the common confirmed and unconfirmed services. Each walker writes its
 * fields into w->e (when set) and collects what is out of spec with
 * bacnet_problem(); the caller raises those after the commit. */

#include <math.h>
#include "bacnet-private.h"

const char *const bacnet_fact_keys[N_FACTS] = {
    "name", "vendor", "model", "firmware", "software_version", "serial", "location", "description",
};

void
bacnet_problem(Walk *w, const char *code, const char *fmt, ...)
{
    w->problems++;
    for (guint i = 0; i < w->n_raised; i++)
        if (strcmp(w->raised[i].code, code) == 0)
            return; /* one alert per code and PDU says what is wrong */
    if (w->n_raised >= MAX_PROBLEMS)
        return;
    Problem *p = &w->raised[w->n_raised++];
    p->code = code;
    p->dir = w->dir;
    va_list ap;
    va_start(ap, fmt);
    g_vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
    va_end(ap);
}

void
bacnet_raise_problems(OtsSession *s, Walk *w)
{
    for (guint i = 0; i < w->n_raised; i++)
        ots_session_anomaly(s, w->raised[i].dir, w->raised[i].code, w->raised[i].msg);
    w->n_raised = 0;
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
put_string(Walk *w, const char *k, const char *v)
{
    if (w->e && v)
        ots_event_add_string(w->e, k, v);
}

G_ALWAYS_INLINE static inline void
begin_object(Walk *w, const char *k)
{
    if (w->e)
        ots_event_begin_object(w->e, k);
}

G_ALWAYS_INLINE static inline void
end_object(Walk *w)
{
    if (w->e)
        ots_event_end_object(w->e);
}

G_ALWAYS_INLINE static inline void
begin_array(Walk *w, const char *k)
{
    if (w->e)
        ots_event_begin_array(w->e, k);
}

G_ALWAYS_INLINE static inline void
end_array(Walk *w)
{
    if (w->e)
        ots_event_end_array(w->e);
}

/* ---- tags -------------------------------------------------------------- */

enum { TAG_VALUE, TAG_OPEN, TAG_CLOSE };

typedef struct {
    guint8 number;
    gboolean context;
    guint8 kind;
    guint8 lvt;
    guint32 len; /* value bytes that follow (0 for open/close and booleans) */
} Tag;

/* Reads a tag header; the value bytes are known to be there. On failure
 * the reader has not moved. Written on the bytes directly: it runs for
 * every tag of every PDU (with take(), the largest share of the parser). */
G_ALWAYS_INLINE static inline gboolean
tag_read(OtsReader *r, Tag *t)
{
    gsize left = r->len - r->pos, used = 1;
    if (G_UNLIKELY(left == 0))
        return FALSE; /* before any pointer arithmetic: data may be NULL */
    const guint8 *p = r->data + r->pos;
    guint8 b = p[0];
    t->number = b >> 4;
    t->context = (b & 0x08) != 0;
    t->lvt = b & 0x07;
    t->kind = TAG_VALUE;
    t->len = t->lvt;
    if (G_UNLIKELY(t->number == 15)) {
        if (left < 2)
            return FALSE;
        t->number = p[1];
        used = 2;
    }
    if (t->context && t->lvt == 6) {
        t->kind = TAG_OPEN;
        t->len = 0;
    } else if (t->context && t->lvt == 7) {
        t->kind = TAG_CLOSE;
        t->len = 0;
    } else if (!t->context && t->number == TAG_BOOLEAN) {
        t->len = 0; /* the value is the LVT field */
    } else if (t->lvt == 5) {
        if (left < used + 1)
            return FALSE;
        guint8 ext = p[used++];
        if (ext == 254) {
            if (left < used + 2)
                return FALSE;
            t->len = ((guint32)p[used] << 8) | p[used + 1];
            used += 2;
        } else if (ext == 255) {
            if (left < used + 4)
                return FALSE;
            t->len = ((guint32)p[used] << 24) | ((guint32)p[used + 1] << 16) |
                     ((guint32)p[used + 2] << 8) | p[used + 3];
            used += 4;
        } else {
            t->len = ext;
        }
    }
    if (left - used < t->len)
        return FALSE;
    r->pos += used;
    return TRUE;
}

static gboolean
dec_uint(const guint8 *p, guint32 len, guint64 *v)
{
    if (len < 1 || len > 8)
        return FALSE;
    *v = 0;
    for (guint32 i = 0; i < len; i++)
        *v = (*v << 8) | p[i];
    return TRUE;
}

static gboolean
dec_int(const guint8 *p, guint32 len, gint64 *v)
{
    guint64 u;
    if (!dec_uint(p, len, &u))
        return FALSE;
    if (len < 8 && (p[0] & 0x80))
        u |= ~(guint64)0 << (8 * len); /* sign-extend */
    *v = (gint64)u;
    return TRUE;
}

/* A primitive tag at the cursor: application tag @n (context FALSE) or
 * context tag @n. On a match its value is borrowed into @val / @t.
 * Inlined (as is tag_read()): with the constant tag kind and number of each
 * caller folded in, the walks take 3 % fewer instructions (callgrind). */
G_ALWAYS_INLINE static inline gboolean
take(Walk *w, OtsReader *r, gboolean context, guint8 n, gboolean optional, const char *what, Tag *t,
     const guint8 **val)
{
    gsize save = r->pos;
    if (!tag_read(r, t) || t->context != context || t->kind != TAG_VALUE || t->number != n) {
        r->pos = save;
        if (!optional) {
            if (ots_reader_remaining(r) == 0)
                bacnet_problem(w, "bad_length", "service data ends before %s", what);
            else
                bacnet_problem(w, "bad_tag", "expected %s tag %u (%s)",
                               context ? "context" : "application", n, what);
        }
        return FALSE;
    }
    *val = r->data + r->pos; /* tag_read() checked the value is there */
    r->pos += t->len;
    return TRUE;
}

G_ALWAYS_INLINE static inline gboolean
take_uint(Walk *w, OtsReader *r, gboolean context, guint8 n, gboolean optional, const char *what,
          guint64 *v)
{
    Tag t;
    const guint8 *p;
    if (!take(w, r, context, n, optional, what, &t, &p))
        return FALSE;
    if (!dec_uint(p, t.len, v)) {
        bacnet_problem(w, "bad_tag", "%s: %u-byte unsigned", what, t.len);
        return FALSE;
    }
    return TRUE;
}

static gboolean
take_int(Walk *w, OtsReader *r, gboolean context, guint8 n, gboolean optional, const char *what,
         gint64 *v)
{
    Tag t;
    const guint8 *p;
    if (!take(w, r, context, n, optional, what, &t, &p))
        return FALSE;
    if (!dec_int(p, t.len, v)) {
        bacnet_problem(w, "bad_tag", "%s: %u-byte signed", what, t.len);
        return FALSE;
    }
    return TRUE;
}

G_ALWAYS_INLINE static inline gboolean
take_oid(Walk *w, OtsReader *r, gboolean context, guint8 n, const char *what, guint32 *type,
         guint32 *instance)
{
    Tag t;
    const guint8 *p;
    if (!take(w, r, context, n, FALSE, what, &t, &p))
        return FALSE;
    if (t.len != 4) {
        bacnet_problem(w, "bad_tag", "%s: object identifier of %u bytes", what, t.len);
        return FALSE;
    }
    guint32 v = ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3];
    *type = v >> 22;
    *instance = v & 0x3fffff;
    return TRUE;
}

/* A character string: @str / @len borrow it when its set is UTF-8 (0). */
static gboolean
take_string(Walk *w, OtsReader *r, gboolean context, guint8 n, gboolean optional, const char *what,
            const guint8 **str, gsize *len)
{
    Tag t;
    const guint8 *p;
    if (!take(w, r, context, n, optional, what, &t, &p))
        return FALSE;
    *str = NULL;
    *len = 0;
    if (t.len < 1) {
        bacnet_problem(w, "bad_tag", "%s: character string without a character set", what);
        return FALSE;
    }
    if (p[0] == 0) {
        *str = p + 1;
        *len = t.len - 1;
    }
    return TRUE;
}

static gboolean
take_open(Walk *w, OtsReader *r, guint8 n, gboolean optional, const char *what)
{
    OtsReader c = *r;
    Tag t;
    if (!tag_read(&c, &t) || !t.context || t.kind != TAG_OPEN || t.number != n) {
        if (!optional)
            bacnet_problem(w, "bad_tag", "expected opening tag %u (%s)", n, what);
        return FALSE;
    }
    *r = c;
    return TRUE;
}

static gboolean
peek_close(const OtsReader *r, guint8 n)
{
    OtsReader c = *r;
    Tag t;
    return tag_read(&c, &t) && t.context && t.kind == TAG_CLOSE && t.number == n;
}

static gboolean
take_close(Walk *w, OtsReader *r, guint8 n, const char *what)
{
    Tag t;
    if (!peek_close(r, n)) {
        bacnet_problem(w, "bad_tag", "expected closing tag %u (%s)", n, what);
        return FALSE;
    }
    return tag_read(r, &t);
}

static void
expect_end(Walk *w, OtsReader *r)
{
    gsize rest = ots_reader_remaining(r);
    if (rest > 0) {
        bacnet_problem(w, "bad_length", "%" G_GSIZE_FORMAT " unexpected trailing bytes", rest);
        ots_reader_skip(r, rest);
    }
}

static void
put_object(Walk *w, guint32 type, guint32 instance)
{
    if (!w->e)
        return;
    ots_event_add_uint(w->e, "object_type", type);
    const char *name = bacnet_object_type_name(type);
    if (name)
        ots_event_add_string(w->e, "object_type_name", name);
    ots_event_add_uint(w->e, "object_instance", instance);
}

/* Two decimal digits of @v (< 100) at @o; formatted by hand since dates and
 * times are on the per-event path. */
static char *
put_2digits(char *o, guint v)
{
    *o++ = (char)('0' + v / 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

static void
put_property(Walk *w, guint64 prop)
{
    put_uint(w, "property_id", prop);
    put_string(w, "property", bacnet_property_name(prop));
}

static void
put_date(Walk *w, const char *k, const guint8 *p)
{
    /* yyyy-mm-dd, '*' for an unspecified part */
    char buf[16];
    char *o = buf;
    if (p[0] == 255) {
        *o++ = '*';
    } else {
        guint y = 1900u + p[0];
        o = put_2digits(o, y / 100);
        o = put_2digits(o, y % 100);
    }
    *o++ = '-';
    if (p[1] == 255 || p[1] > 14)
        *o++ = '*';
    else
        o = put_2digits(o, p[1]);
    *o++ = '-';
    if (p[2] == 255 || p[2] > 34)
        *o++ = '*';
    else
        o = put_2digits(o, p[2]);
    *o = 0;
    put_string(w, k, buf);
}

static void
put_time(Walk *w, const char *k, const guint8 *p)
{
    /* hh:mm:ss.cc, '*' for an unspecified part */
    static const char sep[4] = {':', ':', '.', 0};
    char buf[16];
    char *o = buf;
    for (guint i = 0; i < 4; i++) {
        if (p[i] == 255 || p[i] > 99)
            *o++ = '*';
        else
            o = put_2digits(o, p[i]);
        *o++ = sep[i];
    }
    put_string(w, k, buf);
}

static void
note_fact(Walk *w, const guint8 *str, gsize len)
{
    static const struct {
        guint prop;
        guint fact;
    } map[] = {
        {77, FACT_NAME},     {121, FACT_VENDOR}, {70, FACT_MODEL},    {44, FACT_FIRMWARE},
        {12, FACT_SOFTWARE}, {372, FACT_SERIAL}, {58, FACT_LOCATION}, {28, FACT_DESCRIPTION},
    };
    Facts *f = w->facts;
    if (!f || !f->device_object || !str)
        return;
    facts_begin(f);
    for (guint i = 0; i < G_N_ELEMENTS(map); i++) {
        if (map[i].prop == f->property && !f->str[map[i].fact]) {
            f->str[map[i].fact] = str;
            f->len[map[i].fact] = len;
            f->any = TRUE;
        }
    }
}

/* One primitive application value as "value" (+ "value_type"). */
static void
put_primitive(Walk *w, const Tag *t, const guint8 *p)
{
    guint64 u;
    gint64 i;
    switch (t->number) {
    case TAG_NULL:
        put_string(w, "value_type", "null");
        if (w->e)
            ots_event_add_null(w->e, "value");
        break;
    case TAG_BOOLEAN:
        put_string(w, "value_type", "boolean");
        put_bool(w, "value", t->lvt != 0);
        if (t->lvt > 1)
            bacnet_problem(w, "bad_tag", "boolean value %u", t->lvt);
        break;
    case TAG_UNSIGNED:
    case TAG_ENUMERATED:
        put_string(w, "value_type", t->number == TAG_UNSIGNED ? "unsigned" : "enumerated");
        if (dec_uint(p, t->len, &u)) {
            put_uint(w, "value", u);
            if (w->facts && w->facts->device_object &&
                w->facts->property == PROP_VENDOR_IDENTIFIER && t->number == TAG_UNSIGNED) {
                facts_begin(w->facts);
                w->facts->have_vendor_id = TRUE;
                w->facts->vendor_id = u;
                w->facts->any = TRUE;
            }
        } else {
            bacnet_problem(w, "bad_tag", "%u-byte unsigned value", t->len);
        }
        break;
    case TAG_SIGNED:
        put_string(w, "value_type", "signed");
        if (dec_int(p, t->len, &i))
            put_int(w, "value", i);
        else
            bacnet_problem(w, "bad_tag", "%u-byte signed value", t->len);
        break;
    case TAG_REAL:
        put_string(w, "value_type", "real");
        if (t->len == 4) {
            guint32 bits =
                ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3];
            float f;
            memcpy(&f, &bits, sizeof(f));
            if (w->e && isfinite(f))
                ots_event_add_double(w->e, "value", f);
            else if (w->e)
                ots_event_add_null(w->e, "value");
        } else {
            bacnet_problem(w, "bad_tag", "real of %u bytes", t->len);
        }
        break;
    case TAG_DOUBLE:
        put_string(w, "value_type", "double");
        if (t->len == 8) {
            guint64 bits;
            double d;
            dec_uint(p, 8, &bits);
            memcpy(&d, &bits, sizeof(d));
            if (w->e && isfinite(d))
                ots_event_add_double(w->e, "value", d);
            else if (w->e)
                ots_event_add_null(w->e, "value");
        } else {
            bacnet_problem(w, "bad_tag", "double of %u bytes", t->len);
        }
        break;
    case TAG_OCTET_STRING:
        put_string(w, "value_type", "octet_string");
        if (w->e)
            ots_event_add_hex(w->e, "value", p, MIN(t->len, 64u));
        break;
    case TAG_CHARACTER_STRING:
        put_string(w, "value_type", "character_string");
        if (t->len < 1) {
            bacnet_problem(w, "bad_tag", "character string without a character set");
        } else if (p[0] == 0) {
            if (w->e)
                ots_event_add_string_len(w->e, "value", p + 1, MIN(t->len - 1, 256u));
            note_fact(w, p + 1, MIN(t->len - 1, 256u));
        } else {
            put_uint(w, "character_set", p[0]);
        }
        break;
    case TAG_BIT_STRING:
        put_string(w, "value_type", "bit_string");
        if (w->e)
            ots_event_add_hex(w->e, "value", p, MIN(t->len, 64u));
        break;
    case TAG_DATE:
        put_string(w, "value_type", "date");
        if (t->len == 4)
            put_date(w, "value", p);
        else
            bacnet_problem(w, "bad_tag", "date of %u bytes", t->len);
        break;
    case TAG_TIME:
        put_string(w, "value_type", "time");
        if (t->len == 4)
            put_time(w, "value", p);
        else
            bacnet_problem(w, "bad_tag", "time of %u bytes", t->len);
        break;
    case TAG_OBJECT_ID:
        put_string(w, "value_type", "object_identifier");
        if (t->len == 4) {
            guint32 v = ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3];
            begin_object(w, "value");
            put_object(w, v >> 22, v & 0x3fffff);
            end_object(w);
        } else {
            bacnet_problem(w, "bad_tag", "object identifier of %u bytes", t->len);
        }
        break;
    default:
        put_string(w, "value_type", "reserved");
        bacnet_problem(w, "bad_tag", "reserved application tag %u", t->number);
        break;
    }
}

/* The value inside opening/closing tag @n (the opening tag is next): the
 * first primitive element as "value", the element count as "value_count". */
static gboolean
walk_value(Walk *w, OtsReader *r, guint8 n, const char *what)
{
    if (!take_open(w, r, n, FALSE, what))
        return FALSE;
    guint depth = 0, count = 0;
    gboolean first = TRUE;
    Tag t;
    for (;;) {
        if (!tag_read(r, &t)) {
            bacnet_problem(w, "bad_tag", "%s not closed", what);
            ots_reader_skip(r, ots_reader_remaining(r));
            return FALSE;
        }
        if (t.kind == TAG_OPEN) {
            if (++depth > MAX_DEPTH) {
                bacnet_problem(w, "bad_tag", "%s nested deeper than %u", what, MAX_DEPTH);
                ots_reader_skip(r, ots_reader_remaining(r));
                return FALSE;
            }
            if (depth == 1)
                count++;
            continue;
        }
        if (t.kind == TAG_CLOSE) {
            if (depth == 0) {
                if (t.number != n) {
                    bacnet_problem(w, "bad_tag", "%s closed by tag %u", what, t.number);
                    return FALSE;
                }
                break;
            }
            depth--;
            continue;
        }
        const guint8 *p = NULL;
        ots_reader_get_data(r, t.len, &p);
        if (depth > 0)
            continue;
        count++;
        if (first && !t.context) {
            put_primitive(w, &t, p);
            first = FALSE;
        }
    }
    if (count != 1)
        put_uint(w, "value_count", count);
    return TRUE;
}

/* ---- services ---------------------------------------------------------- */

static gboolean
walk_object_property(Walk *w, OtsReader *r, guint8 ctx_oid, guint8 ctx_prop, guint8 ctx_index)
{
    Ident id = {.set = TRUE};
    if (!take_oid(w, r, TRUE, ctx_oid, "object identifier", &id.type, &id.instance))
        return FALSE;
    if (!take_uint(w, r, TRUE, ctx_prop, FALSE, "property identifier", &id.property)) {
        put_object(w, id.type, id.instance);
        return FALSE;
    }
    id.has_index = take_uint(w, r, TRUE, ctx_index, TRUE, "array index", &id.index);
    if (w->ident)
        *w->ident = id;
    const Ident *q = w->echo;
    gboolean same = q && q->set && q->type == id.type && q->instance == id.instance &&
                    q->property == id.property && q->has_index == id.has_index &&
                    (!id.has_index || q->index == id.index);
    if (!same) {
        put_object(w, id.type, id.instance);
        put_property(w, id.property);
        if (id.has_index)
            put_uint(w, "array_index", id.index);
    }
    if (w->facts) {
        w->facts->device_object = id.type == OBJECT_DEVICE;
        w->facts->instance = id.instance;
        w->facts->property = id.property;
    }
    return TRUE;
}

static void
walk_priority(Walk *w, OtsReader *r, guint8 ctx)
{
    guint64 prio;
    if (!take_uint(w, r, TRUE, ctx, TRUE, "priority", &prio))
        return;
    put_uint(w, "priority", prio);
    if (prio < 1 || prio > 16)
        bacnet_problem(w, "bad_value", "write priority %" G_GUINT64_FORMAT " outside 1..16", prio);
}

static void
walk_read_property(Walk *w, OtsReader *r, gboolean ack)
{
    if (!walk_object_property(w, r, 0, 1, 2))
        return;
    if (ack && !walk_value(w, r, 3, "property value"))
        return;
    expect_end(w, r);
}

static void
walk_write_property(Walk *w, OtsReader *r)
{
    if (!walk_object_property(w, r, 0, 1, 2) || !walk_value(w, r, 3, "property value"))
        return;
    walk_priority(w, r, 4);
    expect_end(w, r);
}

/* Runs @item over each element of a list, emitting at most MAX_ITEMS. */
static void
walk_list(Walk *w, OtsReader *r, const char *key, guint8 close_tag,
          gboolean (*item)(Walk *, OtsReader *))
{
    OtsEvent *e = w->e;
    guint n = 0;
    begin_array(w, key);
    while (ots_reader_remaining(r) > 0 && !(close_tag != 0xff && peek_close(r, close_tag))) {
        gsize before = ots_reader_get_pos(r);
        if (n == MAX_ITEMS)
            w->e = NULL; /* keep walking for problems, stop writing */
        begin_object(w, NULL);
        gboolean ok = item(w, r);
        end_object(w);
        n++;
        if (!ok || ots_reader_get_pos(r) == before) {
            ots_reader_skip(r, ots_reader_remaining(r));
            break;
        }
    }
    w->e = e;
    end_array(w);
    if (n > MAX_ITEMS)
        put_uint(w, g_str_equal(key, "objects") ? "objects_total" : "items_total", n);
}

/* A property reference: [@prop_tag] property identifier, then an optional
 * [@prop_tag + 1] array index (ReadPropertyMultiple, WritePropertyMultiple). */
static gboolean
take_property_ref(Walk *w, OtsReader *r, guint prop_tag, guint64 *prop)
{
    guint64 index;
    if (!take_uint(w, r, TRUE, prop_tag, FALSE, "property identifier", prop))
        return FALSE;
    put_property(w, *prop);
    if (take_uint(w, r, TRUE, prop_tag + 1, TRUE, "array index", &index))
        put_uint(w, "array_index", index);
    return TRUE;
}

/* [0] object identifier, then [1] a list of @what walked with @item. */
static gboolean
take_object_list(Walk *w, OtsReader *r, const char *what,
                 gboolean (*item)(Walk *w, OtsReader *r), gboolean device_facts)
{
    guint32 type, instance;
    if (!take_oid(w, r, TRUE, 0, "object identifier", &type, &instance))
        return FALSE;
    put_object(w, type, instance);
    if (device_facts && w->facts) {
        w->facts->device_object = type == OBJECT_DEVICE;
        w->facts->instance = instance;
    }
    if (!take_open(w, r, 1, FALSE, what))
        return FALSE;
    walk_list(w, r, "properties", 1, item);
    return take_close(w, r, 1, what);
}

static gboolean
rpm_request_property(Walk *w, OtsReader *r)
{
    guint64 prop;
    return take_property_ref(w, r, 0, &prop);
}

static gboolean
rpm_request_object(Walk *w, OtsReader *r)
{
    return take_object_list(w, r, "property references", rpm_request_property, FALSE);
}

static gboolean
rpm_ack_property(Walk *w, OtsReader *r)
{
    guint64 prop;
    if (!take_property_ref(w, r, 2, &prop))
        return FALSE;
    if (w->facts)
        w->facts->property = prop;
    if (take_open(w, r, 5, TRUE, "property access error")) {
        guint64 cls, code;
        if (!take_uint(w, r, FALSE, TAG_ENUMERATED, FALSE, "error class", &cls) ||
            !take_uint(w, r, FALSE, TAG_ENUMERATED, FALSE, "error code", &code))
            return FALSE;
        put_uint(w, "error_class", cls);
        put_string(w, "error_class_name", bacnet_error_class_name(cls));
        put_uint(w, "error_code", code);
        return take_close(w, r, 5, "property access error");
    }
    return walk_value(w, r, 4, "property value");
}

static gboolean
rpm_ack_object(Walk *w, OtsReader *r)
{
    return take_object_list(w, r, "property results", rpm_ack_property, TRUE);
}

static gboolean
wpm_property(Walk *w, OtsReader *r)
{
    guint64 prop;
    if (!take_property_ref(w, r, 0, &prop) || !walk_value(w, r, 2, "property value"))
        return FALSE;
    walk_priority(w, r, 3);
    return TRUE;
}

static gboolean
wpm_object(Walk *w, OtsReader *r)
{
    return take_object_list(w, r, "property values", wpm_property, FALSE);
}

static void
walk_subscribe_cov(Walk *w, OtsReader *r)
{
    guint64 pid, v;
    guint32 type, instance;
    if (!take_uint(w, r, TRUE, 0, FALSE, "process identifier", &pid))
        return;
    put_uint(w, "process_id", pid);
    if (!take_oid(w, r, TRUE, 1, "monitored object", &type, &instance))
        return;
    put_object(w, type, instance);
    gboolean confirmed = take_uint(w, r, TRUE, 2, TRUE, "issue confirmed", &v);
    if (confirmed)
        put_bool(w, "issue_confirmed_notifications", v != 0);
    if (take_uint(w, r, TRUE, 3, TRUE, "lifetime", &v))
        put_uint(w, "lifetime", v);
    put_bool(w, "cancellation", !confirmed);
    expect_end(w, r);
}

static gboolean
cov_value(Walk *w, OtsReader *r)
{
    return wpm_property(w, r);
}

static void
walk_cov_notification(Walk *w, OtsReader *r)
{
    guint64 pid, remaining;
    guint32 type, instance;
    if (!take_uint(w, r, TRUE, 0, FALSE, "process identifier", &pid))
        return;
    put_uint(w, "process_id", pid);
    if (!take_oid(w, r, TRUE, 1, "initiating device", &type, &instance))
        return;
    put_uint(w, "initiating_device_instance", instance);
    if (!take_oid(w, r, TRUE, 2, "monitored object", &type, &instance))
        return;
    put_object(w, type, instance);
    if (!take_uint(w, r, TRUE, 3, FALSE, "time remaining", &remaining))
        return;
    put_uint(w, "time_remaining", remaining);
    if (!take_open(w, r, 4, FALSE, "list of values"))
        return;
    walk_list(w, r, "values", 4, cov_value);
    if (take_close(w, r, 4, "list of values"))
        expect_end(w, r);
}

static void
walk_reinitialize(Walk *w, OtsReader *r)
{
    guint64 state;
    const guint8 *pw;
    gsize pw_len;
    if (!take_uint(w, r, TRUE, 0, FALSE, "reinitialized state", &state))
        return;
    put_uint(w, "reinitialized_state", state);
    put_string(w, "reinitialized_state_name", bacnet_reinit_state_name(state));
    if (state > 7)
        bacnet_problem(w, "bad_value", "reinitialized state %" G_GUINT64_FORMAT, state);
    /* The password itself is a secret: only say whether one was sent. */
    put_bool(w, "password_present", take_string(w, r, TRUE, 1, TRUE, "password", &pw, &pw_len));
    expect_end(w, r);
}

static void
walk_dcc(Walk *w, OtsReader *r)
{
    guint64 duration, state;
    const guint8 *pw;
    gsize pw_len;
    if (take_uint(w, r, TRUE, 0, TRUE, "time duration", &duration))
        put_uint(w, "time_duration", duration);
    if (!take_uint(w, r, TRUE, 1, FALSE, "enable/disable", &state))
        return;
    put_uint(w, "enable_disable", state);
    put_string(w, "enable_disable_name", bacnet_dcc_name(state));
    if (state > 2)
        bacnet_problem(w, "bad_value", "enable/disable %" G_GUINT64_FORMAT, state);
    put_bool(w, "password_present", take_string(w, r, TRUE, 2, TRUE, "password", &pw, &pw_len));
    expect_end(w, r);
}

/* Stream ([0]) or record ([1]) access of the atomic file services. */
static void
walk_file_access(Walk *w, OtsReader *r, gboolean data_follows, gboolean ack)
{
    gint64 start;
    guint64 count;
    Tag t;
    const guint8 *p;
    gboolean stream = take_open(w, r, 0, TRUE, "stream access");
    if (!stream && !take_open(w, r, 1, FALSE, "record access"))
        return;
    put_string(w, "access", stream ? "stream" : "record");
    if (!take_int(w, r, FALSE, TAG_SIGNED, FALSE, stream ? "start position" : "start record",
                  &start))
        return;
    put_int(w, stream ? "start_position" : "start_record", start);
    if (stream && data_follows) {
        if (!take(w, r, FALSE, TAG_OCTET_STRING, FALSE, "file data", &t, &p))
            return;
        put_uint(w, "data_length", t.len);
    } else {
        if (!take_uint(w, r, FALSE, TAG_UNSIGNED, FALSE, "count", &count))
            return;
        put_uint(
            w, stream ? "requested_octet_count" : (ack ? "returned_record_count" : "record_count"),
            count);
        if (!stream && data_follows) {
            guint64 total = 0;
            while (take(w, r, FALSE, TAG_OCTET_STRING, TRUE, "file record", &t, &p))
                total += t.len;
            put_uint(w, "data_length", total);
        }
    }
    if (take_close(w, r, stream ? 0 : 1, "file access"))
        expect_end(w, r);
}

static void
walk_atomic_file_request(Walk *w, OtsReader *r, gboolean write)
{
    guint32 type, instance;
    if (!take_oid(w, r, FALSE, TAG_OBJECT_ID, "file identifier", &type, &instance))
        return;
    put_object(w, type, instance);
    walk_file_access(w, r, write, FALSE);
}

static void
walk_atomic_read_ack(Walk *w, OtsReader *r)
{
    Tag t;
    const guint8 *p;
    if (!take(w, r, FALSE, TAG_BOOLEAN, FALSE, "end of file", &t, &p))
        return;
    put_bool(w, "end_of_file", t.lvt != 0);
    walk_file_access(w, r, TRUE, TRUE);
}

static void
walk_atomic_write_ack(Walk *w, OtsReader *r)
{
    gint64 v;
    if (take_int(w, r, TRUE, 0, TRUE, "start position", &v))
        put_int(w, "start_position", v);
    else if (take_int(w, r, TRUE, 1, FALSE, "start record", &v))
        put_int(w, "start_record", v);
    else
        return;
    expect_end(w, r);
}

static void
walk_who_is(Walk *w, OtsReader *r)
{
    guint64 low, high;
    if (take_uint(w, r, TRUE, 0, TRUE, "low limit", &low)) {
        put_uint(w, "low_limit", low);
        if (!take_uint(w, r, TRUE, 1, FALSE, "high limit", &high))
            return;
        put_uint(w, "high_limit", high);
        if (low > high || high > 0x3fffff)
            bacnet_problem(w, "bad_value", "who-is range %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT,
                           low, high);
    }
    expect_end(w, r);
}

static gboolean
walk_i_am(Walk *w, OtsReader *r, IAm *out)
{
    guint32 type;
    IAm a;
    if (!take_oid(w, r, FALSE, TAG_OBJECT_ID, "device identifier", &type, &a.instance))
        return FALSE;
    put_object(w, type, a.instance);
    if (type != OBJECT_DEVICE)
        bacnet_problem(w, "bad_value", "i-am for object type %u", type);
    if (!take_uint(w, r, FALSE, TAG_UNSIGNED, FALSE, "max APDU length", &a.max_apdu))
        return FALSE;
    put_uint(w, "max_apdu_length_accepted", a.max_apdu);
    if (!take_uint(w, r, FALSE, TAG_ENUMERATED, FALSE, "segmentation", &a.segmentation))
        return FALSE;
    put_uint(w, "segmentation_supported", a.segmentation);
    put_string(w, "segmentation_supported_name", bacnet_segmentation_name(a.segmentation));
    if (!take_uint(w, r, FALSE, TAG_UNSIGNED, FALSE, "vendor identifier", &a.vendor_id))
        return FALSE;
    put_uint(w, "vendor_id", a.vendor_id);
    expect_end(w, r);
    if (out)
        *out = a;
    return type == OBJECT_DEVICE;
}

static void
walk_who_has(Walk *w, OtsReader *r)
{
    guint64 low, high;
    guint32 type, instance;
    const guint8 *name;
    gsize len;
    if (take_uint(w, r, TRUE, 0, TRUE, "low limit", &low)) {
        put_uint(w, "low_limit", low);
        if (!take_uint(w, r, TRUE, 1, FALSE, "high limit", &high))
            return;
        put_uint(w, "high_limit", high);
    }
    if (take_string(w, r, TRUE, 3, TRUE, "object name", &name, &len)) {
        if (w->e && name)
            ots_event_add_string_len(w->e, "object_name", name, MIN(len, 256u));
    } else if (take_oid(w, r, TRUE, 2, "object identifier or name", &type, &instance)) {
        put_object(w, type, instance);
    } else {
        return;
    }
    expect_end(w, r);
}

static void
walk_i_have(Walk *w, OtsReader *r)
{
    guint32 type, instance;
    const guint8 *name;
    gsize len;
    if (!take_oid(w, r, FALSE, TAG_OBJECT_ID, "device identifier", &type, &instance))
        return;
    put_uint(w, "device_instance", instance);
    if (!take_oid(w, r, FALSE, TAG_OBJECT_ID, "object identifier", &type, &instance))
        return;
    put_object(w, type, instance);
    if (!take_string(w, r, FALSE, TAG_CHARACTER_STRING, FALSE, "object name", &name, &len))
        return;
    if (w->e && name)
        ots_event_add_string_len(w->e, "object_name", name, MIN(len, 256u));
    expect_end(w, r);
}

static void
walk_time_sync(Walk *w, OtsReader *r)
{
    Tag t;
    const guint8 *p;
    if (!take(w, r, FALSE, TAG_DATE, FALSE, "date", &t, &p))
        return;
    if (t.len != 4) {
        bacnet_problem(w, "bad_tag", "date of %u bytes", t.len);
        return;
    }
    put_date(w, "date", p);
    if (!take(w, r, FALSE, TAG_TIME, FALSE, "time", &t, &p))
        return;
    if (t.len != 4) {
        bacnet_problem(w, "bad_tag", "time of %u bytes", t.len);
        return;
    }
    put_time(w, "time", p);
    expect_end(w, r);
}

/* The error class and code: the first two application enumerations, at any
 * depth (some services wrap them in [0]). */
void
bacnet_walk_error(Walk *w, OtsReader *r)
{
    guint64 v[2];
    guint n = 0;
    Tag t;
    while (n < 2 && tag_read(r, &t)) {
        const guint8 *p = NULL;
        ots_reader_get_data(r, t.len, &p);
        if (t.kind == TAG_VALUE && !t.context && t.number == TAG_ENUMERATED &&
            dec_uint(p, t.len, &v[n]))
            n++;
    }
    if (n < 2) {
        bacnet_problem(w, "bad_tag", "error PDU without error class and code");
        return;
    }
    put_uint(w, "error_class", v[0]);
    put_string(w, "error_class_name", bacnet_error_class_name(v[0]));
    put_uint(w, "error_code", v[1]);
    ots_reader_skip(r, ots_reader_remaining(r));
}

void
bacnet_walk_confirmed_request(Walk *w, OtsReader *r, guint8 service)
{
    switch (service) {
    case SC_READ_PROPERTY:
        walk_read_property(w, r, FALSE);
        break;
    case SC_WRITE_PROPERTY:
        walk_write_property(w, r);
        break;
    case SC_READ_PROPERTY_MULTIPLE:
        walk_list(w, r, "objects", 0xff, rpm_request_object);
        break;
    case SC_WRITE_PROPERTY_MULTIPLE:
        walk_list(w, r, "objects", 0xff, wpm_object);
        break;
    case SC_SUBSCRIBE_COV:
        walk_subscribe_cov(w, r);
        break;
    case SC_CONFIRMED_COV_NOTIFICATION:
        walk_cov_notification(w, r);
        break;
    case SC_ATOMIC_READ_FILE:
        walk_atomic_file_request(w, r, FALSE);
        break;
    case SC_ATOMIC_WRITE_FILE:
        walk_atomic_file_request(w, r, TRUE);
        break;
    case SC_REINITIALIZE_DEVICE:
        walk_reinitialize(w, r);
        break;
    case SC_DEVICE_COMMUNICATION_CONTROL:
        walk_dcc(w, r);
        break;
    default:
        put_uint(w, "service_data_length", ots_reader_remaining(r));
        break;
    }
}

void
bacnet_walk_complex_ack(Walk *w, OtsReader *r, guint8 service)
{
    switch (service) {
    case SC_READ_PROPERTY:
        walk_read_property(w, r, TRUE);
        break;
    case SC_READ_PROPERTY_MULTIPLE:
        walk_list(w, r, "objects", 0xff, rpm_ack_object);
        break;
    case SC_ATOMIC_READ_FILE:
        walk_atomic_read_ack(w, r);
        break;
    case SC_ATOMIC_WRITE_FILE:
        walk_atomic_write_ack(w, r);
        break;
    default:
        put_uint(w, "service_data_length", ots_reader_remaining(r));
        break;
    }
}

void
bacnet_walk_unconfirmed(Walk *w, OtsReader *r, guint8 service, IAm *iam, gboolean *have_iam)
{
    switch (service) {
    case SU_WHO_IS:
        walk_who_is(w, r);
        break;
    case SU_I_AM:
        *have_iam = walk_i_am(w, r, iam);
        break;
    case SU_WHO_HAS:
        walk_who_has(w, r);
        break;
    case SU_I_HAVE:
        walk_i_have(w, r);
        break;
    case SU_UNCONFIRMED_COV_NOTIFICATION:
        walk_cov_notification(w, r);
        break;
    case SU_TIME_SYNCHRONIZATION:
    case SU_UTC_TIME_SYNCHRONIZATION:
        walk_time_sync(w, r);
        break;
    default:
        put_uint(w, "service_data_length", ots_reader_remaining(r));
        break;
    }
}
