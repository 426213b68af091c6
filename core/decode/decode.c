/* SPDX-License-Identifier: Apache-2.0 */
/* Link, network and transport header decoding for the per-packet path: no
 * allocation, no GError, no logging. Every read goes through an OtsReader;
 * fixed-size headers are taken as one bounds-checked block and read at
 * constant offsets inside it. */

#include "core/decode/decode.h"

#include <arpa/inet.h>
#include <pcap/dlt.h>
#include <string.h>
#include <sys/socket.h>

#include <otsensor/reader.h>

#ifndef DLT_LINUX_SLL2
#define DLT_LINUX_SLL2 276
#endif
#ifndef DLT_IPV4
#define DLT_IPV4 228
#endif
#ifndef DLT_IPV6
#define DLT_IPV6 229
#endif
/* LINKTYPE_RAW as stored in files; libpcap usually maps it to DLT_RAW but a
 * caller may hand us the file's value. 14 is DLT_RAW on BSD/OS. */
#define LINKTYPE_RAW 101
#define DLT_RAW_BSDOS 14
/* DLT_LOOP is 12 on OpenBSD, where that value is DLT_RAW elsewhere: on Linux
 * <pcap/dlt.h> gives 108. */
#define LINKTYPE_LOOP 108

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_VLAN 0x8100
#define ETHERTYPE_QINQ 0x88a8
#define ETHERTYPE_QINQ_OLD 0x9100

#define ETH_HDR_LEN 14
#define VLAN_TAG_LEN 4
#define SLL_HDR_LEN 16
#define SLL2_HDR_LEN 20
#define LOOP_HDR_LEN 4
#define IPV4_HDR_LEN 20
#define IPV6_HDR_LEN 40
#define TCP_HDR_LEN 20
#define UDP_HDR_LEN 8

/* Linux ARPHRD_NETLINK: a cooked capture of netlink traffic, whose protocol
 * field is a netlink family, not an ethertype. */
#define ARPHRD_NETLINK_VALUE 824

#define IPV6_MAX_EXT_HEADERS 16

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_ESP_ 50
#define IPPROTO_AH_ 51
#define IPPROTO_DSTOPTS_ 60

static inline guint16
rd16(const guint8 *p)
{
    return (guint16)((p[0] << 8) | p[1]);
}

static inline guint32
rd32(const guint8 *p)
{
    return ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3];
}

static OtsDecodeResult
malformed(OtsDecodeStats *stats, OtsMalformedReason reason)
{
    stats->malformed++;
    stats->malformed_by_reason[reason]++;
    return OTS_DECODE_MALFORMED;
}

/* @r covers exactly the transport segment as far as it was captured (IP
 * padding already cut off); @ip_truncated says the IP length claimed more. */
static OtsDecodeResult
decode_tcp(OtsReader *r, gboolean ip_truncated, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, TCP_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_TCP_SHORT);
    guint hlen = (guint)(h[12] >> 4) * 4;
    if (hlen < TCP_HDR_LEN || !ots_reader_skip(r, hlen - TCP_HDR_LEN))
        return malformed(stats, OTS_MALFORMED_TCP_HDRLEN);

    pkt->l4_proto = IPPROTO_TCP_;
    pkt->sport = rd16(h);
    pkt->dport = rd16(h + 2);
    pkt->tcp_seq = rd32(h + 4);
    pkt->tcp_ack = rd32(h + 8);
    pkt->tcp_flags = h[13];
    pkt->tcp_window = rd16(h + 14);
    pkt->payload_len = (guint32)ots_reader_remaining(r);
    pkt->payload = r->data + r->pos;
    pkt->truncated = ip_truncated;
    stats->tcp++;
    if (ip_truncated)
        stats->truncated++;
    return OTS_DECODE_OK;
}

static OtsDecodeResult
decode_udp(OtsReader *r, gboolean ip_truncated, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, UDP_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_UDP_SHORT);
    guint ulen = rd16(h + 4);
    if (ulen < UDP_HDR_LEN)
        return malformed(stats, OTS_MALFORMED_UDP_LEN);

    gsize avail = ots_reader_remaining(r);
    gsize want = ulen - UDP_HDR_LEN;
    gboolean truncated = ip_truncated;
    if (want > avail)
        truncated = TRUE; /* cut by the snap length: keep what is there */
    else
        avail = want; /* trailing bytes past the UDP length are not payload */

    pkt->l4_proto = IPPROTO_UDP_;
    pkt->sport = rd16(h);
    pkt->dport = rd16(h + 2);
    pkt->payload = r->data + r->pos;
    pkt->payload_len = (guint32)avail;
    pkt->truncated = truncated;
    stats->udp++;
    if (truncated)
        stats->truncated++;
    return OTS_DECODE_OK;
}

