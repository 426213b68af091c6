# SPDX-License-Identifier: Apache-2.0
"""Helpers for the proxy integration tests (test_proxy*.py): real squid,
tinyproxy and haproxy as direct children with their own confs and logs, a
sensor config using the proxy transports, and hostile fake proxies
(fake_proxy.py) as child processes. Builds on uplinklab.py."""
import glob
import os
import signal
import subprocess
import time

from uplinklab import PY, free_port, read_text, sensor_config, stop, wait_port

FAKE_PROXY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_proxy.py")


def start_squid(lab, name, user, password, ports, extra=""):
    """squid with Basic auth allowing CONNECT to `ports` only. Stop it with
    stop_squid() (SIGKILL by pid, then its shm segments)."""
    d = lab.path(name)
    os.makedirs(d)
    os.chmod(d, 0o755)
    port = free_port()
    subprocess.run(["htpasswd", "-bc", os.path.join(d, "htpasswd"), user, password],
                   check=True, capture_output=True)
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
auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/htpasswd
auth_param basic children 2 startup=1 idle=1
acl authed proxy_auth REQUIRED
acl CONNECT method CONNECT
acl ok_ports port {" ".join(str(p) for p in ports)}
http_access deny CONNECT !ok_ports
http_access allow authed
http_access deny all
{extra}
""")
    subprocess.run(["chown", "-R", "proxy:proxy", d], check=True)
    svc = f"otsq{os.getpid()}{name}"
    for shm in glob.glob(f"/dev/shm/{svc}-cf__*"):
        os.unlink(shm)
    log = open(os.path.join(d, "stdout.log"), "w")
    p = lab.track(subprocess.Popen(["squid", "-N", "-n", svc, "-f", os.path.join(d, "squid.conf")],
                                   stdout=log, stderr=log))
    log.close()
    if not wait_port(port, 10, p):
        raise RuntimeError(f"squid {name} did not listen: {read_text(os.path.join(d, 'cache.log'))[-1500:]}")
    p.svc, p.dir, p.port = svc, d, port
    return p


def stop_squid(p):
    stop(p, signal.SIGKILL)
    for shm in glob.glob(f"/dev/shm/{p.svc}-cf__*"):
        os.unlink(shm)


def start_tinyproxy(lab, name, user, password, connect_port):
    d = lab.path(name)
    os.makedirs(d)
    os.chmod(d, 0o755)
    port = free_port()
    with open(os.path.join(d, "tinyproxy.conf"), "w") as f:
        f.write(f"""User nobody
Group nogroup
Port {port}
Listen 127.0.0.1
PidFile "{d}/tinyproxy.pid"
LogFile "{d}/tinyproxy.log"
Allow 127.0.0.1
BasicAuth {user} {password}
ConnectPort {connect_port}
""")
    subprocess.run(["chown", "-R", "nobody:nogroup", d], check=True)
    p = lab.track(subprocess.Popen(["tinyproxy", "-d", "-c", os.path.join(d, "tinyproxy.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if not wait_port(port, 5, p):
        raise RuntimeError(f"tinyproxy {name} did not listen")
    p.dir, p.port = d, port
    return p


def start_haproxy(lab, name, backends, check_port=None):
    """haproxy in TCP mode in front of `backends` (squid processes), with the
    LAB-NOTES L7 health check (squid answers 407 without credentials), fall 2
    rise 2 every 500 ms, 2 retries and redispatch. Its log (stdout) goes to
    DIR/haproxy.log; p.admin is its admin socket."""
    d = lab.path(name)
    os.makedirs(d)
    os.chmod(d, 0o755)
    port = free_port()
    check_port = check_port or free_port()
    servers = "\n".join(f"    server sq{i} 127.0.0.1:{b.port} check" for i, b in enumerate(backends))
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(f"""global
    pidfile {d}/haproxy.pid
    stats socket {d}/admin.sock mode 600 level admin
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    option log-health-checks
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    retries 2
    option redispatch 1
frontend proxy_in
    bind 127.0.0.1:{port}
    default_backend squids
backend squids
    balance roundrobin
    option httpchk
    http-check send meth GET uri http://127.0.0.1:{check_port}/ ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 407
    default-server inter 500ms fastinter 200ms downinter 1s fall 2 rise 2
{servers}
""")
    log = open(os.path.join(d, "haproxy.log"), "w")
    p = lab.track(subprocess.Popen(["haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")],
                                   stdout=log, stderr=log))
    log.close()
    if not wait_port(port, 5, p):
        raise RuntimeError(f"haproxy did not listen: {read_text(os.path.join(d, 'haproxy.log'))[-1500:]}")
    p.dir, p.port, p.admin = d, port, os.path.join(d, "admin.sock")
    p.log = os.path.join(d, "haproxy.log")
    return p


def haproxy_states(hap):
    """{server name: 'UP' | 'DOWN' | code} from haproxy's admin socket ({}
    while the socket is not there yet: haproxy may bind it after its
    frontend's port)."""
    import socket as _s
    data = b""
    try:
        with _s.socket(_s.AF_UNIX, _s.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(hap.admin)
            s.sendall(b"show servers state squids\n")
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
    except OSError:
        return {}
    out = {}
    for line in data.decode(errors="replace").splitlines():
        f = line.split()
        if len(f) > 6 and not line.startswith("#") and f[1] == "squids":
            out[f[3]] = {"2": "UP", "0": "DOWN"}.get(f[5], f[5])
    return out


def start_fake_proxy(lab, mode, *args):
    """fake_proxy.py MODE PORT ARGS... as a direct child; its log (one line
    per connection event) is p.log."""
    port = free_port()
    log = lab.path(f"fake-{mode}-{port}.log")
    f = open(log, "w")
    p = lab.track(subprocess.Popen([PY, FAKE_PROXY, mode, str(port)] + [str(a) for a in args],
                                   stdout=f, stderr=subprocess.STDOUT))
    f.close()
    if not wait_port(port, 5, p):
        raise RuntimeError(f"fake proxy {mode} did not listen: {read_text(log)}")
    # wait_port's probe connection is logged as an accept: remember it
    time.sleep(0.05)
    p.port, p.log, p.mode = port, log, mode
    p.probes = fake_accepts(p)
    return p


def fake_accepts(p):
    return read_text(p.log).count("accept ")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def proxy_config(lab, name, col_port, spool, transport, group, level="debug", **kw):
    """The uplink helpers' config with the transport swapped for ours. The
    endpoint is `localhost` (in the collector's certificate; squid resolves
    it from /etc/hosts, so no DNS query leaves the machine). kw goes to
    sensor_config (heartbeat, capture_port, modbus_port, uplink_extra...)."""
    conf = sensor_config(lab, name, col_port, spool, endpoint_host="localhost", level=level, **kw)
    text = open(conf).read()
    lines = []
    for line in text.splitlines():
        if line.startswith("transports:"):
            line = f"transports: {{ {transport}: {{ {group} }}; }};"
        elif line.startswith("output:"):
            line = line.replace('transport = "direct"', f'transport = "{transport}"')
        lines.append(line)
    write(conf, "\n".join(lines) + "\n")
    return conf
