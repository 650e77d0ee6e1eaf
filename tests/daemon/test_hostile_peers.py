"""A live 3-node cluster against peers that speak the raft wire format and lie: strangers by
the hundred, members' ids claimed by others, every kind of message that breaks the protocol,
snapshot streams nobody asked for or that write more than they announce, frames announced huge
and never sent. Afterwards every node is the same process, the data is unchanged, the leader
still leads, writes still commit, each lie was counted by kind, and memory and file descriptors
stayed bounded.

Then the attacks one by one: certificates of the cluster's CA that are not the node they claim
(a client certificate, a node certificate naming other nodes), terms far ahead, strangers holding
every connection slot, frames trickled in or half-sent by many at once, a configuration of
millions of ids, refused hellos by the thousand and with newlines in them, and a snapshot bigger
than the disk."""
import array
import os
import select
import socket
import ssl
import sys
import threading
import time
import unittest
import zlib

import raftwire as w
from cluster import SLOW, Certs, ClusterTest, PeakRss, address, rss_kib, wait_until


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


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


def hung_up(sock, timeout=10):
    """Whether the node closes `sock` within `timeout` seconds (what it sends meanwhile is
    read and dropped). A reset or a TLS alert counts as closing."""
    deadline = time.monotonic() + timeout * SLOW
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return True
    except socket.timeout:
        return False
    except OSError:  # reset, broken pipe, a TLS alert
        return True
    return False


def node_tls(certs):
    """node_args for Cluster.start: mutual TLS on the raft port only (HTTP stays plaintext)."""
    def args(name):
        cert, key = certs.pair(name)
        return ["--node-cert", cert, "--node-key", key, "--node-ca", certs.ca]
    return args


