/* SPDX-License-Identifier: Apache-2.0 */

/* Why our own parser and not libhttp-parser (nodejs http-parser 2.9, the only
 * HTTP parser library in Debian 12): it is archived upstream (no fixes any
 * more), bounds only the total header size and only at compile time, has no
 * bound on the header count or the body, and is callback-driven, so the
 * uplink would still have to assemble and bound status, headers and body
 * itself. The uplink reads exactly one kind of message: the response to its
 * own POST. That needs a status line, a handful of headers, and a body
 * framed by Content-Length, chunked encoding or the close — small enough to
 * write with every bound explicit and to fuzz (tests/fuzz/fuzz-http.c). */

#include "core/uplink/http.h"

#include <stdio.h>
#include <string.h>

G_DEFINE_QUARK(ots - http - error - quark, ots_http_error)

typedef enum {
    ST_STATUS,
    ST_HEADER,
    ST_BODY_LENGTH,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_END,
    ST_TRAILER,
    ST_BODY_EOF,
    ST_DONE,
    ST_ERROR,
} ParseState;

typedef struct {
    char *name;
    char *value;
} Header;

struct _OtsHttpParser {
    OtsHttpLimits limits;
    ParseState state;
    GString *line;
    gsize head_bytes;
    guint n_interim;
    guint minor;
    guint status;
    char *reason;
    GArray *headers; /* Header */
    gboolean close;
    guint64 remaining; /* body or chunk bytes still to come */
    GByteArray *body;
};

static void
header_clear(gpointer p)
{
    Header *h = p;
    g_free(h->name);
    g_free(h->value);
}

OtsHttpParser *
ots_http_parser_new(const OtsHttpLimits *limits)
{
    static const OtsHttpLimits defaults = OTS_HTTP_LIMITS_DEFAULT;
    OtsHttpParser *p = g_new0(OtsHttpParser, 1);

    p->limits = limits ? *limits : defaults;
    p->line = g_string_sized_new(128);
    p->headers = g_array_new(FALSE, TRUE, sizeof(Header));
    g_array_set_clear_func(p->headers, header_clear);
    p->body = g_byte_array_new();
    return p;
}

static void
reset_message(OtsHttpParser *p)
{
    p->state = ST_STATUS;
    g_string_truncate(p->line, 0);
    p->head_bytes = 0;
    p->minor = 0;
    p->status = 0;
    g_clear_pointer(&p->reason, g_free);
    g_array_set_size(p->headers, 0);
    p->close = FALSE;
    p->remaining = 0;
    g_byte_array_set_size(p->body, 0);
}

void
ots_http_parser_reset(OtsHttpParser *p)
{
    reset_message(p);
    p->n_interim = 0;
}

void
ots_http_parser_free(OtsHttpParser *p)
{
    if (!p)
        return;
    g_string_free(p->line, TRUE);
    g_free(p->reason);
    g_array_unref(p->headers);
    g_byte_array_unref(p->body);
    g_free(p);
}

static OtsHttpParseResult G_GNUC_PRINTF(4, 5)
    fail(OtsHttpParser *p, GError **error, OtsHttpError code, const char *fmt, ...)
{
    va_list ap;

    p->state = ST_ERROR;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(error, OTS_HTTP_ERROR, code, msg);
    return OTS_HTTP_PARSE_ERROR;
}

