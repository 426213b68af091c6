#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Dissector enablement and ports change live on reload (issue 6). A live
sensor on `lo` with two flow shards (capture.workers = 2) and the Modbus
dissector on port A. Real Modbus traffic (pymodbus) on A is dissected, on B
it is not. After moving Modbus to port B in the file and `otsensorctl
reload`, new connections on B are dissected and on A are not, without a
restart. A Modbus connection that stays open across a reload that disables
the dissector stops producing transactions (its open state ends at once),
while the sensor keeps running; a reload that names an unknown dissector is
refused with file:line and changes nothing. Needs root (live capture)."""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import free_port, stop, wait_for  # noqa: E402

OTSENSORCTL = os.environ.get("OTSENSORCTL", os.path.join(os.path.dirname(OTSENSORD), "otsensorctl"))
PEER = os.path.join(os.path.dirname(__file__), "modbus_peer.py")

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("reload_dissectors")


class PollingPair(threading.Thread):
    """A minimal Modbus/TCP server and a client that keeps one connection
    open and reads a holding register every 50 ms until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.running = True
        self.sent = 0
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(1)

    def serve(self, conn):
        while True:
            req = conn.recv(12)
            if len(req) < 12:
                return
            tid, _, _, unit, fc = struct.unpack(">HHHBB", req[:8])
            conn.sendall(struct.pack(">HHHBBBH", tid, 0, 5, unit, fc, 2, 7))

    def run(self):
        threading.Thread(target=lambda: self.serve(self.srv.accept()[0]), daemon=True).start()
        c = socket.create_connection(("127.0.0.1", self.port))
        tid = 0
        while self.running:
            tid = (tid + 1) & 0xFFFF
            c.sendall(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 0, 1))
            c.recv(64)
            self.sent += 1
            time.sleep(0.05)
        c.close()
        self.srv.close()


def modbus_on(port):
    r = subprocess.run(["/usr/bin/python3", PEER, str(port)], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"modbus peer on {port}: {r.stderr[-600:]}")


with tempfile.TemporaryDirectory() as d:
    os.chmod(d, 0o755)  # the sensor runs as nobody once capture is open,
    os.chown(d, 65534, 65534)  # and makes its control socket then (as under /run/otsensor)
    a, b, c = free_port(), free_port(), free_port()
    conf = os.path.join(d, "reload.conf")
    out = os.path.join(d, "events.ndjson")
    sock = os.path.join(d, "control.sock")

    def write_conf(modbus):
        with open(conf, "w") as f:
            f.write(f"""
sensor: {{ id = "reload-test"; user = "nobody"; }};
capture: {{ workers = 2;
  interfaces = ( {{ name = "lo"; filter = "tcp port {a} or tcp port {b} or tcp port {c}"; promiscuous = false; }} ); }};
dissectors: {{ {modbus} }};
output: {{ transport = "local"; heartbeat_interval = 1; }};
transports: {{ local: {{ path = "{out}"; }}; }};
control: {{ socket = "{sock}"; }};
""")
        os.chmod(conf, 0o644)

    def ctl(*args):
        return subprocess.run([OTSENSORCTL, "-s", sock] + list(args), capture_output=True, text=True, timeout=30)

    def events():
        with open(out) as f:
            return parse_events(f.read())

    def modbus_tx(port):
        return [e for e in events() if e["type"] == "transaction" and e.get("proto") == "modbus"
                and e["dst_port"] == port]

    def settle():
        # events leave the shards within 100 ms; the file is written at once
        time.sleep(0.8)

    write_conf(f"modbus: {{ heuristic = false; tcp_ports = [ {a}, {c} ]; }};")
    sensor = subprocess.Popen([OTSENSORD, "-c", conf, "--no-summary"], stderr=subprocess.PIPE, text=True)
    try:
        check(wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 0 and os.path.exists(sock), 10),
              "sensor wrote its first heartbeat and opened its control socket")
        modbus_on(a)
        modbus_on(b)
        settle()
        check(len(modbus_tx(a)) >= 6, f"Modbus on port {a} is dissected ({len(modbus_tx(a))})")
        check(modbus_tx(b) == [], f"Modbus on port {b} is not (not a Modbus port yet): {modbus_tx(b)[:1]}")

        # A connection that stays open across the reloads.
        poller = PollingPair(c)
        poller.start()
        check(wait_for(lambda: len(modbus_tx(c)) >= 5, 10), f"the polling connection on {c} is dissected")

        # Move Modbus from A to B (C stays): live, by reload.
        write_conf(f"modbus: {{ heuristic = false; tcp_ports = [ {b}, {c} ]; }};")
        r = ctl("reload")
        check(r.returncode == 0, f"reload with Modbus on port {b}: exit 0 ({r.returncode}): {r.stdout}{r.stderr}")
        before_a = len(modbus_tx(a))
        modbus_on(b)
        modbus_on(a)
        settle()
        check(len(modbus_tx(b)) >= 6, f"after the reload Modbus on port {b} is dissected ({len(modbus_tx(b))})")
        check(len(modbus_tx(a)) == before_a,
              f"after the reload Modbus on port {a} is not ({len(modbus_tx(a))} vs {before_a})")
        n = len(modbus_tx(c))
        time.sleep(0.5)
        check(len(modbus_tx(c)) > n, "the open connection on a port kept across the reload is still dissected")

        # An unknown dissector name: refused with file:line, nothing changes.
        write_conf(f"modbus: {{ heuristic = false; tcp_ports = [ {b}, {c} ]; }}; modbuss: {{ enabled = true; }};")
        r = ctl("reload")
        check(r.returncode == 1 and "reload.conf:" in r.stderr and "modbuss" in r.stderr
              and "did you mean 'modbus'" in r.stderr,
              f"a reload naming an unknown dissector is refused with file:line: {r.returncode} {r.stderr}")
        n = len(modbus_tx(c))
        time.sleep(0.5)
        check(len(modbus_tx(c)) > n, "after the refused reload Modbus is still dissected")

        # Disable Modbus: the open connection stops producing transactions.
        write_conf(f"modbus: {{ enabled = false; heuristic = false; tcp_ports = [ {b}, {c} ]; }};")
        r = ctl("reload")
        check(r.returncode == 0, f"reload disabling Modbus: exit 0 ({r.returncode}): {r.stderr}")
        settle()
        n = len(modbus_tx(c))
        sent = poller.sent
        time.sleep(1.5)
        check(poller.sent > sent + 10, "the polling client kept talking")
        check(len(modbus_tx(c)) == n,
              f"after disabling Modbus the open connection gives no transactions ({len(modbus_tx(c))} vs {n})")
        poller.running = False
        poller.join(5)
        check(sensor.poll() is None, "the sensor is still running after the reloads")
        st = json.loads(ctl("stats", "--json").stdout or "{}")
        check(st != {}, "stats answers after the reloads")
    finally:
        rc, err = stop(sensor)
    check(rc == 0, f"sensor exit {rc}: {err[-1500:]}")
    ev = events()
    seqs = [e["seq"] for e in ev]
    check(seqs == list(range(1, len(seqs) + 1)), "seq 1..N without a gap across the reloads")
finish("reload_dissectors")
