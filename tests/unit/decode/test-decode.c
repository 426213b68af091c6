/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/decode: hand-built frames for every link type and
 * header edge case, every malformed reason, and the real corpus captures
 * checked frame by frame against tshark. */

#include <glib.h>
#include <pcap/pcap.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "core/decode/decode.h"

#define DLT_SLL2_VALUE 276
#define DLT_IPV4_VALUE 228
#define DLT_IPV6_VALUE 229
#define LINKTYPE_RAW_VALUE 101
#define DLT_RAW_BSDOS_VALUE 14
#define DLT_LOOP_LINUX_VALUE 108

/* ---- frame builder ------------------------------------------------------ */

typedef struct {
    guint8 b[4096];
    gsize len;
} Frame;

static void
put8(Frame *f, guint v)
{
    g_assert(f->len < sizeof(f->b));
    f->b[f->len++] = (guint8)v;
}

static void
put16(Frame *f, guint v)
{
    put8(f, (v >> 8) & 0xff);
    put8(f, v & 0xff);
}

static void
put32(Frame *f, guint32 v)
{
    put16(f, v >> 16);
    put16(f, v & 0xffff);
}

static void
put_bytes(Frame *f, const guint8 *p, gsize n)
{
    for (gsize i = 0; i < n; i++)
        put8(f, p[i]);
}

static void
put_fill(Frame *f, guint v, gsize n)
{
    for (gsize i = 0; i < n; i++)
        put8(f, v);
}

static void
set16(Frame *f, gsize at, guint v)
{
    f->b[at] = (guint8)(v >> 8);
    f->b[at + 1] = (guint8)v;
}

static void
eth(Frame *f, guint type)
{
    static const guint8 macs[12] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                                    0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb};
    put_bytes(f, macs, sizeof(macs));
    put16(f, type);
}

static void
vlan_tag(Frame *f, guint tci, guint next_type)
{
    put16(f, tci);
    put16(f, next_type);
}

/* IPv4 header 192.0.2.1 -> 198.51.100.7 with @opt_words 32-bit option words
 * (NOPs); returns its offset so that ipv4_fix_len can set the total length. */
static gsize
ipv4(Frame *f, guint proto, guint opt_words, guint frag)
{
    gsize at = f->len;
    put8(f, 0x40 | (5 + opt_words));
    put8(f, 0);
    put16(f, 0); /* total length, fixed up later */
    put16(f, 0x1234);
    put16(f, frag);
    put8(f, 64);
    put8(f, proto);
    put16(f, 0);
    put32(f, 0xc0000201);
    put32(f, 0xc6336407);
    put_fill(f, 0x01, opt_words * 4);
    return at;
}

static void
ipv4_fix_len(Frame *f, gsize at)
{
    set16(f, at + 2, (guint)(f->len - at));
}

/* IPv6 header 2001:db8::1 -> 2001:db8::2 */
static gsize
ipv6(Frame *f, guint next)
{
    static const guint8 src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const guint8 dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    gsize at = f->len;
    put32(f, 0x60000000);
    put16(f, 0); /* payload length, fixed up later */
    put8(f, next);
    put8(f, 33);
    put_bytes(f, src, 16);
    put_bytes(f, dst, 16);
    return at;
}

static void
ipv6_fix_len(Frame *f, gsize at)
{
    set16(f, at + 4, (guint)(f->len - at - 40));
}

/* A hop-by-hop / routing / destination options header of (len8 + 1) * 8 bytes. */
static void
ipv6_ext(Frame *f, guint next, guint len8)
{
    put8(f, next);
    put8(f, len8);
    put_fill(f, 0, (len8 + 1) * 8 - 2);
}

static void
tcp(Frame *f, guint sport, guint dport, guint doff_words, guint flags)
{
    put16(f, sport);
    put16(f, dport);
    put32(f, 0x01020304);
    put32(f, 0xa0b0c0d0);
    put8(f, doff_words << 4);
    put8(f, flags);
    put16(f, 8192);
    put16(f, 0);
    put16(f, 0);
    /* Options (when doff_words > 5): NOPs. */
    if (doff_words > 5)
        put_fill(f, 0x01, (doff_words - 5) * 4);
}

static gsize
udp(Frame *f, guint sport, guint dport)
{
    gsize at = f->len;
    put16(f, sport);
    put16(f, dport);
    put16(f, 0); /* length, fixed up later */
    put16(f, 0);
    return at;
}

static void
udp_fix_len(Frame *f, gsize at)
{
    set16(f, at + 4, (guint)(f->len - at));
}

static void
payload(Frame *f, gsize n)
{
    for (gsize i = 0; i < n; i++)
        put8(f, 0xa0 + (i % 16));
}

/* ---- decoding helpers ----------------------------------------------------- */

/* Every packet lands in exactly one result bucket. */
static void
check_invariants(const OtsDecodeStats *s)
{
    guint64 sum = 0;
    for (int i = 0; i < OTS_MALFORMED_N_REASONS; i++)
        sum += s->malformed_by_reason[i];
    CU_ASSERT_EQUAL(sum, s->malformed);
    CU_ASSERT_EQUAL(s->tcp + s->udp + s->not_ip + s->other_l4 + s->fragments + s->malformed +
                        s->unsupported_link,
                    s->packets);
}

static OtsDecodeResult
decode_n(int dlt, const Frame *f, gsize cap, OtsPacket *pkt, OtsDecodeStats *s)
{
    OtsDecodeResult res = ots_decode_packet(dlt, f->b, (guint32)cap, (guint32)f->len,
                                            G_GINT64_CONSTANT(1700000000123456), pkt, s);
    check_invariants(s);
    return res;
}

static OtsDecodeResult
decode(int dlt, const Frame *f, OtsPacket *pkt, OtsDecodeStats *s)
{
    return decode_n(dlt, f, f->len, pkt, s);
}

static void
assert_addr(const OtsIpAddr *a, const char *expected)
{
    char buf[64];
    ots_ip_addr_to_string(a, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, expected);
}

/* Exactly one malformed packet, for @reason. */
static void
assert_only_malformed(const OtsDecodeStats *s, OtsMalformedReason reason)
{
    CU_ASSERT_EQUAL(s->malformed, 1);
    for (int i = 0; i < OTS_MALFORMED_N_REASONS; i++)
        CU_ASSERT_EQUAL(s->malformed_by_reason[i], i == (int)reason ? 1 : 0);
}

/* Builds the standard IPv4/TCP test datagram (sport 40000 -> 502, 10 payload
 * bytes) after whatever link header @f holds. */
static void
ipv4_tcp_datagram(Frame *f, gsize payload_len)
{
    gsize ip = ipv4(f, 6, 0, 0x4000);
    tcp(f, 40000, 502, 5, OTS_TCP_PSH | OTS_TCP_ACK);
    payload(f, payload_len);
    ipv4_fix_len(f, ip);
}

static void
ipv6_udp_datagram(Frame *f, gsize payload_len)
{
    gsize ip = ipv6(f, 17);
    gsize u = udp(f, 47808, 47808);
    payload(f, payload_len);
    udp_fix_len(f, u);
    ipv6_fix_len(f, ip);
}

static void
assert_ipv4_tcp(const OtsPacket *pkt, gsize payload_len)
{
    CU_ASSERT_EQUAL(pkt->ip_version, 4);
    assert_addr(&pkt->src, "192.0.2.1");
    assert_addr(&pkt->dst, "198.51.100.7");
    CU_ASSERT_EQUAL(pkt->ttl, 64);
    CU_ASSERT_EQUAL(pkt->l4_proto, 6);
    CU_ASSERT_EQUAL(pkt->sport, 40000);
    CU_ASSERT_EQUAL(pkt->dport, 502);
    CU_ASSERT_EQUAL(pkt->payload_len, payload_len);
    CU_ASSERT_FALSE(pkt->truncated);
}

static void
assert_ipv6_udp(const OtsPacket *pkt, gsize payload_len)
{
    CU_ASSERT_EQUAL(pkt->ip_version, 6);
    assert_addr(&pkt->src, "2001:db8::1");
    assert_addr(&pkt->dst, "2001:db8::2");
    CU_ASSERT_EQUAL(pkt->ttl, 33);
    CU_ASSERT_EQUAL(pkt->l4_proto, 17);
    CU_ASSERT_EQUAL(pkt->sport, 47808);
    CU_ASSERT_EQUAL(pkt->dport, 47808);
    CU_ASSERT_EQUAL(pkt->payload_len, payload_len);
    CU_ASSERT_FALSE(pkt->truncated);
}

