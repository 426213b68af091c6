/* SPDX-License-Identifier: Apache-2.0 */
#include "core/uplink/tls.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <string.h>

G_DEFINE_QUARK(ots - tls - error - quark, ots_tls_error)

struct _OtsTlsCredentials {
    gatomicrefcount rc;
    gnutls_certificate_credentials_t cred;
};

struct _OtsTlsSession {
    gatomicrefcount rc;
    GIOStream *base;
    GPollableInputStream *in;
    GPollableOutputStream *out;
    gnutls_session_t session;
    OtsTlsCredentials *creds;
    char *verify_name;
    guint8 (*pins)[32];
    guint n_pins;
    gboolean default_priority;
    guint verify_status;
    gboolean pin_failed;
    GError *io_error; /* the transport's own error, from the pull/push functions */
    gboolean closed;
};

static int verify_peer(gnutls_session_t session);

static void
set_config_error(GError **error, const char *what, const char *name, int ret)
{
    g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG, "%s %s: %s", what, name ? name : "",
                gnutls_strerror(ret));
}

OtsTlsCredentials *
ots_tls_credentials_new(GBytes *ca_pem, const char *ca_name, GBytes *cert_pem,
                        const char *cert_name, GBytes *key_pem, const char *key_name,
                        GError **error)
{
    gnutls_certificate_credentials_t cred;
    int ret;

    if ((cert_pem == NULL) != (key_pem == NULL)) {
        g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                    "a client certificate needs its key and a key its certificate");
        return NULL;
    }
    ret = gnutls_certificate_allocate_credentials(&cred);
    if (ret < 0) {
        set_config_error(error, "credentials", NULL, ret);
        return NULL;
    }
    if (ca_pem) {
        gnutls_datum_t d = {(unsigned char *)g_bytes_get_data(ca_pem, NULL),
                            (unsigned)g_bytes_get_size(ca_pem)};
        ret = gnutls_certificate_set_x509_trust_mem(cred, &d, GNUTLS_X509_FMT_PEM);
        if (ret <= 0) {
            if (ret == 0)
                g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                            "CA file %s holds no PEM certificate", ca_name ? ca_name : "");
            else
                set_config_error(error, "CA file", ca_name, ret);
            gnutls_certificate_free_credentials(cred);
            return NULL;
        }
    } else {
        ret = gnutls_certificate_set_x509_system_trust(cred);
        if (ret <= 0) {
            g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                        "the system trust store is empty or unreadable; set uplink.ca_file");
            gnutls_certificate_free_credentials(cred);
            return NULL;
        }
    }
    if (cert_pem) {
        gnutls_datum_t c = {(unsigned char *)g_bytes_get_data(cert_pem, NULL),
                            (unsigned)g_bytes_get_size(cert_pem)};
        gnutls_datum_t k = {(unsigned char *)g_bytes_get_data(key_pem, NULL),
                            (unsigned)g_bytes_get_size(key_pem)};
        ret = gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (ret < 0) {
            g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                        "client certificate %s with key %s: %s", cert_name ? cert_name : "",
                        key_name ? key_name : "", gnutls_strerror(ret));
            gnutls_certificate_free_credentials(cred);
            return NULL;
        }
    }
    gnutls_certificate_set_verify_function(cred, verify_peer);
    OtsTlsCredentials *c = g_new0(OtsTlsCredentials, 1);
    g_atomic_ref_count_init(&c->rc);
    c->cred = cred;
    return c;
}

OtsTlsCredentials *
ots_tls_credentials_ref(OtsTlsCredentials *c)
{
    g_atomic_ref_count_inc(&c->rc);
    return c;
}

void
ots_tls_credentials_unref(OtsTlsCredentials *c)
{
    if (!c || !g_atomic_ref_count_dec(&c->rc))
        return;
    gnutls_certificate_free_credentials(c->cred);
    g_free(c);
}

gboolean
ots_tls_check_priority(const char *priority, GError **error)
{
    gnutls_priority_t p;
    const char *pos = NULL;
    int ret =
        gnutls_priority_init(&p, priority && *priority ? priority : OTS_TLS_DEFAULT_PRIORITY, &pos);

    if (ret < 0) {
        g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                    "bad GnuTLS priority string%s%s: %s", pos ? " at " : "", pos ? pos : "",
                    gnutls_strerror(ret));
        return FALSE;
    }
    gnutls_priority_deinit(p);
    return TRUE;
}

