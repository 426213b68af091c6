/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* HTTP/1.1 for the uplink: the POST request writer and a bounded,
 * incremental response parser. Only what the uplink needs: a status line,
 * headers, and a body framed by Content-Length, chunked encoding or the end
 * of the connection. Every piece has a bound; past one the response is an
 * error and the connection is dropped (the batch is sent again). */

#include <glib.h>

G_BEGIN_DECLS

#define OTS_HTTP_ERROR (ots_http_error_quark())
GQuark ots_http_error_quark(void);

typedef enum {
    OTS_HTTP_ERROR_MALFORMED, /* not HTTP/1.x, bad syntax */
    OTS_HTTP_ERROR_TOO_LARGE, /* a bound was crossed */
    OTS_HTTP_ERROR_TRUNCATED, /* the connection ended inside the response */
} OtsHttpError;

/**
 * OtsHttpRequest:
 * @host: Host header value without the port (an IPv6 literal without brackets)
 * @port: endpoint port (omitted from Host when 443)
 * @path: request target ("/ingest?x=1")
 * @sensor_id: X-Sensor-Id
 * @first_seq: X-Batch-First-Seq
 * @last_seq: X-Batch-Last-Seq
 * @gzip: the body is gzip-compressed (Content-Encoding: gzip)
 * @token: (nullable): bearer token, a secret
 * @body_len: Content-Length
 */
typedef struct {
    const char *host;
    guint16 port;
    const char *path;
    const char *sensor_id;
    guint64 first_seq;
    guint64 last_seq;
    gboolean gzip;
    const char *token;
    gsize body_len;
} OtsHttpRequest;

/* Appends the request head (request line, headers, blank line) to @out.
 * Values holding CR, LF or NUL are refused (FALSE, nothing appended); the
 * config loader checks them first, so this is a last line of defence. */
gboolean ots_http_request_write_head(GString *out, const OtsHttpRequest *req);

/* Bounds of a response. */
typedef struct {
    gsize max_status_line; /* bytes, CRLF included */
    gsize max_header_line; /* bytes of one header line */
    guint max_headers;     /* header lines */
    gsize max_head;        /* status line + headers, all together */
    gsize max_body;        /* decoded body bytes */
    guint max_interim;     /* 1xx responses skipped before the final one */
} OtsHttpLimits;

#define OTS_HTTP_LIMITS_DEFAULT                                                                    \
    {                                                                                              \
        1024, 8192, 64, 32768, 65536, 4                                                            \
    }

typedef enum {
    OTS_HTTP_PARSE_NEED_MORE,
    OTS_HTTP_PARSE_DONE,
    OTS_HTTP_PARSE_ERROR,
} OtsHttpParseResult;

typedef struct _OtsHttpParser OtsHttpParser;

OtsHttpParser *ots_http_parser_new(const OtsHttpLimits *limits);
void ots_http_parser_free(OtsHttpParser *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsHttpParser, ots_http_parser_free)

/* Forgets the previous response (keep-alive: the next one follows). */
void ots_http_parser_reset(OtsHttpParser *p);

/* Feeds received bytes. *@consumed says how many were used: after DONE the
 * rest belongs to no request of ours (the uplink treats it as a protocol
 * error). ERROR sets @error once and sticks. */
OtsHttpParseResult ots_http_parser_feed(OtsHttpParser *p, const guint8 *data, gsize len,
                                        gsize *consumed, GError **error);
/* The connection ended: DONE when the body was framed by the close,
 * otherwise ERROR (truncated). */
OtsHttpParseResult ots_http_parser_feed_eof(OtsHttpParser *p, GError **error);

/* After DONE: */
guint ots_http_parser_get_status(const OtsHttpParser *p);
const char *ots_http_parser_get_reason(const OtsHttpParser *p);
/* HTTP/1.0 response, or "Connection: close": the connection ends after it. */
gboolean ots_http_parser_get_close(const OtsHttpParser *p);
/* (nullable): the last value of header @name (case-insensitive), trimmed. */
const char *ots_http_parser_get_header(const OtsHttpParser *p, const char *name);
/* The decoded body (bounded by max_body), not NUL-terminated. */
const guint8 *ots_http_parser_get_body(const OtsHttpParser *p, gsize *len);

/* Parses a Retry-After value: delta-seconds or an HTTP-date (IMF-fixdate,
 * RFC 850 or asctime form), relative to @now (Unix seconds). A date in the
 * past gives 0. FALSE when the value is neither. The result is capped at
 * @max_seconds. */
gboolean ots_http_parse_retry_after(const char *value, gint64 now, guint64 max_seconds,
                                    guint64 *seconds);

G_END_DECLS
