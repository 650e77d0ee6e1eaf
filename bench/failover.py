#!/usr/bin/env python3
"""Failover time with the default timeouts: kill -9 the leader of a 3-node cluster while a
client writes, and time from the kill until a write succeeds again (through any surviving node,
following 307 to the new leader). Repeats ROUNDS times, restarting the killed node in between.

  bench/failover.py --binary build/src/raft-nginx --rounds 5
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "daemon"))
import cluster  # noqa: E402


def write_once(nodes, i):
    """One write through any running node, following one redirect; True if it succeeded."""
    for node in nodes:
        try:
            r = cluster.request(node.http, "POST", "/key", body={"seq": str(i)}, timeout=2)
            if r.status == 307:
                r = cluster.request(r.header("X-Raft-Leader"), "POST", "/key",
                                    body={"seq": str(i)}, timeout=2)
            if r.status == 200:
                return True
        except OSError:
            continue
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("flags", nargs="*", help="extra daemon flags, after --")
    args = ap.parse_args()
    cluster.BINARY = os.path.abspath(args.binary)
    root = tempfile.mkdtemp(prefix="raftnginx-failover-")
    c = cluster.Cluster(root)
    times = []
    try:
        c.start(3, args=args.flags)
        for round_ in range(args.rounds):
            leader = c.leader()
            for i in range(20):
                assert write_once([leader], i)
            leader.proc.kill()
            killed = time.monotonic()
            survivors = [d for d in c.running() if d is not leader]
            i = 0
            while not write_once(survivors, i):
                i += 1
                time.sleep(0.01)
            elapsed = time.monotonic() - killed
            times.append(elapsed)
            print(f"round {round_ + 1}: write accepted again {elapsed * 1000:.0f} ms after kill -9 of {leader.name}",
                  flush=True)
            leader.proc.wait()
            leader.start()
            c.wait_members(3)
            c.wait_converged()
        print(f"failover: median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms "
              f"over {len(times)} rounds")
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
