#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""--check-config on the documented default and on broken files: exit 78,
file:line and key named; a dissector section naming no plugin; -o PATH."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403

conf = os.path.join(SRC, "etc", "otsensor.conf")
r = run_sensor(["--check-config", "-c", conf])
check(r.returncode == 0 and "configuration OK" in r.stdout, f"default config: {r.returncode} {r.stdout} {r.stderr}")

cases = [
    # (text, line, words that must appear)
    ("flows: {\n  max_flows = 0;\n};\n", 2, ["flows.max_flows", "range"]),
    ("flows: {\n  max_flow = 10;\n};\n", 2, ["max_flow", "did you mean", "max_flows"]),
    ("sensor: {\n  id = 5;\n};\n", 2, ["sensor.id"]),
    ("output: {\n\n  transport = ;\n};\n", 3, ["syntax"]),
    ("dissectors: {\n  modbsu: { enabled = true; };\n};\n", 2, ["modbsu", "did you mean", "modbus"]),
    ("dissectors: {\n  modbus: { tcp_ports = [ 502, 70000 ]; };\n};\n", 2, ["tcp_ports", "70000"]),
    ("logging: {\n  level = \"loud\";\n};\n", 2, ["logging.level", "loud"]),
]
for text, line, words in cases:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(text)
    r = run_sensor(["--check-config", "-c", f.name])
    msg = r.stderr
    check(r.returncode == 78, f"{text!r}: exit {r.returncode}, expected 78 ({msg})")
    check(f"{f.name}:{line}:" in msg, f"{text!r}: no {f.name}:{line}: in {msg!r}")
    for w in words:
        check(w in msg, f"{text!r}: {w!r} not in {msg!r}")
    # the daemon refuses to start with it too, not only --check-config
    r2 = run_sensor(["-c", f.name, "-r", os.path.join(CORPUS, "modbus_example.pcap")])
    check(r2.returncode == 78, f"{text!r}: daemon exit {r2.returncode}")
    os.unlink(f.name)

# -o writes the events to a file, stdout stays empty.
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "events.ndjson")
    r = run_sensor(["--no-summary", "-o", out, "-r", os.path.join(CORPUS, "modbus_example.pcap")])
    check(r.returncode == 0 and r.stdout == "", f"-o: {r.returncode} {r.stderr}")
    events = parse_events(open(out).read())
    check(any(e["type"] == "transaction" for e in events), "-o file has transactions")

# A disabled dissector produces no transactions; a port override moves it.
with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
    f.write("dissectors: { modbus: { enabled = false; }; };\n")
r = run_sensor(["--no-summary", "-c", f.name, "-r", os.path.join(CORPUS, "modbus_example.pcap")])
events = parse_events(r.stdout)
check(r.returncode == 0 and not any(e["type"] == "transaction" for e in events), "disabled modbus")
os.unlink(f.name)
with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
    f.write("dissectors: { modbus: { tcp_ports = [ 5020 ]; heuristic = false; }; };\n")
r = run_sensor(["--no-summary", "-c", f.name, "-r", os.path.join(CORPUS, "modbus_example.pcap")])
events = parse_events(r.stdout)
check(r.returncode == 0 and not any(e["type"] == "transaction" for e in events),
      "modbus moved off 502 without heuristic sees nothing on 502")
os.unlink(f.name)
# ... and with its heuristic probe on, the Modbus traffic on 502 is still found.
with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
    f.write("dissectors: { modbus: { tcp_ports = [ 5020 ]; heuristic = true; }; };\n")
r = run_sensor(["--no-summary", "-c", f.name, "-r", os.path.join(CORPUS, "modbus_example.pcap")])
events = parse_events(r.stdout)
base = parse_events(run_sensor(["--no-summary", "-r", os.path.join(CORPUS, "modbus_example.pcap")]).stdout)
n_heur = sum(1 for e in events if e["type"] == "transaction")
n_port = sum(1 for e in base if e["type"] == "transaction")
check(r.returncode == 0 and n_heur > 0 and n_heur == n_port,
      f"heuristic probe finds modbus off its port: {n_heur} vs {n_port} by port")
os.unlink(f.name)
finish("config-cli")
