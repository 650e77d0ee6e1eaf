#!/usr/bin/env python3
"""What the gateways' own configuration costs their traffic, on this machine, in one run.

A 3-node raft-nginx cluster with its nginx gateways (--nginx-wait-min 100ms, so that nearly
every change is a reload of its own):
  1. reloads under load: wrk reads through one follower's gateway and writes through the other's
     for --seconds, while --changes gateway files are written, one every --seconds/--changes;
     prints every non-2xx answer and socket error wrk saw, and how many reloads each gateway
     made; once on kept-alive connections, once with a connection per request;
  2. per-request lookups: wrk through a gateway to a location guarded by the address blocklist
     recipe (deploy/gateway/ip-blocklist.json: an auth_request to the local daemon's GET /check
     per request), against the same location unguarded, both proxying to the daemon's /healthz.
  3. propagation, on a second cluster with the default waits: --propagations changes, each
     written through a different node's gateway once the last one is everywhere, timed from the
     write's answer until every gateway serves it.
Prints a Markdown table for docs/benchmarks.md.

  bench/gateway.py --binary build-release/src/raft-nginx [--seconds 30] [--changes 100]
                   [--propagations 50] [--parts reloads,lookups,propagation]

Every process it starts is killed by PID when it ends; it talks only to 127.0.0.1.
"""
import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare import RaftNginx, log, poll, wrk  # noqa: E402
import cluster  # noqa: E402  (on the path compare.py sets)

RECIPES = os.path.join(os.path.dirname(HERE), "deploy", "gateway")


def served(node):
    return node.status()["gateway"]["files_index"]


def reloads(node):
    return node.log_tail(1_000_000).count("pass nginx -t")


def access_log(node):
    return os.path.join(node.data_dir, "nginx", "logs", "access.log")


def statuses(node, offset):
    """The answers other than 2xx in `node`'s access log after `offset`, by status."""
    counts = collections.Counter()
    with open(access_log(node), errors="replace") as f:
        f.seek(offset)
        for line in f:
            fields = line.split('"')
            status = fields[2].split()[0] if len(fields) > 2 and fields[2].split() else "?"
            if not status.startswith("2"):
                counts[status] += 1
    return dict(counts)


def write_files(leader, files):
    r = leader.post("/key", body=files, timeout=30)
    if r.status != 200:
        raise RuntimeError(f"writing gateway files: {r}")
    return int(r.header("X-Raft-Mod-Index"))


def reloads_under_load(system, args, close):
    """wrk's reads and writes through the followers' gateways while the files change; with
    `close`, each request on a connection of its own."""
    leader = system.leader()
    readers, writers = system.followers()
    leader.post("/key", body={"k1": "v"}, timeout=10)
    before = {n.name: reloads(n) for n in system.running()}
    offsets = {n.name: os.path.getsize(access_log(n)) for n in (readers, writers)}
    results, changes = {}, {"done": 0, "refused": 0}

    def load(name, node, op):
        results[name] = wrk(node.gateway, op, 64, args.seconds,
                            path="/key/k1" if op == "get_path" else "", close=close)
    threads = [threading.Thread(target=load, args=("reads", readers, "get_path")),
               threading.Thread(target=load, args=("writes", writers, "rn_put"))]
    for t in threads:
        t.start()
    began = time.monotonic()
    interval = args.seconds / (args.changes + 2)
    last = 0
    for i in range(args.changes):
        time.sleep(max(0.0, began + (i + 1) * interval - time.monotonic()))
        body = (f'location = /changed {{ default_type text/plain; '
                f'return 200 "{i} {close}"; }}\n')
        r = leader.request("PUT", "/key/nginx/server/changed.conf", body=body, timeout=30)
        if r.status == 200:
            changes["done"] += 1
            last = int(r.header("X-Raft-Mod-Index"))
        else:
            changes["refused"] += 1
    for t in threads:
        t.join()
    poll(lambda: all(served(n) >= last for n in system.running()), 60, what="files served")
    made = {n.name: reloads(n) - before[n.name] for n in system.running()}
    time.sleep(1.5)  # nginx flushes its access log every second
    for name, node in (("reads", readers), ("writes", writers)):
        results[name]["logged"] = statuses(node, offsets[node.name])
    return results, changes, made


def lookups(system, args):
    leader = system.leader()
    node = system.followers()[0]
    with open(os.path.join(RECIPES, "ip-blocklist.json")) as f:
        files = {k: v.replace("APP_ADDRESS", node.http) for k, v in json.load(f).items()}
    # The same upstream, unguarded; both locations strip their prefix and ask for /healthz.
    files["nginx/server/blocklist.conf"] = files["nginx/server/blocklist.conf"].replace(
        "proxy_pass http://cluster_app;", "proxy_pass http://cluster_app/healthz;")
    files["nginx/server/plain.conf"] = (
        "location /plain/ {\n  proxy_pass http://cluster_app/healthz;\n"
        "  proxy_http_version 1.1;\n  proxy_set_header Connection \"\";\n}\n")
    index = write_files(leader, files)
    leader.request("PUT", "/key/sets/blocklist/192.0.2.7", body="", timeout=10)
    poll(lambda: served(node) >= index, 60, what="recipe served")
    out = {}
    for name, path in (("plain", "/plain/"), ("guarded", "/app/")):
        log(f"{name}: GET {path} through {node.name}'s gateway, 64 connections")
        out[name] = wrk(node.gateway, "get_path", 64, args.seconds, path=path)
    log("the lookup alone: GET /check on the daemon, one connection")
    out["check"] = wrk(node.http, "get_path", 1, args.seconds,
                       path="/check?set=blocklist&key=198.51.100.1&absent")
    return out


