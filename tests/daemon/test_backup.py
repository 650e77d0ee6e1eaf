"""Backups and restores with real processes: a backup taken from a follower while writers run,
restored into a fresh 3-node cluster that holds exactly the state as of the backup's index (and
refuses the old cluster's members); a backup restored in place through the log, the same on every
member and across a restart; damaged files refused by both."""
import json
import os
import socket
import subprocess
import threading
import unittest

import raftwire as w
from cluster import BINARY, SLOW, ClusterTest, Daemon, address, wait_until


def listing(node):
    """Every key's record on `node` (its own copy), by key."""
    r = node.get("/key?detailed")
    assert r.status == 200, r
    return {rec["key"]: rec for rec in r.json()}


class Writers:
    """Threads writing to the leader until stopped: each write a new key, and one of ten hot
    keys overwritten now and then. Remembers every acknowledged write with its own index."""

    def __init__(self, leader, threads=2):
        self.leader = leader
        self.stop = threading.Event()
        self.acked = []  # (index, key, value)
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(threads)]

    def run(self, t):
        n = 0
        while not self.stop.is_set():
            key = f"hot/{n % 10}" if n % 3 == 0 else f"load/{t}/{n}"
            value = f"{t}-{n}"
            try:
                r = self.leader.post("/key", {key: value})
            except OSError as e:
                self.failures.append(e)
                return
            if r.status != 200:
                self.failures.append(r)
                return
            with self.lock:
                self.acked.append((int(r.header("X-Raft-Mod-Index")), key, value))
            n += 1

    def highest(self):
        with self.lock:
            return max((i for i, _, _ in self.acked), default=0)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def state_at(self, index):
        """Each key's (value, mod_index) after the writes up to `index`."""
        state = {}
        for i, key, value in sorted(self.acked):
            if i <= index:
                state[key] = (value, i)
        return state


