/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Capture workers and the hand-off of their events to the main thread.
 *
 * One reader thread per capture source (an interface, or the list of files
 * read in order) reads and decodes packets, and hands each to one of the
 * source's flow shards, chosen by a symmetric hash of the 5-tuple (both
 * directions of a flow go to the same shard). A shard owns its flows' table,
 * reassembly and dissector state, on its own thread, and serialises events
 * into batches; with a single shard it runs inline on the reader's thread.
 * Batches go to the main thread through a bounded queue. Offline, a full queue makes the worker wait (the
 * file can wait; nothing is lost). Live, a full queue drops the batch and
 * counts its events: capture is never blocked, memory never grows. */

#include <glib.h>
#include <pcap/pcap.h>
#include "core/decode/decode.h"
#include "core/dissect/dissect.h"
#include "core/event/event-writer.h"
#include "core/flow/flow-table.h"

G_BEGIN_DECLS

typedef struct _OtsPipeline OtsPipeline;

typedef struct {
    guint max_flows;
    gint64 tcp_idle_timeout;
    gint64 udp_idle_timeout;
    guint32 max_ooo_bytes;
    gsize max_pdu_bytes;
    gboolean flow_events;
    guint queue_batches;
    guint workers; /* flow shards per source; 0: the processors shared among the sources */
    gsize memcap;  /* bytes all flows may hold (reassembly, PDUs, dissector state); 0: none */
} OtsPipelineConfig;

/* A snapshot of one source's counters, safe to read from the main thread. */
typedef struct {
    char *name;
    gboolean live;
    gboolean finished;
    guint shards;          /* flow shards (threads) dissecting this source */
    guint64 pcap_received; /* live: kernel counters */
    guint64 pcap_dropped;
    guint64 pcap_ifdropped;
    OtsDecodeStats decode;
    OtsFlowStats flows;
    OtsTcpStats tcp;
    OtsDissectStats dissect;
    guint64 events[OTS_EVENT_N_TYPES];
    guint64 anomalies;
    guint64 queue_dropped_events;
    gint64 last_packet_ts;
} OtsSourceStats;

/* Called on the main thread for every batch, in order per shard. The batch
 * is lent: the pipeline reuses it once the call returns. */
typedef void (*OtsPipelineBatchFunc)(OtsEventBatch *batch, gpointer user);
/* Called on the main thread once every worker has finished (offline input
 * exhausted, or stopped) and its last batch was delivered. */
typedef void (*OtsPipelineDoneFunc)(gpointer user);

OtsPipeline *ots_pipeline_new(const OtsPipelineConfig *config, OtsDissectRegistry *registry,
                              OtsPipelineBatchFunc on_batch, OtsPipelineDoneFunc on_done,
                              gpointer user);
void ots_pipeline_free(OtsPipeline *p);

/* Sources: add before start. The pipeline takes the pcap handle. */
void ots_pipeline_add_live(OtsPipeline *p, const char *name, pcap_t *handle);
void ots_pipeline_add_files(OtsPipeline *p, const char *const *files);

void ots_pipeline_start(OtsPipeline *p);
/* Asks every worker to stop: they end their flows (events still flow) and exit. */
void ots_pipeline_stop(OtsPipeline *p);

/* A reload's dissector registry (takes a reference): each shard switches
 * to it between two packets; see ots_dissect_context_set_registry(). */
void ots_pipeline_set_registry(OtsPipeline *p, OtsDissectRegistry *registry);

guint ots_pipeline_n_sources(OtsPipeline *p);
/* Fills @out (free with ots_source_stats_clear). */
void ots_pipeline_get_stats(OtsPipeline *p, guint i, OtsSourceStats *out);
void ots_source_stats_clear(OtsSourceStats *s);
/* Anomaly counts "proto.code" -> count summed over the workers (transfer full). */
GHashTable *ots_pipeline_get_anomalies(OtsPipeline *p);

G_END_DECLS
