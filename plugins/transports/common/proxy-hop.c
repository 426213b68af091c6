/* SPDX-License-Identifier: Apache-2.0 */
/* One proxy hop's settings: address, Basic credentials (the password comes
 * from a file and is kept only inside the prepared header), extra request
 * headers, TLS to the proxy with its own CA and client certificate. */
#include "ots-transport-common.h"

#include <string.h>

#define DEFAULT_PROXY_PORT 3128
#define MAX_PASSWORD_BYTES 1024

void
ots_proxy_setting_error(const OtsSettings *s, const char *key, GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* An absent key (a missing `host`) is reported at its group. */
    const char *loc = s ? ots_settings_get_location(s, key) : NULL;
    if (!loc && s)
        loc = ots_settings_get_location(s, NULL);
    if (loc)
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: %s: %s", loc, key, msg);
    else
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s: %s", key, msg);
}

/* Secrets are wiped before their memory is returned. */
static void
free_secret(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    g_free(s);
}

void
ots_proxy_hop_free(OtsProxyHop *hop)
{
    if (!hop)
        return;
    g_free(hop->host);
    g_free(hop->name);
    g_free(hop->user);
    free_secret(hop->auth_header);
    g_strfreev(hop->headers);
    g_clear_object(&hop->ca);
    g_clear_object(&hop->client_cert);
    g_free(hop);
}

char *
ots_proxy_format_authority(const char *host, guint16 port)
{
    return strchr(host, ':') ? g_strdup_printf("[%s]:%u", host, port)
                             : g_strdup_printf("%s:%u", host, port);
}

char *
ots_proxy_read_password_file(const char *path, GError **error)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) e = NULL;
    if (!g_file_get_contents(path, &data, &len, &e)) {
        /* GLib's message names the file and the errno, never the content. */
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot read the password: %s",
                    e->message);
        return NULL;
    }
    /* One line: a final LF or CRLF is not part of the password. */
    if (len > 0 && data[len - 1] == '\n')
        data[--len] = '\0';
    if (len > 0 && data[len - 1] == '\r')
        data[--len] = '\0';
    const char *why = NULL;
    if (len == 0)
        why = "is empty";
    else if (len > MAX_PASSWORD_BYTES)
        why = "is longer than 1024 bytes";
    else if (memchr(data, '\0', len) || memchr(data, '\n', len) || memchr(data, '\r', len))
        why = "holds more than one line (or a NUL byte)";
    if (why) {
        memset(data, 0, len);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "the password file %s %s", path,
                    why);
        return NULL;
    }
    return g_steal_pointer(&data);
}

char *
ots_proxy_basic_auth_header(const char *user, const char *password)
{
    char *pair = g_strconcat(user, ":", password, NULL);
    char *b64 = g_base64_encode((const guchar *)pair, strlen(pair));
    char *line = g_strconcat("Proxy-Authorization: Basic ", b64, "\r\n", NULL);
    free_secret(pair);
    free_secret(b64);
    return line;
}

/* Headers the transport writes itself, or that would change how the proxy
 * frames the request. */
static const char *const reserved_headers[] = {
    "host", "proxy-authorization", "content-length", "transfer-encoding", "connection", NULL,
};

gboolean
ots_proxy_header_is_valid(const char *line, const char **why)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        *why = "is not \"Name: value\"";
        return FALSE;
    }
    for (const char *p = line; p < colon; p++) {
        /* RFC 9110 token characters. */
        if (!g_ascii_isalnum(*p) && !strchr("!#$%&'*+-.^_`|~", *p)) {
            *why = "has a character that is not allowed in a header name";
            return FALSE;
        }
    }
    for (const char *p = colon + 1; *p; p++) {
        if (*p == '\r' || *p == '\n') {
            *why = "holds CR or LF (header injection)";
            return FALSE;
        }
        if ((guchar)*p < 0x20 && *p != '\t') {
            *why = "holds a control character";
            return FALSE;
        }
    }
    g_autofree char *name = g_ascii_strdown(line, colon - line);
    if (g_strv_contains(reserved_headers, name)) {
        *why = "sets a header the transport writes itself (use user/password_file for "
               "credentials)";
        return FALSE;
    }
    return TRUE;
}

