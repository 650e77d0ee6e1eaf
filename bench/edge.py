#!/usr/bin/env python3
"""Edge conditions on this machine (`make edge`): WAN links between sites, many read replicas,
long outages, and a learner's catch-up over a thin link.

Every raft connection that crosses a site goes through the chaos tool's proxy
(tests/chaos/chaos.py: Link), which delays each direction by half the pair's round trip, with
+-20% jitter, holds back a share of chunks a retransmission timeout (200 ms) as TCP would after a
loss, caps bandwidth, and keeps at most a window in flight. Everything stays on 127.0.0.1.

Phases (each on fresh clusters):
  rtt       3 voters with one round trip between every pair (direct loopback, then 0, 50, 100
            and 200 ms through the proxies), raft-nginx with --rtt and etcd 3.4 with the same
            rule for its timeouts, side by side: write latency at 1 connection, throughput at 64
            and 512 (64 clients that each wait a round trip cannot exceed 64/RTT writes/s).
  quiet     3 voters at 3 sites (RTT 50/100/200 ms, 1% loss), then 5 voters across the same 3
            sites (2+2+1), --rtt 200ms: elections while one client writes.
  learners  3 voters and 0, 10, 20 learners on loopback (memory backend, no nginx): the leader's
            CPU per write at a fixed rate (400 writes/s, the same work at every point; median of
            3 rounds), then under as many writes as 16 connections make, the throughput, the
            leader's CPU per write and the learners' staleness (how long ago the leader had
            committed the oldest entry a learner has not applied yet), sampled every 200 ms.
  outage    3 voters and a learner; a follower and the learner are cut off from every voter:
            both keep serving stale reads with X-Raft-Last-Contact and accept no write; then
            the links come back and both catch up without a restart.
  catchup   a learner offline past the leader's compaction returns over a 1 MB/s link: once
            with the snapshot transfer cut at half for 2 s (it resumes), once uninterrupted.

Prints one line per measurement and the summary
  voters=3 learners=20 rtt_ms=50-200 elections=E write_p99_ms=P learner_lag_p99_ms=G catchup_s=C
and, with --docs, writes each phase's part of docs/edge.md (between its markers, so that one
phase can be run again alone) and its plot in docs/img/edge-*.png, and the summary once every
phase ran.

    python3 bench/edge.py --binary build/src/raft-nginx --mode quick [--docs]   # about 9 minutes

Every process it starts is killed by PID when it ends.
"""
import argparse
import asyncio
import base64
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "tests", "chaos"))
import cluster  # noqa: E402
from chaos import Link, Network, Proxy, node_id_for  # noqa: E402
from compare import Etcd, cpu_seconds, replace_between, wrk  # noqa: E402

MODES = {
    "quick": dict(rtts=["direct", 0, 50, 100, 200], point_s=5, quiet_s=30, learners=[0, 10, 20],
                  load_s=6, paced_s=4, outage_s=60, snapshot_mb=8),
    "full": dict(rtts=["direct", 0, 25, 50, 100, 200], point_s=8, quiet_s=600,
                 learners=[0, 5, 10, 20], load_s=10, paced_s=8, outage_s=600, snapshot_mb=32),
}
JITTER = 0.2
SITE_RTT_MS = {frozenset("AB"): 50, frozenset("AC"): 100, frozenset("BC"): 200,
               frozenset("AD"): 100, frozenset("BD"): 100, frozenset("CD"): 100}
THIN_LINK = 1 << 20  # bytes per second to a returning learner
LEARNER_RATE = 400  # writes/s for the learners' fixed-rate rounds: reachable with 20 learners
PACED_ROUNDS = 3


def log(msg):
    print(msg, flush=True)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def timeouts_for(rtt_ms):
    """README's rule (--rtt): heartbeat one round trip, election ten, at least 50/500 ms."""
    return max(50, rtt_ms), max(500, 10 * rtt_ms)


