#!/usr/bin/env python3
"""Write latency tails, side by side: raft-nginx (and with --etcd, etcd beside it, measured in
turn as bench/compare.py does) under writes to the leader at 4, 16, 64 and again 64 connections
(--conns), one point each. Prints rate and p50/p99/p99.9 per point. For chasing the write p99 that
`make bench` reports: a single full run mixes many loads, this isolates one.

    python3 bench/write_tail.py --binary build-release/src/raft-nginx --etcd --seconds 10
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build-release/src/raft-nginx")
    ap.add_argument("--etcd", action="store_true", help="run etcd beside it, measured in turn")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per load point")
    ap.add_argument("--conns", default="4,16,64,64", help="connection counts, one point each")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="raftnginx-tail-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    systems = [compare.RaftNginx(os.path.join(root, "raft-nginx"), os.path.abspath(args.binary))]
    if args.etcd:
        systems.append(compare.Etcd(os.path.join(root, "etcd")))
    try:
        for s in systems:
            os.makedirs(s.root)
            s.start()
        for conns in (int(c) for c in args.conns.split(",")):
            for s in systems:
                op = "rn_put" if s.label == "raft-nginx" else "etcd_put"
                p = compare.wrk(s.client_address(s.leader()), op, conns, args.seconds)
                print(f"{s.label} {conns} conns: {p['rate']:.0f}/s p50 {p['p50']:.2f} "
                      f"p99 {p['p99']:.2f} p99.9 {p['p999']:.2f} ms, errors {p['errors']}", flush=True)
    finally:
        for s in systems:
            s.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
