#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Proxy secrets (issue 5): the password read from password_file never
appears in otsensord's stderr at --log-level debug, in any event (the
`sensor` health events are delivered: the collector's stored NDJSON is
searched), nor in the spool files; neither in clear nor as the Basic
credential (base64 of user:password). First with a wrong password (squid
answers 407 at every attempt, the events stay spooled: the spool's sensor
events carry the error), then with the right one (everything delivered),
for the proxy transport and for proxy-chain hops. Needs root (squid)."""
import base64
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403
from proxylab import *  # noqa: F401,F403

USER = "sensor"
GOOD = "Secr3t-Proxy-PW-6d1f"
WRONG = "Wr0ng-Proxy-PW-90ae"
HOP_PW = "Hop2-Secr3t-PW-c47e"


def forms(user, pw):
    """The secret as it could leak: clear, Basic credential, and pieces."""
    cred = base64.b64encode(f"{user}:{pw}".encode())
    return [pw.encode(), cred, base64.b64encode(pw.encode()), pw.encode().hex().encode()]


SECRETS = forms(USER, GOOD) + forms(USER, WRONG) + forms("hop", HOP_PW)


def leaks(data, where):
    found = [s.decode() for s in SECRETS if s in data]
    check(not found, f"no proxy password in {where}: found {found}")


def spool_bytes(spool):
    data = b""
    for root, _, files in os.walk(spool):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data += fh.read()
    return data


if os.geteuid() != 0:
    check(False, "test_proxy_secrets needs root (squid)")
    finish("proxy-secrets")

t0 = time.time()
lab = Lab("proxysecrets")
try:
    os.chmod(lab.dir, 0o755)
    spool = lab.path("spool")
    col = Collector(lab, lab.path("out")).start()
    sq = start_squid(lab, "sq", USER, GOOD, [col.port])
    wrong = write(lab.path("wrong.pw"), WRONG + "\n")
    good = write(lab.path("good.pw"), GOOD + "\n")
    cap = {os.path.basename(c): c for c in corpus_files()}["modbus_example.pcap"]

    # 1. Wrong password: 407 at every attempt, at debug level.
    conf = proxy_config(lab, "wrong", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {sq.port}; user = "{USER}"; password_file = "{wrong}";',
                        heartbeat=1)
    r = run_sensor(["-c", conf, "--no-summary", "--log-level", "debug", "--drain-timeout", "3", "-r", cap],
                   timeout=60)
    check(r.returncode == 75, f"wrong password: exit 75, got {r.returncode}: {r.stderr[-800:]}")
    check("ots-uplink-DEBUG: " in r.stderr, "the sensor logged at debug level")
    check(f"proxy 127.0.0.1:{sq.port}: proxy authentication failed: 407" in r.stderr,
          f"the 407 is reported: {r.stderr[-800:]}")
    leaks(r.stderr.encode(), "stderr (wrong password, debug)")
    pending = spool_pending(spool)
    check(len(pending) > 0, "events spooled while the proxy refuses")
    sens = [ln for _, ln in pending if b'"type":"sensor"' in ln]
    check(any(b"407" in ln for ln in sens), "the spooled sensor events carry the 407 error")
    leaks(spool_bytes(spool), "the spool files (wrong password)")

    # 2. The right password: everything delivered.
    conf = proxy_config(lab, "good", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {sq.port}; user = "{USER}"; password_file = "{good}";',
                        heartbeat=1)
    r = run_sensor(["-c", conf, "--no-summary", "--log-level", "debug", "-r", cap], timeout=60)
    check(r.returncode == 0, f"right password: exit {r.returncode}: {r.stderr[-800:]}")
    check(f"CONNECT localhost:{col.port} -> 200" in r.stderr, "the debug log shows the CONNECT hop report")
    leaks(r.stderr.encode(), "stderr (right password, debug)")
    check(spool_pending(spool) == [], "spool drained")
    leaks(spool_bytes(spool), "the spool files (after delivery)")

    # 3. proxy-chain: two hops, each with its own password.
    sq2 = start_squid(lab, "sq2", "hop", HOP_PW, [col.port])
    sq1 = start_squid(lab, "sq1", USER, GOOD, [sq2.port])
    hop_pw = write(lab.path("hop.pw"), HOP_PW + "\n")
    conf = proxy_config(lab, "chain", col.port, spool, "proxy-chain",
                        "hops = ( "
                        f'{{ host = "127.0.0.1"; port = {sq1.port}; user = "{USER}"; password_file = "{good}"; }}, '
                        f'{{ host = "127.0.0.1"; port = {sq2.port}; user = "hop"; password_file = "{hop_pw}"; }} );',
                        heartbeat=1)
    r = run_sensor(["-c", conf, "--no-summary", "--log-level", "debug", "-r", cap], timeout=60)
    check(r.returncode == 0, f"chain: exit {r.returncode}: {r.stderr[-800:]}")
    leaks(r.stderr.encode(), "stderr (proxy-chain, debug)")
    leaks(spool_bytes(spool), "the spool files (proxy-chain)")

    st = col.sensor_stats()
    check_gapless(st, "secrets runs")
    evs = col.events()
    sens = [e for e in evs if e["type"] == "sensor"]
    check(len(sens) >= 3 and any(e["uplink"].get("last_error") and "407" in e["uplink"]["last_error"] for e in sens),
          "sensor health events (one with the 407 error) reached the collector")
    check(any(e["uplink"].get("transport") == "proxy-chain" for e in sens), "proxy-chain sensor events arrived")
    with open(os.path.join(col.out, SENSOR_ID + ".ndjson"), "rb") as f:
        leaks(f.read(), "the collector's stored NDJSON")
    for p in (sq, sq1, sq2):
        stop_squid(p)
    check(col.stop() == 0, "collector exit 0")
    leaks(read_text(col.log).encode(), "the collector's log")
finally:
    lab.close()
print(f"proxy secrets: {time.time() - t0:.1f} s", flush=True)
finish("proxy-secrets")
