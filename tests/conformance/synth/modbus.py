#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Synthetic Modbus/TCP capture for the conformance test: every public
function code (requests and responses), exceptions, user-defined and unknown
codes, truncated value lists, pipelined and out-of-order transactions,
several ADUs in one segment, ADUs split across segments, a retransmitted
segment, a response without request, an unanswered request, and an IPv6
flow. Usage: modbus.py OUT.pcap"""

import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcapgen import Pcap, TcpFlow  # noqa: E402

H = bytes.fromhex


def adu(tid, unit, pdu):
    return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu


# (request PDU, response PDU) in hex
PAIRS = [
    ("0100130013", "0103cd6b05"),                          # 19 coils
    ("0200c40016", "0203acdb35"),                          # 22 inputs
    ("03006b0003", "0306022b00000064"),
    ("0400080001", "0402000a"),
    ("0500acff00", "0500acff00"),
    ("0500ad0000", "0500ad0000"),
    ("0600010003", "0600010003"),
    ("07", "076d"),
    ("080000a537", "080000a537"),                          # return query data
    ("0800010000", "0800010000"),                          # restart communications
    ("0800020000", "080002abcd"),                          # diagnostic register
    ("08000a0000", "08000a0000"),                          # clear counters
    ("08000e0000", "08000e012c"),                          # server message count
    ("0b", "0bffff0108"),
    ("0c", "0c080000010801212000"),
    ("0f0013000a02cd01", "0f0013000a"),
    ("0f0000002003ffffffff", "0f00000020"),                # 32 coils (byte count 3: out of spec)
    ("100001000204000a0102", "1000010002"),
    ("11", "1106504c432d37ff"),
    ("11", "1104010001" + "02"),
    ("140e0600040001000206000300090002", "140c05060dfe0020050633cd0040"),
    ("150d0600040007000306af04be100d", "150d0600040007000306af04be100d"),
    ("16000400f20025", "16000400f20025"),
    ("1700030002000e00030600ff00fe00fd", "170400fe0acd"),
    ("1700000014" + "0000" + "0014" + "28" + "0001" * 20, "1728" + "0002" * 20),
    ("1804de", "180006000201b81284"),
    ("180000", "1800020000"),
    ("2b0e0100", "2b0e01010000" + "03" + "000441636d65" + "01035831" + "31" + "020356312e"),
    ("2b0e0300", "2b0e03830000" + "06" + "000441636d65" + "01025831" + "02025632"
     + "0603617070" + "80025345" + "81020102"),
    ("2b0e0405", "2b0e04830000" + "01" + "05024d35"),
    ("2b0d000102", "2b0d00010203"),
    ("03025800" + "0a", "8302"),
    ("0100000001", "8101"),
    ("0500010000", "8503"),
    ("0600010000", "8604"),
    ("1000010001020001", "9006"),
    ("2b0e0100", "ab0b"),
    ("08000100ff", "8807"),
    ("4101", "4103"),
    ("6e", "ee01"),
    ("5a0002", "5a00fe"),
    ("030000007d", "03fa" + "0001" * 125),
    ("1000000014" + "28" + "0002" * 20, "1000000014"),
    ("0100000040", "0108" + "a5" * 8),
    ("10000100", "900b"),                                  # truncated request
]


def main(path):
    p = Pcap(path)
    f = TcpFlow(p, "127.0.0.1", "127.0.0.2", 40001, 502)
    tid = 1
    for req, rsp in PAIRS:
        f.client(adu(tid, 1 + tid % 3, H(req)))
        f.server(adu(tid, 1 + tid % 3, H(rsp)))
        tid += 1
    # Pipelined, several ADUs per segment, answered out of order.
    f.client(adu(100, 2, H("0300000001")) + adu(101, 2, H("0400000002")) + adu(102, 3, H("0600070009")))
    f.server(adu(101, 2, H("040400010002")) + adu(100, 2, H("03020007")))
    # One ADU split over two segments, another over three (tshark needs the
    # first 8 bytes in one segment to recognise the protocol).
    r = adu(102, 3, H("0600070009"))
    f.server(r[:9])
    f.server(r[9:])
    q = adu(103, 2, H("100000000306000100020003"))
    f.client(q[:8])
    f.client(q[8:10])
    f.client(q[10:])
    f.server(adu(103, 2, H("1000000003")))
    # A retransmitted request: seen once.
    f.client(adu(104, 1, H("0300200002")), retransmit=True)
    f.server(adu(104, 1, H("030400010002")))
    # A response whose request is not in the capture.
    f.server(adu(300, 1, H("03020005")))
    # Unanswered at the end.
    f.client(adu(200, 1, H("0300100001")))
    f.close()

    g = TcpFlow(p, "::1", "::1", 40002, 502)
    g.client(adu(1, 255, H("2b0e0100")))
    g.server(adu(1, 255, H("2b0e01010000" + "01" + "000441636d65")))
    g.client(adu(2, 255, H("0300000002")))
    g.server(adu(2, 255, H("830a")))
    g.close()
    p.close()


if __name__ == "__main__":
    main(sys.argv[1])