/* ---- link types ---------------------------------------------------------- */

static void
test_link_supported(void)
{
    const int yes[] = {1, 113, 276, 12, 14, 101, 228, 229, 0, 108};
    const int no[] = {-1, 2, 9, 105, 127, 147, 254, 9999};
    for (gsize i = 0; i < G_N_ELEMENTS(yes); i++)
        CU_ASSERT_TRUE(ots_decode_link_supported(yes[i]));
    for (gsize i = 0; i < G_N_ELEMENTS(no); i++)
        CU_ASSERT_FALSE(ots_decode_link_supported(no[i]));
    CU_ASSERT_TRUE(ots_decode_link_supported(DLT_EN10MB));
    CU_ASSERT_TRUE(ots_decode_link_supported(DLT_LINUX_SLL));
    CU_ASSERT_TRUE(ots_decode_link_supported(DLT_RAW));
    CU_ASSERT_TRUE(ots_decode_link_supported(DLT_NULL));
    CU_ASSERT_TRUE(ots_decode_link_supported(DLT_LOOP));
}

/* A literal frame, independent of the builder: Modbus/TCP read request. */
static const guint8 eth_ipv4_tcp_literal[] = {
    /* Ethernet */
    0x00, 0x1d, 0x9c, 0xc7, 0xb0, 0x70, 0x00, 0x0c, 0x29, 0x3c, 0x8e, 0x11, 0x08, 0x00,
    /* IPv4: 127.0.0.57 -> 127.0.0.3, TTL 128, total 52 */
    0x45, 0x00, 0x00, 0x34, 0x2a, 0x0b, 0x40, 0x00, 0x80, 0x06, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x39,
    0x7f, 0x00, 0x00, 0x03,
    /* TCP 2578 -> 502, seq 0x1c8c7a66, ack 0x0006fd9c, PSH|ACK, window 64240 */
    0x0a, 0x12, 0x01, 0xf6, 0x1c, 0x8c, 0x7a, 0x66, 0x00, 0x06, 0xfd, 0x9c, 0x50, 0x18, 0xfa, 0xf0,
    0x00, 0x00, 0x00, 0x00,
    /* Modbus: 12 bytes */
    0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x0a, 0x03, 0x00, 0x00, 0x00, 0x0a};

static void
test_eth_ipv4_tcp_literal(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    OtsDecodeResult res =
        ots_decode_packet(DLT_EN10MB, eth_ipv4_tcp_literal, sizeof(eth_ipv4_tcp_literal), 1000,
                          G_GINT64_CONSTANT(42), &pkt, &s);

    CU_ASSERT_EQUAL(res, OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.ts, 42);
    CU_ASSERT_EQUAL(pkt.wire_len, 1000);
    CU_ASSERT_EQUAL(pkt.cap_len, sizeof(eth_ipv4_tcp_literal));
    CU_ASSERT_EQUAL(pkt.vlan_depth, 0);
    CU_ASSERT_EQUAL(pkt.ip_version, 4);
    assert_addr(&pkt.src, "127.0.0.57");
    assert_addr(&pkt.dst, "127.0.0.3");
    CU_ASSERT_EQUAL(pkt.src.family, 4);
    for (int i = 4; i < 16; i++)
        CU_ASSERT_EQUAL(pkt.src.addr[i], 0);
    CU_ASSERT_EQUAL(pkt.ttl, 128);
    CU_ASSERT_EQUAL(pkt.l4_proto, 6);
    CU_ASSERT_EQUAL(pkt.sport, 2578);
    CU_ASSERT_EQUAL(pkt.dport, 502);
    CU_ASSERT_EQUAL(pkt.tcp_seq, 0x1c8c7a66);
    CU_ASSERT_EQUAL(pkt.tcp_ack, 0x0006fd9c);
    CU_ASSERT_EQUAL(pkt.tcp_flags, OTS_TCP_PSH | OTS_TCP_ACK);
    CU_ASSERT_EQUAL(pkt.tcp_window, 64240);
    CU_ASSERT_EQUAL(pkt.payload_len, 12);
    CU_ASSERT_PTR_EQUAL(pkt.payload, eth_ipv4_tcp_literal + 54);
    CU_ASSERT_FALSE(pkt.truncated);

    CU_ASSERT_EQUAL(s.packets, 1);
    CU_ASSERT_EQUAL(s.bytes, 1000);
    CU_ASSERT_EQUAL(s.ipv4, 1);
    CU_ASSERT_EQUAL(s.tcp, 1);
    CU_ASSERT_EQUAL(s.udp + s.ipv6 + s.vlan + s.not_ip + s.other_l4 + s.fragments + s.truncated +
                        s.malformed + s.unsupported_link,
                    0);
    check_invariants(&s);
}

static void
test_eth_ipv4_udp(void)
{
    Frame f = {0};
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    eth(&f, 0x0800);
    gsize ip = ipv4(&f, 17, 0, 0);
    gsize u = udp(&f, 20000, 20000);
    payload(&f, 33);
    udp_fix_len(&f, u);
    ipv4_fix_len(&f, ip);

    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.l4_proto, 17);
    CU_ASSERT_EQUAL(pkt.sport, 20000);
    CU_ASSERT_EQUAL(pkt.dport, 20000);
    CU_ASSERT_EQUAL(pkt.payload_len, 33);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 14 + 20 + 8);
    CU_ASSERT_EQUAL(pkt.payload[0], 0xa0);
    CU_ASSERT_EQUAL(s.udp, 1);
    CU_ASSERT_EQUAL(s.ipv4, 1);
}

static void
test_eth_ipv6(void)
{
    Frame f = {0};
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    eth(&f, 0x86dd);
    ipv6_udp_datagram(&f, 21);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    assert_ipv6_udp(&pkt, 21);
    CU_ASSERT_EQUAL(pkt.src.family, 6);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 14 + 40 + 8);

    Frame t = {0};
    eth(&t, 0x86dd);
    gsize ip = ipv6(&t, 6);
    tcp(&t, 1234, 20000, 5, OTS_TCP_SYN);
    ipv6_fix_len(&t, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &t, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.l4_proto, 6);
    CU_ASSERT_EQUAL(pkt.tcp_flags, OTS_TCP_SYN);
    CU_ASSERT_EQUAL(pkt.sport, 1234);
    CU_ASSERT_EQUAL(pkt.dport, 20000);
    CU_ASSERT_EQUAL(pkt.tcp_seq, 0x01020304);
    CU_ASSERT_EQUAL(pkt.tcp_ack, 0xa0b0c0d0);
    CU_ASSERT_EQUAL(pkt.tcp_window, 8192);
    CU_ASSERT_EQUAL(pkt.payload_len, 0);
    CU_ASSERT_EQUAL(s.ipv6, 2);
    CU_ASSERT_EQUAL(s.tcp, 1);
    CU_ASSERT_EQUAL(s.udp, 1);
}

static void
test_eth_not_ip(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    const guint types[] = {0x0806 /* ARP */, 0x88cc /* LLDP */, 0x8892 /* PROFINET */,
                           0x8847 /* MPLS */, 0x0026 /* 802.3 length: LLC/STP */};

    for (gsize i = 0; i < G_N_ELEMENTS(types); i++) {
        Frame f = {0};
        eth(&f, types[i]);
        put_fill(&f, 0, 46);
        CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_NOT_IP);
    }
    CU_ASSERT_EQUAL(s.not_ip, G_N_ELEMENTS(types));
    CU_ASSERT_EQUAL(s.packets, G_N_ELEMENTS(types));
    CU_ASSERT_EQUAL(s.ipv4 + s.ipv6 + s.malformed, 0);
}

static const guint8 sll_ipv4_hdr[16] = {0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x0c,
                                        0x29, 0x3c, 0x8e, 0x11, 0x00, 0x00, 0x08, 0x00};

