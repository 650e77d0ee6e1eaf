#!/usr/bin/env python3
"""Write latency tails, side by side: raft-nginx (and with --etcd, etcd beside it; with
--baseline, a second raft-nginx cluster running another build; each point measured on one and at
once on the others, as bench/compare.py does) under writes to the leader at 4, 16, 64 and again 64
connections (--conns), one point each. Prints rate, p50/p99/p99.9 and the servers' CPU per
100,000 writes per point, then each system's median per connection count. For chasing the write
p99 that `make bench` reports (a single full run mixes many loads, this isolates one), and for
what one change buys (--baseline: the build before it).

    python3 bench/write_tail.py --binary build-release/src/raft-nginx --etcd --seconds 10
    python3 bench/write_tail.py --binary build/src/raft-nginx --baseline /var/tmp/before \
        --conns 64,256,64,256,64,256
"""
import argparse
import os
import shutil
import statistics
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
    ap.add_argument("--baseline", help="another raft-nginx binary, run beside as 'baseline'")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="raftnginx-tail-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    systems = [compare.RaftNginx(os.path.join(root, "raft-nginx"), os.path.abspath(args.binary))]
    if args.baseline:
        baseline = compare.RaftNginx(os.path.join(root, "baseline"), os.path.abspath(args.baseline))
        baseline.label = "baseline"
        systems.append(baseline)
    if args.etcd:
        systems.append(compare.Etcd(os.path.join(root, "etcd")))
    points = {}
    try:
        for s in systems:
            os.makedirs(s.root)
            # Both raft-nginx clusters are started with the same binary's helpers: each its own.
            if isinstance(s, compare.RaftNginx):
                compare.cluster.BINARY = s.binary
            s.start()
        for conns in (int(c) for c in args.conns.split(",")):
            for s in systems:
                op = "etcd_put" if s.label == "etcd" else "rn_put"
                cpu_before = compare.cpu_seconds(s.pids())
                p = compare.wrk(s.client_address(s.leader()), op, conns, args.seconds)
                cpu = (compare.cpu_seconds(s.pids()) - cpu_before) / max(p["requests"], 1) * 1e5
                points.setdefault((s.label, conns), []).append((p, cpu))
                print(f"{s.label} {conns} conns: {p['rate']:.0f}/s p50 {p['p50']:.2f} "
                      f"p99 {p['p99']:.2f} p99.9 {p['p999']:.2f} ms, errors {p['errors']}, "
                      f"CPU {cpu:.1f} s per 100k writes", flush=True)
    finally:
        for s in systems:
            s.close()
        shutil.rmtree(root, ignore_errors=True)
    print("medians:")
    for (label, conns), runs in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        def median(values):
            return statistics.median(values)
        print(f"{label} {conns} conns, {len(runs)} rounds: "
              f"{median([p['rate'] for p, _ in runs]):.0f}/s p99 "
              f"{median([p['p99'] for p, _ in runs]):.2f} ms, CPU "
              f"{median([c for _, c in runs]):.1f} s per 100k writes")


if __name__ == "__main__":
    main()
