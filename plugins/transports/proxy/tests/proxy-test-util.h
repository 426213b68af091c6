/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Helpers of the proxy transport tests: loading the built plugins, settings
 * through the core's config loader, running a connect to completion with
 * its hop reports, an endpoint that speaks first (so a reply reader that
 * reads ahead is caught), and fake proxies, good and hostile, on loopback. */

#include <gio/gio.h>
#include <otsensor/transport.h>

const OtsTransportInfo *pt_load(const char *path);
gpointer pt_create(const OtsTransportInfo *info, const char *group_text, GError **error);

typedef struct {
    GIOStream *stream;
    GError *error;
    GPtrArray *reports; /* "hop|step|name|detail" */
    gint64 took_us;
} PtResult;

PtResult *pt_connect(const OtsTransportInfo *info, gpointer inst, const char *host, guint16 port,
                     GCancellable *cancel);
void pt_result_free(PtResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PtResult, pt_result_free)
/* Reports joined with '\n', for assertions and failure output. */
char *pt_reports_text(const PtResult *r);
gboolean pt_reports_have(const PtResult *r, OtsHopStep step, guint hop, const char *needle);

/* A free TCP port on 127.0.0.1 below the ephemeral range. */
guint16 pt_free_port(void);
gboolean pt_wait_port(guint16 port, int timeout_ms);

/* The endpoint: on accept it sends PT_GREETING at once, then echoes. */
#define PT_GREETING "ENDPOINT-SPEAKS-FIRST\n"
typedef struct PtServer PtServer;

typedef enum {
    PT_ECHO,      /* the endpoint above */
    PT_PROXY,     /* a CONNECT proxy that relays (checks Basic auth when set) */
    PT_HUNG,      /* accepts, reads, never answers */
    PT_GARBAGE,   /* answers SSH-2.0 banner */
    PT_ENDLESS,   /* 200 status line then headers forever */
    PT_CLOSE_MID, /* half a reply, then close */
    PT_CLOSE_NOW, /* reads the request, closes */
    PT_CANNED,    /* answers the canned reply given */
} PtMode;

PtServer *pt_server_start(PtMode mode, const char *canned);
guint16 pt_server_port(PtServer *s);
/* PT_PROXY: require this "Proxy-Authorization: Basic ..." value (NULL: none). */
void pt_server_require_auth(PtServer *s, const char *user, const char *password);
/* PT_PROXY: only CONNECT to this port is allowed (0: any); others get 403. */
void pt_server_allow_port(PtServer *s, guint16 port);
/* The last request head received, or NULL. (transfer full) */
char *pt_server_last_request(PtServer *s);
guint pt_server_accepted(PtServer *s);
void pt_server_stop(PtServer *s);

/* Write @msg through @stream, read the endpoint's greeting and the echo. */
gboolean pt_check_tunnel(GIOStream *stream, const char *msg, GError **error);

/* A file with @content in a per-process temp dir. (transfer full) */
char *pt_temp_file(const char *name, const char *content);
const char *pt_temp_dir(void);
