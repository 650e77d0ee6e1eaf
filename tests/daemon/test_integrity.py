"""Data integrity with real processes: a torn write is cut and reported, damage to what was
acknowledged stops the node and names the file, a scrub finds values changed on disk, a replica
check names the replica that diverged, and `raft-nginx repair` rebuilds a node from its peers."""
import glob
import os
import struct
import subprocess
import unittest

from cluster import BINARY, ClusterTest, wait_until

KV_TAMPER = os.environ.get("RAFTNGINX_KV_TAMPER", "kv_tamper")


def newest_segment(node):
    segments = sorted(glob.glob(os.path.join(node.data_dir, "log", "*.seg")))
    return segments[-1]


def record_starts(data):
    """Where each record of a segment begins, and where the last one ends (log_format.h)."""
    starts, at = [], 32
    while at + 25 <= len(data) and data[at:at + 4] == b"RNR2":
        starts.append(at)
        at += 25 + struct.unpack_from("<I", data, at + 4)[0]
    return starts + [at]


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


class Integrity(ClusterTest):
    def start_three(self, *args):
        c = self.cluster.start(3, args=list(args))
        return c, c.leader(), c.followers()[0]

    def test_a_torn_write_is_cut_and_reported(self):
        c = self.cluster.start(1)
        node = c["node1"]
        for i in range(1, 7):
            self.write(node, f"k{i}", f"v{i}")
        node.kill()
        segment = newest_segment(node)
        with open(segment, "rb") as f:
            end = record_starts(f.read())[-1]
        patch(segment, end, b"RNR2" + struct.pack("<I", 4096) + b"\x01" + os.urandom(30))
        node.start()
        wait_until(lambda: node.get("/readyz").status == 200, what="node1 ready")
        for i in range(1, 7):
            self.assert_value(node, f"k{i}", f"v{i}")
        cut = node.status()["log_at_start"]["torn_write_cut"]
        self.assertEqual(cut["segment"], segment)
        self.assertEqual(cut["offset"], end)
        self.assertEqual(cut["bytes"], 39)
        self.assertIn("cut a torn write", node.log_tail(50))

    def test_a_flipped_byte_in_an_acknowledged_record_stops_the_node(self):
        # The case the issue reproduced: memory backend, six acknowledged writes, a clean stop,
        # one byte of the fourth record of the newest segment flipped.
        c = self.cluster.start(1, args=["--fsm", "memory"])
        node = c["node1"]
        for i in range(1, 7):
            self.write(node, f"k{i}", f"v{i}")
        self.assertEqual(node.stop(), 0)
        segment = newest_segment(node)
        with open(segment, "rb") as f:
            data = f.read()
        starts = record_starts(data)
        at = (starts[3] + starts[4]) // 2
        patch(segment, at, bytes([data[at] ^ 0x10]))
        r = subprocess.run(node.command(), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(segment, r.stderr)
        self.assertIn("repair", r.stderr)

    def test_repair_rebuilds_a_damaged_node_from_its_peers(self):
        c, leader, follower = self.start_three("--snapshot-threshold", "20")
        for i in range(60):
            self.write(leader, f"k{i}", f"v{i}")
        c.wait_converged()
        self.assertEqual(follower.stop(), 0)
        segment = newest_segment(follower)
        with open(segment, "rb") as f:
            data = f.read()
        at = record_starts(data)[1] + 30
        patch(segment, at, bytes([data[at] ^ 0x01]))
        r = subprocess.run(follower.command(), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        # Writes go on with two of three voters meanwhile.
        self.write(leader, "during", "repair")
        r = subprocess.run([BINARY, "repair", follower.data_dir], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        aside = glob.glob(os.path.join(follower.data_dir, "damaged-*"))
        self.assertEqual(len(aside), 1)
        if "-join" not in follower.args:
            follower.args += ["-join", leader.http]
        follower.start()
        wait_until(lambda: "repair: done" in follower.log_tail(100), timeout=30,
                   what="the repair to finish")
        members = {m["id"]: m["voter"] for m in leader.status()["members"]}
        self.assertEqual(members, {"node1": True, "node2": True, "node3": True})
        for key, value in [("k0", "v0"), ("k59", "v59"), ("during", "repair")]:
            self.assert_value(follower, key, value)
        self.assertFalse(os.path.exists(os.path.join(follower.data_dir, "REPAIR")))
        self.assertTrue(glob.glob(os.path.join(aside[0], "log", "*.seg")), "the damaged data is kept")

    def test_a_scrub_finds_a_value_changed_on_disk(self):
        c, leader, follower = self.start_three("--scrub-interval", "1s")
        for i in range(20):
            self.write(leader, f"k{i}", f"v{i}")
        c.wait_converged()
        self.assertEqual(follower.stop(), 0)
        subprocess.run([KV_TAMPER, os.path.join(follower.data_dir, "fsm"), "k3", "rotten"],
                       check=True, timeout=60)
        follower.start()
        wait_until(lambda: "damage" in follower.status()["integrity"], timeout=20,
                   what="the scrub finding the changed value")
        r = follower.get("/key/k3")
        self.assertEqual(r.status, 503, r)
        self.assertIn("damaged", r.json()["error"])
        self.assertEqual(follower.metric("raftnginx_storage_damaged"), 1)
        self.assertIn("scrub:", follower.log_tail(100))
        self.assert_value(leader, "k3", "v3")
        self.assertEqual(leader.metric("raftnginx_storage_damaged"), 0)

    def test_a_replica_check_names_the_diverged_replica_and_repair_clears_it(self):
        c, leader, follower = self.start_three()
        for i in range(20):
            self.write(leader, f"k{i}", f"v{i}")
        c.wait_converged()
        self.assertEqual(follower.stop(), 0)
        subprocess.run([KV_TAMPER, os.path.join(follower.data_dir, "fsm"), "k5", "other",
                        "--rehash"], check=True, timeout=60)
        follower.start()
        c.wait_ready()
        r = leader.get("/status?verify")
        self.assertEqual(r.status, 200, r)
        check = r.json()["replica_check"]
        self.assertEqual(check["mismatched"], [follower.name])
        self.assertFalse(check["diverged"])
        self.assertEqual(leader.metric("raftnginx_replica_hash_mismatch"), 1)
        nodes = {m["id"]: m["hash_mismatch"] for m in leader.get("/nodes").json()}
        self.assertTrue(nodes[follower.name])
        self.assertFalse(nodes[leader.name])
        # The diverged replica finds it too, and stops serving reads.
        wait_until(lambda: follower.metric("raftnginx_replica_diverged") == 1,
                   what="the follower seeing it diverged")
        r = follower.get("/key/k5")
        self.assertEqual(r.status, 503, r)
        self.assertIn("differs from its peers", r.json()["error"])
        # Rebuilt from its peers, it agrees again.
        self.assertEqual(follower.stop(), 0)
        if "-join" not in follower.args:
            follower.args += ["-join", leader.http]
        follower.args += ["--repair"]
        follower.start()
        wait_until(lambda: "repair: done" in follower.log_tail(100), timeout=30,
                   what="the repair to finish")
        # Checks asked for within a moment of each other share one checkpoint: ask until one
        # is proposed after the repair.
        wait_until(lambda: leader.get("/status?verify").json()["replica_check"]["mismatched"]
                   == [], what="a replica check that finds no mismatch")
        self.assert_value(follower, "k5", "v5")

    def test_replica_checks_run_by_themselves(self):
        c, leader, follower = self.start_three("--verify-interval", "1s")
        self.write(leader, "k", "v")
        others = sorted(n.name for n in c.running() if n is not follower)
        # The first checks may come before the last member joined: wait for one that asked all.
        wait_until(lambda: sorted(follower.status()["integrity"].get("replica_check", {})
                                  .get("peers", {})) == others,
                   what="a replica check of every member without being asked")
        check = follower.status()["integrity"]["replica_check"]
        self.assertEqual(check["mismatched"], [])
        self.assertFalse(check["diverged"])


if __name__ == "__main__":
    unittest.main()
