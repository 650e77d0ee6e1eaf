#!/usr/bin/env python3
"""The container image and the compose cluster, run for real (`make docker-test`; not part of
`make test`: it needs a running Docker daemon and takes a few minutes).

Builds the image from the Debian package, starts deploy/docker/docker-compose.yml (three nodes,
host networking, each on its own loopback ports), runs the walkthrough through the three nginx
gateways, kills the leader's container, checks that the other two elect a leader and take
writes through their gateways, starts it again, checks that it catches up, then removes the
containers and their volumes. Bounded: every wait has a deadline; exits non-zero on failure.

    python3 tests/docker/compose_test.py [--no-build]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
COMPOSE = ["docker-compose", "-f", os.path.join(ROOT, "deploy", "docker", "docker-compose.yml"),
           "-p", "raftnginx-compose-test"]
GATEWAYS = {"node1": "127.0.0.1:8100", "node2": "127.0.0.1:8200", "node3": "127.0.0.1:8300"}
DAEMONS = {"node1": "127.0.0.1:11001", "node2": "127.0.0.1:11002", "node3": "127.0.0.1:11003"}


def log(msg):
    print(f"compose-test: {msg}", flush=True)


def http(method, address, path, body=None, timeout=5):
    req = urllib.request.Request(f"http://{address}{path}", method=method,
                                 data=body.encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise SystemExit(f"compose-test: timed out waiting for {what} (last error: {last})")


def leader():
    for name, address in DAEMONS.items():
        try:
            status, body = http("GET", address, "/status")
        except OSError:
            continue
        if status == 200 and json.loads(body).get("role") == "leader":
            return name
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true", help="use the image already built")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(COMPOSE + ["build"], check=True, cwd=ROOT)
    subprocess.run(COMPOSE + ["up", "-d"], check=True, cwd=ROOT)
    try:
        for name, address in GATEWAYS.items():
            wait_until(f"{name}'s gateway ready",
                       lambda a=address: http("GET", a, "/readyz")[0] == 200, 90)
        log("3 nodes ready behind their gateways")
        status, _ = http("POST", GATEWAYS["node1"], "/key", json.dumps({"user1": "batman"}))
        assert status == 200, status
        for name in ("node2", "node3"):
            wait_until(f"the write on {name}", lambda n=name: http(
                "GET", GATEWAYS[n], "/key/user1")[1] == '{"user1":"batman"}', 10)
        log("walkthrough: written through node1's gateway, read through node2's and node3's")

        old = leader()
        assert old, "no leader"
        began = time.monotonic()
        subprocess.run(["docker", "kill", f"raftnginx-compose-test_{old}_1"], check=True,
                       capture_output=True)
        survivors = [n for n in GATEWAYS if n != old]
        wait_until("a new leader", lambda: leader() not in (None, old), 15)
        wait_until("a write through a surviving gateway", lambda: http(
            "POST", GATEWAYS[survivors[0]], "/key", json.dumps({"after": "failover"}))[0] == 200,
            15)
        log(f"killed {old} (the leader): {leader()} leads, writes taken through "
            f"{survivors[0]}'s gateway {time.monotonic() - began:.1f} s after the kill")

        subprocess.run(COMPOSE + ["start", old], check=True, cwd=ROOT, capture_output=True)
        wait_until(f"{old} caught up", lambda: http(
            "GET", GATEWAYS[old], "/key/after")[1] == '{"after":"failover"}', 60)
        log(f"{old} restarted and caught up; its gateway serves the write made while it was down")
    finally:
        subprocess.run(COMPOSE + ["down", "-v"], cwd=ROOT, capture_output=True)
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
