/* SPDX-License-Identifier: Apache-2.0 */
/* The session layer, through the harness, with a toy protocol:
 * [u32 length][u8 kind][payload]; kind 0xff is "not this protocol". */
#include "core/dissect/dissect.h"
#include "core/dissect/harness.h"

#include <CUnit/CUnit.h>
#include <string.h>

typedef struct {
    guint gaps[2];
    guint pdus[2];
    gboolean ended;
} Toy;

static guint toy_freed; /* test-only global: counts state_free calls */

static gpointer
toy_new(OtsSession *s)
{
    return g_new0(Toy, 1);
}

static void
toy_free(gpointer st)
{
    toy_freed++;
    g_free(st);
}

static OtsParseResult
toy_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    Toy *t = state;
    while (ots_reader_remaining(r) > 0) {
        gsize start = ots_reader_get_pos(r);
        guint32 len;
        guint8 kind;
        if (!ots_reader_get_u32_be(r, &len) || !ots_reader_get_u8(r, &kind)) {
            ots_reader_set_pos(r, start);
            return OTS_PARSE_NEED_MORE;
        }
        if (kind == 0xff) {
            ots_session_anomaly(s, dir, "bad_kind", "kind 0xff");
            return OTS_PARSE_MALFORMED;
        }
        if (!ots_reader_skip(r, len)) {
            ots_reader_set_pos(r, start);
            return OTS_PARSE_NEED_MORE;
        }
        t->pdus[dir]++;
        OtsTransactionInfo tx = {
            .request_dir = dir, .function = kind, .function_name = "toy",
            .op_class = OTS_OP_READ, .status = OTS_TX_OK,
            .request_ts = ots_session_get_time(s) - 1500, .response_ts = ots_session_get_time(s),
        };
        /* Kinds from 0x10 are all function 1: 0x10-0x1f name themselves in
         * a buffer that is reused, 0x20 has no name, 0x21 is an exception,
         * 0x22 another protocol name, 0x23 an empty name, 0x24 plain, 0x25
         * a write. */
        char name[16];
        if (kind >= 0x10)
            tx.function = 1;
        if (kind >= 0x10 && kind <= 0x1f) {
            g_snprintf(name, sizeof(name), "toy_%u", kind);
            tx.function_name = name;
        }
        if (kind == 0x20)
            tx.function_name = NULL;
        if (kind == 0x21)
            tx.status = OTS_TX_EXCEPTION;
        if (kind == 0x22)
            tx.proto = "toy-plus";
        if (kind == 0x23)
            tx.function_name = "";
        if (kind == 0x25)
            tx.op_class = OTS_OP_WRITE;
        OtsEvent *e = ots_session_begin_transaction(s, &tx);
        ots_event_begin_object(e, "toy");
        ots_event_add_uint(e, "len", len);
        ots_event_end_object(e);
        ots_event_commit(e);
        if (kind == 0x42) {
            e = ots_session_begin_asset(s, OTS_DIR_TO_CLIENT, OTS_ROLE_CONTROLLER);
            ots_event_add_string(e, "vendor", "Acme");
            ots_event_commit(e);
        }
    }
    return OTS_PARSE_OK;
}

static void
toy_gap(OtsSession *s, gpointer state, OtsDirection dir, guint32 len)
{
    ((Toy *)state)->gaps[dir]++;
}

static void
toy_end(OtsSession *s, gpointer state)
{
    ((Toy *)state)->ended = TRUE;
}

static const OtsDissectorInfo toy_info = {
    .abi_major = OTS_ABI_MAJOR, .abi_minor = OTS_ABI_MINOR, .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = "toy", .version = "1", .tcp_ports = (const guint16[]){7777, 0},
    .state_new = toy_new, .state_free = toy_free, .parse = toy_parse, .gap = toy_gap,
    .flow_end = toy_end,
};

static GBytes *
pdu(guint32 len, guint8 kind)
{
    GByteArray *a = g_byte_array_new();
    guint8 hdr[5] = {len >> 24, len >> 16, len >> 8, len, kind};
    g_byte_array_append(a, hdr, 5);
    for (guint32 i = 0; i < len; i++) {
        guint8 b = (guint8)i;
        g_byte_array_append(a, &b, 1);
    }
    return g_byte_array_free_to_bytes(a);
}

