#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Hostile or broken proxies through otsensord (issue 5): a proxy that
accepts and never answers, one that answers garbage, one that sends endless
headers, one that closes the tunnel in the middle of the upload (fake
proxies: fake_proxy.py, direct children). For each, the sensor must name the
proxy and the failure on stderr and in `uplink.last_error` of its spooled
`sensor` events, retry (several connections), not crash, and lose nothing:
once the config points at a working squid (same spool, sensor restarted),
every event arrives, seq gap-free from 1. The mid-tunnel proxy relays
properly after its first cuts: the sensor must get through it on its own.
Needs root (squid's cache_effective_user)."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403
from proxylab import *  # noqa: F401,F403

PASSWORD = "h0stile-Pw-7731"
REPLY_TIMEOUT_MS = 1000
DRAIN_S = 5


def spooled_sensor_events(spool):
    out = []
    for _, line in spool_pending(spool):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("type") == "sensor":
            out.append(ev)
    return out


def sanitizer_or_crash(rc, err):
    return rc < 0 or "AddressSanitizer" in err or "runtime error:" in err or "CRITICAL" in err


def hostile_case(mode, want, cap, col, spool, good_conf, good_cap, extra=()):
    """The sensor reads `cap` with the fake proxy in front, cannot deliver,
    keeps everything spooled; then a sensor on the same spool through squid
    delivers it all."""
    fake = start_fake_proxy(lab, mode, *extra)
    hop = f"127.0.0.1:{fake.port}"
    conf = proxy_config(lab, f"hostile-{mode}", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {fake.port}; reply_timeout_ms = {REPLY_TIMEOUT_MS};',
                        heartbeat=1)
    t = time.time()
    r = run_sensor(["-c", conf, "--no-summary", "--drain-timeout", str(DRAIN_S), "-r", cap], timeout=120)
    took = time.time() - t
    check(not sanitizer_or_crash(r.returncode, r.stderr), f"{mode}: no crash: rc {r.returncode}: {r.stderr[-1500:]}")
    check(r.returncode == 75, f"{mode}: exit 75 (events kept for the next start), got {r.returncode}")
    check(took < DRAIN_S + 10, f"{mode}: the sensor gave up after its drain timeout ({took:.1f} s)")
    msgs = [ln for ln in r.stderr.splitlines() if f"proxy {hop}: " in ln and want in ln]
    check(len(msgs) >= 2, f"{mode}: stderr names the proxy and the failure ({want!r}) at each attempt: "
                          f"{len(msgs)} lines; {r.stderr[-1500:]}")
    shown = [ln for ln in msgs if "DEBUG" not in ln] or msgs
    if shown:
        print(f"{mode}: {shown[0].strip()[:400]}", flush=True)
    attempts = fake_accepts(fake) - fake.probes
    check(attempts >= 2, f"{mode}: the sensor reconnected ({attempts} connections to the fake proxy)")
    pending = spool_pending(spool)
    check(len(pending) > 0, f"{mode}: the events stay in the spool")
    sens = spooled_sensor_events(spool)
    errs = [e["uplink"].get("last_error") or "" for e in sens]
    check(any(f"proxy {hop}: " in m and want in m for m in errs),
          f"{mode}: a spooled sensor event has uplink.last_error naming the hop: {errs[-2:]}")
    check(all(e["uplink"].get("state") != "connected" for e in sens), f"{mode}: never connected")
    if mode == "endless":
        # The sensor stopped reading the endless head (its bound) and closed:
        # every connection the fake proxy saw ended.
        check(wait_for(lambda: read_text(fake.log).count("closed ") >= fake_accepts(fake), 5),
              f"endless: every connection was closed by the sensor: {read_text(fake.log)[-400:]}")
    stop(fake, signal.SIGKILL)

    # The same spool, a working proxy: everything arrives.
    high = pending[-1][0]
    r = run_sensor(["-c", good_conf, "--no-summary", "--drain-timeout", "60", "-r", good_cap], timeout=120)
    check(not sanitizer_or_crash(r.returncode, r.stderr), f"{mode} recovery: no crash: {r.stderr[-1500:]}")
    check(r.returncode == 0, f"{mode} recovery: exit {r.returncode}: {r.stderr[-1500:]}")
    st = col.sensor_stats()
    check_gapless(st, f"{mode} recovery")
    check(st is not None and st["highest_seq"] > high, f"{mode} recovery: the spooled seq {high} arrived")
    check(spool_pending(spool) == [], f"{mode} recovery: spool drained")


t0 = time.time()
if os.getuid() != 0:
    check(False, "test_proxy_hostile needs root (squid's cache_effective_user)")
    finish("proxy-hostile")
lab = Lab("proxyhostile")
try:
    os.chmod(lab.dir, 0o755)
    spool = lab.path("spool")
    col = Collector(lab, lab.path("out")).start()
    pw = write(lab.path("proxy.pw"), PASSWORD + "\n")
    sq = start_squid(lab, "sq", "sensor", PASSWORD, [col.port])
    good = proxy_config(lab, "good", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {sq.port}; user = "sensor"; password_file = "{pw}";')
    corpus = {os.path.basename(c): c for c in corpus_files()}
    small = corpus["modbus_example.pcap"]
    big = corpus["dnp3_example.pcap"]

    hostile_case("hang", f"no CONNECT reply within {REPLY_TIMEOUT_MS} ms", small, col, spool, good, small)
    hostile_case("garbage", "not an HTTP proxy", small, col, spool, good, small)
    hostile_case("endless", "reply head too large", small, col, spool, good, small)

    # Mid-tunnel: the fake proxy relays to the collector and cuts its first
    # two tunnels 6000 bytes into the upload (after the TLS handshake, inside
    # the first POST), then behaves. The sensor must retry through it and
    # deliver everything in one run.
    before = col.sensor_stats()["highest_seq"]
    mid = start_fake_proxy(lab, "midtunnel", 2, 6000)
    conf = proxy_config(lab, "hostile-mid", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {mid.port}; reply_timeout_ms = {REPLY_TIMEOUT_MS};',
                        heartbeat=1)
    r = run_sensor(["-c", conf, "--no-summary", "--drain-timeout", "60", "-r", big], timeout=120)
    check(not sanitizer_or_crash(r.returncode, r.stderr), f"midtunnel: no crash: {r.stderr[-1500:]}")
    check(r.returncode == 0, f"midtunnel: exit {r.returncode}: {r.stderr[-1500:]}")
    flog = read_text(mid.log)
    check(flog.count("cut ") == 2, f"midtunnel: the fake proxy cut two tunnels: {flog[-600:]}")
    check(fake_accepts(mid) - mid.probes >= 3, "midtunnel: the sensor reconnected after each cut")
    # After the CONNECT 200 the core only sees its session end; it names the
    # proxy whose CONNECT carried it (the hop that answered last).
    lines = [ln for ln in r.stderr.splitlines()
             if f"localhost:{col.port} through proxy" in ln and "connection closed" in ln
             and "DEBUG" not in ln]
    check(len(lines) >= 2, f"midtunnel: stderr reports each broken tunnel: {r.stderr[-2000:]}")
    if lines:
        print(f"midtunnel: {lines[0].strip()[:300]}", flush=True)
    ups = [ln for ln in r.stderr.splitlines() if f"connected to localhost:{col.port} via proxy" in ln]
    check(len(ups) >= 3, f"midtunnel: the sensor reconnected after each cut ({len(ups)} sessions)")
    st = col.sensor_stats()
    check_gapless(st, "midtunnel")
    check(st["highest_seq"] > before + 300, f"midtunnel: the capture's events arrived ({st['highest_seq']})")
    check(spool_pending(spool) == [], "midtunnel: spool drained")
    evs = col.events()
    print(f"midtunnel: duplicates at the collector {st['duplicates']} (at-least-once)", flush=True)
    stop(mid, signal.SIGKILL)

    seqs = sorted(e["seq"] for e in evs)
    check(seqs == list(range(1, len(seqs) + 1)), "the collector's file holds every seq once")
    stop_squid(sq)
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
print(f"proxy hostile: {time.time() - t0:.1f} s", flush=True)
finish("proxy-hostile")
