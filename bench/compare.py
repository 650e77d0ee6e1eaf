#!/usr/bin/env python3
"""raft-nginx against etcd, on this machine, in one run (`make bench`).

Starts a 3-node raft-nginx cluster and a 3-node etcd cluster on loopback, one system at a time,
both syncing every write to disk, and drives each with the same wrk script (bench/wrk/load.lua):
same keys, same value size, same connection counts. Measures writes to the leader, writes
through a follower's nginx, reads at each consistency level, failover under load, restart of a
node holding many keys, a new node catching up, and CPU and memory per write; and what TLS on
every port with token auth costs, against a second raft-nginx cluster secured that way. Writes the
results to docs/benchmarks.md (between the compare markers), the plot to
docs/img/write-latency.png and the summary to README.md.

  bench/compare.py --binary build-release/src/raft-nginx --mode quick   # about 5 minutes
  bench/compare.py --binary build-release/src/raft-nginx --mode full

Every process it starts is killed by PID when it ends; it talks only to 127.0.0.1.
"""
import argparse
import base64
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
import cluster  # noqa: E402

LUA = os.path.join(HERE, "wrk", "load.lua")
KEYS = 10_000
VALUE_BYTES = 64

MODES = {
    # seconds per load point, connection counts for writes and reads, failover rounds, keys
    # held by the node that restarts.
    "quick": dict(seconds=4, write_conns=[1, 16, 64, 256], read_conns=[64], failover_rounds=5,
                  recovery_keys=1_000_000),
    "full": dict(seconds=15, write_conns=[1, 4, 16, 64, 128, 256], read_conns=[16, 64, 256],
                 failover_rounds=5, recovery_keys=1_000_000),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------------------------
# Load and process measurements


def wrk(address, op, conns, seconds, keys=KEYS, path="", scheme="http", token="",
        key_format="k%d", close=False):
    """One wrk run; returns requests/s and latency percentiles in ms. With a `token`, every
    request carries it (Authorization: Bearer); with `close`, Connection: close."""
    env = dict(os.environ, BENCH_OP=op, BENCH_KEYS=str(keys), BENCH_VALUE_BYTES=str(VALUE_BYTES),
               BENCH_PATH=path, BENCH_TOKEN=token, BENCH_KEY_FORMAT=key_format,
               BENCH_CLOSE="1" if close else "0")
    threads = 1 if conns == 1 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
           "-s", LUA, f"{scheme}://{address}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(lines[-1])
    return {"conns": conns, "rate": r["requests"] / r["seconds"], "requests": r["requests"],
            "errors": r["errors"], "status_errors": r["status_errors"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000,
            "p999": r["p999_us"] / 1000}


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def status_mib(pid, field):
    """A memory line of /proc/PID/status ("VmRSS", "VmHWM": the peak), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0


def peak_rss_mib(pid):
    return status_mib(pid, "VmHWM")


def fsync_loop(path, seconds):
    """4 KiB appends, each followed by fdatasync, for `seconds`; the latencies in ms."""
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        block = b"x" * 4096
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return samples


def disk(directory, seconds=2):
    """The disk both systems write to: fsync latency alone, and how many fsyncs per second it
    completes when three writers (as three nodes) sync at once."""
    alone = sorted(fsync_loop(os.path.join(directory, "fsync-probe"), seconds))
    with concurrent.futures.ProcessPoolExecutor(3) as pool:
        runs = list(pool.map(fsync_loop, [os.path.join(directory, f"fsync-probe-{i}") for i in range(3)],
                             [seconds] * 3))
    return {"p50": alone[len(alone) // 2], "p99": alone[int(len(alone) * 0.99)],
            "alone_per_s": len(alone) / seconds, "three_per_s": sum(len(r) for r in runs) / seconds}


def poll(predicate, timeout, interval=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def parallel(fn, items, workers):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, items):
            pass


# ---------------------------------------------------------------------------------------------
# The two systems behind one small interface: start, leader, followers, pids, write, close.


class RaftNginx:
    label = "raft-nginx"

    def __init__(self, root, binary, args=(), nginx=True, secure=False):
        """With `secure`, every port speaks TLS (certificates from `raft-nginx certs`) and every
        request needs a token (--auth), as docs/security.md sets a cluster up."""
        cluster.BINARY = binary
        self.binary = binary
        self.root = root
        self.cluster = cluster.Cluster(root)
        self.args = list(args)
        self.nginx = nginx
        self.certs = None
        if secure:
            self.certs = cluster.Certs.make(os.path.join(root, "certs"), ["node1", "node2", "node3"])
        self.scheme = "https" if secure else "http"
        self.token = self.certs.token if secure else ""

    def start(self, count=3):
        if self.certs is None:
            self.cluster.start(count, args=self.args, nginx=self.nginx)
        else:
            self.cluster.start(count, args=self.args, nginx=self.nginx, node_args=self.certs.flags,
                               context=self.certs.context(), headers=self.certs.bearer())
        return self

    def leader(self):
        return self.cluster.leader()

    def followers(self):
        return self.cluster.followers()

    def running(self):
        return self.cluster.running()

    def pids(self):
        return [d.proc.pid for d in self.cluster.running()]

    def term(self):
        return max(d.status()["term"] for d in self.cluster.running())

    def client_address(self, node):
        return node.http

    def write_once(self, nodes, key, timeout=0.5):
        """A write through any of `nodes`, following a 307; True once one succeeded."""
        for node in nodes:
            try:
                r = node.request("PUT", f"/key/{key}", body="x", timeout=timeout)
                if r.status == 307 and r.header("X-Raft-Leader"):
                    r = cluster.request(r.header("X-Raft-Leader"), "PUT", f"/key/{key}", body="x",
                                        timeout=timeout, context=node.context, headers=node.headers)
                if r.status == 200:
                    return True
            except OSError:
                continue
        return False

    def load(self, node, first, count, batch=1000, workers=4, prefix="k"):
        """Writes keys prefix<first>..prefix<first+count-1>, `batch` per request (POST /key)."""
        value = "v" * VALUE_BYTES

        def one(start):
            body = {f"{prefix}{i}": value for i in range(start, min(start + batch, first + count))}
            r = node.post("/key", body=body, timeout=60)
            if r.status != 200:
                raise RuntimeError(f"load failed: {r}")
        parallel(one, range(first, first + count, batch), workers)

    def converged(self):
        self.cluster.wait_converged(timeout=120)

    def restart_to_ready(self, node):
        """Stops `node` (SIGTERM), starts it again; seconds from exec until /readyz is 200."""
        assert node.stop() == 0
        start = time.monotonic()
        node.start()
        poll(lambda: node.get("/readyz", timeout=1).status == 200, 120, what="readyz")
        return time.monotonic() - start

    def close(self):
        self.cluster.close()


class EtcdMember:
    def __init__(self, root, name):
        self.name = name
        self.client = f"127.0.0.1:{cluster.free_port()}"
        self.peer = f"127.0.0.1:{cluster.free_port()}"
        self.data_dir = os.path.join(root, name)
        self.log_path = os.path.join(root, name + ".log")
        self.proc = None
        self.advertised_peer = self.peer  # where the other members reach it (a proxy, say)
        self.flags = []  # more etcd flags (timeouts)

    def start(self, initial_cluster, state="new"):
        cmd = ["etcd", "--name", self.name, "--data-dir", self.data_dir,
               "--listen-client-urls", f"http://{self.client}",
               "--advertise-client-urls", f"http://{self.client}",
               "--listen-peer-urls", f"http://{self.peer}",
               "--initial-advertise-peer-urls", f"http://{self.advertised_peer}",
               "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
               "--initial-cluster-token", "raftnginx-bench", *self.flags]
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def call(self, path, body, timeout=2):
        r = cluster.request(self.client, "POST", path, body=body, timeout=timeout)
        if r.status != 200:
            raise OSError(f"{path}: {r}")
        return r.json()

    def status(self):
        return self.call("/v3/maintenance/status", {})

    def healthy(self):
        r = cluster.request(self.client, "GET", "/health", timeout=1)
        return r.status == 200 and r.json().get("health") == "true"

    def stop(self):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=30)
        return self.proc.returncode

    def kill(self):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


class Etcd:
    label = "etcd"

    def __init__(self, root):
        self.root = root
        self.members = []

    def initial_cluster(self):
        return ",".join(f"{m.name}=http://{m.advertised_peer}" for m in self.members)

    def start(self, count=3, prepare=None):
        """`prepare(member)`, if given, runs before the members start (a proxy, flags)."""
        self.members = [EtcdMember(self.root, f"etcd{i}") for i in range(1, count + 1)]
        for m in self.members:
            if prepare:
                prepare(m)
        for m in self.members:
            m.start(self.initial_cluster())
        poll(lambda: all(m.healthy() for m in self.members), 60, 0.1, "etcd healthy")
        self.leader()
        return self

    def running(self):
        return [m for m in self.members if m.running()]

    def leader(self):
        def agreed():
            ids = {m.status()["leader"] for m in self.running()}
            if len(ids) != 1:
                return None
            lead = ids.pop()
            for m in self.running():
                if m.status()["header"]["member_id"] == lead:
                    return m
            return None
        return poll(agreed, 30, 0.05, "an agreed etcd leader")

    def followers(self):
        lead = self.leader()
        return [m for m in self.running() if m is not lead]

    def pids(self):
        return [m.proc.pid for m in self.running()]

    def term(self):
        return max(int(m.status()["header"]["raft_term"]) for m in self.running())

    def client_address(self, member):
        return member.client

    def write_once(self, members, key, timeout=0.5):
        for m in members:
            try:
                m.call("/v3/kv/put", {"key": b64(key), "value": b64("x")}, timeout=timeout)
                return True
            except OSError:
                continue
        return False

    def load(self, member, first, count, batch=128, workers=8, prefix="k"):
        """Writes the keys in transactions of `batch` puts (etcd's default --max-txn-ops)."""
        value = b64("v" * VALUE_BYTES)

        def one(start):
            ops = [{"requestPut": {"key": b64(f"{prefix}{i}"), "value": value}}
                   for i in range(start, min(start + batch, first + count))]
            member.call("/v3/kv/txn", {"success": ops}, timeout=60)
        parallel(one, range(first, first + count, batch), workers)

    def converged(self):
        def same():
            return len({int(m.status()["header"]["revision"]) for m in self.running()}) == 1
        poll(same, 120, 0.1, "etcd members at one revision")

    def restart_to_ready(self, member):
        member.stop()
        start = time.monotonic()
        member.start(self.initial_cluster())
        poll(member.healthy, 120, what="etcd health")
        return time.monotonic() - start

    def close(self):
        for m in self.members:
            m.kill()


# ---------------------------------------------------------------------------------------------
# The measures


# The load measures run point by point, each point on one system and then at once on the other
# (the idle cluster only exchanges heartbeats): this machine's speed drifts by tens of percent
# over minutes, and measuring both systems back to back keeps that out of the ratios.


def measure_writes(systems, mode, results):
    """Writes to each leader at every connection count; raft-nginx also through a follower's
    nginx. CPU per write counts the three server processes."""
    terms = {s.label: s.term() for s in systems}
    for s in systems:
        results[s.label]["writes"] = []
    results["raft-nginx"]["follower_writes"] = []
    for conns in mode["write_conns"]:
        for s in systems:
            op = "rn_put" if s.label == "raft-nginx" else "etcd_put"
            cpu_before = cpu_seconds(s.pids())
            p = wrk(s.client_address(s.leader()), op, conns, mode["seconds"])
            p["cpu_per_100k"] = (cpu_seconds(s.pids()) - cpu_before) / max(p["requests"], 1) * 1e5
            results[s.label]["writes"].append(p)
            log(f"{s.label} writes to the leader, {conns} conns: {p['rate']:.0f}/s p50 {p['p50']:.2f} "
                f"p99 {p['p99']:.2f} p99.9 {p['p999']:.2f} ms, errors {p['errors']}")
            if s.label == "raft-nginx":
                p = wrk(s.followers()[0].gateway, "rn_put", conns, mode["seconds"])
                results[s.label]["follower_writes"].append(p)
                log(f"raft-nginx writes through a follower's nginx, {conns} conns: {p['rate']:.0f}/s "
                    f"p99 {p['p99']:.2f} ms, errors {p['errors']}")
    for s in systems:
        results[s.label]["elections_under_load"] = s.term() - terms[s.label]


def read_kinds(system):
    """(kind, address, wrk op) of each read measured on `system`."""
    lead = system.leader()
    follower = system.followers()[0]
    if system.label == "raft-nginx":
        return [("stale", follower.http, "rn_get_stale"),
                ("stale_nginx", follower.gateway, "rn_get_stale"),
                ("linearizable", follower.http, "rn_get_linearizable"),
                ("linearizable_leader", lead.http, "rn_get_linearizable")]
    return [("stale", follower.client, "etcd_range_serializable"),
            ("linearizable", follower.client, "etcd_range_linearizable"),
            ("linearizable_leader", lead.client, "etcd_range_linearizable")]


def measure_reads(systems, mode, results):
    kinds = {s.label: read_kinds(s) for s in systems}
    for s in systems:
        results[s.label]["reads"] = {kind: [] for kind, _, _ in kinds[s.label]}
    for name in ("stale", "stale_nginx", "linearizable", "linearizable_leader"):
        for conns in mode["read_conns"]:
            for s in systems:
                for kind, addr, op in kinds[s.label]:
                    if kind != name:
                        continue
                    p = wrk(addr, op, conns, mode["seconds"])
                    results[s.label]["reads"][kind].append(p)
                    log(f"{s.label} {kind} reads, {conns} conns: {p['rate']:.0f}/s "
                        f"p99 {p['p99']:.2f} ms, errors {p['errors']}")


def measure_security_cost(plain, secure, mode, results):
    """The same loads on the plain cluster and on the secured one (TLS on every port, a token on
    every request), each point on one and then at once on the other, twice over."""
    points = [("writes to the leader", lambda s: s.leader().http, "rn_put"),
              ("writes through a follower's nginx", lambda s: s.followers()[0].gateway, "rn_put"),
              ("stale reads on a follower", lambda s: s.followers()[0].http, "rn_get_stale"),
              ("stale reads through a follower's nginx", lambda s: s.followers()[0].gateway,
               "rn_get_stale")]
    rows = []
    for title, address, op in points:
        runs = {"plain": [], "secure": []}
        for _ in range(2):
            for name, s in (("plain", plain), ("secure", secure)):
                runs[name].append(wrk(address(s), op, 64, mode["seconds"], scheme=s.scheme,
                                      token=s.token))
        row = {"what": title}
        for name, points_ in runs.items():
            row[name] = {"rate": statistics.mean(p["rate"] for p in points_),
                         "p99": statistics.mean(p["p99"] for p in points_),
                         "errors": sum(p["errors"] for p in points_)}
        row["cost"] = 1 - row["secure"]["rate"] / row["plain"]["rate"]
        rows.append(row)
        log(f"{title}, 64 conns: plain {row['plain']['rate']:.0f}/s, TLS + auth "
            f"{row['secure']['rate']:.0f}/s ({row['cost'] * 100:.0f}% less), errors "
            f"{row['plain']['errors']} / {row['secure']['errors']}")
    results["security_cost"] = rows


def measure_ceiling(system, mode, results):
    """What this machine answers over HTTP doing no work, with the same client: nginx's own
    `return 200` and the daemon's /healthz. Reads cannot go faster than this."""
    follower = system.followers()[0]
    results["ceiling"] = {
        "nginx": wrk(follower.gateway, "get_path", 64, mode["seconds"], path="/_raftnginx/generation"),
        "daemon": wrk(follower.http, "get_path", 64, mode["seconds"], path="/healthz"),
    }
    log(f"HTTP ceiling, 64 conns: nginx return 200 {results['ceiling']['nginx']['rate']:.0f}/s, "
        f"daemon /healthz {results['ceiling']['daemon']['rate']:.0f}/s")


def measure_failover(system, mode, results):
    """kill -9 of the leader while wrk writes through a follower; time until a write succeeds
    again through a survivor; the killed node restarts and the cluster settles between rounds."""
    times = []
    for round_ in range(mode["failover_rounds"]):
        lead = system.leader()
        follower = system.followers()[0]
        if system.label == "raft-nginx":
            addr, op = follower.gateway, "rn_put"
        else:
            addr, op = follower.client, "etcd_put"
        env = dict(os.environ, BENCH_OP=op, BENCH_KEYS=str(KEYS))
        load = subprocess.Popen(["wrk", "-t", "2", "-c", "16", "-d", "60s", "--timeout", "2s", "-s",
                                 LUA, f"http://{addr}"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            lead.kill()
            killed = time.monotonic()
            survivors = [n for n in system.running() if n is not lead]
            poll(lambda: system.write_once(survivors, f"failover{round_}"), 30, 0.01,
                 "a write after failover")
            elapsed = time.monotonic() - killed
        finally:
            load.kill()
            load.wait()
        times.append(elapsed)
        log(f"{system.label} failover round {round_ + 1}: writes again after {elapsed * 1000:.0f} ms")
        if system.label == "raft-nginx":
            lead.start()
            system.cluster.wait_members(3)
            system.cluster.wait_ready()
        else:
            lead.start(system.initial_cluster())
            poll(lead.healthy, 60, 0.1, "etcd member back")
        system.converged()
    results["failover"] = {"times": times, "median": statistics.median(times), "worst": max(times)}


# The rocksdb backend's flush policy (--fsm-flush-entries, --fsm-flush-interval): never (only
# when RocksDB's memtable fills), the default, and often.
FLUSH_POLICIES = [("no periodic flush", "1000000000000", "24h"), ("default", "20000", "2s"),
                  ("often", "2000", "250ms")]


def measure_crash_recovery(root, binary, mode, results):
    """For each flush policy: the keys loaded, writes at 64 connections (their rate is what the
    policy costs), then kill -9 of a follower right after them and a restart: how long until it
    is ready, and how many entries it applied again (what the policy bounds)."""
    rows = []
    for name, entries, interval in FLUSH_POLICIES:
        sub = os.path.join(root, "crash-" + entries)
        os.makedirs(sub)
        system = RaftNginx(sub, binary, ["--fsm-flush-entries", entries,
                                         "--fsm-flush-interval", interval], nginx=False)
        try:
            system.start()
            lead = system.leader()
            system.load(lead, 0, mode["recovery_keys"], prefix="r")
            system.converged()
            follower = system.followers()[0]
            p = wrk(lead.http, "rn_put", 64, mode["seconds"])
            follower.kill()
            start = time.monotonic()
            follower.start()
            poll(lambda: follower.get("/readyz", timeout=1).status == 200, 120, what="readyz")
            ready = time.monotonic() - start
            reapplied = follower.status()["entries_applied"]
            rows.append({"policy": name, "entries": int(entries), "interval": interval,
                         "write_rate": p["rate"], "write_p99": p["p99"], "ready": ready,
                         "reapplied": reapplied})
            log(f"crash restart, flush {name}: writes {p['rate']:.0f}/s, ready after "
                f"{ready * 1000:.0f} ms, {reapplied} entries applied again")
        finally:
            system.close()
            shutil.rmtree(sub, ignore_errors=True)
    results["crash-recovery"] = {"keys": mode["recovery_keys"], "rows": rows}


def measure_recovery(make_system, mode, results, label):
    """Loads the keys, then restarts a follower and times it to ready; then a new node joins."""
    system = make_system()
    try:
        system.start()
        lead = system.leader()
        start = time.monotonic()
        system.load(lead, 0, mode["recovery_keys"], prefix="r")
        load_seconds = time.monotonic() - start
        system.converged()
        follower = system.followers()[0]
        restart = system.restart_to_ready(follower)
        out = {"keys": mode["recovery_keys"], "load_seconds": load_seconds, "restart": restart}
        if system.label == "raft-nginx":
            st = follower.status()
            out["reapplied"] = st["entries_applied"]
            out["snapshot_index"] = st["snapshot_index"]
        log(f"{label}: loaded {mode['recovery_keys']} keys in {load_seconds:.1f} s; "
            f"restart to ready {restart * 1000:.0f} ms {out.get('reapplied', '')}")
        out["join"] = join_time(system)
        log(f"{label}: a new node caught up in {out['join'] * 1000:.0f} ms")
        results[label] = out
    finally:
        system.close()


def join_time(system):
    lead = system.leader()
    if system.label == "raft-nginx":
        target = lead.status()["commit_index"]
        start = time.monotonic()
        node = system.cluster.add("node4", system.args, join=lead, nginx=False)
        poll(lambda: node.status()["applied_index"] >= target, 300, 0.02, "the new node caught up")
        return time.monotonic() - start
    member = EtcdMember(system.root, "etcd4")
    # etcd refuses a new member until every member has been connected for a few seconds (its
    # strict reconfiguration check), so soon after the restart above it answers 503 for a while.
    poll(lambda: lead.call("/v3/cluster/member/add", {"peerURLs": [f"http://{member.peer}"]}),
         60, 0.5, "etcd to accept a new member")
    system.members.append(member)
    target = int(lead.status()["raftIndex"])
    start = time.monotonic()
    member.start(system.initial_cluster(), state="existing")
    poll(lambda: int(member.status()["raftIndex"]) >= target, 300, 0.02, "etcd member caught up")
    return time.monotonic() - start


def run_load(systems, mode, results):
    """Both clusters up; the load measures point by point, then failover one system at a time."""
    for s in systems:
        log(f"{s.label}: starting 3 nodes")
        s.start()
        log(f"{s.label}: preloading {KEYS} keys")
        s.load(s.leader(), 1, KEYS, batch=100 if s.label == "raft-nginx" else 64)
        s.converged()
    measure_writes(systems, mode, results)
    measure_reads(systems, mode, results)
    measure_ceiling(systems[0], mode, results["raft-nginx"])
    secure = RaftNginx(os.path.join(os.path.dirname(systems[0].root), "raft-nginx-secure"),
                       cluster.BINARY, secure=True)
    try:
        log("raft-nginx with TLS and auth: starting 3 nodes")
        secure.start()
        secure.load(secure.leader(), 1, KEYS, batch=100)
        secure.converged()
        measure_security_cost(systems[0], secure, mode, results)
    finally:
        secure.close()
    for s in systems:
        results[s.label]["peak_rss_mib"] = max(peak_rss_mib(pid) for pid in s.pids())
    for s in systems:
        measure_failover(s, mode, results[s.label])


# ---------------------------------------------------------------------------------------------
# Report


def versions(binary):
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"raft-nginx": "raft-nginx " + first_line([binary, "--version"]),
            "etcd": first_line(["etcd", "--version"]), "nginx": first_line(["nginx", "-v"]),
            "wrk": " ".join(first_line(["wrk", "-v"]).split()[:2]),
            "cpu": f"{os.cpu_count()} x {cpu}", "kernel": platform.release()}


def plot(results, png):
    os.makedirs(os.path.dirname(png), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for label in ("raft-nginx", "etcd"):
            path = os.path.join(tmp, label + ".dat")
            with open(path, "w") as f:
                for p in results[label]["writes"]:
                    f.write(f"{p['rate']:.1f} {p['p50']:.3f} {p['p99']:.3f} {p['conns']}\n")
            files[label] = path
        script = f"""
set terminal pngcairo size 900,560 font "sans,10"
set output "{png}"
set title "Writes to the leader of a 3-node loopback cluster, fsync on ({results['mode']} mode)"
set xlabel "committed writes per second"
set ylabel "latency (ms, log scale)"
set logscale y
set offsets 0, 0, graph 0.08, 0
set grid
set key top left
plot "{files['raft-nginx']}" using 1:3 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "raft-nginx p99", \\
     "{files['raft-nginx']}" using 1:2 with linespoints lw 1 pt 6 dt 2 lc rgb "#1f77b4" title "raft-nginx p50", \\
     "{files['raft-nginx']}" using 1:3:4 with labels offset 0,1 notitle, \\
     "{files['etcd']}" using 1:3 with linespoints lw 2 pt 5 lc rgb "#d62728" title "etcd p99", \\
     "{files['etcd']}" using 1:2 with linespoints lw 1 pt 4 dt 2 lc rgb "#d62728" title "etcd p50", \\
     "{files['etcd']}" using 1:3:4 with labels offset 0,1 notitle
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def render(results, command):
    rn, et = results["raft-nginx"], results["etcd"]
    v = results["versions"]
    lines = [
        f"Measured {results['date']} in {results['mode']} mode ({results['seconds']} s per point), "
        f"in {results['elapsed'] / 60:.1f} minutes:",
        "",
        f"    {command}",
        "",
        f"Machine: {v['cpu']}, Linux {v['kernel']}. {v['raft-nginx']}; {v['etcd']}; {v['nginx']}; "
        f"{v['wrk']}. Both clusters: 3 members on 127.0.0.1, data on the same disk, every "
        f"write on disk (fsync) on a majority before it is answered; both clusters up at once, "
        f"and each load point measured on raft-nginx and at once on etcd, since this machine's "
        f"speed drifts by tens of percent over minutes (failover and recovery run one system at a "
        f"time); default timeouts (etcd: "
        f"heartbeat 100 ms, election 1 s; raft-nginx: heartbeat 50 ms, election 500 ms). "
        f"Keys k1..k{KEYS} at random, {VALUE_BYTES}-byte values, the same wrk script for both "
        f"(`bench/wrk/load.lua`): raft-nginx `PUT /key/k…` and `GET /key/k…`, etcd's v3 JSON "
        f"gateway `POST /v3/kv/put` and `POST /v3/kv/range`. The disk: one 4 KiB append plus "
        f"fdatasync takes p50 {results['fsync']['p50']:.2f} ms, p99 {results['fsync']['p99']:.2f} ms; "
        f"one writer completes {results['fsync']['alone_per_s']:.0f} of them per second, three "
        f"writers at once (three nodes share this disk) {results['fsync']['three_per_s']:.0f} in all.",
        "",
        "### Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *goal_rows(results),
        "",
        "### Writes to the leader",
        "",
        "| connections | raft-nginx writes/s | etcd writes/s | ratio | raft-nginx p50 / p99 / p99.9 ms "
        "| etcd p50 / p99 / p99.9 ms | p99 ratio | errors (raft-nginx / etcd) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(rn["writes"], et["writes"]):
        lines.append(f"| {a['conns']} | {a['rate']:.0f} | {b['rate']:.0f} | {ratio(a['rate'], b['rate'])} "
                     f"| {a['p50']:.2f} / {a['p99']:.2f} / {a['p999']:.2f} "
                     f"| {b['p50']:.2f} / {b['p99']:.2f} / {b['p999']:.2f} "
                     f"| {ratio(a['p99'], b['p99'])} | {a['errors']} / {b['errors']} |")
    lines += ["", f"Elections during the write runs: raft-nginx {rn['elections_under_load']}, "
              f"etcd {et['elections_under_load']}. Plot: [write-latency.png](img/write-latency.png).",
              "", "![write latency against throughput](img/write-latency.png)", "",
              "### Writes through a follower's nginx (raft-nginx only)", "",
              "| connections | through the follower's nginx writes/s | direct to the leader writes/s "
              "| ratio | p99 ms (nginx / direct) | errors |", "|---|---|---|---|---|---|"]
    for f, d in zip(rn["follower_writes"], rn["writes"]):
        lines.append(f"| {f['conns']} | {f['rate']:.0f} | {d['rate']:.0f} | {f['rate'] / d['rate'] * 100:.0f}% "
                     f"| {f['p99']:.2f} / {d['p99']:.2f} | {f['errors']} |")
    lines += ["", "### Reads on a follower", "",
              "| read | connections | raft-nginx reads/s | etcd reads/s | ratio | p99 ms (raft-nginx / etcd) |",
              "|---|---|---|---|---|---|"]
    names = [("stale", "stale", "stale (etcd: serializable)"),
             ("stale_nginx", "stale", "stale through nginx (etcd: serializable, direct)"),
             ("linearizable", "linearizable", "linearizable (ReadIndex)"),
             ("linearizable_leader", "linearizable_leader", "linearizable, on the leader")]
    for rn_kind, et_kind, title in names:
        for a, b in zip(rn["reads"][rn_kind], et["reads"][et_kind]):
            lines.append(f"| {title} | {a['conns']} | {a['rate']:.0f} | {b['rate']:.0f} "
                         f"| {ratio(a['rate'], b['rate'])} | {a['p99']:.2f} / {b['p99']:.2f} |")
    ceiling = rn["ceiling"]
    lines += ["", "The ceiling for any read on this machine with this client (same wrk, 64 "
              "connections, a node of the raft-nginx cluster, no work behind the answer): "
              f"nginx's own `return 200` answered {ceiling['nginx']['rate']:.0f}/s and the "
              f"daemon's `/healthz` {ceiling['daemon']['rate']:.0f}/s; a stale read reached "
              f"{at(rn['reads']['stale'])['rate'] / ceiling['daemon']['rate'] * 100:.0f}% of the "
              "latter."]
    fr, fe = rn["failover"], et["failover"]
    lines += ["", f"### Failover: kill -9 of the leader under load, {len(fr['times'])} rounds", "",
              "Until a write succeeds again through a surviving node, while wrk writes through a "
              "follower (16 connections).", "",
              "| | median ms | worst ms | every round ms |", "|---|---|---|---|",
              f"| raft-nginx | {fr['median'] * 1000:.0f} | {fr['worst'] * 1000:.0f} | "
              f"{', '.join(f'{t * 1000:.0f}' for t in fr['times'])} |",
              f"| etcd | {fe['median'] * 1000:.0f} | {fe['worst'] * 1000:.0f} | "
              f"{', '.join(f'{t * 1000:.0f}' for t in fe['times'])} |",
              f"| ratio | {ratio(fr['median'], fe['median'])} | {ratio(fr['worst'], fe['worst'])} | |"]
    rr, rm, re = results["recovery-rocksdb"], results["recovery-memory"], results["recovery-etcd"]
    lines += ["", f"### Recovery with {rr['keys']:,} keys", "",
              "A follower is stopped (SIGTERM) and started again: time from exec until it is ready "
              "(raft-nginx `/readyz` 200: a leader known and the log applied; etcd `/health` true). "
              "Then a fourth node joins and catches up (until it has applied what the leader had "
              "committed when it joined).", "",
              "| | load time s | restart to ready ms | entries re-applied | new node caught up ms |",
              "|---|---|---|---|---|",
              f"| raft-nginx, rocksdb (resumes at its applied index) | {rr['load_seconds']:.1f} | {rr['restart'] * 1000:.0f} | {rr['reapplied']} "
              f"| {rr['join'] * 1000:.0f} |",
              f"| raft-nginx, memory (rebuilt: "
              f"{'its snapshot restored, then' if rm['snapshot_index'] else 'no snapshot yet,'} "
              f"{rm['reapplied']} log entries re-applied) | {rm['load_seconds']:.1f} "
              f"| {rm['restart'] * 1000:.0f} | {rm['reapplied']} | {rm['join'] * 1000:.0f} |",
              f"| etcd | {re['load_seconds']:.1f} | {re['restart'] * 1000:.0f} | - | {re['join'] * 1000:.0f} |",
              f"| ratio rocksdb / etcd | | {ratio(rr['restart'], re['restart'])} | | "
              f"{ratio(rr['join'], re['join'])} |"]
    w_rn, w_et = at(rn["writes"]), at(et["writes"])
    lines += ["", "### Resources", "",
              "CPU: user + system seconds of the three server processes during the 64-connection "
              "write run, per 100,000 writes (raft-nginx's nginx is not on that path). Memory: the "
              "largest peak RSS (VmHWM) of the three after the write and read runs.", "",
              "| | CPU s per 100k writes | peak RSS MiB |", "|---|---|---|",
              f"| raft-nginx | {w_rn['cpu_per_100k']:.1f} | {rn['peak_rss_mib']:.0f} |",
              f"| etcd | {w_et['cpu_per_100k']:.1f} | {et['peak_rss_mib']:.0f} |",
              f"| ratio | {ratio(w_rn['cpu_per_100k'], w_et['cpu_per_100k'])} "
              f"| {ratio(rn['peak_rss_mib'], et['peak_rss_mib'])} |"]
    if "security_cost" in results:
        lines += ["", "### What TLS and auth cost", "",
                  "A second raft-nginx cluster, secured as docs/security.md sets one up (mutual TLS "
                  "on the raft port, TLS on the daemons' HTTP ports and on nginx, `--auth` with a "
                  "bearer token on every request), beside the plain one; 64 connections, each "
                  "point measured on one cluster and then at once on the other, twice, averaged. "
                  "wrk keeps its connections open, as gateways and clients do: this is the cost "
                  "of TLS records and of checking the token, not of handshakes.", "",
                  "| | plain /s | TLS + auth /s | cost | p99 ms (plain / TLS + auth) | errors |",
                  "|---|---|---|---|---|---|"]
        for row in results["security_cost"]:
            a, b = row["plain"], row["secure"]
            lines.append(f"| {row['what']} | {a['rate']:.0f} | {b['rate']:.0f} "
                         f"| {row['cost'] * 100:.0f}% | {a['p99']:.2f} / {b['p99']:.2f} "
                         f"| {a['errors']} / {b['errors']} |")
    if "crash-recovery" in results:
        cr = results["crash-recovery"]
        lines += ["", f"### Crash restart with {cr['keys']:,} keys (rocksdb): what the flush policy "
                  "bounds and costs", "",
                  "Each policy on a fresh cluster: the keys loaded, writes to the leader at 64 "
                  "connections (their rate is the policy's cost), then kill -9 of a follower "
                  "right after them, and its restart: time from exec until `/readyz` is 200, and "
                  "the entries it applied again (what its RocksDB had not yet flushed).", "",
                  "| flush policy (`--fsm-flush-entries`, `--fsm-flush-interval`) | writes/s "
                  "| write p99 ms | restart to ready ms | entries applied again |",
                  "|---|---|---|---|---|"]
        for row in cr["rows"]:
            lines.append(f"| {row['policy']} ({row['entries']:,}, {row['interval']}) "
                         f"| {row['write_rate']:.0f} | {row['write_p99']:.2f} "
                         f"| {row['ready'] * 1000:.0f} | {row['reapplied']:,} |")
    return "\n".join(lines) + "\n"


def headline(results):
    """The points the goals and the README speak of: 64 connections, reads on a follower."""
    rn, et = results["raft-nginx"], results["etcd"]
    return (at(rn["writes"]), at(et["writes"]), at(rn["follower_writes"]),
            at(rn["reads"]["stale"]), at(et["reads"]["stale"]),
            at(rn["reads"]["linearizable"]), at(et["reads"]["linearizable"]))


def goal_rows(results):
    """The goals of the benchmarks issue, each against what this run measured."""
    w_rn, w_et, f_rn, s_rn, s_et, l_rn, l_et = headline(results)
    rn = results["raft-nginx"]
    fo = rn["failover"]
    rr = results["recovery-rocksdb"]
    goals = [
        ("writes to the leader, 64 connections: at least 3x etcd", ratio(w_rn["rate"], w_et["rate"]),
         w_rn["rate"] >= 3 * w_et["rate"]),
        ("... with p99 no worse than etcd's", f"{w_rn['p99']:.1f} ms against {w_et['p99']:.1f} ms",
         w_rn["p99"] <= w_et["p99"]),
        ("writes through a follower's nginx: at least 80% of direct",
         f"{f_rn['rate'] / w_rn['rate'] * 100:.0f}%", f_rn["rate"] >= 0.8 * w_rn["rate"]),
        ("stale reads on a follower: at least 7x etcd's serializable", ratio(s_rn["rate"], s_et["rate"]),
         s_rn["rate"] >= 7 * s_et["rate"]),
        ("linearizable reads: at least 4x etcd's", ratio(l_rn["rate"], l_et["rate"]),
         l_rn["rate"] >= 4 * l_et["rate"]),
        ("failover: median under 1 s, worst under 2 s",
         f"{fo['median'] * 1000:.0f} ms, {fo['worst'] * 1000:.0f} ms",
         fo["median"] < 1 and fo["worst"] < 2),
        ("no elections under full write load", str(rn["elections_under_load"]),
         rn["elections_under_load"] == 0),
        (f"restart with {rr['keys']:,} keys (rocksdb): ready in under 1 s, nothing re-applied",
         f"{rr['restart'] * 1000:.0f} ms, {rr['reapplied']} re-applied",
         rr["restart"] < 1 and rr["reapplied"] == 0),
    ]
    if "security_cost" in results:
        costs = [row for row in results["security_cost"]
                 if row["what"] in ("writes to the leader", "stale reads on a follower")]
        worst = max(costs, key=lambda row: row["cost"])
        goals.append(("TLS on every port and token auth cost at most 15% (writes to the leader "
                      "and stale reads on a follower, 64 connections)",
                      f"at most {worst['cost'] * 100:.0f}% ({worst['what']})",
                      all(row["cost"] <= 0.15 for row in costs)))
    if "crash-recovery" in results:
        default = next(r for r in results["crash-recovery"]["rows"] if r["policy"] == "default")
        goals.append((f"kill -9 under writes with {results['crash-recovery']['keys']:,} keys "
                      "(rocksdb, default flush policy): ready in under 1 s, at most one "
                      "interval's entries applied again",
                      f"{default['ready'] * 1000:.0f} ms, {default['reapplied']:,} applied again",
                      default["ready"] < 1 and default["reapplied"] <= 2 * default["entries"]))
    return [f"| {g} | {m} | {'yes' if ok else '**no**: see below'} |" for g, m, ok in goals]


def at(points, conns=64):
    """The point measured at `conns` connections, else the nearest one."""
    return min(points, key=lambda p: abs(p["conns"] - conns))


def render_summary(results):
    rn, et = results["raft-nginx"], results["etcd"]
    w_rn, w_et, f_rn, s_rn, s_et, l_rn, l_et = headline(results)
    rr, re = results["recovery-rocksdb"], results["recovery-etcd"]
    return "\n".join([
        f"Against etcd {results['versions']['etcd'].split()[-1]} on the same 2-core machine, same run, "
        f"both syncing to disk, 64 connections ({results['date']}, "
        f"`make bench BENCH_MODE={results['mode']}`; details and the plot in "
        f"[docs/benchmarks.md](docs/benchmarks.md)):",
        "",
        "| | raft-nginx | etcd | ratio |",
        "|---|---|---|---|",
        f"| writes/s to the leader | {w_rn['rate']:.0f} | {w_et['rate']:.0f} | {ratio(w_rn['rate'], w_et['rate'])} |",
        f"| write p99 ms | {w_rn['p99']:.2f} | {w_et['p99']:.2f} | {ratio(w_rn['p99'], w_et['p99'])} |",
        f"| writes/s through a follower's nginx | {f_rn['rate']:.0f} | - | {f_rn['rate'] / w_rn['rate'] * 100:.0f}% of direct |",
        f"| stale / serializable reads/s on a follower | {s_rn['rate']:.0f} | {s_et['rate']:.0f} | {ratio(s_rn['rate'], s_et['rate'])} |",
        f"| linearizable reads/s on a follower | {l_rn['rate']:.0f} | {l_et['rate']:.0f} | {ratio(l_rn['rate'], l_et['rate'])} |",
        f"| failover after kill -9, median / worst ms | {rn['failover']['median'] * 1000:.0f} / "
        f"{rn['failover']['worst'] * 1000:.0f} | {et['failover']['median'] * 1000:.0f} / "
        f"{et['failover']['worst'] * 1000:.0f} | |",
        f"| restart to ready with {rr['keys']:,} keys, ms | {rr['restart'] * 1000:.0f} | "
        f"{re['restart'] * 1000:.0f} | {ratio(rr['restart'], re['restart'])} |",
    ]) + "\n"


def replace_between(path, begin, end, text):
    with open(path) as f:
        content = f.read()
    a, b = content.find(begin), content.find(end)
    if a < 0 or b < a:
        raise RuntimeError(f"{path} lacks the markers {begin} ... {end}")
    with open(path, "w") as f:
        f.write(content[:a + len(begin)] + "\n" + text + content[b:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build-release/src/raft-nginx")
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--seconds", type=int, help="seconds per load point (overrides the mode)")
    ap.add_argument("--recovery-keys", type=int, help="keys for the recovery runs (overrides the mode)")
    ap.add_argument("--json", default=os.path.join(ROOT, "build-release", "bench-results.json"),
                    help="where the raw results go")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/ and README.md")
    ap.add_argument("--from-json", metavar="FILE", help="measure nothing: rewrite the docs from "
                    "the raw results of an earlier run")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            return write_docs(json.load(f))
    mode = dict(MODES[args.mode])
    if args.seconds:
        mode["seconds"] = args.seconds
    if args.recovery_keys:
        mode["recovery_keys"] = args.recovery_keys
    binary = os.path.abspath(args.binary)
    for tool in ("wrk", "etcd", "gnuplot", binary):
        if not shutil.which(tool):
            sys.exit(f"compare: {tool} not found (make bench installs what is missing)")

    began = time.monotonic()
    root = tempfile.mkdtemp(prefix="raftnginx-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    results = {"mode": args.mode, "seconds": mode["seconds"], "versions": versions(binary),
               "date": datetime.date.today().isoformat(), "fsync": disk(root)}
    try:
        systems = [RaftNginx(os.path.join(root, "raft-nginx"), binary), Etcd(os.path.join(root, "etcd"))]
        for s in systems:
            os.makedirs(s.root)
            results[s.label] = {}
        try:
            run_load(systems, mode, results)
        finally:
            for s in systems:
                s.close()
        recoveries = [("recovery-rocksdb", lambda s: RaftNginx(s, binary, nginx=False)),
                      ("recovery-memory", lambda s: RaftNginx(s, binary, ["--fsm", "memory"], nginx=False)),
                      ("recovery-etcd", lambda s: Etcd(s))]
        for label, make in recoveries:
            sub = os.path.join(root, label)
            os.makedirs(sub)
            measure_recovery(lambda: make(sub), mode, results, label)
            shutil.rmtree(sub, ignore_errors=True)
        measure_crash_recovery(root, binary, mode, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["elapsed"] = time.monotonic() - began
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    log(f"measured in {results['elapsed'] / 60:.1f} minutes; raw results in {args.json}")
    if not args.no_docs:
        write_docs(results)


def write_docs(results):
    command = f"make bench BENCH_MODE={results['mode']}"
    plot(results, os.path.join(ROOT, "docs", "img", "write-latency.png"))
    replace_between(os.path.join(ROOT, "docs", "benchmarks.md"), "<!-- compare:begin -->",
                    "<!-- compare:end -->", render(results, command))
    replace_between(os.path.join(ROOT, "README.md"), "<!-- bench-summary:begin -->",
                    "<!-- bench-summary:end -->", render_summary(results))
    log("wrote docs/benchmarks.md, docs/img/write-latency.png and README.md")


if __name__ == "__main__":
    main()
