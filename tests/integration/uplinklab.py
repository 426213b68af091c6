# SPDX-License-Identifier: Apache-2.0
"""Helpers for the uplink integration tests (test_uplink_*.py): a lab PKI,
free loopback ports, the lab collector, nginx, sensor configs, and a reader
for the spool directory. Every daemon is a direct child, stopped by pid."""
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from otstest import OTSENSORD, SRC, check

COLLECTOR = os.path.join(SRC, "tests", "collector", "collector")
MAKE_PKI = os.path.join(SRC, "tests", "collector", "make-pki")
MODBUS_PEER = os.path.join(SRC, "tests", "integration", "modbus_peer.py")
PY = "/usr/bin/python3"
SENSOR_ID = "sensor-001"

_taken = set()


def free_port():
    """A loopback TCP port below the ephemeral range (32768), free right now
    and not handed out before by this process."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        if port in _taken:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _taken.add(port)
        return port
    raise RuntimeError("no free loopback port below 32768")


def wait_port(port, timeout=5.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


def wait_for(pred, timeout, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Lab:
    """A temp dir with a PKI; removed (with anything still running stopped)
    by close()."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"ots-{name}-")
        self.pki = os.path.join(self.dir, "pki")
        r = subprocess.run(["sh", MAKE_PKI, self.pki], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"make-pki failed: {r.stderr}")
        self.procs = []

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def track(self, proc):
        self.procs.append(proc)
        return proc

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(proc, sig=signal.SIGTERM, timeout=20):
    """Signals a direct child by pid (sig None: already signalled) and reaps
    it; returns (rc, stderr)."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err or ""


class Collector:
    def __init__(self, lab, out, cert="server", port=None, extra=()):
        self.lab = lab
        self.out = out
        self.cert = cert
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc = None
        self.log = lab.path(f"collector-{self.port}.log")

    def start(self, resume=False, extra=()):
        pki = self.lab.pki
        args = [PY, COLLECTOR, "--listen", f"127.0.0.1:{self.port}",
                "--cert", os.path.join(pki, self.cert + ".crt"), "--key", os.path.join(pki, self.cert + ".key"),
                "--ca", os.path.join(pki, "ca.crt"), "--out", self.out] + self.extra + list(extra)
        if resume:
            args.append("--resume")
        logf = open(self.log, "a")
        self.proc = self.lab.track(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=logf))
        logf.close()
        if not wait_port(self.port, 10, self.proc):
            raise RuntimeError(f"collector did not listen on {self.port}: {open(self.log).read()[-2000:]}")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            rc, _ = stop(self.proc, sig)
            self.proc = None
            return rc
        return None

    def stats(self):
        with open(os.path.join(self.out, "stats.json")) as f:
            return json.load(f)

    def sensor_stats(self, sensor_id=SENSOR_ID):
        try:
            return self.stats()["sensors"].get(sensor_id)
        except (OSError, ValueError):
            return None

    def events(self, sensor_id=SENSOR_ID):
        path = os.path.join(self.out, sensor_id + ".ndjson")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]


def sensor_config(lab, name, port, spool, *, endpoint_host="cloud.test", ca="ca.crt", client=True,
                  heartbeat=0, pins=None, token_file=None, capture_port=None, modbus_port=None,
                  uplink_extra="", sensor_id=SENSOR_ID, level=None):
    """Writes a sensor config using the direct transport to 127.0.0.1:port."""
    pki = lab.pki
    up = [f'endpoint = "https://{endpoint_host}:{port}/ingest";',
          f'ca_file = "{os.path.join(pki, ca)}";' if ca else "",
          "backoff_min_ms = 100; backoff_max_ms = 1000; connect_timeout_ms = 3000; io_timeout_ms = 5000;"]
    if client:
        up.append(f'client_cert = "{os.path.join(pki, "client.crt")}"; '
                  f'client_key = "{os.path.join(pki, "client.key")}";')
    if pins is not None:
        up.append("pins = [ " + ", ".join(f'"{p}"' for p in pins) + " ];")
    if token_file:
        up.append(f'token_file = "{token_file}";')
    up.append(uplink_extra)
    text = f"""
