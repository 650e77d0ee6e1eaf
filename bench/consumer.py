#!/usr/bin/env python3
"""What tools that consume the cluster's state pay, raft-nginx against etcd, on this machine, in
one run: compare-and-set transactions at 64 connections (one compare that holds, one put: POST
/txn against etcd's /v3/kv/txn, through wrk and bench/wrk/load.lua), and listing 100,000 keys
under a prefix from a follower (GET /key?prefix= against /v3/kv/range with a range_end,
serializable). Each point runs on one system and then at once on the other, as bench/compare.py
does. Prints a Markdown table for docs/benchmarks.md.

  bench/consumer.py --binary build-release/src/raft-nginx [--seconds 10] [--keys 100000]

Every process it starts is killed by PID when it ends; it talks only to 127.0.0.1.
"""
import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
from compare import Etcd, RaftNginx, log, wrk  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


def list_seconds(system, node, prefix, keys, rounds=5):
    """Median seconds to list every key under `prefix` on `node`, and the count listed."""
    times, counts = [], []
    for _ in range(rounds):
        began = time.monotonic()
        if isinstance(system, RaftNginx):
            r = node.get(f"/key?prefix={prefix}&limit={keys}", timeout=120)
            count = len(r.json())
        else:
            r = node.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix[:-1] + "0"),
                                          "serializable": True}, timeout=120)
            count = int(r.get("count", 0))
        times.append(time.monotonic() - began)
        counts.append(count)
    return statistics.median(times), min(counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build-release/src/raft-nginx")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--conns", type=int, default=64)
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    for tool in ("wrk", "etcd", binary):
        if not shutil.which(tool):
            sys.exit(f"consumer: {tool} not found (make bench installs what is missing)")
    root = tempfile.mkdtemp(prefix="raftnginx-consumer-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    rows = []
    try:
        systems = [RaftNginx(os.path.join(root, "raft-nginx"), binary, nginx=False),
                   Etcd(os.path.join(root, "etcd"))]
        for s in systems:
            os.makedirs(s.root)
            s.start()
        txn = {}
        for s in systems:
            op = "rn_txn" if isinstance(s, RaftNginx) else "etcd_txn"
            log(f"{s.label}: txn at {args.conns} connections")
            txn[s.label] = wrk(s.client_address(s.leader()), op, args.conns, args.seconds)
        listing = {}
        for s in systems:
            log(f"{s.label}: loading {args.keys} keys under list/")
            s.load(s.leader(), 0, args.keys, prefix="list/")
            s.converged()
            listing[s.label] = list_seconds(s, s.followers()[0], "list/", args.keys)
        for s in systems:
            s.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rn, etcd = txn["raft-nginx"], txn["etcd"]
    rows.append(f"| compare-and-set transactions, {args.conns} connections, to the leader | "
                f"{rn['rate']:,.0f}/s (p50 {rn['p50']:.1f} ms, p99 {rn['p99']:.1f} ms, "
                f"{rn['errors']} errors) | {etcd['rate']:,.0f}/s (p50 {etcd['p50']:.1f} ms, "
                f"p99 {etcd['p99']:.1f} ms, {etcd['errors']} errors) | "
                f"{rn['rate'] / etcd['rate']:.2f}x |")
    (rn_s, rn_n), (etcd_s, etcd_n) = listing["raft-nginx"], listing["etcd"]
    rows.append(f"| listing {rn_n:,} keys under a prefix on a follower (median of 5) | "
                f"{rn_s * 1000:,.0f} ms | {etcd_s * 1000:,.0f} ms ({etcd_n:,} keys) | "
                f"{etcd_s / rn_s:.2f}x faster |")
    print("| measure | raft-nginx | etcd 3.4 | ratio |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
