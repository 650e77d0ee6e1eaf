"""The key-value API that gateways and tools consume, on 3 nodes behind their nginx: revisions
that are the same on every node, listing, compare-and-set, transactions, TTL (also across a leader
failover), blocking queries and watch streams (through nginx, resumed on another node)."""
import http.client
import json
import threading
import time
import unittest

from cluster import ClusterTest, address, request, wait_until, SLOW


class Watch:
    """A watch stream (NDJSON, or server-sent events), read on a thread of its own."""

    def __init__(self, addr, prefix, start=None, sse=False):
        host, port = address(addr)
        self.conn = http.client.HTTPConnection(host, port, timeout=30 * SLOW)
        path = f"/watch?prefix={prefix}" + (f"&from={start}" if start is not None else "")
        headers = {"Accept": "text/event-stream"} if sse else {}
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.sse = sse
        self.messages = []  # every JSON message, in order
        self.sse_ids = []
        self.lock = threading.Lock()
        self.ended = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self.thread.start()

    def _read(self):
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if self.sse:
                    if line.startswith("id: "):
                        with self.lock:
                            self.sse_ids.append(int(line[4:]))
                    if not line.startswith("data: "):
                        continue
                    line = line[len("data: "):]
                if line:
                    with self.lock:
                        self.messages.append(json.loads(line))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by the test (http.client then drops its file: AttributeError)
        self.ended = True

    def changes(self):
        with self.lock:
            return [m for m in self.messages if "index" in m]

    def progress(self):
        with self.lock:
            return [m["progress"] for m in self.messages if "progress" in m]

    def wait_for_index(self, index, timeout=15):
        wait_until(lambda: any(m["index"] >= index for m in self.changes()), timeout=timeout * SLOW,
                   what=f"a change at index {index} in the watch")

    def close(self):
        self.conn.close()


def described(changes):
    """(index, type, key) of each change."""
    return [(c["index"], c["type"], c["key"]) for c in changes]


