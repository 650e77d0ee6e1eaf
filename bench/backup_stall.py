#!/usr/bin/env python3
"""What a backup costs the writers: on a 3-node cluster holding --keys keys (each backend in
turn), wrk writes to the leader at 64 connections for --seconds, once alone and once while a
backup (GET /backup on the leader, the worst place for one) is taken every second; the two are
alternated --rounds times. Prints, per round, the write rate and p50/p99/p99.9, and for the
backups their count, size, how long each took to stream, and how long the raft loop held the
writers for the view (X-Backup-Stall-Us: the only time writers wait for a backup).

    python3 bench/backup_stall.py --binary build/src/raft-nginx --keys 100000 --seconds 5

Every process it starts is killed by PID when it ends.
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from compare import cluster  # noqa: E402


def preload(node, keys, value_bytes=100):
    batch = {}
    for i in range(keys):
        batch[f"pre/{i:08d}"] = "v" * value_bytes
        if len(batch) == 2000 or i == keys - 1:
            r = node.post("/key", batch, timeout=60)
            assert r.status == 200, r
            batch = {}


def take_backups(address, stop, results):
    """A backup every second until `stop`: (bytes, seconds to stream, stall µs) each."""
    host, port = address.rsplit(":", 1)
    while not stop.is_set():
        started = time.monotonic()
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("GET", "/backup")
        r = conn.getresponse()
        size = len(r.read())
        conn.close()
        if r.status == 200:
            results.append((size, time.monotonic() - started, int(r.getheader("X-Backup-Stall-Us"))))
        stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", default="memory,rocksdb")
    args = ap.parse_args()
    cluster.BINARY = os.path.abspath(args.binary)
    for backend in args.backends.split(","):
        root = tempfile.mkdtemp(prefix="raftnginx-backup-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
        c = cluster.Cluster(root)
        try:
            c.start(3, args=["--fsm", backend])
            leader = c.leader()
            preload(leader, args.keys)
            print(f"{backend}: {args.keys} keys of 100 bytes preloaded", flush=True)
            for round_ in range(1, args.rounds + 1):
                for with_backups in (False, True):
                    stop = threading.Event()
                    backups = []
                    taker = threading.Thread(target=take_backups, args=(leader.http, stop, backups))
                    if with_backups:
                        taker.start()
                    w = compare.wrk(leader.http, "rn_put", 64, args.seconds)
                    stop.set()
                    if with_backups:
                        taker.join()
                    line = (f"{backend} round={round_} backups={'yes' if with_backups else 'no '} "
                            f"writes/s={w['rate']:.0f} p50_ms={w['p50']:.2f} p99_ms={w['p99']:.2f} "
                            f"p999_ms={w['p999']:.2f} errors={w['errors'] + w['status_errors']}")
                    if backups:
                        line += (f" | backups={len(backups)} MiB={backups[-1][0] / 2**20:.1f} "
                                 f"stream_s={statistics.median(b[1] for b in backups):.2f} "
                                 f"stall_us_median={statistics.median(b[2] for b in backups):.0f} "
                                 f"stall_us_max={max(b[2] for b in backups)}")
                    print(line, flush=True)
        finally:
            c.close()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
