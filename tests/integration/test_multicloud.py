#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""multicloud with real peers: a live sensor (capture on lo, a `sensor` event
every second) -> `multicloud` transport with two proxy paths, path1 from
127.0.0.2 through squid 1 and path2 from 127.0.0.3 through squid 2, each
squid admitting only its own path's source address -> mutual TLS -> the lab
collector.

SIGKILL squid 1: events flow again through path2 within 5 s. Restart squid 1:
the probes see it healthy, but a reconnect inside the hold-down stays on
path2 (forced with the collector's close_mid_response, ingest false: nothing
stored, so the retried batch is no duplicate); once the hold-down is over
the plugin itself asks the core for a new session (ABI 1.1
set_reconnect_func) and fails back to path1 with no outside help. Nothing
may be lost (collector missing == 0). Needs root (live capture, squid's cache_effective_user)."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

HOLD_DOWN_S = 6


def start_squid(lab, name, src, port=None):
    """A squid that only admits CONNECTs from @src (LAB-NOTES 'Network
    namespaces / source addresses'); same port and name when restarted."""
    d = lab.path(name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    port = port or free_port()
    with open(os.path.join(d, "squid.conf"), "w") as f:
        f.write(f"""http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
coredump_dir {d}
cache_effective_user proxy
visible_hostname {name}
shutdown_lifetime 0 seconds
pinger_enable off
dns_nameservers 127.0.0.1
udp_outgoing_address 127.0.0.1
cache deny all
acl path_src src {src}/32
acl CONNECT method CONNECT
http_access deny !path_src
http_access allow CONNECT
http_access deny all
""")
    subprocess.run(["chown", "-R", "proxy:proxy", d], check=True)
    svc = f"otsmc{os.getpid()}{name}"
    for shm in glob.glob(f"/dev/shm/{svc}-cf__*"):
        os.unlink(shm)
    log = open(os.path.join(d, "stdout.log"), "a")
    p = lab.track(subprocess.Popen(["squid", "-N", "-n", svc, "-f", os.path.join(d, "squid.conf")],
                                   stdout=log, stderr=log))
    log.close()
    if not wait_port(port, 10, p):
        raise RuntimeError(f"squid {name} did not listen: {read_text(os.path.join(d, 'cache.log'))[-1500:]}")
    p.svc, p.dir, p.port = svc, d, port
    return p


def kill_squid(p):
    stop(p, signal.SIGKILL)
    for shm in glob.glob(f"/dev/shm/{p.svc}-cf__*"):
        os.unlink(shm)


def tunnels(sq):
    """(client, bytes) of the CONNECTs squid logged (at tunnel end). The
    sessions carry the TLS handshake (kilobytes); probes only the 200 head."""
    out = []
    for line in read_text(os.path.join(sq.dir, "access.log")).splitlines():
        f = line.split()
        if len(f) >= 7 and f[5] == "CONNECT":
            out.append((f[2], int(f[4]) if f[4].isdigit() else 0))
    return out


def control(path, obj):
    """POST /_control on the collector's plain-HTTP unix socket."""
    body = json.dumps(obj).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b"POST /_control HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


t0 = time.time()
if os.geteuid() != 0:
    check(False, "test_multicloud needs root (live capture, squid's cache_effective_user)")
    finish("multicloud")
lab = Lab("multicloud")
try:
    os.chmod(lab.dir, 0o755)
    out = lab.path("out")
    spool = lab.path("spool")
    ctl = lab.path("collector.ctl")
    col = Collector(lab, out, extra=["--control-socket", ctl, "--quiet"]).start()
    sq1 = start_squid(lab, "squid1", "127.0.0.2")
    sq2 = start_squid(lab, "squid2", "127.0.0.3")
    cap_port = free_port()
    conf = sensor_config(lab, "mc", col.port, spool, endpoint_host="localhost", heartbeat=1,
                         capture_port=cap_port, uplink_extra="batch_max_delay_ms = 200;")
    group = (f"hold_down_s = {HOLD_DOWN_S}; probe_backoff_min_ms = 200; probe_backoff_max_ms = 1000; "
             "connect_timeout_ms = 1000; paths = ( "
             f'{{ name = "path1"; transport = "proxy"; host = "127.0.0.1"; port = {sq1.port}; '
             'bind_address = "127.0.0.2"; priority = 1; }, '
             f'{{ name = "path2"; transport = "proxy"; host = "127.0.0.1"; port = {sq2.port}; '
             'bind_address = "127.0.0.3"; priority = 2; } );')
    lines = []
    for line in open(conf).read().splitlines():
        if line.startswith("transports:"):
            line = f"transports: {{ multicloud: {{ {group} }}; }};"
        elif line.startswith("output:"):
            line = line.replace('transport = "direct"', 'transport = "multicloud"')
        lines.append(line)
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    sensor = start_live_sensor(lab, conf)

    def sensor_events(after_seq=0):
        return [e for e in col.events() if e.get("type") == "sensor" and e["seq"] > after_seq]

    def ts(e):
        return (e.get("uplink") or {}).get("transport_status") or {}

    def path(e, name):
        return next((p for p in ts(e).get("paths", []) if p.get("name") == name), {})

    def first_event(pred, after_seq, timeout):
        found = []

        def look():
            found[:] = [e for e in sensor_events(after_seq) if pred(e)]
            return bool(found)
        wait_for(look, timeout)
        return found[0] if found else None

    # 1. Both squids up: path1, the better one.
    e = first_event(lambda e: ts(e).get("active") == "path1", 0, 20)
    if not check(e is not None, f"events arrive through path1: {read_text(sensor.errlog)[-2000:]}"):
        raise SystemExit
    check(ts(e).get("policy") == "failover" and path(e, "path2").get("state") == "standby",
          f"status shows the policy and path2 standby: {ts(e)}")
    check(e["uplink"].get("transport") == "multicloud", f"uplink.transport: {e['uplink']}")

    # 2. SIGKILL squid 1 while events flow: failover within 5 s.
    high = col.sensor_stats()["highest_seq"]
    kill_squid(sq1)
    killed_at = time.time()
    e = first_event(lambda e: ts(e).get("active") == "path2", high, 15)
    failover_s = time.time() - killed_at
    check(e is not None and failover_s <= 5.0, f"events flow through path2 {failover_s:.1f} s after the kill")
    if e:
        p1 = path(e, "path1")
        check(p1.get("state") in ("failed", "probing") and "127.0.0.1:" in p1.get("last_error", ""),
              f"path1 failed, with its error: {p1}")
        check(ts(e).get("failovers") == 1, f"one failover counted: {ts(e)}")
    # Probes keep failing while squid 1 is down.
    time.sleep(2)
    e = sensor_events()[-1]
    check(path(e, "path1").get("consecutive_failures", 0) >= 2 and "next_probe" in path(e, "path1"),
          f"path1 probed with backoff while down: {path(e, 'path1')}")

    # 3. Squid 1 back: the probes see it; a reconnect inside the hold-down stays on path2.
    sq1 = start_squid(lab, "squid1", "127.0.0.2", port=sq1.port)
    back_at = time.time()
    high = sensor_events()[-1]["seq"]
    e = first_event(lambda e: path(e, "path1").get("state") == "standby", high, 5)
    check(e is not None and "hold_down_left_ms" in path(e, "path1"),
          f"path1 healthy again, in its hold-down: {e and path(e, 'path1')}")
    seen_at = time.time()
    connects = e["uplink"]["connects"] if e else 0
    check(control(ctl, {"mode": "close_mid_response", "how": "fin", "count": 1, "ingest": False})
          .split()[1] == "200", "collector told to cut one response")
    e = first_event(lambda e: e["uplink"].get("connects", 0) > connects, e["seq"] if e else high, 8)
    check(e is not None and ts(e).get("active") == "path2" and time.time() - seen_at < HOLD_DOWN_S,
          f"a reconnect within the hold-down stays on path2: {e and ts(e)}")
    check(e is not None and path(e, "path1").get("state") == "standby", f"path1 standby: {e and path(e, 'path1')}")

    # 4. After the hold-down the plugin fails back by itself (no forced reconnect).
    high = sensor_events()[-1]["seq"]
    e = first_event(lambda e: ts(e).get("active") == "path1", high, HOLD_DOWN_S + 8)
    check(e is not None and ts(e).get("failbacks") == 1,
          f"failed back to path1 on its own after the hold-down: {e and ts(e)}")
    check(time.time() - seen_at >= HOLD_DOWN_S - 1, "not before the hold-down")
    failback_s = time.time() - back_at

    # 5. Stop: nothing lost; the squids' logs show who carried the sessions.
    time.sleep(1.5)
    rc, _ = stop(sensor)
    check(rc == 0, f"sensor exit {rc}: {read_text(sensor.errlog)[-1500:]}")
    time.sleep(0.5)
    st = col.sensor_stats()
    check_gapless(st, "multicloud")
    check(st["duplicates"] == 0, f"no duplicates: {st['duplicates']}")
    last = last_sensor_event(col.events())
    check(last and last.get("reason") == "shutdown" and last["seq"] == st["highest_seq"],
          "the shutdown event is the last seq")
    sp = last.get("spool", {}) if last else {}
    check(sp.get("dropped_oldest") == 0 and sp.get("dropped_newest") == 0, f"nothing dropped: {sp}")
    t1, t2 = tunnels(sq1), tunnels(sq2)
    check(all(c == "127.0.0.2" for c, _ in t1) and all(c == "127.0.0.3" for c, _ in t2),
          f"each squid saw only its path's source address: {t1} {t2}")
    check(any(n > 1000 for _, n in t1), f"squid 1 (restarted) carried the session after the fail-back: {t1}")
    check(any(n <= 1000 for _, n in t1), f"squid 1 saw the probes' CONNECTs: {t1}")
    check(len([n for _, n in t2 if n > 1000]) >= 2, f"squid 2 carried the sessions in between: {t2}")
    err = read_text(sensor.errlog)
    check("failed over from path path1" in err and "failed back from path path2" in err,
          f"the daemon logged the failover and the fail-back: {err[-1500:]}")
    kill_squid(sq1)
    kill_squid(sq2)
    check(col.stop() == 0, "collector exit 0")
    print(f"multicloud: failover {failover_s:.1f} s after the kill; fail-back {failback_s:.1f} s after "
          f"squid 1 came back (hold-down {HOLD_DOWN_S} s)", flush=True)
finally:
    lab.close()
print(f"multicloud e2e: {time.time() - t0:.1f} s", flush=True)
finish("multicloud")