static void
test_sll(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f = {0};

    put_bytes(&f, sll_ipv4_hdr, sizeof(sll_ipv4_hdr));
    ipv4_tcp_datagram(&f, 10);
    CU_ASSERT_EQUAL(decode(DLT_LINUX_SLL, &f, &pkt, &s), OTS_DECODE_OK);
    assert_ipv4_tcp(&pkt, 10);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 16 + 20 + 20);

    /* libpcap re-inserts the VLAN tag after the cooked header. */
    Frame v = {0};
    put_bytes(&v, sll_ipv4_hdr, 14);
    put16(&v, 0x8100);
    vlan_tag(&v, 0x2000 | 42, 0x86dd);
    ipv6_udp_datagram(&v, 5);
    CU_ASSERT_EQUAL(decode(DLT_LINUX_SLL, &v, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.vlan_depth, 1);
    CU_ASSERT_EQUAL(pkt.vlan_id[0], 42);
    assert_ipv6_udp(&pkt, 5);

    /* Netlink cooked capture: the protocol field is not an ethertype. */
    Frame n = {0};
    put_bytes(&n, sll_ipv4_hdr, sizeof(sll_ipv4_hdr));
    set16(&n, 2, 824);
    ipv4_tcp_datagram(&n, 0);
    CU_ASSERT_EQUAL(decode(DLT_LINUX_SLL, &n, &pkt, &s), OTS_DECODE_NOT_IP);

    /* Cut short: 15 bytes. */
    CU_ASSERT_EQUAL(decode_n(DLT_LINUX_SLL, &f, 15, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_SLL_SHORT], 1);
    /* Exactly the header: the IPv4 header is missing. */
    CU_ASSERT_EQUAL(decode_n(DLT_LINUX_SLL, &f, 16, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV4_SHORT], 1);

    CU_ASSERT_EQUAL(s.tcp, 1);
    CU_ASSERT_EQUAL(s.udp, 1);
    CU_ASSERT_EQUAL(s.vlan, 1);
    CU_ASSERT_EQUAL(s.not_ip, 1);
    CU_ASSERT_EQUAL(s.malformed, 2);
}

static void
test_sll2(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    /* protocol, reserved, ifindex 2, ARPHRD_ETHER, PACKET_HOST, addr len 6, addr */
    const guint8 hdr[20] = {0x86, 0xdd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
                            0x00, 0x06, 0x00, 0x0c, 0x29, 0x3c, 0x8e, 0x11, 0x00, 0x00};
    Frame f = {0};

    put_bytes(&f, hdr, sizeof(hdr));
    ipv6_udp_datagram(&f, 7);
    CU_ASSERT_EQUAL(decode(DLT_SLL2_VALUE, &f, &pkt, &s), OTS_DECODE_OK);
    assert_ipv6_udp(&pkt, 7);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 20 + 40 + 8);

    Frame g = {0};
    put_bytes(&g, hdr, sizeof(hdr));
    set16(&g, 0, 0x0800);
    ipv4_tcp_datagram(&g, 3);
    CU_ASSERT_EQUAL(decode(DLT_SLL2_VALUE, &g, &pkt, &s), OTS_DECODE_OK);
    assert_ipv4_tcp(&pkt, 3);

    /* ARP over cooked v2. */
    set16(&g, 0, 0x0806);
    CU_ASSERT_EQUAL(decode(DLT_SLL2_VALUE, &g, &pkt, &s), OTS_DECODE_NOT_IP);
    /* Netlink. */
    set16(&g, 0, 0x0800);
    set16(&g, 8, 824);
    CU_ASSERT_EQUAL(decode(DLT_SLL2_VALUE, &g, &pkt, &s), OTS_DECODE_NOT_IP);

    CU_ASSERT_EQUAL(decode_n(DLT_SLL2_VALUE, &f, 19, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_SLL_SHORT], 1);
    CU_ASSERT_EQUAL(s.udp, 1);
    CU_ASSERT_EQUAL(s.tcp, 1);
    CU_ASSERT_EQUAL(s.not_ip, 2);
}

static void
test_raw(void)
{
    const int dlts[] = {DLT_RAW, 12, DLT_RAW_BSDOS_VALUE, LINKTYPE_RAW_VALUE};
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    for (gsize i = 0; i < G_N_ELEMENTS(dlts); i++) {
        Frame f4 = {0}, f6 = {0};
        ipv4_tcp_datagram(&f4, 9);
        ipv6_udp_datagram(&f6, 4);
        CU_ASSERT_EQUAL(decode(dlts[i], &f4, &pkt, &s), OTS_DECODE_OK);
        assert_ipv4_tcp(&pkt, 9);
        CU_ASSERT_PTR_EQUAL(pkt.payload, f4.b + 40);
        CU_ASSERT_EQUAL(decode(dlts[i], &f6, &pkt, &s), OTS_DECODE_OK);
        assert_ipv6_udp(&pkt, 4);
    }
    CU_ASSERT_EQUAL(s.tcp, G_N_ELEMENTS(dlts));
    CU_ASSERT_EQUAL(s.udp, G_N_ELEMENTS(dlts));
    CU_ASSERT_EQUAL(s.malformed, 0);
}

static void
test_ipv4_ipv6_links(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f4 = {0}, f6 = {0};

    ipv4_tcp_datagram(&f4, 1);
    ipv6_udp_datagram(&f6, 2);
    CU_ASSERT_EQUAL(decode(DLT_IPV4_VALUE, &f4, &pkt, &s), OTS_DECODE_OK);
    assert_ipv4_tcp(&pkt, 1);
    CU_ASSERT_EQUAL(decode(DLT_IPV6_VALUE, &f6, &pkt, &s), OTS_DECODE_OK);
    assert_ipv6_udp(&pkt, 2);

    /* The link type fixes the version: a mismatch is malformed. */
    CU_ASSERT_EQUAL(decode(DLT_IPV4_VALUE, &f6, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV4_VERSION], 1);
    Frame big4 = {0};
    ipv4_tcp_datagram(&big4, 30);
    CU_ASSERT_EQUAL(decode(DLT_IPV6_VALUE, &big4, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV6_VERSION], 1);
    CU_ASSERT_EQUAL(s.malformed, 2);
}

static void
test_loopback(void)
{
    /* AF_INET6 as different systems number it. */
    const guint32 v6_families[] = {10, 23, 24, 28, 30};
    const int dlts[] = {DLT_NULL, DLT_LOOP_LINUX_VALUE};
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    guint64 ok = 0;

    for (gsize d = 0; d < G_N_ELEMENTS(dlts); d++) {
        for (int big_endian = 0; big_endian < 2; big_endian++) {
            Frame f = {0};
            guint32 fam = big_endian ? 2 : GUINT32_SWAP_LE_BE(2);
            put32(&f, fam);
            ipv4_tcp_datagram(&f, 6);
            CU_ASSERT_EQUAL(decode(dlts[d], &f, &pkt, &s), OTS_DECODE_OK);
            assert_ipv4_tcp(&pkt, 6);
            ok++;

            for (gsize i = 0; i < G_N_ELEMENTS(v6_families); i++) {
                Frame g = {0};
                fam = big_endian ? v6_families[i] : GUINT32_SWAP_LE_BE(v6_families[i]);
                put32(&g, fam);
                ipv6_udp_datagram(&g, 8);
                CU_ASSERT_EQUAL(decode(dlts[d], &g, &pkt, &s), OTS_DECODE_OK);
                assert_ipv6_udp(&pkt, 8);
                ok++;
            }
        }
        /* An unknown family (AF_APPLETALK = 16), and family 0. */
        Frame u = {0};
        put32(&u, 16);
        ipv4_tcp_datagram(&u, 0);
        CU_ASSERT_EQUAL(decode(dlts[d], &u, &pkt, &s), OTS_DECODE_NOT_IP);
        Frame z = {0};
        put32(&z, 0);
        CU_ASSERT_EQUAL(decode(dlts[d], &z, &pkt, &s), OTS_DECODE_NOT_IP);
        /* 3 bytes: the family is cut short. */
        CU_ASSERT_EQUAL(decode_n(dlts[d], &u, 3, &pkt, &s), OTS_DECODE_MALFORMED);
    }
    CU_ASSERT_EQUAL(s.tcp + s.udp, ok);
    CU_ASSERT_EQUAL(s.not_ip, 4);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_LOOP_SHORT], 2);
    CU_ASSERT_EQUAL(s.malformed, 2);
}

static void
test_unsupported_link(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f = {0};

    eth(&f, 0x0800);
    ipv4_tcp_datagram(&f, 3);
    CU_ASSERT_EQUAL(decode(105 /* 802.11 */, &f, &pkt, &s), OTS_DECODE_UNSUPPORTED_LINK);
    CU_ASSERT_EQUAL(decode(-1, &f, &pkt, &s), OTS_DECODE_UNSUPPORTED_LINK);
    CU_ASSERT_EQUAL(s.unsupported_link, 2);
    CU_ASSERT_EQUAL(s.packets, 2);
    CU_ASSERT_EQUAL(s.bytes, 2 * f.len);
}

