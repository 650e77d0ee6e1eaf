"""audit-log-daemon (examples/audit_log), a program built on raft-nginx's public API, run as a
3-node cluster behind nginx as a user would run it.

AUDIT_LOG_BIN names the binary: the tree's own build, or (tests/package/test_install.sh) one built
out of tree against an installed raft-nginx.
"""
import hashlib
import json
import os
import subprocess
import threading
import time
import unittest

from cluster import BINARY, SLOW, Certs, ClusterTest, free_port, request, wait_until

AUDIT_LOG_BIN = os.environ.get("AUDIT_LOG_BIN", "audit-log-daemon")


def trail_lines(body):
    """The appended lines of a GET /audit answer, in log order ("<index> <term> <line>")."""
    return [line.split(" ", 2)[2] for line in body.splitlines()]


class Appender(threading.Thread):
    """Appends `prefix-0`, `prefix-1`, ... one after the other through the gateways, each until it
    is acknowledged, retrying with the same Idempotency-Key on any failure (another gateway if
    one is down). Stops after `count` or when told."""

    def __init__(self, cluster, prefix, count):
        super().__init__()
        self.cluster = cluster
        self.prefix = prefix
        self.count = count
        self.acked = []
        self.retries = 0
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            for i in range(self.count):
                line = f"{self.prefix}-{i}"
                self.append(line, key=f"{self.prefix}-key-{i}", turn=i)
                self.acked.append(line)
                if self.stopping.is_set():
                    return
        except Exception as e:  # reported by the test, which joins this thread
            self.error = e

    def append(self, line, key, turn):
        deadline = time.monotonic() + 30 * SLOW
        attempt = 0
        while time.monotonic() < deadline:
            nodes = [d for d in self.cluster.nodes.values() if d.running()]
            gateway = nodes[(turn + attempt) % len(nodes)].gateway
            attempt += 1
            try:
                r = request(gateway, "POST", "/audit", body=line,
                            headers={"Idempotency-Key": key}, timeout=5)
                if r.status == 200:
                    return
                if r.status < 500:
                    raise AssertionError(f"append {line} through {gateway}: {r}")
            except OSError:
                pass
            self.retries += 1
            time.sleep(0.05)
        raise AssertionError(f"append {line} was not acknowledged within 30 s")


