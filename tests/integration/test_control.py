#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The control socket and otsensorctl against a live sensor (direct
transport to a lab collector, capture on lo), with the socket in a temp
dir: status (tables and --json), stats, version, transport list/show,
reload (good, and broken: refused with file:line while the daemon keeps
running), access control (a uid outside the group is refused by the file
mode and, with the mode opened up, by the daemon's credential check, which
logs the uid; a member of the group is served), exit codes (69 no daemon,
77 denied, 64 usage, 1 refused), and secrets (a proxy password_file and the
uplink token_file) that never show. Needs root (live capture, setpriv)."""
import json
import os
import re
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

OTSENSORCTL = os.environ.get("OTSENSORCTL", os.path.join(os.path.dirname(OTSENSORD), "otsensorctl"))

if os.geteuid() != 0:
    check(False, "live capture and setpriv need root; run the suite as root as CI does")
    finish("control")

lab = Lab("control")
sensor = None
try:
    os.chmod(lab.dir, 0o755)
    os.chmod(lab.pki, 0o755)
    for n in os.listdir(lab.pki):
        os.chmod(os.path.join(lab.pki, n), 0o644)
    run_dir = lab.path("run")
    os.mkdir(run_dir)
    os.chown(run_dir, 65534, 65534)  # the daemon makes its socket after dropping to nobody
    sock = os.path.join(run_dir, "ctl.sock")
    group = subprocess.run(["getent", "group", "65534"], capture_output=True, text=True).stdout.split(":")[0]
    check(group != "", "gid 65534 has a name")

    token = "tok-" + secrets.token_hex(16)
    token_file = lab.path("uplink-token-SECRETNAME")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o644)
    proxy_pw = "pw-" + secrets.token_hex(16)
    pw_file = lab.path("proxy-password-SECRETNAME")
    with open(pw_file, "w") as f:
        f.write(proxy_pw + "\n")

    coll = Collector(lab, lab.path("out"), extra=["--token-file", token_file]).start()
    spool = lab.path("spool")
    pki = lab.pki
    good = f"""
sensor: {{ id = "{SENSOR_ID}"; user = "nobody"; }};
output: {{ transport = "direct"; heartbeat_interval = 1; }};
transports: {{
  direct: {{ address = "127.0.0.1"; port = {coll.port}; }};
  proxy: {{ host = "127.0.0.1"; port = 3128; user = "sensor"; password_file = "{pw_file}"; }};
}};
spool: {{ path = "{spool}"; }};
uplink: {{ endpoint = "https://cloud.test:{coll.port}/ingest"; ca_file = "{pki}/ca.crt";
  client_cert = "{pki}/client.crt"; client_key = "{pki}/client.key"; token_file = "{token_file}";
  backoff_min_ms = 100; backoff_max_ms = 1000; }};
