#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Interop with nginx as the TLS terminator (client certificate required)
in front of the lab collector (nginx -> collector is mutual TLS again, with
the lab client certificate). Delivery through nginx must work. nginx does
not fail the handshake when the client certificate is missing or bad: it
answers HTTP 400 ("No required SSL certificate was sent" / "The SSL
certificate error"). The uplink must report that as an authentication
failure, exit 75 on SIGTERM with the events still spooled, and deliver them
once the certificate is configured. Needs root (live capture) and nginx."""
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("uplink-nginx")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
if not os.access(NGINX, os.X_OK):
    check(False, "nginx is not installed (scripts/deps installs it)")
    finish("uplink-nginx")

CAPTURE = os.path.join(CORPUS, "dnp3_example.pcap")


def start_nginx(lab, port, backend):
    pki = lab.pki
    d = lab.path("nginx")
    os.makedirs(os.path.join(d, "tmp"))
    # As root the workers run as nobody: they must reach the temp dirs.
    for p in (lab.dir, d):
        os.chmod(p, 0o711)
    shutil.chown(os.path.join(d, "tmp"), "nobody")
    temps = "\n".join(f"    {k}_temp_path {d}/tmp/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
{temps}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki}/server.crt;
        ssl_certificate_key {pki}/server.key;
        ssl_client_certificate {pki}/ca.crt;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location / {{
            proxy_pass https://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {pki}/client.crt;
            proxy_ssl_certificate_key {pki}/client.key;
            proxy_ssl_trusted_certificate {pki}/ca.crt;
            proxy_ssl_verify on;
            proxy_ssl_name cloud.test;
            proxy_ssl_server_name on;
        }}
    }}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    p = lab.track(subprocess.Popen([NGINX, "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                                    os.path.join(d, "error.log")],
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "w")))
    p.dir = d
    if not wait_port(port, 5, p):
        raise RuntimeError(f"nginx did not start: {read_text(os.path.join(d, 'stderr'))}"
                           f"{read_text(os.path.join(d, 'error.log'))[-2000:]}")
    return p


t0 = time.time()
lab = Lab("nginx")
try:
    col = Collector(lab, lab.path("out")).start()
    ngx_port = free_port()
    ngx = start_nginx(lab, ngx_port, col.port)

    # 1. Delivery through nginx, compared with the local transport.
    spool = lab.path("spool-ok")
    conf = sensor_config(lab, "ok", ngx_port, spool)
    local = lab.path("local.ndjson")
    r = run_sensor(["-c", conf, "--no-summary", "-o", local, "-r", CAPTURE])
    check(r.returncode == 0, f"local run: {r.stderr[-500:]}")
    want = collections.Counter(canon(e) for e in parse_events(open(local).read()) if e["type"] != "sensor")
    t = time.time()
    r = run_sensor(["-c", conf, "--no-summary", "-r", CAPTURE], timeout=120)
    dt = time.time() - t
    check(r.returncode == 0, f"delivery through nginx: exit {r.returncode}: {r.stderr[-1000:]}")
    got = col.events()
    check(collections.Counter(canon(e) for e in got if e["type"] != "sensor") == want,
          f"through nginx == local: {len(got)} arrived, {sum(want.values())} local")
    st = col.sensor_stats()
    check_gapless(st, "through nginx")
    check(st is not None and st["duplicates"] == 0 and st["client_cn"] == "sensor-001",
          f"no duplicate, nginx's client cert seen: {st}")
    check(spool_pending(spool) == [], "spool drained")
    access = read_text(os.path.join(ngx.dir, "access.log"))
    check(access.count("POST /ingest") >= 1 and " 200 " in access, f"nginx relayed the POSTs: {access[-500:]}")

    # 2. No client certificate, and a certificate from an unknown issuer:
    # nginx answers 400; both are authentication failures.
    quiet = free_port()
    cases = {
        "no-cert": ({"client": False}, ("no required ssl certificate",)),
        "rogue-cert": ({"client": False,
                        "uplink_extra": f'client_cert = "{lab.pki}/rogue.crt"; client_key = "{lab.pki}/rogue.key";'},
                       ("no required ssl certificate", "ssl certificate error")),
    }
    running = {}
    for name, (kw, _) in cases.items():
        sp = lab.path("spool-" + name)
        c = sensor_config(lab, name, ngx_port, sp, heartbeat=1, capture_port=quiet, sensor_id="ngx-" + name, **kw)
        running[name] = (start_live_sensor(lab, c), sp)

    def reported(name):
        err = read_text(running[name][0].errlog).lower()
        # GnuTLS does not offer a certificate whose issuer is not among the
        # CAs nginx asks for, so the rogue case may look like "no certificate".
        return ("400" in err and any(w in err for w in cases[name][1]) and len(spool_pending(running[name][1])) >= 3)

    for name in cases:
        check(wait_for(lambda: reported(name), 15),
              f"{name}: nginx's 400 reported on stderr: {read_text(running[name][0].errlog)[-1000:]}")
    for name in cases:
        running[name][0].send_signal(signal.SIGTERM)
    for name, (proc, sp) in running.items():
        rc, _ = stop(proc, sig=None)
        err = read_text(proc.errlog)
        lines = [ln for ln in err.splitlines() if "uplink" in ln.lower()]
        print(f"--- {name}: exit {rc}; {lines[-1] if lines else '(no uplink line)'}", flush=True)
        check(rc == 75, f"{name}: exit {rc} (75 expected): {err[-800:]}")
        check("authentication failed" in err.lower(), f"{name}: reported as an authentication failure")
        pending = [s for s, _ in spool_pending(sp)]
        check(len(pending) >= 3 and pending == list(range(1, len(pending) + 1)), f"{name}: events still spooled")
        evs = [json.loads(d) for _, d in spool_records(sp)[1]]
        u = (last_sensor_event(evs) or {}).get("uplink", {})
        check(u.get("auth_failures", 0) > 0 and "authentication failed" in (u.get("last_error") or "").lower(),
              f"{name}: auth failure in the sensor event: {u}")
        check(u.get("state") != "connected" or u.get("auth_failures", 0) > 0, f"{name}: state {u}")
    check(col.sensor_stats("ngx-no-cert") is None and col.sensor_stats("ngx-rogue-cert") is None,
          "nothing reached the collector without a valid client certificate")

    # 3. Corrected config (the lab client certificate): all delivered.
    for name, (_, sp) in running.items():
        pending = [s for s, _ in spool_pending(sp)]
        c = sensor_config(lab, name + "-fixed", ngx_port, sp, sensor_id="ngx-" + name)
        r = run_sensor(["-c", c, "--no-summary", "-r", os.path.join(CORPUS, "modbus_example.pcap")], timeout=120)
        check(r.returncode == 0, f"{name}: corrected run exit {r.returncode}: {r.stderr[-800:]}")
        s = col.sensor_stats("ngx-" + name)
        check_gapless(s, f"{name} corrected")
        check(s is not None and s["duplicates"] == 0 and s["highest_seq"] > pending[-1],
              f"{name}: spooled and new events delivered once: {s}")
        check(spool_pending(sp) == [], f"{name}: spool drained")
    rc, _ = stop(ngx)
    check(rc == 0, f"nginx exit {rc}")
    check(col.stop() == 0, "collector exit 0")
    print(f"nginx: delivery of {len(got)} events through nginx took {dt:.1f} s", flush=True)
finally:
    lab.close()
print(f"nginx: {time.time() - t0:.1f} s", flush=True)
finish("uplink-nginx")
