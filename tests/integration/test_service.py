#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The daemon as systemd drives it (Type=notify): READY=1 once capturing,
WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1/READY=1 around a SIGHUP
reload (a broken file is refused and the daemon keeps running), STOPPING=1 on
SIGTERM and a clean exit. systemd is played by a unix datagram socket."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("service")

with tempfile.TemporaryDirectory() as d:
    # The daemon drops to `nobody` after opening the capture: it must still
    # be able to re-read its config (as /etc/otsensor is world-readable).
    os.chmod(d, 0o755)
    sock_path = os.path.join(d, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    os.chmod(sock_path, 0o777)  # like /run/systemd/notify: any service may send
    sock.settimeout(0.2)
    conf = os.path.join(d, "svc.conf")
    out = os.path.join(d, "events.ndjson")

    def write_conf(level):
        with open(conf, "w") as f:
            f.write(f"""sensor: {{ id = "svc-test"; user = "nobody"; }};
capture: {{ interfaces = ( {{ name = "lo"; filter = "tcp port 1"; promiscuous = false; }} ); }};
output: {{ transport = "local"; heartbeat_interval = 1; }};
transports: {{ local: {{ path = "{out}"; }}; }};
logging: {{ level = "{level}"; }};
""")

    write_conf("message")
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="400000")
    p = subprocess.Popen([OTSENSORD, "-c", conf, "--no-summary"], env=env, stderr=subprocess.PIPE, text=True)
    msgs = []

    def collect(seconds):
        end = time.time() + seconds
        while time.time() < end:
            try:
                msgs.append(sock.recv(4096).decode())
            except socket.timeout:
                pass

    collect(1.5)
    check("READY=1" in msgs, f"READY=1 sent: {msgs}")
    wd = sum(1 for m in msgs if "WATCHDOG=1" in m)
    check(wd >= 3, f"watchdog pings every ~200 ms: {wd} in 1.5 s")

    # A broken file on SIGHUP: refused, still running, READY again.
    with open(conf, "a") as f:
        f.write("flows: { max_flows = 0; };\n")
    msgs.clear()
    p.send_signal(signal.SIGHUP)
    collect(1.0)
    check("RELOADING=1" in msgs and "READY=1" in msgs, f"reload notifications: {msgs}")
    check(p.poll() is None, "still running after a broken reload")

    # A good file: accepted.
    write_conf("info")
    msgs.clear()
    p.send_signal(signal.SIGHUP)
    collect(1.0)
    check("RELOADING=1" in msgs and "READY=1" in msgs, f"second reload notifications: {msgs}")

    msgs.clear()
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    collect(0.3)
    check(any("STOPPING=1" in m for m in msgs), f"STOPPING=1 sent: {msgs}")
    check(p.returncode == 0, f"exit {p.returncode}: {err[-500:]}")
    check("reload refused" in err and "max_flows" in err and f"{conf}:" in err,
          f"the refused reload names file:line and key: {err[-800:]}")
    check("reloaded" in err, "the good reload is logged")
    events = parse_events(open(out).read())
    check(sum(1 for e in events if e["type"] == "sensor") >= 3, "heartbeats kept flowing across reloads")
    # after dropping root the output file is still written (opened before the drop)
    check(events and events[-1]["type"] == "sensor" and events[-1]["reason"] == "shutdown", "shutdown event last")
    sock.close()
finish("service")