/* The envelope's 5-tuple text, made once per flow: IPv4 with every octet
 * width, IPv6, ports at both ends of their range, a VLAN. */
static void
test_envelope_text(void)
{
    static const struct {
        guint8 family;
        guint8 client[16], server[16];
        guint16 cport, sport, vlan;
        const char *tuple;
    } cases[] = {
        {4, {127, 0, 0, 1}, {127, 255, 10, 100}, 0, 65535, 0,
         "\"src_ip\":\"127.0.0.1\",\"src_port\":0,\"dst_ip\":\"127.255.10.100\","
         "\"dst_port\":65535,\"transport\":\"tcp\",\"proto\""},
        {4, {127, 9, 99, 199}, {127, 0, 0, 2}, 1, 9, 4094,
         "\"src_ip\":\"127.9.99.199\",\"src_port\":1,\"dst_ip\":\"127.0.0.2\","
         "\"dst_port\":9,\"transport\":\"tcp\",\"vlan\":4094,\"proto\""},
        {6, {[15] = 1}, {[15] = 1}, 40000, 7777, 7,
         "\"src_ip\":\"::1\",\"src_port\":40000,\"dst_ip\":\"::1\",\"dst_port\":7777,"
         "\"transport\":\"tcp\",\"vlan\":7,\"proto\""},
    };
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
        OtsFlow *f = ots_harness_flow(h);
        f->ip[0].family = f->ip[1].family = cases[k].family;
        memcpy(f->ip[0].addr, cases[k].client, 16);
        memcpy(f->ip[1].addr, cases[k].server, 16);
        f->port[0] = cases[k].cport;
        f->port[1] = cases[k].sport;
        f->vlan_id = cases[k].vlan;
        g_autoptr(GBytes) p = pdu(1, 1);
        ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(p, NULL), g_bytes_get_size(p));
        CU_ASSERT_EQUAL_FATAL(ots_harness_count(h, "transaction"), 1);
        const char *line = ots_harness_event(h, (guint)ots_harness_find(h, "transaction", 0));
        if (!strstr(line, cases[k].tuple))
            g_printerr("envelope: %s\nwanted: %s\n", line, cases[k].tuple);
        CU_ASSERT_PTR_NOT_NULL(strstr(line, cases[k].tuple));
    }
}

static void
test_split_and_multi(void)
{
    g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
    g_autoptr(GBytes) p1 = pdu(10, 1);
    g_autoptr(GBytes) p2 = pdu(3, 2);
    /* two PDUs in one feed */
    GByteArray *both = g_byte_array_new();
    g_byte_array_append(both, g_bytes_get_data(p1, NULL), g_bytes_get_size(p1));
    g_byte_array_append(both, g_bytes_get_data(p2, NULL), g_bytes_get_size(p2));
    CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, both->data, both->len), OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 2);
    /* one PDU byte by byte */
    gsize n;
    const guint8 *d = g_bytes_get_data(p1, &n);
    for (gsize i = 0; i < n; i++) {
        OtsParseResult r = ots_harness_feed(h, OTS_DIR_TO_CLIENT, d + i, 1);
        CU_ASSERT_EQUAL(r, i + 1 < n ? OTS_PARSE_NEED_MORE : OTS_PARSE_OK);
    }
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 3);
    g_byte_array_unref(both);
    /* envelope: the requester is src; latency; proto */
    gint i = ots_harness_find(h, "transaction", 2);
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "src_ip", "\"127.0.0.2\""));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "src_port", "7777"));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "dst_port", "40000"));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "transport", "\"tcp\""));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "proto", "\"toy\""));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "latency_us", "1500"));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "op_class", "\"read\""));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "toy.len", "10"));
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static void
test_malformed_and_gap(void)
{
    guint freed = toy_freed;
    {
        g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
        g_autoptr(GBytes) bad = pdu(0, 0xff);
        g_autoptr(GBytes) part = pdu(100, 1);
        /* an incomplete PDU pending, then a gap drops it */
        CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(part, NULL), 20),
                        OTS_PARSE_NEED_MORE);
        ots_harness_gap(h, OTS_DIR_TO_SERVER, 500);
        g_autoptr(GBytes) ok = pdu(1, 3);
        CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(ok, NULL),
                                         g_bytes_get_size(ok)),
                        OTS_PARSE_OK);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
        /* MALFORMED: an anomaly event, counted, and a gap to resynchronise */
        CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(bad, NULL),
                                         g_bytes_get_size(bad)),
                        OTS_PARSE_MALFORMED);
        gint a = ots_harness_find(h, "alert", 0);
        CU_ASSERT_TRUE_FATAL(a >= 0);
        CU_ASSERT_TRUE(ots_harness_field_is(h, a, "category", "\"protocol_anomaly\""));
        CU_ASSERT_TRUE(ots_harness_field_is(h, a, "code", "\"bad_kind\""));
        CU_ASSERT_TRUE(ots_harness_field_is(h, a, "proto", "\"toy\""));
        ots_harness_end(h);
    }
    CU_ASSERT_EQUAL(toy_freed, freed + 1); /* state freed exactly once */
}