class Sites:
    """Raft-nginx nodes, each at a site, every raft connection between sites through a proxy
    shaped by the sites' round trip."""

    def __init__(self, root, rtt_ms, loss=0.0, seed=1):
        os.makedirs(root, exist_ok=True)
        self.root = root
        self.rtt_ms = rtt_ms  # frozenset of two sites -> ms
        self.loss = loss
        self.rng = random.Random(seed)
        self.network = Network()
        self.cluster = cluster.Cluster(root)
        self.site = {}

    def add(self, name, site, flags, join=None, learner=False):
        for other, other_site in self.site.items():
            if other_site != site:
                rtt = self.rtt_ms[frozenset(site + other_site)]
                for a, b in ((name, other), (other, name)):
                    self.network.shape(a, b, Link(delay_ms=rtt / 2, jitter=JITTER, loss=self.loss,
                                                  seed=self.rng.randrange(1 << 30)))
        self.site[name] = site
        real = cluster.free_port()
        d = cluster.Daemon(self.root, name, raft_port=real)
        proxy = Proxy(name, real, self.network)
        self.network.proxies[name] = proxy
        self.network.names[node_id_for(name)] = name
        d.raft = f"127.0.0.1:{real}"
        d.args = ["--raft-advertise", f"127.0.0.1:{proxy.port}", *flags]
        if join is not None:
            d.args += ["-join", join.http] + (["--learner"] if learner else [])
        self.cluster.nodes[name] = d
        d.start()
        if join is None:
            cluster.wait_until(lambda: d.get("/readyz").status == 200, what=f"{name} ready")
        return d

    def start(self, sites, flags, learners=()):
        """`sites`: name -> site of the voters (the first bootstraps); `learners` likewise."""
        first = None
        for name, site in sites.items():
            d = self.add(name, site, flags, join=first)
            first = first or d
        for name, site in dict(learners).items():
            self.add(name, site, flags, join=first, learner=True)
        self.cluster.wait_members(len(sites) + len(dict(learners)), timeout=90)
        self.cluster.wait_ready(timeout=90)
        return self

    def isolate(self, names, isolated=True):
        """Cuts every link between `names` and the other nodes (or heals all)."""
        if isolated:
            self.network.isolate(names)
        else:
            self.network.heal()

    def cap(self, to, bytes_per_s):
        for name in self.cluster.nodes:
            link = self.network.link(name, to)
            if link is not None:
                link.bytes_per_s = bytes_per_s

    def term(self):
        return max(d.status()["term"] for d in self.cluster.running())

    def close(self):
        self.cluster.close()
        for p in self.network.proxies.values():
            p.close()


def sequential_writes(address, seconds, prefix):
    """One client writing one key at a time (following 307s): latencies in ms, failures."""
    latencies, failures, i = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i += 1
        began = time.monotonic()
        try:
            r = cluster.request(address, "PUT", f"/key/{prefix}{i % 100}", body=str(i), timeout=10)
            if r.status == 307 and r.header("X-Raft-Leader"):
                address = r.header("X-Raft-Leader")
                continue
            if r.status == 200:
                latencies.append((time.monotonic() - began) * 1000)
            else:
                failures += 1
        except OSError:
            failures += 1
    return latencies, failures


# ---------------------------------------------------------------------------------------------
# rtt: latency and throughput against the round trip, raft-nginx and etcd side by side


def uniform_raft(root, binary, rtt):
    """3 raft-nginx voters, `rtt` ms between every pair ("direct": no proxies at all)."""
    if rtt == "direct":
        os.makedirs(root)
        c = cluster.Cluster(root)
        c.start(3)
        return c, c.close
    s = Sites(root, {frozenset("AB"): rtt, frozenset("AC"): rtt, frozenset("BC"): rtt})
    flags = ["--rtt", f"{rtt}ms"] if rtt else []
    s.start({"node1": "A", "node2": "B", "node3": "C"}, flags)
    return s.cluster, s.close


def uniform_etcd(root, rtt):
    """3 etcd members, each reached through a proxy of `rtt` ms (none: "direct"), timeouts by the
    same rule as --rtt."""
    os.makedirs(root, exist_ok=True)
    etcd = Etcd(root)
    network = Network()
    proxies = []

    def prepare(member):
        if rtt == "direct":
            return
        real = int(member.peer.rsplit(":", 1)[1])
        proxy = Proxy(member.name, real, network, source="*")
        # Both directions: etcd sends a peer its messages on the stream the peer dialled.
        for i, (a, b) in enumerate((("*", member.name), (member.name, "*"))):
            network.shape(a, b, Link(delay_ms=rtt / 2, jitter=JITTER, seed=2 * len(proxies) + i))
        proxies.append(proxy)
        member.advertised_peer = f"127.0.0.1:{proxy.port}"
        if rtt:
            heartbeat, election = timeouts_for(rtt)
            member.flags = ["--heartbeat-interval", str(heartbeat),
                            "--election-timeout", str(election)]

    etcd.start(3, prepare=prepare)

    def close():
        etcd.close()
        for p in proxies:
            p.close()
    return etcd, close