static OtsDecodeResult
decode_l4(guint8 proto, OtsReader *r, gboolean ip_truncated, OtsPacket *pkt, OtsDecodeStats *stats)
{
    if (proto == IPPROTO_TCP_)
        return decode_tcp(r, ip_truncated, pkt, stats);
    if (proto == IPPROTO_UDP_)
        return decode_udp(r, ip_truncated, pkt, stats);
    pkt->l4_proto = proto;
    stats->other_l4++;
    return OTS_DECODE_OTHER_L4;
}

static OtsDecodeResult
decode_ipv4(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, IPV4_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_IPV4_SHORT);
    if ((h[0] >> 4) != 4)
        return malformed(stats, OTS_MALFORMED_IPV4_VERSION);
    guint hlen = (guint)(h[0] & 0x0f) * 4;
    if (hlen < IPV4_HDR_LEN)
        return malformed(stats, OTS_MALFORMED_IPV4_HDRLEN);
    guint total = rd16(h + 2);
    if (total < hlen)
        return malformed(stats, OTS_MALFORMED_IPV4_TOTLEN);
    if (!ots_reader_skip(r, hlen - IPV4_HDR_LEN))
        return malformed(stats, OTS_MALFORMED_IPV4_HDRLEN);

    pkt->ip_version = 4;
    pkt->ttl = h[8];
    pkt->l4_proto = h[9];
    pkt->src.family = 4;
    memcpy(pkt->src.addr, h + 12, 4);
    pkt->dst.family = 4;
    memcpy(pkt->dst.addr, h + 16, 4);
    stats->ipv4++;

    /* MF set or a non-zero offset: a first fragment is not whole either. */
    if (rd16(h + 6) & 0x3fff) {
        stats->fragments++;
        return OTS_DECODE_FRAGMENT;
    }

    gsize l4_len = total - hlen;
    gsize avail = ots_reader_remaining(r);
    gboolean truncated = FALSE;
    if (l4_len > avail) {
        l4_len = avail; /* snap length: keep what was captured */
        truncated = TRUE;
    }
    /* The sub reader ends at the IP length, which drops Ethernet padding. */
    OtsReader l4;
    ots_reader_get_sub_reader(r, &l4, l4_len);
    return decode_l4(h[9], &l4, truncated, pkt, stats);
}

static OtsDecodeResult
decode_ipv6(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, IPV6_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_IPV6_SHORT);
    if ((h[0] >> 4) != 6)
        return malformed(stats, OTS_MALFORMED_IPV6_VERSION);

    guint8 nh = h[6];
    pkt->ip_version = 6;
    pkt->ttl = h[7];
    pkt->src.family = 6;
    memcpy(pkt->src.addr, h + 8, 16);
    pkt->dst.family = 6;
    memcpy(pkt->dst.addr, h + 24, 16);
    stats->ipv6++;

    gsize plen = rd16(h + 4);
    gsize avail = ots_reader_remaining(r);
    gboolean truncated = FALSE;
    if (plen == 0 && nh == IPPROTO_HOPOPTS_) {
        plen = avail; /* RFC 2675 jumbogram: the length is in hop-by-hop options */
    } else if (plen > avail) {
        plen = avail;
        truncated = TRUE;
    }
    OtsReader p;
    ots_reader_get_sub_reader(r, &p, plen);

    for (guint n = 0;; n++) {
        const guint8 *e;
        gsize elen;

        switch (nh) {
        case IPPROTO_HOPOPTS_:
        case IPPROTO_ROUTING_:
        case IPPROTO_DSTOPTS_:
        case IPPROTO_AH_:
            break;
        case IPPROTO_FRAGMENT_:
            if (n >= IPV6_MAX_EXT_HEADERS || !ots_reader_get_data(&p, 8, &e))
                return malformed(stats, OTS_MALFORMED_IPV6_EXTHDR);
            /* An atomic fragment (offset 0, no M flag, RFC 6946) is whole. */
            if (rd16(e + 2) & 0xfff9) {
                stats->fragments++;
                return OTS_DECODE_FRAGMENT;
            }
            nh = e[0];
            continue;
        default: /* TCP, UDP, ESP, no next header (59), ICMPv6, ... */
            return decode_l4(nh, &p, truncated, pkt, stats);
        }
        if (n >= IPV6_MAX_EXT_HEADERS || !ots_reader_get_data(&p, 2, &e))
            return malformed(stats, OTS_MALFORMED_IPV6_EXTHDR);
        if (nh == IPPROTO_AH_)
            elen = ((gsize)e[1] + 2) * 4; /* RFC 4302: 4-octet units, minus 2 */
        else
            elen = ((gsize)e[1] + 1) * 8; /* RFC 8200: 8-octet units, minus 1 */
        if (!ots_reader_skip(&p, elen - 2))
            return malformed(stats, OTS_MALFORMED_IPV6_EXTHDR);
        nh = e[0];
    }
}

