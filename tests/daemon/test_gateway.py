"""nginx in front of every node (the daemon runs it): reads served locally, writes to any node's
nginx reach the leader, failover seen through nginx, and the container entrypoint."""
import os
import signal
import socket
import subprocess
import time
import unittest

import yaml

from cluster import BINARY, SLOW, ClusterTest, Daemon, free_port, request, wait_until

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")


def port_open(address):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


class Gateway(ClusterTest):
    def test_writes_through_every_nginx_reach_the_leader(self):
        c = self.cluster.start(3, nginx=True)
        for i, node in enumerate(c.nodes.values()):
            r = request(node.gateway, "POST", "/key", body={f"user{i}": node.name})
            self.assertEqual(r.status, 200, (node.name, r))
            self.assertEqual(r.header("X-Raft-Served-By"), c.leader().name)
        for node in c.nodes.values():
            for i, writer in enumerate(c.nodes.values()):
                wait_until(lambda: request(node.gateway, "GET", f"/key/user{i}").status == 200,
                           what="replicated")
                r = request(node.gateway, "GET", f"/key/user{i}")
                self.assertEqual(r.json(), {f"user{i}": writer.name})
                self.assertEqual(r.header("X-Raft-Served-By"), node.name)  # read locally

    def test_writes_through_nginx_are_exactly_once(self):
        c = self.cluster.start(3, nginx=True)
        leader = c.leader()
        follower = c.followers()[0]
        # nginx gives every write a request id when the client sends none.
        before = leader.status()["sessions"]
        self.assertEqual(request(follower.gateway, "POST", "/key", body={"a": "1"}).status, 200)
        self.assertEqual(leader.status()["sessions"], before + 1)
        # A client's own id passes through unchanged: its retry is answered, not applied again.
        applied = leader.metric("raftnginx_fsm_applied_entries_total")
        for _ in range(2):
            r = request(follower.gateway, "POST", "/key", body={"b": "2"},
                        headers={"Idempotency-Key": "client-chosen"})
            self.assertEqual(r.status, 200, r)
            self.assertIsNone(r.header("Idempotency-Key"))  # only 5xx answers carry it back
        self.assertEqual(leader.metric("raftnginx_fsm_applied_entries_total"), applied + 1)

    def test_members_nginx_cannot_resolve_or_with_long_names_break_no_gateway(self):
        c = self.cluster.start(3, nginx=True)
        long_host = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters, valid
        for name, http_addr in (("ghost1", "no-such-host.invalid:8080"),
                                ("ghost2", f"{long_host}:65535")):
            r = c.leader().post("/join", {"id": name, "addr": "127.0.0.1:1", "http_addr": http_addr,
                                          "voter": False})
            self.assertEqual(r.status, 200, r)
        # Every nginx took the new members, those that do not resolve left out, and serves.
        c.wait_members(5)
        c.wait_ready()
        for node in c.running():
            r = request(node.gateway, "POST", "/key", body={"still": node.name})
            self.assertEqual(r.status, 200, r)
            with open(os.path.join(node.data_dir, "nginx", "nginx.conf")) as f:
                conf = f.read()
            self.assertNotIn(long_host, conf)
            self.assertNotIn("no-such-host.invalid", conf)
            self.assertIn("map_hash_bucket_size 512;", conf)  # room for 259-character keys
        self.assertIn("does not resolve", c["node2"].log_tail(200))
        # A restarted node starts its nginx with them too.
        node = c.followers()[0]
        node.stop()
        node.start()
        wait_until(lambda: node.get("/readyz").status == 200, what="the node back, ready")
        self.assertEqual(request(node.gateway, "GET", "/key/still").status, 200)

    def test_large_writes_and_deletes_through_a_followers_nginx(self):
        c = self.cluster.start(3, nginx=True)
        follower = c.followers()[0]
        big = "x" * (2 * 1024 * 1024)
        r = request(follower.gateway, "PUT", "/key/big", body=big, timeout=30)
        self.assertEqual(r.status, 200, r)
        r = request(follower.gateway, "POST", "/key?level=stale", body={"small": "1"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(request(follower.gateway, "GET", "/key/big?level=linearizable").json()["big"]),
                         len(big))
        self.assertEqual(request(follower.gateway, "DELETE", "/key/big").status, 200)
        self.assertEqual(request(follower.gateway, "GET", "/key/big?level=linearizable").status, 404)
        r = request(follower.gateway, "PUT", "/key/huge", body="y" * (5 * 1024 * 1024), timeout=30)
        self.assertEqual(r.status, 413, r)

    def test_a_followers_nginx_sends_writes_straight_to_the_leader(self):
        c = self.cluster.start(3, nginx=True)
        leader = c.leader()
        follower = c.followers()[0]
        conf_path = os.path.join(follower.data_dir, "nginx", "nginx.conf")

        def names_leader():
            with open(conf_path) as f:
                return f"this conf names ({leader.http})" in f.read()
        wait_until(names_leader, what="the follower's nginx.conf names the leader")
        c.wait_ready()  # nginx serves that conf

        def puts_answered(node):
            return sum(float(line.split()[1]) for line in node.get("/metrics").body.splitlines()
                       if line.startswith('raftnginx_http_requests_total{route="/key/{key}"'))
        follower_before, leader_before = puts_answered(follower), puts_answered(leader)
        for i in range(20):
            r = request(follower.gateway, "PUT", f"/key/direct{i}", body="v")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("X-Raft-Served-By"), leader.name)
        self.assertEqual(puts_answered(follower), follower_before, "the follower's daemon saw none")
        self.assertEqual(puts_answered(leader), leader_before + 20)

        # Leadership moves: the conf follows, and meanwhile a write sent to the old leader is
        # redirected to the new one.
        r = leader.post("/leader/transfer", body={"id": follower.name})
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: c.leader() is follower, what="the follower leads")
        r = request(follower.gateway, "PUT", "/key/after-transfer", body="v")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Raft-Served-By"), follower.name)

    def test_reject_policy_answers_403_through_nginx(self):
        c = self.cluster.start(3, args=["--write-policy", "reject"], nginx=True)
        r = request(c.followers()[0].gateway, "POST", "/key", body={"x": "y"})
        self.assertEqual(r.status, 403, r)
        self.assertIn("error", r.json())
        self.assertEqual(request(c.leader().gateway, "POST", "/key", body={"x": "y"}).status, 200)

    def test_a_member_that_joined_later_is_reachable_as_leader(self):
        c = self.cluster.start(2, nginx=True)
        late = c.add("node3", join=c["node1"], nginx=True)
        c.wait_members(3)
        c.wait_ready()  # node1's nginx has reloaded with node3's address
        with open(os.path.join(c["node1"].data_dir, "nginx", "nginx.conf")) as f:
            self.assertIn(f'"{late.http}" raftnginx_member_', f.read())
        r = c.leader().post("/leader/transfer", {"id": "node3"})
        self.assertEqual(r.status, 200, r)
        r = request(c["node1"].gateway, "POST", "/key", body={"via": "node1"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Raft-Served-By"), "node3")

    def test_kill_leader_writes_through_survivors_resume_with_503_only_meanwhile(self):
        c = self.cluster.start(3, nginx=True)
        leader = c.leader()
        survivors = [d for d in c.nodes.values() if d is not leader]
        self.assertEqual(request(survivors[0].gateway, "POST", "/key", body={"k": "before"}).status, 200)
        leader.kill()
        began = time.monotonic()
        for node in survivors:
            while True:
                r = request(node.gateway, "POST", "/key", body={"k": node.name}, timeout=10)
                if r.status == 200:
                    break
                self.assertEqual(r.status, 503, r)  # nothing but "retry" while re-electing
                self.assertIsNotNone(r.header("Retry-After"))
                # ... with the request id the cluster saw, for an exactly-once retry.
                self.assertRegex(r.header("Idempotency-Key") or "", "^[0-9a-f]{32}$")
                self.assertLess(time.monotonic() - began, 10 * SLOW, "no leader within 10 s")
                time.sleep(0.05)
        # The killed daemon's nginx went with it: the port is free for a restart.
        wait_until(lambda: not port_open(leader.gateway), what="the dead node's nginx gone")
        leader.start()
        wait_until(lambda: port_open(leader.gateway), what="its nginx back")
        c.wait_members(3)

    def test_a_daemon_killed_mid_request_restarts_with_its_nginx(self):
        c = self.cluster.start(1, nginx=True)
        node = c["node1"]
        host, port = node.gateway.rsplit(":", 1)
        # A request in flight through nginx: its body never completes.
        slow = socket.create_connection((host, int(port)))
        try:
            slow.sendall(b"POST /key HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.2)
            node.kill()
            # nginx must neither keep the daemon's sockets nor its own port: the node comes
            # back, daemon and nginx, at once.
            node.start()
            wait_until(lambda: request(node.gateway, "GET", "/readyz").status == 200,
                       timeout=10, what="the node back behind its nginx")
        finally:
            slow.close()

    def test_nginx_conf_command_prints_a_conf_nginx_accepts(self):
        prefix = os.path.join(self.root, "external")
        os.makedirs(os.path.join(prefix, "logs"))
        os.makedirs(os.path.join(prefix, "temp"))
        conf = subprocess.run([BINARY, "nginx-conf", "--listen", "127.0.0.1:1", "--daemon",
                               "127.0.0.1:2", "--prefix", prefix, "--member", "127.0.0.1:2",
                               "--member", "127.0.0.1:3"], capture_output=True, text=True, check=True).stdout
        self.assertIn('"127.0.0.1:3" raftnginx_member_', conf)
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        t = subprocess.run(["/usr/sbin/nginx", "-t", "-p", prefix, "-c", path, "-e",
                            os.path.join(prefix, "logs", "error.log")], capture_output=True, text=True)
        self.assertEqual(t.returncode, 0, t.stderr)


class Entrypoint(ClusterTest):
    def test_entrypoint_starts_a_node_with_nginx_and_stops_both_on_sigterm(self):
        http_port, raft_port = free_port(), free_port()
        gateway = f"127.0.0.1:{free_port()}"
        env = dict(os.environ, RAFT_NGINX_ID="box1", RAFT_NGINX_HOST="127.0.0.1",
                   RAFT_NGINX_BIND_HOST="127.0.0.1", RAFT_NGINX_HTTP_PORT=str(http_port),
                   RAFT_NGINX_RAFT_PORT=str(raft_port), RAFT_NGINX_LISTEN=gateway,
                   RAFT_NGINX_DATA=os.path.join(self.root, "box1"), RAFT_NGINX_BIN=BINARY)
        d = Daemon(self.root, "box1")
        self.cluster.nodes["box1"] = d
        d.http = f"127.0.0.1:{http_port}"
        d.start([os.path.join(DEPLOY, "docker", "entrypoint.sh"), "--write-policy", "reject"], env=env)
        wait_until(lambda: request(gateway, "GET", "/readyz").status == 200, what="ready through nginx")
        self.assertEqual(request(gateway, "POST", "/key", body={"user1": "batman"}).status, 200)
        self.assertEqual(request(gateway, "GET", "/key/user1").json(), {"user1": "batman"})
        self.assertEqual(request(gateway, "GET", "/status").json()["id"], "box1")
        self.assertEqual(d.stop(), 0)
        wait_until(lambda: not port_open(gateway), what="nginx stopped")
        self.assertIn("stopped", d.log_tail())

    def test_compose_file_runs_three_nodes_on_the_seed_ports(self):
        """deploy/docker: host networking, each node on loopback ports of its own (the image
        and the cluster run for real in `make docker-test`; its libraries come from the
        package's Depends, which test_package checks)."""
        with open(os.path.join(DEPLOY, "docker", "docker-compose.yml")) as f:
            compose = yaml.safe_load(f)
        services = compose["services"]
        self.assertEqual(sorted(services), ["node1", "node2", "node3"])
        ports = set()
        for i, name in enumerate(sorted(services), 1):
            s, env = services[name], services[name]["environment"]
            self.assertEqual(s["network_mode"], "host")
            self.assertEqual(env["RAFT_NGINX_ID"], name)
            self.assertEqual(env["RAFT_NGINX_LISTEN"], f"127.0.0.1:8{i}00")
            self.assertEqual(env["RAFT_NGINX_BIND_HOST"], "127.0.0.1")
            ports |= {env["RAFT_NGINX_HTTP_PORT"], env["RAFT_NGINX_RAFT_PORT"]}
            volume = s["volumes"][0].split(":")[0]
            self.assertIn(volume, compose["volumes"])
            if name != "node1":
                self.assertEqual(env["RAFT_NGINX_JOIN"],
                                 "127.0.0.1:" + services["node1"]["environment"]["RAFT_NGINX_HTTP_PORT"])
        self.assertEqual(len(ports), 6)
        build = services["node1"]["build"]
        with open(os.path.join(DEPLOY, "docker", build["context"], build["dockerfile"])) as f:
            dockerfile = f.read()
        self.assertIn("raft-nginx_*.deb", dockerfile)  # the image is the package, installed

if __name__ == "__main__":
    unittest.main()
