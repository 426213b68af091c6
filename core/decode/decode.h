/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Link, network and transport header decoding. No allocation: the decoder
 * fills a caller-owned OtsPacket whose pointers borrow the captured bytes. */

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    guint8 family;   /* 4 or 6 */
    guint8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
} OtsIpAddr;

typedef struct {
    gint64 ts;          /* µs since the epoch */
    guint32 wire_len;   /* original frame length */
    guint32 cap_len;    /* captured length */
    guint16 vlan_id[2]; /* outer first */
    guint8 vlan_depth;  /* 0, 1 or 2 (QinQ); more tags are decoded, the first two kept */
    guint8 ip_version;  /* 4 or 6 */
    OtsIpAddr src;
    OtsIpAddr dst;
    guint8 ttl;      /* TTL / hop limit */
    guint8 l4_proto; /* 6 TCP, 17 UDP (only those give OTS_DECODE_OK) */
    guint16 sport;
    guint16 dport;
    guint8 tcp_flags; /* OTS_TCP_* */
    guint32 tcp_seq;
    guint32 tcp_ack;
    guint16 tcp_window;
    const guint8 *payload; /* L4 payload actually captured */
    guint32 payload_len;
    gboolean truncated; /* the IP/UDP length says there is more than was captured */
} OtsPacket;

#define OTS_TCP_FIN 0x01
#define OTS_TCP_SYN 0x02
#define OTS_TCP_RST 0x04
#define OTS_TCP_PSH 0x08
#define OTS_TCP_ACK 0x10
#define OTS_TCP_URG 0x20

typedef enum {
    OTS_DECODE_OK = 0,           /* TCP or UDP, pkt filled */
    OTS_DECODE_NOT_IP,           /* ARP, LLDP, STP, PROFINET RT, ... */
    OTS_DECODE_OTHER_L4,         /* ICMP, SCTP, ... */
    OTS_DECODE_FRAGMENT,         /* an IP fragment: counted, not reassembled */
    OTS_DECODE_MALFORMED,        /* a header is invalid or cut short */
    OTS_DECODE_UNSUPPORTED_LINK, /* unknown data link type */
} OtsDecodeResult;

/* Reasons a header is malformed; counted separately. */
typedef enum {
    OTS_MALFORMED_ETH_SHORT = 0,
    OTS_MALFORMED_VLAN_SHORT,
    OTS_MALFORMED_SLL_SHORT,
    OTS_MALFORMED_IPV4_SHORT,
    OTS_MALFORMED_IPV4_HDRLEN,
    OTS_MALFORMED_IPV4_TOTLEN,
    OTS_MALFORMED_IPV4_VERSION,
    OTS_MALFORMED_IPV6_SHORT,
    OTS_MALFORMED_IPV6_EXTHDR,
    OTS_MALFORMED_TCP_SHORT,
    OTS_MALFORMED_TCP_HDRLEN,
    OTS_MALFORMED_UDP_SHORT,
    OTS_MALFORMED_UDP_LEN,
    OTS_MALFORMED_LOOP_SHORT,   /* BSD loopback (DLT_NULL/DLT_LOOP) family header cut short */
    OTS_MALFORMED_IPV6_VERSION, /* an IPv6 link or ethertype, but the version is not 6 */
    OTS_MALFORMED_IP_VERSION,   /* raw IP link: empty, or the version is neither 4 nor 6 */
    OTS_MALFORMED_N_REASONS
} OtsMalformedReason;

/* Every packet lands in exactly one of tcp, udp, not_ip, other_l4, fragments,
 * malformed and unsupported_link. ipv4/ipv6 count packets whose fixed IP
 * header is valid (fragments included); truncated counts OTS_DECODE_OK
 * packets with pkt->truncated set. */
typedef struct {
    guint64 packets;
    guint64 bytes; /* wire bytes */
    guint64 ipv4;
    guint64 ipv6;
    guint64 tcp;
    guint64 udp;
    guint64 vlan; /* packets with at least one 802.1Q/802.1ad tag */
    guint64 not_ip;
    guint64 other_l4;
    guint64 fragments;
    guint64 truncated;
    guint64 unsupported_link;
    guint64 malformed; /* sum of malformed_by_reason */
    guint64 malformed_by_reason[OTS_MALFORMED_N_REASONS];
} OtsDecodeStats;

/* Does the decoder handle this pcap DLT_* link type? */
gboolean ots_decode_link_supported(int dlt);

/* Decodes one captured frame of link type @dlt. Always counts the packet in
 * @stats; fills @pkt on OTS_DECODE_OK. */
OtsDecodeResult ots_decode_packet(int dlt, const guint8 *data, guint32 cap_len, guint32 wire_len,
                                  gint64 ts, OtsPacket *pkt, OtsDecodeStats *stats);

const char *ots_malformed_reason_to_string(OtsMalformedReason r);

/* Formats an address ("192.0.2.1", "2001:db8::1") into @buf (>= 46 bytes). */
void ots_ip_addr_to_string(const OtsIpAddr *a, char *buf, gsize len);

G_END_DECLS