static gboolean
is_tchar(guchar c)
{
    return g_ascii_isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A complete line is in p->line (LF included). Strips CRLF or LF and
 * refuses control bytes other than HTAB inside. */
static gboolean
take_line(OtsHttpParser *p)
{
    GString *l = p->line;

    g_string_truncate(l, l->len - 1);
    if (l->len > 0 && l->str[l->len - 1] == '\r')
        g_string_truncate(l, l->len - 1);
    for (gsize i = 0; i < l->len; i++) {
        guchar c = (guchar)l->str[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return FALSE;
    }
    return TRUE;
}

static gboolean
parse_status_line(OtsHttpParser *p)
{
    const char *s = p->line->str;

    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (p->line->len < 12 || strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
        s[8] != ' ' || !g_ascii_isdigit(s[9]) || !g_ascii_isdigit(s[10]) || !g_ascii_isdigit(s[11]))
        return FALSE;
    if (p->line->len > 12 && s[12] != ' ')
        return FALSE;
    p->minor = (guint)(s[7] - '0');
    p->status = (guint)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
    if (p->status < 100 || p->status > 599)
        return FALSE;
    p->reason = g_strdup(p->line->len > 13 ? s + 13 : "");
    return TRUE;
}

static gboolean
parse_header_line(OtsHttpParser *p)
{
    char *s = p->line->str;
    char *colon = strchr(s, ':');

    if (!colon || colon == s)
        return FALSE;
    for (char *c = s; c < colon; c++)
        if (!is_tchar((guchar)*c))
            return FALSE; /* also refuses whitespace before the colon */
    Header h = {
        .name = g_strndup(s, (gsize)(colon - s)),
        .value = g_strstrip(g_strdup(colon + 1)),
    };
    g_array_append_val(p->headers, h);
    return TRUE;
}

const char *
ots_http_parser_get_header(const OtsHttpParser *p, const char *name)
{
    for (guint i = p->headers->len; i > 0; i--) {
        const Header *h = &g_array_index(p->headers, Header, i - 1);
        if (g_ascii_strcasecmp(h->name, name) == 0)
            return h->value;
    }
    return NULL;
}

static guint
count_header(const OtsHttpParser *p, const char *name)
{
    guint n = 0;
    for (guint i = 0; i < p->headers->len; i++)
        if (g_ascii_strcasecmp(g_array_index(p->headers, Header, i).name, name) == 0)
            n++;
    return n;
}

static gboolean
has_token(const char *list, const char *token)
{
    g_auto(GStrv) parts = g_strsplit(list, ",", 32);
    for (guint i = 0; parts[i]; i++)
        if (g_ascii_strcasecmp(g_strstrip(parts[i]), token) == 0)
            return TRUE;
    return FALSE;
}

/* Decimal digits only, no sign, no overflow. */
static gboolean
parse_u64(const char *s, guint64 *out)
{
    guint64 v = 0;

    if (*s == '\0')
        return FALSE;
    for (; *s; s++) {
        if (!g_ascii_isdigit(*s))
            return FALSE;
        guint d = (guint)(*s - '0');
        if (v > (G_MAXUINT64 - d) / 10)
            return FALSE;
        v = v * 10 + d;
    }
    *out = v;
    return TRUE;
}

/* The head is complete: decides how the body is framed. */
static OtsHttpParseResult
end_of_head(OtsHttpParser *p, GError **error)
{
    const char *conn = ots_http_parser_get_header(p, "Connection");
    const char *te = ots_http_parser_get_header(p, "Transfer-Encoding");
    const char *cl = ots_http_parser_get_header(p, "Content-Length");

    if (p->status < 200) {
        if (p->status == 101)
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "unexpected 101 Switching Protocols");
        if (++p->n_interim > p->limits.max_interim)
            return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "more than %u interim responses",
                        p->limits.max_interim);
        reset_message(p);
        return OTS_HTTP_PARSE_NEED_MORE;
    }
    p->close = p->minor == 0 ? !(conn && has_token(conn, "keep-alive"))
                             : (conn && has_token(conn, "close"));
    if (p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
        return OTS_HTTP_PARSE_DONE;
    }
    if (te) {
        if (count_header(p, "Transfer-Encoding") != 1 || g_ascii_strcasecmp(te, "chunked") != 0)
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "unsupported Transfer-Encoding");
        if (cl)
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED,
                        "both Transfer-Encoding and Content-Length");
        p->state = ST_CHUNK_SIZE;
        return OTS_HTTP_PARSE_NEED_MORE;
    }
    if (cl) {
        guint64 n;
        for (guint i = 0; i < p->headers->len; i++) {
            const Header *h = &g_array_index(p->headers, Header, i);
            if (g_ascii_strcasecmp(h->name, "Content-Length") == 0 && strcmp(h->value, cl) != 0)
                return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "conflicting Content-Length");
        }
        if (!parse_u64(cl, &n))
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "bad Content-Length");
        if (n > p->limits.max_body)
            return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE,
                        "body of %" G_GUINT64_FORMAT " bytes exceeds %" G_GSIZE_FORMAT, n,
                        p->limits.max_body);
        p->remaining = n;
        p->state = n == 0 ? ST_DONE : ST_BODY_LENGTH;
        return n == 0 ? OTS_HTTP_PARSE_DONE : OTS_HTTP_PARSE_NEED_MORE;
    }
    p->close = TRUE;
    p->state = ST_BODY_EOF;
    return OTS_HTTP_PARSE_NEED_MORE;
}

static OtsHttpParseResult
chunk_size_line(OtsHttpParser *p, GError **error)
{
    const char *s = p->line->str;
    guint64 n = 0;
    guint digits = 0;

    for (; g_ascii_isxdigit(*s); s++) {
        if (++digits > 15)
            return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "chunk size too large");
        n = n * 16 + (guint64)g_ascii_xdigit_value(*s);
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (digits == 0 || (*s != '\0' && *s != ';'))
        return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "bad chunk size line");
    if (n > p->limits.max_body - p->body->len)
        return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "chunked body exceeds %" G_GSIZE_FORMAT,
                    p->limits.max_body);
    p->remaining = n;
    p->state = n == 0 ? ST_TRAILER : ST_CHUNK_DATA;
    return OTS_HTTP_PARSE_NEED_MORE;
}

