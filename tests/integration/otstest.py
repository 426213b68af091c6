# SPDX-License-Identifier: Apache-2.0
"""Shared helpers for the integration tests (plain python3, no pytest)."""
import json
import os
import subprocess
import sys

SRC = os.environ.get("OTS_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("OTS_BUILD_ROOT", os.path.join(SRC, "build"))
OTSENSORD = os.environ.get("OTSENSORD", os.path.join(BUILD, "core", "otsensord"))
CORPUS = os.path.normpath(os.path.join(SRC, "..", "shared", "corpus"))

failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}", flush=True)
    return cond


def corpus_files():
    if not os.path.isdir(CORPUS):
        print(f"FAIL: corpus directory {CORPUS} is missing", flush=True)
        sys.exit(1)
    return sorted(os.path.join(CORPUS, f) for f in os.listdir(CORPUS) if f.endswith((".pcap", ".pcapng")))


def run_sensor(args, **kw):
    return subprocess.run([OTSENSORD] + args, capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)


def parse_events(text):
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            events.append(json.loads(line))
        except ValueError as e:
            check(False, f"line {n} is not JSON ({e}): {line[:200]}")
    return events


def tshark_count(path, display_filter):
    out = subprocess.run(["tshark", "-n", "-r", path, "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def finish(name):
    print(f"{name}: {checks - failures} passed, {failures} failed", flush=True)
    sys.exit(1 if failures else 0)
