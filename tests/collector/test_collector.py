#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Self-test of the lab collector with real curl on loopback.

Makes a PKI with make-pki in a temp dir, runs the collector as a direct child
on a free port below 32768 and checks ingestion, dedupe, gaps, gzip, the TLS
refusals, validation, keep-alive and every misbehaviour mode. Plain python3,
no pytest; exits 1 on any failed check.
"""

import gzip
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTOR = os.path.join(HERE, "collector")
MAKE_PKI = os.path.join(HERE, "make-pki")
PY = "/usr/bin/python3"
SENSOR = "sensor-001"

failures = 0
checks = 0


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what} {detail}".rstrip(), flush=True)
    return cond


def free_port():
    """A port below the ephemeral range (32768+), free right now."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def line(seq, sensor=SENSOR, **extra):
    obj = {"ts": "2026-01-01T00:00:00.000000Z", "sensor_id": sensor, "seq": seq, "type": "test"}
    obj.update(extra)
    return json.dumps(obj, separators=(",", ":"))


def batch(seqs, sensor=SENSOR):
    return ("\n".join(line(s, sensor) for s in seqs) + "\n").encode()


class Collector:
    def __init__(self, tmp, pki, name, extra=()):
        self.pki = pki
        self.out = os.path.join(tmp, name)
        self.log_path = os.path.join(tmp, name + ".log")
        self.ctl_sock = os.path.join(tmp, name + ".ctl")
        for _ in range(5):
            self.port = free_port()
            args = [PY, COLLECTOR, "--listen", f"127.0.0.1:{self.port}",
                    "--cert", f"{pki}/server.crt", "--key", f"{pki}/server.key", "--ca", f"{pki}/ca.crt",
                    "--out", self.out, "--control-socket", self.ctl_sock, *extra]
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
            if self.wait_ready():
                return
            self.stop()
        raise RuntimeError(f"collector did not start; see {self.log_path}")

    def wait_ready(self, budget=5.0):
        end = time.monotonic() + budget
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.01)
        return False

    def url(self, path="/ingest"):
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stats(self):
        # Over the unix control socket: no TLS state of its own to disturb.
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", self.ctl_sock,
                            "http://collector/stats"], capture_output=True, timeout=20)
        return json.loads(r.stdout)

    def sensor(self, sid=SENSOR):
        return self.stats()["sensors"].get(sid, {})


class KeepAlive:
    """One persistent HTTPS connection (http.client), to see what happens to
    an already open connection."""

    def __init__(self, c):
        ctx = http.client.ssl.create_default_context(cafile=f"{c.pki}/ca.crt")
        ctx.load_cert_chain(f"{c.pki}/client.crt", f"{c.pki}/client.key")
        self.conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=ctx, timeout=10)

    def post(self, seqs):
        """Status code, or None when the connection failed (no reconnect)."""
        if self.conn.sock is None and getattr(self, "used", False):
            return None
        self.used = True
        try:
            self.conn.request("POST", "/ingest", body=batch(seqs), headers={
                "Content-Type": "application/x-ndjson", "X-Sensor-Id": SENSOR,
                "X-Batch-First-Seq": str(seqs[0]), "X-Batch-Last-Seq": str(seqs[-1])})
            r = self.conn.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            return None

    def close(self):
        self.conn.close()


class Resp:
    def __init__(self, rc, code, headers, body, stderr, elapsed, num_connects):
        self.rc, self.code, self.headers, self.body = rc, code, headers, body
        self.stderr, self.elapsed, self.num_connects = stderr, elapsed, num_connects

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    def __repr__(self):
        return f"<rc={self.rc} code={self.code} body={self.body[:300]!r} err={self.stderr[-300:]!r}>"


def tls_opts(pki, cert="client"):
    opts = ["--cacert", f"{pki}/ca.crt"]
    if cert:
        opts += ["--cert", f"{pki}/{cert}.crt", "--key", f"{pki}/{cert}.key"]
    return opts