static OtsDecodeResult
decode_ethertype(guint16 type, OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    if (type == ETHERTYPE_IPV4)
        return decode_ipv4(r, pkt, stats);
    if (type == ETHERTYPE_IPV6)
        return decode_ipv6(r, pkt, stats);
    stats->not_ip++;
    return OTS_DECODE_NOT_IP;
}

/* Any number of 802.1Q / 802.1ad tags; the first two ids are kept. */
static OtsDecodeResult
decode_vlan_then_ethertype(guint16 type, OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    if (type == ETHERTYPE_VLAN || type == ETHERTYPE_QINQ || type == ETHERTYPE_QINQ_OLD) {
        stats->vlan++;
        do {
            const guint8 *t;
            if (!ots_reader_get_data(r, VLAN_TAG_LEN, &t))
                return malformed(stats, OTS_MALFORMED_VLAN_SHORT);
            if (pkt->vlan_depth < 2)
                pkt->vlan_id[pkt->vlan_depth++] = rd16(t) & 0x0fff;
            type = rd16(t + 2);
        } while (type == ETHERTYPE_VLAN || type == ETHERTYPE_QINQ || type == ETHERTYPE_QINQ_OLD);
    }
    return decode_ethertype(type, r, pkt, stats);
}

static OtsDecodeResult
decode_ethernet(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, ETH_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_ETH_SHORT);
    return decode_vlan_then_ethertype(rd16(h + 12), r, pkt, stats);
}

static OtsDecodeResult
decode_sll(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, SLL_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_SLL_SHORT);
    if (rd16(h + 2) == ARPHRD_NETLINK_VALUE) {
        stats->not_ip++;
        return OTS_DECODE_NOT_IP;
    }
    /* libpcap puts VLAN tags back in front of the protocol field. */
    return decode_vlan_then_ethertype(rd16(h + 14), r, pkt, stats);
}

static OtsDecodeResult
decode_sll2(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, SLL2_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_SLL_SHORT);
    if (rd16(h + 8) == ARPHRD_NETLINK_VALUE) {
        stats->not_ip++;
        return OTS_DECODE_NOT_IP;
    }
    return decode_vlan_then_ethertype(rd16(h), r, pkt, stats);
}

static OtsDecodeResult
decode_loop(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    const guint8 *h;

    if (!ots_reader_get_data(r, LOOP_HDR_LEN, &h))
        return malformed(stats, OTS_MALFORMED_LOOP_SHORT);
    /* DLT_NULL is in the capturing host's byte order, DLT_LOOP in network
     * order, and files travel: families are small, so the order that gives
     * a value below 65536 is the right one. */
    guint32 family = rd32(h);
    if (family > 0xffff)
        family = GUINT32_SWAP_LE_BE(family);
    switch (family) {
    case 2: /* AF_INET everywhere */
        return decode_ipv4(r, pkt, stats);
    case 10: /* AF_INET6: Linux */
    case 23: /* Windows (Npcap loopback) */
    case 24: /* NetBSD, OpenBSD, BSD/OS */
    case 28: /* FreeBSD, DragonFly */
    case 30: /* macOS */
        return decode_ipv6(r, pkt, stats);
    default:
        stats->not_ip++;
        return OTS_DECODE_NOT_IP;
    }
}

static OtsDecodeResult
decode_raw(OtsReader *r, OtsPacket *pkt, OtsDecodeStats *stats)
{
    guint8 v;

    if (!ots_reader_peek_u8(r, 0, &v))
        return malformed(stats, OTS_MALFORMED_IP_VERSION);
    switch (v >> 4) {
    case 4:
        return decode_ipv4(r, pkt, stats);
    case 6:
        return decode_ipv6(r, pkt, stats);
    default:
        return malformed(stats, OTS_MALFORMED_IP_VERSION);
    }
}

