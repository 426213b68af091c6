#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Load-balanced proxies (issue 5). A live sensor (capture on lo, a `sensor`
event every second, real Modbus traffic) reaches the lab collector through
haproxy (TCP mode, L7 check expecting squid's 407, fall 2 rise 2 every
500 ms, 2 retries, redispatch) in front of two squids; the squid carrying
the tunnel is SIGKILLed while events flow: delivery must go on through the
other, and after the sensor stops every seq from 1 must have arrived once.
Then the sensor's own proxy list with its first proxy dead (a closed port)
and a live squid second: delivery works, stderr names the dead proxy and
the `sensor` event's uplink.transport_status shows it unhealthy. Needs root
(live capture, squid's cache_effective_user) and haproxy, squid, ss."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403
from proxylab import *  # noqa: F401,F403

PASSWORD = "lb-Pr0xy-pw-5518"


def tunnel_owner(col_port, squids):
    """The squid whose process holds an established connection to the
    collector (the tunnel the sensor's uplink is using), or None."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{col_port} )"],
                         capture_output=True, text=True).stdout
    pids = {int(m) for m in re.findall(r"pid=(\d+)", out)}
    for s in squids:
        if s.pid in pids:
            return s
    return None


def sensor_events(col):
    return [e for e in col.events() if e["type"] == "sensor"]


if os.geteuid() != 0:
    check(False, "test_proxy_lb needs root (live capture, squid's cache_effective_user)")
    finish("proxy-lb")

t0 = time.time()
lab = Lab("proxylb")
try:
    os.chmod(lab.dir, 0o755)
    spool = lab.path("spool")
    col = Collector(lab, lab.path("out")).start()
    pw = write(lab.path("proxy.pw"), PASSWORD + "\n")
    sqa = start_squid(lab, "sqa", "sensor", PASSWORD, [col.port])
    sqb = start_squid(lab, "sqb", "sensor", PASSWORD, [col.port])
    hap = start_haproxy(lab, "haproxy", [sqa, sqb])
    check(wait_for(lambda: list(haproxy_states(hap).values()) == ["UP", "UP"], 10),
          f"haproxy sees both squids UP: {haproxy_states(hap)}")

    # --- 1. haproxy over two squids; kill the one carrying the tunnel ------
    mb = free_port()
    conf = proxy_config(lab, "lb", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {hap.port}; user = "sensor"; password_file = "{pw}";',
                        level="info", heartbeat=1, capture_port=mb, modbus_port=mb,
                        uplink_extra="batch_max_delay_ms = 200;")
    sensor = start_live_sensor(lab, conf)
    check(wait_for(lambda: len(sensor_events(col)) >= 2, 15), "heartbeats reach the collector via haproxy")
    peer = run_modbus_peer(mb)
    check(peer.returncode == 0, f"modbus peer (before the kill) failed: {peer.stderr[-800:]}")
    poke(mb)
    check(wait_for(lambda: any(e["type"] == "transaction" for e in col.events()), 10),
          "transactions reach the collector before the kill")

    victim = None
    wait_for(lambda: tunnel_owner(col.port, [sqa, sqb]) is not None, 5)
    victim = tunnel_owner(col.port, [sqa, sqb])
    check(victim is not None, "one squid carries the sensor's tunnel (ss)")
    victim = victim or sqa
    survivor = sqb if victim is sqa else sqa
    high_kill = col.sensor_stats()["highest_seq"]
    stop_squid(victim)
    killed_at = time.time()
    vname = "sq0" if victim is sqa else "sq1"
    # Events keep flowing: traffic now, heartbeats every second.
    peer = run_modbus_peer(mb)
    check(peer.returncode == 0, f"modbus peer (after the kill) failed: {peer.stderr[-800:]}")
    poke(mb)

    def resumed():
        return any(e["seq"] > high_kill + 3 and e.get("uplink", {}).get("state") == "connected"
                   for e in sensor_events(col))

    check(wait_for(resumed, 20), "delivery goes on after the squid carrying the tunnel was killed")
    resumed_s = time.time() - killed_at
    check(wait_for(lambda: haproxy_states(hap).get(vname) == "DOWN", 10),
          f"haproxy marked the killed squid DOWN: {haproxy_states(hap)}")
    check(wait_for(lambda: tunnel_owner(col.port, [survivor]) is survivor, 5),
          "the tunnel now goes through the surviving squid")
    time.sleep(2)
    check(sensor.poll() is None, "sensor still running")
    rc, _ = stop(sensor)
    err = read_text(sensor.errlog)
    check(rc == 0, f"sensor exit {rc} after SIGTERM: {err[-1500:]}")
    st = col.sensor_stats()
    check_gapless(st, "haproxy failover")
    evs = col.events()
    seqs = sorted(e["seq"] for e in evs)
    check(seqs == list(range(1, len(seqs) + 1)), "the collector's file holds every seq once")
    check(spool_pending(spool) == [], "everything delivered after the sensor stopped")
    last = last_sensor_event(evs)
    u = (last or {}).get("uplink", {})
    check(last is not None and last.get("reason") == "shutdown" and last["seq"] == st["highest_seq"],
          "the shutdown sensor event is the last seq")
    check(u.get("connects", 0) >= 2, f"the uplink reconnected after the kill: {u}")
    sp = (last or {}).get("spool", {})
    check(sp.get("dropped_oldest") == 0 and sp.get("dropped_newest") == 0, f"nothing dropped: {sp}")
    tx = [e for e in evs if e["type"] == "transaction" and e.get("proto") == "modbus" and e.get("function") == 43]
    check(len(tx) == 2, f"both peer runs' transactions arrived ({len(tx)})")
    check(PASSWORD not in err, "no proxy password in the sensor's log")
    alog = read_text(os.path.join(survivor.dir, "access.log"))
    check(f"CONNECT localhost:{col.port}" in alog, f"the surviving squid logged the tunnel: {alog[-400:]}")
    print(f"haproxy: delivery resumed {resumed_s:.1f} s after SIGKILL of {vname}; "
          f"{st['highest_seq']} events, {u.get('connects')} connects, {st['duplicates']} duplicates "
          f"(at-least-once)", flush=True)

    # --- 2. the sensor's own proxy list, first proxy dead --------------------
    dead = free_port()  # nothing listens there: connection refused
    before = st["highest_seq"]
    conf = proxy_config(lab, "list", col.port, spool, "proxy",
                        f'user = "sensor"; password_file = "{pw}"; '
                        f'proxies = ( {{ host = "127.0.0.1"; port = {dead}; }}, '
                        f'{{ host = "127.0.0.1"; port = {survivor.port}; }} );',
                        heartbeat=1, capture_port=free_port())
    sensor = start_live_sensor(lab, conf)

    def list_status():
        for e in reversed(sensor_events(col)):
            if e["seq"] > before and e["uplink"].get("state") == "connected" and e["uplink"].get("events_acked"):
                return e
        return None

    check(wait_for(lambda: list_status() is not None, 15), "delivery through the second proxy of the list")
    ev = list_status() or {"uplink": {}}
    rc, _ = stop(sensor)
    err = read_text(sensor.errlog)
    check(rc == 0, f"sensor (list) exit {rc}: {err[-1500:]}")
    u = ev["uplink"]
    check(u.get("transport") == "proxy" and u.get("state") == "connected", f"uplink via proxy, connected: {u}")
    ps = u.get("transport_status", {}).get("proxies", [])
    check(len(ps) == 2, f"transport_status lists both proxies: {u.get('transport_status')}")
    if len(ps) == 2:
        check(ps[0].get("proxy") == f"127.0.0.1:{dead}" and ps[0].get("state") == "unhealthy"
              and ps[0].get("failures", 0) >= 1 and f"proxy 127.0.0.1:{dead}: " in ps[0].get("last_error", "")
              and "cannot connect" in ps[0].get("last_error", ""),
              f"the dead first proxy is shown unhealthy with its error: {ps[0]}")
        check(ps[1].get("proxy") == f"127.0.0.1:{survivor.port}" and ps[1].get("state") == "healthy"
              and ps[1].get("failures") == 0, f"the second proxy is healthy: {ps[1]}")
    print(f"proxy list: uplink.transport_status = {json.dumps(u.get('transport_status'))}", flush=True)
    check(f"proxy 127.0.0.1:{dead}: cannot connect" in err, f"stderr names the dead proxy: {err[-1500:]}")
    check(PASSWORD not in err and all(PASSWORD not in str(e) for e in col.events()),
          "no proxy password in the log or the events")
    st = col.sensor_stats()
    check_gapless(st, "proxy list")
    check(st["highest_seq"] > before, "the list run's events arrived")
    check(spool_pending(spool) == [], "spool drained after the list run")

    stop(hap, signal.SIGUSR1)
    stop_squid(survivor)
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
print(f"proxy lb: {time.time() - t0:.1f} s", flush=True)
finish("proxy-lb")