gboolean
ots_tls_parse_pin(const char *pin, guint8 out[32], GError **error)
{
    gsize len = 0;

    if (!g_str_has_prefix(pin, "sha256//") || strlen(pin) != 8 + 44) {
        g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                    "pin '%s' is not sha256// followed by 44 base64 characters", pin);
        return FALSE;
    }
    for (const char *p = pin + 8; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '+' && *p != '/' && *p != '=') {
            g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG, "pin '%s' is not base64", pin);
            return FALSE;
        }
    }
    g_autofree guint8 *raw = g_base64_decode(pin + 8, &len);
    if (len != 32) {
        g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                    "pin '%s' does not decode to 32 bytes", pin);
        return FALSE;
    }
    memcpy(out, raw, 32);
    return TRUE;
}

/* --- transport functions: the stream, without blocking --- */

static ssize_t
pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
    OtsTlsSession *s = ptr;
    GError *err = NULL;
    gssize n = g_pollable_input_stream_read_nonblocking(s->in, buf, len, NULL, &err);

    if (n >= 0)
        return n;
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        g_error_free(err);
        gnutls_transport_set_errno(s->session, EAGAIN);
        return -1;
    }
    g_clear_error(&s->io_error);
    s->io_error = err;
    gnutls_transport_set_errno(s->session, EIO);
    return -1;
}

static ssize_t
push(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
    OtsTlsSession *s = ptr;
    GError *err = NULL;
    gssize n = g_pollable_output_stream_write_nonblocking(s->out, buf, len, NULL, &err);

    if (n >= 0)
        return n;
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        g_error_free(err);
        gnutls_transport_set_errno(s->session, EAGAIN);
        return -1;
    }
    g_clear_error(&s->io_error);
    s->io_error = err;
    gnutls_transport_set_errno(s->session, EIO);
    return -1;
}

/* Never waits: the session is non-blocking, the handshake timeout is ours. */
static int
pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
    OtsTlsSession *s = ptr;
    return g_pollable_input_stream_is_readable(s->in) ? 1 : 0;
}

/* --- verification --- */

static int
check_pins(OtsTlsSession *s, gnutls_session_t session)
{
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    gnutls_x509_crt_t crt = NULL;
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t der = {NULL, 0};
    guint8 digest[32];
    int ok = -1;

    if (!certs || n == 0)
        return -1;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -1;
    /* The pin is the SHA-256 of the leaf's DER SubjectPublicKeyInfo. */
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
        gnutls_pubkey_init(&pub) >= 0 && gnutls_pubkey_import_x509(pub, crt, 0) >= 0 &&
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) >= 0 &&
        gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, digest) >= 0) {
        for (guint i = 0; i < s->n_pins; i++)
            if (memcmp(digest, s->pins[i], 32) == 0)
                ok = 0;
    }
    gnutls_free(der.data);
    if (pub)
        gnutls_pubkey_deinit(pub);
    gnutls_x509_crt_deinit(crt);
    return ok;
}

static int
verify_peer(gnutls_session_t session)
{
    OtsTlsSession *s = gnutls_session_get_ptr(session);
    unsigned status = 0;

    if (gnutls_certificate_verify_peers3(session, s->verify_name, &status) < 0 || status != 0) {
        s->verify_status = status ? status : GNUTLS_CERT_INVALID;
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    if (s->n_pins > 0 && check_pins(s, session) != 0) {
        s->pin_failed = TRUE;
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    return 0;
}

static GError *
verify_error(OtsTlsSession *s)
{
    guint st = s->verify_status;
    gnutls_datum_t txt = {NULL, 0};
    GError *e;

    gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &txt, 0);
    const char *why = txt.data ? (const char *)txt.data : "";
    if (st & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
        e = g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_UNKNOWN_CA,
                        "server certificate verification failed: unknown CA (%s)", why);
    else if (st & GNUTLS_CERT_EXPIRED)
        e = g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_EXPIRED,
                        "server certificate verification failed: expired (%s)", why);
    else if (st & GNUTLS_CERT_NOT_ACTIVATED)
        e = g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_EXPIRED,
                        "server certificate verification failed: not yet valid (%s)", why);
    else if (st & GNUTLS_CERT_UNEXPECTED_OWNER)
        e = g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_NAME_MISMATCH,
                        "server certificate verification failed: name mismatch, "
                        "the certificate is not valid for '%s'",
                        s->verify_name);
    else
        e = g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_BAD_CERT,
                        "server certificate verification failed: %s", why);
    gnutls_free(txt.data);
    return e;
}

