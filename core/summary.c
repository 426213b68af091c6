/* SPDX-License-Identifier: Apache-2.0 */
#include "core/summary.h"

#include <stdio.h>

struct _OtsSummary {
    gboolean tty;
    gint64 start;
    gboolean progress_shown;
};

OtsSummary *
ots_summary_new(gboolean tty)
{
    OtsSummary *s = g_new0(OtsSummary, 1);
    s->tty = tty;
    s->start = g_get_monotonic_time();
    return s;
}

static void
totals(OtsPipeline *p, guint64 *packets, guint64 *bytes, guint64 *flows, guint64 *malformed,
       guint64 *dropped)
{
    *packets = *bytes = *flows = *malformed = *dropped = 0;
    for (guint i = 0; i < ots_pipeline_n_sources(p); i++) {
        OtsSourceStats st = {0};
        ots_pipeline_get_stats(p, i, &st);
        *packets += st.decode.packets;
        *bytes += st.decode.bytes;
        *flows += st.flows.created;
        *malformed += st.decode.malformed;
        *dropped += st.queue_dropped_events + st.pcap_dropped + st.pcap_ifdropped;
        ots_source_stats_clear(&st);
    }
}

void
ots_summary_progress(OtsSummary *s, OtsPipeline *p, const guint64 *events)
{
    if (!s->tty)
        return;
    guint64 packets, bytes, flows, malformed, dropped, n = 0;
    totals(p, &packets, &bytes, &flows, &malformed, &dropped);
    for (int t = 0; t < OTS_EVENT_N_TYPES; t++)
        n += events[t];
    double el = (g_get_monotonic_time() - s->start) / 1e6;
    fprintf(stderr, "\r%.1fs  %" G_GUINT64_FORMAT " packets  %.1f MB  %" G_GUINT64_FORMAT
                    " flows  %" G_GUINT64_FORMAT " events ",
            el, packets, bytes / 1e6, flows, n);
    fflush(stderr);
    s->progress_shown = TRUE;
}

void
ots_summary_finish(OtsSummary *s, OtsPipeline *p, const guint64 *events)
{
    guint64 packets, bytes, flows, malformed, dropped;
    totals(p, &packets, &bytes, &flows, &malformed, &dropped);
    double el = (g_get_monotonic_time() - s->start) / 1e6;
    if (s->progress_shown)
        fputs("\r\033[K", stderr);
    g_autoptr(GHashTable) anomalies = ots_pipeline_get_anomalies(p);
    guint64 n_anom = 0;
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, anomalies);
    while (g_hash_table_iter_next(&it, &k, &v))
        n_anom += *(guint64 *)v;
    fprintf(stderr,
            "otsensord summary: %" G_GUINT64_FORMAT " packets (%.1f MB), %" G_GUINT64_FORMAT
            " flows, %" G_GUINT64_FORMAT " malformed, %" G_GUINT64_FORMAT " dropped\n",
            packets, bytes / 1e6, flows, malformed, dropped);
    fprintf(stderr, "  events:");
    for (int t = 0; t < OTS_EVENT_N_TYPES; t++)
        fprintf(stderr, " %s %" G_GUINT64_FORMAT, ots_event_type_to_string(t), events[t]);
    fprintf(stderr, "\n  anomalies: %" G_GUINT64_FORMAT, n_anom);
    g_hash_table_iter_init(&it, anomalies);
    while (g_hash_table_iter_next(&it, &k, &v))
        fprintf(stderr, "  %s=%" G_GUINT64_FORMAT, (char *)k, *(guint64 *)v);
    fprintf(stderr, "\n  elapsed %.3f s, %.0f packets/s\n", el, el > 0 ? packets / el : 0.0);
}

void
ots_summary_free(OtsSummary *s)
{
    g_free(s);
}
