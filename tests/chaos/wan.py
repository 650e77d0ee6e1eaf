#!/usr/bin/env python3
"""The short WAN scenario of `make test`: three voters at three sites and a learner at a fourth,
every raft connection through chaos.py's link emulator (one-way delay with +-20% jitter, 0.5% of
chunks held back a retransmission timeout, and a thin uplink to the learner), with chaos.py's
clients (writes, deletes, compare-and-sets, reads of both levels) and a watcher recording every
operation. The daemons run with --rtt set to the longest round trip.

  1. calm: the clients run; no election may happen.
  2. the learner goes offline (every link to it blocked) while a bulk of data is written and the
     leader's log is compacted past it. It comes back over a 256 KB/s link; once it has staged
     part of the snapshot that catch-up needs, the link is cut again, then healed. The transfer
     must resume where it stopped (the leader's raftnginx_snapshot_resumed_bytes_total), and the
     learner catch up without a restart.
  3. the leader is killed (kill -9) and restarted: one new leader is elected, and no election
     follows while the clients run on.
  4. chaos.py's checks: the history is linearizable, no acknowledged write is lost, every node
     holds the same data, the watcher saw every change once and in order.

Prints one line, and exits 0 only if every check passed:

  voters=3 learners=1 rtt_ms=40-100 elections=E write_p99_ms=P resumed_bytes=B catchup_s=C
  ops=N ... linearizable=yes lost=0 ... passed=yes

    tests/chaos/wan.py --binary build/src/raft-nginx [--seed N] [--calm 8]

Traffic stays on 127.0.0.1; every process it starts is killed by PID when it ends.
"""
import argparse
import base64
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402
from chaos import Link, Scenario, cluster  # noqa: E402

SITES = {"node1": "A", "node2": "B", "node3": "C", "node4": "D"}
LEARNER = "node4"
RTT_MS = {frozenset("AB"): 40, frozenset("AC"): 60, frozenset("BC"): 80,
          frozenset("AD"): 100, frozenset("BD"): 100, frozenset("CD"): 100}
JITTER = 0.2
LOSS = 0.005
THIN_UPLINK = 256 << 10  # bytes per second from the voters to the learner, once it is back
BULK_KEYS, BULK_VALUE = 240, 8 << 10
TRAILING_LOGS = 150