static gboolean
is_client_cert_alert(gnutls_alert_description_t a)
{
    switch (a) {
    case GNUTLS_A_CERTIFICATE_REQUIRED:
    case GNUTLS_A_BAD_CERTIFICATE:
    case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
    case GNUTLS_A_CERTIFICATE_REVOKED:
    case GNUTLS_A_CERTIFICATE_EXPIRED:
    case GNUTLS_A_CERTIFICATE_UNKNOWN:
    case GNUTLS_A_UNKNOWN_CA:
    case GNUTLS_A_ACCESS_DENIED:
        return TRUE;
    default:
        return FALSE;
    }
}

/* Turns a fatal GnuTLS result into an error that says why. */
static GError *
map_error(OtsTlsSession *s, int ret)
{
    if (s->pin_failed)
        return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_PIN_MISMATCH,
                           "server key pin mismatch: the server's public key matches none of "
                           "the %u configured pin(s)",
                           s->n_pins);
    if (s->verify_status)
        return verify_error(s);
    if (ret == GNUTLS_E_UNSUPPORTED_VERSION_PACKET)
        return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_VERSION,
                           "protocol version refused: the server does not speak an allowed TLS "
                           "version (TLS 1.2 or later)");
    if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        gnutls_alert_description_t a = gnutls_alert_get(s->session);
        const char *name = gnutls_alert_get_name(a);
        if (a == GNUTLS_A_PROTOCOL_VERSION)
            return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_VERSION,
                               "protocol version refused by the server (alert %s)", name);
        if (is_client_cert_alert(a) || (a == GNUTLS_A_HANDSHAKE_FAILURE &&
                                        gnutls_certificate_client_get_request_status(s->session)))
            return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_AUTH,
                               "authentication failed: the server rejected the client "
                               "certificate (alert %s)",
                               name);
        return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_FAILED, "server sent TLS alert %s", name);
    }
    if (s->io_error)
        return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_CLOSED, "connection lost: %s",
                           s->io_error->message);
    if (ret == GNUTLS_E_PREMATURE_TERMINATION || ret == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
        ret == GNUTLS_E_PULL_ERROR || ret == GNUTLS_E_PUSH_ERROR)
        return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_CLOSED,
                           "connection closed by the peer (%s)", gnutls_strerror(ret));
    if (ret == GNUTLS_E_NO_CIPHER_SUITES || ret == GNUTLS_E_UNKNOWN_CIPHER_SUITE ||
        ret == GNUTLS_E_INSUFFICIENT_CREDENTIALS || ret == GNUTLS_E_NO_COMMON_KEY_SHARE)
        return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_FAILED,
                           "no cipher suite or group in common with the server (%s)",
                           gnutls_strerror(ret));
    return g_error_new(OTS_TLS_ERROR, OTS_TLS_ERROR_FAILED, "TLS: %s", gnutls_strerror(ret));
}

/* --- session --- */