def propagation(system, args):
    """Seconds from each change's answer until every gateway serves it."""
    nodes = system.running()
    took = []
    for i in range(args.propagations):
        body = f'location = /probe {{ default_type text/plain; return 200 "change {i}"; }}\n'
        via = nodes[i % len(nodes)]
        r = cluster.request(via.gateway, "PUT", "/key/nginx/server/probe.conf", body=body,
                            timeout=30)
        answered = time.monotonic()
        if r.status != 200:
            raise RuntimeError(f"change {i} through {via.name}'s gateway: {r}")
        waiting = set(n.gateway for n in nodes)
        while waiting:
            for gateway in list(waiting):
                try:
                    if cluster.request(gateway, "GET", "/probe", timeout=5).body == f"change {i}":
                        waiting.discard(gateway)
                except OSError:
                    pass
            if time.monotonic() - answered > 60:
                raise RuntimeError(f"change {i} not served by {sorted(waiting)} within 60 s")
            time.sleep(0.002)
        took.append(time.monotonic() - answered)
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build-release/src/raft-nginx")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--propagations", type=int, default=50)
    ap.add_argument("--parts", default="reloads,lookups,propagation")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    binary = os.path.abspath(args.binary)
    for tool in ("wrk", "nginx", binary):
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"gateway: {tool} not found (make bench installs what is missing)")
    root = tempfile.mkdtemp(prefix="raftnginx-gateway-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    runs, guarded, took = {}, None, []
    try:
        if parts & {"reloads", "lookups"}:
            system = RaftNginx(os.path.join(root, "raft-nginx"), binary,
                               ["--nginx-wait-min", "100ms", "--nginx-wait-max", "1s"], nginx=True)
            os.makedirs(system.root)
            system.start()
            try:
                for close in (False, True) if "reloads" in parts else ():
                    log(f"reloads under load: {args.changes} changes in {args.seconds} s, "
                        f"{'a connection per request' if close else 'kept-alive connections'}")
                    runs[close] = reloads_under_load(system, args, close)
                if "lookups" in parts:
                    guarded = lookups(system, args)
            finally:
                system.close()
        if "propagation" in parts:
            system = RaftNginx(os.path.join(root, "defaults"), binary, nginx=True)
            os.makedirs(system.root)
            system.start()
            try:
                log(f"propagation: {args.propagations} changes with the default waits")
                took = propagation(system, args)
            finally:
                system.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"runs": {str(k): v for k, v in runs.items()}, "lookups": guarded,
                      "propagation": took}), file=sys.stderr)
    print("| measure | result |")
    print("| --- | --- |")
    for close, (results, changes, made) in runs.items():
        how = "a connection per request" if close else "kept-alive connections"
        for name, what in (("reads", "stale reads through a follower's gateway"),
                           ("writes", "writes through the other follower's gateway")):
            r = results[name]
            logged = ", ".join(f"{n} {k}" for k, n in sorted(r["logged"].items())) or "none"
            print(f"| {what}, 64 {how}, {args.seconds} s, {changes['done']} configuration "
                  f"changes | {r['requests']:,} answers, {r['errors'] - r['status_errors']} "
                  f"socket errors, {r['status_errors']} non-2xx; {r['rate']:,.0f}/s, p99 "
                  f"{r['p99']:.1f} ms (gateway's log, not 2xx: {logged}) |")
        print(f"| reloads per gateway ({how}) | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(made.items()))} |")
    if took:
        ordered = sorted(took)
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"| propagation with the default waits: from a change's answer until every gateway "
              f"serves it, {len(took)} changes through each node's gateway in turn | p50 "
              f"{p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms |")
    if guarded is None:
        return 0
    plain, g = guarded["plain"], guarded["guarded"]
    print(f"| a proxied location, 64 connections: unguarded; guarded by the blocklist lookup | "
          f"{plain['rate']:,.0f}/s p50 {plain['p50']:.2f} ms; {g['rate']:,.0f}/s p50 "
          f"{g['p50']:.2f} ms ({g['errors']} errors) |")
    c = guarded["check"]
    print(f"| the lookup alone, GET /check on the daemon over TCP, one connection | p50 "
          f"{c['p50'] * 1000:.0f} us, p99 {c['p99'] * 1000:.0f} us ({c['rate']:,.0f}/s, "
          f"{c['errors']} errors) |")


if __name__ == "__main__":
    sys.exit(main())