/* ---- VLAN ------------------------------------------------------------------ */

static void
test_vlan(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f = {0};

    eth(&f, 0x8100);
    vlan_tag(&f, 0xe000 | 100, 0x0800); /* PCP 7: only the low 12 bits are the id */
    ipv4_tcp_datagram(&f, 10);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.vlan_depth, 1);
    CU_ASSERT_EQUAL(pkt.vlan_id[0], 100);
    CU_ASSERT_EQUAL(pkt.vlan_id[1], 0);
    assert_ipv4_tcp(&pkt, 10);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 18 + 40);

    /* A tagged non-IP frame still counts as VLAN. */
    Frame a = {0};
    eth(&a, 0x8100);
    vlan_tag(&a, 5, 0x0806);
    put_fill(&a, 0, 28);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &a, &pkt, &s), OTS_DECODE_NOT_IP);
    CU_ASSERT_EQUAL(pkt.vlan_depth, 1);
    CU_ASSERT_EQUAL(pkt.vlan_id[0], 5);

    CU_ASSERT_EQUAL(s.vlan, 2);
    CU_ASSERT_EQUAL(s.tcp, 1);
    CU_ASSERT_EQUAL(s.not_ip, 1);
}

static void
test_qinq(void)
{
    const guint outer_tpids[] = {0x88a8, 0x9100, 0x8100};
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    for (gsize i = 0; i < G_N_ELEMENTS(outer_tpids); i++) {
        Frame f = {0};
        eth(&f, outer_tpids[i]);
        vlan_tag(&f, 300, 0x8100);
        vlan_tag(&f, 0x1000 | 4000, 0x86dd);
        ipv6_udp_datagram(&f, 12);
        CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
        CU_ASSERT_EQUAL(pkt.vlan_depth, 2);
        CU_ASSERT_EQUAL(pkt.vlan_id[0], 300);
        CU_ASSERT_EQUAL(pkt.vlan_id[1], 4000);
        assert_ipv6_udp(&pkt, 12);
        CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 22 + 40 + 8);
    }
    CU_ASSERT_EQUAL(s.vlan, G_N_ELEMENTS(outer_tpids));
    CU_ASSERT_EQUAL(s.udp, G_N_ELEMENTS(outer_tpids));
}

static void
test_three_tags(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f = {0};

    eth(&f, 0x9100);
    vlan_tag(&f, 11, 0x88a8);
    vlan_tag(&f, 22, 0x8100);
    vlan_tag(&f, 33, 0x0800);
    ipv4_tcp_datagram(&f, 2);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.vlan_depth, 2);
    CU_ASSERT_EQUAL(pkt.vlan_id[0], 11);
    CU_ASSERT_EQUAL(pkt.vlan_id[1], 22);
    assert_ipv4_tcp(&pkt, 2);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 26 + 40);
    CU_ASSERT_EQUAL(s.vlan, 1);

    /* A long run of tags ending in the frame's end is cut short, not looped on. */
    Frame g = {0};
    eth(&g, 0x8100);
    for (int i = 0; i < 100; i++)
        vlan_tag(&g, (guint)i, 0x8100);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &g, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(pkt.vlan_depth, 2);
    CU_ASSERT_EQUAL(pkt.vlan_id[0], 0);
    CU_ASSERT_EQUAL(pkt.vlan_id[1], 1);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_VLAN_SHORT], 1);
    CU_ASSERT_EQUAL(s.vlan, 2);
}

/* ---- IPv4 -------------------------------------------------------------------- */

static void
test_ipv4_options(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    for (guint words = 1; words <= 10; words++) {
        Frame f = {0};
        eth(&f, 0x0800);
        gsize ip = ipv4(&f, 6, words, 0);
        tcp(&f, 40000, 502, 5, OTS_TCP_ACK);
        payload(&f, 5);
        ipv4_fix_len(&f, ip);
        CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
        assert_ipv4_tcp(&pkt, 5);
        CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 14 + 20 + words * 4 + 20);
        CU_ASSERT_EQUAL(pkt.payload[0], 0xa0);
    }
    CU_ASSERT_EQUAL(s.tcp, 10);
    CU_ASSERT_EQUAL(s.malformed, 0);
}

static void
test_ipv4_fragments(void)
{
    /* first (MF, offset 0), middle (MF, offset 185), last (offset 370), and
     * DF with a non-zero offset, which is a fragment all the same. */
    const guint frags[] = {0x2000, 0x2000 | 185, 370, 0x4000 | 1};
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    for (gsize i = 0; i < G_N_ELEMENTS(frags); i++) {
        Frame f = {0};
        eth(&f, 0x0800);
        gsize ip = ipv4(&f, 17, 0, frags[i]);
        gsize u = udp(&f, 5000, 5001);
        payload(&f, 100);
        udp_fix_len(&f, u);
        ipv4_fix_len(&f, ip);
        CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_FRAGMENT);
        CU_ASSERT_EQUAL(s.fragments, i + 1);
    }
    Frame d = {0};
    eth(&d, 0x0800);
    gsize ip = ipv4(&d, 17, 0, 0x4000);
    gsize u = udp(&d, 5000, 5001);
    payload(&d, 100);
    udp_fix_len(&d, u);
    ipv4_fix_len(&d, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &d, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.payload_len, 100);

    CU_ASSERT_EQUAL(s.fragments, G_N_ELEMENTS(frags));
    CU_ASSERT_EQUAL(s.ipv4, G_N_ELEMENTS(frags) + 1);
    CU_ASSERT_EQUAL(s.udp, 1);
}

static void
test_other_l4(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f = {0};

    eth(&f, 0x0800);
    gsize ip = ipv4(&f, 1 /* ICMP */, 0, 0);
    put_fill(&f, 8, 8);
    ipv4_fix_len(&f, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OTHER_L4);
    CU_ASSERT_EQUAL(pkt.l4_proto, 1);

    Frame g = {0};
    eth(&g, 0x86dd);
    ip = ipv6(&g, 58 /* ICMPv6 */);
    put_fill(&g, 0x80, 8);
    ipv6_fix_len(&g, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &g, &pkt, &s), OTS_DECODE_OTHER_L4);
    CU_ASSERT_EQUAL(pkt.l4_proto, 58);

    CU_ASSERT_EQUAL(s.other_l4, 2);
    CU_ASSERT_EQUAL(s.ipv4, 1);
    CU_ASSERT_EQUAL(s.ipv6, 1);
}

static void
test_eth_padding(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    /* A bare ACK: 54 bytes, padded to 60 with non-zero junk. */
    Frame f = {0};
    eth(&f, 0x0800);
    ipv4_tcp_datagram(&f, 0);
    put_fill(&f, 0xee, 6);
    CU_ASSERT_EQUAL(f.len, 60);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    assert_ipv4_tcp(&pkt, 0);

    /* 2 bytes of TCP payload + 4 bytes padding. */
    Frame g = {0};
    eth(&g, 0x0800);
    ipv4_tcp_datagram(&g, 2);
    put_fill(&g, 0xee, 4);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &g, &pkt, &s), OTS_DECODE_OK);
    assert_ipv4_tcp(&pkt, 2);

    /* UDP: the IP length trims first (UDP's length agrees with it). */
    Frame u = {0};
    eth(&u, 0x0800);
    gsize ip = ipv4(&u, 17, 0, 0);
    gsize uh = udp(&u, 1, 2);
    payload(&u, 1);
    udp_fix_len(&u, uh);
    ipv4_fix_len(&u, ip);
    put_fill(&u, 0xee, 60 - u.len);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &u, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.payload_len, 1);

    /* IPv6 padding is trimmed by the payload length too. */
    Frame v = {0};
    eth(&v, 0x86dd);
    ipv6_udp_datagram(&v, 0);
    put_fill(&v, 0xee, 10);
    /* The UDP length claims the junk too: the IPv6 length wins, and a UDP
     * length past the datagram reads as truncated. */
    set16(&v, 14 + 40 + 4, 20);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &v, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.payload_len, 0);
    CU_ASSERT_TRUE(pkt.truncated);

    CU_ASSERT_EQUAL(s.truncated, 1);
    CU_ASSERT_EQUAL(s.malformed, 0);
}