/* A whole line arrived in the current state. */
static OtsHttpParseResult
on_line(OtsHttpParser *p, GError **error)
{
    if (!take_line(p))
        return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "control character in response head");
    switch (p->state) {
    case ST_STATUS:
        if (!parse_status_line(p))
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "bad status line");
        p->state = ST_HEADER;
        return OTS_HTTP_PARSE_NEED_MORE;
    case ST_HEADER:
        if (p->line->len == 0)
            return end_of_head(p, error);
        if (p->headers->len >= p->limits.max_headers)
            return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "more than %u headers",
                        p->limits.max_headers);
        if (!parse_header_line(p))
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "bad header line");
        return OTS_HTTP_PARSE_NEED_MORE;
    case ST_CHUNK_SIZE:
        return chunk_size_line(p, error);
    case ST_CHUNK_END:
        if (p->line->len != 0)
            return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "chunk not followed by CRLF");
        p->state = ST_CHUNK_SIZE;
        return OTS_HTTP_PARSE_NEED_MORE;
    case ST_TRAILER:
        if (p->line->len == 0) {
            p->state = ST_DONE;
            return OTS_HTTP_PARSE_DONE;
        }
        /* Trailer fields are counted as headers and otherwise ignored. */
        if (++p->n_interim > p->limits.max_interim + p->limits.max_headers)
            return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "too many trailer fields");
        return OTS_HTTP_PARSE_NEED_MORE;
    default:
        g_assert_not_reached();
    }
}

static gsize
line_limit(const OtsHttpParser *p)
{
    switch (p->state) {
    case ST_STATUS:
        return p->limits.max_status_line;
    case ST_HEADER:
    case ST_TRAILER:
        return p->limits.max_header_line;
    default:
        return 1024; /* chunk size line with extensions, chunk CRLF */
    }
}

OtsHttpParseResult
ots_http_parser_feed(OtsHttpParser *p, const guint8 *data, gsize len, gsize *consumed,
                     GError **error)
{
    gsize i = 0;
    OtsHttpParseResult r = OTS_HTTP_PARSE_NEED_MORE;

    *consumed = 0;
    if (p->state == ST_ERROR)
        return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "parser is in error");
    if (p->state == ST_DONE)
        return OTS_HTTP_PARSE_DONE;
    while (i < len && r == OTS_HTTP_PARSE_NEED_MORE) {
        switch (p->state) {
        case ST_BODY_LENGTH:
        case ST_CHUNK_DATA: {
            gsize n = (gsize)MIN((guint64)(len - i), p->remaining);
            g_byte_array_append(p->body, data + i, (guint)n);
            i += n;
            p->remaining -= n;
            if (p->remaining == 0) {
                if (p->state == ST_CHUNK_DATA) {
                    p->state = ST_CHUNK_END;
                } else {
                    p->state = ST_DONE;
                    r = OTS_HTTP_PARSE_DONE;
                }
            }
            break;
        }
        case ST_BODY_EOF: {
            gsize n = len - i;
            if (n > p->limits.max_body - p->body->len)
                r = fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "body exceeds %" G_GSIZE_FORMAT,
                         p->limits.max_body);
            else
                g_byte_array_append(p->body, data + i, (guint)n);
            i = len;
            break;
        }
        default: {
            /* Line-oriented states: copy up to the LF, bounded. */
            const guint8 *lf = memchr(data + i, '\n', len - i);
            gsize n = lf ? (gsize)(lf - (data + i)) + 1 : len - i;
            gsize limit = line_limit(p);
            gboolean in_head = p->state == ST_STATUS || p->state == ST_HEADER;

            if (p->line->len + n > limit)
                return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE, "line longer than %" G_GSIZE_FORMAT,
                            limit);
            if (in_head && p->head_bytes + n > p->limits.max_head)
                return fail(p, error, OTS_HTTP_ERROR_TOO_LARGE,
                            "response head larger than %" G_GSIZE_FORMAT, p->limits.max_head);
            g_string_append_len(p->line, (const char *)data + i, (gssize)n);
            if (in_head)
                p->head_bytes += n;
            i += n;
            if (lf) {
                r = on_line(p, error);
                if (p->state != ST_ERROR)
                    g_string_truncate(p->line, 0);
            }
            break;
        }
        }
    }
    *consumed = i;
    return r;
}

