#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""flows.memcap_mb through the daemon: a capture of 120 Modbus/TCP flows,
each of which leaves a hole after its SYN and then sends ~200 KiB that must
wait for it (out-of-order data, within max_ooo_bytes per flow but ~24 MiB in
all). With the default budget everything waits and nothing is refused; with
memcap_mb = 16 (split over 2 shards) the budget is reached: each stream that
finds it spent gives up on its hole at once (its bytes are then delivered in
order, so only the segment that hit the budget is refused), the refused
bytes are counted in the sensor event, the process's peak RSS stays well
below the default run's, and the run still ends cleanly with every flow
reported and the budget whole again."""
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403

FLOWS = 120
SEGMENTS = 150
SEG = 1400


def frame(src, sport, seq, flags, payload=b""):
    ip_len = 20 + 20 + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, 64, 6, 0,
                     bytes([127, 0, src >> 8, src & 0xFF]), bytes([127, 0, 0, 1]))
    tcp = struct.pack(">HHIIBBHHH", sport, 502, seq, 0, 5 << 4, flags, 65535, 0, 0)
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload


def write_capture(path):
    payload = bytes(range(256)) * (SEG // 256) + bytes(SEG % 256)
    t = 1700000000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        n = 0
        for i in range(FLOWS):
            pkts = [frame(i + 1, 40000 + i, 1000, 0x02)]  # SYN
            # The first segment (1001..1001+SEG) never comes: everything after waits.
            for k in range(1, SEGMENTS + 1):
                pkts.append(frame(i + 1, 40000 + i, 1001 + k * SEG, 0x18, payload))
            for p in pkts:
                n += 1
                f.write(struct.pack("<IIII", t + n // 1000000, n % 1000000, len(p), len(p)))
                f.write(p)


def run(tmp, cap, workers=2):
    conf = os.path.join(tmp, f"memcap{cap}.conf")
    with open(conf, "w") as f:
        f.write(f"capture: {{ workers = {workers}; }};\n")
        if cap:
            f.write(f"flows: {{ memcap_mb = {cap}; }};\n")
    out = os.path.join(tmp, "out.ndjson")
    with open(out, "w") as o:
        p = subprocess.Popen([OTSENSORD, "--no-summary", "-c", conf, "-r", cap_path], stdout=o,
                             stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    check(rc == 0, f"memcap {cap}: exit {rc}: {err[-500:]}")
    with open(out) as f:
        events = parse_events(f.read())
    sensor = [e for e in events if e["type"] == "sensor"][-1]["capture"][0]
    flows = [e for e in events if e["type"] == "flow"]
    print(f"memcap {cap}, {workers} shard(s): peak RSS {ru.ru_maxrss / 1024.0:.1f} MB, refused {sensor['memcap_refused']}", flush=True)
    return sensor, flows, ru.ru_maxrss / 1024.0


with tempfile.TemporaryDirectory() as tmp:
    cap_path = os.path.join(tmp, "holes.pcap")
    write_capture(cap_path)

    total = FLOWS * SEGMENTS * SEG
    s, flows, rss_default = run(tmp, None)
    check(s["memcap_refused"] == 0, f"default budget: nothing refused ({s['memcap_refused']})")
    check(s["tcp_gaps"] == FLOWS, f"default budget: each hole is reported ({s['tcp_gaps']})")
    check(len(flows) == FLOWS, f"default budget: {len(flows)} flow events")
    check(s["memory_used"] == 0, f"default budget: nothing held after the run ({s['memory_used']})")
    check(rss_default > total / 1e6 / 1.048576,
          f"default budget: the out-of-order data was held ({rss_default:.1f} MB peak RSS)")

    for workers in (2, 1):
        s, flows, rss = run(tmp, 16, workers=workers)
        what = f"memcap 16 MiB, {workers} shard(s)"
        check(s["memcap_refused"] > 0, f"{what}: bytes refused ({s['memcap_refused']})")
        check(s["tcp_gaps"] == FLOWS, f"{what}: each hole is reported once ({s['tcp_gaps']})")
        check(len(flows) == FLOWS, f"{what}: every flow still reported ({len(flows)})")
        check(s["memory_used"] == 0, f"{what}: the budget is whole again at the end ({s['memory_used']})")
        check(s["packets"] == FLOWS * (SEGMENTS + 1), f"{what}: every packet read ({s['packets']})")
        check(rss < rss_default - 6,
              f"{what}: peak RSS {rss:.1f} MB stays well below the default run's {rss_default:.1f} MB")
finish("memcap")
