#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Hostile or broken HTTP CONNECT proxies for the proxy tests, on 127.0.0.1.

usage: fake_proxy.py MODE PORT [ARGS]
  hang              accept, read the request, never answer
  garbage           answer the CONNECT with bytes that are not HTTP
  endless           answer "HTTP/1.1 200" then header lines forever
  midtunnel K CUT   a relaying proxy (to 127.0.0.1:the CONNECT port) that
                    answers 200 and, for its first K tunnels (requests
                    with a CONNECT, not bare probes), closes both
                    sides once CUT bytes went from the client to the
                    endpoint; later tunnels relay until either side closes

Every connection event is one line on stdout (flushed): `accept N`,
`request N <request line>`, `cut N after B bytes`, `closed N sent B`."""
import socket
import sys
import threading

lock = threading.Lock()
count = 0
tunnels = 0


def log(msg):
    with lock:
        sys.stdout.write(msg + "\n")
        sys.stdout.flush()


def read_head(c):
    """The request head, byte by byte up to the empty line (at most 64 KiB)."""
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < 65536:
        b = c.recv(1)
        if not b:
            return None
        head += b
    return head


def hang(c, n):
    read_head(c)
    while c.recv(4096):
        pass
    return 0


def garbage(c, n):
    if read_head(c) is None:
        return 0
    data = b"SSH-2.0-OpenSSH_9.2p1\r\n\x00\xff\xfe garbage \x01\x02\r\n\r\n"
    c.sendall(data)
    while c.recv(4096):
        pass
    return len(data)


def endless(c, n):
    if read_head(c) is None:
        return 0
    sent = 0
    c.sendall(b"HTTP/1.1 200 Connection established\r\n")
    i = 0
    try:
        while True:
            line = b"X-Endless-%d: %s\r\n" % (i, b"a" * 60)
            c.sendall(line)
            sent += len(line)
            i += 1
    except OSError:
        pass
    return sent


def pump(src, dst, limit, state):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            if limit is not None and state["up"] + len(b) >= limit:
                b = b[: max(0, limit - state["up"])]
                dst.sendall(b)
                state["up"] += len(b)
                state["cut"] = True
                break
            dst.sendall(b)
            if limit is not None:
                state["up"] += len(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def midtunnel(c, n, k, cut):
    head = read_head(c)
    if head is None:
        return 0
    line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    log(f"request {n} {line}")
    try:
        target = line.split()[1]
        port = int(target.rsplit(":", 1)[1])
        up = socket.create_connection(("127.0.0.1", port), timeout=5)
        up.settimeout(None)
    except (OSError, IndexError, ValueError):
        c.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        return 0
    global tunnels
    with lock:
        tunnels += 1
        nth = tunnels
    c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    state = {"up": 0, "cut": False}
    limit = cut if nth <= k else None
    t = threading.Thread(target=pump, args=(up, c, None, {"up": 0}), daemon=True)
    t.start()
    pump(c, up, limit, state)
    if state["cut"]:
        log(f"cut {n} after {state['up']} bytes")
    t.join(10)
    up.close()
    return state["up"]


def serve(conn, n, mode, args):
    sent = 0
    try:
        if mode == "hang":
            sent = hang(conn, n)
        elif mode == "garbage":
            sent = garbage(conn, n)
        elif mode == "endless":
            sent = endless(conn, n)
        elif mode == "midtunnel":
            sent = midtunnel(conn, n, int(args[0]), int(args[1]))
    except OSError:
        pass
    finally:
        conn.close()
        log(f"closed {n} sent {sent}")


def main():
    global count
    mode, port, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        count += 1
        log(f"accept {count}")
        threading.Thread(target=serve, args=(conn, count, mode, args), daemon=True).start()


if __name__ == "__main__":
    main()