sensor: {{ id = "{sensor_id}"; user = "nobody"; }};
output: {{ transport = "direct"; heartbeat_interval = {heartbeat}; }};
transports: {{ direct: {{ address = "127.0.0.1"; port = {port}; }}; }};
spool: {{ path = "{spool}"; }};
uplink: {{ {" ".join(x for x in up if x)} }};
"""
    if capture_port is not None:
        text += (f'capture: {{ interfaces = ( {{ name = "lo"; filter = "tcp port {capture_port}"; '
                 f'promiscuous = false; }} ); }};\n')
    if modbus_port is not None:
        text += f"dissectors: {{ modbus: {{ tcp_ports = [ {modbus_port} ]; }}; }};\n"
    if level:
        text += f'logging: {{ level = "{level}"; }};\n'
    path = lab.path(name + ".conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def start_live_sensor(lab, conf, args=(), errlog=None):
    """A live sensor (capture on lo) as a direct child; stderr to a file."""
    errlog = errlog or conf + ".stderr"
    f = open(errlog, "a")
    p = lab.track(subprocess.Popen([OTSENSORD, "-c", conf, "--no-summary"] + list(args),
                                   stdout=subprocess.DEVNULL, stderr=f))
    f.close()
    p.errlog = errlog
    return p


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run_modbus_peer(port):
    return subprocess.run([PY, MODBUS_PEER, str(port)], capture_output=True, text=True, timeout=60)


SPOOL_MAGIC = 0x4C5053F5
SPOOL_HDR = struct.Struct("<IIQqI")


def spool_records(spool):
    """(acked_seq, [(seq, line)...]) read straight from a spool directory
    (core/spool/spool.h format), so a test sees what is still queued even
    when the sensor could not report it."""
    acked = 0
    try:
        with open(os.path.join(spool, "cursor")) as f:
            acked = int(f.read().strip() or 0)
    except OSError:
        pass
    recs = []
    if not os.path.isdir(spool):
        return acked, recs
    for name in sorted(os.listdir(spool)):
        if not (name.startswith("seg-") and name.endswith(".spool")):
            continue
        with open(os.path.join(spool, name), "rb") as f:
            data = f.read()
        off = 0
        while off + SPOOL_HDR.size <= len(data):
            magic, length, seq, _ts, _crc = SPOOL_HDR.unpack_from(data, off)
            if magic != SPOOL_MAGIC or off + SPOOL_HDR.size + length > len(data):
                break
            recs.append((seq, data[off + SPOOL_HDR.size:off + SPOOL_HDR.size + length]))
            off += SPOOL_HDR.size + length
    return acked, recs


def spool_pending(spool):
    """Records above the acknowledged cursor."""
    acked, recs = spool_records(spool)
    return [(s, d) for s, d in recs if s > acked]


def canon(ev):
    """Canonical JSON of an event without seq (what must be identical between
    the local transport and what reached the collector)."""
    e = dict(ev)
    e.pop("seq", None)
    return json.dumps(e, sort_keys=True, separators=(",", ":"))


def check_gapless(stats, what, first=1, counters=True):
    """stats: the collector's per-sensor stats; no gap from `first` on.
    counters=False after a --resume restart (counters start at zero then)."""
    if not check(stats is not None, f"{what}: collector has stats for {SENSOR_ID}"):
        return False
    ok = check(stats["missing"] == 0 and stats["gaps"] == [], f"{what}: gaps {stats['gaps'][:10]}")
    ok &= check(stats["lowest_seq"] == first, f"{what}: lowest seq {stats['lowest_seq']} != {first}")
    ok &= check(not counters or stats["accepted"] == stats["highest_seq"] - first + 1,
                f"{what}: accepted {stats['accepted']} != highest {stats['highest_seq']} - {first} + 1")
    return ok


def poke(port):
    """One refused TCP connect to a captured port: a few packets that wake
    the live capture (see the pipeline note in test_uplink_outage.py)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass


def last_sensor_event(events):
    s = [e for e in events if e.get("type") == "sensor"]
    return s[-1] if s else None