class WanScenario(Scenario):
    def __init__(self, root, args, seed):
        super().__init__(root, args, seed, len(SITES), False)
        self.latencies = []
        self.report = {}
        rng = random.Random(seed)
        for a in SITES:
            for b in SITES:
                if a != b:
                    rtt = RTT_MS[frozenset(SITES[a] + SITES[b])]
                    self.network.shape(a, b, Link(delay_ms=rtt / 2, jitter=JITTER, loss=LOSS,
                                                  seed=rng.randrange(1 << 30)))

    def node_flags(self, name):
        # A snapshot every 100 entries while the clients write, and 150 entries kept behind it:
        # the one a broken stream carried is still the one to resume after the next is taken.
        return ["--rtt", f"{max(RTT_MS.values())}ms", "--snapshot-threshold", "100",
                "--trailing-logs", str(TRAILING_LOGS), "--kv-watch-progress", "300ms",
                *(["--learner"] if name == LEARNER else [])]

    def start(self):
        first = self.start_node("node1")
        cluster.wait_until(lambda: first.get("/readyz").status == 200, what="node1 ready")
        for name in SITES:
            if name != "node1":
                self.start_node(name, join=first)
        self.cluster.wait_members(len(SITES), timeout=60)
        self.cluster.wait_ready(timeout=60)

    def write(self, address, client_id, key, value):
        began = time.monotonic()
        before = len(self.acked_puts)
        super().write(address, client_id, key, value)
        if len(self.acked_puts) > before:
            self.latencies.append((time.monotonic() - began) * 1000)

    def term(self):
        terms = []
        for d in self.cluster.running():
            try:
                terms.append(d.status()["term"])
            except (OSError, ValueError):
                pass
        if not terms:
            raise AssertionError("no node answered /status")
        return max(terms)

    def agreed_leader(self):
        return cluster.wait_until(self.leader, timeout=30, what="a leader")

    def status(self, name):
        return self.cluster.nodes[name].status()

    def voters(self):
        return [n for n in SITES if n != LEARNER]

    def isolate_learner(self, blocked):
        if blocked:
            self.network.isolate([LEARNER])
        else:
            self.network.heal()

    def bulk(self):
        """Writes BULK_KEYS values of random bytes, in posts of 20 keys."""
        rng = random.Random(self.seed)
        for start in range(0, BULK_KEYS, 20):
            body = {f"bulk/{i}": base64.b64encode(rng.randbytes(BULK_VALUE * 3 // 4)).decode()
                    for i in range(start, min(BULK_KEYS, start + 20))}
            r = cluster.request(self.agreed_leader().http, "POST", "/key", body=json.dumps(body),
                                timeout=30)
            if r.status != 200:
                raise AssertionError(f"bulk write: {r}")

    def outage_and_resume(self):
        learner = self.cluster.nodes[LEARNER]
        installed = self.status(LEARNER)["snapshots_installed"]
        self.faults.append(f"{self.history.now():.1f}s learner offline")
        self.isolate_learner(True)
        offline_at = self.status(LEARNER)["applied_index"]
        self.bulk()
        leader = self.agreed_leader()
        cluster.wait_until(
            lambda: leader.status()["snapshot_index"] > offline_at + TRAILING_LOGS + 50,
            timeout=60, what="the leader's log compacted past the learner")
        for v in self.voters():
            self.network.link(v, LEARNER).bytes_per_s = THIN_UPLINK
        self.faults.append(f"{self.history.now():.1f}s learner back over a thin link")
        self.isolate_learner(False)
        cluster.wait_until(lambda: learner.staged_snapshot_bytes() > 300 << 10, timeout=60,
                           interval=0.02, what="the learner staging part of the snapshot")
        self.faults.append(f"{self.history.now():.1f}s link cut mid-snapshot "
                           f"({learner.staged_snapshot_bytes()} bytes staged)")
        self.isolate_learner(True)
        self.sleep(1.0)
        back = time.monotonic()
        self.isolate_learner(False)
        target = leader.status()["commit_index"]
        cluster.wait_until(lambda: learner.status()["applied_index"] >= target, timeout=120,
                           interval=0.1, what="the learner caught up")
        self.report["catchup_s"] = time.monotonic() - back
        self.report["resumed_bytes"] = sum(
            int(d.metric("raftnginx_snapshot_resumed_bytes_total") or 0)
            for d in self.cluster.running())
        self.report["snapshot_installed"] = self.status(LEARNER)["snapshots_installed"] > installed
        self.restarted.add(LEARNER)  # a snapshot skipped entries: its applied count differs
        for v in self.voters():
            self.network.link(v, LEARNER).bytes_per_s = 0

    def leader_kill(self):
        old = self.agreed_leader()
        before = self.term()
        self.faults.append(f"{self.history.now():.1f}s kill -9 {old.name}")
        old.kill()
        self.restarted.add(old.name)
        cluster.wait_until(lambda: self.leader() is not None, timeout=30, what="a new leader")
        old.start()
        cluster.wait_until(lambda: old.get("/readyz").status == 200, timeout=30,
                           what=f"{old.name} ready again")
        self.report["kill_terms"] = self.term() - before

    def run(self, seconds):
        self.start()
        workers = [threading.Thread(target=self.client, args=(i,))
                   for i in range(self.args.clients)]
        workers.append(threading.Thread(target=self.watcher, args=(0,)))
        for t in workers:
            t.start()
        try:
            start_term = self.term()
            self.sleep(seconds)
            self.outage_and_resume()
            self.report["quiet_terms"] = self.term() - start_term
            self.leader_kill()
            settled = self.term()
            self.sleep(seconds)
            self.report["after_terms"] = self.term() - settled
        finally:
            self.stop.set()
            for t in workers:
                t.join()
        return self.verify()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--calm", type=float, default=8, help="seconds of each calm phase")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--keep", default=None, help="where to keep a failed run (default: a temp dir)")
    args = ap.parse_args()
    args.watchers, args.integrity = 1, False
    cluster.BINARY = os.path.abspath(args.binary)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    root = tempfile.mkdtemp(prefix="raftnginx-wan-")
    s = WanScenario(root, args, seed)
    try:
        r = s.run(args.calm)
    except Exception as e:  # a scenario that cannot finish is a failure too
        s.faults.append(f"error: {e!r}")
        r = dict(ops=len(s.history.ops), ok=0, unknown=0, faults=len(s.faults), lost=0,
                 diverged=0, linearizable=False, watched=0, watch_bad=0, passed=False,
                 bad_keys=[], error=repr(e))
    finally:
        s.close()
    rep = s.report
    lat = sorted(s.latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    elections = rep.get("quiet_terms", -1) + rep.get("after_terms", -1)
    checks = {
        "no election while calm or while the learner was away": rep.get("quiet_terms") == 0,
        "one new leader after the kill (at most 3 terms)": 1 <= rep.get("kill_terms", 0) <= 3,
        "no election after the new leader": rep.get("after_terms") == 0,
        "the learner installed a snapshot": rep.get("snapshot_installed") is True,
        "the snapshot transfer resumed": rep.get("resumed_bytes", 0) > 0,
    }
    passed = r["passed"] and all(checks.values())
    print(f"seed={seed} voters=3 learners=1 rtt_ms=40-100 elections={elections} "
          f"write_p99_ms={p99:.0f} resumed_bytes={rep.get('resumed_bytes', 0)} "
          f"catchup_s={rep.get('catchup_s', float('nan')):.1f}")
    print(chaos.summary(r) + (f" error={r['error']}" if "error" in r else "")
          + f" passed={'yes' if passed else 'no'}")
    for what, ok in checks.items():
        if not ok:
            print(f"  FAILED: {what}")
    if not passed:
        keep = os.path.join(args.keep or tempfile.gettempdir(), f"raftnginx-wan-failed-{seed}")
        s.save(keep)
        print(f"  history, faults and node logs kept in {keep}")
    shutil.rmtree(root, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