def peer_context(certs, cert_name):
    """A TLS client context for a raft port: trusts `certs`' CA, presents `cert_name`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.ca)
    ctx.check_hostname = False  # node certificates name nodes, not 127.0.0.1
    ctx.load_cert_chain(*certs.pair(cert_name))
    return ctx


def tls_send_and_wait_closed(certs, cert_name, target, data):
    """Connects to a raft port with mutual TLS as `cert_name` (a certificate in `certs`), sends
    `data` and waits until the node hangs up. True if it hung up, or refused the handshake."""
    with socket.create_connection(address(target), timeout=10 * SLOW) as raw:
        try:
            with peer_context(certs, cert_name).wrap_socket(raw) as s:
                s.sendall(data)
                return hung_up(s)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True


def refused_connections(node):
    """The node's count of refused raft connections: the sum of its raftnginx_* metrics with
    "refused" in their name; None if it has none."""
    total, found = 0.0, False
    for line in node.get("/metrics").body.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name.startswith("raftnginx_") and "refused" in name:
            total += float(line.split()[-1])
            found = True
    return total if found else None


def snapshot_info(index, term, files, fsm="rocksdb"):
    """A snapshot stream's begin frame payload (storage/snapshot_store.cc): no members, the
    files as (name, size) with checksum 0."""
    out = bytes([1]) + w.u64(index) + w.u64(term) + w.u32(0) + w.u32(0) + w.u32(0) + w.blob(fsm)
    out += w.u32(len(files)) + b"".join(w.blob(n) + w.u64(size) + w.u32(0) for n, size in files)
    return out + w.u32(zlib.crc32(out))


def snapshot_with_voters(sender, to, term, count):
    """A snapshot message whose configuration lists `count` voters (ids 1..count)."""
    payload = w.message(w.SNAPSHOT, sender, to, term, snapshot=(1, 1, (), ()))[5:-8]
    ids = array.array("Q", range(1, count + 1))
    if sys.byteorder != "little":
        ids.byteswap()
    return w.frame(w.MESSAGE, payload + w.u32(count) + ids.tobytes() + w.u32(0))


def staged(node):
    return [n for n in os.listdir(os.path.join(node.data_dir, "snapshots")) if n.startswith("tmp-")]


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


class PeerIdentity(ClusterTest):
    """With mutual TLS, who speaks on the raft port is the certificate's common name, and only a
    node certificate of this cluster (one naming the cluster as a DNS name) speaks at all."""

    def test_a_client_certificate_of_the_cluster_ca_is_refused_on_the_raft_port(self):
        certs = Certs.make(os.path.join(self.root, "certs"), ["node1", "node2", "node3"],
                           client="auditor")
        c = self.cluster.start(3, node_args=node_tls(certs))
        leader = c.leader()
        follower = c.followers()[0]
        for i in range(5):
            self.write(leader, f"k{i}", "good")
        c.wait_converged()
        st = follower.status()
        term, last = st["term"], st["last_log_index"]
        refused_before = refused_connections(follower)
        # The client certificate says hello as itself ("auditor": its common name, a name the
        # CA signed), then acts as a leader of a higher term: an append, and a huge term.
        me, fid = w.node_id("auditor"), w.node_id(follower.name)
        forged = w.message(w.APPEND, me, fid, term + 1, index=last, log_term=term, commit=last + 1,
                           entries=[w.entry(term + 1, last + 1,
                                            w.set_command([(b"k0", b"forged")]))])
        forged += w.message(w.HEARTBEAT, me, fid, (1 << 62) - 1)
        self.assertTrue(tls_send_and_wait_closed(certs, "auditor", follower.raft,
                                                 w.hello("raft-nginx", me) + forged))
        wait_until(lambda: "raft port: refusing" in follower.log_tail(200),
                   what="the refusal logged")
        self.assertEqual(follower.status()["term"], term)
        self.assert_value(follower, "k0", "good")
        self.assertIs(c.leader(), leader)
        self.write(leader, "after", "1")
        self.assertIsNotNone(refused_before, "no raftnginx_*refused* metric in /metrics")
        wait_until(lambda: refused_connections(follower) > refused_before,
                   what="the refusal counted in /metrics")

    def test_a_node_certificate_naming_other_nodes_cannot_say_hello_as_them(self):
        # `certs --hosts node1,node2,node3`: every node certificate carries every node's name.
        certs = Certs.make(os.path.join(self.root, "certs"), ["node1", "node2", "node3"],
                           extra=["--hosts", "node1,node2,node3"])
        c = self.cluster.start(3, node_args=node_tls(certs))
        leader = c.leader()
        x, y = c.followers()
        st = leader.status()
        lid = w.node_id(leader.name)

        def ack_past_log(sender):
            return w.hello("raft-nginx", sender) + w.message(
                w.APPEND_RESPONSE, sender, lid, st["term"], index=st["last_log_index"] + 500)

        # With x's certificate, a hello as y is refused, and what follows never reaches the core.
        self.assertTrue(tls_send_and_wait_closed(certs, x.name, leader.raft,
                                                 ack_past_log(w.node_id(y.name))))
        wait_until(lambda: "raft port: refusing" in leader.log_tail(200),
                   what="the refusal logged")
        self.assertNotIn("ack_past_log", violations(leader))
        # As itself it is heard (so the refusal above was about the name): the lie is counted.
        with socket.create_connection(address(leader.raft)) as raw:
            with peer_context(certs, x.name).wrap_socket(raw) as s:
                s.sendall(ack_past_log(w.node_id(x.name)))
                wait_until(lambda: "ack_past_log" in violations(leader),
                           what="x's own message heard")
        self.assertIs(c.leader(), leader)


class TermLimits(ClusterTest):
    def test_a_term_far_above_ours_is_a_violation_and_changes_nothing(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        self.write(leader, "k", "before")
        c.wait_converged()
        term = leader.status()["term"]
        lid, fid = w.node_id(leader.name), w.node_id(follower.name)
        # Members' ids (plaintext takes a hello at its word), terms more than 2^32 ahead.
        for big in (term + (1 << 32) + 1, (1 << 62) - 1):
            send_and_close(leader.raft, w.hello("raft-nginx", fid) +
                           w.message(w.HEARTBEAT_RESPONSE, fid, lid, big))
            send_and_close(follower.raft, w.hello("raft-nginx", lid) +
                           w.message(w.HEARTBEAT, lid, fid, big))
        for node in (leader, follower):
            wait_until(lambda: violations(node).get("term_too_large", 0) >= 2,
                       what=f"term_too_large counted on {node.name}")
        for node in c.running():
            self.assertEqual(node.status()["term"], term, node.name)
        self.assertIs(c.leader(), leader)
        self.write(leader, "k", "after")
        for node in c.running():
            self.assert_value(node, "k", "after", level="linearizable")
        self.assertEqual(leader.status()["term"], term)


class ConnectionSlots(ClusterTest):
    def test_strangers_holding_every_raft_slot_cannot_keep_a_member_out(self):
        c = self.cluster.start(3)
        leader = c.leader()
        member, other = c.followers()
        self.write(leader, "k", "before")
        c.wait_converged()
        member.stop()
        # The others stand still until strangers hold every inbound slot of the restarted
        # member: 8 addresses x 32 connections (the caps: 32 per address, 256 in all), each
        # with a complete hello of a made-up id (so the idle timeout, 60 s, is what frees them).
        leader.pause()
        other.pause()
        held = []
        try:
            member.start()
            before = fds(member.proc.pid)
            host, port = address(member.raft)
            for a in range(2, 10):
                for i in range(32):
                    s = socket.socket()
                    s.bind((f"127.0.0.{a}", 0))
                    s.settimeout(5 * SLOW)
                    s.connect((host, port))
                    s.sendall(w.hello("raft-nginx", 900_000 + 100 * a + i))
                    held.append(s)
            wait_until(lambda: fds(member.proc.pid) >= before + 248,
                       what="the member accepting the strangers")
        finally:
            leader.resume()
            other.resume()
        try:
            # The cluster commits a write, and the member gets it: its leader reached it.
            wait_until(lambda: any(d.post("/key", {"k": "after"}).status == 200
                                   for d in (leader, other)), what="a write committed")
            wait_until(lambda: (r := member.get("/key/k?level=stale")).status == 200
                       and r.json() == {"k": "after"}, what="the member catching up")
            self.assertIsNotNone(member.status()["leader"])
        finally:
            for s in held:
                s.close()


class FrameLimits(ClusterTest):
    def test_a_frame_trickled_a_byte_a_second_is_cut_at_the_io_timeout(self):
        node = self.cluster.start(1)["node1"]
        io_timeout = 10  # defaults::kRaftIoTimeout; no flag sets it
        with socket.create_connection(address(node.raft)) as s:
            s.sendall(w.hello("raft-nginx", 999))
            s.sendall(w.u32(1024) + bytes([w.MESSAGE]))  # a frame begins
            began = time.monotonic()
            closed = False
            while not closed and time.monotonic() - began < (io_timeout + 10) * SLOW:
                # One byte a second: always progress, never the whole frame.
                if select.select([s], [], [], 1)[0]:
                    try:
                        closed = s.recv(100) == b""
                    except OSError:
                        closed = True
                else:
                    try:
                        s.sendall(b"\0")
                    except OSError:
                        closed = True
            took = time.monotonic() - began
        self.assertTrue(closed, f"a frame trickled in for {took:.0f} s was never cut off")
        self.assertLess(took, (io_timeout + 4) * SLOW)
        self.assertEqual(node.get("/healthz").status, 200)

    def test_frames_in_progress_together_have_a_memory_budget(self):
        node = self.cluster.start(1)["node1"]
        # 8 strangers each send 40 MiB of a frame announced as 64 MiB: 320 MiB in all. The
        # budget for frames in progress closes a connection that would exceed it, and the rest
        # are closed at their frame's deadline.
        count, sent = 8, 40 << 20
        body = memoryview(bytes(sent))
        socks = [socket.create_connection(address(node.raft)) for _ in range(count)]

        def send(i):
            try:
                socks[i].settimeout(30 * SLOW)
                socks[i].sendall(w.hello("raft-nginx", 777_000 + i) + w.u32(64 << 20) +
                                 bytes([w.MESSAGE]))
                socks[i].sendall(body)
            except OSError:
                pass  # cut off while sending

        try:
            with PeakRss(node.proc.pid) as rss:
                threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60 * SLOW)
                # None of them is ever whole: each is closed by the budget or its deadline.
                for s in socks:
                    self.assertTrue(hung_up(s, timeout=15), "a half-sent frame kept open")
        finally:
            for s in socks:
                s.close()
        # Far below the 320 MiB sent (the frames themselves, before any copy of them).
        self.assertLess(rss.grown_mib, 256, f"RSS grew by {rss.grown_mib:.0f} MiB")
        self.write(node, "after", "frames")

    def test_a_configuration_of_millions_of_ids_is_refused_without_memory_blowup(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        term = follower.status()["term"]
        # 4 million voters (a 32 MiB frame), far over the member cap; a set of them would take
        # some 200 MiB.
        lie = snapshot_with_voters(w.node_id(leader.name), w.node_id(follower.name), term,
                                   4_000_000)
        hello = w.hello("raft-nginx", w.node_id(leader.name))
        with PeakRss(follower.proc.pid) as rss:
            self.assertTrue(send_and_wait_closed(follower.raft, hello + lie))
        self.assertLess(rss.grown_mib, 128, f"RSS grew by {rss.grown_mib:.0f} MiB")
        self.assertIs(c.leader(), leader)
        self.write(leader, "after", "1")
        self.assert_value(follower, "after", "1", level="linearizable")


class RefusalLogs(ClusterTest):
    def test_refused_hellos_are_logged_at_a_bounded_rate(self):
        node = self.cluster.start(1)["node1"]
        size = os.path.getsize(node.log_path)
        name = "other-cluster-" + "x" * 100
        for _ in range(3000):
            self.assertTrue(send_and_wait_closed(node.raft, w.hello(name, 5)))
        self.assertIn("raft port: refusing", node.log_tail(100))  # the first ones are logged
        grown = os.path.getsize(node.log_path) - size
        self.assertLess(grown, 200 * 1024, f"3000 refused hellos grew the log by {grown} bytes")
        self.assertEqual(node.get("/healthz").status, 200)

    def test_a_cluster_name_in_a_hello_cannot_forge_a_log_line(self):
        node = self.cluster.start(1)["node1"]
        forged = "1999-01-01T00:00:00.000 info node=node1 membership changed: AddVoter evil"
        self.assertTrue(send_and_wait_closed(
            node.raft, w.hello("x'\r\n" + forged + "\x1b[2J\n" + forged, 5)))
        wait_until(lambda: "raft port: refusing" in node.log_tail(100), what="the refusal logged")
        with open(node.log_path, "rb") as f:
            log = f.read()
        for line in log.split(b"\n"):
            self.assertFalse(line.lstrip(b"\r").startswith(b"1999-01-01"), line)
        self.assertNotIn(b"\x1b", log)


class SnapshotStreams(ClusterTest):
    def test_a_stream_announcing_more_than_the_free_disk_is_refused_at_its_start(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        st = follower.status()
        lid = w.node_id(leader.name)
        disk = os.statvfs(follower.data_dir)
        free = disk.f_bavail * disk.f_frsize

        def stream(size):
            begin = w.frame(w.SNAPSHOT_BEGIN, snapshot_info(st["last_log_index"] + 50, st["term"],
                                                            [("kv.data", size)]))
            return w.hello("raft-nginx", lid) + begin  # the leader's id (plaintext)

        # Refused as it begins: nothing was written yet, and nothing is left staged.
        self.assertTrue(send_and_wait_closed(follower.raft, stream(2 * free + (1 << 30)),
                                             timeout=5))
        wait_until(lambda: staged(follower) == [], what="nothing staged")
        # A stream that fits is not refused at its start (so the size was the reason).
        with socket.create_connection(address(follower.raft)) as s:
            s.sendall(stream(10))
            self.assertFalse(hung_up(s, timeout=1), "a stream that fits was refused too")
        wait_until(lambda: staged(follower) == [], what="the small stream's staging removed")
        self.assertIs(c.leader(), leader)
        self.write(leader, "after", "1")


if __name__ == "__main__":
    unittest.main()
