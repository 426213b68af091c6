/* SPDX-License-Identifier: Apache-2.0 */
/* Worker-private flow table: a fixed power-of-two bucket array with chains
 * (no rehash), and three LRU lists, one a timeout (UDP, open TCP, closed TCP),
 * so each expiry walk stops at the first flow that is still fresh.
 *
 * Packet timestamps are clamped to be non-decreasing per table before they
 * become a flow's last_ts: LRU order then equals last_ts order even when a
 * capture delivers packets slightly out of time order, which is what makes
 * the tail-first expiry walks exact. */

#include "core/flow/flow-table.h"

#include <string.h>

#define IPPROTO_TCP_NUM 6
#define IPPROTO_UDP_NUM 17

typedef enum {
    LIST_UDP = 0,
    LIST_TCP,
    LIST_CLOSED, /* TCP flows with FIN both ways or RST, lingering */
    N_LISTS
} FlowList;

typedef struct {
    OtsFlow *head; /* most recently used */
    OtsFlow *tail; /* least recently used */
} Lru;

struct _OtsFlowTable {
    OtsFlowConfig config;
    OtsFlow **buckets;
    guint32 mask;
    guint32 seed;
    gint64 clock; /* latest packet timestamp seen */
    /* The flow of the previous packet: a request and its answer, or a run
     * of segments, skip the hash and the bucket walk (the bucket load was
     * the lookup's most expensive instruction). */
    OtsFlow *last;
    Lru lru[N_LISTS];
    OtsFlowStats stats;
};

static inline guint32
rotl32(guint32 x, int r)
{
    return (x << r) | (x >> (32 - r));
}

/* The rest of an IPv4 address is zero by contract; not relying on it. The
 * copies and compares are of fixed size so that they inline: a call to
 * memcpy()/memcmp() per packet showed in profiles. */
static inline gboolean
addr_equal(const OtsIpAddr *a, const OtsIpAddr *b)
{
    if (a->family != b->family)
        return FALSE;
    if (a->family != 6) {
        guint32 x, y;
        memcpy(&x, a->addr, 4);
        memcpy(&y, b->addr, 4);
        return x == y;
    }
    return memcmp(a->addr, b->addr, 16) == 0;
}

static inline guint32
endpoint_hash(const OtsIpAddr *a, guint16 port, guint32 seed)
{
    guint32 h = seed ^ ((guint32)a->family << 16) ^ port;
    /* An IPv4 address is one word, loaded as such (see addr_equal()). */
    guint32 w[4];
    guint n = 1;
    if (a->family == 6) {
        memcpy(w, a->addr, sizeof(w));
        n = 4;
    } else {
        memcpy(w, a->addr, 4);
    }
    for (guint i = 0; i < n; i++) {
        h ^= w[i];
        h = rotl32(h * 0xcc9e2d51u, 15) * 0x1b873593u;
    }
    return ots_fmix32(h);
}

/* Symmetric: both directions of a flow hash alike. */
static guint32
flow_hash(const OtsFlowTable *t, const OtsIpAddr *a, guint16 pa, const OtsIpAddr *b, guint16 pb,
          guint8 proto)
{
    guint32 h = endpoint_hash(a, pa, t->seed) + endpoint_hash(b, pb, t->seed);
    return ots_fmix32(h ^ (proto * 0x9e3779b1u));
}

static inline gboolean
flow_is_closed(const OtsFlow *f)
{
    return f->l4_proto == IPPROTO_TCP_NUM && (f->tcp_rst || (f->tcp_fin[0] && f->tcp_fin[1]));
}

static inline FlowList
flow_list(const OtsFlow *f)
{
    if (f->l4_proto != IPPROTO_TCP_NUM)
        return LIST_UDP;
    return flow_is_closed(f) ? LIST_CLOSED : LIST_TCP;
}

static inline OtsFlowEndReason
close_reason(const OtsFlow *f)
{
    return f->tcp_rst ? OTS_FLOW_END_RESET : OTS_FLOW_END_CLOSED;
}

static void
lru_unlink(Lru *l, OtsFlow *f)
{
    if (f->lru_prev)
        f->lru_prev->lru_next = f->lru_next;
    else
        l->head = f->lru_next;
    if (f->lru_next)
        f->lru_next->lru_prev = f->lru_prev;
    else
        l->tail = f->lru_prev;
    f->lru_prev = f->lru_next = NULL;
}

