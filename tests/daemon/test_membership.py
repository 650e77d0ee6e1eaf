"""Cluster membership through the HTTP API of real raft-nginx processes: joins, learners,
removal, promotion, leadership transfer, rejoining at a new address, bootstrap_expect."""
import json
import os
import unittest

from cluster import BINARY, ClusterTest, Daemon, free_port, request, wait_until


class Membership(ClusterTest):
    def test_join_through_a_follower(self):
        c = self.cluster.start(2)
        follower = c.followers()[0]
        c.add("node3", join=follower)
        c.wait_members(3)
        self.write(c.leader(), "k", "v")
        self.assert_value(c["node3"], "k", "v", level="linearizable")

    def test_a_new_node_catches_up_by_streamed_snapshot(self):
        # The short form of bench/join_snapshot.py (1 GB there).
        flags = ["--snapshot-threshold", "16", "--trailing-logs", "4", "--snapshot-interval", "0"]
        c = self.cluster.start(1, args=flags)
        leader = c["node1"]
        value = "v" * (256 * 1024)
        for i in range(40):
            self.assertEqual(request(leader.http, "PUT", f"/key/blob{i}", body=value).status, 200)
        wait_until(lambda: leader.status()["snapshot_index"] >= 30, what="a snapshot")
        joiner = c.add("node2", flags, join=leader)
        c.wait_members(2)
        c.wait_converged()
        self.assertGreaterEqual(joiner.status()["snapshots_installed"], 1)
        self.assertEqual(joiner.get("/key/blob0").json(), {"blob0": value})
        self.assertEqual(joiner.get("/key/blob39").json(), {"blob39": value})

    def test_join_is_idempotent_and_hraftd_shaped(self):
        c = self.cluster.start(2)
        leader = c.leader()
        node2 = c["node2"]
        body = {"id": "node2", "addr": node2.raft, "http_addr": node2.http, "voter": True}
        r = leader.post("/join", body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["result"], "already a member")
        # Restarting a joined node with the same flags joins again, which changes nothing.
        node2.stop()
        node2.start()
        c.wait_members(2)
        self.assertIn("joined the cluster", node2.log_tail())

    def test_learner_replicates_serves_reads_and_never_votes(self):
        c = self.cluster.start(3)
        learner = c.add("edge", ["--learner"], join=c["node1"])
        c.wait_members(4)
        st = learner.status()
        self.assertEqual(st["role"], "learner")
        entry = [m for m in st["members"] if m["id"] == "edge"][0]
        self.assertFalse(entry["voter"])
        self.write(c.leader(), "k", "v")
        self.assert_value(learner, "k", "v", level="linearizable")
        # Stopping the learner and one voter leaves a voting majority (2 of 3).
        learner.stop()
        c.followers()[0].stop()
        self.write(c.leader(), "still", "writable")

    def test_remove_and_promote(self):
        c = self.cluster.start(3)
        learner = c.add("edge", ["--learner"], join=c["node1"])
        c.wait_members(4)
        leader = c.leader()
        r = leader.post("/promote", {"id": "edge"})
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: learner.status()["role"] == "follower", what="edge promoted")
        self.assertEqual(leader.post("/promote", {"id": "edge"}).status, 409)
        victim = c.followers()[0]
        r = leader.post("/remove", {"id": victim.name})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(victim.name, [m["id"] for m in leader.status()["members"]])
        victim.stop()
        c.wait_members(3)
        self.write(c.leader(), "after", "remove")
        self.assert_value(learner, "after", "remove", level="linearizable")

    def test_leadership_transfer(self):
        c = self.cluster.start(3)
        leader = c.leader()
        target = c.followers()[0]
        r = leader.post("/leader/transfer", {"id": target.name})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["leader"], target.name)
        self.assertIs(c.leader(), target)
        # Without an id, it goes to the most up-to-date voter.
        r = target.post("/leader/transfer")
        self.assertEqual(r.status, 200, r)
        self.assertIsNot(c.leader(), target)
        # On a follower the call follows the write policy.
        follower = c.followers()[0]
        self.assertEqual(follower.post("/leader/transfer").status, 307)

    def test_same_id_at_a_new_address_updates_the_member(self):
        c = self.cluster.start(3)
        node3 = c["node3"]
        node3.stop()
        node3.http = f"127.0.0.1:{free_port()}"
        node3.raft = f"127.0.0.1:{free_port()}"
        node3.start()
        def moved():
            members = {m["id"]: m for m in c.leader().status()["members"]}
            return members["node3"]["raft_addr"] == node3.raft and members["node3"]["http_addr"] == node3.http
        wait_until(moved, what="node3's new address")
        self.write(c.leader(), "moved", "yes")
        self.assert_value(node3, "moved", "yes", level="linearizable")

    def test_membership_log_lines_name_the_change_not_the_request(self):
        c = self.cluster.start(1)
        node = c["node1"]
        r = node.post("/join", {"id": "node9", "addr": "127.0.0.1:1", "voter": False,
                                "note": "SECRET-FIELD"})
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: "add-learner node9" in node.log_tail(), what="the change logged")
        self.assertNotIn("SECRET-FIELD", node.log_tail(200))

    def test_two_clusters_side_by_side_keep_to_themselves(self):
        # Both keep the default cluster name; before, a hello made a peer of its sender.
        a = self.cluster.start(3)
        from cluster import Cluster
        b = Cluster(self.root + "/b")
        os.makedirs(b.root)
        try:
            b.start(3)
            for i in range(20):
                self.write(a.leader(), f"a{i}", "A")
                self.write(b.leader(), f"b{i}", "B")
            a.wait_converged()
            b.wait_converged()
            a_names = {m["id"] for d in a.running() for m in d.status()["members"]}
            b_members = {m["raft_addr"] for d in b.running() for m in d.status()["members"]}
            self.assertEqual(a_names, {"node1", "node2", "node3"})
            self.assertFalse(b_members & {d.raft for d in a.running()})
            for d in b.running():
                self.assertEqual(d.get("/key/a0").status, 404)
                self.assert_value(d, "b19", "B", level="linearizable")
        finally:
            b.close()

    def test_bootstrap_expect_forms_the_cluster_once(self):
        names = ["a", "b", "c"]
        nodes = [Daemon(self.root, n) for n in names]
        for d in nodes:
            ordered = [d] + [o for o in nodes if o is not d]
            config = {
                "cluster_name": "expect",
                "nodes": [{"id": o.name, "address": o.http, "raft_bind": o.raft} for o in ordered],
                "raft_dir": d.data_dir,
                "bootstrap_expect": 3,
            }
            with open(os.path.join(self.root, d.name + ".json"), "w") as f:
                json.dump(config, f)
            self.cluster.nodes[d.name] = d
        start = lambda d: d.start([BINARY, "-config", os.path.join(self.root, d.name + ".json")])
        start(nodes[0])
        # The first node waits for the others instead of forming a cluster alone.
        wait_until(lambda: "waiting for nodes" in nodes[0].log_tail(), what="a waiting")
        for d in nodes[1:]:
            start(d)
        self.cluster.wait_members(3)
        leader = self.cluster.leader()
        self.write(leader, "formed", "once")
        terms = {d.status()["term"] for d in nodes}
        self.assertEqual(len(terms), 1)


if __name__ == "__main__":
    unittest.main()
