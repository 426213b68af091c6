#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Confidentiality of the proxy leg (issue 5): tshark captures the
sensor <-> squid leg on lo while otsensord sends events that carry a marker
(sensor.site, in every `sensor` event; gzip off, so only TLS can hide it).
The marker must arrive at the collector and must never appear in the
capture: not in the pcap's raw bytes, not in the frames of `tshark -x`, not
in the reassembled TCP streams. The plaintext `CONNECT localhost:PORT` must
be visible there (the capture saw the proxy leg). Needs root (capture,
squid's cache_effective_user) and tshark, squid."""
import os
import re
import secrets
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from otstest import *  # noqa: F401,F403
from uplinklab import *  # noqa: F401,F403
from proxylab import *  # noqa: F401,F403

PASSWORD = "c0nf-Pw-2240"
MARKER = "MARKER-" + secrets.token_hex(8)


def frames_from_x(text):
    """Bytes of each frame from `tshark -x` (hex dump lines `0000  45 00 ...`)."""
    frames, cur = [], bytearray()
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]{4,}\s{2}((?:[0-9a-f]{2}\s)+)", line)
        if m:
            cur += bytes.fromhex(m.group(1).replace(" ", ""))
        elif cur:
            frames.append(bytes(cur))
            cur = bytearray()
    if cur:
        frames.append(bytes(cur))
    return frames


def streams(pcap):
    """The reassembled payload of each TCP stream, both directions, in order."""
    ids = subprocess.run(["tshark", "-n", "-r", pcap, "-T", "fields", "-e", "tcp.stream"],
                         capture_output=True, text=True).stdout.split()
    out = []
    for sid in sorted({int(i) for i in ids if i.strip().isdigit()}):
        text = subprocess.run(["tshark", "-n", "-r", pcap, "-q", "-z", f"follow,tcp,raw,{sid}"],
                              capture_output=True, text=True).stdout
        data = bytearray()
        for line in text.splitlines():
            h = line.strip()
            if h and re.fullmatch(r"[0-9a-f]+", h) and len(h) % 2 == 0:
                data += bytes.fromhex(h)
        out.append(bytes(data))
    return out


if os.geteuid() != 0:
    check(False, "test_proxy_confidential needs root (capture, squid)")
    finish("proxy-confidential")

t0 = time.time()
lab = Lab("proxyconf")
try:
    os.chmod(lab.dir, 0o755)
    spool = lab.path("spool")
    col = Collector(lab, lab.path("out")).start()
    pw = write(lab.path("proxy.pw"), PASSWORD + "\n")
    sq = start_squid(lab, "sq", "sensor", PASSWORD, [col.port])
    conf = proxy_config(lab, "conf", col.port, spool, "proxy",
                        f'host = "127.0.0.1"; port = {sq.port}; user = "sensor"; password_file = "{pw}";',
                        level="info", heartbeat=1, uplink_extra="gzip = false;")
    text = open(conf).read().replace(f'id = "{SENSOR_ID}";', f'id = "{SENSOR_ID}"; site = "{MARKER}";')
    write(conf, text)

    pcap = lab.path("proxy-leg.pcap")
    cap_err = open(lab.path("tshark.stderr"), "w")
    ts = lab.track(subprocess.Popen(["tshark", "-n", "-i", "lo", "-f", f"tcp port {sq.port}", "-w", pcap],
                                    stdout=subprocess.DEVNULL, stderr=cap_err))
    cap_err.close()
    check(wait_for(lambda: "Capturing on" in read_text(lab.path("tshark.stderr")), 15),
          f"tshark started capturing: {read_text(lab.path('tshark.stderr'))[-400:]}")
    time.sleep(0.3)

    corpus = {os.path.basename(c): c for c in corpus_files()}
    # Two runs, so the leg carries several TLS sessions and heartbeats.
    for cap in (corpus["modbus_example.pcap"], corpus["iec104.pcap"]):
        r = run_sensor(["-c", conf, "--no-summary", "-r", cap], timeout=120)
        check(r.returncode == 0, f"sensor exit {r.returncode}: {r.stderr[-1500:]}")
    time.sleep(1.0)  # the last FINs reach the capture
    rc, err = stop(ts, signal.SIGINT)
    check(rc == 0, f"tshark exit {rc}: {err[-400:]}")
    check(os.path.getsize(pcap) > 1000, f"the capture holds the proxy leg ({os.path.getsize(pcap)} bytes)")

    evs = col.events()
    with_marker = [e for e in evs if e.get("site") == MARKER]
    check(len(with_marker) >= 2, f"events carrying the marker reached the collector ({len(with_marker)})")
    check_gapless(col.sensor_stats(), "confidential runs")
    check(spool_pending(spool) == [], "spool drained")
    ndjson = open(os.path.join(col.out, SENSOR_ID + ".ndjson"), "rb").read()
    check(MARKER.encode() in ndjson, "the marker is in the collector's plaintext (search sanity)")

    raw = open(pcap, "rb").read()
    connect = f"CONNECT localhost:{col.port} HTTP/1.1".encode()
    check(raw.count(connect) >= 2, f"the capture shows the CONNECT requests in clear ({raw.count(connect)})")
    check(MARKER.encode() not in raw, "the marker is not in the capture's raw bytes")
    xtext = subprocess.run(["tshark", "-n", "-r", pcap, "-x"], capture_output=True, text=True).stdout
    frames = frames_from_x(xtext)
    check(len(frames) >= 20, f"tshark -x shows the frames ({len(frames)})")
    check(any(connect in f for f in frames), "tshark -x shows the CONNECT")
    check(MARKER not in xtext and not any(MARKER.encode() in f for f in frames),
          "the marker is in no frame of tshark -x")
    st = streams(pcap)
    check(len(st) >= 2 and all(s.startswith(b"CONNECT localhost:") for s in st if s),
          f"every TCP stream on the proxy leg starts with CONNECT ({len(st)} streams)")
    whole = b"".join(st)
    check(len(whole) > len(ndjson) // 2, f"the streams carry the upload ({len(whole)} bytes)")
    check(MARKER.encode() not in whole, "the marker is not in the reassembled streams")
    # TLS 1.3 also hides the client certificate (CN = the sensor id).
    check(SENSOR_ID.encode() not in whole, "the sensor id is not in the reassembled streams")
    check(b'"type":"sensor"' not in whole and b"POST /ingest" not in whole,
          "no plaintext event or HTTP request after the CONNECT")
    print(f"confidential: {len(frames)} frames, {len(st)} streams, {len(raw)} bytes captured; "
          f"{len(with_marker)} events with {MARKER} delivered", flush=True)
    stop_squid(sq)
    check(col.stop() == 0, "collector exit 0")
finally:
    lab.close()
print(f"proxy confidential: {time.time() - t0:.1f} s", flush=True)
finish("proxy-confidential")
