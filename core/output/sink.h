/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Where NDJSON lines go. Today: a raw transport (local file or stdout). The
 * spool and the TLS/HTTP uplink will sit behind this same interface. */

#include <glib.h>
#include <otsensor/transport.h>

G_BEGIN_DECLS

typedef struct _OtsSink OtsSink;

/* Creates the transport instance from its validated settings and connects it. */
OtsSink *ots_sink_new(const OtsTransportInfo *transport, const OtsSettings *settings,
                      GError **error);
gboolean ots_sink_write(OtsSink *s, const guint8 *data, gsize len, GError **error);
/* Writes all of @n vectors (one writev() per IOV_MAX of them). */
gboolean ots_sink_writev(OtsSink *s, GOutputVector *v, gsize n, GError **error);
gboolean ots_sink_flush(OtsSink *s, GError **error);
const char *ots_sink_get_transport_name(OtsSink *s);
void ots_sink_free(OtsSink *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsSink, ots_sink_free)

G_END_DECLS
