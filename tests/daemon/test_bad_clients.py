"""A live 3-node cluster against clients and peers that misbehave: truncated and oversized
requests, slowloris, thousands of idle connections, binary and invalid UTF-8 keys, a POST with
a huge number of keys, garbage, replayed frames and another cluster's hello on the raft port.
Afterwards the cluster still serves, every acknowledged write is there, and the daemons' memory
stayed bounded.

Then one by one: half-sent request heads holding every connection slot, bodies sent without
credentials, principals sharing an Idempotency-Key, a join-only credential, member addresses on
the host "unix", and idle connections against a small descriptor limit."""
import hashlib
import json
import os
import re
import resource
import socket
import struct
import subprocess
import threading
import time
import unittest

from cluster import (BINARY, SLOW, ClusterTest, Daemon, PeakRss, address, free_port, request,
                     rss_kib, wait_until)


def hello(cluster_id, sender, advertise):
    payload = b"RNGX" + bytes([1]) + struct.pack("<I", len(cluster_id)) + cluster_id.encode()
    payload += struct.pack("<Q", sender) + struct.pack("<I", len(advertise)) + advertise.encode()
    return struct.pack("<I", 1 + len(payload)) + bytes([1]) + payload


def bearer(token):
    return {"Authorization": "Bearer " + token}


def write_auth(path, principals):
    """An --auth file. `principals`: {name: (token, {"read": [...], ...})}."""
    doc = [{"name": name, "token_sha256": hashlib.sha256(token.encode()).hexdigest(), **perms}
           for name, (token, perms) in principals.items()]
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


ADMIN = bearer("admin-token")


def first_answer(sock, timeout):
    """What the server sends first, within `timeout` seconds; b"" if nothing or it hung up."""
    sock.settimeout(timeout * SLOW)
    try:
        return sock.recv(4096)
    except OSError:
        return b""


def voters(node):
    """{member name: whether it votes}, as a node sees it."""
    return {m["id"]: m["voter"] for m in node.status()["members"]}