static void
lru_push_head(Lru *l, OtsFlow *f)
{
    f->lru_prev = NULL;
    f->lru_next = l->head;
    if (l->head)
        l->head->lru_prev = f;
    else
        l->tail = f;
    l->head = f;
}

static void
hash_unlink(OtsFlowTable *t, OtsFlow *f)
{
    OtsFlow **pp = &t->buckets[f->hash & t->mask];
    while (*pp && *pp != f)
        pp = &(*pp)->hash_next;
    if (*pp)
        *pp = f->hash_next;
    f->hash_next = NULL;
    if (t->last == f)
        t->last = NULL;
}

static void
end_flow(OtsFlowTable *t, OtsFlow *f, OtsFlowEndReason reason)
{
    hash_unlink(t, f);
    lru_unlink(&t->lru[flow_list(f)], f);

    t->stats.ended++;
    t->stats.active--;
    if (reason == OTS_FLOW_END_EVICTED)
        t->stats.evicted++;
    else if (reason == OTS_FLOW_END_IDLE)
        t->stats.timed_out++;

    if (t->config.on_end)
        t->config.on_end(f, reason, t->config.user);
    ots_tcp_stream_clear(&f->stream[0]);
    ots_tcp_stream_clear(&f->stream[1]);
    g_free(f);
}

/* Makes room for one flow. A closed flow that is only lingering goes first
 * (it ends as what it is); otherwise the least recently used flow. */
static void
evict_one(OtsFlowTable *t)
{
    OtsFlow *closed = t->lru[LIST_CLOSED].tail;
    if (closed) {
        end_flow(t, closed, close_reason(closed));
        return;
    }
    OtsFlow *tcp = t->lru[LIST_TCP].tail;
    OtsFlow *udp = t->lru[LIST_UDP].tail;
    OtsFlow *victim = tcp;
    if (victim == NULL || (udp && udp->last_ts < tcp->last_ts))
        victim = udp;
    if (victim)
        end_flow(t, victim, OTS_FLOW_END_EVICTED);
}

/**
 * ots_flow_table_new:
 * @config: limits, timeouts and callbacks (copied)
 *
 * Returns: (transfer full): a new, empty table; free with ots_flow_table_free()
 */
OtsFlowTable *
ots_flow_table_new(const OtsFlowConfig *config)
{
    g_return_val_if_fail(config != NULL, NULL);

    OtsFlowTable *t = g_new0(OtsFlowTable, 1);
    t->config = *config;
    if (t->config.max_flows < 1)
        t->config.max_flows = 1;
    if (t->config.max_flows > (1u << 30))
        t->config.max_flows = 1u << 30;

    guint32 n = 1;
    while (n < t->config.max_flows)
        n <<= 1;
    t->buckets = g_new0(OtsFlow *, n);
    t->mask = n - 1;
    /* A per-table seed keeps hostile traffic from aiming at one chain. */
    t->seed = g_random_int();
    t->clock = G_MININT64;
    return t;
}

/**
 * ots_flow_table_free:
 * @t: (nullable) (transfer full): a table
 *
 * Ends every flow with %OTS_FLOW_END_SHUTDOWN, then frees the table.
 */
void
ots_flow_table_free(OtsFlowTable *t)
{
    if (t == NULL)
        return;
    for (guint i = 0; i < N_LISTS; i++) {
        while (t->lru[i].tail)
            end_flow(t, t->lru[i].tail, OTS_FLOW_END_SHUTDOWN);
    }
    g_free(t->buckets);
    g_free(t);
}

void
ots_flow_table_advance_clock(OtsFlowTable *t, gint64 clock)
{
    if (clock > t->clock)
        t->clock = clock;
}

void
ots_flow_table_foreach(OtsFlowTable *t, void (*func)(OtsFlow *flow, gpointer user), gpointer user)
{
    for (guint i = 0; i < N_LISTS; i++)
        for (OtsFlow *f = t->lru[i].head; f; f = f->lru_next)
            func(f, user);
}

/* Picks the client side of a new flow: TRUE when the packet's source is the
 * client. */
