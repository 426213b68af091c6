/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/flow/flow-table.c. */

#include <arpa/inet.h>
#include <string.h>

#include "core/flow/flow-table.h"

#include <CUnit/CUnit.h>

#define TCP 6
#define UDP 17
#define SEC G_GINT64_CONSTANT(1000000)

static const guint8 payload_buf[1500];

static OtsIpAddr
addr(const char *s)
{
    OtsIpAddr a;
    memset(&a, 0, sizeof(a));
    if (strchr(s, ':')) {
        a.family = 6;
        g_assert(inet_pton(AF_INET6, s, a.addr) == 1);
    } else {
        a.family = 4;
        g_assert(inet_pton(AF_INET, s, a.addr) == 1);
    }
    return a;
}

static OtsPacket
pkt(const char *src, guint16 sport, const char *dst, guint16 dport, guint8 proto, guint8 flags,
    gint64 ts, guint32 plen)
{
    OtsPacket p;
    memset(&p, 0, sizeof(p));
    p.ts = ts;
    p.src = addr(src);
    p.dst = addr(dst);
    p.ip_version = p.src.family;
    p.sport = sport;
    p.dport = dport;
    p.l4_proto = proto;
    p.tcp_flags = flags;
    p.payload = payload_buf;
    p.payload_len = plen;
    return p;
}

/* What on_end saw. */
typedef struct {
    guint id;
    OtsFlowEndReason reason;
    guint16 port[2];
    guint64 packets;
} EndRecord;

typedef struct {
    guint id;
} App;

typedef struct {
    GArray *ends; /* EndRecord */
    guint next_id;
} Ctx;

static void
on_end(OtsFlow *flow, OtsFlowEndReason reason, gpointer user)
{
    Ctx *c = user;
    EndRecord e = {0};
    App *app = flow->app;
    e.id = app ? app->id : G_MAXUINT;
    e.reason = reason;
    e.port[0] = flow->port[0];
    e.port[1] = flow->port[1];
    e.packets = flow->packets[0] + flow->packets[1];
    g_array_append_val(c->ends, e);
    g_free(flow->app);
    flow->app = NULL;
}

static void
ctx_init(Ctx *c)
{
    c->ends = g_array_new(FALSE, TRUE, sizeof(EndRecord));
    c->next_id = 1;
}

static void
ctx_clear(Ctx *c)
{
    g_array_unref(c->ends);
}

static OtsFlowConfig
config(Ctx *c, guint max_flows)
{
    OtsFlowConfig cfg = {
        .max_flows = max_flows,
        .tcp_idle_timeout = 600 * SEC,
        .udp_idle_timeout = 60 * SEC,
        .tcp_closed_linger = 5 * SEC,
        .server_port = NULL,
        .on_end = on_end,
        .user = c,
    };
    return cfg;
}

/* Looks a packet up and tags a new flow with an id. */
static OtsFlow *
lookup(OtsFlowTable *t, Ctx *c, const OtsPacket *p, OtsDirection *dir, gboolean *created)
{
    gboolean cr = FALSE;
    OtsFlow *f = ots_flow_table_lookup(t, p, dir, &cr);
    if (f && cr) {
        App *app = g_new0(App, 1);
        app->id = c->next_id++;
        f->app = app;
    }
    if (created)
        *created = cr;
    return f;
}

static guint
flow_id(const OtsFlow *f)
{
    return ((const App *)f->app)->id;
}

