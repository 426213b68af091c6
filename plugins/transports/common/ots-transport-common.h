/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Code shared by the proxy, proxy-chain (and later multicloud) transport
 * plugins: the bounded byte-exact CONNECT reply parser, proxy hop settings
 * (Basic auth from a password file, extra headers, TLS to the proxy) and the
 * asynchronous engine that opens TCP to the first proxy and CONNECTs through
 * every hop to the endpoint. Built as a static library compiled into each
 * plugin; only include/otsensor/ and GIO are used (see README.md). */

#include <gio/gio.h>
#include <otsensor/transport.h>

G_BEGIN_DECLS

/* ---- CONNECT reply parser (no I/O; fed one byte at a time) -------------- */

/* Bounds of a reply head: a proxy that sends more is broken or hostile. */
#define OTS_CONNECT_REPLY_MAX_BYTES 16384
#define OTS_CONNECT_REPLY_MAX_LINES 64 /* header lines after the status line */
#define OTS_CONNECT_REPLY_MAX_STATUS_LINE 512

typedef enum {
    OTS_CONNECT_REPLY_MORE,  /* feed the next byte */
    OTS_CONNECT_REPLY_DONE,  /* the head ended with this byte; the tunnel follows */
    OTS_CONNECT_REPLY_ERROR, /* not a valid or not a bounded HTTP reply head */
} OtsConnectReplyState;

typedef enum {
    OTS_CONNECT_REPLY_OK = 0,
    OTS_CONNECT_REPLY_GARBAGE,   /* not HTTP */
    OTS_CONNECT_REPLY_TOO_LARGE, /* head over the bounds */
} OtsConnectReplyError;

typedef struct {
    OtsConnectReplyState state;
    OtsConnectReplyError error;
    gboolean in_headers;
    gsize total;    /* bytes fed, the terminating LF included */
    guint lines;    /* header lines seen */
    gsize line_len; /* bytes of the current line */
    guint status;   /* 100..999 once the status line is parsed */
    guint version_minor;
    char line[OTS_CONNECT_REPLY_MAX_STATUS_LINE + 1]; /* the status line */
    char reason[96];                                  /* printable reason phrase, cut */
    char first[40]; /* the first bytes, escaped, for "not HTTP" messages */
} OtsConnectReply;

void ots_connect_reply_init(OtsConnectReply *r);
OtsConnectReplyState ots_connect_reply_feed(OtsConnectReply *r, guint8 byte);
/* A one-line description of a parse error ("not an HTTP reply: ..."). */
char *ots_connect_reply_describe_error(const OtsConnectReply *r);

/* ---- one proxy hop ------------------------------------------------------ */

#define OTS_PROXY_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define OTS_PROXY_DEFAULT_REPLY_TIMEOUT_MS 10000

typedef struct {
    char *host;
    guint16 port;
    char *name;        /* "host:port" or "[v6]:port", for messages */
    char *user;        /* NULL: no authentication */
    char *auth_header; /* "Proxy-Authorization: Basic ...\r\n" (secret) */
    char **headers;    /* extra "Name: value" lines, validated */
    gboolean tls;      /* TLS to the proxy itself */
    GTlsDatabase *ca;  /* NULL: the system's */
    GTlsCertificate *client_cert;
    gint64 connect_timeout_ms; /* TCP (first hop) and TLS to this proxy */
    gint64 reply_timeout_ms;   /* this proxy's CONNECT reply */
} OtsProxyHop;

/* The keys of one hop, for plugins' OtsSettingSpec tables (a macro so that a
 * plugin's table can add its own keys around them). */
/* clang-format off */
#define OTS_PROXY_HOP_SETTING_SPECS                                                              \
    {.name = "host", .type = OTS_SETTING_STRING, .min = 1, .max = 253,                           \
     .help = "proxy host name or IP address"},                                                   \
    {.name = "port", .type = OTS_SETTING_INT, .min = 1, .max = 65535,                            \
     .help = "proxy TCP port (default 3128)"},                                                   \
    {.name = "user", .type = OTS_SETTING_STRING, .min = 1, .max = 255,                           \
     .help = "user for Basic proxy authentication (with password_file)"},                       \
    {.name = "password_file", .type = OTS_SETTING_STRING, .min = 1, .max = 4096,                 \
     .secret = TRUE,                                                                             \
     .help = "file holding the proxy password (one line; keep it mode 0600)"},                  \
    {.name = "tls", .type = OTS_SETTING_BOOL,                                                    \
     .help = "TLS to the proxy itself (an HTTPS proxy); default false"},                         \
    {.name = "tls_ca_file", .type = OTS_SETTING_STRING, .min = 1, .max = 4096,                   \
     .help = "PEM CA bundle that signs the proxy's certificate (default: the system's)"},        \
    {.name = "tls_client_cert", .type = OTS_SETTING_STRING, .min = 1, .max = 4096,               \
     .help = "PEM client certificate for TLS to the proxy"},                                     \
    {.name = "tls_client_key", .type = OTS_SETTING_STRING, .min = 1, .max = 4096,                \
     .help = "PEM private key of tls_client_cert (default: in the same file)"},                  \
    {.name = "headers", .type = OTS_SETTING_STRING_ARRAY,                                        \
     .help = "extra CONNECT request headers, each \"Name: value\""},                             \
    {.name = "connect_timeout_ms", .type = OTS_SETTING_INT, .min = 100, .max = 600000,           \
     .help = "TCP connect to the first proxy and TLS to a proxy, ms (default 10000)"},           \
    {.name = "reply_timeout_ms", .type = OTS_SETTING_INT, .min = 100, .max = 600000,             \
     .help = "wait for a proxy's CONNECT reply, ms (default 10000)"}
