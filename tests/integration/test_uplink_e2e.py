#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End to end over real TLS: every corpus capture goes through otsensord ->
spool -> uplink -> `direct` transport -> mutual TLS -> the lab collector.
What arrives must equal what the `local` transport writes for the same
capture (non-`sensor` events, seq removed, as multisets of canonical JSON),
and the collector must see every seq exactly once. One spool serves all
runs in sequence, so seq must continue across runs."""
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

t0 = time.time()
lab = Lab("e2e")
try:
    out = lab.path("out")
    spool = lab.path("spool")
    col = Collector(lab, out).start()
    conf = sensor_config(lab, "e2e", col.port, spool)
    prev_high = 0
    total_events = 0
    for cap in corpus_files():
        name = os.path.basename(cap)
        local = lab.path(name + ".local.ndjson")
        r = run_sensor(["-c", conf, "--no-summary", "-o", local, "-r", cap])
        if not check(r.returncode == 0, f"{name}: local run exit {r.returncode}: {r.stderr[-500:]}"):
            continue
        want = collections.Counter(canon(e) for e in parse_events(open(local).read()) if e["type"] != "sensor")
        check(sum(want.values()) > 0, f"{name}: the local run produced events")

        before = len(col.events())
        t = time.time()
        r = run_sensor(["-c", conf, "--no-summary", "-r", cap], timeout=120)
        dt = time.time() - t
        check(r.returncode == 0, f"{name}: direct run exit {r.returncode}: {r.stderr[-800:]}")
        check(dt < 30, f"{name}: direct run took {dt:.1f} s")
        arrived = col.events()[before:]
        seqs = [e["seq"] for e in arrived]
        got = collections.Counter(canon(e) for e in arrived if e["type"] != "sensor")
        if not check(got == want, f"{name}: collector != local: {sum(want.values())} local events, "
                                  f"{sum(got.values())} arrived; only local: "
                                  f"{list((want - got).elements())[:2]}; only arrived: {list((got - want).elements())[:2]}"):
            pass
        check(len(arrived) > 0 and seqs == list(range(prev_high + 1, prev_high + 1 + len(arrived))),
              f"{name}: seq continues from {prev_high + 1} contiguously: {seqs[:5]}...{seqs[-5:]}")
        check(all(e["sensor_id"] == SENSOR_ID for e in arrived), f"{name}: sensor_id on every event")
        st = col.sensor_stats()
        check_gapless(st, name)
        check(st is not None and st["duplicates"] == 0, f"{name}: duplicates {st and st['duplicates']}")
        sens = last_sensor_event(arrived)
        if check(sens is not None, f"{name}: a sensor event arrived"):
            u = sens.get("uplink", {})
            check(u.get("transport") == "direct", f"{name}: uplink.transport {u}")
            check(u.get("auth_failures") == 0, f"{name}: auth_failures {u}")
            check("spool" in sens and sens["spool"].get("dropped_oldest") == 0
                  and sens["spool"].get("dropped_newest") == 0, f"{name}: spool {sens.get('spool')}")
        check(spool_pending(spool) == [], f"{name}: spool drained after exit 0")
        prev_high += len(arrived)
        total_events += len(arrived)
    st = col.sensor_stats()
    check(st is not None and st["highest_seq"] == prev_high == total_events,
          f"final highest seq {st and st['highest_seq']} == {total_events}")
    # The readiness probe (connect, close) is the one failed handshake.
    tf = col.stats()["totals"]["tls_failures"]
    check(tf == 1, f"TLS failures at the collector: {tf} (1 expected: the readiness probe); "
                   f"{read_text(col.log)[-1500:]}")
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
print(f"e2e: {time.time() - t0:.1f} s", flush=True)
finish("uplink-e2e")