static void
test_both_directions(void)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 16);
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    gboolean created;

    OtsPacket syn = pkt("127.0.10.1", 40000, "127.0.10.2", 502, TCP, OTS_TCP_SYN, 1 * SEC, 0);
    OtsFlow *f = lookup(t, &c, &syn, &dir, &created);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_SERVER);
    CU_ASSERT_EQUAL(f->port[0], 40000);
    CU_ASSERT_EQUAL(f->port[1], 502);
    CU_ASSERT_EQUAL(f->l4_proto, TCP);
    CU_ASSERT_EQUAL(f->first_ts, 1 * SEC);

    OtsPacket synack =
        pkt("127.0.10.2", 502, "127.0.10.1", 40000, TCP, OTS_TCP_SYN | OTS_TCP_ACK, 2 * SEC, 0);
    OtsFlow *g = lookup(t, &c, &synack, &dir, &created);
    CU_ASSERT_PTR_EQUAL(g, f);
    CU_ASSERT_FALSE(created);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_CLIENT);

    OtsPacket req = pkt("127.0.10.1", 40000, "127.0.10.2", 502, TCP, OTS_TCP_ACK, 3 * SEC, 12);
    OtsPacket rsp = pkt("127.0.10.2", 502, "127.0.10.1", 40000, TCP, OTS_TCP_ACK, 4 * SEC, 30);
    CU_ASSERT_PTR_EQUAL(lookup(t, &c, &req, &dir, NULL), f);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_SERVER);
    CU_ASSERT_PTR_EQUAL(lookup(t, &c, &rsp, &dir, NULL), f);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_CLIENT);
    CU_ASSERT_EQUAL(f->packets[0], 2);
    CU_ASSERT_EQUAL(f->packets[1], 2);
    CU_ASSERT_EQUAL(f->bytes[0], 12);
    CU_ASSERT_EQUAL(f->bytes[1], 30);
    CU_ASSERT_EQUAL(f->first_ts, 1 * SEC);
    CU_ASSERT_EQUAL(f->last_ts, 4 * SEC);

    /* Same addresses and ports, other protocol: another flow. Other port:
     * another flow. */
    OtsPacket udp = pkt("127.0.10.1", 40000, "127.0.10.2", 502, UDP, 0, 5 * SEC, 4);
    OtsFlow *u = lookup(t, &c, &udp, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_PTR_NOT_EQUAL(u, f);
    OtsPacket other = pkt("127.0.10.1", 40001, "127.0.10.2", 502, TCP, OTS_TCP_ACK, 5 * SEC, 0);
    OtsFlow *o = lookup(t, &c, &other, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_PTR_NOT_EQUAL(o, f);

    /* VLAN of the first packet is kept. */
    OtsPacket tagged = pkt("127.0.10.9", 1, "127.0.10.8", 2, UDP, 0, 5 * SEC, 0);
    tagged.vlan_depth = 2;
    tagged.vlan_id[0] = 100;
    tagged.vlan_id[1] = 200;
    OtsFlow *v = lookup(t, &c, &tagged, &dir, NULL);
    CU_ASSERT_EQUAL(v->vlan_id, 100);

    /* Not TCP or UDP: no flow. */
    OtsPacket icmp = pkt("127.0.10.1", 0, "127.0.10.2", 0, 1, 0, 5 * SEC, 0);
    CU_ASSERT_PTR_NULL(ots_flow_table_lookup(t, &icmp, &dir, &created));
    CU_ASSERT_FALSE(created);

    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.created, 4);
    CU_ASSERT_EQUAL(st.active, 4);
    ots_flow_table_free(t);
    CU_ASSERT_EQUAL(c.ends->len, 4);
    ctx_clear(&c);
}

static gboolean
known_port(guint8 l4_proto, guint16 port, gpointer user)
{
    return port == 20000 || (l4_proto == UDP && port == 47808);
}

/* Returns the new flow of @p in a fresh table, with ports oriented. */
static void
check_orientation(const OtsPacket *p, gboolean hint, guint16 client_port, guint16 server_port,
                  OtsDirection expect_dir)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 4);
    if (hint)
        cfg.server_port = known_port;
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    OtsFlow *f = lookup(t, &c, p, &dir, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(f->port[0], client_port);
    CU_ASSERT_EQUAL(f->port[1], server_port);
    CU_ASSERT_EQUAL(dir, expect_dir);
    /* The client address goes with the client port. */
    const OtsIpAddr *client_ip = expect_dir == OTS_DIR_TO_SERVER ? &p->src : &p->dst;
    CU_ASSERT_EQUAL(memcmp(&f->ip[0], client_ip, sizeof(OtsIpAddr)), 0);
    ots_flow_table_free(t);
    ctx_clear(&c);
}