static void
test_pdu_too_large(void)
{
    g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
    /* claims 1 MB: more than max_pdu (64 KiB in the harness) */
    guint8 chunk[4096];
    memset(chunk, 0, sizeof(chunk));
    chunk[1] = 0x10; /* length 0x00100000 */
    chunk[4] = 1;
    for (int i = 0; i < 20; i++)
        ots_harness_feed(h, OTS_DIR_TO_SERVER, chunk, sizeof(chunk));
    CU_ASSERT(ots_harness_count(h, "alert") >= 1);
    gint a = ots_harness_find(h, "alert", 0);
    CU_ASSERT_TRUE(ots_harness_field_is(h, a, "code", "\"pdu_too_large\""));
}

static void
test_asset(void)
{
    g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
    g_autoptr(GBytes) p = pdu(2, 0x42);
    ots_harness_feed(h, OTS_DIR_TO_CLIENT, g_bytes_get_data(p, NULL), g_bytes_get_size(p));
    gint i = ots_harness_find(h, "asset", 0);
    CU_ASSERT_TRUE_FATAL(i >= 0);
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "ip", "\"127.0.0.2\""));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "port", "7777"));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "role", "\"controller\""));
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "vendor", "\"Acme\""));
}

static void
test_udp(void)
{
    g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_UDP, 7777);
    g_autoptr(GBytes) p = pdu(4, 1);
    /* a datagram cut short is not kept for later */
    CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(p, NULL), 6),
                    OTS_PARSE_NEED_MORE);
    CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(p, NULL),
                                     g_bytes_get_size(p)),
                    OTS_PARSE_OK);
    CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
    gint i = ots_harness_find(h, "transaction", 0);
    CU_ASSERT_TRUE(ots_harness_field_is(h, i, "transport", "\"udp\""));
}

/* A reload's registry (ots_dissect_context_set_registry), on real flows of
 * a flow table: a bound flow keeps its dissector when the ports move, new
 * flows follow the new ports, and disabling the dissector lets its flows go
 * at once (flow end runs, state freed) while a re-enabled one binds new
 * flows again. */
static void
count_batch(OtsEventBatch *batch, gpointer user)
{
    ots_event_batch_free(batch);
}

static OtsDissectRegistry *
toy_registry(gboolean enabled, guint16 port)
{
    OtsDissectRegistry *r = ots_dissect_registry_new();
    GArray *none = g_array_new(FALSE, FALSE, sizeof(guint16));
    GArray *udp = g_array_new(FALSE, FALSE, sizeof(guint16));
    g_array_append_val(udp, port);
    ots_dissect_registry_add(r, &toy_info, enabled, FALSE, none, udp, NULL);
    g_array_unref(none);
    g_array_unref(udp);
    return r;
}

static void
feed_udp(OtsFlowTable *ft, OtsDissectContext *ctx, guint16 sport, guint16 dport, gint64 ts)
{
    static const guint8 datagram[] = {0, 0, 0, 2, 1, 0xaa, 0xbb};
    OtsPacket pkt = {.ts = ts, .ip_version = 4, .l4_proto = 17, .sport = sport, .dport = dport,
                     .payload = datagram, .payload_len = sizeof(datagram)};
    pkt.src.family = pkt.dst.family = 4;
    pkt.src.addr[0] = pkt.dst.addr[0] = 127;
    pkt.src.addr[3] = 1;
    pkt.dst.addr[3] = 2;
    pkt.wire_len = pkt.cap_len = 64;
    OtsDirection dir;
    gboolean created;
    OtsFlow *f = ots_flow_table_lookup(ft, &pkt, &dir, &created);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    ots_dissect_packet(ctx, f, dir, &pkt, 65536);
}

