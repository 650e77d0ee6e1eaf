"""A live 3-node cluster against clients and peers that misbehave: truncated and oversized
requests, slowloris, thousands of idle connections, binary and invalid UTF-8 keys, a POST with
a huge number of keys, garbage, replayed frames and another cluster's hello on the raft port.
Afterwards the cluster still serves, every acknowledged write is there, and the daemons' memory
stayed bounded."""
import os
import socket
import struct
import time
import unittest

from cluster import SLOW, ClusterTest, request, wait_until


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hello(cluster_id, sender, advertise):
    payload = b"RNGX" + bytes([1]) + struct.pack("<I", len(cluster_id)) + cluster_id.encode()
    payload += struct.pack("<Q", sender) + struct.pack("<I", len(advertise)) + advertise.encode()
    return struct.pack("<I", 1 + len(payload)) + bytes([1]) + payload


def address(a):
    host, port = a.rsplit(":", 1)
    return host, int(port)


class BadClients(ClusterTest):
    def test_the_cluster_survives_bad_clients_and_peers(self):
        c = self.cluster.start(3, args=["--max-connections", "512", "--http-read-timeout", "2s"])
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

    def test_running_out_of_descriptors_backs_off_quietly(self):
        # 64 descriptors: the daemon's own take most of them; the rest go fast.
        d = self.cluster.add("node1")
        d.stop()
        d.proc = None
        command = ["prlimit", "--nofile=96", "--"] + d.command()
        d.start(command=command)
        wait_until(lambda: d.get("/readyz").status == 200, what="ready under the limit")
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


if __name__ == "__main__":
    unittest.main()
