#!/usr/bin/env python3
"""Chaos: real raft-nginx processes under injected faults, with every client operation recorded
and the history checked for linearizability afterwards.

Each scenario starts a cluster on loopback (each node's raft traffic passes through a
fault-injecting TCP proxy of this tool), runs concurrent clients that write unique values,
delete, compare-and-set (POST /txn on the value they last saw), and read stale and
linearizable, and watchers that follow every change (GET /watch), reconnecting to a random node
from where they were, and injects faults one at a time on a random schedule:
kill -9 and restart (leader or follower), SIGSTOP of the leader longer than an election timeout,
partitions made at the proxies (the leader isolated, a minority cut off, one direction only), a
torn record written into a stopped node's log, a follower removed, wiped and added back, and
(with --integrity) a follower's state-machine files changed behind its back: the replica check
must name it, it must stop serving reads, and `raft-nginx repair` must rebuild it. Then it heals
everything and checks:
  - the history, compare-and-sets included, is linearizable per key (an operation whose
    outcome is unknown may or may not have happened);
  - every watcher saw each index at most once, in order, the same changes at an index as every
    other watcher, and every acknowledged put at an index its connection covered (a gap only
    where a node answered 410 or "slow", which the watcher records);
  - stale reads only return values that were written;
  - no acknowledged write is lost (the final reads agree with the writes: an unacknowledged one
    may be what a key holds last);
  - every node holds the same value for every key;
  - nodes that ran throughout handed the same number of commands to their backend;
  - every damaged follower was found (named by the leader's replica check, 503 on its reads)
    and rebuilt.

  tests/chaos/chaos.py --binary build/src/raft-nginx --scenarios 4 --seconds 60 [--seed N]

It prints one summary line per scenario and a total (which adds passed=yes|no):
  ops=N ok=N unknown=N faults=N linearizable=yes|no lost=N diverged=N watched=N watch_bad=N
On failure it keeps the history and the nodes' logs and prints where.
"""
import argparse
import collections
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import sys
import subprocess
import tempfile
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
import cluster  # noqa: E402
from linearizability import Op, check  # noqa: E402


def node_id_for(name):
    """The daemon's FNV-1a mapping of a node name to its raft id (transport/member.cc)."""
    h = 14695981039346656037
    for b in name.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h or 1


class Link:
    """How one direction between two nodes behaves: a one-way delay with uniform jitter (as a
    fraction of it), a bandwidth cap, and loss. TCP carries the bytes, so a lost segment shows
    as a retransmission: a chunk hit by `loss` arrives `rto` later, and everything after it
    waits (nothing is reordered)."""

    def __init__(self, delay_ms=0.0, jitter=0.0, loss=0.0, bytes_per_s=0, rto_ms=200.0, seed=0):
        self.delay = delay_ms / 1000
        self.jitter = jitter
        self.loss = loss
        self.bytes_per_s = bytes_per_s
        self.rto = rto_ms / 1000
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def due(self, now, size, last_due):
        """When a chunk of `size` bytes read at `now` is delivered, after the one due at
        `last_due`."""
        with self.lock:
            delay = self.delay * (1 + self.rng.uniform(-self.jitter, self.jitter))
            if self.loss and self.rng.random() < self.loss:
                delay += self.rto
        at = max(now + delay, last_due)
        if self.bytes_per_s:
            at = max(at, last_due + size / self.bytes_per_s)
        return at