def phase_rtt(root, binary, mode, results):
    points = []
    for rtt in mode["rtts"]:
        point = {"rtt": rtt}
        for system in ("raft-nginx", "etcd"):
            folder = os.path.join(root, f"{system}-{rtt}")
            if system == "raft-nginx":
                c, close = uniform_raft(folder, binary, rtt)
                address, op = c.leader().http, "rn_put"
            else:
                c, close = uniform_etcd(folder, rtt)
                address, op = c.leader().client, "etcd_put"
            try:
                one = wrk(address, op, 1, mode["point_s"])
                many = wrk(address, op, 64, mode["point_s"])
                most = wrk(address, op, 512, mode["point_s"])
            finally:
                close()
            errors = one["errors"] + many["errors"] + most["errors"]
            point[system] = {"p50": one["p50"], "p99": one["p99"], "rate64": many["rate"],
                             "p99_64": many["p99"], "rate512": most["rate"],
                             "p99_512": most["p99"], "errors": errors}
            log(f"rtt={rtt} {system}: 1 conn p50 {one['p50']:.1f} p99 {one['p99']:.1f} ms; "
                f"64 conns {many['rate']:.0f}/s p99 {many['p99']:.1f} ms; 512 conns "
                f"{most['rate']:.0f}/s p99 {most['p99']:.1f} ms; errors {errors}")
        points.append(point)
    results["rtt"] = points


# ---------------------------------------------------------------------------------------------
# quiet: elections over the emulated WAN


def phase_quiet(root, binary, mode, results):
    runs = []
    for voters in (3, 5):
        layout = {"node1": "A", "node2": "B", "node3": "C"} if voters == 3 else \
            {"node1": "A", "node2": "B", "node3": "C", "node4": "A", "node5": "B"}
        s = Sites(os.path.join(root, f"quiet{voters}"), SITE_RTT_MS, loss=0.01, seed=voters)
        try:
            s.start(layout, ["--rtt", "200ms"])
            first = s.term()
            latencies, failures = sequential_writes(s.cluster.leader().http, mode["quiet_s"], "q")
            run = {"voters": voters, "seconds": mode["quiet_s"], "elections": s.term() - first,
                   "writes": len(latencies), "failed": failures,
                   "p50": statistics.median(latencies), "p99": percentile(latencies, 0.99)}
        finally:
            s.close()
        runs.append(run)
        log(f"quiet voters={voters} {run['seconds']} s: elections {run['elections']}, "
            f"{run['writes']} writes ({run['failed']} failed), p50 {run['p50']:.1f} "
            f"p99 {run['p99']:.1f} ms")
    results["quiet"] = runs


# ---------------------------------------------------------------------------------------------
# learners: the leader's cost and the learners' staleness as learners are added


class Staleness:
    """Follows the leader's commit index (every 5 ms) and samples every learner's applied index
    every 200 ms; a learner's staleness at a sample is how long before it the leader had
    committed the oldest entry the learner has not applied (0 if it has applied all)."""

    def __init__(self, leader, learners):
        self.leader = leader
        self.learners = learners
        self.commits = []  # (time the leader was asked, commit index)
        self.samples = []  # (time the learner was asked, applied index)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._follow_leader)]
        self.threads += [threading.Thread(target=self._sample, args=(d,)) for d in learners]

    def _follow_leader(self):
        while not self.stop.wait(0.005):
            asked = time.monotonic()
            try:
                commit = self.leader.status()["commit_index"]
            except (OSError, ValueError):
                continue
            with self.lock:
                self.commits.append((asked, commit))

    def _sample(self, learner):
        while not self.stop.wait(0.2):
            asked = time.monotonic()
            try:
                applied = learner.status()["applied_index"]
            except (OSError, ValueError):
                continue
            with self.lock:
                self.samples.append((asked, applied))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def lags_ms(self):
        lags = []
        for t, applied in self.samples:
            first_beyond = next((ct for ct, c in self.commits if c > applied), None)
            lags.append(0.0 if first_beyond is None or first_beyond > t else (t - first_beyond) * 1000)
        return lags