static void
test_orientation(void)
{
    /* SYN without ACK: the sender is the client, whatever the ports. */
    OtsPacket p = pkt("127.0.10.1", 502, "127.0.10.2", 40000, TCP, OTS_TCP_SYN, SEC, 0);
    check_orientation(&p, TRUE, 502, 40000, OTS_DIR_TO_SERVER);
    /* SYN+ACK: the sender is the server. */
    p = pkt("127.0.10.2", 40000, "127.0.10.1", 502, TCP, OTS_TCP_SYN | OTS_TCP_ACK, SEC, 0);
    check_orientation(&p, TRUE, 502, 40000, OTS_DIR_TO_CLIENT);
    /* No SYN: the hint names 20000 as a server port, though it is higher. */
    p = pkt("127.0.10.2", 20000, "127.0.10.1", 1024, TCP, OTS_TCP_ACK, SEC, 10);
    check_orientation(&p, TRUE, 1024, 20000, OTS_DIR_TO_CLIENT);
    p = pkt("127.0.10.1", 1024, "127.0.10.2", 20000, TCP, OTS_TCP_ACK, SEC, 10);
    check_orientation(&p, TRUE, 1024, 20000, OTS_DIR_TO_SERVER);
    /* Without the hint the lower port is the server. */
    p = pkt("127.0.10.2", 20000, "127.0.10.1", 1024, TCP, OTS_TCP_ACK, SEC, 10);
    check_orientation(&p, FALSE, 20000, 1024, OTS_DIR_TO_SERVER);
    p = pkt("127.0.10.1", 161, "127.0.10.2", 5000, UDP, 0, SEC, 10);
    check_orientation(&p, TRUE, 5000, 161, OTS_DIR_TO_CLIENT);
    p = pkt("127.0.10.2", 5000, "127.0.10.1", 161, UDP, 0, SEC, 10);
    check_orientation(&p, TRUE, 5000, 161, OTS_DIR_TO_SERVER);
    /* Both ports known: the hint does not decide, the lower port does. */
    p = pkt("127.0.10.2", 47808, "127.0.10.1", 20000, UDP, 0, SEC, 10);
    check_orientation(&p, TRUE, 47808, 20000, OTS_DIR_TO_SERVER);
    /* Equal ports: the first sender is the client. */
    p = pkt("127.0.10.7", 47808, "127.0.10.3", 47808, UDP, 0, SEC, 10);
    check_orientation(&p, TRUE, 47808, 47808, OTS_DIR_TO_SERVER);
    p = pkt("127.0.10.3", 47808, "127.0.10.7", 47808, UDP, 0, SEC, 10);
    check_orientation(&p, FALSE, 47808, 47808, OTS_DIR_TO_SERVER);

    /* Equal ports: the reply goes to the client, and the first sender's
     * address is ip[0]. */
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 4);
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    p = pkt("127.0.10.7", 47808, "127.0.10.3", 47808, UDP, 0, SEC, 10);
    OtsFlow *f = lookup(t, &c, &p, &dir, NULL);
    OtsIpAddr first = addr("127.0.10.7");
    CU_ASSERT_EQUAL(memcmp(&f->ip[0], &first, sizeof(first)), 0);
    p = pkt("127.0.10.3", 47808, "127.0.10.7", 47808, UDP, 0, 2 * SEC, 10);
    CU_ASSERT_PTR_EQUAL(lookup(t, &c, &p, &dir, NULL), f);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_CLIENT);
    /* A later SYN does not turn an existing flow around. */
    p = pkt("127.0.10.1", 2000, "127.0.10.2", 1000, TCP, OTS_TCP_ACK, 3 * SEC, 1);
    f = lookup(t, &c, &p, &dir, NULL);
    CU_ASSERT_EQUAL(f->port[1], 1000);
    p = pkt("127.0.10.2", 1000, "127.0.10.1", 2000, TCP, OTS_TCP_SYN, 4 * SEC, 0);
    CU_ASSERT_PTR_EQUAL(lookup(t, &c, &p, &dir, NULL), f);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_CLIENT);
    CU_ASSERT_EQUAL(f->port[1], 1000);
    ots_flow_table_free(t);
    ctx_clear(&c);
}

static void
test_eviction(void)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 3);
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;

    OtsPacket a = pkt("127.0.10.1", 1001, "127.0.10.9", 53, UDP, 0, 1 * SEC, 0);
    OtsPacket b = pkt("127.0.10.1", 1002, "127.0.10.9", 502, TCP, OTS_TCP_SYN, 2 * SEC, 0);
    OtsPacket cc = pkt("127.0.10.1", 1003, "127.0.10.9", 53, UDP, 0, 3 * SEC, 0);
    OtsPacket d = pkt("127.0.10.1", 1004, "127.0.10.9", 53, UDP, 0, 5 * SEC, 0);
    OtsPacket e = pkt("127.0.10.1", 1005, "127.0.10.9", 502, TCP, OTS_TCP_SYN, 6 * SEC, 0);
    guint ida = flow_id(lookup(t, &c, &a, &dir, NULL));
    guint idb = flow_id(lookup(t, &c, &b, &dir, NULL));
    guint idc = flow_id(lookup(t, &c, &cc, &dir, NULL));
    a.ts = 4 * SEC; /* a is used again: b is now the least recently used */
    lookup(t, &c, &a, &dir, NULL);
    CU_ASSERT_EQUAL(c.ends->len, 0);

    gboolean created;
    lookup(t, &c, &d, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 1);
    EndRecord *r = &g_array_index(c.ends, EndRecord, 0);
    CU_ASSERT_EQUAL(r->id, idb);
    CU_ASSERT_EQUAL(r->reason, OTS_FLOW_END_EVICTED);
    CU_ASSERT_EQUAL(r->port[0], 1002);

    lookup(t, &c, &e, &dir, NULL);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 2);
    r = &g_array_index(c.ends, EndRecord, 1);
    CU_ASSERT_EQUAL(r->id, idc);
    CU_ASSERT_EQUAL(r->reason, OTS_FLOW_END_EVICTED);

    /* a is still there and the evicted b comes back as a new flow. */
    a.ts = 7 * SEC;
    lookup(t, &c, &a, &dir, &created);
    CU_ASSERT_FALSE(created);
    b.ts = 8 * SEC;
    OtsFlow *nb = lookup(t, &c, &b, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_NOT_EQUAL(flow_id(nb), idb);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 3);
    r = &g_array_index(c.ends, EndRecord, 2);
    CU_ASSERT_EQUAL(r->port[0], 1004); /* d: least recently used now */
    CU_ASSERT_NOT_EQUAL(r->id, ida);

    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.evicted, 3);
    CU_ASSERT_EQUAL(st.ended, 3);
    CU_ASSERT_EQUAL(st.created, 6);
    CU_ASSERT_EQUAL(st.active, 3);
    CU_ASSERT_EQUAL(st.peak_active, 3);
    CU_ASSERT_EQUAL(st.timed_out, 0);
    ots_flow_table_free(t);

    /* max_flows 1: each new flow evicts the previous one. */
    g_array_set_size(c.ends, 0);
    cfg = config(&c, 1);
    t = ots_flow_table_new(&cfg);
    lookup(t, &c, &a, &dir, NULL);
    lookup(t, &c, &b, &dir, NULL);
    lookup(t, &c, &cc, &dir, NULL);
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.evicted, 2);
    CU_ASSERT_EQUAL(st.active, 1);
    ots_flow_table_free(t);
    CU_ASSERT_EQUAL(c.ends->len, 3);
    ctx_clear(&c);
}