static void
test_snaplen_truncation(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    Frame f = {0};
    eth(&f, 0x0800);
    ipv4_tcp_datagram(&f, 100);
    /* Captured: headers plus 30 payload bytes. */
    CU_ASSERT_EQUAL(decode_n(DLT_EN10MB, &f, 54 + 30, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_TRUE(pkt.truncated);
    CU_ASSERT_EQUAL(pkt.payload_len, 30);
    CU_ASSERT_EQUAL(pkt.wire_len, f.len);
    CU_ASSERT_EQUAL(pkt.cap_len, 84);
    CU_ASSERT_EQUAL(s.truncated, 1);
    /* Exactly the headers. */
    CU_ASSERT_EQUAL(decode_n(DLT_EN10MB, &f, 54, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_TRUE(pkt.truncated);
    CU_ASSERT_EQUAL(pkt.payload_len, 0);
    /* Not truncated when it is all there. */
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_FALSE(pkt.truncated);
    CU_ASSERT_EQUAL(pkt.payload_len, 100);

    /* IPv6 + UDP cut by the snap length. */
    Frame g = {0};
    eth(&g, 0x86dd);
    ipv6_udp_datagram(&g, 200);
    CU_ASSERT_EQUAL(decode_n(DLT_EN10MB, &g, 14 + 40 + 8 + 50, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_TRUE(pkt.truncated);
    CU_ASSERT_EQUAL(pkt.payload_len, 50);

    /* Cut in the middle of the TCP header: malformed, not truncated. */
    CU_ASSERT_EQUAL(decode_n(DLT_EN10MB, &f, 14 + 20 + 10, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_TCP_SHORT], 1);

    CU_ASSERT_EQUAL(s.truncated, 3);
    CU_ASSERT_EQUAL(s.tcp, 3);
    CU_ASSERT_EQUAL(s.udp, 1);
}

/* ---- IPv6 extension headers ------------------------------------------------ */

static void
test_ipv6_ext_headers(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    Frame f = {0};

    eth(&f, 0x86dd);
    gsize ip = ipv6(&f, 0);
    ipv6_ext(&f, 60, 0); /* hop-by-hop, 8 bytes */
    ipv6_ext(&f, 43, 1); /* destination options, 16 bytes */
    ipv6_ext(&f, 60, 2); /* routing, 24 bytes */
    ipv6_ext(&f, 6, 0);  /* destination options again, 8 bytes */
    tcp(&f, 40000, 502, 5, OTS_TCP_ACK);
    payload(&f, 9);
    ipv6_fix_len(&f, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.l4_proto, 6);
    CU_ASSERT_EQUAL(pkt.sport, 40000);
    CU_ASSERT_EQUAL(pkt.payload_len, 9);
    CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 14 + 40 + 8 + 16 + 24 + 8 + 20);

    /* AH: length in 4-octet units minus 2 (here 16 bytes). */
    Frame a = {0};
    eth(&a, 0x86dd);
    ip = ipv6(&a, 51);
    put8(&a, 17);
    put8(&a, 2);
    put_fill(&a, 0, 14);
    gsize u = udp(&a, 7, 8);
    payload(&a, 3);
    udp_fix_len(&a, u);
    ipv6_fix_len(&a, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &a, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.l4_proto, 17);
    CU_ASSERT_EQUAL(pkt.sport, 7);
    CU_ASSERT_EQUAL(pkt.payload_len, 3);

    /* ESP after hop-by-hop, and "no next header": other L4. */
    Frame e = {0};
    eth(&e, 0x86dd);
    ip = ipv6(&e, 0);
    ipv6_ext(&e, 50, 0);
    put_fill(&e, 0, 16);
    ipv6_fix_len(&e, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &e, &pkt, &s), OTS_DECODE_OTHER_L4);
    CU_ASSERT_EQUAL(pkt.l4_proto, 50);
    Frame n = {0};
    eth(&n, 0x86dd);
    ip = ipv6(&n, 60);
    ipv6_ext(&n, 59, 0);
    ipv6_fix_len(&n, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &n, &pkt, &s), OTS_DECODE_OTHER_L4);
    CU_ASSERT_EQUAL(pkt.l4_proto, 59);

    /* 16 extension headers are fine; a 17th is malformed. */
    Frame m = {0};
    eth(&m, 0x86dd);
    ip = ipv6(&m, 60);
    for (int i = 0; i < 15; i++)
        ipv6_ext(&m, 60, 0);
    ipv6_ext(&m, 17, 0);
    u = udp(&m, 1, 2);
    udp_fix_len(&m, u);
    ipv6_fix_len(&m, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &m, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.payload_len, 0);

    Frame x = {0};
    eth(&x, 0x86dd);
    ip = ipv6(&x, 60);
    for (int i = 0; i < 16; i++)
        ipv6_ext(&x, 60, 0);
    ipv6_ext(&x, 17, 0);
    u = udp(&x, 1, 2);
    udp_fix_len(&x, u);
    ipv6_fix_len(&x, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &x, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV6_EXTHDR], 1);

    /* Jumbogram: payload length 0 with hop-by-hop; the capture gives the length. */
    Frame j = {0};
    eth(&j, 0x86dd);
    ipv6(&j, 0);
    ipv6_ext(&j, 17, 0);
    u = udp(&j, 1, 2);
    payload(&j, 4);
    udp_fix_len(&j, u);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &j, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.payload_len, 4);

    CU_ASSERT_EQUAL(s.tcp, 1);
    CU_ASSERT_EQUAL(s.udp, 3);
    CU_ASSERT_EQUAL(s.other_l4, 2);
    CU_ASSERT_EQUAL(s.ipv6, 7);
    CU_ASSERT_EQUAL(s.malformed, 1);
}

static void
ipv6_frag_frame(Frame *f, guint offset_flags, gboolean after_hbh)
{
    eth(f, 0x86dd);
    gsize ip = ipv6(f, after_hbh ? 0 : 44);
    if (after_hbh)
        ipv6_ext(f, 44, 0);
    put8(f, 6);
    put8(f, 0);
    put16(f, offset_flags);
    put32(f, 0xdeadbeef);
    tcp(f, 40000, 502, 5, OTS_TCP_ACK);
    payload(f, 16);
    ipv6_fix_len(f, ip);
}

static void
test_ipv6_fragment(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    Frame first = {0}, later = {0}, last = {0}, atomic = {0};
    ipv6_frag_frame(&first, 0x0001, FALSE);        /* offset 0, M */
    ipv6_frag_frame(&later, (100 << 3) | 1, TRUE); /* offset 100, M, after hop-by-hop */
    ipv6_frag_frame(&last, 200 << 3, FALSE);       /* offset 200, no M */
    ipv6_frag_frame(&atomic, 0x0000, TRUE);        /* RFC 6946 atomic fragment */

    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &first, &pkt, &s), OTS_DECODE_FRAGMENT);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &later, &pkt, &s), OTS_DECODE_FRAGMENT);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &last, &pkt, &s), OTS_DECODE_FRAGMENT);
    CU_ASSERT_EQUAL(s.fragments, 3);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &atomic, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.l4_proto, 6);
    CU_ASSERT_EQUAL(pkt.payload_len, 16);

    /* A fragment header cut short. */
    CU_ASSERT_EQUAL(decode_n(DLT_EN10MB, &first, 14 + 40 + 7, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV6_EXTHDR], 1);
    CU_ASSERT_EQUAL(s.fragments, 3);
    CU_ASSERT_EQUAL(s.ipv6, 5);
}

/* ---- TCP and UDP edge cases -------------------------------------------------- */