char *
ots_proxy_connect_request(const OtsProxyHop *hop, const char *host, guint16 port)
{
    g_autofree char *authority = ots_proxy_format_authority(host, port);
    GString *req = g_string_sized_new(256);
    g_string_append_printf(req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", authority, authority);
    if (hop->auth_header)
        g_string_append(req, hop->auth_header);
    for (guint i = 0; hop->headers && hop->headers[i]; i++)
        g_string_append_printf(req, "%s\r\n", hop->headers[i]);
    g_string_append(req, "\r\n");
    return g_string_free(req, FALSE);
}

static gboolean
is_host(const char *s)
{
    g_autoptr(GInetAddress) ip = g_inet_address_new_from_string(s);
    if (ip)
        return TRUE;
    gsize len = strlen(s);
    if (len == 0 || len > 253)
        return FALSE;
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
            return FALSE;
    return s[0] != '.' && s[0] != '-';
}

gboolean
ots_proxy_parse_bind_address(const OtsSettings *s, GInetAddress **out, GError **error)
{
    const char *bind = NULL;
    *out = NULL;
    if (!s || !ots_settings_get_string(s, "bind_address", &bind))
        return TRUE;
    *out = g_inet_address_new_from_string(bind);
    if (!*out) {
        ots_proxy_setting_error(s, "bind_address", error,
                                "'%s' is not an IP address (e.g. 192.0.2.10 or 2001:db8::10)",
                                bind);
        return FALSE;
    }
    return TRUE;
}

static gboolean
get_timeout(const OtsSettings *s, const char *key, gint64 *value, GError **error)
{
    gint64 v = 0;
    if (!ots_settings_get_int(s, key, &v))
        return TRUE;
    if (v < 100 || v > 600000) {
        ots_proxy_setting_error(s, key, error, "%" G_GINT64_FORMAT " is out of range (100..600000)",
                                v);
        return FALSE;
    }
    *value = v;
    return TRUE;
}

OtsProxyHop *
ots_proxy_hop_new(const OtsSettings *s, const OtsProxyHop *defaults, gboolean require_host,
                  GError **error)
{
    g_autoptr(OtsProxyHop) hop = g_new0(OtsProxyHop, 1);
    hop->port = DEFAULT_PROXY_PORT;
    hop->connect_timeout_ms = OTS_PROXY_DEFAULT_CONNECT_TIMEOUT_MS;
    hop->reply_timeout_ms = OTS_PROXY_DEFAULT_REPLY_TIMEOUT_MS;
    if (defaults) {
        hop->port = defaults->port;
        hop->user = g_strdup(defaults->user);
        hop->auth_header = g_strdup(defaults->auth_header);
        hop->headers = g_strdupv(defaults->headers);
        hop->tls = defaults->tls;
        hop->ca = defaults->ca ? g_object_ref(defaults->ca) : NULL;
        hop->client_cert = defaults->client_cert ? g_object_ref(defaults->client_cert) : NULL;
        hop->connect_timeout_ms = defaults->connect_timeout_ms;
        hop->reply_timeout_ms = defaults->reply_timeout_ms;
    }

    const char *host = NULL;
    if (ots_settings_get_string(s, "host", &host)) {
        if (!is_host(host)) {
            ots_proxy_setting_error(
                s, "host", error, "'%s' is neither an IP address nor a host name%s", host,
                strchr(host, ':') || strchr(host, '/') ? " (give the port with `port`)" : "");
            return NULL;
        }
        hop->host = g_strdup(host);
    } else if (require_host) {
        ots_proxy_setting_error(s, "host", error, "is required (the proxy's host name or IP)");
        return NULL;
    }
    gint64 port = 0;
    if (ots_settings_get_int(s, "port", &port)) {
        if (port < 1 || port > 65535) {
            ots_proxy_setting_error(s, "port", error, "%" G_GINT64_FORMAT " is not a TCP port",
                                    port);
            return NULL;
        }
        hop->port = (guint16)port;
    }
    if (hop->host)
        hop->name = ots_proxy_format_authority(hop->host, hop->port);

    const char *user = NULL, *pwfile = NULL;
    gboolean has_user = ots_settings_get_string(s, "user", &user);
    gboolean has_pw = ots_settings_get_string(s, "password_file", &pwfile);
    if (has_user != has_pw) {
        ots_proxy_setting_error(s, has_user ? "user" : "password_file", error,
                                "needs %s too (Basic authentication uses both)",
                                has_user ? "password_file" : "user");
        return NULL;
    }
    if (has_user) {
        if (strchr(user, ':') || strpbrk(user, "\r\n")) {
            ots_proxy_setting_error(s, "user", error,
                                    "must not hold ':' or a line break (Basic authentication)");
            return NULL;
        }
        g_autoptr(GError) e = NULL;
        char *password = ots_proxy_read_password_file(pwfile, &e);
        if (!password) {
            ots_proxy_setting_error(s, "password_file", error, "%s", e->message);
            return NULL;
        }
        g_free(hop->user);
        free_secret(hop->auth_header);
        hop->user = g_strdup(user);
        hop->auth_header = ots_proxy_basic_auth_header(user, password);
        free_secret(password);
    }

    guint n_headers = ots_settings_get_length(s, "headers");
    if (n_headers > 0) {
        g_strfreev(hop->headers);
        hop->headers = g_new0(char *, n_headers + 1);
        for (guint i = 0; i < n_headers; i++) {
            const char *h = ots_settings_get_string_element(s, "headers", i);
            const char *why = NULL;
            if (!h || !ots_proxy_header_is_valid(h, &why)) {
                ots_proxy_setting_error(s, "headers", error, "element %u %s", i + 1,
                                        h ? why : "is not a string");
                return NULL;
            }
            hop->headers[i] = g_strdup(h);
        }
    }

    if (!get_timeout(s, "connect_timeout_ms", &hop->connect_timeout_ms, error) ||
        !get_timeout(s, "reply_timeout_ms", &hop->reply_timeout_ms, error))
        return NULL;

    ots_settings_get_bool(s, "tls", &hop->tls);
    const char *ca = NULL, *cert = NULL, *key = NULL;
    gboolean has_ca = ots_settings_get_string(s, "tls_ca_file", &ca);
    gboolean has_cert = ots_settings_get_string(s, "tls_client_cert", &cert);
    gboolean has_key = ots_settings_get_string(s, "tls_client_key", &key);
    if ((has_ca || has_cert || has_key) && !hop->tls) {
        const char *k = has_ca ? "tls_ca_file" : has_cert ? "tls_client_cert" : "tls_client_key";
        ots_proxy_setting_error(s, k, error, "is set but tls is false (TLS to the proxy is off)");
        return NULL;
    }
    if (has_key && !has_cert) {
        ots_proxy_setting_error(s, "tls_client_key", error, "needs tls_client_cert");
        return NULL;
    }
    if (hop->tls && !g_tls_backend_supports_tls(g_tls_backend_get_default())) {
        ots_proxy_setting_error(s, "tls", error,
                                "GIO has no TLS backend (install glib-networking)");
        return NULL;
    }
    if (has_ca) {
        g_autoptr(GError) e = NULL;
        GTlsDatabase *db = g_tls_file_database_new(ca, &e);
        if (!db) {
            ots_proxy_setting_error(s, "tls_ca_file", error, "%s: %s", ca, e->message);
            return NULL;
        }
        g_clear_object(&hop->ca);
        hop->ca = db;
    }
    if (has_cert) {
        g_autoptr(GError) e = NULL;
        GTlsCertificate *c = g_tls_certificate_new_from_files(cert, has_key ? key : cert, &e);
        if (!c) {
            ots_proxy_setting_error(s, has_key ? "tls_client_key" : "tls_client_cert", error,
                                    "%s: %s", has_key ? key : cert, e->message);
            return NULL;
        }
        g_clear_object(&hop->client_cert);
        hop->client_cert = c;
    }
    return g_steal_pointer(&hop);
}
