#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Live capture on the loopback interface: otsensord watches `lo` while a
real pymodbus client and server talk on a loopback port mapped to the Modbus
dissector; the transactions must be reported exactly. Needs root (capture)."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("live")

PORT = 15020
with tempfile.TemporaryDirectory() as d:
    conf = os.path.join(d, "live.conf")
    out = os.path.join(d, "events.ndjson")
    with open(conf, "w") as f:
        f.write(f"""
sensor: {{ id = "live-test"; user = "nobody"; }};
capture: {{ interfaces = ( {{ name = "lo"; filter = "tcp port {PORT}"; promiscuous = false; }} ); }};
dissectors: {{ modbus: {{ tcp_ports = [ {PORT} ]; }}; }};
output: {{ transport = "local"; heartbeat_interval = 1; }};
transports: {{ local: {{ path = "{out}"; }}; }};
""")
    sensor = subprocess.Popen([OTSENSORD, "-c", conf, "--no-summary"], stderr=subprocess.PIPE, text=True)
    # ready once the first heartbeat is written: capture is open by then
    deadline = time.time() + 10
    while time.time() < deadline and not (os.path.exists(out) and os.path.getsize(out) > 0):
        time.sleep(0.05)
    check(os.path.exists(out) and os.path.getsize(out) > 0, "sensor wrote its first heartbeat")
    peer = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "modbus_peer.py"), str(PORT)],
                          capture_output=True, text=True, timeout=60)
    check(peer.returncode == 0, f"modbus peer failed: {peer.stderr[-800:]}")
    time.sleep(0.5)
    sensor.send_signal(signal.SIGTERM)
    try:
        _, err = sensor.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        sensor.kill()
        _, err = sensor.communicate()
    check(sensor.returncode == 0, f"sensor exit {sensor.returncode}: {err[-800:]}")
    events = parse_events(open(out).read())

tx = [e for e in events if e["type"] == "transaction" and e.get("proto") == "modbus"]
by_fc = {}
for e in tx:
    by_fc.setdefault(e["function"], []).append(e)
for fc in (3, 6, 1, 16, 4, 43):
    check(fc in by_fc, f"no transaction for function {fc}: {[e['function'] for e in tx]}")
for e in tx:
    check(e["dst_port"] == PORT and e["dst_ip"] == "127.0.0.1", f"oriented to the server: {e}")
    check(e["status"] in ("ok", "exception"), f"status {e['status']}")
    check(isinstance(e.get("latency_us"), int) and e["latency_us"] >= 0, f"latency: {e}")
if 3 in by_fc:
    ok = [e for e in by_fc[3] if e["status"] == "ok"]
    exc = [e for e in by_fc[3] if e["status"] == "exception"]
    check(len(ok) == 1 and ok[0]["modbus"].get("address") == 0 and ok[0]["modbus"].get("quantity") == 10,
          f"fc3 read of 10 at 0: {by_fc[3]}")
    check(len(exc) == 1 and exc[0]["modbus"].get("exception_code") == 2, f"fc3 exception 2: {exc}")
    check(ok and ok[0]["op_class"] == "read", "fc3 op_class read")
if 6 in by_fc:
    m = by_fc[6][0]["modbus"]
    check(m.get("address") == 3 and by_fc[6][0]["op_class"] == "write", f"fc6: {by_fc[6]}")
assets = [e for e in events if e["type"] == "asset"]
check(any(a.get("vendor") == "LabVendor" and a.get("product_code") == "LV-1" for a in assets),
      f"device identification asset: {assets}")
sensor_ev = [e for e in events if e["type"] == "sensor"]
check(sensor_ev and sensor_ev[-1]["capture"][0]["live"] is True, "sensor event for the live source")
finish("live")
