#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A scripted HTTPS ingestion peer for the uplink tests (loopback only).

Listens on 127.0.0.1 at a free port below 32768 and prints it on stdout.
Answers each POST with the next entry of --script (comma-separated):
  200 | 413 | 503 ...      status code
  429/RA                   status with "Retry-After: RA"
  drop                     close the connection without answering
  400cert                  nginx's 400 "No required SSL certificate was sent"
then 200 once the script is used up. Logs one JSON line per request
(headers, body) to --log.
"""
import argparse, gzip, json, random, socket, ssl, sys

ap = argparse.ArgumentParser()
ap.add_argument("--cert", required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--ca")
ap.add_argument("--script", default="")
ap.add_argument("--log", required=True)
args = ap.parse_args()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(args.cert, args.key)
if args.ca:
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
script = [s for s in args.script.split(",") if s]

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
for _ in range(200):
    port = random.randint(20000, 32000)
    try:
        srv.bind(("127.0.0.1", port))
        break
    except OSError:
        continue
srv.listen(8)
print(port, flush=True)
log = open(args.log, "a", buffering=1)


def read_request(f):
    line = f.readline(8192)
    if not line:
        return None
    headers = {}
    while True:
        h = f.readline(8192)
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", "0")))
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return line.decode().strip(), headers, body


def answer(conn, code, extra=b"", body=b"{}"):
    reason = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 413: b"Payload Too Large",
              429: b"Too Many Requests", 503: b"Service Unavailable"}.get(code, b"X")
    conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
                 % (code, reason, extra, len(body), body))


while True:
    raw, _ = srv.accept()
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        raw.close()
        continue
    f = conn.makefile("rb")
    try:
        while True:
            req = read_request(f)
            if req is None:
                break
            line, headers, body = req
            action = script.pop(0) if script else "200"
            log.write(json.dumps({"line": line, "headers": headers, "body": body.decode(),
                                  "action": action}) + "\n")
            if action == "drop":
                break
            if action == "400cert":
                answer(conn, 400, body=b"<html><center>No required SSL certificate was sent</center></html>")
            elif "/" in action:
                code, ra = action.split("/", 1)
                answer(conn, int(code), b"Retry-After: %s\r\n" % ra.encode())
            else:
                answer(conn, int(action))
    except (ssl.SSLError, OSError, ValueError):
        pass
    try:
        f.close()  # the makefile holds the socket open otherwise
        conn.close()
    except OSError:
        pass
