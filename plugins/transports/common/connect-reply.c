/* SPDX-License-Identifier: Apache-2.0 */
/* The CONNECT reply head parser. It is fed one byte at a time by a reader
 * that never reads past the head, so the first tunnel byte is still in the
 * socket when the parser says DONE. Bounded: a head longer than
 * OTS_CONNECT_REPLY_MAX_BYTES or with more than OTS_CONNECT_REPLY_MAX_LINES
 * header lines is an error, and garbage is detected at the first byte that
 * cannot start "HTTP/", so a hostile proxy cannot make the sensor wait for a
 * line end that never comes. */
#include "ots-transport-common.h"

#include <string.h>

static const char http_prefix[] = "HTTP/1.";

void
ots_connect_reply_init(OtsConnectReply *r)
{
    memset(r, 0, sizeof *r);
    r->state = OTS_CONNECT_REPLY_MORE;
}

static OtsConnectReplyState
set_error(OtsConnectReply *r, OtsConnectReplyError e)
{
    r->error = e;
    r->state = OTS_CONNECT_REPLY_ERROR;
    return r->state;
}

/* The first bytes, escaped, so that "not HTTP" says what came instead. */
static void
remember_first(OtsConnectReply *r, guint8 b)
{
    gsize n = strlen(r->first);
    if (n + 5 > sizeof r->first)
        return;
    if (b >= 0x20 && b < 0x7f && b != '\\' && b != '"')
        r->first[n] = (char)b;
    else
        g_snprintf(r->first + n, sizeof r->first - n, "\\x%02x", b);
}

/* "HTTP/1.x SP 3DIGIT [SP reason]" with the line end stripped. */
static gboolean
parse_status_line(OtsConnectReply *r)
{
    const char *s = r->line;
    gsize len = r->line_len;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    gsize plen = sizeof http_prefix - 1;
    if (len < plen + 1 + 4 || memcmp(s, http_prefix, plen) != 0 || !g_ascii_isdigit(s[plen]) ||
        s[plen + 1] != ' ')
        return FALSE;
    r->version_minor = (guint)(s[plen] - '0');
    const char *c = s + plen + 2;
    if (!g_ascii_isdigit(c[0]) || !g_ascii_isdigit(c[1]) || !g_ascii_isdigit(c[2]) || c[0] == '0')
        return FALSE;
    r->status = (guint)((c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0'));
    gsize rest = len - (gsize)(c + 3 - s);
    if (rest > 0 && c[3] != ' ')
        return FALSE;
    gsize o = 0;
    for (gsize i = 1; i < rest && o + 1 < sizeof r->reason; i++) {
        char ch = c[3 + i];
        r->reason[o++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    r->reason[o] = '\0';
    return TRUE;
}

OtsConnectReplyState
ots_connect_reply_feed(OtsConnectReply *r, guint8 b)
{
    if (r->state != OTS_CONNECT_REPLY_MORE)
        return r->state;
    r->total++;
    if (r->total > OTS_CONNECT_REPLY_MAX_BYTES)
        return set_error(r, OTS_CONNECT_REPLY_TOO_LARGE);

    if (!r->in_headers) {
        if (r->total <= 16)
            remember_first(r, b);
        /* Garbage is refused at its first byte. */
        if (r->line_len < sizeof http_prefix - 1 && b != (guint8)http_prefix[r->line_len])
            return set_error(r, OTS_CONNECT_REPLY_GARBAGE);
        if (b == '\n') {
            if (!parse_status_line(r))
                return set_error(r, OTS_CONNECT_REPLY_GARBAGE);
            r->in_headers = TRUE;
            r->line_len = 0;
            return r->state;
        }
        if (b == '\0')
            return set_error(r, OTS_CONNECT_REPLY_GARBAGE);
        if (r->line_len >= OTS_CONNECT_REPLY_MAX_STATUS_LINE)
            return set_error(r, OTS_CONNECT_REPLY_GARBAGE);
        r->line[r->line_len++] = (char)b;
        r->line[r->line_len] = '\0';
        return r->state;
    }

    if (b != '\n') {
        if (r->line_len == 0)
            r->line[0] = (char)b; /* enough to tell CRLF from a header */
        r->line_len++;
        return r->state;
    }
    /* An empty line (LF or CRLF) ends the head. */
    gboolean empty = r->line_len == 0 || (r->line_len == 1 && r->line[0] == '\r');
    if (empty) {
        r->state = OTS_CONNECT_REPLY_DONE;
        return r->state;
    }
    r->lines++;
    r->line_len = 0;
    r->line[0] = '\0';
    if (r->lines > OTS_CONNECT_REPLY_MAX_LINES)
        return set_error(r, OTS_CONNECT_REPLY_TOO_LARGE);
    return r->state;
}

char *
ots_connect_reply_describe_error(const OtsConnectReply *r)
{
    switch (r->error) {
    case OTS_CONNECT_REPLY_TOO_LARGE:
        return g_strdup_printf("reply head too large (more than %d header lines or %d bytes): "
                               "endless headers from a broken or hostile proxy",
                               OTS_CONNECT_REPLY_MAX_LINES, OTS_CONNECT_REPLY_MAX_BYTES);
    case OTS_CONNECT_REPLY_GARBAGE:
        return g_strdup_printf("not an HTTP proxy: the reply is not an HTTP/1.x status line "
                               "(starts with \"%s\")",
                               r->first);
    case OTS_CONNECT_REPLY_OK:
    default:
        return g_strdup("no error");
    }
}