OtsTlsSession *
ots_tls_session_new(GIOStream *base, const OtsTlsParams *params, GError **error)
{
    GInputStream *in = g_io_stream_get_input_stream(base);
    GOutputStream *out = g_io_stream_get_output_stream(base);
    const char *prio =
        params->priority && *params->priority ? params->priority : OTS_TLS_DEFAULT_PRIORITY;
    const char *pos = NULL;
    int ret;

    if (!G_IS_POLLABLE_INPUT_STREAM(in) || !G_IS_POLLABLE_OUTPUT_STREAM(out) ||
        !g_pollable_input_stream_can_poll(G_POLLABLE_INPUT_STREAM(in)) ||
        !g_pollable_output_stream_can_poll(G_POLLABLE_OUTPUT_STREAM(out))) {
        g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                    "the transport's stream cannot be polled; TLS needs a pollable stream");
        return NULL;
    }
    OtsTlsSession *s = g_new0(OtsTlsSession, 1);
    g_atomic_ref_count_init(&s->rc);
    s->base = g_object_ref(base);
    s->in = G_POLLABLE_INPUT_STREAM(in);
    s->out = G_POLLABLE_OUTPUT_STREAM(out);
    s->creds = ots_tls_credentials_ref(params->credentials);
    s->verify_name = g_strdup(params->verify_name);
    s->default_priority = !(params->priority && *params->priority);
    if (params->n_pins) {
        s->pins = g_memdup2(params->pins, (gsize)params->n_pins * 32);
        s->n_pins = params->n_pins;
    }
    ret = gnutls_init(&s->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (ret < 0) {
        set_config_error(error, "session", NULL, ret);
        ots_tls_session_free(s);
        return NULL;
    }
    ret = gnutls_priority_set_direct(s->session, prio, &pos);
    if (ret < 0) {
        g_set_error(error, OTS_TLS_ERROR, OTS_TLS_ERROR_CONFIG,
                    "bad GnuTLS priority string%s%s: %s", pos ? " at " : "", pos ? pos : "",
                    gnutls_strerror(ret));
        ots_tls_session_free(s);
        return NULL;
    }
    gnutls_credentials_set(s->session, GNUTLS_CRD_CERTIFICATE, s->creds->cred);
    gnutls_session_set_ptr(s->session, s);
    gnutls_transport_set_ptr(s->session, s);
    gnutls_transport_set_pull_function(s->session, pull);
    gnutls_transport_set_push_function(s->session, push);
    gnutls_transport_set_pull_timeout_function(s->session, pull_timeout);
    gnutls_handshake_set_timeout(s->session, 0);
    /* No SNI for an address (RFC 6066). */
    if (s->verify_name && !g_hostname_is_ip_address(s->verify_name))
        gnutls_server_name_set(s->session, GNUTLS_NAME_DNS, s->verify_name, strlen(s->verify_name));
    return s;
}

static OtsTlsSession *
session_ref(OtsTlsSession *s)
{
    g_atomic_ref_count_inc(&s->rc);
    return s;
}

void
ots_tls_session_free(OtsTlsSession *s)
{
    if (!s || !g_atomic_ref_count_dec(&s->rc))
        return;
    if (s->session)
        gnutls_deinit(s->session);
    ots_tls_credentials_unref(s->creds);
    g_object_unref(s->base);
    g_free(s->verify_name);
    g_free(s->pins);
    g_clear_error(&s->io_error);
    g_free(s);
}

void
ots_tls_session_close(OtsTlsSession *s)
{
    if (s->closed)
        return;
    s->closed = TRUE;
    gnutls_bye(s->session, GNUTLS_SHUT_WR); /* best effort, never waits */
    g_io_stream_close(s->base, NULL, NULL);
}

char *
ots_tls_session_get_description(OtsTlsSession *s)
{
    return g_strdup_printf("%s %s",
                           gnutls_protocol_get_name(gnutls_protocol_get_version(s->session)),
                           gnutls_cipher_get_name(gnutls_cipher_get(s->session)));
}

/* --- asynchronous operations --- */

typedef enum {
    OP_HANDSHAKE,
    OP_WRITE,
    OP_READ,
} OpKind;

typedef struct {
    OtsTlsSession *s;
    OpKind kind;
    const guint8 *data;
    gsize len;
    gsize off;
    guint8 *buf;
} Op;

static void
op_free(gpointer p)
{
    Op *op = p;
    ots_tls_session_free(op->s);
    g_free(op);
}

static void step(GTask *task);

static gboolean
on_ready(GObject *stream, gpointer user_data)
{
    /* step() consumes a reference; the source keeps its own until removed. */
    step(g_object_ref(G_TASK(user_data)));
    return G_SOURCE_REMOVE;
}

/* GnuTLS said "again": wait until the stream can go the way it wants. */
static void
wait_ready(GTask *task, Op *op)
{
    GCancellable *c = g_task_get_cancellable(task);
    GSource *src = gnutls_record_get_direction(op->s->session) == 1
                       ? g_pollable_output_stream_create_source(op->s->out, c)
                       : g_pollable_input_stream_create_source(op->s->in, c);

    g_source_set_callback(src, G_SOURCE_FUNC(on_ready), g_object_ref(task), g_object_unref);
    g_source_set_priority(src, g_task_get_priority(task));
    g_source_attach(src, g_task_get_context(task));
    g_source_unref(src);
}

static void
fail_task(GTask *task, Op *op, int ret)
{
    g_task_return_error(task, map_error(op->s, ret));
    g_object_unref(task);
}

