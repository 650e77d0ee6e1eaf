"""The HTTP API of real raft-nginx processes: hraftd's walkthrough, write policies, read
levels, headers, and every kind of bad input with its status code."""
import json
import socket
import time
import unittest

from cluster import ClusterTest, request, wait_until, SLOW


class Walkthrough(ClusterTest):
    def test_seed_walkthrough_on_the_daemons(self):
        c = self.cluster.start(3)
        leader = c.leader()
        self.write(leader, "user1", "batman")
        for node in c.running():
            wait_until(lambda: node.get("/key/user1").status == 200, what="user1 replicated")
            self.assert_value(node, "user1", "batman")
        self.write(leader, "user2", "robin")
        for node in c.running():
            wait_until(lambda: node.get("/key/user2").status == 200, what="user2 replicated")
            self.assert_value(node, "user2", "robin")

    def test_many_keys_in_one_entry_and_key_headers(self):
        c = self.cluster.start(1)
        node = c["node1"]
        before = node.status()["applied_index"]
        r = node.post("/key", {"a": "1", "b": "2", "c": "3"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(node.status()["applied_index"], before + 1)  # one log entry
        self.assertGreaterEqual(int(r.header("X-Raft-Index")), before + 1)
        self.assertEqual(r.header("X-Raft-Served-By"), "node1")
        g = node.get("/key/b")
        self.assertEqual(g.json(), {"b": "2"})
        self.assertIsNotNone(g.header("X-Raft-Last-Contact"))
        self.assertEqual(request(node.http, "PUT", "/key/sl%2Fash%20key", body="raw value").status, 200)
        self.assertEqual(node.get("/key/sl%2Fash%20key").json(), {"sl/ash key": "raw value"})
        self.assertEqual(node.get("/key/sl/ash%20key").json(), {"sl/ash key": "raw value"})
        # Any bytes, even ones JSON cannot carry as they are, are stored and never crash a read.
        self.assertEqual(request(node.http, "PUT", "/key/%FF%00bin", body=b"\xff\xfe\x00v").status, 200)
        self.assertEqual(node.get("/key/%FF%00bin").json(), {"\ufffd\u0000bin": "\ufffd\ufffd\u0000v"})
        self.assertEqual(request(node.http, "DELETE", "/key/b").status, 200)
        self.assertEqual(node.get("/key/b").status, 404)

    def test_idempotency_key_applies_a_retried_write_once(self):
        c = self.cluster.start(1)
        node = c["node1"]
        h = {"Idempotency-Key": "order-42"}
        self.assertEqual(node.post("/key", {"k": "first"}, headers=h).status, 200)
        applied = node.metric("raftnginx_fsm_applied_entries_total")
        # The retry goes through the log, and the node answers it from its session table: the
        # backend never sees it.
        self.assertEqual(node.post("/key", {"k": "first"}, headers=h).status, 200)
        self.assertEqual(node.metric("raftnginx_fsm_applied_entries_total"), applied)
        # The same key for another request is a client's mistake, refused and not applied.
        reused = node.post("/key", {"k": "second"}, headers=h)
        self.assertEqual(reused.status, 422, reused)
        self.assertIn("order-42", reused.json()["error"])
        self.assertEqual(node.get("/key/k").json(), {"k": "first"})
        self.assertEqual(node.post("/key", {"k": "third"}).status, 200)
        self.assertEqual(node.get("/key/k").json(), {"k": "third"})
        # Request ids are bounded.
        self.assertEqual(node.post("/key", {"k": "x"}, headers={"Idempotency-Key": "a" * 129}).status, 400)


class WritePolicies(ClusterTest):
    def test_redirect_gives_307_to_the_leader(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        r = follower.post("/key?x=1", {"r": "1"})
        self.assertEqual(r.status, 307, r)
        self.assertEqual(r.header("X-Raft-Leader"), leader.http)
        self.assertEqual(r.header("Location"), f"http://{leader.http}/key?x=1")
        self.assertEqual(r.header("Content-Length"), "0")
        # Following it, as curl -L and nginx do, writes the value.
        self.assertEqual(request(r.header("X-Raft-Leader"), "POST", "/key?x=1", body={"r": "1"}).status, 200)
        d = request(follower.http, "DELETE", "/key/r")
        self.assertEqual(d.status, 307)

    def test_forward_relays_the_leaders_answer(self):
        c = self.cluster.start(3, args=["--write-policy", "forward"])
        follower = c.followers()[0]
        r = follower.post("/key", {"f": "v"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Raft-Served-By"), c.leader().name)
        self.assert_value(follower, "f", "v", level="linearizable")

    def test_reject_gives_403(self):
        c = self.cluster.start(3, args=["--write-policy", "reject"])
        leader = c.leader()
        r = c.followers()[0].post("/key", {"x": "v"})
        self.assertEqual(r.status, 403, r)
        self.assertIn("error", r.json())
        self.assertEqual(r.header("X-Raft-Leader"), leader.http)

    def test_no_leader_gives_503_with_retry_after(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower, other = c.followers()
        leader.kill()
        other.kill()
        wait_until(lambda: follower.status()["leader"] is None, what="the leader forgotten")
        r = follower.post("/key", {"x": "v"}, timeout=15)
        self.assertEqual(r.status, 503, r)
        self.assertIsNotNone(r.header("Retry-After"))


    def test_a_write_that_may_have_committed_gets_504_and_a_retry_applies_it_once(self):
        c = self.cluster.start(3, args=["--write-timeout", "1s"])
        leader = c.leader()
        followers = c.followers()
        self.write(leader, "n", "0")
        applied = leader.metric("raftnginx_fsm_applied_entries_total")
        for f in followers:
            f.pause()
        try:
            # Appended on the leader and sent out, but no quorum acknowledges it in time: it may
            # still commit, so the answer is "outcome unknown", not "not done".
            h = {"Idempotency-Key": "once"}
            r = leader.post("/key", {"n": "1"}, headers=h)
            self.assertEqual(r.status, 504, r)
            self.assertEqual(r.json()["outcome"], "unknown")
            self.assertIsNone(r.header("Retry-After"))
        finally:
            for f in followers:
                f.resume()
        # Retried with the same key, wherever leadership went meanwhile: applied exactly once.
        wait_until(lambda: c.leader().post("/key", {"n": "1"}, headers=h).status == 200,
                   what="the retry answered")
        c.wait_converged()
        self.assertEqual(leader.get("/key/n").json(), {"n": "1"})
        self.assertEqual(leader.metric("raftnginx_fsm_applied_entries_total"), applied + 1)


class ReadLevels(ClusterTest):
    def test_linearizable_read_on_a_follower_sees_the_latest_write(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        for i in range(30):
            self.write(leader, "lin", str(i))
            self.assert_value(follower, "lin", str(i), level="linearizable")

    def test_stale_reads_keep_working_without_a_leader_until_max_lag(self):
        c = self.cluster.start(3)
        leader = c.leader()
        self.write(leader, "edge", "cached")
        c.wait_converged()
        follower, other = c.followers()
        leader.pause()
        other.pause()
        try:
            time.sleep(1.5)
            self.assert_value(follower, "edge", "cached")  # stale: served from the local copy
            r = follower.get("/key/edge?max_lag=1s")
            self.assertEqual(r.status, 503, r)
            self.assertGreaterEqual(int(r.header("X-Raft-Last-Contact")), 1000)
            self.assertEqual(follower.get("/key/edge?max_lag=1h").status, 200)
            self.assertEqual(follower.get("/key/edge?level=linearizable", timeout=20).status, 503)
            self.assertEqual(follower.get("/readyz").status, 503)
        finally:
            leader.resume()
            other.resume()
        wait_until(lambda: follower.get("/readyz").status == 200, what="ready again")

    def test_level_auto_reads_locally_only_while_in_touch_with_the_leader(self):
        c = self.cluster.start(3)
        leader = c.leader()
        self.write(leader, "k", "v")
        c.wait_converged()
        follower, other = c.followers()
        for node, args, level in ((follower, "", "stale"), (leader, "", "linearizable"),
                                  (follower, "&max_lag=0ms", "linearizable")):
            r = node.get("/key/k?level=auto" + args)
            self.assertEqual((r.status, r.header("X-Raft-Read-Level")), (200, level), (node.name, args))
            self.assertEqual(r.json(), {"k": "v"})
        self.assertEqual(follower.get("/key/k?level=sometimes").status, 400)
        learner = self.cluster.add("learner", ["--learner"], join=leader)
        wait_until(lambda: learner.get("/key/k").status == 200, what="the learner caught up")
        r = learner.get("/key/k?level=auto&max_lag=1h")
        self.assertEqual((r.status, r.header("X-Raft-Read-Level")), (200, "stale"))
        # Cut off from the leader for longer than an election timeout: auto asks the leader,
        # which cannot answer, rather than serve an old copy.
        leader.pause()
        other.pause()
        try:
            wait_until(lambda: not follower.status()["leader"], what="the follower out of touch")
            self.assertEqual(follower.get("/key/k?level=auto", timeout=20).status, 503)
            self.assertEqual(follower.get("/key/k").status, 200)  # stale still answers
        finally:
            leader.resume()
            other.resume()

    def test_readyz_sync_waits_for_the_leaders_commit(self):
        c = self.cluster.start(3)
        self.write(c.leader(), "k", "v")
        follower = c.followers()[0]
        r = follower.get("/readyz?sync&timeout=5s")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(follower.get("/key/k").json(), {"k": "v"})
        self.assertEqual(follower.get("/healthz").status, 200)


class BadInput(ClusterTest):
    def test_every_bad_input_gets_its_status_and_nothing_is_lost(self):
        c = self.cluster.start(3, args=["--max-body", "64KiB"])
        leader = c.leader()
        self.write(leader, "keep", "me")
        cases = [
            ("POST", "/key", "{not json", 400),
            ("POST", "/key", "[1, 2]", 400),
            ("POST", "/key", '"string"', 400),
            ("POST", "/key", '{"a": 1}', 400),
            ("POST", "/key", '{"a": null}', 400),
            ("POST", "/key", '{"": "v"}', 400),
            ("POST", "/key", "{}", 400),
            ("POST", "/key", "", 400),
            ("POST", "/key", "x" * (64 * 1024 + 1), 413),
            ("GET", "/key/", None, 400),
            ("GET", "/key/bad%zzescape", None, 400),
            ("GET", "/key/keep?level=bogus", None, 400),
            ("GET", "/key/keep?max_lag=soon", None, 400),
            ("GET", "/key/keep?max_lag=1e300h", None, 400),  # once a float-to-int overflow
            ("GET", "/key/keep?max_lag=-1s", None, 400),
            ("GET", "/readyz?sync&timeout=100000h", None, 400),
            ("GET", "/nope", None, 404),
            ("GET", "/key/missing", None, 404),
            ("PATCH", "/key/keep", "x", 405),
            ("PUT", "/key", "x", 405),
            ("GET", "/key?limit=0", None, 400),
            ("GET", "/key?limit=100001", None, 400),
            ("GET", "/key?limit=ten", None, 400),
            ("GET", "/key/keep?index=x", None, 400),
            ("GET", "/key/keep?index=1&wait=6m", None, 400),
            ("GET", "/key?prefix=k&index=-1", None, 400),
            ("PUT", "/key/k?cas=one", "v", 400),
            ("PUT", "/key/k?cas=-1", "v", 400),
            ("PUT", "/key/k?ttl=0s", "v", 400),
            ("PUT", "/key/k?ttl=soon", "v", 400),
            ("PUT", "/key/k?ttl=9000h", "v", 400),
            ("DELETE", "/key/k?ttl=1s", None, 400),
            ("POST", "/key?ttl=x", '{"a": "b"}', 400),
            ("PUT", "/key/keep?cas=1", "v", 412),
            ("DELETE", "/key/keep?cas=0", None, 412),
            ("POST", "/txn", "", 400),
            ("POST", "/txn", "[]", 400),
            ("POST", "/txn", "{}", 400),
            ("POST", "/txn", '{"success": {}}', 400),
            ("POST", "/txn", '{"extra": []}', 400),
            ("POST", "/txn", '{"success": [{"op": "put", "key": "k"}]}', 400),
            ("POST", "/txn", '{"success": [{"op": "put", "key": "", "value": "v"}]}', 400),
            ("POST", "/txn", '{"success": [{"op": "put", "key": "k", "value": 1}]}', 400),
            ("POST", "/txn", '{"success": [{"op": "put", "key": "k", "value": "v", "ttl": 5}]}', 400),
            ("POST", "/txn", '{"success": [{"op": "put", "key": "k", "value": "v", "x": 1}]}', 400),
            ("POST", "/txn", '{"success": [{"op": "rename", "key": "k"}]}', 400),
            ("POST", "/txn", '{"success": [{"op": "delete_prefix"}]}', 400),
            ("POST", "/txn", '{"success": ["put"]}', 400),
            ("POST", "/txn", '{"compare": [{"key": "k"}], "success": [{"op": "get", "key": "k"}]}', 400),
            ("POST", "/txn", '{"compare": [{"key": "k", "mod_index": -1}], "success": [{"op": "get", "key": "k"}]}', 400),
            ("POST", "/txn", '{"compare": [{"key": "k", "exists": true, "value": "v"}], "success": []}', 400),
            ("POST", "/txn", json.dumps({"success": [{"op": "get", "key": "k%d" % i} for i in range(129)]}), 400),
            ("GET", "/watch?from=x", None, 400),
            ("POST", "/watch", "", 405),
            ("GET", "/join", None, 405),
            ("POST", "/join", '{"id": "x"}', 400),
            ("POST", "/join", '{"id": "x", "addr": "nocolon"}', 400),
            ("POST", "/join", '{"id": "x", "addr": "h:1", "voter": "yes"}', 400),
            ("POST", "/join", '{"id": "a b", "addr": "h:1"}', 400),  # a space smuggled fields
            ("POST", "/join", '{"id": "x", "addr": "h:1", "http_addr": "h:1;}"}', 400),
            ("POST", "/join", '{"id": "x", "addr": "h:0"}', 400),
            ("POST", "/join", '{"id": "x", "addr": "h:65536"}', 400),
            ("POST", "/join", '{"id": "node1", "addr": "127.0.0.1:1"}', 409),  # a move, unasked
            ("POST", "/remove", '{"id": "ghost"}', 404),
            ("POST", "/promote", '{"id": "ghost"}', 404),
            ("POST", "/leader/transfer", '{"id": "ghost"}', 404),
            ("GET", "/readyz?sync&timeout=forever", None, 400),
        ]
        for method, path, body, code in cases:
            with self.subTest(method=method, path=path, body=(body or "")[:40]):
                r = request(leader.http, method, path, body=body)
                self.assertEqual(r.status, code, r)
                self.assertIn("error", r.json())
        r = request(leader.http, "PATCH", "/key/keep", body="x")
        self.assertEqual(r.header("Allow"), "GET, PUT, DELETE")
        # Garbage that is not HTTP at all.
        with socket.create_connection(tuple_address(leader.http)) as s:
            s.sendall(b"\x00\x01garbage\r\n\r\n")
            self.assertIn(b"400", s.recv(4096))
        self.assertEqual(leader.get("/key/keep").json(), {"keep": "me"})
        self.write(leader, "after", "bad input")
        for node in c.running():
            self.assert_value(node, "after", "bad input", level="linearizable")
            self.assert_value(node, "keep", "me")

    def test_slow_clients_and_too_many_connections(self):
        c = self.cluster.start(1, args=["--http-read-timeout", "1s", "--max-connections", "4"])
        node = c["node1"]
        with socket.create_connection(tuple_address(node.http)) as slow:
            slow.sendall(b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            slow.settimeout(10 * SLOW)
            began = time.monotonic()
            self.assertEqual(slow.recv(4096), b"")  # cut off: the request never completed
            self.assertLess(time.monotonic() - began, 5 * SLOW)
        idle = [socket.create_connection(tuple_address(node.http)) for _ in range(4)]
        try:
            # Each connection is served once and stays open, idle: the server holds all four.
            for s in idle:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertIn(b"200 OK", s.recv(4096))
            r = node.get("/healthz")
            self.assertEqual(r.status, 503, r)
            self.assertIsNotNone(r.header("Retry-After"))
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: node.get("/healthz").status == 200, what="connections freed")


def tuple_address(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


if __name__ == "__main__":
    unittest.main()
