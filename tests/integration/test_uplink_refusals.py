#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Refusals, each with a clear error and no data loss: a TLS 1.1-only
server, an unknown CA, a wrong host name, an expired server certificate, a
pin mismatch, a missing client
certificate, and a wrong bearer token. Each case runs a live sensor (a
`sensor` event every second: events keep coming) against the refusing peer;
after SIGTERM it must exit 75 (EX_TEMPFAIL) with the events still in its
spool and the reason on stderr. A following run with a corrected config
and the same spool delivers everything, with no gap. Also: the bearer token
never shows up in stderr at --log-level debug nor in any event. The cases
run side by side (each with its own sensor id, spool and peer). Needs root
(live capture)."""
import base64
import json
import hashlib
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("uplink-refusals")

TOKEN = "otsTok3n-" + base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")
WRONG_TOKEN = "wrongTok-" + base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")
MODBUS_PCAP = os.path.join(CORPUS, "modbus_example.pcap")


def spki_pin(crt):
    pub = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True,
                         check=True).stdout
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


t0 = time.time()
lab = Lab("refusals")
try:
    pki = lab.pki
    token_file = lab.path("token")
    wrong_token_file = lab.path("wrong-token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    with open(wrong_token_file, "w") as f:
        f.write(WRONG_TOKEN + "\n")
    os.chmod(token_file, 0o600)

    # The good endpoint, used by the corrected runs (and by the pin, missing
    # client cert and token cases: it requires a client certificate and
    # the token).
    good = Collector(lab, lab.path("out-good"), extra=["--token-file", token_file]).start()
    unknown_ca = Collector(lab, lab.path("out-ca2"), cert="ca2-server").start()
    wrong_host = Collector(lab, lab.path("out-other"), cert="other-host").start()
    expired = Collector(lab, lab.path("out-expired"), cert="expired").start()
    tls11_port = free_port()
    tls11 = lab.track(subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{tls11_port}", "-cert", os.path.join(pki, "server.crt"),
         "-key", os.path.join(pki, "server.key"), "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-www", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(lab.path("s_server.log"), "w")))
    check(wait_port(tls11_port, 5, tls11), "openssl s_server -tls1_1 is listening")
    good_pin = spki_pin(os.path.join(pki, "server.crt"))
    wrong_pin = "sha256//" + base64.b64encode(hashlib.sha256(b"not the server key").digest()).decode()

    # name: (port, sensor_config kwargs, expected words in stderr (any of each tuple), auth failure?)
    cases = {
        "tls11": (tls11_port, {}, [("protocol version",)], False),
        "unknown-ca": (unknown_ca.port, {}, [("unknown ca",)], False),
        "wrong-host": (wrong_host.port, {}, [("name mismatch",), ("cloud.test",)], False),
        "expired": (expired.port, {}, [("expired",)], False),
        "pin": (good.port, {"pins": [wrong_pin], "token_file": token_file}, [("pin mismatch",)], False),
        "no-client-cert": (good.port, {"client": False, "token_file": token_file},
                           [("authentication failed",), ("client certificate",)], True),
        "wrong-token": (good.port, {"token_file": wrong_token_file}, [("authentication failed",), ("401",)], True),
    }
    quiet = free_port()  # a port nothing uses: the captures see no packet
    running = {}
    for name, (port, kw, _, _) in cases.items():
        spool = lab.path("spool-" + name)
        conf = sensor_config(lab, name, port, spool, heartbeat=1, capture_port=quiet,
                             sensor_id="ref-" + name, **kw)
        running[name] = (start_live_sensor(lab, conf, ["--log-level", "debug"]), spool)

    def refused(name):
        proc, spool = running[name]
        err = read_text(proc.errlog).lower()
        return (all(any(w in err for w in alts) for alts in cases[name][2]) and len(spool_pending(spool)) >= 3)

    for name in cases:
        check(wait_for(lambda: refused(name), 15),
              f"{name}: refusal reported on stderr and events queued: "
              f"{read_text(running[name][0].errlog)[-1200:]}")
    for name in cases:
        running[name][0].send_signal(signal.SIGTERM)
    results = {}
    for name, (proc, spool) in running.items():
        rc, _ = stop(proc, sig=None, timeout=20)
        err = read_text(proc.errlog)
        pending = [s for s, _ in spool_pending(spool)]
        results[name] = (rc, err, pending)
        lines = [ln for ln in err.splitlines() if "uplink" in ln.lower() or "otsensord:" in ln]
        print(f"--- {name}: exit {rc}, {len(pending)} events spooled; last uplink lines:\n    "
              + "\n    ".join(lines[-2:]), flush=True)
        check(rc == 75, f"{name}: exit {rc} (75 expected): {err[-800:]}")
        check(len(pending) >= 3 and pending == list(range(1, len(pending) + 1)),
              f"{name}: events 1..n still in the spool: {pending[:5]}...")
        exit_line = [ln.lower() for ln in err.splitlines() if "not yet acknowledged" in ln]
        check(exit_line and "stay in the spool" in exit_line[-1]
              and all(any(w in exit_line[-1] for w in alts) for alts in cases[name][2]),
              f"{name}: the exit message gives the reason and says the events stay spooled: {exit_line}")
        check(TOKEN not in err and WRONG_TOKEN not in err, f"{name}: no bearer token in stderr (debug)")
        for _, data in spool_records(spool)[1]:
            check(TOKEN.encode() not in data and WRONG_TOKEN.encode() not in data,
                  f"{name}: no token in a spooled event")

    # otsensord -r: the end-of-file drain gives up after --drain-timeout
    # with exit 75, and the whole capture stays spooled.
    r_spool = lab.path("spool-r")
    r_conf = sensor_config(lab, "r-unknown-ca", unknown_ca.port, r_spool, sensor_id="ref-r-unknown-ca")
    t = time.time()
    r = run_sensor(["-c", r_conf, "--no-summary", "--drain-timeout", "2", "-r", MODBUS_PCAP], timeout=60)
    r_dt = time.time() - t
    r_pending = [s for s, _ in spool_pending(r_spool)]
    check(r.returncode == 75, f"-r against an unknown CA: exit {r.returncode} (75 expected): {r.stderr[-800:]}")
    check(1.5 < r_dt < 10, f"-r gave up after the 2 s drain timeout: {r_dt:.1f} s")
    check("unknown CA" in r.stderr and "stay in the spool" in r.stderr, f"-r: reason on stderr: {r.stderr[-800:]}")
    check(len(r_pending) > 3 and r_pending == list(range(1, len(r_pending) + 1)),
          f"-r: the whole capture is spooled: {len(r_pending)}")
    running["r-unknown-ca"] = (None, r_spool)
    results["r-unknown-ca"] = (r.returncode, r.stderr, r_pending)

    # What the peers saw.
    check(unknown_ca.stats()["totals"]["requests"] == 0, "unknown CA: no request reached the collector")
    check(wrong_host.stats()["totals"]["requests"] == 0, "wrong host: no request reached the collector")
    st = good.stats()
    check(st["totals"]["rejected"].get("401", 0) >= 1, f"wrong token: 401s at the collector: {st['totals']}")
    check(st["totals"]["tls_failures"] >= 2, f"missing client cert: TLS failures at the collector: {st['totals']}")
    check("ref-pin" not in st["sensors"] and "ref-no-client-cert" not in st["sensors"],
          "pin / missing client cert: nothing delivered")

    # The auth failures are reported as such in the sensor's own health
    # events: they are still spooled, so read them from the spool.
    for name in ("no-client-cert", "wrong-token"):
        evs = [json.loads(d) for _, d in spool_records(running[name][1])[1]]
        last = last_sensor_event(evs)
        u = (last or {}).get("uplink", {})
        # state is auth_failed between attempts, connected while one runs.
        check(u.get("auth_failures", 0) > 0 and u.get("state") in ("auth_failed", "connected", "handshake",
                                                                   "connecting"),
              f"{name}: the sensor event shows the auth failure: {u}")
        check("authentication failed" in (u.get("last_error") or ""), f"{name}: last_error says so: {u}")
    for name in ("tls11", "unknown-ca", "wrong-host", "pin"):
        evs = [json.loads(d) for _, d in spool_records(running[name][1])[1]]
        u = (last_sensor_event(evs) or {}).get("uplink", {})
        check(u.get("last_error") and u.get("retries", 0) > 0 and u.get("auth_failures") == 0,
              f"{name}: retries and last_error in the sensor event, not an auth failure: {u}")

    # Corrected config, same spool: everything arrives, no gap, no duplicate.
    for name, (proc, spool) in running.items():
        sid = "ref-" + name
        conf = sensor_config(lab, name + "-fixed", good.port, spool, sensor_id=sid, token_file=token_file,
                             pins=[good_pin] if name == "pin" else None)
        r = run_sensor(["-c", conf, "--no-summary", "--log-level", "debug", "-r", MODBUS_PCAP], timeout=120)
        check(r.returncode == 0, f"{name}: corrected run exit {r.returncode}: {r.stderr[-800:]}")
        check(TOKEN not in r.stderr, f"{name}: no token in the corrected run's debug stderr")
        check("ots-uplink-DEBUG" in r.stderr and "connected to cloud.test" in r.stderr,
              f"{name}: the corrected run logged at debug level: {r.stderr[-600:]}")
        s = good.sensor_stats(sid)
        pending = results[name][2]
        check_gapless(s, f"{name} corrected")
        check(s is not None and s["duplicates"] == 0, f"{name}: no duplicate")
        check(s is not None and s["highest_seq"] > (pending[-1] if pending else 0),
              f"{name}: the spooled events and the new ones arrived")
        check(spool_pending(spool) == [], f"{name}: spool drained")
        evs = good.events(sid)
        check(all(TOKEN not in json.dumps(e) and WRONG_TOKEN not in json.dumps(e) for e in evs),
              f"{name}: no token in any delivered event")
    check(good.stop() == 0, "collector exit 0")
    for c in (unknown_ca, wrong_host):
        c.stop()
    stop(tls11)
finally:
    lab.close()
print(f"refusals: {time.time() - t0:.1f} s", flush=True)
finish("uplink-refusals")
