#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Live transport switching (make before break) with zero loss. A live
sensor (capture on lo, a `sensor` event every second, Modbus traffic in the
background) delivers to the lab collector while the transport is rotated
every few seconds direct -> proxy (a real squid with Basic auth) ->
proxy-chain (tinyproxy, then the squid, both with Basic auth) -> multicloud
(a path through the squid, a direct one) -> direct: once by `otsensorctl
transport set`, once by editing output.transport + SIGHUP, and once by
editing it + `otsensorctl reload`, whose reply now carries the switch's
outcome. At the end the collector has every seq exactly once after
de-duplication, and no delivery pause around a switch is longer than 2 s.

A switch to a broken path (the chain's second hop with a wrong password; a
dead proxy port) fails with the hop's reason, exit 1, and delivery continues
on the old path; a reload whose output.transport names a broken path is
refused with that reason and keeps the old configuration and transport. A
reload changing settings only a restart applies (capture snaplen, a flow
limit) names them in restart_required and keeps running. test-connection
prints the steps of a good and a broken transport. --persist survives a
restart, --clear forgets it. Needs root (live capture)."""
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
from proxylab import start_squid, start_tinyproxy, stop_squid, write  # noqa: E402

OTSENSORCTL = os.environ.get("OTSENSORCTL", os.path.join(os.path.dirname(OTSENSORD), "otsensorctl"))
PASSWORD = "sw1tch-s3cret-pw"
TP_PASSWORD = "tiny-s3cret-pw"
WRONG = "not-the-password"
MAX_PAUSE_S = 2.0
ROTATION = ("proxy", "proxy-chain", "multicloud", "direct")

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
    tp_pw = write(lab.path("tiny.pw"), TP_PASSWORD + "\n")
    bad_pw = write(lab.path("bad.pw"), WRONG + "\n")
    for f in (pw, tp_pw, bad_pw):
        os.chmod(f, 0o644)  # the sensor reads them after dropping to nobody
    sq = start_squid(lab, "sq", "sensor", PASSWORD, [col.port])
    # The chain: tinyproxy (may only CONNECT to the squid), then the squid.
    tp = start_tinyproxy(lab, "tp", "tp", TP_PASSWORD, sq.port)
    dead = free_port()

    base = sensor_config(lab, "switch", col.port, spool, endpoint_host="localhost", heartbeat=1,
                         capture_port=mb, modbus_port=mb, uplink_extra="batch_max_delay_ms = 200;")
    text = open(base).read()
    squid_hop = f'host = "127.0.0.1"; port = {sq.port}; user = "sensor"; password_file = "{pw}";'
    groups = (f'transports: {{\n'
              f'  direct: {{ address = "127.0.0.1"; port = {col.port}; }};\n'
              f'  proxy: {{ {squid_hop} }};\n'
              f'  proxy-chain: {{ hops = (\n'
              f'    {{ host = "127.0.0.1"; port = {tp.port}; user = "tp"; password_file = "{tp_pw}"; }},\n'
              f'    {{ {squid_hop} }} ); }};\n'
              f'  multicloud: {{ connect_timeout_ms = 1000; paths = (\n'
              f'    {{ name = "viaproxy"; transport = "proxy"; priority = 1; {squid_hop} }},\n'
              f'    {{ name = "straight"; transport = "direct"; priority = 2; address = "127.0.0.1"; '
              f'port = {col.port}; }} ); }};\n'
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

    def write_conf(transport="direct", broken_chain=False, dead_proxy=False, restart_only=False,
                   direct_timeout=False):
        """The config with output.transport = @transport; broken_chain: the
        chain's squid hop with a wrong password; dead_proxy: the proxy
        transport on a port nobody listens on; restart_only: a snaplen, a
        flow limit and output.transport to a local file changed (and live
        settings beside them); direct_timeout: a setting of the direct
        transport changed."""
        t = conf_text.replace('output: { transport = "direct"', f'output: {{ transport = "{transport}"')
        if broken_chain:
            chain_hop = f'    {{ {squid_hop} }} ); }};'
            t = t.replace(chain_hop, chain_hop.replace(pw, bad_pw))
        if dead_proxy:
            t = t.replace(f'  proxy: {{ {squid_hop} }};',
                          f'  proxy: {{ {squid_hop.replace(str(sq.port), str(dead))} }};')
        if direct_timeout:
            t = t.replace(f'direct: {{ address = "127.0.0.1"; port = {col.port}; }}',
                          f'direct: {{ address = "127.0.0.1"; port = {col.port}; connect_timeout_ms = 2500; }}')
        if restart_only:
            t = t.replace("promiscuous = false;", "promiscuous = false; snaplen = 1500;")
            t = t.replace('user = "nobody";', 'user = "nobody"; site = "lab 2";')
            t = t.replace("batch_max_delay_ms = 200;", "batch_max_delay_ms = 250;")
            t += "flows: { max_flows = 50000; };\n"
            t = t.replace('output: { transport = "direct"', 'output: { transport = "local"')
            t = t.replace("transports: {\n", f'transports: {{\n  local: {{ path = "{lab.path("local.ndjson")}"; }};\n')
        with open(conf, "w") as f:
            f.write(t)
        os.chmod(conf, 0o644)

    write_conf()

    def ctl(*args, timeout=40):
        return subprocess.run([OTSENSORCTL, "-s", sock] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def active():
        r = ctl("status", "--json")
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["uplink"]["transport"]

    def delivering(what, more=0):
        before = col.sensor_stats()["accepted"]
        check(wait_for(lambda: col.sensor_stats()["accepted"] > before + more, 5),
              f"delivery goes on {what}")

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

    # test-connection: good transports (not active), then the active one.
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
    check(r.returncode == 0 and f"127.0.0.1:{tp.port}" in r.stdout and f"127.0.0.1:{sq.port}" in r.stdout
          and "OK in" in r.stdout, f"test-connection proxy-chain: both hops: {r.stdout}{r.stderr}")
    r = ctl("test-connection")
    check(r.returncode == 0 and "transport direct" in r.stdout,
          f"test-connection without a name tests the active transport: {r.stdout}{r.stderr}")
    check(active() == "direct", "test-connection left the active transport alone")

    pauses = []
    switch_ms = []

    def settle(label, start):
        """Events keep flowing; the longest pause around the switch."""
        delivering(f"after the switch to {label}")
        switch_ms.append((time.time() - start) * 1000)
        time.sleep(2.5)
        pauses.append((label, watch.max_gap(start - 1.0, time.time())))

    # 1. The rotation by otsensorctl transport set.
    def switch(name, expect_from):
        start = time.time()
        r = ctl("transport", "set", name)
        outputs.append(r.stdout + r.stderr)
        ok = check(r.returncode == 0, f"transport set {name}: exit 0 ({r.returncode}): {r.stdout}{r.stderr}")
        ok &= check(f"switched from {expect_from} to {name}" in r.stdout,
                    f"transport set {name}: says so: {r.stdout}")
        ok &= check(active() == name, f"status shows transport {name}")
        settle(name, start)
        return ok

    prev = "direct"
    for name in ROTATION:
        switch(name, prev)
        prev = name

    # 2. A reload whose output.transport names a broken path: refused with the
    # hop's reason; the old configuration (a good chain) and transport stay.
    write_conf("proxy-chain", broken_chain=True)
    before = col.sensor_stats()["accepted"]
    r = ctl("reload")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 1 and "reload refused" in r.stderr
          and "cannot switch to transport proxy-chain" in r.stderr
          and f"hop 1 (127.0.0.1:{sq.port})" in r.stderr and "407" in r.stderr
          and "still delivering through direct" in r.stderr,
          f"reload to a broken chain: exit 1 and the hop's reason ({r.returncode}): {r.stdout}{r.stderr}")
    check(active() == "direct", "after the refused reload, still direct")
    check(wait_for(lambda: col.sensor_stats()["accepted"] > before + 1, 5),
          "delivery continues on the old path after the refused reload")
    r = ctl("test-connection", "proxy-chain")
    check(r.returncode == 0, f"the previous configuration (a good chain) is still in force: {r.stdout}")

    # 3. Broken paths configured, not active: the reload applies them at once
    # (nothing to switch); switching to them fails with the hop's reason.
    write_conf("direct", broken_chain=True, dead_proxy=True)
    r = ctl("reload")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0 and r.stdout.strip() == "configuration reloaded",
          f"reload with broken paths configured (none active): {r.stdout}{r.stderr}")
    for bad, hop, why in (("proxy-chain", f"hop 1 (127.0.0.1:{sq.port})", "407"),
                          ("proxy", f"hop 0 (127.0.0.1:{dead})", "Connection refused")):
        before = col.sensor_stats()["accepted"]
        r = ctl("transport", "set", bad)
        outputs.append(r.stdout + r.stderr)
        check(r.returncode == 1, f"switch to a broken {bad}: exit 1 ({r.returncode})")
        check("cannot switch to transport" in r.stderr and hop in r.stderr and why in r.stderr
              and "still delivering through direct" in r.stderr,
              f"switch to a broken {bad}: the hop's reason: {r.stderr}")
        check(active() == "direct", f"after the failed switch to {bad}, still direct")
        check(wait_for(lambda: col.sensor_stats()["accepted"] > before + 1, 5),
              f"delivery continues on the old path after the failed switch to {bad}")
    r = ctl("test-connection", "proxy")
    check(r.returncode == 1 and f"FAILED at hop 0 (127.0.0.1:{dead})" in r.stdout,
          f"test-connection of a dead proxy port: {r.stdout}")
    r = ctl("test-connection", "proxy-chain")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 1 and f"FAILED at hop 1 (127.0.0.1:{sq.port})" in r.stdout and "407" in r.stdout,
          f"test-connection names the chain's hop and the 407: {r.stdout}")

    # 4. The rotation by editing output.transport + SIGHUP (the outcome is logged).
    prev = "direct"
    for name in ROTATION:
        write_conf(name)
        said = f"transport switched from {prev} to {name}"
        seen = read_text(sensor.errlog).count(said)
        start = time.time()
        sensor.send_signal(signal.SIGHUP)
        check(wait_for(lambda: active() == name, 10), f"SIGHUP with output.transport = {name} switches")
        check(wait_for(lambda: read_text(sensor.errlog).count(said) > seen, 5),
              f"SIGHUP: the switch to {name} is logged")
        settle(f"{name} (SIGHUP)", start)
        prev = name

    # 5. The rotation by editing it + otsensorctl reload: the reply waits for
    # the switch and carries its outcome.
    prev = "direct"
    for i, name in enumerate(ROTATION):
        write_conf(name)
        start = time.time()
        if i % 2 == 0:
            r = ctl("reload")
            outputs.append(r.stdout + r.stderr)
            check(r.returncode == 0 and f"configuration reloaded; transport switched from {prev} to {name} in"
                  in r.stdout, f"reload to {name}: the switch in the reply: {r.returncode} {r.stdout}{r.stderr}")
        else:
            r = ctl("reload", "--json")
            outputs.append(r.stdout + r.stderr)
            res = json.loads(r.stdout) if r.returncode == 0 else {}
            sw = res.get("switch", {})
            check(res.get("reloaded") is True and res.get("restart_required") == []
                  and sw.get("previous") == prev and sw.get("transport") == name
                  and sw.get("ok") is True and sw.get("proven_ms", 0) > 0 and sw.get("state")
                  and len(sw.get("steps", [])) >= 2,
                  f"reload --json to {name}: the switch's outcome: {r.returncode} {r.stdout}{r.stderr}")
        check(active() == name, f"after the reply, status shows transport {name}")
        settle(f"{name} (reload)", start)
        prev = name

    # The active transport's own settings changed: a new instance of it,
    # proven first (make before break), like a switch.
    write_conf("direct", direct_timeout=True)
    start = time.time()
    r = ctl("reload")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0 and "configuration reloaded; transport direct reopened with its new settings in"
          in r.stdout, f"reload of the active transport's settings: reopened: {r.stdout}{r.stderr}")
    check(active() == "direct", "still direct after the reopen")
    settle("direct (reopened)", start)

    # 6. Settings only a restart applies (a snaplen, a flow limit, from the
    # cloud to a local file): named, the running values stay; the live ones
    # beside them (site, batch delay) are applied and not named.
    write_conf("direct", restart_only=True, direct_timeout=True)
    restart_keys = ["capture.interfaces", "flows.max_flows", "output.transport"]
    r = ctl("reload", "--json")
    outputs.append(r.stdout + r.stderr)
    res = json.loads(r.stdout) if r.returncode == 0 else {}
    check(res.get("restart_required") == restart_keys and "switch" not in res,
          f"reload of restart-only settings: named in restart_required: {r.stdout}{r.stderr}")
    r = ctl("reload")
    check(r.returncode == 0 and "needs a restart to take effect" in r.stdout
          and ", ".join(restart_keys) in r.stdout,
          f"otsensorctl reload prints what needs a restart: {r.stdout}{r.stderr}")
    check(wait_for(lambda: ", ".join(restart_keys) + " changed but only a restart applies them"
                   in read_text(sensor.errlog), 5), "the daemon logs what needs a restart")
    check(sensor.poll() is None and active() == "direct", "still running, still direct")
    delivering("after the restart-only reload", 1)
    check(wait_for(lambda: any(e.get("site") == "lab 2" for e in col.events() if e["type"] == "sensor"), 5),
          "sensor.site applies live")
    write_conf("direct")
    r = ctl("reload", "--json")
    res = json.loads(r.stdout) if r.returncode == 0 else {}
    check(res.get("restart_required") == [], f"the file back as started: nothing to restart: {r.stdout}")

    # 7. --persist survives a restart; --clear forgets it.
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
    events = col.events()
    seqs = [e["seq"] for e in events]
    check(sorted(set(seqs)) == list(range(1, max(seqs) + 1)), "every seq from 1 to the highest arrived")
    check(len(seqs) == len(set(seqs)), f"the output holds each seq once ({len(seqs)} lines, "
          f"{len(set(seqs))} seqs)")
    check(traffic.failures == 0, f"modbus peer failures: {traffic.failures}")
    for name, gap in pauses:
        check(gap <= MAX_PAUSE_S, f"delivery pause around the switch to {name}: {gap:.2f} s")
    check(len(pauses) == 3 * len(ROTATION) + 1, f"every switch measured: {len(pauses)}")
    sensors = [e for e in events if e["type"] == "sensor"]
    reasons = {(e.get("reason"), e.get("uplink", {}).get("transport")) for e in sensors}
    for name in ROTATION:
        check(("transport_switch", name) in reasons, f"a sensor event reports the switch to {name}")
    mc = [e["uplink"].get("transport_status", {}) for e in sensors
          if e.get("uplink", {}).get("transport") == "multicloud"]
    check(any(s.get("active") == "viaproxy" for s in mc), f"multicloud delivered on its best path: {mc[-1:]}")
    log = read_text(os.path.join(sq.dir, "access.log"))
    check(f"CONNECT localhost:{col.port}" in log, "squid carried the proxy sessions")
    tlog = read_text(os.path.join(tp.dir, "tinyproxy.log"))
    check(f"CONNECT 127.0.0.1:{sq.port}" in tlog, f"tinyproxy carried the chain's sessions: {tlog[-500:]}")
    for o in outputs:
        check(PASSWORD not in o and TP_PASSWORD not in o and WRONG not in o,
              "no password in otsensorctl's output")
    errlog = read_text(sensor.errlog)  # both runs: the file is appended to
    check(PASSWORD not in errlog and TP_PASSWORD not in errlog and WRONG not in errlog,
          "no password in the sensor's log")
    print(f"switch latency (command to reply, then first ack): "
          f"median {sorted(switch_ms)[len(switch_ms) // 2]:.0f} ms over {len(switch_ms)}; "
          f"pauses {[f'{n} {g:.2f}s' for n, g in pauses]}; {time.time() - t0:.0f} s")
    stop_squid(sq)
    stop(tp, signal.SIGTERM)
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
finish("switch")