static guint
count_reason(const Ctx *c, OtsFlowEndReason reason)
{
    guint n = 0;
    for (guint i = 0; i < c->ends->len; i++)
        n += g_array_index(c->ends, EndRecord, i).reason == reason;
    return n;
}

static void
test_idle_timeout(void)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 64);
    cfg.tcp_idle_timeout = 100 * SEC;
    cfg.udp_idle_timeout = 10 * SEC;
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;

    /* The TCP flow is older in LRU terms than the UDP one, yet the UDP one
     * times out first. */
    OtsPacket tcp = pkt("127.0.20.10", 50000, "127.0.20.20", 102, TCP, OTS_TCP_ACK, 0, 5);
    OtsPacket udp = pkt("127.0.20.10", 50001, "127.0.20.20", 161, UDP, 0, 5 * SEC, 5);
    guint idt = flow_id(lookup(t, &c, &tcp, &dir, NULL));
    guint idu = flow_id(lookup(t, &c, &udp, &dir, NULL));

    ots_flow_table_expire(t, 15 * SEC); /* UDP idle exactly 10 s: not yet */
    CU_ASSERT_EQUAL(c.ends->len, 0);
    ots_flow_table_expire(t, 15 * SEC + 1);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 1);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).id, idu);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).reason, OTS_FLOW_END_IDLE);

    /* Traffic keeps the TCP flow alive. */
    tcp.ts = 90 * SEC;
    lookup(t, &c, &tcp, &dir, NULL);
    ots_flow_table_expire(t, 150 * SEC);
    CU_ASSERT_EQUAL(c.ends->len, 1);
    ots_flow_table_expire(t, 190 * SEC + 1);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 2);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 1).id, idt);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 1).reason, OTS_FLOW_END_IDLE);

    /* Many flows: exactly those past their own timeout end, in one call. */
    for (guint i = 0; i < 40; i++) {
        OtsPacket p = pkt("127.0.30.1", (guint16)(2000 + i), "127.0.30.2", 502, (i % 2) ? UDP : TCP,
                          OTS_TCP_ACK, (gint64)(200 + i) * SEC, 0);
        lookup(t, &c, &p, &dir, NULL);
    }
    /* At 245 s: UDP flows last seen before 235 s (i < 35, odd) are out. */
    ots_flow_table_expire(t, 245 * SEC);
    guint udp_out = 0;
    for (guint i = 1; i < 35; i += 2)
        udp_out++;
    CU_ASSERT_EQUAL(c.ends->len, 2 + udp_out);
    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.active, 40 - udp_out);
    CU_ASSERT_EQUAL(st.timed_out, 2 + udp_out);
    /* At 330 s: TCP flows last seen before 230 s (i < 30, even) are out,
     * and all the UDP ones. */
    ots_flow_table_expire(t, 330 * SEC);
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.active, 5); /* TCP i = 30, 32, ..., 38 */
    CU_ASSERT_EQUAL(count_reason(&c, OTS_FLOW_END_IDLE), 2 + 35);

    ots_flow_table_free(t);
    CU_ASSERT_EQUAL(count_reason(&c, OTS_FLOW_END_SHUTDOWN), 5);
    ctx_clear(&c);
}

/* The table remembers the previous packet's flow; that shortcut must give
 * what the hash lookup gives, in both directions, and never a flow that has
 * ended (ASan reports a use after free if it did). */
