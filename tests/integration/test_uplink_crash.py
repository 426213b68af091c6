#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Crash: a live sensor (heartbeat every second, real Modbus traffic) is
killed with SIGKILL while a batch is in flight (the collector stalls its
answer, stores the batch, and the ack is lost), then restarted with the same
config and spool. The collector must end with no gap, duplicates only from
that one unacknowledged batch (<= batch_max_events), and the seqs of the
restarted sensor must continue above the last one before the crash. Needs
root (live capture)."""
import datetime
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

BATCH_MAX = 8

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("uplink-crash")


def ts_of(e):
    return datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


t0 = time.time()
lab = Lab("crash")
try:
    out = lab.path("out")
    spool = lab.path("spool")
    ctl = lab.path("control.sock")
    mb = free_port()
    col = Collector(lab, out, extra=["--control-socket", ctl]).start()

    def control(obj):
        r = subprocess.run(["curl", "-sS", "--unix-socket", ctl, "http://x/_control", "-d", json.dumps(obj)],
                           capture_output=True, text=True, timeout=10)
        return r.returncode == 0 and json.loads(r.stdout).get("ok") is True

    conf = sensor_config(lab, "crash", col.port, spool, heartbeat=1, capture_port=mb, modbus_port=mb,
                         uplink_extra=f"batch_max_events = {BATCH_MAX}; batch_max_delay_ms = 200;")
    sensor = start_live_sensor(lab, conf)
    check(wait_for(lambda: len(col.events()) >= 2, 15), "first events reach the collector")
    peer = run_modbus_peer(mb)
    check(peer.returncode == 0, f"modbus peer failed: {peer.stderr[-800:]}")
    time.sleep(0.5)
    poke(mb)  # see test_uplink_outage.py: wakes the live capture
    check(wait_for(lambda: any(e["type"] == "transaction" for e in col.events()), 10),
          "transactions reach the collector")

    # The next batch is stored but its answer stalls: SIGKILL lands while it
    # is unacknowledged (a lost ack).
    check(control({"mode": "stall", "seconds": 3, "count": 1, "ingest": True}), "stall mode set")
    check(wait_for(lambda: col.stats()["totals"]["misbehaved"].get("stall", 0) >= 1, 10),
          "a batch is in flight and stalled")
    time.sleep(0.3)
    sensor.kill()
    sensor.wait()
    crash_at = time.time()
    check(sensor.returncode == -signal.SIGKILL, f"sensor killed: {sensor.returncode}")
    acked, recs = spool_records(spool)
    max_before = max((s for s, _ in recs), default=0)
    pending_before = [s for s, _ in recs if s > acked]
    check(len(pending_before) > 0, "the spool holds unacknowledged records after the crash")
    # Let the stalled batch be stored: that is what makes duplicates.
    check(wait_for(lambda: col.sensor_stats()["highest_seq"] >= acked + 1, 6), "the stalled batch was stored")
    stored_before = col.sensor_stats()["highest_seq"]
    check(stored_before <= max_before, f"collector highest {stored_before} <= spool max {max_before}")

    sensor = start_live_sensor(lab, conf)
    restart_at = time.time()
    check(wait_for(lambda: col.sensor_stats()["highest_seq"] > max_before, 15),
          "the restarted sensor delivers new seqs")
    peer = run_modbus_peer(mb)
    check(peer.returncode == 0, f"modbus peer (after restart) failed: {peer.stderr[-800:]}")
    time.sleep(0.5)
    poke(mb)
    check(wait_for(lambda: len([e for e in col.events() if e.get("function") == 43]) >= 2, 10),
          "transactions after the restart arrive")
    time.sleep(1)
    rc, _ = stop(sensor)
    check(rc == 0, f"sensor exit {rc}: {read_text(sensor.errlog)[-1500:]}")

    st = col.sensor_stats()
    check_gapless(st, "after the crash")
    check(0 < st["duplicates"] <= BATCH_MAX,
          f"duplicates {st['duplicates']} only from the one unacknowledged batch (<= {BATCH_MAX})")
    check(st["received"] == st["accepted"] + st["duplicates"], "received == accepted + duplicates")
    evs = col.events()
    seqs = [e["seq"] for e in evs]
    check(sorted(seqs) == list(range(1, len(seqs) + 1)), "output file: every seq once")
    # Events made by the restarted process carry seqs above the old maximum.
    new = [e for e in evs if e["type"] == "sensor" and ts_of(e) >= restart_at]
    old = [e for e in evs if e["type"] == "sensor" and ts_of(e) < crash_at]
    check(len(new) >= 2 and all(e["seq"] > max_before for e in new),
          f"post-restart sensor events have seq > {max_before}: {[e['seq'] for e in new][:5]}")
    check(old and all(e["seq"] <= max_before for e in old), "pre-crash sensor events keep their seqs")
    last = last_sensor_event(evs)
    check(last and last["reason"] == "shutdown" and last["seq"] == st["highest_seq"],
          "the shutdown event is the last seq")
    if last:
        check(last["spool"]["dropped_oldest"] == 0 and last["spool"]["dropped_newest"] == 0,
              f"nothing dropped: {last['spool']}")
        check(last["spool"].get("bad_crc", 0) == 0, f"no damaged record after SIGKILL: {last['spool']}")
    check(spool_pending(spool) == [], "spool empty after the drain")
    check(col.stop() == 0, "collector exit 0")
    print(f"crash: acked {acked} before the kill, spool max {max_before}, "
          f"duplicates {st['duplicates']}", flush=True)
finally:
    lab.close()
print(f"crash: {time.time() - t0:.1f} s", flush=True)
finish("uplink-crash")
