#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""otsensord -r on every corpus capture: exits 0, valid NDJSON, envelope,
gap-free seq, and the sensor event's counters agree with tshark."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403

ENVELOPE = ["ts", "sensor_id", "seq", "type"]
TUPLE = ["src_ip", "src_port", "dst_ip", "dst_port", "transport"]

for path in corpus_files():
    name = os.path.basename(path)
    r = run_sensor(["--no-summary", "-r", path])
    check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr[-500:]}")
    events = parse_events(r.stdout)
    check(len(events) > 0, f"{name}: no events")
    seqs = [e.get("seq") for e in events]
    check(seqs == list(range(1, len(events) + 1)), f"{name}: seq not 1..N gap-free")
    for e in events:
        for k in ENVELOPE:
            if not check(k in e, f"{name}: event without {k}: {e}"):
                break
        check(list(e.keys())[:4] == ENVELOPE, f"{name}: envelope order {list(e.keys())[:4]}")
        if e["type"] in ("transaction", "flow"):
            check(all(k in e for k in TUPLE), f"{name}: {e['type']} without 5-tuple: {e}")
        if e["type"] == "transaction":
            for k in ("proto", "function", "op_class", "status"):
                check(k in e, f"{name}: transaction without {k}: {e}")
    sensor = [e for e in events if e["type"] == "sensor"]
    if check(len(sensor) >= 1, f"{name}: no sensor event"):
        s = sensor[-1]
        cap = s["capture"][0]
        frames = tshark_count(path, "frame")
        check(cap["packets"] == frames, f"{name}: packets {cap['packets']} != tshark frames {frames}")
        tcp = tshark_count(path, "tcp && !(ip.flags.mf == 1 || ip.frag_offset > 0)")
        udp = tshark_count(path, "udp && !(ip.flags.mf == 1 || ip.frag_offset > 0) && !icmp")
        check(cap["tcp"] == tcp, f"{name}: tcp {cap['tcp']} != tshark {tcp}")
        check(cap["udp"] == udp, f"{name}: udp {cap['udp']} != tshark {udp}")
        flows = [e for e in events if e["type"] == "flow"]
        check(len(flows) == cap["flows_created"], f"{name}: {len(flows)} flow events != {cap['flows_created']} flows")
        check(s["events"]["transaction"] == sum(1 for e in events if e["type"] == "transaction"),
              f"{name}: sensor event transaction count")

# Several files in one run, in order: one continuous seq, packets add up.
files = corpus_files()[:3]
r = run_sensor(["--no-summary", "-r"] + files)
check(r.returncode == 0, "multi-file exit")
events = parse_events(r.stdout)
check([e["seq"] for e in events] == list(range(1, len(events) + 1)), "multi-file seq")
total = sum(tshark_count(f, "frame") for f in files)
s = [e for e in events if e["type"] == "sensor"][-1]
check(s["capture"][0]["packets"] == total, f"multi-file packets {s['capture'][0]['packets']} != {total}")

# Bad input: a missing file and a non-capture file are clear errors (EX_NOINPUT).
r = run_sensor(["-r", "/nonexistent.pcap"])
check(r.returncode == 66 and "nonexistent.pcap" in r.stderr, f"missing file: {r.returncode} {r.stderr}")
r = run_sensor(["-r", os.path.join(SRC, "README.md")])
check(r.returncode == 66 and "README.md" in r.stderr, f"not a capture: {r.returncode} {r.stderr}")
r = run_sensor([os.path.join(CORPUS, "modbus_example.pcap")])
check(r.returncode == 64, "files without -r are a usage error")

# --version lists the in-tree plugins when run from the build tree.
r = run_sensor(["--version"])
check(r.returncode == 0 and "modbus" in r.stdout and "local" in r.stdout and "ABI" in r.stdout,
      f"--version: {r.stdout}")
finish("read")