static void
test_tcp_data_offset(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    /* 5 through 15 words, each with and without payload. */
    for (guint doff = 5; doff <= 15; doff++) {
        for (gsize plen = 0; plen <= 3; plen += 3) {
            Frame f = {0};
            eth(&f, 0x0800);
            gsize ip = ipv4(&f, 6, 0, 0);
            tcp(&f, 1, 2, doff, OTS_TCP_ACK);
            payload(&f, plen);
            ipv4_fix_len(&f, ip);
            CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_OK);
            CU_ASSERT_EQUAL(pkt.payload_len, plen);
            CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 34 + doff * 4);
        }
    }
    CU_ASSERT_EQUAL(s.tcp, 22);

    /* Data offsets below 5, and one word past the segment. */
    for (guint doff = 0; doff < 5; doff++) {
        Frame f = {0};
        eth(&f, 0x0800);
        gsize ip = ipv4(&f, 6, 0, 0);
        tcp(&f, 1, 2, doff, OTS_TCP_ACK);
        payload(&f, 40);
        ipv4_fix_len(&f, ip);
        CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), OTS_DECODE_MALFORMED);
    }
    Frame g = {0};
    eth(&g, 0x0800);
    gsize ip = ipv4(&g, 6, 0, 0);
    tcp(&g, 1, 2, 8, OTS_TCP_ACK); /* 32-byte header */
    ipv4_fix_len(&g, ip);
    g.b[14 + 20 + 12] = 9 << 4; /* now claims 36 bytes */
    put_fill(&g, 0xee, 10);     /* padding must not count as header */
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &g, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_TCP_HDRLEN], 6);

    /* All flag bits are kept, ECE and CWR included. */
    Frame h = {0};
    eth(&h, 0x0800);
    ip = ipv4(&h, 6, 0, 0);
    tcp(&h, 1, 2, 5, 0xff);
    ipv4_fix_len(&h, ip);
    CU_ASSERT_EQUAL(decode(DLT_EN10MB, &h, &pkt, &s), OTS_DECODE_OK);
    CU_ASSERT_EQUAL(pkt.tcp_flags, 0xff);
    CU_ASSERT_TRUE(pkt.tcp_flags & OTS_TCP_URG);
    CU_ASSERT_TRUE(pkt.tcp_flags & OTS_TCP_FIN);
}

static void
test_udp_length(void)
{
    OtsDecodeStats s = {0};
    OtsPacket pkt;
    struct {
        guint udp_len; /* UDP length field */
        gsize data;    /* payload bytes after the header in the IP datagram */
        OtsDecodeResult res;
        guint32 payload_len;
        gboolean truncated;
    } cases[] = {
        {8, 0, OTS_DECODE_OK, 0, FALSE},      /* empty datagram */
        {8, 10, OTS_DECODE_OK, 0, FALSE},     /* trailing bytes trimmed */
        {18, 10, OTS_DECODE_OK, 10, FALSE},   /* exact */
        {15, 10, OTS_DECODE_OK, 7, FALSE},    /* shorter: trimmed */
        {19, 10, OTS_DECODE_OK, 10, TRUE},    /* longer: what is there */
        {65535, 10, OTS_DECODE_OK, 10, TRUE}, /* much longer */
        {7, 10, OTS_DECODE_MALFORMED, 0, FALSE}, {0, 10, OTS_DECODE_MALFORMED, 0, FALSE},
    };

    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        Frame f = {0};
        eth(&f, 0x0800);
        gsize ip = ipv4(&f, 17, 0, 0);
        gsize u = udp(&f, 47808, 47809);
        payload(&f, cases[i].data);
        ipv4_fix_len(&f, ip);
        set16(&f, u + 4, cases[i].udp_len);
        CU_ASSERT_EQUAL(decode(DLT_EN10MB, &f, &pkt, &s), cases[i].res);
        if (cases[i].res == OTS_DECODE_OK) {
            CU_ASSERT_EQUAL(pkt.payload_len, cases[i].payload_len);
            CU_ASSERT_EQUAL(pkt.truncated, cases[i].truncated);
            CU_ASSERT_PTR_EQUAL(pkt.payload, f.b + 42);
            CU_ASSERT_EQUAL(pkt.sport, 47808);
            CU_ASSERT_EQUAL(pkt.dport, 47809);
        }
    }
    CU_ASSERT_EQUAL(s.udp, 6);
    CU_ASSERT_EQUAL(s.truncated, 2);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_UDP_LEN], 2);
    CU_ASSERT_EQUAL(s.malformed, 2);
}

/* ---- every malformed reason ------------------------------------------------- */

typedef struct {
    OtsMalformedReason reason;
    int dlt;
    Frame f;
    gsize cap; /* 0: the whole frame */
} MalformedCase;

static void
build_malformed_cases(MalformedCase *c, gsize *n)
{
    gsize i = 0;
    gsize ip, u;

#define NEXT(r, d) (c[i].reason = (r), c[i].dlt = (d), c[i].cap = 0, &c[i++].f)
    Frame *f;

    f = NEXT(OTS_MALFORMED_ETH_SHORT, DLT_EN10MB);
    put_fill(f, 0, 13);
    f = NEXT(OTS_MALFORMED_ETH_SHORT, DLT_EN10MB); /* empty */

    f = NEXT(OTS_MALFORMED_VLAN_SHORT, DLT_EN10MB);
    eth(f, 0x8100);
    put_fill(f, 0, 3);
    f = NEXT(OTS_MALFORMED_VLAN_SHORT, DLT_EN10MB); /* second tag cut */
    eth(f, 0x88a8);
    vlan_tag(f, 1, 0x8100);
    put16(f, 2);

    f = NEXT(OTS_MALFORMED_SLL_SHORT, DLT_LINUX_SLL);
    put_bytes(f, sll_ipv4_hdr, 15);
    f = NEXT(OTS_MALFORMED_SLL_SHORT, DLT_SLL2_VALUE);
    put_fill(f, 0, 19);
    f = NEXT(OTS_MALFORMED_VLAN_SHORT, DLT_LINUX_SLL); /* a tag after the cooked header */
    put_bytes(f, sll_ipv4_hdr, 14);
    put16(f, 0x8100);
    put16(f, 9);

    f = NEXT(OTS_MALFORMED_IPV4_SHORT, DLT_EN10MB);
    eth(f, 0x0800);
    ipv4(f, 6, 0, 0);
    f->len--;
    f = NEXT(OTS_MALFORMED_IPV4_SHORT, DLT_IPV4_VALUE); /* empty */

    f = NEXT(OTS_MALFORMED_IPV4_HDRLEN, DLT_EN10MB); /* IHL 4 */
    eth(f, 0x0800);
    ipv4_tcp_datagram(f, 4);
    f->b[14] = 0x44;
    f = NEXT(OTS_MALFORMED_IPV4_HDRLEN, DLT_EN10MB); /* IHL 0 */
    eth(f, 0x0800);
    ipv4_tcp_datagram(f, 4);
    f->b[14] = 0x40;
    f = NEXT(OTS_MALFORMED_IPV4_HDRLEN, DLT_RAW); /* IHL 15, options past the capture */
    ip = ipv4(f, 6, 10, 0);
    tcp(f, 1, 2, 5, 0);
    ipv4_fix_len(f, ip);
    c[i - 1].cap = 50;

    f = NEXT(OTS_MALFORMED_IPV4_TOTLEN, DLT_EN10MB); /* total 19 */
    eth(f, 0x0800);
    ipv4_tcp_datagram(f, 4);
    set16(f, 14 + 2, 19);
    f = NEXT(OTS_MALFORMED_IPV4_TOTLEN, DLT_EN10MB); /* total < header with options */
    eth(f, 0x0800);
    ip = ipv4(f, 6, 2, 0);
    tcp(f, 1, 2, 5, 0);
    set16(f, ip + 2, 24);
    f = NEXT(OTS_MALFORMED_IPV4_TOTLEN, DLT_EN10MB); /* total 0 */
    eth(f, 0x0800);
    ipv4_tcp_datagram(f, 4);
    set16(f, 14 + 2, 0);

    f = NEXT(OTS_MALFORMED_IPV4_VERSION, DLT_EN10MB);
    eth(f, 0x0800);
    ipv4_tcp_datagram(f, 4);
    f->b[14] = 0x55;
    f = NEXT(OTS_MALFORMED_IPV4_VERSION, DLT_NULL);
    put32(f, 2);
    ipv6_udp_datagram(f, 4);

    f = NEXT(OTS_MALFORMED_IPV6_SHORT, DLT_EN10MB);
    eth(f, 0x86dd);
    ipv6(f, 6);
    f->len--;
    f = NEXT(OTS_MALFORMED_IPV6_SHORT, DLT_RAW); /* the version nibble alone */
    put8(f, 0x60);

    f = NEXT(OTS_MALFORMED_IPV6_EXTHDR, DLT_EN10MB); /* ext header of 1 byte */
    eth(f, 0x86dd);
    ip = ipv6(f, 0);
    put8(f, 6);
    ipv6_fix_len(f, ip);
    f = NEXT(OTS_MALFORMED_IPV6_EXTHDR, DLT_EN10MB); /* length past the payload */
    eth(f, 0x86dd);
    ip = ipv6(f, 43);
    ipv6_ext(f, 6, 3);
    ipv6_fix_len(f, ip);
    set16(f, ip + 4, 31);
    f = NEXT(OTS_MALFORMED_IPV6_EXTHDR, DLT_EN10MB); /* AH past the capture */
    eth(f, 0x86dd);
    ip = ipv6(f, 51);
    put8(f, 6);
    put8(f, 4);
    put_fill(f, 0, 20);
    ipv6_fix_len(f, ip);
    set16(f, ip + 4, 100);

    f = NEXT(OTS_MALFORMED_TCP_SHORT, DLT_EN10MB);
    eth(f, 0x0800);
    ip = ipv4(f, 6, 0, 0);
    put_fill(f, 0, 19);
    ipv4_fix_len(f, ip);
    f = NEXT(OTS_MALFORMED_TCP_SHORT, DLT_EN10MB); /* the IP length hides the TCP header */
    eth(f, 0x0800);
    ipv4_tcp_datagram(f, 20);
    set16(f, 14 + 2, 20 + 19);
    f = NEXT(OTS_MALFORMED_TCP_SHORT, DLT_IPV6_VALUE);
    ip = ipv6(f, 6);
    ipv6_fix_len(f, ip);

    f = NEXT(OTS_MALFORMED_TCP_HDRLEN, DLT_EN10MB);
    eth(f, 0x0800);
    ip = ipv4(f, 6, 0, 0);
    tcp(f, 1, 2, 4, 0);
    ipv4_fix_len(f, ip);
    f = NEXT(OTS_MALFORMED_TCP_HDRLEN, DLT_EN10MB);
    eth(f, 0x0800);
    ip = ipv4(f, 6, 0, 0);
    tcp(f, 1, 2, 5, 0);
    ipv4_fix_len(f, ip);
    f->b[14 + 20 + 12] = 0xf0;

    f = NEXT(OTS_MALFORMED_UDP_SHORT, DLT_EN10MB);
    eth(f, 0x0800);
    ip = ipv4(f, 17, 0, 0);
    put_fill(f, 0, 7);
    ipv4_fix_len(f, ip);
    f = NEXT(OTS_MALFORMED_UDP_SHORT, DLT_IPV6_VALUE);
    ip = ipv6(f, 17);
    ipv6_fix_len(f, ip);

    f = NEXT(OTS_MALFORMED_UDP_LEN, DLT_EN10MB);
    eth(f, 0x0800);
    ip = ipv4(f, 17, 0, 0);
    u = udp(f, 1, 2);
    payload(f, 4);
    ipv4_fix_len(f, ip);
    set16(f, u + 4, 7);

    f = NEXT(OTS_MALFORMED_LOOP_SHORT, DLT_NULL);
    put_fill(f, 0, 3);
    f = NEXT(OTS_MALFORMED_LOOP_SHORT, DLT_LOOP_LINUX_VALUE); /* empty */

    f = NEXT(OTS_MALFORMED_IPV6_VERSION, DLT_EN10MB);
    eth(f, 0x86dd);
    ipv6_udp_datagram(f, 4);
    f->b[14] = 0x40;
    f = NEXT(OTS_MALFORMED_IPV6_VERSION, DLT_NULL);
    put32(f, GUINT32_SWAP_LE_BE(30));
    ipv4_tcp_datagram(f, 40);

    f = NEXT(OTS_MALFORMED_IP_VERSION, DLT_RAW);
    ipv4_tcp_datagram(f, 4);
    f->b[0] = 0x55;
    f = NEXT(OTS_MALFORMED_IP_VERSION, LINKTYPE_RAW_VALUE); /* empty */
#undef NEXT
    *n = i;
}