static gboolean
source_is_client(const OtsFlowTable *t, const OtsPacket *pkt)
{
    if (pkt->l4_proto == IPPROTO_TCP_NUM && (pkt->tcp_flags & OTS_TCP_SYN))
        return !(pkt->tcp_flags & OTS_TCP_ACK);

    if (t->config.server_port) {
        gboolean dst_known = t->config.server_port(pkt->l4_proto, pkt->dport, t->config.user);
        gboolean src_known = t->config.server_port(pkt->l4_proto, pkt->sport, t->config.user);
        if (dst_known != src_known)
            return dst_known;
    }
    /* The lower port is the server; on equal ports the first sender is the
     * client. */
    return pkt->sport >= pkt->dport;
}

/* Whether @pkt belongs to @f (of the same protocol), and which way. */
static inline gboolean
match(const OtsFlow *f, const OtsPacket *pkt, OtsDirection *dir)
{
    if (f->port[0] == pkt->sport && f->port[1] == pkt->dport &&
        addr_equal(&f->ip[0], &pkt->src) && addr_equal(&f->ip[1], &pkt->dst)) {
        *dir = OTS_DIR_TO_SERVER;
        return TRUE;
    }
    if (f->port[0] == pkt->dport && f->port[1] == pkt->sport &&
        addr_equal(&f->ip[0], &pkt->dst) && addr_equal(&f->ip[1], &pkt->src)) {
        *dir = OTS_DIR_TO_CLIENT;
        return TRUE;
    }
    return FALSE;
}

static OtsFlow *
find(const OtsFlowTable *t, const OtsPacket *pkt, guint32 hash, OtsDirection *dir)
{
    for (OtsFlow *f = t->buckets[hash & t->mask]; f; f = f->hash_next)
        if (f->hash == hash && f->l4_proto == pkt->l4_proto && match(f, pkt, dir))
            return f;
    return NULL;
}

static OtsFlow *
create(OtsFlowTable *t, const OtsPacket *pkt, guint32 hash, OtsDirection *dir)
{
    if (t->stats.active >= t->config.max_flows)
        evict_one(t);

    OtsFlow *f = g_new0(OtsFlow, 1);
    gboolean client = source_is_client(t, pkt);
    guint c = client ? 0 : 1;
    f->ip[c] = pkt->src;
    f->port[c] = pkt->sport;
    f->ip[1 - c] = pkt->dst;
    f->port[1 - c] = pkt->dport;
    f->l4_proto = pkt->l4_proto;
    f->vlan_id = pkt->vlan_depth > 0 ? pkt->vlan_id[0] : 0;
    f->first_ts = t->clock;
    f->last_ts = t->clock;
    ots_tcp_stream_init(&f->stream[0]);
    ots_tcp_stream_init(&f->stream[1]);

    f->hash = hash;
    OtsFlow **bucket = &t->buckets[hash & t->mask];
    f->hash_next = *bucket;
    *bucket = f;
    lru_push_head(&t->lru[flow_list(f)], f);

    t->stats.created++;
    t->stats.active++;
    if (t->stats.active > t->stats.peak_active)
        t->stats.peak_active = t->stats.active;

    *dir = client ? OTS_DIR_TO_SERVER : OTS_DIR_TO_CLIENT;
    return f;
}

/**
 * ots_flow_table_lookup:
 * @t: a table
 * @pkt: a decoded packet
 * @dir: (out) (optional): the packet's direction in the flow
 * @created: (out) (optional): whether the flow was created for @pkt
 *
 * Finds or creates the flow of @pkt and accounts the packet to it.
 *
 * Returns: (transfer none) (nullable): the flow, NULL if @pkt is neither
 *   TCP nor UDP
 */
