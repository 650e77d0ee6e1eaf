"""Starting, restarting and stopping real raft-nginx processes: the Go project's config.json,
restarts with the data kept, graceful SIGTERM of the leader under client load, -inmem."""
import json
import os
import subprocess
import threading
import time
import unittest

from cluster import ClusterTest, Daemon, request, wait_until, BINARY

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "config")


class ConfigFile(ClusterTest):
    def test_the_sample_configs_single_node_then_join(self):
        n1 = Daemon(self.root, "node1")
        n2 = Daemon(self.root, "node2")
        # The samples as shipped, but on free ports: tests never assume a port is free.
        for d, name, join in ((n1, "single-node.json", None), (n2, "join.json", n1)):
            with open(os.path.join(CONFIG_DIR, name)) as f:
                config = json.load(f)
            config["nodes"][0].update(address=d.http, raft_bind=d.raft)
            if join:
                config["server"]["address"] = join.http
            with open(os.path.join(self.root, name), "w") as f:
                json.dump(config, f)
            self.cluster.nodes[d.name] = d
        # Relative directories, as the Go project's samples have them.
        n1.start([BINARY, "-config", "single-node.json"], cwd=self.root)
        wait_until(lambda: n1.get("/readyz").status == 200, what="node1 ready")
        n2.start([BINARY, "-config", "join.json"], cwd=self.root)
        self.cluster.wait_members(2)
        self.write(n1, "from", "config")
        self.assert_value(n2, "from", "config", level="linearizable")
        self.assertTrue(os.path.isdir(os.path.join(self.root, "data", "node2", "log")))
        self.assertIn("max_pool", n1.log_tail())  # noted, not silently dropped

    def test_config_errors_exit_2_naming_the_field(self):
        cases = {
            '{"nodes": [{"id": "a", "address": "h:1", "raft_bind": "h:2"}], "raft_dir": 5}': "raft_dir",
            '{"nodes": [{"id": "a", "address": "h:1"}]}': "nodes[0].raft_bind",
            '{"raft_dir": "x"}': "nodes",
            '{"nodes": [{"id": "a", "address": "h:1", "raft_bind": "h:2"}], '
            '"snapshot": {"snapshot_threshold": "many"}}': "snapshot.snapshot_threshold",
            "not json": "not valid JSON",
        }
        for text, field in cases.items():
            path = os.path.join(self.root, "bad.json")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.run([BINARY, "-config", path], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(field, p.stderr)
        # An unknown field is only a warning; a flag overrides the file.
        path = os.path.join(self.root, "warn.json")
        d = Daemon(self.root, "w")
        with open(path, "w") as f:
            f.write('{"nodes": [{"id": "w", "address": "127.0.0.1:1", "raft_bind": "%s"}],'
                    ' "raft_dir": "%s", "colour": "blue", "single_node": true}' % (d.raft, d.data_dir))
        self.cluster.nodes["w"] = d
        d.start([BINARY, "-config", path, "-haddr", d.http])
        wait_until(lambda: d.get("/readyz").status == 200, what="w ready")
        self.assertIn("unknown field colour", d.log_tail())

    def test_bad_flags_exit_2_and_help_exits_0(self):
        p = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("-haddr", p.stdout.replace("--haddr", "-haddr"))
        for args in (["--election-timeout", "soon", "d"], ["--fsm", "paper", "d"],
                     ["--heartbeat-timeout", "1s", "d"], ["--learner", "d"], []):
            p = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 2, (args, p.stderr))