async def paced_writes(address, rate, seconds, conns=16):
    """`rate` writes/s for `seconds` over `conns` kept-alive connections, each write sent at its
    time whatever the others do; returns how many answered 200."""
    host, port = address.rsplit(":", 1)
    total = int(rate * seconds)
    start = time.monotonic() + 0.05
    body = b"v" * 64
    done = []

    async def one(c):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for n in range(c, total, conns):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(f"PUT /key/paced{n % 1000} HTTP/1.1\r\nHost: edge\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                length = next(int(h.split(":", 1)[1]) for h in head
                              if h.lower().startswith("content-length:"))
                await reader.readexactly(length)
                done.append(head[0].split()[1] == "200")
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(c) for c in range(conns))), seconds + 30)
    return sum(done)


def paced_cpu(leader, members, seconds):
    """The leader's and all members' CPU µs per write in one round at LEARNER_RATE."""
    pids = [d.proc.pid for d in members]
    before, all_before = cpu_seconds([leader.proc.pid]), cpu_seconds(pids)
    writes = asyncio.run(paced_writes(leader.http, LEARNER_RATE, seconds))
    if writes < LEARNER_RATE * seconds * 0.95:
        raise RuntimeError(f"paced writes: {writes} of {LEARNER_RATE * seconds} succeeded")
    return ((cpu_seconds([leader.proc.pid]) - before) / writes * 1e6,
            (cpu_seconds(pids) - all_before) / writes * 1e6)


def phase_learners(root, binary, mode, results):
    os.makedirs(root)
    c = cluster.Cluster(root)
    flags = ["--fsm", "memory"]
    points = []
    try:
        c.start(3, args=flags)
        leader = c.leader()
        learners = []
        for count in mode["learners"]:
            while len(learners) < count:
                learners.append(c.add(f"learner{len(learners) + 1}", flags + ["--learner"],
                                      join=leader))
            c.wait_members(3 + count, timeout=120)
            c.wait_converged(timeout=120)
            rounds = sorted(paced_cpu(leader, list(c.nodes.values()), mode["paced_s"])
                            for _ in range(PACED_ROUNDS))
            cpu_before = cpu_seconds([leader.proc.pid])
            with Staleness(leader, learners) as st:
                load = wrk(leader.http, "rn_put", 16, mode["load_s"])
            cpu = cpu_seconds([leader.proc.pid]) - cpu_before
            lags = st.lags_ms()
            leader_paced = [r[0] for r in rounds]
            point = {"learners": count, "rate": load["rate"],
                     "leader_cpu_us_per_write": cpu / max(load["requests"], 1) * 1e6,
                     "paced_leader_us": statistics.median(leader_paced),
                     "paced_leader_range": [min(leader_paced), max(leader_paced)],
                     "paced_all_us": statistics.median(r[1] for r in rounds),
                     "lag_p50": percentile(lags, 0.5) if lags else 0.0,
                     "lag_p99": percentile(lags, 0.99) if lags else 0.0,
                     "lag_max": max(lags) if lags else 0.0}
            points.append(point)
            log(f"learners={count}: at {LEARNER_RATE} writes/s the leader's CPU "
                f"{point['paced_leader_us']:.0f} us/write (rounds "
                f"{', '.join(f'{v:.0f}' for v in leader_paced)}), all members' "
                f"{point['paced_all_us']:.0f}; at most {load['rate']:.0f} writes/s, leader CPU "
                f"{point['leader_cpu_us_per_write']:.1f} us/write, staleness p50 "
                f"{point['lag_p50']:.0f} p99 {point['lag_p99']:.0f} max {point['lag_max']:.0f} ms")
    finally:
        c.close()
    results["learners"] = points


# ---------------------------------------------------------------------------------------------
# outage: a follower and a learner cut off from every voter