/* clang-format on */

/* Builds a hop from a settings group. Keys absent from @s come from
 * @defaults (may be NULL): a proxy list's entries inherit the top level's
 * credentials, TLS and timeouts. @require_host: host must be set. */
OtsProxyHop *ots_proxy_hop_new(const OtsSettings *s, const OtsProxyHop *defaults,
                               gboolean require_host, GError **error);
void ots_proxy_hop_free(OtsProxyHop *hop);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsProxyHop, ots_proxy_hop_free)

/* Pieces of ots_proxy_hop_new(), exposed for tests. */
char *ots_proxy_read_password_file(const char *path, GError **error);
char *ots_proxy_basic_auth_header(const char *user, const char *password);
gboolean ots_proxy_header_is_valid(const char *line, const char **why);
/* "host:port", brackets around IPv6 literals. */
char *ots_proxy_format_authority(const char *host, guint16 port);
/* The CONNECT request for @host:@port through @hop. (secret: it may hold credentials) */
char *ots_proxy_connect_request(const OtsProxyHop *hop, const char *host, guint16 port);

/* "file:line: key: message" (the location when the core knows it). */
void ots_proxy_setting_error(const OtsSettings *s, const char *key, GError **error, const char *fmt,
                             ...) G_GNUC_PRINTF(4, 5);

/* ---- the chain engine --------------------------------------------------- */

/* Opens TCP to hops[0] (from @bind_address when set), then for each hop: TLS
 * to it when asked, CONNECT to the next hop (or to @endpoint after the last);
 * returns the top stream (a GSocketConnection, or a GTlsConnection when the
 * last hop speaks TLS), pollable, positioned at the first tunnel byte.
 * Reports use hop = @hop_base + index. @owner (released with
 * @owner_release when the operation ends) keeps @hops alive, so that the
 * plugin instance may be destroyed while a connect is in flight. Errors name the hop (1-based, as
 * "proxy 2/3 host:port") and never hold credentials. */
void ots_proxy_chain_connect_async(OtsProxyHop *const *hops, guint n_hops,
                                   GInetAddress *bind_address, const OtsEndpoint *endpoint,
                                   guint hop_base, gpointer owner, GDestroyNotify owner_release,
                                   GCancellable *cancellable, OtsHopReportFunc report,
                                   gpointer report_data, GAsyncReadyCallback callback,
                                   gpointer user_data);
GIOStream *ots_proxy_chain_connect_finish(GAsyncResult *result, GError **error);

/* The same chain over @stream, already connected to hops[0] (the caller
 * opened the TCP connection itself, e.g. with ots_tcp_connect_async() for a
 * source interface): TLS to hop 1 when asked, then the CONNECTs. @stream is
 * referenced, not closed, on failure. Finished by
 * ots_proxy_chain_connect_finish(). */
void ots_proxy_chain_connect_over_async(GIOStream *stream, OtsProxyHop *const *hops, guint n_hops,
                                        const OtsEndpoint *endpoint, guint hop_base, gpointer owner,
                                        GDestroyNotify owner_release, GCancellable *cancellable,
                                        OtsHopReportFunc report, gpointer report_data,
                                        GAsyncReadyCallback callback, gpointer user_data);

/* ---- plain TCP ---------------------------------------------------------- */

/* Opens TCP to @host:@port (a name is resolved and its addresses tried in
 * turn, system proxy settings ignored) from @bind_address and through
 * @bind_interface (SO_BINDTODEVICE) when set, within @timeout_ms overall;
 * TCP keepalive on. A minimal connect for multicloud's direct paths, their
 * probes and the first hop of their proxy paths (the `direct` plugin keeps
 * its own, richer one: family choice, per-address budget, keepalive knobs).
 * Errors read "cannot connect to HOST:PORT: reason (after N ms)", or say
 * which setting failed (bind_address, bind_interface). */
void ots_tcp_connect_async(const char *host, guint16 port, GInetAddress *bind_address,
                           const char *bind_interface, gint64 timeout_ms, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data);
GSocketConnection *ots_tcp_connect_finish(GAsyncResult *result, GError **error);

/* SO_BINDTODEVICE names: 1..15 printable characters, no '/', ':' or space. */
gboolean ots_interface_name_is_valid(const char *name);

/* Source address setting shared by the plugins. */
gboolean ots_proxy_parse_bind_address(const OtsSettings *s, GInetAddress **out, GError **error);

G_END_DECLS