/* Runs an operation as far as it goes without blocking; consumes the
 * reference on @task when the operation ends. */
static void
step(GTask *task)
{
    Op *op = g_task_get_task_data(task);
    gnutls_session_t session = op->s->session;

    if (g_task_return_error_if_cancelled(task)) {
        g_object_unref(task);
        return;
    }
    if (op->s->closed) {
        g_task_return_new_error(task, OTS_TLS_ERROR, OTS_TLS_ERROR_CLOSED, "session closed");
        g_object_unref(task);
        return;
    }
    for (;;) {
        gssize ret;

        switch (op->kind) {
        case OP_HANDSHAKE:
            ret = gnutls_handshake(session);
            if (ret == 0) {
                /* The default policy takes ChaCha20 on TLS 1.3 only. */
                if (op->s->default_priority &&
                    gnutls_protocol_get_version(session) == GNUTLS_TLS1_2 &&
                    gnutls_cipher_get(session) == GNUTLS_CIPHER_CHACHA20_POLY1305) {
                    g_task_return_new_error(task, OTS_TLS_ERROR, OTS_TLS_ERROR_FAILED,
                                            "the server chose ChaCha20-Poly1305 on TLS 1.2, "
                                            "which the default policy allows on TLS 1.3 only");
                } else {
                    g_task_return_boolean(task, TRUE);
                }
                g_object_unref(task);
                return;
            }
            break;
        case OP_WRITE:
            if (op->off == op->len) {
                g_task_return_boolean(task, TRUE);
                g_object_unref(task);
                return;
            }
            ret = gnutls_record_send(session, op->data + op->off, MIN(op->len - op->off, 16384));
            if (ret > 0) {
                op->off += (gsize)ret;
                continue;
            }
            break;
        case OP_READ:
            ret = gnutls_record_recv(session, op->buf, op->len);
            if (ret >= 0 || ret == GNUTLS_E_PREMATURE_TERMINATION) {
                /* An EOF without close_notify is still an end: HTTP framing
                 * decides whether anything was cut short. */
                g_task_return_int(task, ret >= 0 ? ret : 0);
                g_object_unref(task);
                return;
            }
            break;
        default:
            g_assert_not_reached();
        }
        if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) {
            wait_ready(task, op);
            g_object_unref(task);
            return;
        }
        if (gnutls_error_is_fatal((int)ret)) {
            fail_task(task, op, (int)ret);
            return;
        }
        /* Warning alerts, refused renegotiation: carry on. */
    }
}

static void
start_op(OtsTlsSession *s, OpKind kind, const guint8 *data, guint8 *buf, gsize len,
         GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data, gpointer tag)
{
    GTask *task = g_task_new(NULL, cancellable, callback, user_data);
    Op *op = g_new0(Op, 1);

    op->s = session_ref(s);
    op->kind = kind;
    op->data = data;
    op->buf = buf;
    op->len = len;
    g_task_set_source_tag(task, tag);
    g_task_set_task_data(task, op, op_free);
    step(task);
}

void
ots_tls_session_handshake_async(OtsTlsSession *s, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data)
{
    start_op(s, OP_HANDSHAKE, NULL, NULL, 0, cancellable, callback, user_data,
             ots_tls_session_handshake_async);
}

gboolean
ots_tls_session_handshake_finish(OtsTlsSession *s, GAsyncResult *result, GError **error)
{
    return g_task_propagate_boolean(G_TASK(result), error);
}

void
ots_tls_session_write_all_async(OtsTlsSession *s, const guint8 *data, gsize len,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
    start_op(s, OP_WRITE, data, NULL, len, cancellable, callback, user_data,
             ots_tls_session_write_all_async);
}

gboolean
ots_tls_session_write_all_finish(OtsTlsSession *s, GAsyncResult *result, GError **error)
{
    return g_task_propagate_boolean(G_TASK(result), error);
}

void
ots_tls_session_read_async(OtsTlsSession *s, guint8 *buffer, gsize len, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
    start_op(s, OP_READ, NULL, buffer, len, cancellable, callback, user_data,
             ots_tls_session_read_async);
}

gssize
ots_tls_session_read_finish(OtsTlsSession *s, GAsyncResult *result, GError **error)
{
    return g_task_propagate_int(G_TASK(result), error);
}
