#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""otsensord -r on every corpus capture: exits 0, valid NDJSON, envelope,
gap-free seq, and the sensor event's counters agree with tshark."""
import json
import os
import sys
import tempfile

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

# Flow shards (capture.workers) change which thread dissects a flow, never
# what comes out: every corpus capture gives the same events (up to order
# and seq) and the same counters with 1 and with 4 shards.
def canon_run(workers, files):
    conf = os.path.join(tmp, f"w{workers}.conf")
    with open(conf, "w") as f:
        f.write(f"capture: {{ workers = {workers}; }};\n")
    r = run_sensor(["--no-summary", "-c", conf, "-r"] + files)
    check(r.returncode == 0, f"workers={workers}: exit {r.returncode}: {r.stderr[-500:]}")
    events = parse_events(r.stdout)
    body = sorted(json.dumps({k: v for k, v in e.items() if k != "seq"}, sort_keys=True)
                  for e in events if e["type"] != "sensor")
    cap = [e for e in events if e["type"] == "sensor"][-1]["capture"][0]
    check(cap.get("shards") == workers, f"workers={workers}: the sensor event says shards {cap.get('shards')}")
    counters = {k: cap.get(k) for k in ("packets", "tcp", "udp", "flows_created", "flows_ended")}
    return body, counters, s_events(events)


def s_events(events):
    return [e for e in events if e["type"] == "sensor"][-1]["events"]


with tempfile.TemporaryDirectory() as tmp:
    for path in corpus_files() + [None]:
        files = [path] if path else corpus_files()
        name = os.path.basename(path) if path else "all captures in one run"
        one = canon_run(1, files)
        four = canon_run(4, files)
        check(one[0] == four[0], f"{name}: 4 shards give the events of 1 ({len(four[0])} vs {len(one[0])})")
        check(one[1] == four[1], f"{name}: 4 shards give the counters of 1 ({four[1]} vs {one[1]})")
        check(one[2] == four[2], f"{name}: 4 shards count the events of 1 ({four[2]} vs {one[2]})")

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