static void
test_registry_swap(void)
{
    OtsEventWriter w;
    ots_event_writer_init(&w, 1, count_batch, NULL);
    OtsDissectRegistry *r1 = toy_registry(TRUE, 7777);
    OtsDissectContext ctx;
    ots_dissect_context_init(&ctx, r1, &w, 65536, FALSE);
    OtsFlowConfig fc = {.max_flows = 64, .tcp_idle_timeout = 600 * G_USEC_PER_SEC,
                        .udp_idle_timeout = 600 * G_USEC_PER_SEC,
                        .server_port = ots_dissect_is_server_port, .on_end = ots_dissect_flow_end,
                        .user = &ctx};
    OtsFlowTable *ft = ots_flow_table_new(&fc);
    gint64 t = G_GINT64_CONSTANT(1700000000) * G_USEC_PER_SEC;
    guint freed = toy_freed;

    feed_udp(ft, &ctx, 40001, 7777, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 1);

    /* The toy moves to 8888: the bound flow keeps it; new flows follow. */
    OtsDissectRegistry *r2 = toy_registry(TRUE, 8888);
    ots_dissect_context_set_registry(&ctx, r2, ft);
    ots_dissect_registry_free(r1);
    feed_udp(ft, &ctx, 40001, 7777, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 2);
    feed_udp(ft, &ctx, 40002, 7777, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 2);
    feed_udp(ft, &ctx, 40003, 8888, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 3);
    CU_ASSERT_EQUAL(toy_freed, freed);

    /* Disabled: both bound flows are let go now, and give nothing more. */
    OtsDissectRegistry *r3 = toy_registry(FALSE, 8888);
    ots_dissect_context_set_registry(&ctx, r3, ft);
    ots_dissect_registry_free(r2);
    CU_ASSERT_EQUAL(toy_freed, freed + 2);
    feed_udp(ft, &ctx, 40001, 7777, t++);
    feed_udp(ft, &ctx, 40003, 8888, t++);
    feed_udp(ft, &ctx, 40004, 8888, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 3);

    /* Enabled again: new flows bind; the flows let go stay undissected. */
    OtsDissectRegistry *r4 = toy_registry(TRUE, 8888);
    ots_dissect_context_set_registry(&ctx, r4, ft);
    ots_dissect_registry_free(r3);
    feed_udp(ft, &ctx, 40005, 8888, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 4);
    feed_udp(ft, &ctx, 40003, 8888, t++);
    CU_ASSERT_EQUAL(w.counts[OTS_EVENT_TRANSACTION], 4);

    ots_flow_table_free(ft);
    CU_ASSERT_EQUAL(toy_freed, freed + 3); /* the last bound flow, at its end */
    ots_event_writer_flush(&w);
    ots_event_writer_clear(&w);
    ots_dissect_registry_free(r4);
}

/* flows.memcap_mb: an incomplete PDU that the thread's budget cannot hold
 * is skipped (anomaly "memcap", a gap), one it can is kept and charged, and
 * what a session holds goes back when it ends. */
static void
test_memcap_pending(void)
{
    g_autoptr(GBytes) big = pdu(3000, 1);
    const guint8 *d = g_bytes_get_data(big, NULL);
    {
        g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
        ots_harness_set_memcap(h, 1024);
        CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, d, 2000), OTS_PARSE_NEED_MORE);
        CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 1);
        gint i = ots_harness_find(h, "alert", 0);
        CU_ASSERT_TRUE(i >= 0 && ots_harness_field_is(h, i, "code", "\"memcap\""));
        CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 2000);
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
        CU_ASSERT_EQUAL(((Toy *)ots_session_get_state(ots_harness_session(h)))->gaps[0], 1);
    }
    {
        g_autoptr(GBytes) bigger = pdu(6000, 1);
        const guint8 *b = g_bytes_get_data(bigger, NULL);
        g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
        ots_harness_set_memcap(h, 1 << 20);
        CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, b, 4000), OTS_PARSE_NEED_MORE);
        CU_ASSERT_TRUE(ots_harness_mem_used(h) >= 4000);
        CU_ASSERT_EQUAL(ots_harness_feed(h, OTS_DIR_TO_SERVER, b + 4000, 2005), OTS_PARSE_OK);
        CU_ASSERT_EQUAL(ots_harness_count(h, "transaction"), 1);
        CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
        /* A buffer over 4 KiB is given back once its PDU is done. */
        CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
    }
}