static void
test_previous_flow_shortcut(void)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 2);
    cfg.udp_idle_timeout = 10 * SEC;
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    gboolean created;
    OtsPacket a = pkt("127.0.40.1", 47808, "127.0.40.2", 47808, UDP, 0, 0, 10);
    OtsPacket a_back = pkt("127.0.40.2", 47808, "127.0.40.1", 47808, UDP, 0, 1, 10);
    OtsPacket a_tcp = pkt("127.0.40.1", 47808, "127.0.40.2", 47808, TCP, OTS_TCP_SYN, 2, 0);
    OtsPacket b = pkt("127.0.40.1", 47809, "127.0.40.2", 47808, UDP, 0, 3, 10);
    guint ida = flow_id(lookup(t, &c, &a, &dir, &created));
    CU_ASSERT_TRUE(created);
    /* the answer: the same flow, the other way */
    CU_ASSERT_EQUAL(flow_id(lookup(t, &c, &a_back, &dir, &created)), ida);
    CU_ASSERT_FALSE(created);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_CLIENT);
    CU_ASSERT_EQUAL(flow_id(lookup(t, &c, &a, &dir, &created)), ida);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_SERVER);
    /* the same addresses and ports over TCP are another flow */
    guint idt = flow_id(lookup(t, &c, &a_tcp, &dir, &created));
    CU_ASSERT_TRUE(created);
    CU_ASSERT_NOT_EQUAL(idt, ida);
    /* a third flow evicts the least recently used (A) while B is new */
    guint idb = flow_id(lookup(t, &c, &b, &dir, &created));
    CU_ASSERT_TRUE(created);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 1);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).id, ida);
    /* B was the previous flow; it times out, then comes back: a new flow */
    ots_flow_table_expire(t, 20 * SEC);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 2);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 1).id, idb);
    b.ts = 21 * SEC;
    guint idb2 = flow_id(lookup(t, &c, &b, &dir, &created));
    CU_ASSERT_TRUE(created);
    CU_ASSERT_NOT_EQUAL(idb2, idb);
    ots_flow_table_free(t);
    ctx_clear(&c);
}

static void
test_closed_and_reset(void)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 16);
    cfg.tcp_closed_linger = 5 * SEC;
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    gboolean created;

    /* FIN one way: still open. FIN both ways: closed, but late packets
     * still find the flow during the linger time. */
    OtsPacket cl = pkt("127.0.10.1", 40000, "127.0.10.2", 502, TCP, OTS_TCP_ACK, 1 * SEC, 10);
    OtsPacket sv = pkt("127.0.10.2", 502, "127.0.10.1", 40000, TCP, OTS_TCP_ACK, 1 * SEC, 10);
    OtsFlow *f = lookup(t, &c, &cl, &dir, NULL);
    guint id = flow_id(f);
    cl.tcp_flags = OTS_TCP_ACK | OTS_TCP_FIN;
    cl.ts = 2 * SEC;
    lookup(t, &c, &cl, &dir, NULL);
    CU_ASSERT_EQUAL(f->tcp_fin[0], 1);
    CU_ASSERT_EQUAL(f->tcp_fin[1], 0);
    ots_flow_table_expire(t, 100 * SEC);
    CU_ASSERT_EQUAL(c.ends->len, 0); /* half-closed: idle timeout applies */
    sv.tcp_flags = OTS_TCP_ACK | OTS_TCP_FIN;
    sv.ts = 100 * SEC;
    lookup(t, &c, &sv, &dir, NULL);
    CU_ASSERT_EQUAL(f->tcp_fin[1], 1);
    cl.tcp_flags = OTS_TCP_ACK;
    cl.ts = 101 * SEC;
    CU_ASSERT_PTR_EQUAL(lookup(t, &c, &cl, &dir, &created), f);
    CU_ASSERT_FALSE(created);
    ots_flow_table_expire(t, 105 * SEC);
    CU_ASSERT_EQUAL(c.ends->len, 0);
    ots_flow_table_expire(t, 106 * SEC);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 1);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).id, id);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).reason, OTS_FLOW_END_CLOSED);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).packets, 4);

    /* RST: ends as "reset" after the linger time. */
    OtsPacket r = pkt("127.0.10.3", 40000, "127.0.10.2", 502, TCP, OTS_TCP_ACK, 200 * SEC, 10);
    f = lookup(t, &c, &r, &dir, NULL);
    r.tcp_flags = OTS_TCP_RST;
    r.ts = 201 * SEC;
    lookup(t, &c, &r, &dir, NULL);
    CU_ASSERT_TRUE(f->tcp_rst);
    ots_flow_table_expire(t, 205 * SEC);
    CU_ASSERT_EQUAL(c.ends->len, 1);
    ots_flow_table_expire(t, 206 * SEC);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 2);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 1).reason, OTS_FLOW_END_RESET);

    /* A new SYN on the 5-tuple of a lingering closed flow starts a new one. */
    r = pkt("127.0.10.4", 40000, "127.0.10.2", 502, TCP, OTS_TCP_RST, 300 * SEC, 0);
    f = lookup(t, &c, &r, &dir, NULL);
    id = flow_id(f);
    r.tcp_flags = OTS_TCP_SYN;
    r.ts = 301 * SEC;
    OtsFlow *g = lookup(t, &c, &r, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_NOT_EQUAL(flow_id(g), id);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 3);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 2).id, id);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 2).reason, OTS_FLOW_END_RESET);
    CU_ASSERT_FALSE(g->tcp_rst);

    /* The caller ends a flow itself. */
    ots_flow_table_end(t, g, OTS_FLOW_END_RESET);
    CU_ASSERT_EQUAL(c.ends->len, 4);
    r.ts = 302 * SEC;
    r.tcp_flags = OTS_TCP_ACK;
    lookup(t, &c, &r, &dir, &created);
    CU_ASSERT_TRUE(created);

    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.ended, 4);
    CU_ASSERT_EQUAL(st.active, 1);
    CU_ASSERT_EQUAL(st.timed_out, 0);
    CU_ASSERT_EQUAL(st.evicted, 0);
    ots_flow_table_free(t);
    ctx_clear(&c);

    /* Linger 0: a closed flow ends at the next expire call. */
    ctx_init(&c);
    cfg = config(&c, 2);
    cfg.tcp_closed_linger = 0;
    t = ots_flow_table_new(&cfg);
    r = pkt("127.0.10.5", 40000, "127.0.10.2", 502, TCP, OTS_TCP_RST | OTS_TCP_ACK, 10 * SEC, 0);
    lookup(t, &c, &r, &dir, NULL);
    ots_flow_table_expire(t, 10 * SEC);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 1);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 0).reason, OTS_FLOW_END_RESET);

    /* A full table drops a lingering closed flow before evicting a live one. */
    OtsPacket live = pkt("127.0.10.6", 1, "127.0.10.2", 502, TCP, OTS_TCP_ACK, 11 * SEC, 0);
    lookup(t, &c, &live, &dir, NULL);
    r.ts = 12 * SEC;
    lookup(t, &c, &r, &dir, NULL);
    OtsPacket third = pkt("127.0.10.7", 1, "127.0.10.2", 502, TCP, OTS_TCP_ACK, 13 * SEC, 0);
    lookup(t, &c, &third, &dir, NULL);
    CU_ASSERT_EQUAL_FATAL(c.ends->len, 2);
    CU_ASSERT_EQUAL(g_array_index(c.ends, EndRecord, 1).reason, OTS_FLOW_END_RESET);
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.evicted, 0);
    ots_flow_table_free(t);
    ctx_clear(&c);
}