def post_opts(tmpdir, body, seqs=None, sensor=SENSOR, gz=False, headers=(), ctype="application/x-ndjson"):
    """curl options for one ingestion POST (body written to a temp file)."""
    fd, path = tempfile.mkstemp(dir=tmpdir, suffix=".ndjson")
    with os.fdopen(fd, "wb") as f:
        f.write(gzip.compress(body) if gz else body)
    h = ["-H", f"Content-Type: {ctype}", "-H", f"X-Sensor-Id: {sensor}"]
    if seqs:
        h += ["-H", f"X-Batch-First-Seq: {seqs[0]}", "-H", f"X-Batch-Last-Seq: {seqs[-1]}"]
    if gz:
        h += ["-H", "Content-Encoding: gzip"]
    for x in headers:
        h += ["-H", x]
    return h + ["--data-binary", "@" + path]


MARK = "\n@@CURL@@"


def curl_multi(transfers, timeout=30):
    """Runs one curl with the transfers joined by --next; one Resp per transfer."""
    args = ["curl", "-sS", "-D", "-"]
    for i, t in enumerate(transfers):
        if i:
            args.append("--next")
            args += ["-sS", "-D", "-"]
        args += ["--max-time", "15", "-w", MARK + "%{http_code} %{num_connects}\n"] + t
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    out = r.stdout.decode("utf-8", "replace")
    stderr = r.stderr.decode("utf-8", "replace")
    parts = out.split(MARK)
    resps = []
    for i in range(len(transfers)):
        text = parts[i] if i < len(parts) else ""
        if i > 0:  # strip the previous "code n\n" trailer
            text = text.split("\n", 1)[1] if "\n" in text else ""
        code, nconn = 0, -1
        if i + 1 < len(parts):
            fields = parts[i + 1].split("\n", 1)[0].split()
            if len(fields) == 2:
                code, nconn = int(fields[0]), int(fields[1])
        head, _, body = text.partition("\r\n\r\n")
        while head.startswith("HTTP/1.1 100"):
            head, _, body = body.partition("\r\n\r\n")
        headers = {}
        for hl in head.split("\r\n")[1:]:
            k, _, v = hl.partition(":")
            headers[k.strip().lower()] = v.strip()
        resps.append(Resp(r.returncode, code, headers, body, stderr, elapsed, nconn))
    return resps


def curl(opts, timeout=30):
    return curl_multi([opts], timeout)[0]


def control(c, obj, via="https"):
    if via == "unix":
        opts = ["--unix-socket", c.ctl_sock, "http://collector/_control"]
    else:
        opts = tls_opts(c.pki) + [c.url("/_control")]
    return curl(opts + ["-H", "Content-Type: application/json", "--data-binary", json.dumps(obj)])


def file_lines(c, sid=SENSOR):
    try:
        with open(os.path.join(c.out, sid + ".ndjson"), "rb") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_pki(pki):
    names = ["ca", "server", "client", "rogue", "expired", "other-host", "ca2", "ca2-server"]
    for n in names:
        check(os.path.exists(f"{pki}/{n}.crt") and os.path.exists(f"{pki}/{n}.key"), f"make-pki made {n}.crt/.key")

    def verify(ca, crt, *extra):
        return subprocess.run(["openssl", "verify", "-CAfile", f"{pki}/{ca}.crt", *extra, f"{pki}/{crt}.crt"],
                              capture_output=True, text=True)

    check(verify("ca", "server", "-purpose", "sslserver").returncode == 0, "server.crt verifies as sslserver")
    check(verify("ca", "client", "-purpose", "sslclient").returncode == 0, "client.crt verifies as sslclient")
    check(verify("ca", "server", "-verify_hostname", "cloud.test").returncode == 0, "server.crt is for cloud.test")
    check(verify("ca", "server", "-verify_ip", "127.0.0.1").returncode == 0, "server.crt is for 127.0.0.1")
    r = verify("ca", "expired")
    check(r.returncode != 0 and "expired" in r.stdout + r.stderr, "expired.crt is expired", r.stdout + r.stderr)
    check(verify("ca", "other-host").returncode == 0, "other-host.crt chains to ca")
    check(verify("ca", "other-host", "-verify_hostname", "cloud.test").returncode != 0,
          "other-host.crt is not valid for cloud.test")
    check(verify("ca", "rogue").returncode != 0, "rogue.crt does not chain to ca")
    check(verify("ca", "ca2-server").returncode != 0, "ca2-server.crt does not chain to ca")
    check(verify("ca2", "ca2-server").returncode == 0, "ca2-server.crt chains to ca2")
    subj = subprocess.run(["openssl", "x509", "-in", f"{pki}/client.crt", "-noout", "-subject"],
                          capture_output=True, text=True).stdout
    check("sensor-001" in subj, "client.crt CN is sensor-001", subj)