/* Out-of-order TCP data counts against the budget too: with room it is
 * buffered and charged (and refunded at flow end); without, the stream
 * stops waiting for the hole at once. */
static void
feed_tcp(OtsFlowTable *ft, OtsDissectContext *ctx, guint32 seq, guint8 flags, const guint8 *data,
         guint32 len, gint64 ts)
{
    OtsPacket pkt = {.ts = ts, .ip_version = 4, .l4_proto = 6, .sport = 40000, .dport = 7777,
                     .tcp_seq = seq, .tcp_flags = flags, .payload = data, .payload_len = len};
    pkt.src.family = pkt.dst.family = 4;
    pkt.src.addr[0] = pkt.dst.addr[0] = 127;
    pkt.src.addr[3] = 1;
    pkt.dst.addr[3] = 2;
    pkt.wire_len = pkt.cap_len = 64 + len;
    OtsDirection dir;
    gboolean created;
    OtsFlow *f = ots_flow_table_lookup(ft, &pkt, &dir, &created);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    ots_dissect_packet(ctx, f, dir, &pkt, 65536);
}

static void
test_memcap_ooo(void)
{
    static guint8 data[1500];
    for (gsize cap = 0; cap <= 1000; cap += 1000) {
        OtsEventWriter w;
        ots_event_writer_init(&w, 1, count_batch, NULL);
        OtsDissectRegistry *r = ots_dissect_registry_new();
        GArray *tcp = g_array_new(FALSE, FALSE, sizeof(guint16));
        guint16 port = 7777;
        g_array_append_val(tcp, port);
        ots_dissect_registry_add(r, &toy_info, TRUE, FALSE, tcp, NULL, NULL);
        g_array_unref(tcp);
        OtsDissectContext ctx;
        ots_dissect_context_init(&ctx, r, &w, 65536, FALSE);
        ctx.mem_cap = cap;
        OtsFlowConfig fc = {.max_flows = 4, .tcp_idle_timeout = 600 * G_USEC_PER_SEC,
                            .udp_idle_timeout = 600 * G_USEC_PER_SEC,
                            .server_port = ots_dissect_is_server_port,
                            .on_end = ots_dissect_flow_end, .user = &ctx};
        OtsFlowTable *ft = ots_flow_table_new(&fc);
        gint64 t = G_GINT64_CONSTANT(1700000000) * G_USEC_PER_SEC;
        feed_tcp(ft, &ctx, 1000, OTS_TCP_SYN, NULL, 0, t++);
        /* 1500 bytes 2000 past the next expected byte: a hole before them. */
        feed_tcp(ft, &ctx, 3001, OTS_TCP_ACK, data, sizeof(data), t++);
        if (cap == 0) {
            CU_ASSERT_TRUE(ctx.stats.mem_used >= sizeof(data));
            CU_ASSERT_EQUAL(ctx.tcp.gaps, 0);
            CU_ASSERT_EQUAL(ctx.stats.memcap_refused, 0);
        } else {
            CU_ASSERT_TRUE(ctx.stats.mem_used <= cap);
            CU_ASSERT_EQUAL(ctx.tcp.gaps, 1);
            CU_ASSERT_TRUE(ctx.stats.memcap_refused >= sizeof(data));
        }
        ots_flow_table_free(ft);
        CU_ASSERT_EQUAL(ctx.stats.mem_used, 0);
        ots_event_writer_flush(&w);
        ots_event_writer_clear(&w);
        ots_dissect_registry_free(r);
    }
}

