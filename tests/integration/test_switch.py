#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Live transport switching (make before break) with zero loss. A live
sensor (capture on lo, a `sensor` event every second, Modbus traffic in the
background) delivers to the lab collector while the transport is switched
every few seconds direct -> proxy (a real squid with Basic auth) -> direct,
by `otsensorctl transport set` and once by editing the file + SIGHUP. At the
end the collector has every seq exactly once after de-duplication, and no
delivery pause around a switch is longer than 2 s. A switch to a broken path
(proxy-chain through the squid with a wrong password; a dead proxy port)
fails with the hop's reason, exit 1, and delivery continues on the old
path. test-connection prints the steps of a good and a broken transport.
--persist survives a restart, --clear forgets it. Needs root (live capture)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403
from proxylab import start_squid, stop_squid, write  # noqa: E402

OTSENSORCTL = os.environ.get("OTSENSORCTL", os.path.join(os.path.dirname(OTSENSORD), "otsensorctl"))
PASSWORD = "sw1tch-s3cret-pw"
WRONG = "not-the-password"
MAX_PAUSE_S = 2.0

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("switch")


class ArrivalWatch(threading.Thread):
    """Polls the collector's output file; records when it grows."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.times = []
        self.running = True

    def run(self):
        size = 0
        while self.running:
            try:
                s = os.path.getsize(self.path)
            except OSError:
                s = 0
            if s > size:
                self.times.append(time.time())
                size = s
            time.sleep(0.02)

    def max_gap(self, start, end):
        ts = [t for t in self.times if start <= t <= end]
        ts = [start] + ts + [end] if ts else [start, end]
        return max(b - a for a, b in zip(ts, ts[1:]))


class Traffic(threading.Thread):
    """Modbus exchanges back to back, so events keep coming."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.running = True
        self.failures = 0

    def run(self):
        while self.running:
            r = run_modbus_peer(self.port)
            if r.returncode != 0:
                self.failures += 1
            poke(self.port)
            time.sleep(0.3)