static void
test_ipv6(void)
{
    Ctx c;
    ctx_init(&c);
    OtsFlowConfig cfg = config(&c, 8);
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    gboolean created;

    OtsPacket a = pkt("2001:db8::1", 40000, "2001:db8::2", 502, TCP, OTS_TCP_SYN, SEC, 0);
    OtsPacket b =
        pkt("2001:db8::2", 502, "2001:db8::1", 40000, TCP, OTS_TCP_SYN | OTS_TCP_ACK, SEC, 0);
    OtsFlow *f = lookup(t, &c, &a, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_EQUAL(f->ip[0].family, 6);
    CU_ASSERT_PTR_EQUAL(lookup(t, &c, &b, &dir, &created), f);
    CU_ASSERT_FALSE(created);
    CU_ASSERT_EQUAL(dir, OTS_DIR_TO_CLIENT);

    /* Differs only in the last address byte: another flow. */
    OtsPacket a2 = pkt("2001:db8::1", 40000, "2001:db8::3", 502, TCP, OTS_TCP_SYN, SEC, 0);
    CU_ASSERT_PTR_NOT_EQUAL(lookup(t, &c, &a2, &dir, &created), f);
    CU_ASSERT_TRUE(created);
    /* An IPv4 address whose bytes start like an IPv6 one: another flow. */
    OtsPacket v6 = pkt("a00:1::", 1, "a00:2::", 2, UDP, 0, SEC, 0);
    OtsPacket v4 = pkt("127.0.10.1", 1, "127.0.10.2", 2, UDP, 0, SEC, 0);
    OtsFlow *f6 = lookup(t, &c, &v6, &dir, NULL);
    OtsFlow *f4 = lookup(t, &c, &v4, &dir, &created);
    CU_ASSERT_TRUE(created);
    CU_ASSERT_PTR_NOT_EQUAL(f4, f6);

    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.created, 4);
    ots_flow_table_free(t);
    ctx_clear(&c);
}

/* on_end sees the whole flow (the streams too) and the table clears the
 * streams afterwards. */
static guint end_calls;
static gboolean end_saw_buffered;

static void
on_end_streams(OtsFlow *flow, OtsFlowEndReason reason, gpointer user)
{
    end_calls++;
    end_saw_buffered = flow->stream[0].ooo != NULL && flow->stream[0].ooo_bytes > 0;
}