class Proxy:
    """Listens where the cluster believes a node's raft port is and forwards to the real one.
    It reads each connection's hello frame to learn the sender, so that links can be cut one
    direction at a time, and shaped (Network.shape) to emulate a WAN."""

    def __init__(self, dst, real_port, network, source=None):
        """`source`: every connection is from this name, and carries anything (etcd's peer
        traffic, say); None: raft-nginx's, whose hello names the sender."""
        self.dst = dst
        self.real_port = real_port
        self.network = network
        self.source = source
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # (src, client socket, upstream socket)
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        if self.source is not None:
            return self._forward(client, self.source, b"")
        try:
            client.settimeout(5)
            head = self._read_exact(client, 4)
            length = struct.unpack("<I", head)[0]
            if length > 1 << 16:
                raise OSError("not a hello")
            body = self._read_exact(client, length)
            # type (1) | "RNGX" (4) | version (1) | cluster id (4 + n) | sender id (8) | ...
            n = struct.unpack("<I", body[6:10])[0]
            sender = struct.unpack("<Q", body[10 + n:18 + n])[0]
            src = self.network.names.get(sender, "?")
        except OSError:
            client.close()
            return
        self._forward(client, src, head + body)

    def _forward(self, client, src, first):
        """Connects to the real port, sends `first` (what was read to learn the sender) and
        pumps both ways."""
        try:
            if self.network.blocked(src, self.dst):
                raise OSError("blocked")
            upstream = socket.create_connection(("127.0.0.1", self.real_port), timeout=5)
            upstream.sendall(first)
            client.settimeout(None)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self.lock:
            self.conns.append((src, client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client, self.network, self.dst, src),
                         daemon=True).start()
        self._pump(client, upstream, self.network, src, self.dst)

    @staticmethod
    def _read_exact(sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    # Bytes a link holds in flight, as a TCP window would: a sender on a thin or long link waits
    # for them to drain rather than handing the proxy everything at once.
    WINDOW = 1 << 20

    @staticmethod
    def _pump(a, b, network, src, dst):
        """Bytes from `a` (sent by `src`) to `b` (for `dst`), through the link between them if
        one is shaped, delivered when due by a thread of their own, at most WINDOW in flight."""
        pending = collections.deque()
        ready = threading.Condition()
        done = []
        held = [0]

        def deliver():
            try:
                while True:
                    with ready:
                        while not pending and not done:
                            ready.wait()
                        if not pending:
                            return
                        at, data = pending[0]
                    time.sleep(max(0.0, at - time.monotonic()))
                    b.sendall(data)
                    with ready:
                        pending.popleft()
                        held[0] -= len(data)
                        ready.notify_all()
            except OSError:
                with ready:
                    done.append(True)
                    ready.notify_all()

        sender = threading.Thread(target=deliver, daemon=True)
        sender.start()
        last_due = 0.0
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with ready:
                    while held[0] >= Proxy.WINDOW and not done:
                        ready.wait()
                    if done:
                        break
                link = network.link(src, dst)
                now = time.monotonic()
                last_due = link.due(now, len(data), last_due) if link else max(now, last_due)
                with ready:
                    pending.append((last_due, data))
                    held[0] += len(data)
                    ready.notify_all()
        except OSError:
            pass
        with ready:
            done.append(True)
            ready.notify_all()
        sender.join()
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self, src):
        """Closes every open connection from `src` (new ones are refused while blocked)."""
        with self.lock:
            keep = []
            for conn in self.conns:
                if conn[0] == src:
                    for s in conn[1:]:
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                else:
                    keep.append(conn)
            self.conns = keep

    def close(self):
        self.closed = True
        self.sock.close()
        for name in list(self.network.names.values()):
            self.cut(name)


class Network:
    def __init__(self):
        self.rules = set()  # (src, dst): messages from src to dst are dropped
        self.links = {}  # (src, dst): the Link bytes from src to dst go through
        self.lock = threading.Lock()
        self.proxies = {}
        self.names = {}

    def shape(self, src, dst, link):
        """Bytes from `src` to `dst` go through `link` from now on (None: straight)."""
        with self.lock:
            self.links[(src, dst)] = link

    def link(self, src, dst):
        with self.lock:
            return self.links.get((src, dst))

    def blocked(self, src, dst):
        with self.lock:
            return (src, dst) in self.rules

    def block(self, src, dst):
        with self.lock:
            self.rules.add((src, dst))
        self.proxies[dst].cut(src)

    def isolate(self, names):
        """Cuts every link between `names` and the other nodes, both ways (heal() undoes it)."""
        for a in names:
            for b in self.proxies:
                if b not in names:
                    self.block(a, b)
                    self.block(b, a)

    def heal(self):
        with self.lock:
            self.rules.clear()


class History:
    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def now(self):
        return time.monotonic() - self.start

    def add(self, op):
        with self.lock:
            self.ops.append(op)


