#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Certificate files are re-read on reload: a live sensor trusts the wrong CA
(its trust file holds another CA), so nothing is delivered and events pile up
in the spool; the trust file is then replaced in place (same path, same
config) and SIGHUP makes the uplink reconnect with it: everything spooled
arrives, gap-free. A reload with a broken file in between is refused and
changes nothing. Needs root (live capture)."""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403

if os.geteuid() != 0:
    check(False, "live capture needs root (CAP_NET_RAW); run the suite as root as CI does")
    finish("uplink-reload")

lab = Lab("reload")
try:
    # Readable after the drop to sensor.user (the daemon re-reads it as that user).
    os.chmod(lab.dir, 0o755)
    os.chmod(lab.pki, 0o755)
    for n in os.listdir(lab.pki):
        os.chmod(os.path.join(lab.pki, n), 0o644)
    coll = Collector(lab, lab.path("out")).start()
    trust = lab.path("trust.crt")
    shutil.copy(os.path.join(lab.pki, "ca2.crt"), trust)
    os.chmod(trust, 0o644)
    spool = lab.path("spool")
    conf = sensor_config(lab, "reload", coll.port, spool, ca=None, heartbeat=1, capture_port=1,
                         uplink_extra=f'ca_file = "{trust}";')
    # After the privilege drop (to nobody) the daemon re-reads it.
    with open(conf) as f:
        good_text = f.read()
    os.chmod(conf, 0o644)
    s = start_live_sensor(lab, conf)
    time.sleep(3.5)
    st = coll.sensor_stats()
    check(st is None or st.get("accepted", 0) == 0, f"nothing delivered while the CA is wrong: {st}")
    pending = spool_pending(spool)
    check(len(pending) >= 2, f"heartbeats pile up in the spool: {len(pending)}")
    check("unknown CA" in read_text(s.errlog), "the reason is logged: unknown CA")

    # A broken file: refused, nothing changes.
    with open(conf, "a") as f:
        f.write("uplink: { gzip = 7; };\n")
    s.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    check("reload refused" in read_text(s.errlog), "a broken reload is refused")
    check(s.poll() is None, "still running after the refused reload")

    # The trust file is replaced in place and the config restored: SIGHUP.
    with open(conf, "w") as f:
        f.write(good_text)
    shutil.copy(os.path.join(lab.pki, "ca.crt"), trust)
    s.send_signal(signal.SIGHUP)
    delivered = wait_for(lambda: (coll.sensor_stats() or {}).get("accepted", 0) >= len(pending), 10)
    check(delivered, f"the spooled events arrive after the reload: {coll.sensor_stats()}")
    time.sleep(1.5)
    rc, err = stop(s)
    check(rc == 0, f"sensor exit {rc}: {err[-500:]}")
    st = coll.sensor_stats() or {}
    check(st.get("missing") == 0 and st.get("duplicates", 1) == 0, f"gap-free, no duplicates: {st}")
    evs = coll.events()
    last = last_sensor_event(evs)
    check(last is not None and last.get("reason") == "shutdown", "the shutdown event arrived")
    check(last is not None and last["seq"] == st.get("highest_seq"), "the last seq is the shutdown event's")
    check(spool_pending(spool) == [], "the spool is empty")
finally:
    lab.close()
finish("uplink-reload")