def phase_outage(root, binary, mode, results):
    s = Sites(root, SITE_RTT_MS, seed=3)
    try:
        s.start({"node1": "A", "node2": "B", "node3": "C"}, ["--rtt", "200ms"],
                learners={"node4": "D"})
        leader = s.cluster.leader()
        cut = [n for n in ("node2", "node3") if s.cluster.nodes[n] is not leader][:1] + ["node4"]
        leader.request("PUT", "/key/outage", body="before")
        s.cluster.wait_converged(timeout=30)
        first = s.term()
        s.isolate(cut)
        reads = served = writes_taken = majority_writes = 0
        contact = {n: 0 for n in cut}
        end = time.monotonic() + mode["outage_s"]
        while time.monotonic() < end:
            for n in cut:
                d = s.cluster.nodes[n]
                r = d.get("/key/outage?level=stale", timeout=5)
                reads += 1
                if r.status == 200 and r.json().get("outage") == "before" \
                        and r.header("X-Raft-Last-Contact"):
                    served += 1
                    contact[n] = max(contact[n], int(r.header("X-Raft-Last-Contact")))
                w = d.request("PUT", "/key/outage-write", body=n, timeout=5)
                writes_taken += w.status == 200
            majority_writes += s.cluster.nodes[leader.name].request(
                "PUT", "/key/outage-majority", body=str(time.monotonic()), timeout=5).status == 200
            time.sleep(1.0)
        healed = time.monotonic()
        s.isolate(cut, isolated=False)
        target = leader.status()["commit_index"]
        cluster.wait_until(lambda: all(s.cluster.nodes[n].status()["applied_index"] >= target
                                       for n in cut), timeout=120, interval=0.1,
                           what="the cut-off nodes caught up")
        run = {"seconds": mode["outage_s"], "cut": cut, "reads": reads, "served": served,
               "writes_taken": writes_taken, "majority_writes": majority_writes,
               "last_contact_s": {n: v / 1000 for n, v in contact.items()},
               "catchup_s": time.monotonic() - healed, "elections": s.term() - first}
    finally:
        s.close()
    results["outage"] = run
    log(f"outage {run['seconds']} s of {', '.join(cut)}: {served}/{reads} stale reads served, "
        f"{writes_taken} writes taken while cut off, {majority_writes} majority writes, "
        f"last contact up to {max(run['last_contact_s'].values()):.0f} s, caught up in "
        f"{run['catchup_s']:.1f} s, elections {run['elections']}")


# ---------------------------------------------------------------------------------------------
# catchup: a learner past compaction returns over a 1 MB/s link


def snapshot_bytes(node):
    """Bytes of a node's newest sealed snapshot."""
    root = os.path.join(node.data_dir, "snapshots")
    sealed = sorted((e for e in os.listdir(root) if not e.startswith("tmp-") and "-" in e),
                    key=lambda e: int(e.split("-")[0]))
    total = 0
    for base, _, files in os.walk(os.path.join(root, sealed[-1])):
        total += sum(os.path.getsize(os.path.join(base, f)) for f in files)
    return total


