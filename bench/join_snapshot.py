#!/usr/bin/env python3
"""A new node joins a cluster holding GIGABYTES of state and catches up through a streamed
snapshot: how long it takes and the joining process's peak RSS (VmHWM), which must stay far
below the state's size because snapshots stream in chunks to disk.

  bench/join_snapshot.py --binary build/src/raft-nginx --gigabytes 1

Uses the multi-process test harness (tests/daemon/cluster.py); everything runs on loopback in a
temporary directory that is removed at the end.
"""
import argparse
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "daemon"))
import cluster  # noqa: E402


def rss_peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--gigabytes", type=float, default=1.0)
    ap.add_argument("--value-kib", type=int, default=1024)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    cluster.BINARY = os.path.abspath(args.binary)
    import tempfile
    import shutil
    root = tempfile.mkdtemp(prefix="raftnginx-join-bench-")
    c = cluster.Cluster(root)
    try:
        flags = ["--snapshot-threshold", "64", "--trailing-logs", "8", "--max-body", "8MiB",
                 "--snapshot-interval", "0"]
        leader = c.add("node1", flags)
        cluster.wait_until(lambda: leader.get("/readyz").status == 200, what="node1 ready")
        count = int(args.gigabytes * 1024 * 1024 / args.value_kib)
        payload = os.urandom(args.value_kib * 512).hex().encode()  # JSON-safe, incompressible
        began = time.monotonic()

        def put(i):
            value = f"{i:08d}".encode() + payload[8:]
            r = cluster.request(leader.http, "PUT", f"/key/blob{i}", body=value, timeout=60)
            if r.status != 200:
                raise RuntimeError(f"write {i}: {r}")

        with concurrent.futures.ThreadPoolExecutor(args.writers) as pool:
            for n, _ in enumerate(pool.map(put, range(count)), 1):
                if n % max(1, count // 10) == 0:
                    print(f"loaded {n}/{count} values", flush=True)
        load_s = time.monotonic() - began
        cluster.wait_until(lambda: leader.status()["snapshot_index"] >= leader.status()["applied_index"] - 64,
                           timeout=120, what="a snapshot of the loaded state")
        st = leader.status()
        print(f"loaded {count} x {args.value_kib} KiB in {load_s:.1f} s; leader snapshot at "
              f"{st['snapshot_index']}, leader peak RSS {rss_peak_kib(leader.proc.pid) // 1024} MiB")

        began = time.monotonic()
        joiner = c.add("node2", flags, join=leader)
        peak = 0
        while True:
            peak = max(peak, rss_peak_kib(joiner.proc.pid))
            try:
                js = joiner.status()
                if js["applied_index"] >= st["applied_index"] and js["snapshots_installed"] > 0:
                    break
            except OSError:
                pass
            if time.monotonic() - began > 600:
                raise RuntimeError("the joiner did not catch up within 600 s")
            time.sleep(0.1)
        catch_up_s = time.monotonic() - began
        peak = max(peak, rss_peak_kib(joiner.proc.pid))
        r = joiner.get(f"/key/blob{count - 1}")
        assert r.status == 200 and len(r.json()[f"blob{count - 1}"]) == args.value_kib * 1024
        print(f"joined: state {count * args.value_kib // 1024} MiB, caught up by snapshot in "
              f"{catch_up_s:.1f} s, joiner peak RSS {peak // 1024} MiB")
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