def test_main(tmp, pki):
    c = Collector(tmp, pki, "main", ["--allow-control", "--max-body", "4MiB"])
    try:
        run_main(tmp, pki, c)
    finally:
        rc = c.stop()
        check(rc == 0, "collector exits 0 on SIGTERM", f"rc={rc}")
    with open(os.path.join(c.out, "stats.json")) as f:
        st = json.load(f)
    check(st["sensors"][SENSOR]["accepted"] == len(file_lines(c)), "stats.json accepted == lines in the sensor file")


def run_main(tmp, pki, c):
    T = tls_opts(pki)

    # Accepted with a client cert.
    r = curl(T + post_opts(tmp, batch([1, 2, 3]), [1, 2, 3]) + [c.url()])
    check(r.rc == 0 and r.code == 200 and r.json() == {"accepted": 3, "duplicates": 0}, "first batch accepted", r)
    lines = file_lines(c)
    check(len(lines) == 3 and json.loads(lines[2])["seq"] == 3, "3 lines in sensor-001.ndjson", lines)

    # Same batch again: all duplicates, nothing written.
    r = curl(T + post_opts(tmp, batch([1, 2, 3]), [1, 2, 3]) + [c.url()])
    check(r.code == 200 and r.json() == {"accepted": 0, "duplicates": 3}, "duplicate batch", r)
    check(len(file_lines(c)) == 3, "duplicates not written")
    s = c.sensor()
    check(s.get("duplicates") == 3 and s.get("received") == 6 and s.get("accepted") == 3, "dup stats", s)

    # A gap: 6..7 after 3 leaves 4..5 missing.
    r = curl(T + post_opts(tmp, batch([6, 7]), [6, 7]) + [c.url()])
    check(r.code == 200 and r.json() == {"accepted": 2, "duplicates": 0}, "batch after a gap", r)
    s = c.sensor()
    check(s.get("gaps") == [[4, 5]] and s.get("missing") == 2 and s.get("highest_seq") == 7, "gap reported", s)

    # Gzip body fills the gap; a partial overlap counts one duplicate.
    r = curl(T + post_opts(tmp, batch([4, 5, 6]), [4, 5, 6], gz=True) + [c.url()])
    check(r.code == 200 and r.json() == {"accepted": 2, "duplicates": 1}, "gzip batch accepted", r)
    s = c.sensor()
    check(s.get("gaps") == [] and s.get("missing") == 0 and s.get("gzip_batches") == 1, "gap closed by gzip batch", s)
    seqs = [json.loads(x)["seq"] for x in file_lines(c)]
    check(sorted(seqs) == [1, 2, 3, 4, 5, 6, 7] and len(seqs) == 7, "file holds each seq once", seqs)

    # TLS refusals: no client cert, rogue cert, TLS <= 1.1.
    tls_fail0 = c.stats()["totals"]["tls_failures"]
    r = curl(tls_opts(pki, None) + post_opts(tmp, batch([8]), [8]) + [c.url()])
    check(r.rc != 0 and r.code != 200, "no client cert refused", r)
    r = curl(tls_opts(pki, "rogue") + post_opts(tmp, batch([8]), [8]) + [c.url()])
    check(r.rc != 0 and r.code != 200, "rogue client cert refused", r)
    # SECLEVEL=0 so that OpenSSL on the client really offers TLS 1.0/1.1 and
    # the refusal comes from the collector, not from the client's own policy.
    r = curl(T + ["--tlsv1.0", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"]
             + post_opts(tmp, batch([8]), [8]) + [c.url()])
    check(r.rc != 0 and r.code != 200, "TLS 1.1 refused", r)
    tls_fail = c.stats()["totals"]["tls_failures"] - tls_fail0
    check(tls_fail == 3, "the collector saw 3 failed handshakes", f"got {tls_fail}")
    check(c.sensor().get("highest_seq") == 7, "nothing ingested from refused clients")

    # Validation.
    bad = batch([8]) + b'{"ts":"x","sensor_id":"sensor-001","type":"t"}\n' + batch([10])
    r = curl(T + post_opts(tmp, bad, [8, 10]) + [c.url()])
    j = r.json()
    check(r.code == 400 and j.get("line") == 2 and "seq" in j.get("reason", ""), "missing seq -> 400 naming line 2", r)
    for what, body, seqs in [
        ("not JSON", batch([8]) + b"{nope\n", [8, 8]),
        ("not an object", b"[1,2]\n", [8, 8]),
        ("seq not an integer", line("8").encode() + b"\n", [8, 8]),
        ("sensor_id mismatch", batch([8], sensor="sensor-999"), [8, 8]),
        ("empty line", batch([8]) + b"\n" + batch([9]), [8, 9]),
        ("NaN", b'{"ts":"x","sensor_id":"sensor-001","seq":8,"type":"t","v":NaN}\n', [8, 8]),
    ]:
        r = curl(T + post_opts(tmp, body, seqs) + [c.url()])
        check(r.code == 400 and r.json().get("error") == "invalid line", f"{what} -> 400 invalid line", r)
    r = curl(T + post_opts(tmp, batch([8, 9]), [8, 10]) + [c.url()])
    check(r.code == 400 and "X-Batch" in r.json().get("error", ""), "batch seq headers mismatch -> 400", r)
    r = curl(T + post_opts(tmp, batch([8])) + [c.url()])
    check(r.code == 400, "missing batch seq headers -> 400", r)
    r = curl(T + post_opts(tmp, batch([8]), [8], ctype="text/plain") + [c.url()])
    check(r.code == 415, "wrong Content-Type -> 415", r)
    r = curl(T + post_opts(tmp, b"\x1f\x8b\x08garbage", [8, 8], headers=["Content-Encoding: gzip"]) + [c.url()])
    check(r.code == 400, "corrupt gzip -> 400", r)
    check(len(file_lines(c)) == 7 and c.sensor().get("highest_seq") == 7, "rejected batches wrote nothing")

    # Odd sensor ids stay inside OUT.
    evil = "../evil id"
    r = curl(T + post_opts(tmp, batch([1], sensor=evil), [1], sensor=evil) + [c.url()])
    fname = c.sensor(evil).get("file", "")
    check(r.code == 200 and fname.startswith("_evil_id-") and os.path.exists(os.path.join(c.out, fname)),
          "sanitised file name inside OUT", f"{r} {fname}")
    check(not os.path.exists(os.path.join(os.path.dirname(c.out), "evil id.ndjson")), "no file outside OUT")

    # Large body (several MB) streams fine; above --max-body (4 MiB) -> 413.
    big_seqs = list(range(100, 100 + 24000))
    body = ("\n".join(line(s, pad="x" * 60) for s in big_seqs) + "\n").encode()
    check(3 << 20 < len(body) < 4 << 20, "large body is 3-4 MiB", len(body))
    r = curl(T + post_opts(tmp, body, big_seqs) + [c.url()])
    check(r.code == 200 and r.json().get("accepted") == len(big_seqs), "3+ MiB body accepted", r)
    s = c.sensor()
    check(s.get("gaps") == [[8, 99]] and s.get("missing") == 92, "gap 8..99 after the large batch", s.get("gaps"))
    check(s.get("highest_seq") == big_seqs[-1], "highest seq after the large batch", s.get("highest_seq"))
    body5 = body + body[: 1 << 20]
    r = curl(T + post_opts(tmp, body5, [100, 100]) + [c.url()])
    check(r.code == 413, "body above --max-body -> 413", r)
    r = curl(T + post_opts(tmp, body5, [100, 100], headers=["Expect:"]) + [c.url()])
    check(r.rc == 0 and r.code == 413, "no Expect: 413 still read by the client (lingering close)", r)
    chunked = ["Transfer-Encoding: chunked"]
    r = curl(T + post_opts(tmp, batch([50000, 50001]), [50000, 50001], headers=chunked) + [c.url()])
    check(r.code == 200 and r.json().get("accepted") == 2, "chunked body accepted", r)
    bomb = b"\n" * (5 << 20)
    r = curl(T + post_opts(tmp, bomb, [1, 1], gz=True) + [c.url()])
    check(r.code == 413, "gzip expanding above --max-body -> 413", r)

    # Several sensors in parallel, ten keep-alive POSTs each.
    procs = []
    for k in range(4):
        sid = f"par-{k}"
        transfers = [T + post_opts(tmp, batch(range(10 * i + 1, 10 * i + 11), sid), [10 * i + 1, 10 * i + 10], sid)
                     + [c.url()] for i in range(10)]
        args = ["curl", "-sS", "-o", "/dev/null", "--max-time", "15"]
        for i, t in enumerate(transfers):
            args += (["--next", "-sS", "-o", "/dev/null", "--max-time", "15"] if i else []) + t
        procs.append(subprocess.Popen(args))
    check(all(p.wait(60) == 0 for p in procs), "parallel curls succeeded")
    st = c.stats()["sensors"]
    for k in range(4):
        s = st.get(f"par-{k}", {})
        check(s.get("accepted") == 100 and s.get("batches") == 10 and s.get("gaps") == [], f"par-{k}: 100 events", s)

    # Keep-alive: two POSTs in one curl reuse the connection.
    conns0 = c.stats()["totals"]["connections"]
    rs = curl_multi([T + post_opts(tmp, batch([8, 9]), [8, 9]) + [c.url()],
                     T + post_opts(tmp, batch([10, 11]), [10, 11]) + [c.url()]])
    check(all(x.code == 200 for x in rs), "two POSTs on one curl", rs)
    check(rs[1].num_connects == 0, "second POST reused the connection", rs[1].num_connects)
    check(c.stats()["totals"]["connections"] - conns0 == 1, "one TLS connection for two POSTs")

    # Misbehaviour: 503 + Retry-After, for count requests only.
    r = control(c, {"mode": "503", "retry_after": 7, "count": 1})
    check(r.code == 200 and r.json().get("mode", {}).get("mode") == "503", "control 503 set", r)
    r = curl(T + post_opts(tmp, batch([12]), [12]) + [c.url()])
    check(r.code == 503 and r.headers.get("retry-after") == "7", "503 with Retry-After: 7", r)
    r = curl(T + post_opts(tmp, batch([12]), [12]) + [c.url()])
    check(r.code == 200 and r.json().get("accepted") == 1, "back to normal after count", r)

    r = control(c, {"mode": "429", "retry_after": 3, "count": 2}, via="unix")
    check(r.code == 200, "control 429 via unix socket", r)
    rs = curl_multi([T + post_opts(tmp, batch([13]), [13]) + [c.url()] for _ in range(3)])
    check([x.code for x in rs] == [429, 429, 200] and rs[0].headers.get("retry-after") == "3",
          "429 twice with Retry-After, then 200 (same connection)", rs)

    # 413 only for bodies above over_bytes.
    control(c, {"mode": "413", "over_bytes": 200})
    r = curl(T + post_opts(tmp, batch([14]), [14]) + [c.url()])
    check(r.code == 200, "small body passes 413 mode", r)
    r = curl(T + post_opts(tmp, batch(list(range(15, 20))), [15, 19]) + [c.url()])
    check(r.code == 413, "body above over_bytes -> 413", r)
    control(c, {"mode": "normal"})
    r = curl(T + post_opts(tmp, batch(list(range(15, 20))), [15, 19]) + [c.url()])
    check(r.code == 200, "normal again after mode normal", r)

    # Stall: the answer comes after >= S seconds.
    control(c, {"mode": "stall", "seconds": 1.5, "count": 1})
    r = curl(T + post_opts(tmp, batch([20]), [20]) + [c.url()])
    check(r.code == 200 and r.elapsed >= 1.5, "stall delays the answer >= 1.5 s", f"{r} elapsed={r.elapsed:.2f}")

    # Close mid-response: curl errors, but the batch was stored (lost ack), so
    # the retry counts as a duplicate.
    control(c, {"mode": "close_mid_response", "count": 1})
    r = curl(T + post_opts(tmp, batch([21]), [21]) + [c.url()])
    check(r.rc == 18 and r.body == "", "close mid-response -> curl rc 18 (truncated)", r)
    r = curl(T + post_opts(tmp, batch([21]), [21]) + [c.url()])
    check(r.code == 200 and r.json() == {"accepted": 0, "duplicates": 1}, "retry after lost ack is a duplicate", r)
    acc0 = c.sensor().get("accepted")
    control(c, {"mode": "close_mid_response", "how": "rst", "ingest": False, "count": 1})
    r = curl(T + post_opts(tmp, batch([23]), [23]) + [c.url()])
    check(r.rc != 0 and r.code != 200, "close mid-response with RST -> curl error", r)
    check(c.sensor().get("accepted") == acc0, "ingest:false stored nothing")

    # Refuse: connection refused for S seconds, then accepted again; an open
    # keep-alive connection is dropped too (default "drop": true).
    ka = KeepAlive(c)
    check(ka.post([27]) == 200, "keep-alive client before refuse")
    r = control(c, {"mode": "refuse", "seconds": 2})
    t0 = time.monotonic()
    check(r.code == 200, "control refuse", r)
    r = curl(T + post_opts(tmp, batch([22]), [22]) + [c.url()])
    check(r.rc == 7, "connection refused while refusing (curl rc 7)", r)
    check(ka.post([28]) is None, "open keep-alive connection dropped by refuse")
    ka.close()
    accepted_at = None
    while time.monotonic() - t0 < 8:
        r = curl(T + post_opts(tmp, batch([22]), [22]) + [c.url()])
        if r.rc == 0:
            accepted_at = time.monotonic() - t0
            break
        time.sleep(0.1)
    check(accepted_at is not None and accepted_at >= 1.9, "accepted again after ~2 s", f"at {accepted_at} {r}")
    check(r.code == 200 and r.json().get("accepted") == 1, "batch accepted after refuse", r)
    check(c.stats()["mode"]["mode"] == "normal", "mode back to normal after refuse")

    # "drop": false keeps open connections working while new ones are refused.
    ka = KeepAlive(c)
    check(ka.post([29]) == 200, "keep-alive client before refuse/drop:false")
    control(c, {"mode": "refuse", "seconds": 1, "drop": False})
    r = curl(T + post_opts(tmp, batch([30]), [30]) + [c.url()])
    check(r.rc == 7, "new connection refused (drop:false)", r)
    check(ka.post([30]) == 200, "open connection still served (drop:false)")
    ka.close()
    time.sleep(1.2)
    r = curl(T + post_opts(tmp, batch([31]), [31]) + [c.url()])
    check(r.code == 200, "accepted again after refuse/drop:false", r)

    # Bad control requests.
    r = control(c, {"mode": "teapot"})
    check(r.code == 400, "unknown control mode -> 400", r)
    r = control(c, {"mode": "503", "retry_after": "soon"})
    check(r.code == 400, "bad retry_after -> 400", r)

    st = c.stats()
    s = st["sensors"][SENSOR]
    check(st["totals"]["misbehaved"] == {"503": 1, "429": 2, "413": 1, "stall": 1, "close_mid_response": 2},
          "misbehaviour counters", st["totals"]["misbehaved"])
    check(s["received"] == s["accepted"] + s["duplicates"], "received = accepted + duplicates", s)
    check(s["accepted"] == len(file_lines(c)), "accepted == lines in the file", s["accepted"])
    with open(os.path.join(c.out, "stats.json")) as f:
        disk = json.load(f)
    check(disk["sensors"][SENSOR]["accepted"] == s["accepted"], "stats.json is current")


def test_auth(tmp, pki):
    """Token, --check-cn, control disabled, start-time misbehaviour."""
    tok = os.path.join(tmp, "token")
    with open(tok, "w") as f:
        f.write("s3cret-token\n")
    c = Collector(tmp, pki, "auth", ["--token-file", tok, "--check-cn", "--misbehave",
                                     '{"mode":"503","retry_after":2,"count":1}', "--quiet"])
    try:
        T = tls_opts(pki)
        auth = ["Authorization: Bearer s3cret-token"]
        r = curl(T + post_opts(tmp, batch([1]), [1], headers=auth) + [c.url()])
        check(r.code == 503 and r.headers.get("retry-after") == "2", "--misbehave at start", r)
        r = curl(T + post_opts(tmp, batch([1]), [1]) + [c.url()])
        check(r.code == 401 and "bearer" in r.headers.get("www-authenticate", "").lower(), "no token -> 401", r)
        r = curl(T + post_opts(tmp, batch([1]), [1], headers=["Authorization: Bearer wrong"]) + [c.url()])
        check(r.code == 401, "wrong token -> 401", r)
        r = curl(T + post_opts(tmp, batch([1]), [1], headers=auth) + [c.url()])
        check(r.code == 200 and r.json().get("accepted") == 1, "right token -> 200", r)
        r = curl(T + post_opts(tmp, batch([1], sensor="sensor-002"), [1], sensor="sensor-002", headers=auth)
                 + [c.url()])
        check(r.code == 403, "--check-cn: X-Sensor-Id != cert CN -> 403", r)
        r = control(c, {"mode": "503"})
        check(r.code == 404, "control refused without --allow-control", r)
        check(c.stats()["mode"]["mode"] == "normal", "mode unchanged")
    finally:
        check(c.stop() == 0, "auth collector exits 0")


def test_internals():
    """RangeSet, file names and the loopback check, loaded from the script."""
    from importlib.machinery import SourceFileLoader
    import importlib.util
    loader = SourceFileLoader("collector_mod", COLLECTOR)
    spec = importlib.util.spec_from_loader("collector_mod", loader)
    m = importlib.util.module_from_spec(spec)
    loader.exec_module(m)
    rs = m.RangeSet()
    order = [5, 1, 3, 2, 9, 10, 7, 3, 12]
    added = [rs.add(x) for x in order]
    check(added == [True] * 7 + [False, True], "RangeSet.add reports duplicates", added)
    check(list(zip(rs.starts, rs.ends)) == [(1, 3), (5, 5), (7, 7), (9, 10), (12, 12)], "RangeSet merges",
          list(zip(rs.starts, rs.ends)))
    check(rs.gaps(1) == ([[4, 4], [6, 6], [8, 8], [11, 11]], 4), "RangeSet gaps", rs.gaps(1))
    check(rs.gaps(0) == ([[0, 0], [4, 4], [6, 6], [8, 8], [11, 11]], 5), "gaps from first_seq 0", rs.gaps(0))
    for x in (4, 6, 8, 11):
        rs.add(x)
    check(list(zip(rs.starts, rs.ends)) == [(1, 12)] and rs.gaps(1) == ([], 0), "RangeSet fills to one range")
    ids = ["sensor-001", "a/b", "a_b", "..", ".hidden", "stats", "x" * 300, ""]
    names = {sid: m.safe_file_name(sid) for sid in ids}
    check(names["sensor-001"] == "sensor-001.ndjson", "plain id keeps its name")
    check(len(set(names.values())) == len(names), "sanitised names are distinct", names)
    check(all("/" not in n and not n.startswith(".") and len(n) < 130 for n in names.values()),
          "sanitised names are safe", names)
    check(m.is_loopback("127.0.0.2") and m.is_loopback("::1") and m.is_loopback("::ffff:127.0.0.1")
          and not m.is_loopback("192.0.2.1") and not m.is_loopback("::ffff:192.0.2.1"), "is_loopback")
    for bad in [{"mode": "x"}, {"mode": "503", "count": 0}, {"mode": "stall", "seconds": -1},
                {"mode": "close_mid_response", "how": "x"}, {"mode": "413", "over_bytes": 1.5}, []]:
        try:
            m.Misbehaviour.parse(bad)
            check(False, "bad control object rejected", bad)
        except ValueError:
            check(True, "bad control object rejected")


def main():
    with tempfile.TemporaryDirectory(prefix="otscollector-") as tmp:
        pki = os.path.join(tmp, "pki")
        r = subprocess.run(["sh", MAKE_PKI, pki], capture_output=True, text=True, timeout=120)
        if not check(r.returncode == 0, "make-pki", r.stderr):
            sys.exit(1)
        test_internals()
        test_pki(pki)
        test_main(tmp, pki)
        test_auth(tmp, pki)
        if failures:
            for name in ("main.log", "auth.log"):
                p = os.path.join(tmp, name)
                if os.path.exists(p):
                    print(f"--- {name} (tail)")
                    with open(p, errors="replace") as f:
                        print("".join(f.readlines()[-40:]))
    print(f"collector: {checks - failures} passed, {failures} failed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
