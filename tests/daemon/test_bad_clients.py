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


if __name__ == "__main__":
    unittest.main()
