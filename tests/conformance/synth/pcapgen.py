# SPDX-License-Identifier: Apache-2.0
"""A minimal pcap writer for synthetic conformance captures: Ethernet,
IPv4/IPv6, TCP with correct checksums, one TcpFlow object per connection
that tracks sequence numbers. Loopback addresses only."""

import ipaddress
import struct


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class Pcap:
    def __init__(self, path, start_us=1700000000_000000, step_us=1000):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # DLT_EN10MB
        self.t = start_us
        self.step = step_us

    def close(self):
        self.f.close()

    def frame(self, l3, ethertype):
        eth = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
        data = eth + l3
        self.t += self.step
        self.f.write(struct.pack("<IIII", self.t // 1000000, self.t % 1000000, len(data), len(data)))
        self.f.write(data)

    def tcp(self, src, dst, sport, dport, seq, ack, flags, payload=b""):
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                          flags, 65535, 0, 0) + payload
        if s.version == 4:
            pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 6, len(tcp))
        else:
            pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(tcp), 6)
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        if s.version == 4:
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, s.packed,
                             d.packed)
            ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
            self.frame(ip + tcp, 0x0800)
        else:
            ip = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, s.packed, d.packed)
            self.frame(ip + tcp, 0x86DD)


class TcpFlow:
    """One connection: handshake on creation, then client()/server() segments."""

    def __init__(self, pcap, client, server, cport, sport):
        self.p, self.c, self.s, self.cport, self.sport = pcap, client, server, cport, sport
        self.cseq, self.sseq = 1000, 50000
        self.p.tcp(client, server, cport, sport, self.cseq, 0, 0x02)
        self.cseq += 1
        self.p.tcp(server, client, sport, cport, self.sseq, self.cseq, 0x12)
        self.sseq += 1
        self.p.tcp(client, server, cport, sport, self.cseq, self.sseq, 0x10)

    def client(self, data, retransmit=False):
        self.p.tcp(self.c, self.s, self.cport, self.sport, self.cseq, self.sseq, 0x18, data)
        if retransmit:
            self.p.tcp(self.c, self.s, self.cport, self.sport, self.cseq, self.sseq, 0x18, data)
        self.cseq += len(data)

    def server(self, data):
        self.p.tcp(self.s, self.c, self.sport, self.cport, self.sseq, self.cseq, 0x18, data)
        self.sseq += len(data)

    def close(self):
        self.p.tcp(self.c, self.s, self.cport, self.sport, self.cseq, self.sseq, 0x11)
        self.cseq += 1
        self.p.tcp(self.s, self.c, self.sport, self.cport, self.sseq, self.cseq, 0x11)
        self.sseq += 1
        self.p.tcp(self.c, self.s, self.cport, self.sport, self.cseq, self.sseq, 0x10)
