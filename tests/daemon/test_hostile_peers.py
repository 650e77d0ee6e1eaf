"""A live 3-node cluster against peers that speak the raft wire format and lie: strangers by
the hundred, members' ids claimed by others, every kind of message that breaks the protocol,
snapshot streams nobody asked for or that write more than they announce, frames announced huge
and never sent. Afterwards every node is the same process, the data is unchanged, the leader
still leads, writes still commit, each lie was counted by kind, and memory and file descriptors
stayed bounded."""
import os
import socket
import threading
import time
import unittest

import raftwire as w
from cluster import SLOW, ClusterTest, wait_until


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def address(a):
    host, port = a.rsplit(":", 1)
    return host, int(port)


def violations(node):
    """raftnginx_protocol_violations_total by kind."""
    out = {}
    for line in node.get("/metrics").body.splitlines():
        if line.startswith('raftnginx_protocol_violations_total{kind="'):
            kind = line.split('"')[1]
            out[kind] = float(line.split()[1])
    return out


def send_and_wait_closed(target, data, timeout=10):
    """Sends `data` as one peer connection and waits until the node hangs up or `timeout`.
    True if it hung up."""
    with socket.create_connection(address(target)) as s:
        s.settimeout(timeout * SLOW)
        try:
            s.sendall(data)
            return s.recv(100) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def send_and_close(target, data):
    """One connection that says `data` and goes, as soon as the node has read it."""
    with socket.create_connection(address(target)) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5 * SLOW)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass


class HostilePeers(ClusterTest):
    def test_lies_on_the_raft_port_change_nothing(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        acked = {}
        for i in range(20):
            self.write(leader, f"k{i}", str(i))
            acked[f"k{i}"] = str(i)
        c.wait_converged()
        st = follower.status()
        term, last = st["term"], st["last_log_index"]
        lid, fid = w.node_id(leader.name), w.node_id(follower.name)
        other = [d for d in c.running() if d not in (leader, follower)][0]
        oid = w.node_id(other.name)
        pids = {d.name: d.proc.pid for d in c.running()}
        before_rss = {d.name: rss_kib(d.proc.pid) for d in c.running()}
        before_fds = {d.name: fds(d.proc.pid) for d in c.running()}

        # A slow sender: a valid hello, then a frame announced as 60 MiB that never comes.
        slow = socket.create_connection(address(follower.raft))
        slow.sendall(w.hello("raft-nginx", 999) + w.u32(60 << 20) + bytes([w.MESSAGE]) + b"xx")

        # Strangers by the hundred: new ids, none a member. They are never dialled back (a hello
        # carries no address) and what they say is dropped.
        for i in range(300):
            stranger = 10_000 + i
            write = w.message(w.APPEND, stranger, fid, term + 1, index=last, log_term=term,
                              commit=last + 1,
                              entries=[w.entry(term + 1, last + 1,
                                               w.set_command([(b"k0", b"stolen")]))])
            send_and_close(follower.raft, w.hello("raft-nginx", stranger) + write)

        # Members' ids, claimed by someone else, saying what no real member says.
        lies_to_follower = [
            (lid, w.message(w.HEARTBEAT, lid, fid, term, commit=last + 1000)),  # commit_past_log
            (lid, w.message(w.APPEND, lid, fid, term, index=last, log_term=term,  # malformed
                            entries=[w.entry(term, last + 5, b"gap")])),
            (lid, w.message(w.SNAPSHOT, lid, fid, term,                          # unoffered
                            snapshot=(last + 10, term, (lid, fid, oid), ()))),
            (oid, w.message(w.APPEND, oid, fid, term, index=last, log_term=term)),  # second leader
            (oid, w.message(w.TIMEOUT_NOW, oid, fid, term)),                    # not_from_leader
            (oid, w.message(w.VOTE, oid, fid, 1 << 62, index=last, log_term=term)),  # huge term
            (oid, w.message(w.READ_INDEX_RESPONSE, oid, fid, term, index=1)),   # not_from_leader
        ]
        for sender, lie in lies_to_follower:
            send_and_close(follower.raft, w.hello("raft-nginx", sender) + lie)
        # A message whose sender is not the one the connection is bound to.
        send_and_close(follower.raft, w.hello("raft-nginx", oid) +
                       w.message(w.HEARTBEAT, lid, fid, term, commit=last))
        # To the leader: an acknowledgement of entries it does not have.
        send_and_close(leader.raft, w.hello("raft-nginx", fid) +
                       w.message(w.APPEND_RESPONSE, fid, lid, term, index=last + 500))

        # Snapshot streams nobody asked for, from a member that does not lead and from a
        # stranger: cut, and nothing is left staged. (A stream that writes more than it announced
        # is cut too: tests/unit/tcp_transport_test.cc.)
        begin = w.frame(w.SNAPSHOT_BEGIN, bytes([1]) + w.u64(last + 50) + w.u64(term))
        for sender in (oid, 777):
            self.assertTrue(send_and_wait_closed(follower.raft,
                                                 w.hello("raft-nginx", sender) + begin))
        # Garbage, another cluster, a hello claiming to be the node itself.
        for junk in (os.urandom(4096), w.hello("other-cluster", 5), w.hello("raft-nginx", fid),
                     w.hello("raft-nginx", 5, version=1)):
            self.assertTrue(send_and_wait_closed(follower.raft, junk))

        # Every kind of lie was seen and counted.
        wait_until(lambda: {"commit_past_log", "malformed_append", "unoffered_snapshot",
                            "second_leader", "not_from_leader", "term_too_large", "wrong_sender",
                            "from_non_member"} <= set(violations(follower)),
                   what="every lie counted on the follower")
        wait_until(lambda: "ack_past_log" in violations(leader), what="the leader's lie counted")

        # The slow sender is cut off once the frame's deadline passes.
        slow.settimeout(30 * SLOW)
        try:
            self.assertEqual(slow.recv(100), b"")
        except ConnectionResetError:
            pass
        slow.close()

        # Same processes, same leader and term, same data; writes still commit.
        for d in c.running():
            self.assertEqual(d.proc.pid, pids[d.name])
        self.assertIs(c.leader(), leader)
        self.assertEqual(follower.status()["term"], term)
        self.write(leader, "after", "lies")
        acked["after"] = "lies"
        for d in c.running():
            for key, value in acked.items():
                self.assert_value(d, key, value, level="linearizable")
        staged = [n for n in os.listdir(os.path.join(follower.data_dir, "snapshots"))
                  if n.startswith("tmp-")]
        self.assertEqual(staged, [])
        # Memory and descriptors stayed bounded: the hundreds of connections are gone.
        for d in c.running():
            grown = rss_kib(d.proc.pid) - before_rss[d.name]
            self.assertLess(grown, 64 * 1024, f"{d.name} grew by {grown} KiB")
            wait_until(lambda: fds(d.proc.pid) <= before_fds[d.name] + 8,
                       what=f"{d.name}'s descriptors back")

    def test_a_flood_of_connections_is_capped_and_the_cluster_keeps_committing(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        before = fds(follower.proc.pid)
        held = []
        stop = threading.Event()
        written = []

        def writer():
            i = 0
            while not stop.is_set():
                r = leader.post("/key", {"flood": str(i)})
                if r.status == 200:
                    written.append(i)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            for i in range(400):
                try:
                    s = socket.create_connection(address(follower.raft), timeout=2)
                    s.sendall(w.hello("raft-nginx", 50_000 + i))
                    held.append(s)
                except OSError:
                    break
            # At most the per-address cap is held; the rest were refused at once.
            wait_until(lambda: fds(follower.proc.pid) <= before + 40,
                       what="the follower's connections capped")
            n = len(written)
            wait_until(lambda: len(written) >= n + 20, what="writes committing meanwhile")
        finally:
            stop.set()
            t.join(30)
            for s in held:
                s.close()
        c.wait_converged()
        self.assert_value(follower, "flood", str(written[-1]), level="linearizable")


if __name__ == "__main__":
    unittest.main()