static void
test_end_and_free(void)
{
    OtsFlowConfig cfg = {
        .max_flows = 100,
        .tcp_idle_timeout = SEC,
        .udp_idle_timeout = SEC,
        .tcp_closed_linger = SEC,
        .on_end = on_end_streams,
    };
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    OtsDirection dir;
    end_calls = 0;
    OtsPacket p = pkt("127.0.10.1", 40000, "127.0.10.2", 502, TCP, OTS_TCP_SYN, SEC, 0);
    OtsFlow *f = ots_flow_table_lookup(t, &p, &dir, NULL);
    ots_tcp_stream_add(&f->stream[dir], 1, OTS_TCP_SYN, NULL, 0, 10000, NULL, NULL, NULL);
    ots_tcp_stream_add(&f->stream[dir], 100, OTS_TCP_ACK, payload_buf, 50, 10000, NULL, NULL, NULL);
    for (guint i = 0; i < 50; i++) {
        OtsPacket q = pkt("127.0.10.3", (guint16)(1000 + i), "127.0.10.4", 53, UDP, 0, SEC, 0);
        CU_ASSERT_PTR_NOT_NULL(ots_flow_table_lookup(t, &q, &dir, NULL));
    }
    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_EQUAL(st.active, 51);
    CU_ASSERT_EQUAL(st.peak_active, 51);
    ots_flow_table_end(t, f, OTS_FLOW_END_SHUTDOWN);
    CU_ASSERT_EQUAL(end_calls, 1);
    CU_ASSERT_TRUE(end_saw_buffered); /* and ASan checks the buffer was freed */
    ots_flow_table_free(t);
    CU_ASSERT_EQUAL(end_calls, 51);
    ots_flow_table_free(NULL);

    CU_ASSERT_STRING_EQUAL(ots_flow_end_reason_to_string(OTS_FLOW_END_IDLE), "idle_timeout");
    CU_ASSERT_STRING_EQUAL(ots_flow_end_reason_to_string(OTS_FLOW_END_CLOSED), "closed");
    CU_ASSERT_STRING_EQUAL(ots_flow_end_reason_to_string(OTS_FLOW_END_RESET), "reset");
    CU_ASSERT_STRING_EQUAL(ots_flow_end_reason_to_string(OTS_FLOW_END_EVICTED), "evicted");
    CU_ASSERT_STRING_EQUAL(ots_flow_end_reason_to_string(OTS_FLOW_END_SHUTDOWN), "end_of_capture");
}

/* Random traffic over a pool of 5-tuples: every lookup finds the live flow of
 * its tuple or creates one when there is none, at most max_flows are alive,
 * and every flow created ends exactly once. */
typedef struct {
    guint id;
    guint tuple;
} StressApp;

typedef struct {
    guint8 *ended; /* times each id ended */
    gint *live;    /* live flow id for each tuple, -1 if none */
    guint n_ended;
    gboolean bad_reason;
} Stress;

static void
stress_end(OtsFlow *flow, OtsFlowEndReason reason, gpointer user)
{
    Stress *s = user;
    StressApp *app = flow->app;
    s->ended[app->id]++;
    s->n_ended++;
    if (s->live[app->tuple] == (gint)app->id)
        s->live[app->tuple] = -1;
    if (reason > OTS_FLOW_END_SHUTDOWN)
        s->bad_reason = TRUE;
    g_free(app);
    flow->app = NULL;
}