static void
test_every_malformed_reason(void)
{
    static MalformedCase cases[64];
    gsize n = 0;
    gboolean hit[OTS_MALFORMED_N_REASONS] = {FALSE};
    OtsDecodeStats total = {0};

    memset(cases, 0, sizeof(cases));
    build_malformed_cases(cases, &n);
    CU_ASSERT_FATAL(n <= G_N_ELEMENTS(cases));

    for (gsize i = 0; i < n; i++) {
        OtsDecodeStats s = {0};
        OtsPacket pkt;
        gsize cap = cases[i].cap ? cases[i].cap : cases[i].f.len;
        /* Decode from an exact-size heap copy so that ASan sees any overread. */
        guint8 *copy = g_memdup2(cases[i].f.b, cap);
        OtsDecodeResult res = ots_decode_packet(cases[i].dlt, cap ? copy : NULL, (guint32)cap,
                                                (guint32)cases[i].f.len, 0, &pkt, &s);
        g_free(copy);
        check_invariants(&s);
        if (res != OTS_DECODE_MALFORMED || s.malformed_by_reason[cases[i].reason] != 1)
            fprintf(stderr, "\ncase %zu (%s): result %d\n", i,
                    ots_malformed_reason_to_string(cases[i].reason), res);
        CU_ASSERT_EQUAL(res, OTS_DECODE_MALFORMED);
        assert_only_malformed(&s, cases[i].reason);
        CU_ASSERT_EQUAL(s.packets, 1);
        hit[cases[i].reason] = TRUE;

        ots_decode_packet(cases[i].dlt, cases[i].f.b, (guint32)cap, (guint32)cases[i].f.len, 0,
                          &pkt, &total);
    }
    for (int r = 0; r < OTS_MALFORMED_N_REASONS; r++) {
        if (!hit[r])
            fprintf(stderr, "\nreason %s has no case\n", ots_malformed_reason_to_string(r));
        CU_ASSERT_TRUE(hit[r]);
    }
    /* The per-reason counters add up over a run. */
    CU_ASSERT_EQUAL(total.malformed, n);
    CU_ASSERT_EQUAL(total.packets, n);
    check_invariants(&total);
}

static void
test_null_data(void)
{
    const int dlts[] = {DLT_EN10MB,     DLT_LINUX_SLL,  DLT_SLL2_VALUE, DLT_RAW,
                        DLT_IPV4_VALUE, DLT_IPV6_VALUE, DLT_NULL};
    OtsDecodeStats s = {0};
    OtsPacket pkt;

    for (gsize i = 0; i < G_N_ELEMENTS(dlts); i++)
        CU_ASSERT_EQUAL(ots_decode_packet(dlts[i], NULL, 0, 0, 0, &pkt, &s), OTS_DECODE_MALFORMED);
    CU_ASSERT_EQUAL(s.malformed, G_N_ELEMENTS(dlts));
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_ETH_SHORT], 1);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_SLL_SHORT], 2);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IP_VERSION], 1);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV4_SHORT], 1);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_IPV6_SHORT], 1);
    CU_ASSERT_EQUAL(s.malformed_by_reason[OTS_MALFORMED_LOOP_SHORT], 1);
    check_invariants(&s);
}

/* ---- strings ------------------------------------------------------------------ */