/* ots_session_charge()/ots_session_refund(): the SDK side of the budget. */
static void
test_memcap_charge(void)
{
    g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
    OtsSession *s = ots_harness_session(h);
    ots_harness_set_memcap(h, 1000);
    CU_ASSERT_TRUE(ots_session_charge(s, 600));
    CU_ASSERT_FALSE(ots_session_charge(s, 600));
    CU_ASSERT_EQUAL(ots_harness_memcap_refused(h), 600);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 600);
    ots_session_refund(s, 200);
    CU_ASSERT_TRUE(ots_session_charge(s, 600));
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 1000);
    /* A refund never takes back more than the session was charged. */
    ots_session_refund(s, 5000);
    CU_ASSERT_EQUAL(ots_harness_mem_used(h), 0);
}

/* The members after the tuple are kept from one transaction to the next
 * (TxHead): each must still show its own function, name, status and proto. */
static void
test_transaction_head(void)
{
    static const struct {
        guint8 kind;
        const char *head;
    } seq[] = {
        {0x10, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy_16\",\"op_class\":"
               "\"read\",\"status\":\"ok\","},
        {0x10, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy_16\",\"op_class\":"
               "\"read\",\"status\":\"ok\","},
        {0x11, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy_17\",\"op_class\":"
               "\"read\",\"status\":\"ok\","},
        {0x10, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy_16\",\"op_class\":"
               "\"read\",\"status\":\"ok\","},
        {0x20, "\"proto\":\"toy\",\"function\":1,\"op_class\":\"read\",\"status\":\"ok\","},
        {0x23, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"\",\"op_class\":\"read\","
               "\"status\":\"ok\","},
        {0x20, "\"proto\":\"toy\",\"function\":1,\"op_class\":\"read\",\"status\":\"ok\","},
        {0x24, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy\",\"op_class\":\"read\","
               "\"status\":\"ok\","},
        {0x21, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy\",\"op_class\":\"read\","
               "\"status\":\"exception\","},
        {0x24, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy\",\"op_class\":\"read\","
               "\"status\":\"ok\","},
        {0x22, "\"proto\":\"toy-plus\",\"function\":1,\"function_name\":\"toy\",\"op_class\":"
               "\"read\",\"status\":\"ok\","},
        {0x24, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy\",\"op_class\":\"read\","
               "\"status\":\"ok\","},
        {0x25, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy\",\"op_class\":\"write\","
               "\"status\":\"ok\","},
        {0x24, "\"proto\":\"toy\",\"function\":1,\"function_name\":\"toy\",\"op_class\":\"read\","
               "\"status\":\"ok\","},
    };
    g_autoptr(OtsHarness) h = ots_harness_new(&toy_info, OTS_L4_TCP, 7777);
    for (guint k = 0; k < G_N_ELEMENTS(seq); k++) {
        g_autoptr(GBytes) p = pdu(1, seq[k].kind);
        ots_harness_feed(h, OTS_DIR_TO_SERVER, g_bytes_get_data(p, NULL), g_bytes_get_size(p));
        gint i = ots_harness_find(h, "transaction", k);
        CU_ASSERT_FATAL(i >= 0);
        const char *line = ots_harness_event(h, (guint)i);
        if (!strstr(line, seq[k].head))
            g_printerr("transaction %u: %s\nwanted: %s\n", k, line, seq[k].head);
        CU_ASSERT_PTR_NOT_NULL(strstr(line, seq[k].head));
    }
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
}

static CU_TestInfo dissect_tests[] = {
    {"transaction members kept from one event to the next", test_transaction_head},
    {"envelope 5-tuple text: IPv4, IPv6, ports, VLAN", test_envelope_text},
    {"PDUs split and batched", test_split_and_multi},
    {"malformed, gap, state freed once", test_malformed_and_gap},
    {"incomplete PDU over max_pdu", test_pdu_too_large},
    {"asset event", test_asset},
    {"udp datagrams", test_udp},
    {"a reload's registry on live flows", test_registry_swap},
    {"memcap: incomplete PDUs", test_memcap_pending},
    {"memcap: charge and refund", test_memcap_charge},
    {"memcap: out-of-order TCP data", test_memcap_ooo},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES {"dissect", NULL, NULL, NULL, NULL, dissect_tests}
#include "cunit-main.h"