gboolean
ots_decode_link_supported(int dlt)
{
    switch (dlt) {
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_RAW:
    case DLT_RAW_BSDOS:
    case LINKTYPE_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
    case DLT_NULL:
    case LINKTYPE_LOOP:
        return TRUE;
    default:
        return FALSE;
    }
}

/* Counting rules: ipv4/ipv6 count packets whose fixed IP header is valid
 * (fragments included), tcp/udp and truncated count OTS_DECODE_OK results. */
OtsDecodeResult
ots_decode_packet(int dlt, const guint8 *data, guint32 cap_len, guint32 wire_len, gint64 ts,
                  OtsPacket *pkt, OtsDecodeStats *stats)
{
    g_return_val_if_fail(pkt != NULL && stats != NULL, OTS_DECODE_MALFORMED);
    g_return_val_if_fail(data != NULL || cap_len == 0, OTS_DECODE_MALFORMED);

    OtsReader r = OTS_READER_INIT(data, cap_len);

    memset(pkt, 0, sizeof(*pkt));
    pkt->ts = ts;
    pkt->wire_len = wire_len;
    pkt->cap_len = cap_len;
    stats->packets++;
    stats->bytes += wire_len;

    switch (dlt) {
    case DLT_EN10MB:
        return decode_ethernet(&r, pkt, stats);
    case DLT_LINUX_SLL:
        return decode_sll(&r, pkt, stats);
    case DLT_LINUX_SLL2:
        return decode_sll2(&r, pkt, stats);
    case DLT_RAW:
    case DLT_RAW_BSDOS:
    case LINKTYPE_RAW:
        return decode_raw(&r, pkt, stats);
    case DLT_IPV4:
        return decode_ipv4(&r, pkt, stats);
    case DLT_IPV6:
        return decode_ipv6(&r, pkt, stats);
    case DLT_NULL:
    case LINKTYPE_LOOP:
        return decode_loop(&r, pkt, stats);
    default:
        stats->unsupported_link++;
        return OTS_DECODE_UNSUPPORTED_LINK;
    }
}

/* clang-format off */
static const char *const malformed_names[OTS_MALFORMED_N_REASONS] = {
    [OTS_MALFORMED_ETH_SHORT] = "eth_short",
    [OTS_MALFORMED_VLAN_SHORT] = "vlan_short",
    [OTS_MALFORMED_SLL_SHORT] = "sll_short",
    [OTS_MALFORMED_IPV4_SHORT] = "ipv4_short",
    [OTS_MALFORMED_IPV4_HDRLEN] = "ipv4_hdrlen",
    [OTS_MALFORMED_IPV4_TOTLEN] = "ipv4_totlen",
    [OTS_MALFORMED_IPV4_VERSION] = "ipv4_version",
    [OTS_MALFORMED_IPV6_SHORT] = "ipv6_short",
    [OTS_MALFORMED_IPV6_EXTHDR] = "ipv6_exthdr",
    [OTS_MALFORMED_TCP_SHORT] = "tcp_short",
    [OTS_MALFORMED_TCP_HDRLEN] = "tcp_hdrlen",
    [OTS_MALFORMED_UDP_SHORT] = "udp_short",
    [OTS_MALFORMED_UDP_LEN] = "udp_len",
    [OTS_MALFORMED_LOOP_SHORT] = "loop_short",
    [OTS_MALFORMED_IPV6_VERSION] = "ipv6_version",
    [OTS_MALFORMED_IP_VERSION] = "ip_version",
};
/* clang-format on */

const char *
ots_malformed_reason_to_string(OtsMalformedReason r)
{
    if ((guint)r >= OTS_MALFORMED_N_REASONS || malformed_names[r] == NULL)
        return "unknown";
    return malformed_names[r];
}

/* An address of no known family, or a buffer too small, gives "" (or
 * nothing at all when @len is 0). */
void
ots_ip_addr_to_string(const OtsIpAddr *a, char *buf, gsize len)
{
    g_return_if_fail(a != NULL);
    g_return_if_fail(buf != NULL || len == 0);

    if (len == 0)
        return;
    int af = a->family == 4 ? AF_INET : a->family == 6 ? AF_INET6 : -1;
    /* Clamped: the longest address text is INET6_ADDRSTRLEN bytes. */
    if (af < 0 || inet_ntop(af, a->addr, buf, (socklen_t)MIN(len, 64)) == NULL)
        buf[0] = '\0';
}
