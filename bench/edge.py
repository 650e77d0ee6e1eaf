#!/usr/bin/env python3
"""Edge conditions on this machine: three voters at three sites, over emulated WAN links.

Every raft connection goes through the chaos tool's proxy (tests/chaos/chaos.py: Link), which
delays each direction by half the pair's round trip, with +-20% jitter, 1% of chunks held back
a retransmission timeout (200 ms) as TCP would after a loss, and nothing reordered. Round
trips: site A-B 50 ms, A-C 100 ms, B-C 200 ms. Everything stays on 127.0.0.1.

Two phases of --seconds each, on a fresh cluster each: the default timeouts, then --rtt 200ms
(the farthest pair). In each, one client writes to the leader, one write at a time (following
307s), and the phase counts the elections (term changes) and the writes' latency. Prints one
summary line per phase:

  voters=3 learners=0 rtt_ms=50-200 timeouts=... elections=E write_p50_ms=.. write_p99_ms=..

    python3 bench/edge.py --binary build/src/raft-nginx [--seconds 60]

Every process it starts is killed by PID when it ends.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "tests", "chaos"))
import cluster  # noqa: E402
from chaos import Link, Network, Proxy, node_id_for  # noqa: E402

SITES = {"node1": "A", "node2": "B", "node3": "C"}
RTT_MS = {frozenset("AB"): 50, frozenset("AC"): 100, frozenset("BC"): 200}
JITTER = 0.2
LOSS = 0.01


def start(root, args):
    os.makedirs(root)
    network = Network()
    nodes = cluster.Cluster(root)
    for i, (a, b) in enumerate((x, y) for x in SITES for y in SITES if x != y):
        rtt = RTT_MS[frozenset(SITES[a] + SITES[b])]
        network.shape(a, b, Link(delay_ms=rtt / 2, jitter=JITTER, loss=LOSS, seed=i))
    first = None
    for name in SITES:
        real = cluster.free_port()
        d = cluster.Daemon(root, name, raft_port=real)
        proxy = Proxy(name, real, network)
        network.proxies[name] = proxy
        network.names[node_id_for(name)] = name
        d.raft = f"127.0.0.1:{real}"
        d.args = ["--raft-advertise", f"127.0.0.1:{proxy.port}", *args]
        if first is not None:
            d.args += ["-join", first.http]
        nodes.nodes[name] = d
        d.start()
        if first is None:
            first = d
            cluster.wait_until(lambda: first.get("/readyz").status == 200, what="node1 ready")
    nodes.wait_members(len(SITES), timeout=60)
    nodes.wait_ready(timeout=60)
    return nodes, network


def term(nodes):
    terms = []
    for d in nodes.running():
        try:
            terms.append(d.status()["term"])
        except OSError:
            pass
    return max(terms)


def phase(root, label, args, seconds):
    nodes, network = start(root, args)
    try:
        timeouts = nodes.nodes["node1"].log_tail(50).split("heartbeat=", 1)[1].split()[:2]
        first_term = term(nodes)
        latencies, failures = [], 0
        address = nodes.leader().http
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            began = time.monotonic()
            try:
                r = cluster.request(address, "PUT", f"/key/edge{i % 100}", body=str(i), timeout=10)
                if r.status == 307 and r.header("X-Raft-Leader"):
                    address = r.header("X-Raft-Leader")
                    continue
                if r.status == 200:
                    latencies.append((time.monotonic() - began) * 1000)
                else:
                    failures += 1
            except OSError:
                failures += 1
        elections = term(nodes) - first_term
    finally:
        nodes.close()
        for p in network.proxies.values():
            p.close()
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return (f"voters=3 learners=0 rtt_ms=50-200 timeouts={label}(heartbeat={timeouts[0]} "
            f"{timeouts[1]}) elections={elections} writes={len(latencies)} failed={failures} "
            f"write_p50_ms={p50:.1f} write_p99_ms={p99:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    cluster.BINARY = os.path.abspath(args.binary)
    root = tempfile.mkdtemp(prefix="raftnginx-edge-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        for label, flags in (("default", []), ("rtt", ["--rtt", "200ms"])):
            print(phase(os.path.join(root, label), label, flags, args.seconds), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