def phase_catchup(root, binary, mode, results):
    s = Sites(root, SITE_RTT_MS, seed=4)
    runs = []
    try:
        s.start({"node1": "A", "node2": "B", "node3": "C"},
                ["--snapshot-threshold", "16", "--trailing-logs", "4"], learners={"node4": "D"})
        learner = s.cluster.nodes["node4"]
        leader = s.cluster.leader()
        rng = random.Random(4)
        value_bytes, per_post = 8 << 10, 32
        posts = mode["snapshot_mb"] * (1 << 20) // (value_bytes * per_post)
        for label, cut_at in (("cut at half for 2 s", 0.5), ("uninterrupted", None)):
            s.isolate(["node4"])
            offline_at = learner.status()["applied_index"]
            for p in range(posts if not runs else 1):
                body = {f"bulk/{p}/{i}": base64.b64encode(rng.randbytes(value_bytes * 3 // 4))
                        .decode() for i in range(per_post)}
                r = leader.request("POST", "/key", body=json.dumps(body), timeout=60)
                assert r.status == 200, r
            for i in range(40):
                leader.request("PUT", f"/key/small{i}", body="x", timeout=30)
            cluster.wait_until(lambda: leader.status()["snapshot_index"] > offline_at + 8,
                               timeout=60, what="the leader's log compacted past the learner")
            total = snapshot_bytes(leader)
            resumed_before = leader.metric("raftnginx_snapshot_resumed_bytes_total")
            sent_before = leader.metric("raftnginx_snapshot_sent_bytes_total")
            s.cap("node4", THIN_LINK)
            began = time.monotonic()
            timeline = []
            s.isolate(["node4"], isolated=False)
            target = leader.status()["commit_index"]
            cut_done = cut_at is None
            while learner.status()["applied_index"] < target:
                staged = learner.staged_snapshot_bytes()
                if staged or not timeline or not timeline[-1][1]:  # not once it is sealed
                    timeline.append((time.monotonic() - began, staged))
                if not cut_done and staged >= total * cut_at:
                    s.isolate(["node4"])
                    time.sleep(2.0)
                    s.isolate(["node4"], isolated=False)
                    cut_done = True
                if time.monotonic() - began > 300:
                    raise RuntimeError("the learner did not catch up within 300 s")
                time.sleep(0.05)
            run = {"label": label, "snapshot_mb": total / (1 << 20),
                   "catchup_s": time.monotonic() - began,
                   "sent_mb": (leader.metric("raftnginx_snapshot_sent_bytes_total") - sent_before)
                   / (1 << 20),
                   "resumed_mb": (leader.metric("raftnginx_snapshot_resumed_bytes_total")
                                  - resumed_before) / (1 << 20),
                   "timeline": timeline}
            s.cap("node4", 0)
            runs.append(run)
            log(f"catch-up over 1 MB/s, {label}: snapshot {run['snapshot_mb']:.1f} MB, caught up "
                f"in {run['catchup_s']:.1f} s, sent {run['sent_mb']:.1f} MB, resumed "
                f"{run['resumed_mb']:.1f} MB")
    finally:
        s.close()
    results["catchup"] = runs


# ---------------------------------------------------------------------------------------------
# Output


def summary(results):
    quiet3 = next(r for r in results["quiet"] if r["voters"] == 3)
    elections = sum(r["elections"] for r in results["quiet"]) + results["outage"]["elections"]
    lag = results["learners"][-1]
    cut = results["catchup"][0]
    return (f"voters=3 learners={lag['learners']} rtt_ms=50-200 elections={elections} "
            f"write_p99_ms={quiet3['p99']:.0f} learner_lag_p99_ms={lag['lag_p99']:.0f} "
            f"catchup_s={cut['catchup_s']:.1f}")


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


PLOT_HEAD = 'set terminal pngcairo size 900,420 font "sans,10"\nset grid\n'


def render_rtt(results, tmp, img):
    rtt = os.path.join(tmp, "rtt.dat")
    with open(rtt, "w") as f:
        for p in results["rtt"]:
            if p["rtt"] != "direct":
                rn, et = p["raft-nginx"], p["etcd"]
                f.write(f"{p['rtt']} {rn['p50']} {rn['p99']} {et['p50']} {et['p99']} "
                        f"{rn['rate64']} {et['rate64']} {rn['rate512']} {et['rate512']}\n")
    gnuplot(PLOT_HEAD + f"""
set output "{os.path.join(img, 'edge-rtt.png')}"
set multiplot layout 1,2 title "3 voters, one round trip between every pair (emulated, +-20% jitter)"
set key top left
set xlabel "round trip (ms)"
set ylabel "write latency at 1 connection (ms)"
plot "{rtt}" using 1:3 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "raft-nginx p99", \\
     "{rtt}" using 1:2 with linespoints dt 2 pt 6 lc rgb "#1f77b4" title "raft-nginx p50", \\
     "{rtt}" using 1:5 with linespoints lw 2 pt 5 lc rgb "#d62728" title "etcd p99", \\
     "{rtt}" using 1:4 with linespoints dt 2 pt 4 lc rgb "#d62728" title "etcd p50"
set ylabel "writes per second"
set logscale y
set key top right
plot "{rtt}" using 1:8 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "raft-nginx, 512 conns", \\
     "{rtt}" using 1:6 with linespoints dt 2 pt 6 lc rgb "#1f77b4" title "raft-nginx, 64 conns", \\
     "{rtt}" using 1:9 with linespoints lw 2 pt 5 lc rgb "#d62728" title "etcd, 512 conns", \\
     "{rtt}" using 1:7 with linespoints dt 2 pt 4 lc rgb "#d62728" title "etcd, 64 conns"
unset multiplot
""")
    lines = ["3 voters, the same round trip between every pair, ±20% jitter, no loss; raft-nginx "
             "with `--rtt`, etcd 3.4 with `--heartbeat-interval`/`--election-timeout` by the same "
             "rule; wrk writes to the leader, one point per system back to back. `direct`: plain "
             "loopback, no proxy; `0`: through the proxies with no delay (their own cost).", "",
             "| RTT (ms) | 1 conn p50 / p99: raft-nginx | etcd | 64 conns: raft-nginx | etcd | "
             "64/RTT | 512 conns: raft-nginx | etcd |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in results["rtt"]:
        rn, et = p["raft-nginx"], p["etcd"]
        ceiling = f"{64000 / p['rtt']:,.0f}/s" if p["rtt"] not in ("direct", 0) else "-"
        lines.append(f"| {p['rtt']} | {rn['p50']:.1f} / {rn['p99']:.1f} ms | {et['p50']:.1f} / "
                     f"{et['p99']:.1f} ms | {rn['rate64']:,.0f}/s | {et['rate64']:,.0f}/s | "
                     f"{ceiling} | {rn['rate512']:,.0f}/s | {et['rate512']:,.0f}/s |")
    direct = next(p for p in results["rtt"] if p["rtt"] == "direct")["raft-nginx"]
    at100 = next((p for p in results["rtt"] if p["rtt"] == 100), None)
    if at100:
        rn = at100["raft-nginx"]
        lines += ["", f"At 100 ms, raft-nginx's throughput is {rn['rate64'] / direct['rate64']:.0%} "
                  f"of direct loopback at 64 connections ({rn['rate64'] / 640:.0%} of the 640/s "
                  f"that 64 clients waiting 100 ms each allow: the goal of 50% cannot be met by any "
                  f"protocol that commits after a round trip), and "
                  f"{rn['rate512'] / direct['rate512']:.0%} at 512 connections, where batching "
                  f"and pipelining have room to work."]
    return lines + ["", "![latency and throughput against the round trip](img/edge-rtt.png)"]


def render_quiet(results, tmp, img):
    lines = ["Sites A, B, C with round trips 50, 100 and 200 ms, ±20% jitter, 1% loss, "
             "`--rtt 200ms`; one client writing to the leader, one write at a time.", "",
             "| voters | seconds | elections | writes | failed | write p50 | write p99 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["quiet"]:
        lines.append(f"| {r['voters']} | {r['seconds']} | {r['elections']} | {r['writes']} | "
                     f"{r['failed']} | {r['p50']:.1f} ms | {r['p99']:.1f} ms |")
    return lines


def render_learners(results, tmp, img):
    lag = os.path.join(tmp, "lag.dat")
    with open(lag, "w") as f:
        for p in results["learners"]:
            low, high = p["paced_leader_range"]
            f.write(f"{p['learners']} {p['lag_p50']} {p['lag_p99']} {p['paced_leader_us']} "
                    f"{low} {high} {p['leader_cpu_us_per_write']}\n")
    gnuplot(PLOT_HEAD + f"""
set output "{os.path.join(img, 'edge-learners.png')}"
set multiplot layout 1,2 title "3 voters and N learners on loopback"
set key top left
set xlabel "learners"
set ylabel "learner staleness under load (ms)"
plot "{lag}" using 1:3 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "p99", \\
     "{lag}" using 1:2 with linespoints dt 2 pt 6 lc rgb "#1f77b4" title "p50"
set ylabel "leader CPU per write (us)"
set yrange [0:*]
set key bottom right
plot "{lag}" using 1:4:5:6 with yerrorlines lw 2 pt 7 lc rgb "#2ca02c" title "{LEARNER_RATE} writes/s (median, range of {PACED_ROUNDS})", \\
     "{lag}" using 1:7 with linespoints dt 2 pt 6 lc rgb "#ff7f0e" title "as many as 16 connections make"
unset multiplot
""")
    lines = [f"3 voters and N learners on loopback, memory backend, no nginx. First "
             f"{PACED_ROUNDS} rounds of {LEARNER_RATE} writes/s to the leader (16 connections, "
             f"each write sent at its time): the same work at every point, so the leader's CPU "
             f"per write shows what each learner adds to it. Then wrk at 16 connections, as fast "
             f"as it goes, with staleness sampled every 200 ms on every learner.", "",
             f"| learners | leader CPU per write at {LEARNER_RATE}/s (median; range) | all members' "
             f"CPU per write | most writes/s | leader CPU per write there | staleness p50 | p99 "
             f"| max |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in results["learners"]:
        low, high = p["paced_leader_range"]
        lines.append(f"| {p['learners']} | {p['paced_leader_us']:.0f} µs; {low:.0f}-{high:.0f} | "
                     f"{p['paced_all_us']:.0f} µs | {p['rate']:,.0f} | "
                     f"{p['leader_cpu_us_per_write']:.0f} µs | {p['lag_p50']:.0f} ms | "
                     f"{p['lag_p99']:.0f} ms | {p['lag_max']:.0f} ms |")
    return lines + ["", "![learner staleness and leader CPU against learners](img/edge-learners.png)"]


def render_outage(results, tmp, img):
    o = results["outage"]
    return [f"{' and '.join(o['cut'])} cut off from every voter for {o['seconds']} s (sites as "
            f"above, the learner at D, 100 ms from each): {o['served']} of {o['reads']} stale "
            f"reads answered with the last value and `X-Raft-Last-Contact` (up to "
            f"{max(o['last_contact_s'].values()):.0f} s), {o['writes_taken']} writes accepted "
            f"by them, {o['majority_writes']} writes taken by the majority meanwhile; after the "
            f"links came back both caught up in {o['catchup_s']:.1f} s without a restart; "
            f"elections: {o['elections']}."]


def render_catchup(results, tmp, img):
    series = []
    for i, run in enumerate(results["catchup"]):
        path = os.path.join(tmp, f"catchup{i}.dat")
        with open(path, "w") as f:
            for t, staged in run["timeline"]:
                f.write(f"{t} {staged / (1 << 20)}\n")
        series.append(f'"{path}" using 1:2 with lines lw 2 title "{run["label"]}"')
    gnuplot(PLOT_HEAD + f"""
set output "{os.path.join(img, 'edge-catchup.png')}"
set title "A learner past compaction catching up over a 1 MB/s link: snapshot bytes received"
set key top left
set xlabel "seconds since the link came back"
set ylabel "MB staged"
plot {", ".join(series)}
""")
    lines = ["A learner offline past the leader's compaction comes back over a 1 MB/s link "
             "(the voters' links to it capped): it needs the whole snapshot.", "",
             "| transfer | snapshot | caught up in | sent | not sent again (resumed) |",
             "| --- | --- | --- | --- | --- |"]
    for r in results["catchup"]:
        lines.append(f"| {r['label']} | {r['snapshot_mb']:.1f} MB | {r['catchup_s']:.1f} s | "
                     f"{r['sent_mb']:.1f} MB | {r['resumed_mb']:.1f} MB |")
    return lines + ["", "![snapshot bytes received over time](img/edge-catchup.png)"]


# Each phase: how it runs, and how it renders its part of docs/edge.md (and its plot).
PHASES = {"rtt": (phase_rtt, render_rtt), "quiet": (phase_quiet, render_quiet),
          "learners": (phase_learners, render_learners), "outage": (phase_outage, render_outage),
          "catchup": (phase_catchup, render_catchup)}


def write_docs(results, chosen, command):
    """Rewrites the parts of docs/edge.md (between their markers) that `chosen` measured, and
    the summary if every phase ran."""
    page = os.path.join(ROOT, "docs", "edge.md")
    img = os.path.join(ROOT, "docs", "img")
    os.makedirs(img, exist_ok=True)
    measured = f"Measured {results['date']} in {results['mode']} mode with `{command}`."
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            lines = [measured, ""] + PHASES[name][1](results, tmp, img)
            replace_between(page, f"<!-- edge:{name}:begin -->", f"<!-- edge:{name}:end -->",
                            "\n".join(lines) + "\n")
    if len(chosen) == len(PHASES):
        replace_between(page, "<!-- edge:summary:begin -->", "<!-- edge:summary:end -->",
                        f"{measured} All phases took {results['elapsed'] / 60:.1f} minutes.\n\n"
                        f"```\n{summary(results)}\n```\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma list of the phases to run (the summary needs all)")
    ap.add_argument("--docs", action="store_true",
                    help="write the phases' parts of docs/edge.md and their plots")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    cluster.BINARY = binary
    mode = MODES[args.mode]
    chosen = args.phases.split(",")
    unknown = [p for p in chosen if p not in PHASES]
    if unknown:
        ap.error(f"unknown phases: {', '.join(unknown)}")
    results = {"mode": args.mode, "date": datetime.date.today().isoformat()}
    began = time.monotonic()
    root = tempfile.mkdtemp(prefix="raftnginx-edge-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        for name in chosen:
            PHASES[name][0](os.path.join(root, name), binary, mode, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["elapsed"] = time.monotonic() - began
    if len(chosen) == len(PHASES):
        print(summary(results), flush=True)
    if args.docs:
        command = f"python3 bench/edge.py --mode {args.mode}"
        if len(chosen) < len(PHASES):
            command += f" --phases {args.phases}"
        write_docs(results, chosen, command + " --docs")
        log(f"wrote the parts of docs/edge.md that {', '.join(chosen)} measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
