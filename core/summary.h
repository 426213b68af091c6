/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Progress on stderr while reading captures, and the closing summary. */

#include <glib.h>
#include "core/event/event-writer.h"
#include "core/pipeline.h"

G_BEGIN_DECLS

typedef struct _OtsSummary OtsSummary;

OtsSummary *ots_summary_new(gboolean tty);
void ots_summary_progress(OtsSummary *s, OtsPipeline *p, const guint64 *events);
void ots_summary_finish(OtsSummary *s, OtsPipeline *p, const guint64 *events);
void ots_summary_free(OtsSummary *s);

G_END_DECLS