class Scenario:
    def __init__(self, root, args, seed, nodes, nginx):
        self.root = root
        self.args = args
        self.rng = random.Random(seed)
        self.seed = seed
        self.nodes_count = nodes
        self.nginx = nginx
        self.network = Network()
        self.cluster = cluster.Cluster(root)
        self.history = History()
        self.faults = []
        self.restarted = set()
        self.stop = threading.Event()
        self.keys = [f"k{i}" for i in range(args.keys)]
        self.damaged = []  # per damaged follower: found, rebuilt, seconds until found
        self.acked_puts = []  # (index, key, value) of every acknowledged put and compare-and-set
        self.watch_segments = {}  # watcher id -> its connections (watch_segment dicts)
        self.finals = []  # the reads verify() made last, on the leader (client -1)

    # -- cluster -------------------------------------------------------------------------
    def start_node(self, name, join=None):
        real = cluster.free_port()
        d = cluster.Daemon(self.root, name, nginx=self.nginx, raft_port=real)
        proxy = Proxy(name, real, self.network)
        self.network.proxies[name] = proxy
        self.network.names[node_id_for(name)] = name
        d.raft = f"127.0.0.1:{real}"
        d.args = ["--raft-advertise", f"127.0.0.1:{proxy.port}", *self.node_flags(name)]
        if join is not None:
            d.args += ["-join", join.http]
        self.cluster.nodes[name] = d
        return d.start()

    def node_flags(self, name):
        """The flags node `name` runs with, besides its addresses."""
        return ["--snapshot-threshold", "500", "--trailing-logs", "100",
                "--kv-watch-progress", "300ms"]

    def start(self):
        first = self.start_node("node1")
        cluster.wait_until(lambda: first.get("/readyz").status == 200, what="node1 ready")
        for i in range(2, self.nodes_count + 1):
            self.start_node(f"node{i}", join=first)
        self.cluster.wait_members(self.nodes_count, timeout=30)
        self.cluster.wait_ready(timeout=30)

    def leader(self):
        for d in self.cluster.running():
            try:
                st = d.status()
            except OSError:
                continue
            if st["role"] == "leader":
                return d
        return None

    # -- clients -------------------------------------------------------------------------
    def client(self, client_id):
        rng = random.Random(self.seed * 1000 + client_id)
        seq = 0
        seen = {}  # key -> the value this client last read or wrote
        while not self.stop.is_set():
            nodes = list(self.cluster.nodes.values())
            node = rng.choice(nodes)
            address = node.gateway if self.nginx else node.http
            key = rng.choice(self.keys)
            roll = rng.random()
            if roll < 0.4:
                seq += 1
                seen[key] = f"c{client_id}-{seq}"
                self.write(address, client_id, key, seen[key])
            elif roll < 0.45:
                seen[key] = None
                self.write(address, client_id, key, None)
            elif roll < 0.55:
                seq += 1
                self.cas(address, client_id, key, seen.get(key), f"c{client_id}-{seq}")
            else:
                seen[key] = self.read(address, client_id, key,
                                      "linearizable" if roll < 0.75 else "stale")

    def request(self, address, method, path, body=None):
        """One request, following one 307 to the leader. None if the outcome is unknown."""
        for _ in range(2):
            try:
                r = cluster.request(address, method, path, body=body, timeout=3)
            except OSError:
                return None
            if r.status == 307 and r.header("X-Raft-Leader"):
                address = r.header("X-Raft-Leader")
                continue
            return r
        return None

    def write(self, address, client_id, key, value):
        path = "/key/" + urllib.parse.quote(key, safe="")
        call = self.history.now()
        if value is None:
            r = self.request(address, "DELETE", path)
        else:
            r = self.request(address, "PUT", path, body=value)
        ret = self.history.now()
        if r is not None and 400 <= r.status < 500:
            return  # refused: not applied
        if r is None or r.status != 200:
            ret = None  # 503 or no answer: it may still commit
        self.history.add(Op("write", key, value, call, ret, client_id))
        if ret is None:
            time.sleep(0.05)
        elif value is not None:
            self.acked_puts.append((int(r.header("X-Raft-Mod-Index")), key, value))

    def cas(self, address, client_id, key, expected, value):
        compare = {"key": key, "value": expected} if expected is not None \
            else {"key": key, "exists": False}
        body = json.dumps({"compare": [compare],
                           "success": [{"op": "put", "key": key, "value": value}]})
        call = self.history.now()
        r = self.request(address, "POST", "/txn", body=body)
        ret = self.history.now()
        if r is not None and 400 <= r.status < 500:
            return  # refused: not applied
        succeeded = None
        if r is None or r.status != 200:
            ret = None  # it may still commit
        else:
            succeeded = r.json()["succeeded"]
            if succeeded:
                self.acked_puts.append((r.json()["index"], key, value))
        self.history.add(Op("cas", key, value, call, ret, client_id, expected=expected,
                            succeeded=succeeded))
        if ret is None:
            time.sleep(0.05)

    def read(self, address, client_id, key, level):
        path = "/key/" + urllib.parse.quote(key, safe="") + f"?level={level}"
        call = self.history.now()
        r = self.request(address, "GET", path)
        ret = self.history.now()
        if r is None or r.status not in (200, 404):
            time.sleep(0.05)
            return
        value = r.json()[key] if r.status == 200 else None
        kind = "read" if level == "linearizable" else "stale-read"
        self.history.add(Op(kind, key, value, call, ret, client_id))
        return value

    def watcher(self, watcher_id):
        """Follows every change from index 1, on a random node each time its connection ends
        (a fault, or now and then by choice), from where it was."""
        rng = random.Random(self.seed * 7919 + watcher_id)
        segments = self.watch_segments.setdefault(watcher_id, [])
        next_from = 1
        while not self.stop.is_set():
            node = rng.choice(list(self.cluster.nodes.values()))
            seg = watch_segment(node.name, next_from)
            segments.append(seg)
            conn = None
            try:
                host, port = cluster.address(node.gateway if self.nginx else node.http)
                conn = http.client.HTTPConnection(host, port, timeout=3)
                conn.request("GET", f"/watch?from={next_from}")
                resp = conn.getresponse()
                if resp.status == 410:
                    seg["gap"] = json.loads(resp.read())["compacted_index"]
                elif resp.status == 200:
                    hang_up = time.monotonic() + rng.uniform(1, 8)
                    while not self.stop.is_set() and time.monotonic() < hang_up:
                        line = resp.readline()
                        if not line:
                            break
                        m = json.loads(line)
                        if "progress" in m:
                            seg["progress"] = max(seg["progress"], m["progress"])
                        elif "error" in m:
                            seg["gap"] = m["compacted_index"]
                            break
                        else:
                            seg["events"].append(m)
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                pass
            finally:
                if conn is not None:
                    conn.close()
            end = covered(seg)
            next_from = max(next_from, end + 1, seg["gap"] + 1)
            if end < seg["from"] and seg["gap"] == 0:
                self.sleep(0.2)

    # -- faults --------------------------------------------------------------------------
    def fault(self):
        names = sorted(self.cluster.nodes)
        leader = self.leader()
        if self.args.integrity and not self.damaged and leader is not None:
            victim = next(self.cluster.nodes[n] for n in names if self.cluster.nodes[n] is not leader)
            self.faults.append(f"{self.history.now():.1f}s damage {victim.name}")
            return self.damage_and_repair(victim, leader)
        victim = leader if leader and self.rng.random() < 0.5 else self.cluster.nodes[self.rng.choice(names)]
        kind = self.rng.choice(["kill", "kill", "pause", "isolate", "minority", "one-way", "torn",
                                "membership"])
        if kind == "membership" and victim is leader:
            victim = self.cluster.nodes[self.rng.choice([n for n in names if n != victim.name])]
        hold = self.rng.uniform(1.0, 3.0)
        self.faults.append(f"{self.history.now():.1f}s {kind} {victim.name}")
        if kind == "kill":
            victim.kill()
            self.restarted.add(victim.name)
            self.sleep(hold)
            victim.start()
        elif kind == "pause":
            victim.pause()
            self.sleep(hold)
            victim.resume()
        elif kind == "isolate":
            self.network.isolate([victim.name])
            self.sleep(hold)
            self.network.heal()
        elif kind == "minority":
            minority = self.rng.sample(names, (len(names) - 1) // 2)
            for a in minority:
                for b in names:
                    if b not in minority:
                        self.network.block(a, b)
                        self.network.block(b, a)
            self.sleep(hold)
            self.network.heal()
        elif kind == "one-way":
            for other in names:
                if other != victim.name:
                    self.network.block(victim.name, other)
            self.sleep(hold)
            self.network.heal()
        elif kind == "torn":
            victim.kill()
            self.restarted.add(victim.name)
            self.tear_log_tail(victim)
            victim.start()
        elif kind == "membership":
            self.remove_and_readd(victim)

    def tear_log_tail(self, node):
        """Writes the start of a record after the last one of the newest segment, as a crash in
        the middle of a write leaves it (src/storage/log_format.h): a header that promises more
        than follows. The node must cut it at start-up."""
        log_dir = os.path.join(node.data_dir, "log")
        segments = sorted(f for f in os.listdir(log_dir) if f.endswith(".seg"))
        if not segments:
            return
        path = os.path.join(log_dir, segments[-1])
        with open(path, "r+b") as f:
            data = f.read()
            end = 32  # the segment header
            while end + 25 <= len(data) and data[end:end + 4] == b"RNR2":
                end += 25 + struct.unpack_from("<I", data, end + 4)[0]
            torn = b"RNR2" + struct.pack("<IB", 4096, 1) + os.urandom(self.rng.randint(0, 40))
            f.seek(end)
            f.write(torn[:max(0, min(len(torn), len(data) - end))])

    def damage_and_repair(self, node, leader):
        """Changes a value in a follower's state-machine files behind its back (as a replica
        that applied something else holds it: its hash changes too), then waits for the replica
        check to name it and for it to refuse reads, then rebuilds it with `raft-nginx repair`.
        The node stops cleanly first: after a kill its state machine may be behind its newest
        local snapshot, and the restart would rightly restore that snapshot over the damage."""
        node.stop()
        self.restarted.add(node.name)
        subprocess.run([self.args.kv_tamper, os.path.join(node.data_dir, "fsm"),
                        f"chaos-damage/{len(self.damaged)}", "rotten", "--rehash"],
                       check=True, timeout=60)
        node.start()
        began = time.monotonic()
        found = False
        while not found and time.monotonic() - began < 30 and not self.stop.is_set():
            lead = self.leader()
            r = self.request(lead.http, "GET", "/status?verify") if lead else None
            named = r is not None and r.status == 200 and node.name in \
                r.json().get("replica_check", {}).get("mismatched", [])
            read = self.request(node.http, "GET", f"/key/{self.keys[0]}?level=stale")
            found = named and read is not None and read.status == 503
            if not found:
                self.sleep(0.2)
        event = {"node": node.name, "found": found, "found_after": time.monotonic() - began}
        node.kill()
        subprocess.run([cluster.BINARY, "repair", node.data_dir], check=True, timeout=60,
                       capture_output=True)
        if "-join" not in node.args:
            node.args += ["-join", leader.http]
        node.start()
        cluster.wait_until(lambda: "repair: done" in node.log_tail(200), timeout=60,
                           what=f"{node.name} rebuilt")
        event["rebuilt"] = True
        self.damaged.append(event)

    def remove_and_readd(self, node):
        leader = self.leader()
        if leader is None or leader is node:
            return
        r = self.request(leader.http, "POST", "/remove", body={"id": node.name})
        if r is None or r.status != 200:
            return
        node.kill()
        self.restarted.add(node.name)
        shutil.rmtree(node.data_dir, ignore_errors=True)
        if "-join" not in node.args:
            node.args += ["-join", leader.http]
        else:
            node.args[node.args.index("-join") + 1] = leader.http
        self.sleep(0.5)
        node.start()

    def sleep(self, seconds):
        self.stop.wait(seconds)

    # -- the run -------------------------------------------------------------------------
    def run(self, seconds):
        self.start()
        clients = [threading.Thread(target=self.client, args=(i,)) for i in range(self.args.clients)]
        clients += [threading.Thread(target=self.watcher, args=(i,))
                    for i in range(self.args.watchers)]
        for t in clients:
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sleep(self.rng.uniform(0.5, 2.0))
            if time.monotonic() < deadline:
                self.fault()
        self.stop.set()
        for t in clients:
            t.join()
        return self.verify()

    def heal(self):
        self.network.heal()
        for d in self.cluster.nodes.values():
            if d.running():
                d.resume()
            else:
                d.start()
        self.cluster.wait_members(self.nodes_count, timeout=60)
        self.cluster.wait_ready(timeout=60)
        self.cluster.wait_converged(timeout=60)

    def verify(self):
        self.heal()
        leader = self.leader()
        ops = [op for op in self.history.ops if op.kind != "stale-read"]
        written = {}
        for op in self.history.ops:
            if op.kind in ("write", "cas"):
                written.setdefault(op.key, set()).add(op.value)
        finals = []
        for key in self.keys:
            call = self.history.now()
            r = cluster.request(leader.http, "GET", f"/key/{key}?level=linearizable", timeout=10)
            finals.append(Op("read", key, r.json()[key] if r.status == 200 else None, call,
                             self.history.now(), -1))
        self.finals = finals
        began = time.monotonic()
        linearizable, bad_keys = check(ops + finals)
        self.check_seconds = time.monotonic() - began
        stale_bad = [op for op in self.history.ops if op.kind == "stale-read"
                     and op.value is not None and op.value not in written.get(op.key, set())]
        # Every write, the unacknowledged ones as maybe-applied: a final value that only an
        # unacknowledged write explains (one in flight when the last fault struck, and applied)
        # is no loss; one that no write explains, or an acknowledged write overwritten by none
        # after it, is.
        writes = [op for op in ops if op.kind in ("write", "cas")]
        _, lost_keys = check(writes + finals)
        diverged = 0
        for key in self.keys:
            seen = set()
            for d in self.cluster.nodes.values():
                r = d.get(f"/key/{key}")
                seen.add(r.body if r.status == 200 else None)
            diverged += len(seen) > 1
        # A node cut off past the leader's compaction catches up by a snapshot: the entries it
        # replaces were never applied there one by one.
        steady = [d for name, d in self.cluster.nodes.items()
                  if name not in self.restarted and d.status()["snapshots_installed"] == 0]
        applied = {d.metric("raftnginx_fsm_applied_entries_total") for d in steady}
        ok_ops = sum(1 for op in self.history.ops if op.ret is not None)
        watched, watch_bad = check_watches(self.watch_segments, self.acked_puts)
        result = {
            "seed": self.seed, "nodes": self.nodes_count, "nginx": self.nginx,
            "ops": len(self.history.ops), "ok": ok_ops, "unknown": len(self.history.ops) - ok_ops,
            "faults": len(self.faults), "linearizable": linearizable and not stale_bad,
            "lost": len(lost_keys), "diverged": diverged, "bad_keys": bad_keys,
            "stale_never_written": len(stale_bad), "exactly_once": len(applied) <= 1,
            "damaged": self.damaged, "watched": watched, "watch_bad": watch_bad,
        }
        found_all = all(e["found"] and e.get("rebuilt") for e in self.damaged)
        result["passed"] = (result["linearizable"] and not result["lost"] and not diverged
                            and not watch_bad
                            and result["exactly_once"] and result["faults"] > 0 and found_all
                            and (self.damaged or not self.args.integrity))
        return result

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "watches.json"), "w") as f:
            json.dump(self.watch_segments, f, indent=0)
        with open(os.path.join(folder, "history.json"), "w") as f:
            json.dump([op.__dict__ for op in self.history.ops + self.finals], f, indent=0)
        with open(os.path.join(folder, "faults.txt"), "w") as f:
            f.write("\n".join(self.faults) + "\n")
        for d in self.cluster.nodes.values():
            if os.path.exists(d.log_path):
                shutil.copy(d.log_path, folder)

    def close(self):
        self.stop.set()
        self.cluster.close()
        for p in self.network.proxies.values():
            p.close()