static void
test_stress(void)
{
    enum { N_TUPLES = 3000, N_PACKETS = 200000, MAX_FLOWS = 257 };
    GRand *rand = g_rand_new_with_seed(0xf10e);
    OtsPacket *tuples = g_new0(OtsPacket, N_TUPLES);
    for (guint i = 0; i < N_TUPLES; i++) {
        char src[64], dst[64];
        if (i % 5 == 0) {
            g_snprintf(src, sizeof(src), "2001:db8::%x:%x", g_rand_int_range(rand, 0, 4),
                       g_rand_int_range(rand, 0, 65536));
            g_snprintf(dst, sizeof(dst), "2001:db8::1:%x", g_rand_int_range(rand, 0, 8));
        } else {
            g_snprintf(src, sizeof(src), "127.0.%d.%d", g_rand_int_range(rand, 0, 4),
                       g_rand_int_range(rand, 1, 255));
            g_snprintf(dst, sizeof(dst), "127.1.0.%d", g_rand_int_range(rand, 1, 8));
        }
        tuples[i] =
            pkt(src, (guint16)g_rand_int_range(rand, 1024, 1100), dst,
                (guint16)g_rand_int_range(rand, 1, 600), g_rand_boolean(rand) ? TCP : UDP, 0, 0, 0);
    }
    Stress s = {0};
    s.ended = g_new0(guint8, N_PACKETS + 1);
    s.live = g_new(gint, N_TUPLES);
    for (guint i = 0; i < N_TUPLES; i++)
        s.live[i] = -1;

    OtsFlowConfig cfg = {
        .max_flows = MAX_FLOWS,
        .tcp_idle_timeout = 10 * SEC,
        .udp_idle_timeout = 2 * SEC,
        .tcp_closed_linger = 1 * SEC,
        .server_port = known_port,
        .on_end = stress_end,
        .user = &s,
    };
    OtsFlowTable *t = ots_flow_table_new(&cfg);
    guint next_id = 1;
    gint64 now = 0;
    guint wrong = 0;
    for (guint i = 0; i < N_PACKETS; i++) {
        now += g_rand_int_range(rand, 0, 20000);
        /* Skewed choice: a few tuples are busy, most are rare. */
        guint k = g_rand_boolean(rand) ? (guint)g_rand_int_range(rand, 0, 64)
                                       : (guint)g_rand_int_range(rand, 0, N_TUPLES);
        OtsPacket p = tuples[k];
        p.ts = now - g_rand_int_range(rand, 0, 5000); /* slightly out of order */
        gboolean reverse = g_rand_int_range(rand, 0, 3) == 0;
        if (reverse) {
            OtsIpAddr a = p.src;
            p.src = p.dst;
            p.dst = a;
            guint16 port = p.sport;
            p.sport = p.dport;
            p.dport = port;
        }
        guint32 r = g_rand_int_range(rand, 0, 100);
        p.tcp_flags = OTS_TCP_ACK;
        if (r < 5)
            p.tcp_flags = OTS_TCP_SYN;
        else if (r < 8)
            p.tcp_flags = OTS_TCP_SYN | OTS_TCP_ACK;
        else if (r < 13)
            p.tcp_flags |= OTS_TCP_FIN;
        else if (r < 15)
            p.tcp_flags |= OTS_TCP_RST;
        p.payload_len = (guint32)g_rand_int_range(rand, 0, 100);

        if (g_rand_int_range(rand, 0, 4) == 0)
            ots_flow_table_expire(t, now);

        OtsDirection dir;
        gboolean created;
        OtsFlow *f = ots_flow_table_lookup(t, &p, &dir, &created);
        if (f == NULL) {
            wrong++;
            continue;
        }
        if (created) {
            if (s.live[k] != -1)
                wrong++;
            StressApp *app = g_new(StressApp, 1);
            app->id = next_id++;
            app->tuple = k;
            f->app = app;
            s.live[k] = (gint)app->id;
        } else {
            StressApp *app = f->app;
            if (app->tuple != k || (gint)app->id != s.live[k])
                wrong++;
        }
        /* The direction matches the orientation. */
        guint c = dir == OTS_DIR_TO_SERVER ? 0 : 1;
        if (f->port[c] != p.sport || f->port[1 - c] != p.dport ||
            memcmp(&f->ip[c], &p.src, sizeof(OtsIpAddr)) != 0)
            wrong++;
        if (p.tcp_flags & OTS_TCP_RST && g_rand_boolean(rand))
            ots_flow_table_end(t, f, OTS_FLOW_END_RESET);

        OtsFlowStats st;
        ots_flow_table_get_stats(t, &st);
        if (st.active > MAX_FLOWS || st.created - st.ended != st.active ||
            st.created != next_id - 1 || st.ended != s.n_ended)
            wrong++;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    OtsFlowStats st;
    ots_flow_table_get_stats(t, &st);
    CU_ASSERT_TRUE(st.evicted > 0);
    CU_ASSERT_TRUE(st.timed_out > 0);
    CU_ASSERT_EQUAL(st.peak_active, MAX_FLOWS);
    CU_ASSERT_TRUE(st.created > 1000);
    ots_flow_table_free(t);

    guint not_once = 0;
    for (guint id = 1; id < next_id; id++)
        not_once += s.ended[id] != 1;
    CU_ASSERT_EQUAL(not_once, 0);
    CU_ASSERT_EQUAL(s.n_ended, next_id - 1);
    CU_ASSERT_FALSE(s.bad_reason);
    for (guint i = 0; i < N_TUPLES; i++)
        CU_ASSERT_EQUAL(s.live[i], -1);

    g_free(s.ended);
    g_free(s.live);
    g_free(tuples);
    g_rand_free(rand);
}

static CU_TestInfo flow_table_tests[] = {
    {"the previous packet's flow is a shortcut, never a stale one", test_previous_flow_shortcut},
    {"both directions map to one flow", test_both_directions},
    {"orientation rules", test_orientation},
    {"LRU eviction when full", test_eviction},
    {"idle timeouts, TCP vs UDP", test_idle_timeout},
    {"closed and reset flows", test_closed_and_reset},
    {"IPv6 flows", test_ipv6},
    {"end, free and reason names", test_end_and_free},
    {"stress with random flows", test_stress},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "flow-table", NULL, NULL, NULL, NULL, flow_table_tests                                     \
    }
#include "cunit-main.h"