OtsHttpParseResult
ots_http_parser_feed_eof(OtsHttpParser *p, GError **error)
{
    if (p->state == ST_DONE)
        return OTS_HTTP_PARSE_DONE;
    if (p->state == ST_BODY_EOF) {
        p->state = ST_DONE;
        return OTS_HTTP_PARSE_DONE;
    }
    if (p->state == ST_ERROR)
        return fail(p, error, OTS_HTTP_ERROR_MALFORMED, "parser is in error");
    return fail(p, error, OTS_HTTP_ERROR_TRUNCATED, "connection closed inside the response");
}

guint
ots_http_parser_get_status(const OtsHttpParser *p)
{
    return p->status;
}

const char *
ots_http_parser_get_reason(const OtsHttpParser *p)
{
    return p->reason ? p->reason : "";
}

gboolean
ots_http_parser_get_close(const OtsHttpParser *p)
{
    return p->close;
}

const guint8 *
ots_http_parser_get_body(const OtsHttpParser *p, gsize *len)
{
    *len = p->body->len;
    return p->body->data;
}

/* --- request --- */

static gboolean
header_safe(const char *v)
{
    for (; *v; v++)
        if ((guchar)*v < 0x20 || (guchar)*v == 0x7f)
            return FALSE;
    return TRUE;
}

gboolean
ots_http_request_write_head(GString *out, const OtsHttpRequest *req)
{
    if (!header_safe(req->host) || !header_safe(req->path) || !header_safe(req->sensor_id) ||
        (req->token && !header_safe(req->token)) || req->path[0] != '/')
        return FALSE;
    gboolean v6 = strchr(req->host, ':') != NULL;
    g_string_append_printf(out, "POST %s HTTP/1.1\r\nHost: %s%s%s", req->path, v6 ? "[" : "",
                           req->host, v6 ? "]" : "");
    if (req->port != 443)
        g_string_append_printf(out, ":%u", req->port);
    g_string_append_printf(out,
                           "\r\nUser-Agent: otsensor\r\n"
                           "Connection: keep-alive\r\n"
                           "Content-Type: application/x-ndjson\r\n"
                           "Content-Length: %" G_GSIZE_FORMAT "\r\n"
                           "X-Sensor-Id: %s\r\n"
                           "X-Batch-First-Seq: %" G_GUINT64_FORMAT "\r\n"
                           "X-Batch-Last-Seq: %" G_GUINT64_FORMAT "\r\n",
                           req->body_len, req->sensor_id, req->first_seq, req->last_seq);
    if (req->gzip)
        g_string_append(out, "Content-Encoding: gzip\r\n");
    if (req->token && req->token[0])
        g_string_append_printf(out, "Authorization: Bearer %s\r\n", req->token);
    g_string_append(out, "\r\n");
    return TRUE;
}

/* --- Retry-After --- */

static int
month_index(const char *m)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++)
        if (strcmp(m, months[i]) == 0)
            return i + 1;
    return 0;
}

static gboolean
parse_http_date(const char *v, gint64 *unix_time)
{
    char wday[16], mon[4];
    int d, y, hh, mm, ss, n = -1;

    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (sscanf(v, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &hh, &mm,
               &ss, &n) == 7 &&
        n >= 0 && v[n] == '\0')
        goto have;
    /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
    n = -1;
    if (sscanf(v, "%9[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &hh, &mm,
               &ss, &n) == 7 &&
        n >= 0 && v[n] == '\0') {
        y += y < 70 ? 2000 : 1900;
        goto have;
    }
    /* asctime: Sun Nov  6 08:49:37 1994 */
    n = -1;
    if (sscanf(v, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wday, mon, &d, &hh, &mm, &ss, &y,
               &n) == 7 &&
        n >= 0 && v[n] == '\0')
        goto have;
    return FALSE;
have:;
    int m = month_index(mon);
    if (m == 0 || d < 1 || d > 31 || y < 1970 || y > 9999 || hh < 0 || hh > 23 || mm < 0 ||
        mm > 59 || ss < 0 || ss > 60)
        return FALSE;
    g_autoptr(GDateTime) dt = g_date_time_new_utc(y, m, d, hh, mm, ss);
    if (!dt)
        return FALSE;
    *unix_time = g_date_time_to_unix(dt);
    return TRUE;
}

gboolean
ots_http_parse_retry_after(const char *value, gint64 now, guint64 max_seconds, guint64 *seconds)
{
    g_autofree char *v = g_strstrip(g_strdup(value));
    guint64 n;
    gint64 t;

    if (v[0] != '\0' && strspn(v, "0123456789") == strlen(v)) {
        /* Too many digits to fit is simply "a long time". */
        *seconds = parse_u64(v, &n) ? MIN(n, max_seconds) : max_seconds;
        return TRUE;
    }
    if (!parse_http_date(v, &t))
        return FALSE;
    *seconds = t <= now ? 0 : MIN((guint64)(t - now), max_seconds);
    return TRUE;
}