def watch_segment(node, start):
    """One watch connection: the changes it delivered, the progress it reported, and the index
    a node said it could no longer serve from (410 or "slow"), 0 if none."""
    return {"node": node, "from": start, "events": [], "progress": 0, "gap": 0}


def covered(seg):
    """The last index whose changes the connection delivered whole: what a progress message
    vouched for, or the index before the last change seen (a connection cut mid-piece may have
    delivered only some of that index's changes; the next connection reads it again)."""
    last = seg["events"][-1]["index"] - 1 if seg["events"] else 0
    return max(seg["progress"], last, seg["from"] - 1)


def check_watches(watchers, acked_puts):
    """(changes seen, problems): each connection in index order with no change twice; every
    index the same everywhere it was seen; every acknowledged put at an index a connection
    covered, in that connection."""
    problems = 0
    by_index = {}
    seen = 0
    for segments in watchers.values():
        for seg in segments:
            end = covered(seg)
            changes = [(e["index"], e["type"], e["key"], e.get("value")) for e in seg["events"]
                       if seg["from"] <= e["index"] <= end]
            seen += len(changes)
            indexes = [c[0] for c in changes]
            problems += indexes != sorted(indexes)
            problems += len(set(changes)) != len(changes)
            problems += any(e["index"] < seg["from"] for e in seg["events"])
            mine = {}
            for c in changes:
                mine.setdefault(c[0], []).append(c[1:])
            for index, at in mine.items():
                if by_index.setdefault(index, at) != at:
                    problems += 1
            for index, key, value in acked_puts:
                if seg["from"] <= index <= end and ("put", key, value) not in mine.get(index, []):
                    problems += 1
    return seen, problems