class BadClients(ClusterTest):
    def test_the_cluster_survives_bad_clients_and_peers(self):
        # The 50,000-key write below takes about 0.4 s to apply in the plain build; the
        # sanitizers make it many times slower than the default write timeout.
        c = self.cluster.start(3, args=["--max-connections", "512", "--http-read-timeout", "2s",
                                        "--write-timeout", f"{5 * SLOW:g}s"])
        leader = c.leader()
        acked = {}
        for i in range(20):
            self.write(leader, f"before{i}", str(i))
            acked[f"before{i}"] = str(i)
        rss_before = {d.name: rss_kib(d.proc.pid) for d in c.running()}

        # Truncated requests: headers cut off, a body shorter than its Content-Length.
        for raw in (b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Len",
                    b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\":",
                    b"GET /key/" + b"k" * 100000 + b" HTTP/1.1\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200)):
            answer = b""
            with socket.create_connection(address(leader.http)) as s:
                s.settimeout(10 * SLOW)
                try:  # the server may answer 400 and close before all of it is sent
                    s.sendall(raw)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                try:
                    while chunk := s.recv(65536):
                        answer += chunk
                except ConnectionResetError:
                    pass
            # Refused with a 400, or cut off without an answer; never served.
            self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 400"), (raw[:40], answer[:100]))
            self.assertEqual(leader.get("/healthz").status, 200)

        # Thousands of idle connections: the excess is refused, the rest time out.
        follower = c.followers()[0]
        idle = []
        for _ in range(1500):
            try:
                idle.append(socket.create_connection(address(leader.http), timeout=5))
            except OSError:
                break
        r = request(follower.http, "GET", "/key/before0")  # other nodes unaffected
        self.assertEqual(r.status, 200)
        for s in idle:
            s.close()
        wait_until(lambda: leader.get("/healthz").status == 200, what="leader serving again")

        # Binary and invalid UTF-8 keys and values, through the path.
        r = request(leader.http, "PUT", "/key/%C3%28%FF%00%0Abin", body=b"\xc3\x28\xff\x00")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(leader.get("/key/%C3%28%FF%00%0Abin").status, 200)

        # A huge number of keys in one POST, all applied atomically.
        many = {f"many{i}": "v" for i in range(50000)}
        r = leader.post("/key", many, timeout=30)
        self.assertEqual(r.status, 200, r)
        acked["many49999"] = "v"

        # The raft port: garbage, another cluster's hello, a hello followed by replayed garbage
        # frames, and a valid hello that then stalls.
        raft = address(leader.raft)
        for payload in (os.urandom(4096),
                        hello("another-cluster", 7, "127.0.0.1:1"),
                        hello("raft-nginx", 12345, "127.0.0.1:1") + struct.pack("<IB", 9, 2) + os.urandom(8) * 50,
                        hello("raft-nginx", 12345, "127.0.0.1:1") + struct.pack("<I", 1 << 30)):
            with socket.create_connection(raft) as s:
                s.settimeout(10 * SLOW)
                try:
                    s.sendall(payload)
                    closed = s.recv(100) == b""
                except ConnectionResetError:
                    closed = True
            # The node hangs up on each of them, and goes on.
            self.assertTrue(closed, payload[:40])
            self.assertEqual(leader.get("/healthz").status, 200)

        # Still one cluster, still serving, nothing lost.
        leader = c.leader()
        self.write(leader, "after", "bad clients")
        acked["after"] = "bad clients"
        for node in c.running():
            for key, value in acked.items():
                self.assert_value(node, key, value, level="linearizable")
        for d in c.running():
            grown = rss_kib(d.proc.pid) - rss_before[d.name]
            # 50,000 keys are a few MiB of state; a leak per connection would be far more.
            self.assertLess(grown, 256 * 1024, f"{d.name} grew by {grown} KiB")


class FairLimits(ClusterTest):
    def test_one_clients_idle_connections_do_not_lock_others_out(self):
        c = self.cluster.start(1, args=["--http-max-connections", "200"])
        node = c["node1"]
        host, port = address(node.http)
        hog = []
        for _ in range(400):  # all from 127.0.0.2, all idle
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect((host, port))
            hog.append(s)
        try:
            # Another client gets in at once, every time: each of its connections closes one of
            # the hog's idle ones.
            for i in range(20):
                s = socket.socket()
                s.bind(("127.0.0.3", 0))
                s.settimeout(5 * SLOW)
                s.connect((host, port))
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                self.assertIn(b"200 OK", s.recv(4096), i)
                s.close()
        finally:
            for s in hog:
                s.close()

    def test_connections_holding_half_a_request_head_do_not_lock_others_out(self):
        # Slowloris: every slot held by a connection that has sent part of a request head and
        # waits (the read timeout, 30 s, would free them only much later).
        c = self.cluster.start(1, args=["--max-connections", "64", "--http-read-timeout", "30s"])
        node = c["node1"]
        hog = []
        try:
            for _ in range(128):  # from 127.0.0.1
                s = socket.create_connection(address(node.http), timeout=5 * SLOW)
                try:
                    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    pass  # over the limit: refused
                hog.append(s)
            # Another client is served at once, every time: each of its connections closes one
            # of the hog's half-sent ones.
            for i in range(20):
                with socket.socket() as s:
                    s.bind(("127.0.0.2", 0))
                    s.settimeout(5 * SLOW)
                    s.connect(address(node.http))
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    self.assertIn(b"200 OK", first_answer(s, 5), i)
        finally:
            for s in hog:
                s.close()

    def test_running_out_of_descriptors_backs_off_quietly(self):
        # The daemon shares its open-file limit out at start (cli/file_limits.h); lowered under it
        # afterwards to a few more than it has open, its accept loops run out of descriptors.
        d = self.cluster.add("node1")
        wait_until(lambda: d.get("/readyz").status == 200, what="ready")
        limit = len(os.listdir(f"/proc/{d.proc.pid}/fd")) + 8
        subprocess.run(["prlimit", f"--pid={d.proc.pid}", f"--nofile={limit}:{limit}"], check=True)
        held = []
        for _ in range(200):
            for target in (d.http, d.raft):
                try:
                    held.append(socket.create_connection(address(target), timeout=1))
                except OSError:
                    pass
        # The accept loops ran out of descriptors and said so, once each, instead of spinning.
        wait_until(lambda: "backing off" in d.log_tail(200), what="accept out of descriptors")
        size = os.path.getsize(d.log_path)
        backoffs = d.log_tail(10000).count("backing off")
        for s in held:
            s.close()
        self.assertTrue(d.running())
        self.assertLessEqual(backoffs, 4)
        self.assertLess(size, 200 * 1024, "the log grew like a spinning accept loop's")
        wait_until(lambda: d.get("/healthz").status == 200, what="serving again")
        self.assertEqual(d.request("PUT", "/key/after", body="v").status, 200)


class AuthBeforeBody(ClusterTest):
    """With --auth, a request's credentials are checked on its head: a body nobody may send is
    never waited for nor held."""

    def start_with_auth(self, *args):
        auth = write_auth(os.path.join(self.root, "auth.json"),
                          {"admin": ("admin-token", {"admin": True})})
        return self.cluster.start(1, args=["--auth", auth, *args], headers=ADMIN)["node1"]

    def test_a_request_without_credentials_is_refused_before_its_body(self):
        node = self.start_with_auth("--http-read-timeout", "30s")
        for head in (b"PUT /key/a HTTP/1.1\r\n", b"POST /key HTTP/1.1\r\n"):
            for credentials in (b"", b"Authorization: Bearer wrong-token\r\n"):
                with socket.create_connection(address(node.http), timeout=5 * SLOW) as s:
                    # A body of almost 4 MiB (the default limit) is announced and never sent.
                    s.sendall(head + b"Host: x\r\n" + credentials +
                              b"Content-Length: 4000000\r\n\r\n")
                    answer = first_answer(s, 3)
                self.assertTrue(answer.startswith(b"HTTP/1.1 401"),
                                (head, credentials, answer[:80]))
        self.write(node, "a", "still served")

    def test_bodies_without_credentials_are_not_held_in_memory(self):
        node = self.start_with_auth("--max-body", "64MiB", "--http-read-timeout", "30s")
        count, sent = 8, 24 << 20  # 192 MiB of bodies in all
        body = memoryview(bytes(sent))

        def send():
            try:
                with socket.create_connection(address(node.http), timeout=5 * SLOW) as s:
                    s.sendall(b"PUT /key/a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                              % (32 << 20))
                    s.sendall(body)  # the server may hang up or stop reading: either is fine
                    first_answer(s, 2)
            except OSError:
                pass

        with PeakRss(node.proc.pid) as rss:
            threads = [threading.Thread(target=send) for _ in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60 * SLOW)
        self.assertLess(rss.grown_mib, 64, f"RSS grew by {rss.grown_mib:.0f} MiB")
        self.write(node, "a", "still served")


class PrincipalScopes(ClusterTest):
    PRINCIPALS = {
        "admin": ("admin-token", {"admin": True}),
        "alice": ("alice-token", {"read": ["alice/", "shared/"], "write": ["alice/", "shared/"]}),
        "bob": ("bob-token", {"read": ["bob/", "shared/"], "write": ["bob/", "shared/"]}),
        "edge7": ("edge7-token", {"join": True}),
    }

    def start_with_auth(self):
        self.auth = write_auth(os.path.join(self.root, "auth.json"), self.PRINCIPALS)
        return self.cluster.start(1, args=["--auth", self.auth], headers=ADMIN)["node1"]

    def put(self, node, who, key, value, idempotency_key=None):
        headers = bearer(self.PRINCIPALS[who][0])
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return node.request("PUT", "/key/" + key, body=value, headers=headers)

    def test_an_idempotency_key_is_scoped_to_its_principal(self):
        node = self.start_with_auth()
        # The same key for another write by another principal: applied, not a 422.
        self.assertEqual(self.put(node, "alice", "alice/x", "1", "K1").status, 200)
        r = self.put(node, "bob", "bob/y", "2", "K1")
        self.assertEqual(r.status, 200, r)
        self.assert_value(node, "bob/y", "2")
        # The same key for the same write by another principal: applied, not skipped.
        self.assertEqual(self.put(node, "alice", "shared/k", "a", "K2").status, 200)
        self.write(node, "shared/k", "z")
        r = self.put(node, "bob", "shared/k", "a", "K2")
        self.assertEqual(r.status, 200, r)
        self.assert_value(node, "shared/k", "a")
        # A principal's own retry is still answered without applying the write again.
        self.write(node, "shared/k", "z2")
        self.assertEqual(self.put(node, "alice", "shared/k", "a", "K2").status, 200)
        self.assert_value(node, "shared/k", "z2")

    def test_a_join_only_principal_joins_as_a_learner_until_an_admin_promotes_it(self):
        node1 = self.start_with_auth()
        token_file = os.path.join(self.root, "edge7.token")
        with open(token_file, "w") as f:
            f.write(self.PRINCIPALS["edge7"][0] + "\n")
        # The daemon asks to join as a voter (its default); a join-only credential adds a learner.
        edge = self.cluster.add("edge7", ["--auth", self.auth, "--token-file", token_file],
                                join=node1, headers=ADMIN)
        self.cluster.wait_members(2)
        self.assertEqual(voters(node1), {"node1": True, "edge7": False})
        self.write(node1, "k", "v")
        wait_until(lambda: edge.get("/key/k?level=stale").status == 200,
                   what="the learner catching up")
        # An admin promotes it.
        r = node1.post("/promote", {"id": "edge7"})
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: voters(node1) == {"node1": True, "edge7": True}, what="edge7 a voter")
        self.write(node1, "k", "w")  # needs edge7's vote now
        self.assert_value(edge, "k", "w", level="linearizable")


class MemberAddresses(ClusterTest):
    def test_a_member_address_on_host_unix_is_refused(self):
        # nginx reads "server unix:8080;" as a Unix socket named 8080, not a host.
        c = self.cluster.start(1)
        node = c["node1"]
        good = {"addr": f"127.0.0.1:{free_port()}", "http_addr": f"127.0.0.1:{free_port()}",
                "voter": False}
        cases = [(host, field) for host in ("unix", "UNIX", "Unix")
                 for field in ("addr", "http_addr")]
        for i, (host, field) in enumerate(cases):
            with self.subTest(host=host, field=field):
                r = node.post("/join", {**good, "id": f"edge{i}", field: f"{host}:8080"})
                self.assertEqual(r.status, 400, r)
        for member in ("unix:8080", "UNIX:8080"):
            with self.subTest(member=member):
                r = subprocess.run([BINARY, "nginx-conf", "--listen", f"127.0.0.1:{free_port()}",
                                    "--daemon", node.http, "--prefix", self.root,
                                    "--member", member], capture_output=True, text=True, timeout=30)
                self.assertNotEqual(r.returncode, 0, r.stdout[:200])
                self.assertTrue(r.stderr.strip(), r)
        self.assertEqual(voters(node), {"node1": True})

class DescriptorLimits(ClusterTest):
    def raise_own_descriptor_limit(self, need):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                self.skipTest(f"this test needs {need} descriptors; the hard limit is {hard}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def test_idle_http_connections_cannot_starve_storage_or_the_raft_port(self):
        self.raise_own_descriptor_limit(2048)
        c = self.cluster.start(2)
        # node3 runs with 256 descriptors, RocksDB, and a snapshot every 40 entries.
        victim = Daemon(self.root, "node3",
                        ["--snapshot-threshold", "40", "-join", c["node1"].http])
        c.nodes["node3"] = victim
        victim.start(command=["prlimit", "--nofile=256:256", "--"] + victim.command())
        c.wait_members(3)
        c.wait_ready()
        leader = c.leader()
        peer = next(d for d in c.running() if d not in (leader, victim))
        pid = victim.proc.pid
        snapshots = victim.metric("raftnginx_snapshots_taken_total")

        def applied(node):
            return node.get("/status", timeout=3).json()["applied_index"]

        held = []
        try:
            for _ in range(1100):  # idle, from 127.0.0.2 (the test itself asks from 127.0.0.1)
                try:
                    held.append(socket.create_connection(address(victim.http), timeout=2 * SLOW,
                                                         source_address=("127.0.0.2", 0)))
                except OSError:
                    break
            # Meanwhile the victim writes to RocksDB, its log and a snapshot...
            for i in range(60):
                self.write(leader, f"k{i}", str(i) * 50_000)
            commit = leader.status()["commit_index"]
            wait_until(lambda: applied(victim) >= commit, what="the victim applying the writes")
            wait_until(lambda: victim.metric("raftnginx_snapshots_taken_total") > snapshots,
                       what="the victim taking a snapshot")
            # ...and a new leader dials its raft port (the victim answers on a new connection).
            r = leader.post("/leader/transfer", {"id": peer.name})
            self.assertEqual(r.status, 200, r)
            wait_until(lambda: peer.status()["role"] == "leader", what=f"{peer.name} leading")
            self.write(peer, "during", "connections")
            commit = peer.status()["commit_index"]
            wait_until(lambda: applied(victim) >= commit,
                       what="the victim following the new leader")
        finally:
            for s in held:
                s.close()
        self.write(peer, "after", "connections")
        wait_until(lambda: (r := victim.get("/key/after?level=stale", timeout=3)).status == 200
                   and r.json() == {"after": "connections"}, what="the victim applying a new write")
        self.assertEqual(victim.get("/readyz").status, 200)
        self.assertEqual(victim.proc.pid, pid)
        self.assertTrue(victim.running())
        # It fitted its HTTP connection limit to its descriptors, and said so.
        lowered = re.compile(r"connection.*(descriptor|RLIMIT_NOFILE|nofile|open files)"
                             r"|(descriptor|RLIMIT_NOFILE|nofile|open files).*connection", re.I)
        with open(victim.log_path) as f:
            self.assertTrue(any(lowered.search(line) for line in f), "no log line on the limit")

if __name__ == "__main__":
    unittest.main()