class RoundTrip(ClusterTest):
    def test_rtt_sets_the_timeouts_that_nothing_else_set(self):
        for name, extra, expected in (
                ("wan", [], "heartbeat=150ms election=1500ms"),
                ("given", ["--election-timeout", "3s"], "heartbeat=150ms election=3s"),
                ("lan", ["--rtt", "10ms"], "heartbeat=50ms election=500ms")):
            d = Daemon(self.root, name)
            self.cluster.nodes[name] = d
            d.start([BINARY, "-id", name, "-haddr", d.http, "-raddr", d.raft,
                     *(extra if name == "lan" else ["--rtt", "150ms", *extra]),
                     os.path.join(self.root, name)])
            wait_until(lambda: d.get("/readyz").status == 200, what=f"{name} ready")
            self.assertIn(expected, d.log_tail())
        for args in (["--rtt", "11s"], ["--rtt", "far"]):
            p = subprocess.run([BINARY, *args, os.path.join(self.root, "x")], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn("--rtt", p.stderr)


class PreferredLeader(ClusterTest):
    def test_leadership_goes_back_to_the_preferred_member_once_it_is_back(self):
        c = self.cluster.start(3, args=["--preferred-leader", "node2,node1"])

        def leads(name):
            return lambda: c.nodes[name].running() and c.nodes[name].status()["role"] == "leader"
        wait_until(leads("node2"), timeout=30, what="node2 leading")
        self.write(c.nodes["node2"], "k", "1")
        # node2 gone: node1 is next; back: it leads again, and nothing was lost.
        c.nodes["node2"].kill()
        wait_until(leads("node1"), timeout=30, what="node1 leading")
        self.write(c.nodes["node1"], "k", "2")
        c.nodes["node2"].start()
        wait_until(leads("node2"), timeout=30, what="node2 leading again")
        self.assertIn("handing leadership to node2", c.nodes["node1"].log_tail(200))
        self.assert_value(c.nodes["node2"], "k", "2", level="linearizable")


class Restarts(ClusterTest):
    def test_restart_every_node_keeps_the_data_and_applies_nothing_twice(self):
        c = self.cluster.start(3, args=["--snapshot-threshold", "50"])
        leader = c.leader()
        for i in range(120):
            self.write(leader, f"k{i}", str(i))
        c.wait_converged()
        for d in c.nodes.values():
            self.assertEqual(d.stop(), 0)
        for d in c.nodes.values():
            d.start()
        leader = c.leader()
        c.wait_converged()
        for d in c.nodes.values():
            self.assertEqual(d.get("/key/k119").json(), {"k119": "119"})
            self.assertEqual(d.get("/key/k0").json(), {"k0": "0"})
            # The rocksdb backend resumes from its own applied index: nothing re-applied.
            self.assertEqual(d.metric("raftnginx_fsm_applied_entries_total"), 0)
        self.write(leader, "after", "restart")

    def test_memory_backend_rebuilds_from_snapshot_and_log(self):
        c = self.cluster.start(1, args=["--fsm", "memory", "--snapshot-threshold", "20"])
        node = c["node1"]
        for i in range(50):
            self.write(node, f"k{i}", str(i))
        self.assertEqual(node.stop(), 0)
        node.start()
        wait_until(lambda: node.get("/readyz").status == 200, what="ready after restart")
        self.assertEqual(node.get("/key/k49").json(), {"k49": "49"})
        self.assertGreater(node.status()["snapshot_index"], 0)

    def test_inmem_keeps_nothing(self):
        c = self.cluster.start(1, args=["-inmem"])
        node = c["node1"]
        self.write(node, "k", "v")
        self.assertEqual(node.stop(), 0)
        self.assertFalse(os.path.exists(node.data_dir))
        node.start()
        wait_until(lambda: node.get("/readyz").status == 200, what="ready")
        self.assertEqual(node.get("/key/k").status, 404)


class GracefulStop(ClusterTest):
    def test_sigterm_of_the_leader_hands_over_without_a_failed_write(self):
        c = self.cluster.start(3)
        leader = c.leader()
        failures = []
        written = []
        stop = threading.Event()

        def client():
            # A client that talks to any node, follows 307, and retries on 503 (not done) and
            # 504 (maybe done: the same Idempotency-Key makes the retry safe), as the README says
            # clients should.
            i = 0
            while not stop.is_set():
                nodes = [d for d in c.nodes.values() if d.running() and d is not leader] + [leader]
                target = nodes[i % len(nodes)].http
                for _ in range(50):
                    try:
                        r = request(target, "POST", "/key", body={"seq": str(i)}, timeout=10,
                                    headers={"Idempotency-Key": f"seq-{i}"})
                    except OSError:
                        r = None
                    if r is not None and r.status == 307:
                        target = r.header("X-Raft-Leader")
                        continue
                    if r is None or r.status in (503, 504):
                        time.sleep(0.05)
                        target = [d for d in c.nodes.values() if d.running()][0].http
                        continue
                    break
                if r is None or r.status != 200:
                    failures.append((i, r))
                else:
                    written.append(i)
                i += 1

        t = threading.Thread(target=client)
        t.start()
        wait_until(lambda: len(written) >= 10, what="writes before the stop")
        self.assertEqual(leader.stop(), 0)
        after = len(written)
        wait_until(lambda: len(written) >= after + 10, what="writes after the stop")
        stop.set()
        t.join(60)
        self.assertEqual(failures, [])
        self.assertGreater(len(written), 10)
        new_leader = c.leader()
        self.assertIsNot(new_leader, leader)
        self.assertIn("stopped", leader.log_tail())
        self.assertEqual(new_leader.get("/key/seq").json(), {"seq": str(written[-1])})


if __name__ == "__main__":
    unittest.main()