def summary(r):
    return (f"ops={r['ops']} ok={r['ok']} unknown={r['unknown']} faults={r['faults']} "
            f"linearizable={'yes' if r['linearizable'] else 'no'} lost={r['lost']} "
            f"diverged={r['diverged']} watched={r.get('watched', 0)} "
            f"watch_bad={r.get('watch_bad', 0)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/src/raft-nginx")
    ap.add_argument("--scenarios", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--keys", type=int, default=16)
    ap.add_argument("--watchers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="where to keep failed runs (default: a temp dir)")
    ap.add_argument("--first", type=int, default=1, help="start at this scenario number")
    ap.add_argument("--integrity", action="store_true",
                    help="the first fault of each scenario damages a follower's state-machine "
                         "files (needs --kv-tamper)")
    ap.add_argument("--kv-tamper", default=os.environ.get("RAFTNGINX_KV_TAMPER", "kv_tamper"),
                    help="the test tool that changes a stopped node's rocksdb files")
    args = ap.parse_args()
    cluster.BINARY = os.path.abspath(args.binary)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    # Scenario i: 3 or 5 nodes, every other one through nginx.
    plans = [(3, False), (5, False), (3, True), (5, True)]
    totals = dict(ops=0, ok=0, unknown=0, faults=0, lost=0, diverged=0, watched=0, watch_bad=0)
    all_passed = all_linearizable = True
    for i in range(args.first - 1, args.first - 1 + args.scenarios):
        nodes, nginx = plans[i % len(plans)]
        root = tempfile.mkdtemp(prefix="raftnginx-chaos-")
        s = Scenario(root, args, seed + i, nodes, nginx)
        try:
            r = s.run(args.seconds)
        except Exception as e:  # a scenario that cannot even finish is a failure too
            s.faults.append("error: " + traceback.format_exc())
            r = dict(ops=len(s.history.ops), ok=0, unknown=0, faults=len(s.faults) - 1,
                     linearizable=False, lost=0, diverged=0, passed=False, error=repr(e),
                     bad_keys=[], stale_never_written=0, exactly_once=True, damaged=s.damaged,
                     watched=0, watch_bad=0)
        finally:
            s.close()
        print(f"scenario {i + 1}: seed={seed + i} nodes={nodes} nginx={'yes' if nginx else 'no'} "
              f"{summary(r)}" + (f" error={r['error']}" if "error" in r else "")
              + ("" if r["exactly_once"] else " exactly_once=no")
              + (f" stale_never_written={r['stale_never_written']}" if r["stale_never_written"] else "")
              + "".join(f" damaged={e['node']}:found={'yes' if e['found'] else 'no'}"
                        f"/{e['found_after']:.1f}s:rebuilt={'yes' if e.get('rebuilt') else 'no'}"
                        for e in r.get("damaged", [])),
              flush=True)
        for k in totals:
            totals[k] += r[k]
        all_linearizable = all_linearizable and r["linearizable"]
        if not r["passed"]:
            all_passed = False
            keep = os.path.join(args.keep or tempfile.gettempdir(), f"raftnginx-chaos-failed-{seed + i}")
            s.save(keep)
            print(f"  FAILED: history, faults and node logs kept in {keep} (bad keys: {r['bad_keys']})")
        shutil.rmtree(root, ignore_errors=True)
    print(f"ops={totals['ops']} ok={totals['ok']} unknown={totals['unknown']} faults={totals['faults']} "
          f"linearizable={'yes' if all_linearizable else 'no'} lost={totals['lost']} "
          f"diverged={totals['diverged']} watched={totals['watched']} "
          f"watch_bad={totals['watch_bad']} passed={'yes' if all_passed else 'no'}")
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
