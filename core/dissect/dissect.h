/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Dispatch of flows to dissector plugins, and the session object a plugin
 * sees. The registry is built on the main thread and then only read by the
 * workers; each worker has its own OtsDissectContext. */

#include <glib.h>
#include <otsensor/dissector.h>
#include "core/decode/decode.h"
#include "core/event/event-writer.h"
#include "core/flow/flow-table.h"

G_BEGIN_DECLS

#define OTS_MAX_DISSECTORS 250

typedef struct {
    const OtsDissectorInfo *info;
    guint index;
    gboolean enabled;
    gboolean heuristic;
    GArray *tcp_ports; /* guint16 */
    GArray *udp_ports;
} OtsDissectorEntry;

typedef struct _OtsDissectRegistry OtsDissectRegistry;

OtsDissectRegistry *ots_dissect_registry_new(void);
/* Registries are reference counted (atomically): a reload builds a new one
 * and each shard drops the old one once it has switched. Not changed after
 * it is first shared. */
OtsDissectRegistry *ots_dissect_registry_ref(OtsDissectRegistry *r);
/* Drops a reference. */
void ots_dissect_registry_free(OtsDissectRegistry *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsDissectRegistry, ots_dissect_registry_free)

/* Adds a dissector with its effective settings. Ports NULL: the plugin's
 * defaults. A port already claimed by an earlier dissector stays with it
 * (reported through @error as a warning text; the add still succeeds). */
OtsDissectorEntry *ots_dissect_registry_add(OtsDissectRegistry *r, const OtsDissectorInfo *info,
                                            gboolean enabled, gboolean heuristic,
                                            const GArray *tcp_ports, const GArray *udp_ports,
                                            GError **error);
guint ots_dissect_registry_size(const OtsDissectRegistry *r);
OtsDissectorEntry *ots_dissect_registry_get(const OtsDissectRegistry *r, guint i);
const OtsDissectorEntry *ots_dissect_registry_lookup(const OtsDissectRegistry *r, const char *name);
const OtsDissectorEntry *ots_dissect_registry_port(const OtsDissectRegistry *r, guint8 l4,
                                                   guint16 port);

typedef struct {
    guint64 pdu_calls;       /* parse() calls */
    guint64 malformed;       /* parse() said MALFORMED */
    guint64 pending_overflow;/* incomplete PDUs larger than max_pdu_bytes, dropped */
    guint64 flows_bound;     /* flows handed to a dissector */
    guint64 flows_heuristic; /* of those, found by a probe */
    guint64 memcap_refused;  /* bytes not kept because flows.memcap_mb was reached */
    guint64 mem_used;        /* bytes held now: reassembly, pending PDUs, dissector state */
} OtsDissectStats;

typedef struct {
    const OtsDissectRegistry *registry;
    OtsEventWriter *writer;
    gsize max_pdu;
    gboolean flow_events;
    /* What every flow of this thread may hold at once (flows.memcap_mb
     * divided among the shards): out-of-order TCP segments, incomplete PDUs
     * and what dissectors charge through ots_session_charge(). 0: no cap. */
    gsize mem_cap;
    OtsTcpStats tcp;
    OtsDissectStats stats;
} OtsDissectContext;

void ots_dissect_context_init(OtsDissectContext *ctx, const OtsDissectRegistry *registry,
                              OtsEventWriter *writer, gsize max_pdu, gboolean flow_events);

/* OtsServerPortFunc for the flow table: @user is the OtsDissectContext. */
gboolean ots_dissect_is_server_port(guint8 l4, guint16 port, gpointer user);

/* The pipeline's per-packet entry: TCP reassembly (max_ooo bytes per
 * direction), dispatch, parse. */
void ots_dissect_packet(OtsDissectContext *ctx, OtsFlow *flow, OtsDirection dir,
                        const OtsPacket *pkt, guint32 max_ooo);

/* OtsFlowEndFunc: flushes reassembly, calls flow_end and state_free, emits
 * the `flow` event, frees flow->app. @user is the OtsDissectContext. */
void ots_dissect_flow_end(OtsFlow *flow, OtsFlowEndReason reason, gpointer user);

/* Lower level, used by the pipeline and by the test harness. */
OtsSession *ots_session_new(OtsDissectContext *ctx, OtsFlow *flow);
void ots_session_bind(OtsSession *s, const OtsDissectorEntry *entry);
void ots_session_set_time(OtsSession *s, gint64 now);
OtsParseResult ots_session_stream_data(OtsSession *s, OtsDirection dir, const guint8 *data,
                                       gsize len);
void ots_session_stream_gap(OtsSession *s, OtsDirection dir, guint32 len);
OtsParseResult ots_session_datagram(OtsSession *s, OtsDirection dir, const guint8 *data, gsize len);
/* flow_end + state_free (once). */
void ots_session_finish(OtsSession *s);
/* Lets the flow go: its dissector's flow end runs now (open transactions
 * come out), and no dissector sees its bytes again. */
void ots_session_unbind(OtsSession *s);
/* A reload's registry: new flows are dispatched by @registry; a flow bound
 * to a dissector @registry disables is let go (ots_session_unbind); a flow
 * bound to one that stays enabled keeps it, even if its ports changed. */
void ots_dissect_context_set_registry(OtsDissectContext *ctx, const OtsDissectRegistry *registry,
                                      OtsFlowTable *flows);
void ots_session_free(OtsSession *s);
const char *ots_session_get_proto(OtsSession *s);
gpointer ots_session_get_state(OtsSession *s);
/* Calls the dissector's tick() when a second or more has passed since the last. */
void ots_session_maybe_tick(OtsSession *s, gint64 now);

G_END_DECLS