t0 = time.time()
lab = Lab("switch")
try:
    os.chmod(lab.dir, 0o755)  # squid runs as proxy, the sensor as nobody
    # A switch reads the uplink's TLS files again, after the drop to nobody.
    for f in os.listdir(lab.pki):
        os.chmod(os.path.join(lab.pki, f), 0o644)
    os.chmod(lab.pki, 0o755)
    out = lab.path("out")
    spool = lab.path("spool")
    state = lab.path("state")
    os.makedirs(state)
    os.chmod(state, 0o777)
    sock = os.path.join(state, "control.sock")  # made after dropping to nobody
    mb = free_port()
    col = Collector(lab, out).start()
    pw = write(lab.path("proxy.pw"), PASSWORD + "\n")
    bad_pw = write(lab.path("bad.pw"), WRONG + "\n")
    for f in (pw, bad_pw):
        os.chmod(f, 0o644)  # the sensor reads them after dropping to nobody
    sq = start_squid(lab, "sq", "sensor", PASSWORD, [col.port])
    dead = free_port()

    base = sensor_config(lab, "switch", col.port, spool, endpoint_host="localhost", heartbeat=1,
                         capture_port=mb, modbus_port=mb, uplink_extra="batch_max_delay_ms = 200;")
    text = open(base).read()
    groups = (f'transports: {{\n'
              f'  direct: {{ address = "127.0.0.1"; port = {col.port}; }};\n'
              f'  proxy: {{ host = "127.0.0.1"; port = {sq.port}; user = "sensor"; '
              f'password_file = "{pw}"; }};\n'
              f'  proxy-chain: {{ hops = ( {{ host = "127.0.0.1"; port = {sq.port}; user = "sensor"; '
              f'password_file = "{bad_pw}"; }} ); }};\n'
              f'}};')
    lines = []
    for line in text.splitlines():
        if line.startswith("transports:"):
            line = groups
        elif line.startswith("sensor:"):
            line = line.replace("};", f'state_dir = "{state}"; }};')
        lines.append(line)
    lines.append(f'control: {{ socket = "{sock}"; }};')
    conf_text = "\n".join(lines) + "\n"
    conf = lab.path("switch.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    os.chmod(conf, 0o644)

    def ctl(*args, timeout=40):
        return subprocess.run([OTSENSORCTL, "-s", sock] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def active():
        r = ctl("status", "--json")
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["uplink"]["transport"]

    outputs = []
    sensor = start_live_sensor(lab, conf)
    if not check(wait_for(lambda: os.path.exists(sock), 10), "the control socket appears"):
        raise RuntimeError(f"sensor: {read_text(sensor.errlog)[-2000:]}")
    check(wait_for(lambda: (col.sensor_stats() or {}).get("accepted", 0) >= 2, 15),
          "heartbeats reach the collector")
    watch = ArrivalWatch(os.path.join(out, SENSOR_ID + ".ndjson"))
    watch.start()
    traffic = Traffic(mb)
    traffic.start()
    check(wait_for(lambda: any(e["type"] == "transaction" for e in col.events()), 15),
          "Modbus transactions reach the collector")

    # test-connection: a good transport (not active), then the broken one.
    r = ctl("test-connection", "proxy")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0, f"test-connection proxy: exit 0 ({r.returncode}): {r.stdout}{r.stderr}")
    check("tcp_connected" in r.stdout and "connect_ok" in r.stdout and "tls_handshake" in r.stdout
          and "OK in" in r.stdout, f"test-connection proxy: every step printed: {r.stdout}")
    r = ctl("test-connection", "proxy", "--json")
    res = json.loads(r.stdout) if r.returncode == 0 else {}
    check(res.get("ok") is True and len(res.get("steps", [])) >= 3
          and all({"hop", "name", "step", "elapsed_ms"} <= set(s) for s in res.get("steps", [])),
          f"test-connection --json: steps with hop, name, step, elapsed_ms: {r.stdout}")
    r = ctl("test-connection", "proxy-chain")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 1, f"test-connection of a wrong password: exit 1 ({r.returncode})")
    check(f"FAILED at hop 0 (127.0.0.1:{sq.port})" in r.stdout and "407" in r.stdout,
          f"test-connection names the hop and the 407: {r.stdout}")
    r = ctl("test-connection")
    check(r.returncode == 0 and "transport direct" in r.stdout,
          f"test-connection without a name tests the active transport: {r.stdout}{r.stderr}")
    check(active() == "direct", "test-connection left the active transport alone")

    # Switches by otsensorctl, every few seconds, while events flow.
    pauses = []
    switch_ms = []

    def switch(name, expect_from):
        before = col.sensor_stats()["accepted"]
        start = time.time()
        r = ctl("transport", "set", name)
        outputs.append(r.stdout + r.stderr)
        ok = check(r.returncode == 0, f"transport set {name}: exit 0 ({r.returncode}): {r.stdout}{r.stderr}")
        ok &= check(f"switched from {expect_from} to {name}" in r.stdout,
                    f"transport set {name}: says so: {r.stdout}")
        ok &= check(active() == name, f"status shows transport {name}")
        check(wait_for(lambda: col.sensor_stats()["accepted"] > before, 5),
              f"delivery goes on after the switch to {name}")
        switch_ms.append((time.time() - start) * 1000)
        time.sleep(2.5)
        pauses.append((name, watch.max_gap(start - 1.0, time.time())))
        return ok

    for name, prev in (("proxy", "direct"), ("direct", "proxy"), ("proxy", "direct"),
                       ("direct", "proxy")):
        switch(name, prev)

    # A broken path: the old one keeps delivering.
    for bad, why in (("proxy-chain", "407"),):
        before = col.sensor_stats()["accepted"]
        r = ctl("transport", "set", bad)
        outputs.append(r.stdout + r.stderr)
        check(r.returncode == 1, f"switch to a broken {bad}: exit 1 ({r.returncode})")
        check("cannot switch to transport" in r.stderr and f"hop 0 (127.0.0.1:{sq.port})" in r.stderr
              and why in r.stderr
              and "still delivering through direct" in r.stderr,
              f"switch to a broken {bad}: the hop's reason: {r.stderr}")
        check(active() == "direct", f"after the failed switch to {bad}, still direct")
        check(wait_for(lambda: col.sensor_stats()["accepted"] > before + 1, 5),
              f"delivery continues on the old path after the failed switch to {bad}")
    # A dead proxy port: edit the file (proxy on a dead port), reload, try it.
    with open(conf, "w") as f:
        f.write(conf_text.replace(f"port = {sq.port}; user = \"sensor\"; password_file = \"{pw}\"",
                                  f"port = {dead}; user = \"sensor\"; password_file = \"{pw}\""))
    r = ctl("reload")
    check(r.returncode == 0, f"reload with a dead proxy port configured: {r.stderr}")
    r = ctl("transport", "set", "proxy")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 1 and f"hop 0 (127.0.0.1:{dead})" in r.stderr and "Connection refused" in r.stderr
          and "still delivering through direct" in r.stderr,
          f"switch to a dead proxy port: exit 1 and the hop ({r.returncode}): {r.stderr}")
    r = ctl("test-connection", "proxy")
    check(r.returncode == 1 and f"FAILED at hop 0 (127.0.0.1:{dead})" in r.stdout,
          f"test-connection of a dead proxy port: {r.stdout}")
    check(active() == "direct", "after the dead-port switch, still direct")

    # By the file + SIGHUP: output.transport direct -> proxy.
    with open(conf, "w") as f:
        f.write(conf_text.replace('transport = "direct"', 'transport = "proxy"'))
    start = time.time()
    sensor.send_signal(signal.SIGHUP)
    check(wait_for(lambda: active() == "proxy", 10), "SIGHUP with output.transport = proxy switches")
    time.sleep(2.5)
    pauses.append(("proxy (SIGHUP)", watch.max_gap(start - 1.0, time.time())))
    switch("direct", "proxy")

    # --persist survives a restart; --clear forgets it.
    r = ctl("transport", "set", "proxy", "--persist")
    check(r.returncode == 0 and "persisted" in r.stdout, f"transport set --persist: {r.stdout}{r.stderr}")
    check(os.path.exists(os.path.join(state, "transport.override")), "the override file is written")
    traffic.running = False
    traffic.join(90)
    time.sleep(1.5)
    rc, err = stop(sensor)
    check(rc == 0, f"sensor exit {rc} after SIGTERM: {read_text(sensor.errlog)[-1500:]}")
    sensor = start_live_sensor(lab, conf)
    check(wait_for(lambda: os.path.exists(sock) and active() == "proxy", 10),
          "after a restart the persisted transport is active")
    r = ctl("transport", "set", "--clear")
    check(r.returncode == 0 and not os.path.exists(os.path.join(state, "transport.override")),
          f"transport set --clear removes the override: {r.stdout}{r.stderr}")
    time.sleep(1.5)
    rc, err = stop(sensor)
    check(rc == 0, f"sensor exit {rc} after the restart: {read_text(sensor.errlog)[-1500:]}")
    watch.running = False

    # Zero loss: every seq once after de-duplication, no gap.
    time.sleep(0.5)
    stats = col.sensor_stats()
    check_gapless(stats, "after the switches", counters=False)
    check(stats["missing"] == 0, f"missing == 0 ({stats['missing']})")
    seqs = [e["seq"] for e in col.events()]
    check(sorted(set(seqs)) == list(range(1, max(seqs) + 1)), "every seq from 1 to the highest arrived")
    check(len(seqs) == len(set(seqs)), f"the output holds each seq once ({len(seqs)} lines, "
          f"{len(set(seqs))} seqs)")
    check(traffic.failures == 0, f"modbus peer failures: {traffic.failures}")
    for name, gap in pauses:
        check(gap <= MAX_PAUSE_S, f"delivery pause around the switch to {name}: {gap:.2f} s")
    reasons = [(e.get("reason"), e.get("uplink", {}).get("transport")) for e in col.events()
               if e["type"] == "sensor"]
    check(("transport_switch", "proxy") in reasons and ("transport_switch", "direct") in reasons,
          "sensor events report each switch with the new transport")
    log = read_text(os.path.join(sq.dir, "access.log"))
    check(f"CONNECT localhost:{col.port}" in log, "squid carried the proxy sessions")
    for o in outputs:
        check(PASSWORD not in o and WRONG not in o, "no password in otsensorctl's output")
    errlog = read_text(sensor.errlog)
    check(PASSWORD not in errlog and WRONG not in errlog, "no password in the sensor's log")
    print(f"switch latency (command to reply, then first ack): "
          f"median {sorted(switch_ms)[len(switch_ms) // 2]:.0f} ms over {len(switch_ms)}; "
          f"pauses {[f'{n} {g:.2f}s' for n, g in pauses]}; {time.time() - t0:.0f} s")
    stop_squid(sq)
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
finish("switch")