class KvApi(ClusterTest):
    def start3(self, *args):
        return self.cluster.start(3, nginx=True, args=["--kv-watch-progress", "200ms", *args])

    def put(self, addr, key, value, query="", headers=None):
        return request(addr, "PUT", f"/key/{key}{query}", body=value, headers=headers)

    def test_revisions_listing_compare_and_set_and_transactions(self):
        c = self.start3()
        leader = c.leader()
        follower = c.followers()[0]
        gw = follower.gateway  # every write below goes through a follower's nginx

        r = self.put(gw, "svc/a", "1")
        self.assertEqual(r.status, 200, r)
        created = int(r.header("X-Raft-Mod-Index"))
        r = self.put(gw, "svc/a", "2")
        modified = int(r.header("X-Raft-Mod-Index"))
        self.assertGreater(modified, created)
        # The same revisions on every node: a client may move between them.
        for node in c.running():
            r = node.get("/key/svc/a?level=linearizable&detailed")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"key": "svc/a", "value": "2", "create_index": created,
                                        "mod_index": modified, "version": 2})
            self.assertEqual(int(r.header("X-Raft-Mod-Index")), modified)
            self.assertGreaterEqual(int(r.header("X-Raft-Index")), modified)
        self.assertEqual(request(gw, "GET", "/key/svc/a").json(), {"svc/a": "2"})

        # Compare-and-set: only at the revision the client read.
        r = self.put(gw, "svc/a", "3", f"?cas={created}")
        self.assertEqual(r.status, 412, r)
        self.assertEqual(r.json()["mod_index"], modified)
        r = self.put(gw, "svc/a", "3", f"?cas={modified}")
        self.assertEqual(r.status, 200, r)
        third = int(r.header("X-Raft-Mod-Index"))
        self.assertEqual(self.put(gw, "svc/a", "x", "?cas=0").status, 412)
        self.assertEqual(self.put(gw, "svc/new", "n", "?cas=0").status, 200)
        self.assertEqual(self.put(gw, "svc/new", "n", "?cas=0").status, 412)
        r = request(gw, "DELETE", f"/key/svc/a?cas={modified}")
        self.assertEqual((r.status, r.json()["mod_index"]), (412, third))
        self.assertEqual(request(gw, "DELETE", f"/key/svc/new?cas=0").status, 412)
        # A retried compare-and-set (same Idempotency-Key) is answered as the first one was,
        # not refused because the first one changed the key.
        retry = {"Idempotency-Key": "cas-retry-1"}
        first = self.put(gw, "svc/a", "4", f"?cas={third}", headers=retry)
        again = self.put(gw, "svc/a", "4", f"?cas={third}", headers=retry)
        self.assertEqual((first.status, again.status), (200, 200), (first, again))
        self.assertEqual(first.header("X-Raft-Mod-Index"), again.header("X-Raft-Mod-Index"))

        # Listing, consistent at one index, the same on every node.
        for i in range(5):
            self.put(gw, f"list/k{i}", f"v{i}")
        self.put(gw, "listing-not-under", "x")
        pages = {}
        for node in c.running():
            r = node.get("/key?prefix=list/&level=linearizable")
            self.assertEqual(r.status, 200, r)
            pages[node.name] = (r.header("X-Raft-Index"), r.json())
        self.assertEqual(pages[leader.name][1], {f"list/k{i}": f"v{i}" for i in range(5)})
        r = request(gw, "GET", "/key?prefix=list/&detailed&limit=2")
        self.assertEqual(r.header("X-Raft-Truncated"), "true")
        self.assertEqual([e["key"] for e in r.json()], ["list/k0", "list/k1"])
        self.assertEqual(set(r.json()[0]), {"key", "value", "create_index", "mod_index", "version"})
        r = request(gw, "GET", "/key?prefix=list/&keys&after=list/k2")
        self.assertEqual(r.json(), ["list/k3", "list/k4"])
        self.assertIsNone(r.header("X-Raft-Truncated"))

        # A transaction: compares, then one branch, applied at one index.
        txn = {"compare": [{"key": "svc/a", "value": "4"}, {"key": "svc/b", "exists": False}],
               "success": [{"op": "put", "key": "svc/b", "value": "B"},
                           {"op": "delete_prefix", "prefix": "list/"},
                           {"op": "get", "key": "svc/b"}],
               "failure": [{"op": "get", "key": "svc/a"}]}
        r = request(gw, "POST", "/txn", body=json.dumps(txn))
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertTrue(body["succeeded"])
        self.assertEqual(body["results"][1], {"op": "delete_prefix", "prefix": "list/",
                                              "deleted": 5})
        self.assertEqual(body["results"][2]["value"], "B")
        self.assertEqual(body["results"][2]["mod_index"], body["index"])
        r = request(gw, "POST", "/txn", body=json.dumps(txn))
        body = r.json()
        self.assertFalse(body["succeeded"])
        self.assertEqual(body["results"], [{"op": "get", "key": "svc/a", "found": True,
                                            "value": "4", "create_index": created,
                                            "mod_index": int(first.header("X-Raft-Mod-Index")),
                                            "version": 4}])
        c.wait_converged()
        for node in c.running():
            self.assertEqual(node.get("/key?prefix=list/").json(), {})

    def test_watches_stream_through_nginx_and_resume_on_another_node(self):
        c = self.start3()
        leader = c.leader()
        n1, n2, n3 = c["node1"], c["node2"], c["node3"]
        start = int(leader.get("/key?prefix=w/&level=linearizable").header("X-Raft-Index")) + 1
        ndjson = Watch(n1.gateway, "w/", start)
        sse = Watch(n2.gateway, "w/", start, sse=True)
        self.assertEqual((ndjson.status, sse.status), (200, 200))
        expected = []
        for i in range(10):
            r = self.put([n1, n2, n3][i % 3].gateway, f"w/{i}", str(i))
            expected.append((int(r.header("X-Raft-Mod-Index")), "put", f"w/{i}"))
            self.put(n3.gateway, f"other/{i}", "not watched")
        r = request(n2.gateway, "POST", "/txn", body=json.dumps(
            {"success": [{"op": "delete", "key": "w/0"}, {"op": "put", "key": "w/x", "value": "x"},
                         {"op": "delete_prefix", "prefix": "w/1"}]}))
        index = r.json()["index"]
        expected += [(index, "delete", "w/0"), (index, "put", "w/x"), (index, "delete", "w/1")]
        for w in (ndjson, sse):
            w.wait_for_index(index)
            self.assertEqual(described(w.changes()), expected)
        self.assertEqual(sse.sse_ids, sorted(set(i for i, _, _ in expected)))
        self.assertEqual(ndjson.changes()[0]["value"], "0")
        self.assertEqual(ndjson.changes()[-3]["prev_value"], "0")  # the delete of w/0
        self.assertNotIn("prev_value", ndjson.changes()[-1])  # a delete_prefix leaves it out
        # An idle watcher hears how far its node is.
        wait_until(lambda: any(p >= index for p in ndjson.progress()), what="a progress message")

        # The client goes away; writes go on; it comes back to another node from where it was.
        ndjson.close()
        last = described(ndjson.changes())[-1][0]
        later = []
        for i in range(5):
            r = self.put(n1.gateway, f"w/later{i}", "l")
            later.append((int(r.header("X-Raft-Mod-Index")), "put", f"w/later{i}"))
        resumed = Watch(n3.http, "w/", last + 1)
        resumed.wait_for_index(later[-1][0])
        self.assertEqual(described(resumed.changes()), later)
        resumed.close()
        sse.close()

        # A restarted node knows its changes from its restart on: older ones answer 410.
        n3.stop()
        n3.start()
        c.wait_ready()
        r = n3.get("/watch?prefix=w/&from=1")
        self.assertEqual(r.status, 410, r)
        self.assertGreater(r.json()["compacted_index"], 1)

    def test_blocking_queries_through_nginx(self):
        c = self.start3()
        follower = c.followers()[0]
        r = self.put(follower.gateway, "bq", "v1")
        index = int(r.header("X-Raft-Mod-Index"))

        def change_soon():
            time.sleep(0.3)  # the write must come while the query waits: that is the test
            self.put(c.leader().gateway, "bq", "v2")
        writer = threading.Thread(target=change_soon)
        began = time.monotonic()
        writer.start()
        r = request(follower.gateway, "GET", f"/key/bq?index={index}&wait=20s", timeout=30)
        writer.join()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"bq": "v2"})
        self.assertLess(time.monotonic() - began, 10 * SLOW)
        # Nothing changes: the wait ends with the same data and the current index.
        now = int(r.header("X-Raft-Mod-Index"))
        began = time.monotonic()
        r = request(follower.gateway, "GET", f"/key?prefix=bq&index={now}&wait=1s")
        self.assertGreaterEqual(time.monotonic() - began, 1.0)
        self.assertEqual(r.json(), {"bq": "v2"})
        self.assertGreaterEqual(int(r.header("X-Raft-Index")), now)

    def test_keys_expire_on_time_also_across_a_leader_failover(self):
        c = self.start3()
        leader = c.leader()
        survivor = c.followers()[0]
        watch = Watch(survivor.http, "ttl/")
        wait_until(lambda: watch.progress(), what="the watch's first progress")
        r = self.put(survivor.gateway, "ttl/short", "x", "?ttl=1s")
        self.assertEqual(r.status, 200, r)
        expires_at = survivor.get("/key/ttl/short?level=linearizable&detailed").json()["expires_at"]
        # A blocking query on the key answers once it expires.
        r = request(survivor.http, "GET",
                    f"/key/ttl/short?index={r.header('X-Raft-Mod-Index')}&wait=20s", timeout=30)
        self.assertEqual(r.status, 404, r)
        answered = time.time() * 1000
        self.assertGreaterEqual(answered, expires_at - 50)  # never early (50 ms of clock slack)
        self.assertLess(answered, expires_at + 1000 + 500 * SLOW)
        watch.wait_for_index(int(r.header("X-Raft-Index")))
        self.assertEqual([ch["type"] for ch in watch.changes()], ["put", "expire"])

        # The leader dies right after a key with a TTL was written: the next one expires it.
        r = self.put(leader.gateway, "ttl/failover", "y", "?ttl=3s")
        self.assertEqual(r.status, 200, r)
        expires_at = survivor.get("/key/ttl/failover?level=linearizable&detailed").json()["expires_at"]
        killed = time.monotonic()
        leader.kill()
        c.leader(timeout=20)
        failover_s = time.monotonic() - killed
        wait_until(lambda: any(ch["key"] == "ttl/failover" and ch["type"] == "expire"
                               for ch in watch.changes()), timeout=20 * SLOW,
                   what="the expiry after the failover")
        seen = time.time() * 1000
        self.assertGreaterEqual(seen, expires_at - 50)
        self.assertLess(seen, expires_at + 1000 * failover_s + 1000 + 500 * SLOW)
        for node in c.running():
            self.assertEqual(node.get("/key/ttl/failover?level=linearizable").status, 404)
        watch.close()



class KvApiOnMemory(KvApi):
    """The same on the memory backend, rebuilt from snapshots and the log: what the two stores
    share is checked in tests/unit/kv_store_test.cc; here, the API end to end."""

    def start3(self, *args):
        return super().start3("--fsm", "memory", *args)

    # Streams and blocking queries live above the store: once is enough.
    test_watches_stream_through_nginx_and_resume_on_another_node = None
    test_blocking_queries_through_nginx = None


if __name__ == "__main__":
    unittest.main()
