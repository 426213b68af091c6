/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Bidirectional flow table for one capture worker (not thread-safe: each
 * worker owns its table). Bounded: when max_flows is reached the least
 * recently used flow is evicted (counted, and ended like any other flow).
 * Flows end by idle timeout, TCP close (FIN both ways or RST), eviction or
 * shutdown; the end callback runs before the flow is freed. */

#include <glib.h>
#include <otsensor/event.h>
#include "core/decode/decode.h"
#include "core/flow/tcp-stream.h"

G_BEGIN_DECLS

typedef enum {
    OTS_FLOW_END_IDLE = 0,  /* "idle_timeout" */
    OTS_FLOW_END_CLOSED,    /* "closed": FIN both ways */
    OTS_FLOW_END_RESET,     /* "reset": RST */
    OTS_FLOW_END_EVICTED,   /* "evicted": table full */
    OTS_FLOW_END_SHUTDOWN,  /* "end_of_capture": end of input or shutdown */
} OtsFlowEndReason;

typedef struct _OtsFlow OtsFlow;

/* MurmurHash3's finaliser: full avalanche in a few operations. */
static inline guint32
ots_fmix32(guint32 h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

struct _OtsFlow {
    /* Oriented: [0] is the client, [1] the server (OtsDirection indexes:
     * packets in OTS_DIR_TO_SERVER go from ip[0]:port[0] to ip[1]:port[1]). */
    OtsIpAddr ip[2];
    guint16 port[2];
    guint8 l4_proto; /* 6 or 17 */
    guint16 vlan_id; /* outer VLAN of the first packet, 0 if none */

    gint64 first_ts;
    gint64 last_ts;
    guint64 packets[2]; /* per direction */
    guint64 bytes[2];   /* payload bytes per direction */

    guint8 tcp_fin[2];  /* FIN seen per direction */
    gboolean tcp_rst;

    OtsTcpStream stream[2]; /* TCP only; the caller drives them */

    /* Owned by the dissect layer: freed in the end callback. */
    gpointer app;

    /* Private to flow-table.c (hash chain, LRU links). */
    OtsFlow *hash_next;
    OtsFlow *lru_prev;
    OtsFlow *lru_next;
    guint32 hash;
};

/* Which side is the server when the first packet does not say (no SYN):
 * returns TRUE when @port (on protocol @l4_proto) is a known server port.
 * Without a hint the lower port is taken as the server. */
typedef gboolean (*OtsServerPortFunc)(guint8 l4_proto, guint16 port, gpointer user);

typedef void (*OtsFlowTableEndFunc)(OtsFlow *flow, OtsFlowEndReason reason, gpointer user);

typedef struct {
    guint max_flows;           /* >= 1 */
    gint64 tcp_idle_timeout;   /* µs */
    gint64 udp_idle_timeout;   /* µs */
    gint64 tcp_closed_linger;  /* µs a closed TCP flow is kept for late packets (0: end at once) */
    OtsServerPortFunc server_port;
    OtsFlowTableEndFunc on_end;
    gpointer user;
} OtsFlowConfig;

typedef struct {
    guint64 created;
    guint64 ended;
    guint64 evicted;
    guint64 timed_out;
    guint active;
    guint peak_active;
} OtsFlowStats;

typedef struct _OtsFlowTable OtsFlowTable;

OtsFlowTable *ots_flow_table_new(const OtsFlowConfig *config);
/* Ends every flow with OTS_FLOW_END_SHUTDOWN, then frees the table. */
void ots_flow_table_free(OtsFlowTable *t);

/* Finds or creates the flow of @pkt (TCP or UDP) and sets *@dir to the
 * packet's direction. Orientation of a new flow: a SYN without ACK comes from
 * the client, a SYN+ACK from the server; otherwise the server_port hint, then
 * the lower port. Updates last_ts, packet/byte counters, FIN/RST flags and the
 * LRU position. May evict the least recently used flow first. Returns NULL
 * only if @pkt is neither TCP nor UDP. */
OtsFlow *ots_flow_table_lookup(OtsFlowTable *t, const OtsPacket *pkt, OtsDirection *dir,
                               gboolean *created);

/* Ends the flows idle for longer than their timeout at packet time @now, and
 * closed TCP flows past their linger time. Cheap to call often. */
void ots_flow_table_expire(OtsFlowTable *t, gint64 now);

/* Ends one flow now (for example after RST) and frees it. */
void ots_flow_table_end(OtsFlowTable *t, OtsFlow *flow, OtsFlowEndReason reason);

void ots_flow_table_get_stats(const OtsFlowTable *t, OtsFlowStats *stats);

/* Moves the table's clock (the latest packet time, which stamps flows so
 * that time never runs backwards in them) forward to @clock: a flow shard
 * sees only some packets but keeps the clock of all of them. */
void ots_flow_table_advance_clock(OtsFlowTable *t, gint64 clock);

/* Calls @func for every flow (it must not add or end flows). */
void ots_flow_table_foreach(OtsFlowTable *t, void (*func)(OtsFlow *flow, gpointer user),
                            gpointer user);

const char *ots_flow_end_reason_to_string(OtsFlowEndReason r);

G_END_DECLS