class Backup(ClusterTest):
    def cli(self, *args, expect=0):
        r = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=120 * SLOW)
        self.assertEqual(r.returncode, expect, f"{args}: {r.stdout}{r.stderr}")
        return r

    def damaged_copies(self, path):
        """The backup with one byte flipped in its middle, and cut short."""
        with open(path, "rb") as f:
            data = f.read()
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        cut = data[:-100]
        out = []
        for name, content in (("flipped", bytes(flipped)), ("cut", cut)):
            p = os.path.join(self.root, name + ".backup")
            with open(p, "wb") as f:
                f.write(content)
            out.append(p)
        return out

    def test_backup_under_load_restores_into_a_new_cluster(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        path = os.path.join(self.root, "site.backup")
        with Writers(leader) as writers:
            wait_until(lambda: writers.highest() > 300, timeout=30, what="writes under way")
            before = writers.highest()
            out = self.cli("backup", path, "--level", "linearizable", "-o", "json",
                           "--endpoints", follower.http)
            taken = json.loads(out.stdout)
            wait_until(lambda: writers.highest() > taken["index"] + 100, timeout=30,
                       what="writes after the backup")
        self.assertEqual(writers.failures, [])
        # Linearizable: the follower caught up with every write acknowledged before the call.
        self.assertGreaterEqual(taken["index"], before)
        self.assertEqual(taken["cluster_id"], "raft-nginx")
        self.assertEqual(taken["backend"], "rocksdb")
        # What a direct GET says of how long writers waited for the view.
        r = follower.get("/backup")
        self.assertEqual(r.status, 200)
        stall_us = int(r.header("X-Backup-Stall-Us"))
        print(f"\nbackup of index {taken['index']} ({taken['bytes']} bytes) under load; "
              f"writers waited {stall_us} µs for the view", flush=True)

        expected = writers.state_at(taken["index"])
        self.assertGreater(len(expected), 150)

        # Damaged files are refused, and leave nothing behind.
        for damaged in self.damaged_copies(path):
            target = os.path.join(self.root, "never")
            r = self.cli("restore", damaged, target, "--id", "x", "--raft-addr", "127.0.0.1:1",
                         "--http-addr", "127.0.0.1:2", expect=1)
            self.assertIn("checksum", r.stderr)
            self.assertFalse(os.path.exists(target))

        # A new cluster: r1 seeded from the backup, r2 and r3 join it.
        r1 = Daemon(self.root, "r1")
        self.cli("restore", path, r1.data_dir, "--id", "r1", "--raft-addr", r1.raft,
                 "--http-addr", r1.http)
        self.cluster.nodes["r1"] = r1.start()
        wait_until(lambda: r1.get("/readyz").status == 200, what="r1 ready")
        for name in ("r2", "r3"):
            self.cluster.nodes[name] = Daemon(self.root, name, ["-join", r1.http]).start()
        new = [self.cluster[n] for n in ("r1", "r2", "r3")]
        wait_until(lambda: all(len(d.status()["members"]) == 3 and d.status()["leader"]
                               for d in new), timeout=30, what="3 restored members")
        wait_until(lambda: all(d.status()["applied_index"] >= taken["index"] for d in new),
                   what="the restored members caught up")
        new_id = r1.status()["cluster_id"]
        self.assertTrue(new_id.startswith("raft-nginx/"), new_id)
        for d in new:
            self.assertEqual(d.status()["cluster_id"], new_id)
            restored = {k: (rec["value"], rec["mod_index"]) for k, rec in listing(d).items()}
            diff = {k: (restored.get(k), expected.get(k)) for k in set(restored) | set(expected)
                    if restored.get(k) != expected.get(k)}
            self.assertEqual(diff, {}, f"{d.name}: {diff}")
        # The restored cluster takes writes, and the old one is untouched by it.
        self.assertEqual(r1.post("/key", {"after": "restore"}).status, 200)
        self.assertEqual(leader.get("/key/after").status, 404)
        # A backup from further along the old cluster's history would run the new cluster's
        # revisions backwards: refused.
        later = os.path.join(self.root, "later.backup")
        self.cli("backup", later, "--endpoints", leader.http)
        new_leader = wait_until(lambda: next((d for d in new if d.status()["role"] == "leader"),
                                             None), what="the new cluster's leader")
        with open(later, "rb") as f:
            r = new_leader.post("/restore", body=f.read(),
                                headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 409, r)
        self.assertIn("backwards", r.json()["error"])

        # A member of the old cluster is a stranger to the new one.
        refused = r1.metric("raftnginx_raft_refused_connections_total")
        old_member = w.node_id("node1")
        with socket.create_connection(address(r1.raft)) as s:
            s.settimeout(10 * SLOW)
            s.sendall(w.hello("raft-nginx", old_member) +
                      w.message(w.HEARTBEAT, old_member, w.node_id("r1"), 1 << 20))
            self.assertEqual(s.recv(100), b"")
        wait_until(lambda: r1.metric("raftnginx_raft_refused_connections_total") > refused,
                   what="the old member's hello refused")
        self.assertNotEqual(r1.status()["term"], 1 << 20)

        # A node whose data belongs to the old cluster is refused before it becomes a member,
        # and stops, saying why.
        old_node3 = self.cluster["node3"]
        old_node3.kill()
        stranger = Daemon(self.root, "node3", ["-join", r1.http])
        self.cluster.nodes["node3-again"] = stranger.start()
        self.assertNotEqual(stranger.proc.wait(timeout=30 * SLOW), 0)
        self.assertIn("belongs to cluster 'raft-nginx'", stranger.log_tail())
        self.assertEqual(len(r1.status()["members"]), 3)

        # The nodes of the restored cluster keep its id across a restart.
        r2 = self.cluster["r2"]
        self.assertEqual(r2.stop(), 0)
        r2.start()
        wait_until(lambda: r2.get("/readyz").status == 200, what="r2 back")
        self.assertEqual(r2.status()["cluster_id"], new_id)

    def test_restore_in_place_replaces_every_members_state_through_the_log_memory(self):
        self.restore_in_place("memory")

    def test_restore_in_place_replaces_every_members_state_through_the_log_rocksdb(self):
        self.restore_in_place("rocksdb")

    def restore_in_place(self, backend):
        c = self.cluster.start(3, args=["--fsm", backend])
        leader = c.leader()
        follower = c.followers()[0]
        for key, value in (("a", "1"), ("b", "2"), ("c", "3")):
            self.write(leader, key, value)
        path = os.path.join(self.root, "before.backup")
        taken = json.loads(self.cli("backup", path, "-o", "json", "--level", "linearizable",
                                    "--endpoints", follower.http).stdout)
        before = {k: rec["value"] for k, rec in listing(leader).items()}
        self.write(leader, "a", "changed")
        self.write(leader, "d", "new")
        self.assertEqual(leader.request("DELETE", "/key/b").status, 200)

        # Damaged: the client refuses to send it, and the leader refuses it if sent anyway.
        for damaged in self.damaged_copies(path):
            r = self.cli("restore", damaged, "--in-place", "--endpoints", follower.http, expect=1)
            self.assertIn("checksum", r.stderr)
            with open(damaged, "rb") as f:
                raw = leader.request("POST", "/restore", body=f.read(),
                                     headers={"Content-Type": "application/octet-stream"})
            self.assertEqual(raw.status, 400, raw)
            self.assertIn("checksum", raw.json()["error"])
        self.assertEqual(leader.get("/key/d").status, 200)

        out = self.cli("restore", path, "--in-place", "-o", "json", "--endpoints", follower.http)
        done = json.loads(out.stdout)
        self.assertEqual(done["backup_index"], taken["index"])
        self.assertGreater(done["index"], taken["index"])
        c.wait_converged()
        for d in c.running():
            self.assertEqual({k: rec["value"] for k, rec in listing(d).items()}, before, d.name)
        # The same records (revisions too) on every member.
        records = [listing(d) for d in c.running()]
        self.assertTrue(all(r == records[0] for r in records), records)

        # Writes go on after it; a member restarted replays it and ends where the others are.
        self.write(leader, "e", "after")
        restarted = c.followers()[0]
        self.assertEqual(restarted.stop(), 0)
        restarted.start()
        wait_until(lambda: restarted.get("/readyz").status == 200, what="restarted ready")
        c.wait_converged()
        self.assertEqual({k: rec["value"] for k, rec in listing(restarted).items()},
                         {**before, "e": "after"})


if __name__ == "__main__":
    unittest.main()