class AuditLogDaemonTest(ClusterTest):
    def start_cluster(self, args=(), node_args=lambda name: [], **kw):
        def add(name, join=None):
            return self.cluster.add(name, list(args) + node_args(name), join=join, nginx=True,
                                    binary=AUDIT_LOG_BIN, **kw)
        first = add("node1")
        wait_until(lambda: first.get("/readyz").status == 200, what="node1 ready")
        add("node2", join=first)
        add("node3", join=first)
        self.cluster.wait_members(3)
        self.cluster.wait_ready()

    def trails(self):
        return {d.name: d.get("/audit").body for d in self.cluster.running()}

    def test_leader_killed_under_appends_every_trail_identical_without_dups_or_gaps(self):
        # Frequent snapshots and a short log: the killed leader, back, catches up by a snapshot of
        # the audit log (its files copied while appends go on) rather than by the log alone.
        self.start_cluster(["--snapshot-threshold", "40", "--trailing-logs", "10"])
        appenders = [Appender(self.cluster, f"w{n}", 150) for n in range(2)]
        for a in appenders:
            a.start()
        wait_until(lambda: sum(len(a.acked) for a in appenders) >= 60, timeout=30,
                   what="60 appends acknowledged")
        leader = self.cluster.leader()
        leader.kill()  # SIGKILL: no hand-over
        for a in appenders:
            a.join(120 * SLOW)
            self.assertFalse(a.is_alive(), "an appender did not finish")
            self.assertIsNone(a.error, a.error)
        self.assertGreater(sum(a.retries for a in appenders), 0,
                           "no append was retried: the leader died after every append finished")
        leader.start()
        self.cluster.wait_ready(timeout=30)
        wait_until(lambda: leader.status()["snapshots_installed"] > 0, timeout=30,
                   what="the old leader catching up by a snapshot")
        self.cluster.wait_converged(timeout=30)
        trails = self.trails()
        self.assertEqual(len(set(trails.values())), 1, f"trails differ: {trails}")
        lines = trail_lines(next(iter(trails.values())))
        self.assertEqual(len(lines), len(set(lines)), "a line was appended twice")
        for a in appenders:
            # Each appender waits for one line before the next: its lines are in order, all there.
            mine = [line for line in lines if line.startswith(a.prefix + "-")]
            self.assertEqual(mine, a.acked)
            self.assertEqual(len(mine), 150)
        # The positions are the log's: the same index and term on every node, increasing.
        indexes = [int(line.split(" ", 1)[0]) for line in next(iter(trails.values())).splitlines()]
        self.assertEqual(indexes, sorted(indexes))

    def test_linearizable_read_on_a_follower_sees_the_acknowledged_append(self):
        self.start_cluster()
        follower = self.cluster.followers()[0]
        for i in range(20):
            r = request(follower.gateway, "POST", "/audit", body=f"entry {i}\n")
            self.assertEqual(r.status, 200, r)
            self.assertIn("index", r.json())
            seen = follower.get("/audit?level=linearizable")
            self.assertEqual(seen.status, 200, seen)
            self.assertEqual(trail_lines(seen.body)[-1], f"entry {i}")
            self.assertIsNotNone(seen.header("X-Raft-Index"))
        self.assertEqual(follower.get("/audit?level=bogus").status, 400)

    def test_hostile_appends_are_refused_and_append_nothing(self):
        self.start_cluster(["--audit-max-line", "64"])
        leader = self.cluster.leader()
        hostile = ["", "\n", "two\nlines", "nul\x00byte", "esc\x1b[31m", "x" * 65, "cr\r",
                   "nel\u0085line", "sep\u2028line", "para\u2029line", "rlo\u202eevil",
                   "isolate\u2066x", b"bad\xff\xfeutf8", b"overlong\xc0\xaf", b"cut\xe2\x82",
                   b"surrogate\xed\xa0\x80"]
        for body in hostile:
            r = leader.post("/audit", body=body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn("error", r.json())
        self.assertEqual(leader.post("/audit", body="x" * 64).status, 200)
        self.assertEqual(leader.post("/audit", body="café\tdéployé ✓").status, 200)
        self.cluster.wait_converged()
        for d in self.cluster.running():
            self.assertEqual(trail_lines(d.get("/audit").body), ["x" * 64, "café\tdéployé ✓"])
        # Only the backend's routes are mounted: the key-value store's are not there.
        self.assertEqual(leader.get("/key/a").status, 404)
        r = leader.request("DELETE", "/audit")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.header("Allow"), "POST, GET")

    def test_tls_and_auth_guard_the_programs_routes(self):
        # The program's own `certs` command writes the CA, the nodes' certificates and the admin.
        path = os.path.join(self.root, "certs")
        r = subprocess.run([AUDIT_LOG_BIN, "certs", path, "--nodes", "node1,node2,node3",
                            "--hosts", "127.0.0.1,localhost"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        certs = Certs(path)
        with open(certs.auth) as f:
            principals = json.load(f)
        principals.append({"name": "reader", "read": ["audit"],
                           "token_sha256": hashlib.sha256(b"reader-token").hexdigest()})
        with open(certs.auth, "w") as f:
            json.dump(principals, f)
        ctx = certs.context()
        self.start_cluster(node_args=certs.flags, context=ctx, headers=certs.bearer())
        follower = self.cluster.followers()[0]
        admin, reader = certs.bearer(), {"Authorization": "Bearer reader-token"}

        def post(headers, line):
            return request(follower.gateway, "POST", "/audit", body=line, headers=headers,
                           context=ctx)
        self.assertEqual(post({}, "anonymous").status, 401)
        self.assertEqual(post({"Authorization": "Bearer wrong"}, "wrong").status, 401)
        self.assertEqual(post(reader, "reader").status, 403)
        r = post(admin, "deployed v42")
        self.assertEqual(r.status, 200, r)
        r = request(follower.gateway, "GET", "/audit?level=linearizable", headers=reader,
                    context=ctx)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(trail_lines(r.body), ["deployed v42"])
        self.assertEqual(request(follower.gateway, "GET", "/audit", context=ctx).status, 401)

    def test_a_data_directory_keeps_to_its_backend(self):
        solo = self.cluster.add("solo", binary=AUDIT_LOG_BIN)
        wait_until(lambda: solo.get("/readyz").status == 200, what="solo ready")
        self.assertEqual(solo.post("/audit", body="kept").status, 200)
        self.assertEqual(solo.stop(), 0)
        # raft-nginx's key-value store on the audit log's data: refused, and nothing is touched.
        before = sorted(os.listdir(os.path.join(solo.data_dir, "fsm")))
        r = subprocess.run([BINARY, "-id", "solo", "-haddr", f"127.0.0.1:{free_port()}",
                            "-raddr", f"127.0.0.1:{free_port()}", solo.data_dir],
                           capture_output=True, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("holds the state of another backend", r.stderr)
        self.assertNotIn("repair", r.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(solo.data_dir, "fsm"))), before)
        solo.start()
        wait_until(lambda: solo.get("/readyz").status == 200, what="solo back")
        self.assertEqual(trail_lines(solo.get("/audit").body), ["kept"])

    def test_a_node_of_another_backend_never_installs_the_clusters_snapshot(self):
        flags = ["--snapshot-threshold", "8", "--trailing-logs", "2"]
        first = self.cluster.add("node1", flags, binary=AUDIT_LOG_BIN)
        wait_until(lambda: first.get("/readyz").status == 200, what="node1 ready")
        for i in range(30):
            self.assertEqual(first.post("/audit", body=f"line {i}").status, 200)
        wait_until(lambda: first.status()["snapshot_index"] >= 16, what="a snapshot")
        # raft-nginx (the key-value store) joins the audit log's cluster as a learner: the leader
        # sends it a snapshot of the audit log, which it refuses, and it stops saying why.
        stranger = self.cluster.add("kv", ["--learner"], join=first)
        wait_until(lambda: not stranger.running(), timeout=30, what="the stranger stopping")
        self.assertEqual(stranger.proc.returncode, 1)
        self.assertIn('holds the state of the "audit-log" backend, and this node runs "rocksdb"',
                      stranger.log_tail())
        self.assertEqual(first.post("/audit", body="still here").status, 200)

    def test_flags_are_the_daemons_and_the_programs_own(self):
        def run(*args):
            return subprocess.run([AUDIT_LOG_BIN, *args], capture_output=True, text=True,
                                  timeout=30)
        version = run("--version")
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertRegex(version.stdout, r"^audit-log-daemon \S+, built on raft-nginx \S+ "
                                         r"\(public API \d+\)")
        usage = run("--help")
        for flag in ("--audit-max-line", "--nginx-listen", "--fsm", "--write-policy"):
            self.assertIn(flag, usage.stdout)
        data = os.path.join(self.root, "d")
        for args, why in ((["--audit-max-line", "0", data], "--audit-max-line"),
                          (["--fsm", "rocksdb", data], "--fsm"),
                          (["--fsm-flush-entries", "5", data], "--fsm-flush-entries")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(why, r.stderr)
        self.assertFalse(os.path.exists(data), "a refused command line created the data dir")


if __name__ == "__main__":
    unittest.main()
