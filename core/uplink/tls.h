/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* End-to-end TLS (GnuTLS) over the byte stream a transport opened. The
 * stream must be pollable (GPollableInputStream/GPollableOutputStream, as
 * GSocketConnection's are): GnuTLS reads and writes it without blocking and
 * the session waits on pollable sources, so the main loop never blocks. */

#include <gio/gio.h>

G_BEGIN_DECLS

#define OTS_TLS_ERROR (ots_tls_error_quark())
GQuark ots_tls_error_quark(void);

typedef enum {
    OTS_TLS_ERROR_FAILED,        /* other handshake or record failure */
    OTS_TLS_ERROR_UNKNOWN_CA,    /* server chain not anchored in the trust store */
    OTS_TLS_ERROR_EXPIRED,       /* server certificate expired or not yet valid */
    OTS_TLS_ERROR_NAME_MISMATCH, /* certificate not valid for the verified name */
    OTS_TLS_ERROR_BAD_CERT,      /* other verification failure (revoked, weak, ...) */
    OTS_TLS_ERROR_PIN_MISMATCH,  /* no configured SPKI pin matches */
    OTS_TLS_ERROR_VERSION,       /* protocol version refused (either side) */
    OTS_TLS_ERROR_AUTH,          /* the server rejected our client certificate */
    OTS_TLS_ERROR_CLOSED,        /* the connection ended (EOF, reset) */
    OTS_TLS_ERROR_CONFIG,        /* bad CA / certificate / key / priority / pin */
} OtsTlsError;

/* The default policy: TLS 1.2 minimum, 1.3 preferred, AES-256-GCM first,
 * ChaCha20-Poly1305 accepted on TLS 1.3 only, ECDHE key exchange. */
#define OTS_TLS_DEFAULT_PRIORITY                                                                   \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:"      \
    "-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"

typedef struct _OtsTlsCredentials OtsTlsCredentials;

/* @ca_pem: (nullable): CA bundle (PEM); NULL: the system trust store.
 * @cert_pem, @key_pem: (nullable): client certificate chain and key (PEM),
 * both or neither. @*_name: file names for messages. */
OtsTlsCredentials *ots_tls_credentials_new(GBytes *ca_pem, const char *ca_name, GBytes *cert_pem,
                                           const char *cert_name, GBytes *key_pem,
                                           const char *key_name, GError **error);
OtsTlsCredentials *ots_tls_credentials_ref(OtsTlsCredentials *c);
void ots_tls_credentials_unref(OtsTlsCredentials *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsTlsCredentials, ots_tls_credentials_unref)

/* Checks a GnuTLS priority string (NULL/"": the default one). */
gboolean ots_tls_check_priority(const char *priority, GError **error);

/* Parses "sha256//BASE64" (SHA-256 of the DER SubjectPublicKeyInfo, as
 * curl's --pinnedpubkey) into 32 bytes. */
gboolean ots_tls_parse_pin(const char *pin, guint8 out[32], GError **error);

typedef struct {
    OtsTlsCredentials *credentials;
    const char *verify_name; /* host name or IP address the certificate must match */
    const char *priority;    /* (nullable): NULL or "": OTS_TLS_DEFAULT_PRIORITY */
    const guint8 (*pins)[32];
    guint n_pins;
} OtsTlsParams;

typedef struct _OtsTlsSession OtsTlsSession;

/* Takes a reference on @base. Fails when @base is not pollable. */
OtsTlsSession *ots_tls_session_new(GIOStream *base, const OtsTlsParams *params, GError **error);
/* Does not close the base stream; see ots_tls_session_close(). */
void ots_tls_session_free(OtsTlsSession *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsTlsSession, ots_tls_session_free)

void ots_tls_session_handshake_async(OtsTlsSession *s, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
gboolean ots_tls_session_handshake_finish(OtsTlsSession *s, GAsyncResult *result, GError **error);

/* Writes all @len bytes of @data (kept alive by the caller until the
 * callback). One operation of each kind at a time. */
void ots_tls_session_write_all_async(OtsTlsSession *s, const guint8 *data, gsize len,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
gboolean ots_tls_session_write_all_finish(OtsTlsSession *s, GAsyncResult *result, GError **error);

/* Reads up to @len bytes: > 0 read, 0 the peer closed (close_notify or EOF),
 * -1 with @error. */
void ots_tls_session_read_async(OtsTlsSession *s, guint8 *buffer, gsize len,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
gssize ots_tls_session_read_finish(OtsTlsSession *s, GAsyncResult *result, GError **error);

/* Sends close_notify if it can without waiting, then closes the base stream. */
void ots_tls_session_close(OtsTlsSession *s);

/* "TLS1.3 AES-256-GCM" after the handshake. (transfer full) */
char *ots_tls_session_get_description(OtsTlsSession *s);

G_END_DECLS