capture: {{ interfaces = ( {{ name = "lo"; filter = "tcp port 1"; promiscuous = false; }} ); }};
control: {{ socket = "{sock}"; group = "{group}"; }};
"""
    conf = lab.path("sensor.conf")
    with open(conf, "w") as f:
        f.write(good)
    os.chmod(conf, 0o644)

    def ctl(*args, user=None):
        cmd = [OTSENSORCTL, "-s", sock] + list(args)
        if user is not None:
            uid, gid = user
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    # No daemon yet: 69 and a clear message.
    r = ctl("status")
    check(r.returncode == 69, f"no daemon: exit 69 ({r.returncode})")
    check(f"otsensord is not running (no socket at {sock})" in r.stderr, f"no daemon: message: {r.stderr}")

    sensor = start_live_sensor(lab, conf)
    check(wait_for(lambda: os.path.exists(sock), 10), "the control socket appears")
    st = os.stat(sock)
    check(st.st_mode & 0o777 == 0o660, f"socket mode 0660 ({oct(st.st_mode & 0o777)})")
    check(st.st_gid == 65534, f"socket group {group}")
    check(wait_for(lambda: (coll.sensor_stats() or {}).get("accepted", 0) >= 1, 10), "the uplink delivers")

    outputs = []

    r = ctl("status")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0, f"status: exit 0 ({r.returncode}: {r.stderr})")
    check("CAPTURE" in r.stdout and re.search(r"^lo\s+yes\s+\d+\s", r.stdout, re.M),
          f"status: capture table (source, live, shards): {r.stdout}")
    check("uplink: transport direct" in r.stdout, "status: the active transport")
    check("spool:" in r.stdout and "events:" in r.stdout, "status: spool and events lines")

    r = ctl("--json", "status")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0, "status --json: exit 0")
    s = json.loads(r.stdout)
    check(s["capture"][0]["source"] == "lo" and "packets" in s["capture"][0] and "kernel_dropped" in s["capture"][0],
          "status --json: capture source with packet and drop counters")
    check("flows_active" in s["capture"][0], "status --json: flows")
    check(isinstance(s.get("events_per_s"), (int, float)) and s["events"]["sensor"] >= 1, "status --json: events and rate")
    check(s["uplink"]["transport"] == "direct" and s["uplink"]["state"] in ("connected", "idle", "sending", "connecting"),
          f"status --json: uplink state {s['uplink']}")
    check("acked_seq" in s["uplink"], "status --json: acked seq")
    check("depth_events" in s["spool"], "status --json: spool depth")
    check("type" not in s and "reason" not in s, "status --json: no event envelope")

    r = ctl("stats", "--json")
    outputs.append(r.stdout + r.stderr)
    st_ = json.loads(r.stdout)
    check(r.returncode == 0 and "capture" in st_ and "events" in st_, "stats --json: the counters")
    check("state" not in st_.get("uplink", {}) and "transport" not in st_.get("uplink", {}), "stats: counters only")
    r = ctl("stats")
    check(r.returncode == 0 and re.search(r"^capture\[0\]\.packets\s+\d+", r.stdout, re.M), f"stats table: {r.stdout[:300]}")

    r = ctl("version")
    check(r.returncode == 0 and "SDK ABI" in r.stdout and re.search(r"transport\s+direct", r.stdout),
          f"version: {r.stdout}")
    r = ctl("--json", "version")
    v = json.loads(r.stdout)
    check(any(p["name"] == "modbus" and p["kind"] == "dissector" for p in v["plugins"]), "version --json: plugins")

    r = ctl("transport", "list")
    check(r.returncode == 0 and re.search(r"^\*\s+direct\s+yes", r.stdout, re.M), f"transport list: {r.stdout}")
    r = ctl("--json", "transport", "list")
    tl = json.loads(r.stdout)
    check(tl["active"] == "direct" and "proxy" in tl["configured"], f"transport list --json: {tl}")

    r = ctl("transport", "show")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0 and "transport direct (active: yes" in r.stdout and str(coll.port) in r.stdout,
          f"transport show: {r.stdout}")
    r = ctl("transport", "show", "proxy")
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0 and re.search(r"password_file\s+\(secret\)", r.stdout), f"transport show proxy: {r.stdout}")
    check("sensor" in r.stdout, "transport show proxy: the user is shown")
    r = ctl("--json", "transport", "show", "proxy")
    outputs.append(r.stdout + r.stderr)
    check(json.loads(r.stdout)["settings"]["password_file"] == "(secret)", "transport show --json: (secret)")
    r = ctl("transport", "show", "nosuch")
    check(r.returncode == 1 and "no transport plugin named 'nosuch'" in r.stderr, f"unknown transport: {r.stderr}")

    r = ctl("reload")
    check(r.returncode == 0 and "reloaded" in r.stdout, f"reload: {r.returncode} {r.stderr}")
    check(wait_for(lambda: "reloaded " + conf in read_text(sensor.errlog), 5), "reload logged")

    # A broken file: refused with file:line, the daemon keeps running unchanged.
    broken = [(good + "flows: { max_flows = 0; };\n", "flows.max_flows"),
              (good.replace("backoff_min_ms = 100;", "backoff_min_ms = 100; gzip = 7;"), "uplink.gzip"),
              (good.replace(f'group = "{group}";', f'group = "{group}"; bogus = 1;'), "control.bogus"),
              (good.replace("backoff_min_ms = 100;", 'backoff_min_ms = "fast";'), "uplink.backoff_min_ms"),
              (good.replace('transport = "direct";', 'transport = "drect";'), "output.transport"),
              (good + "dissectors: { modbuss: { enabled = false; }; };\n", "dissectors.modbuss"),
              (good.replace('  direct: {{ address = "127.0.0.1"; port = {coll.port}; }};\n'.format(coll=coll), ""),
               "transport 'direct' has no group in transports"),
              (good + "this is not libconfig\n", "")]
    for text, what in broken:
        extra = what or "syntax"
        with open(conf, "w") as f:
            f.write(text)
        r = ctl("reload")
        check(r.returncode == 1, f"broken reload ({extra.strip()}): exit 1 ({r.returncode})")
        check(re.search(re.escape(conf) + r":\d+", r.stderr) and what in r.stderr,
              f"broken reload: file:line in the reply: {r.stderr}")
        check(sensor.poll() is None, "still running after the refused reload")
    with open(conf, "w") as f:
        f.write(good)
    r = ctl("--json", "status")
    check(r.returncode == 0 and json.loads(r.stdout)["uplink"]["transport"] == "direct", "status after refused reloads")
    check("reload refused" in read_text(sensor.errlog), "the refusal is logged too")

    # Access control. Outside the group: the socket's mode keeps it out.
    r = ctl("status", user=(65533, 65533))
    check(r.returncode == 77, f"non-member: exit 77 ({r.returncode}: {r.stderr})")
    check(f"access denied: run as root or a member of group {group}" in r.stderr, f"denied message: {r.stderr}")
    # A member of the group is served.
    r = ctl("--json", "version", user=(65533, 65534))
    check(r.returncode == 0 and "plugins" in r.stdout, f"group member served: {r.returncode} {r.stderr}")
    # With the mode opened up, the daemon's credential check refuses and logs.
    os.chmod(sock, 0o666)
    r = ctl("status", user=(65533, 65533))
    check(r.returncode == 77 and "access denied" in r.stderr, f"credential check: exit 77 ({r.returncode}: {r.stderr})")
    check(wait_for(lambda: "refused uid 65533" in read_text(sensor.errlog), 5), "the refusal is logged with the uid")
    os.chmod(sock, 0o660)

    # Usage errors.
    check(ctl().returncode == 64, "no command: 64")
    check(ctl("frobnicate").returncode == 64, "unknown command: 64")
    check(ctl("transport", "show", "a", "b").returncode == 64, "too many arguments: 64")

    # Secrets never show: not the files' contents, not their paths.
    outputs.append(read_text(sensor.errlog))
    for out in outputs:
        for secret in (token, proxy_pw, "SECRETNAME"):
            check(secret not in out, f"a secret ({secret[:6]}...) shows up")

    rc, _ = stop(sensor)
    check(rc == 0, f"sensor exit 0 ({rc})")
    check(not os.path.exists(sock), "the socket is removed at exit")
    r = ctl("status")
    check(r.returncode == 69, f"after exit: 69 ({r.returncode})")
finally:
    if sensor is not None and sensor.poll() is None:
        stop(sensor)
    lab.close()
finish("control")