static void
test_reason_strings(void)
{
    CU_ASSERT_STRING_EQUAL(ots_malformed_reason_to_string(OTS_MALFORMED_IPV4_SHORT), "ipv4_short");
    CU_ASSERT_STRING_EQUAL(ots_malformed_reason_to_string(OTS_MALFORMED_ETH_SHORT), "eth_short");
    CU_ASSERT_STRING_EQUAL(ots_malformed_reason_to_string(OTS_MALFORMED_UDP_LEN), "udp_len");
    CU_ASSERT_STRING_EQUAL(ots_malformed_reason_to_string(OTS_MALFORMED_IPV6_EXTHDR),
                           "ipv6_exthdr");
    CU_ASSERT_STRING_EQUAL(ots_malformed_reason_to_string(OTS_MALFORMED_N_REASONS), "unknown");
    CU_ASSERT_STRING_EQUAL(ots_malformed_reason_to_string((OtsMalformedReason)-1), "unknown");

    for (int i = 0; i < OTS_MALFORMED_N_REASONS; i++) {
        const char *a = ots_malformed_reason_to_string(i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_STRING_NOT_EQUAL(a, "unknown");
        CU_ASSERT_TRUE(a[0] >= 'a' && a[0] <= 'z');
        for (const char *p = a; *p; p++)
            CU_ASSERT_TRUE((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        for (int j = i + 1; j < OTS_MALFORMED_N_REASONS; j++)
            CU_ASSERT_STRING_NOT_EQUAL(a, ots_malformed_reason_to_string(j));
    }
}

static void
test_addr_strings(void)
{
    OtsIpAddr a = {.family = 4, .addr = {192, 0, 2, 1}};
    OtsIpAddr b = {.family = 6, .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}};
    OtsIpAddr m = {.family = 6,
                   .addr = {[10] = 0xff, [11] = 0xff, [12] = 127, [13] = 0, [14] = 0, [15] = 1}};
    OtsIpAddr z = {.family = 0};
    char buf[46];
    char tiny[4];

    ots_ip_addr_to_string(&a, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "192.0.2.1");
    ots_ip_addr_to_string(&b, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "2001:db8::1");
    ots_ip_addr_to_string(&m, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "::ffff:127.0.0.1");
    ots_ip_addr_to_string(&z, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "");

    memset(tiny, 'x', sizeof(tiny));
    ots_ip_addr_to_string(&a, tiny, sizeof(tiny));
    CU_ASSERT_STRING_EQUAL(tiny, "");
    /* Zero length: nothing written. */
    memset(tiny, 'x', sizeof(tiny));
    ots_ip_addr_to_string(&a, tiny, 0);
    CU_ASSERT_EQUAL(tiny[0], 'x');

    /* The widest IPv6 text fits the documented 46 bytes. */
    OtsIpAddr w = {.family = 6};
    memset(w.addr, 0xff, 12);
    w.addr[12] = 255;
    w.addr[13] = 255;
    w.addr[14] = 255;
    w.addr[15] = 255;
    ots_ip_addr_to_string(&w, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

/* ---- the real captures, frame by frame against tshark --------------------------- */

#define TSHARK_FILTER                                                                              \
    "(tcp || udp) && !icmp && !icmpv6 && !(ip.flags.mf == 1) && !(ip.frag_offset > 0) && "         \
    "!(ipv6.fraghdr.more == 1) && !(ipv6.fraghdr.offset > 0)"

/* One line a TCP or UDP frame: "number\ttcp sport\ttcp dport\tudp sport\tudp dport". */
static gchar *
tshark_lines(const char *path)
{
    const char *argv[] = {"tshark", "-n",          "-r", path,           "-Y", TSHARK_FILTER,
                          "-T",     "fields",      "-e", "frame.number", "-e", "tcp.srcport",
                          "-e",     "tcp.dstport", "-e", "udp.srcport",  "-e", "udp.dstport",
                          NULL};
    g_autoptr(GError) error = NULL;
    g_autofree gchar *err_out = NULL;
    gchar *out = NULL;
    gint status = 0;

    if (!g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err_out,
                      &status, &error)) {
        fprintf(stderr, "\ncannot run tshark: %s\n", error->message);
        return NULL;
    }
    if (!g_spawn_check_wait_status(status, &error)) {
        fprintf(stderr, "\ntshark failed on %s: %s\n%s\n", path, error->message, err_out);
        g_free(out);
        return NULL;
    }
    return out;
}

static guint
count_lines_with(const char *text, gboolean tcp_lines)
{
    guint n = 0;
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l; l++) {
        if (**l == '\0')
            continue;
        g_auto(GStrv) f = g_strsplit(*l, "\t", -1);
        if (g_strv_length(f) == 5 && (tcp_lines ? *f[1] != '\0' : *f[3] != '\0'))
            n++;
    }
    return n;
}

static gboolean
decode_file(const char *path, GString *lines, OtsDecodeStats *stats)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *pc = pcap_open_offline(path, errbuf);
    struct pcap_pkthdr *hdr;
    const u_char *data;
    guint frame = 0;
    int rc;

    if (pc == NULL) {
        fprintf(stderr, "\n%s: %s\n", path, errbuf);
        return FALSE;
    }
    int dlt = pcap_datalink(pc);
    CU_ASSERT_TRUE(ots_decode_link_supported(dlt));
    while ((rc = pcap_next_ex(pc, &hdr, &data)) == 1) {
        OtsPacket pkt;
        frame++;
        gint64 ts = (gint64)hdr->ts.tv_sec * G_USEC_PER_SEC + hdr->ts.tv_usec;
        if (ots_decode_packet(dlt, data, hdr->caplen, hdr->len, ts, &pkt, stats) != OTS_DECODE_OK)
            continue;
        CU_ASSERT_EQUAL(pkt.ts, ts);
        CU_ASSERT_TRUE(pkt.payload >= data && pkt.payload + pkt.payload_len <= data + hdr->caplen);
        if (pkt.l4_proto == 6)
            g_string_append_printf(lines, "%u\t%u\t%u\t\t\n", frame, pkt.sport, pkt.dport);
        else
            g_string_append_printf(lines, "%u\t\t\t%u\t%u\n", frame, pkt.sport, pkt.dport);
    }
    CU_ASSERT_EQUAL(rc, PCAP_ERROR_BREAK);
    CU_ASSERT_EQUAL(stats->packets, frame);
    pcap_close(pc);
    return TRUE;
}

static void
test_corpus_vs_tshark(void)
{
    const char *root = g_getenv("OTS_SOURCE_ROOT");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    g_autofree gchar *dir_path = g_build_filename(root, "..", "shared", "corpus", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, &error);
    if (dir == NULL)
        fprintf(stderr, "\ncorpus: %s\n", error->message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);

    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(dir)) != NULL)
        if (g_str_has_suffix(name, ".pcap") || g_str_has_suffix(name, ".pcapng"))
            g_ptr_array_add(names, g_strdup(name));
    CU_ASSERT_FATAL(names->len > 0);

    guint total_tcp = 0, total_udp = 0;
    for (guint i = 0; i < names->len; i++) {
        g_autofree gchar *path = g_build_filename(dir_path, names->pdata[i], NULL);
        g_autoptr(GString) ours = g_string_new(NULL);
        OtsDecodeStats stats = {0};

        CU_ASSERT_TRUE_FATAL(decode_file(path, ours, &stats));
        check_invariants(&stats);
        g_autofree gchar *theirs = tshark_lines(path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(theirs);

        guint tcp_n = count_lines_with(theirs, TRUE);
        guint udp_n = count_lines_with(theirs, FALSE);
        CU_ASSERT_EQUAL(stats.tcp, tcp_n);
        CU_ASSERT_EQUAL(stats.udp, udp_n);
        CU_ASSERT_STRING_EQUAL(ours->str, theirs);
        if (stats.tcp != tcp_n || stats.udp != udp_n || strcmp(ours->str, theirs) != 0)
            fprintf(stderr,
                    "\n%s: ours tcp %" G_GUINT64_FORMAT " udp %" G_GUINT64_FORMAT
                    ", tshark tcp %u udp %u\n",
                    (const char *)names->pdata[i], stats.tcp, stats.udp, tcp_n, udp_n);
        total_tcp += tcp_n;
        total_udp += udp_n;
    }
    /* The corpus is OT traffic over both transports: an empty answer means a broken run. */
    CU_ASSERT_TRUE(total_tcp > 0);
    CU_ASSERT_TRUE(total_udp > 0);
    fprintf(stderr, "\ncorpus: %u files, tshark counts %u TCP and %u UDP frames\n", names->len,
            total_tcp, total_udp);
}

static CU_TestInfo decode_tests[] = {
    {"link types supported", test_link_supported},
    {"ethernet ipv4 tcp (literal frame)", test_eth_ipv4_tcp_literal},
    {"ethernet ipv4 udp", test_eth_ipv4_udp},
    {"ethernet ipv6 tcp and udp", test_eth_ipv6},
    {"ethernet non-ip", test_eth_not_ip},
    {"linux cooked v1", test_sll},
    {"linux cooked v2", test_sll2},
    {"raw ip (12, 14, 101)", test_raw},
    {"ipv4 and ipv6 link types", test_ipv4_ipv6_links},
    {"bsd loopback both byte orders", test_loopback},
    {"unsupported link", test_unsupported_link},
    {"802.1q vlan", test_vlan},
    {"qinq two tags", test_qinq},
    {"three tags", test_three_tags},
    {"ipv4 options", test_ipv4_options},
    {"ipv4 fragments", test_ipv4_fragments},
    {"other l4", test_other_l4},
    {"ethernet padding trimmed", test_eth_padding},
    {"snaplen truncation", test_snaplen_truncation},
    {"ipv6 extension headers", test_ipv6_ext_headers},
    {"ipv6 fragment header", test_ipv6_fragment},
    {"tcp data offset", test_tcp_data_offset},
    {"udp length", test_udp_length},
    {"every malformed reason", test_every_malformed_reason},
    {"null data", test_null_data},
    {"reason strings", test_reason_strings},
    {"address strings", test_addr_strings},
    {"corpus vs tshark", test_corpus_vs_tshark},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "decode", NULL, NULL, NULL, NULL, decode_tests                                             \
    }
#include "cunit-main.h"