OtsFlow *
ots_flow_table_lookup(OtsFlowTable *t, const OtsPacket *pkt, OtsDirection *dir, gboolean *created)
{
    g_return_val_if_fail(t != NULL && pkt != NULL, NULL);

    if (created)
        *created = FALSE;
    if (pkt->l4_proto != IPPROTO_TCP_NUM && pkt->l4_proto != IPPROTO_UDP_NUM)
        return NULL;
    if (pkt->ts > t->clock)
        t->clock = pkt->ts;

    OtsDirection d = OTS_DIR_TO_SERVER;
    OtsFlow *f = t->last;
    guint32 hash;
    if (f && f->l4_proto == pkt->l4_proto && match(f, pkt, &d)) {
        hash = f->hash;
    } else {
        hash = flow_hash(t, &pkt->src, pkt->sport, &pkt->dst, pkt->dport, pkt->l4_proto);
        f = find(t, pkt, hash, &d);
    }

    /* A new connection attempt on the 5-tuple of a closed flow that is only
     * lingering: that flow is over, this is a new one. */
    if (f && flow_is_closed(f) &&
        (pkt->tcp_flags & (OTS_TCP_SYN | OTS_TCP_ACK | OTS_TCP_RST)) == OTS_TCP_SYN) {
        end_flow(t, f, close_reason(f));
        f = NULL;
    }
    if (f == NULL) {
        f = create(t, pkt, hash, &d);
        if (created)
            *created = TRUE;
    }

    FlowList before = flow_list(f);
    f->last_ts = t->clock;
    f->packets[d]++;
    f->bytes[d] += pkt->payload_len;
    if (f->l4_proto == IPPROTO_TCP_NUM) {
        if (pkt->tcp_flags & OTS_TCP_FIN)
            f->tcp_fin[d] = 1;
        if (pkt->tcp_flags & OTS_TCP_RST)
            f->tcp_rst = TRUE;
    }
    lru_unlink(&t->lru[before], f);
    lru_push_head(&t->lru[flow_list(f)], f);
    t->last = f;

    if (dir)
        *dir = d;
    return f;
}

static void
expire_list(OtsFlowTable *t, FlowList which, gint64 now, gint64 timeout)
{
    OtsFlow *f;
    while ((f = t->lru[which].tail) != NULL) {
        gint64 idle = now - f->last_ts;
        if (which == LIST_CLOSED) {
            /* Linger 0 means "at the next expire call". */
            if (idle < timeout)
                break;
            end_flow(t, f, close_reason(f));
        } else {
            if (idle <= timeout)
                break;
            end_flow(t, f, OTS_FLOW_END_IDLE);
        }
    }
}

/**
 * ots_flow_table_expire:
 * @t: a table
 * @now: packet time, µs
 *
 * Ends the flows idle past their timeout and the closed TCP flows past their
 * linger time. Costs O(1) plus the flows ended.
 */
void
ots_flow_table_expire(OtsFlowTable *t, gint64 now)
{
    g_return_if_fail(t != NULL);
    expire_list(t, LIST_CLOSED, now, t->config.tcp_closed_linger);
    expire_list(t, LIST_TCP, now, t->config.tcp_idle_timeout);
    expire_list(t, LIST_UDP, now, t->config.udp_idle_timeout);
}

/**
 * ots_flow_table_end:
 * @t: a table
 * @flow: (transfer full): a flow of @t
 * @reason: why it ends
 *
 * Ends @flow now: on_end runs, then the flow is freed.
 */
void
ots_flow_table_end(OtsFlowTable *t, OtsFlow *flow, OtsFlowEndReason reason)
{
    g_return_if_fail(t != NULL && flow != NULL);
    end_flow(t, flow, reason);
}

/**
 * ots_flow_table_get_stats:
 * @t: a table
 * @stats: (out caller-allocates): the counters
 */
void
ots_flow_table_get_stats(const OtsFlowTable *t, OtsFlowStats *stats)
{
    g_return_if_fail(t != NULL && stats != NULL);
    *stats = t->stats;
}

/**
 * ots_flow_end_reason_to_string:
 * @r: a reason
 *
 * Returns: (transfer none): the reason's name as used in flow events
 */
const char *
ots_flow_end_reason_to_string(OtsFlowEndReason r)
{
    switch (r) {
    case OTS_FLOW_END_IDLE:
        return "idle_timeout";
    case OTS_FLOW_END_CLOSED:
        return "closed";
    case OTS_FLOW_END_RESET:
        return "reset";
    case OTS_FLOW_END_EVICTED:
        return "evicted";
    case OTS_FLOW_END_SHUTDOWN:
        return "end_of_capture";
    }
    return "unknown";
}
