#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End to end through real proxies: otsensord -> spool -> uplink -> `proxy`
transport -> squid (Basic auth) -> mutual TLS -> the lab collector, then the
same through the `proxy-chain` transport (squid -> tinyproxy -> squid, each
hop only allowing CONNECT to the next). Events must arrive with seq
gap-free across both runs, the proxies must have logged the CONNECTs, and
the proxy password must appear neither in the sensor's debug log nor in any
event. Needs root (squid's cache_effective_user) and squid, tinyproxy,
htpasswd (scripts/deps)."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403
from proxylab import *  # noqa: F401,F403

PASSWORD = "Sq-pr0xy-s3cret-91"


def deliver(name, conf, cap, col, prev_high, want_transport):
    before = len(col.events())
    r = run_sensor(["-c", conf, "--no-summary", "-r", cap], timeout=120)
    check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr[-1500:]}")
    arrived = col.events()[before:]
    seqs = [e["seq"] for e in arrived]
    check(len(arrived) > 0, f"{name}: events arrived through the proxy")
    check(seqs == list(range(prev_high + 1, prev_high + 1 + len(arrived))),
          f"{name}: seq continues from {prev_high + 1} without a gap: {seqs[:5]}...{seqs[-5:]}")
    sens = last_sensor_event(arrived)
    if check(sens is not None, f"{name}: a sensor event arrived"):
        u = sens.get("uplink", {})
        check(u.get("transport") == want_transport, f"{name}: uplink.transport {u}")
    check(PASSWORD not in r.stderr and "tppw" not in r.stderr and "hoppw" not in r.stderr,
          f"{name}: no proxy password in the sensor's debug log")
    check(all(PASSWORD not in str(e) for e in arrived), f"{name}: no proxy password in events")
    return prev_high + len(arrived), r.stderr


t0 = time.time()
if os.getuid() != 0:
    print("FAIL: test_proxy needs root (squid's cache_effective_user)", flush=True)
    sys.exit(1)
lab = Lab("proxy")
try:
    os.chmod(lab.dir, 0o755)
    out = lab.path("out")
    spool = lab.path("spool")
    col = Collector(lab, out).start()
    caps = corpus_files()[:2]
    pw = write(lab.path("proxy.pw"), PASSWORD + "\n")

    # 1. One squid with Basic auth.
    sq = start_squid(lab, "sq", "sensor", PASSWORD, [col.port])
    conf = proxy_config(lab, "one", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {sq.port}; user = "sensor"; '
                        f'password_file = "{pw}";')
    high = 0
    for cap in caps:
        high, _ = deliver(f"proxy {os.path.basename(cap)}", conf, cap, col, high, "proxy")
    log = read_text(os.path.join(sq.dir, "access.log"))
    check(f"CONNECT localhost:{col.port}" in log and " sensor " in log,
          f"squid logged the authenticated CONNECT: {log[-500:]}")
    check_gapless(col.sensor_stats(), "after the proxy runs")

    # 2. The sensor builds the chain: squid -> tinyproxy -> squid.
    hop3 = start_squid(lab, "hop3", "hop", "hoppw", [col.port])
    hop2 = start_tinyproxy(lab, "hop2", "tp", "tppw", hop3.port)
    hop1 = start_squid(lab, "hop1", "sensor", PASSWORD, [hop2.port])
    pw_tp = write(lab.path("tp.pw"), "tppw\n")
    pw_hop = write(lab.path("hop.pw"), "hoppw\n")
    conf = proxy_config(lab, "chain", col.port, spool, "proxy-chain",
                        "hops = ( "
                        f'{{ host = "127.0.0.1"; port = {hop1.port}; user = "sensor"; password_file = "{pw}"; }}, '
                        f'{{ host = "127.0.0.1"; port = {hop2.port}; user = "tp"; password_file = "{pw_tp}"; }}, '
                        f'{{ host = "127.0.0.1"; port = {hop3.port}; user = "hop"; password_file = "{pw_hop}"; }} );')
    for cap in caps:
        high, _ = deliver(f"proxy-chain {os.path.basename(cap)}", conf, cap, col, high, "proxy-chain")
    log1 = read_text(os.path.join(hop1.dir, "access.log"))
    log3 = read_text(os.path.join(hop3.dir, "access.log"))
    check(f"CONNECT 127.0.0.1:{hop2.port}" in log1, f"hop 1 only saw CONNECT to hop 2: {log1[-400:]}")
    check(f"CONNECT localhost:{col.port}" in log3, f"hop 3 CONNECTed to the endpoint: {log3[-400:]}")
    st = col.sensor_stats()
    check_gapless(st, "after the chain runs")
    check(st is not None and st["highest_seq"] == high and st["duplicates"] == 0,
          f"highest seq {st and st['highest_seq']} == {high}, no duplicates")
    check(spool_pending(spool) == [], "spool drained")
    for p in (sq, hop1, hop3):
        stop_squid(p)
    stop(hop2, signal.SIGTERM)
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
print(f"proxy e2e: {time.time() - t0:.1f} s", flush=True)
finish("proxy-e2e")
