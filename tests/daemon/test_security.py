"""Security of real raft-nginx processes, all on 127.0.0.1: membership fields that try to inject
into nginx.conf or headers, TLS on every port (certificates from `raft-nginx certs`, client
certificates, rotation on SIGHUP), and principals with their permissions (--auth), on the
daemons and through their nginx."""
import datetime
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from cluster import BINARY, SLOW, Certs, ClusterTest, free_port, request, wait_until

OPENSSL = shutil.which("openssl")


def sha256(token):
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def write_auth(path, principals):
    """An --auth file. `principals`: {name: (token or None, {"read": [...], ...})}."""
    doc = []
    for name, (token, perms) in principals.items():
        p = {"name": name, **perms}
        if token is not None:
            p["token_sha256"] = sha256(token)
        doc.append(p)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def members(node):
    """A node's view of the membership, without the progress fields that change with time."""
    return sorted((m["id"], m["raft_addr"], m["http_addr"], m["voter"])
                  for m in node.status()["members"])


def raw_exchange(address, data, timeout=10):
    """Sends raw bytes and returns what came back up to the end of the response head (or until
    the server closed the connection)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout * SLOW) as s:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def peer_certificate(address, context):
    """(common name, serial number) of the certificate a fresh TLS connection is shown."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5 * SLOW) as s:
        with context.wrap_socket(s, server_hostname=host) as t:
            cert = t.getpeercert()
            subject = dict(pair for rdn in cert["subject"] for pair in rdn)
            return subject["commonName"], cert["serialNumber"]


def decode_certificate(path):
    # The ssl module's own PEM decoder (no third-party package needed).
    return ssl._ssl._test_decode_cert(path)


CA_CONF = """[ca]
default_ca = raftnginx_test
[raftnginx_test]
database = {dir}/index.txt
new_certs_dir = {dir}
rand_serial = yes
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
[any_name]
commonName = supplied
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {sans}
"""


def openssl_issue(certs, workdir, common_name, sans, not_before, not_after):
    """A certificate signed by `certs`' CA with explicit validity dates (datetimes, UTC), made with
    the openssl command. Returns (cert, key) paths."""
    os.makedirs(workdir, exist_ok=True)
    tag = f"{common_name}-{not_before:%Y%m%d%H%M%S}-{time.monotonic_ns()}"
    conf = os.path.join(workdir, tag + ".cnf")
    with open(os.path.join(workdir, "index.txt"), "a"):
        pass
    with open(conf, "w") as f:
        f.write(CA_CONF.format(dir=workdir, sans=",".join(sans)))
    key, csr, cert = (os.path.join(workdir, tag + suffix) for suffix in ("-key.pem", ".csr", ".pem"))
    for command in ([OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + common_name],
                    [OPENSSL, "ca", "-batch", "-config", conf, "-cert", certs.ca, "-keyfile", certs.ca_key,
                     "-in", csr, "-out", cert, "-notext", "-extensions", "leaf",
                     "-startdate", f"{not_before:%Y%m%d%H%M%S}Z", "-enddate", f"{not_after:%Y%m%d%H%M%S}Z"]):
        r = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(command[:2])} failed: {r.stderr}")
    return cert, key


def replace_file(source, target):
    """Overwrites `target` with `source` in one step (what a rotation tool does)."""
    shutil.copy(source, target + ".new")
    os.replace(target + ".new", target)


class SecurityTest(ClusterTest):
    maxDiff = None

    def make_certs(self, name, nodes, client="admin", extra=()):
        return Certs.make(os.path.join(self.root, name), nodes, client, extra)

    def start_tls(self, certs, count, nginx=True, auth=None, http_dir=None, args=()):
        """A cluster of node1..node<count> with node TLS, client TLS and auth; the harness talks to
        it over HTTPS with the admin token. With `http_dir`, each node's HTTP certificate and key
        are copies there (so that they can be rotated apart from the node certificate)."""
        def node_args(name):
            http_files = None
            if http_dir:
                os.makedirs(http_dir, exist_ok=True)
                http_files = tuple(os.path.join(http_dir, os.path.basename(p)) for p in certs.pair(name))
                for source, target in zip(certs.pair(name), http_files):
                    shutil.copy(source, target)
            return certs.flags(name, http_files=http_files, auth=auth)
        return self.cluster.start(count, args=list(args), nginx=nginx, node_args=node_args,
                                  context=certs.context(), headers=bearer(certs.token))

    def run_daemon(self, args, timeout=10):
        """Runs a daemon that is expected to refuse to start; returns the finished process.
        subprocess.run kills it if it does not exit within the timeout."""
        data = os.path.join(self.root, f"refused-{free_port()}")
        try:
            return subprocess.run([BINARY, *args, data], capture_output=True, text=True,
                                  timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not refuse to start: {args}")

    def assert_json_error(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertIn("application/json", r.header("Content-Type") or "", r)
        self.assertIsInstance(r.json().get("error"), str, r)
        self.assertTrue(r.json()["error"], r)

    def assert_unauthenticated(self, r):
        self.assert_json_error(r, 401)
        self.assertEqual(r.header("WWW-Authenticate"), "Bearer", r)

    def assert_not_served(self, address, context, what):
        """A request with `context` is refused before it reaches the API: the TLS handshake (or,
        with TLS 1.3, the first read after it) fails, or nginx answers 400 for the certificate."""
        try:
            r = request(address, "GET", "/healthz", context=context, timeout=5)
        except (OSError, http.client.HTTPException):
            return
        self.assertEqual(r.status, 400, f"{what}: {r}")
        self.assertIn("certificate", r.body.lower(), f"{what}: {r}")


# --- 1. Injection -------------------------------------------------------------------------------

# Characters that mean something in nginx.conf or in an HTTP head.
INJECTIONS = {
    "semicolon": ";", "close brace": "}", "open brace": "{", "newline": "\n", "tab": "\t",
    "CR": "\r", "CRLF and a header": "\r\nX-Injected: 1", "space": " ", "dollar": "$",
    "double quote": '"', "single quote": "'",
}
# A host name of valid labels but 299 characters in all: too long for an address (259 at most).
LONG_HOST = ".".join(["a" * 59] * 5)


class Injection(SecurityTest):
    def bad_join_bodies(self, good):
        """(case, body) for every membership field holding each injection."""
        for what, bad in INJECTIONS.items():
            yield f"id with {what}", {**good, "id": f"no{bad}de9"}
            for field in ("addr", "http_addr"):
                host, port = good[field].rsplit(":", 1)
                yield f"{field} host with {what}", {**good, field: f"{host}{bad}:{port}"}
                yield f"{field} port with {what}", {**good, field: f"{host}:{port}{bad}"}
        yield "300-character id", {**good, "id": "n" * 300}
        for field in ("addr", "http_addr"):
            yield f"300-character {field}", {**good, field: f"{LONG_HOST}:80"}

    def test_membership_fields_that_would_inject_are_refused_and_change_nothing(self):
        c = self.cluster.start(3, nginx=True)
        leader = c.leader()
        follower = c.followers()[0]
        confs = {d.name: os.path.join(d.data_dir, "nginx", "nginx.conf") for d in c.running()}

        def read_confs():
            out = {}
            for name, path in confs.items():
                with open(path, "rb") as f:
                    out[name] = f.read()
            return out
        # Each conf names the leader (the gateway has caught up), and each nginx serves it.
        wait_until(lambda: all(f"this conf names ({leader.http})".encode() in conf
                               for conf in read_confs().values()), what="every conf names the leader")
        c.wait_ready()
        confs_before = read_confs()
        members_before = {d.name: members(d) for d in c.running()}
        self.assertEqual(len(members_before[leader.name]), 3)

        good = {"id": "node9", "addr": f"127.0.0.1:{free_port()}",
                "http_addr": f"127.0.0.1:{free_port()}", "voter": False}
        # Sent to the leader's daemon, to a follower's daemon (which checks before it redirects)
        # and through a follower's nginx (which sends writes to the leader).
        targets = [("leader", leader.http), ("follower", follower.http),
                   ("follower's nginx", follower.gateway)]
        cases = list(self.bad_join_bodies(good))
        self.assertEqual(len(cases), 5 * len(INJECTIONS) + 3)
        nodes = c.running()
        for i, (case, body) in enumerate(cases):
            with self.subTest(case=case):
                for where, address in targets:
                    r = request(address, "POST", "/join", body=body)
                    self.assert_json_error(r, 400)
                    self.assertNotIn("X-Injected", str(r.headers))
                self.assertEqual(read_confs(), confs_before, "nginx.conf changed")
                self.assertEqual({d.name: members(d) for d in nodes}, members_before)
                gateway = nodes[i % len(nodes)].gateway
                w = request(gateway, "PUT", f"/key/probe{i}", body=case)
                self.assertEqual(w.status, 200, w)
                r = request(gateway, "GET", f"/key/probe{i}?level=linearizable")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), {f"probe{i}": case})
        # The same body with nothing bad in it is accepted: the refusals above were for the
        # injected characters, not for the shape of the request.
        r = leader.post("/join", good)
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: "node9" in [m[0] for m in members(follower)], what="node9 a learner")

    def test_remove_and_promote_refuse_ids_outside_the_grammar(self):
        c = self.cluster.start(1, nginx=True)
        node = c["node1"]
        before = members(node)
        got = {}
        for path in ("/remove", "/promote"):
            for what, bad in {**INJECTIONS, "300 characters": "n" * 300 + ";"}.items():
                r = node.post(path, {"id": f"node1{bad}"})
                self.assertEqual(members(node), before)
                self.assertIsInstance(r.json().get("error"), str, r)
                got[f"{path} id with {what}"] = r.status
        self.assertEqual(got, {case: 400 for case in got})

    def test_a_followers_redirect_never_carries_cr_or_lf(self):
        c = self.cluster.start(3)
        leader = c.leader()
        follower = c.followers()[0]
        targets = [b"/key/a%0D%0AX-Injected:%201?q=%0d%0aX-Injected:%202",
                   b"/key/a%0AX-Injected:%201", b"/key/a%0DX-Injected:%201",
                   b"/key?x=%0D%0AX-Injected:%201", b"/key/a\x85b",
                   b"/key/a\r\nX-Injected: 1", b"/key/a\rX-Injected: 1", b"/key/a\nX-Injected: 1"]
        redirects = 0
        for target in targets:
            method = b"POST" if target.startswith(b"/key?") else b"PUT"
            for m in (method, b"DELETE") if method == b"PUT" else (method,):
                with self.subTest(method=m, target=target):
                    head = raw_exchange(follower.http, m + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Length: 7\r\n\r\n{\"a\":1}")
                    self.assertIn(b"\r\n\r\n", head)
                    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                    for line in lines:
                        self.assertNotIn(b"\r", line)
                        self.assertNotIn(b"\n", line)
                        self.assertFalse(line.lower().startswith(b"x-injected"), head)
                    status = lines[0].split(b" ")[1]
                    if status == b"307":
                        redirects += 1
                        headers = dict(line.split(b": ", 1) for line in lines[1:])
                        self.assertEqual(headers[b"X-Raft-Leader"], leader.http.encode())
                        self.assertTrue(headers[b"Location"].startswith(
                            f"http://{leader.http}/key".encode()), head)
                    else:
                        self.assertEqual(status, b"400", head)  # raw CR or LF in the target
        self.assertGreaterEqual(redirects, 5)


# --- 2. TLS -------------------------------------------------------------------------------------

class Tls(SecurityTest):
    def test_certs_command_writes_what_a_secured_cluster_needs(self):
        certs = self.make_certs("certs", ["n1", "n2", "n3"], client="ops",
                                extra=["--cluster-name", "edge-cluster"])
        for name in ("n1", "n2", "n3"):
            cert, key = certs.pair(name)
            d = decode_certificate(cert)
            self.assertEqual(d["subject"], ((("commonName", name),),))
            self.assertEqual(set(d["subjectAltName"]),
                             {("DNS", name), ("IP Address", "127.0.0.1"), ("DNS", "localhost"),
                              ("DNS", "edge-cluster")})
            self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        client = decode_certificate(certs.pair("ops")[0])
        self.assertEqual(client["subject"], ((("commonName", "ops"),),))
        self.assertEqual(os.stat(certs.ca_key).st_mode & 0o777, 0o600)
        with open(certs.token_file) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1)
        with open(certs.auth) as f:
            auth = json.load(f)
        self.assertEqual(len(auth), 1)
        self.assertEqual(auth[0]["name"], "ops")
        self.assertIs(auth[0]["admin"], True)
        self.assertEqual(auth[0]["token_sha256"], sha256(lines[0]))
        # Every node certificate chains to the CA (a context trusting only it loads them).
        ctx = certs.context(client_cert="n1")
        self.assertIsNotNone(ctx)
        for bad in (["--nodes", "n 1"], ["--nodes", "n1,bad;id"], ["--nodes", "n1", "--hosts", "a;b"],
                    ["--nodes", "n1", "--cluster-name", "not a name"], ["--nodes", "n1", "--client", "a b"],
                    []):
            with self.subTest(args=bad):
                r = subprocess.run([BINARY, "certs", os.path.join(self.root, "bad"), *bad],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 2, r)
                self.assertTrue(r.stderr.strip(), r)

    def test_https_with_the_ca_and_a_token_on_every_port(self):
        certs = self.make_certs("certs", ["node1", "node2", "node3"])
        c = self.start_tls(certs, 3)
        leader = c.leader()
        follower = c.followers()[0]
        ctx, admin = certs.context(), bearer(certs.token)
        st = follower.status()  # over HTTPS with the token
        self.assertIs(st["auth"], True)
        self.assertIs(st["insecure"], False)
        self.assertEqual(follower.metric("raftnginx_insecure"), 0)

        # A write through a follower's nginx reaches the leader; every node serves it.
        r = request(follower.gateway, "POST", "/key", body={"user1": "batman"}, headers=admin, context=ctx)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Raft-Served-By"), leader.name)
        for node in c.running():
            for address in (node.http, node.gateway):
                wait_until(lambda: request(address, "GET", "/key/user1", headers=admin,
                                           context=ctx).status == 200, what=f"user1 on {address}")
                r = request(address, "GET", "/key/user1", headers=admin, context=ctx)
                self.assertEqual(r.json(), {"user1": "batman"})
                self.assertEqual(r.header("X-Raft-Served-By"), node.name)

        other = self.make_certs("other", ["node1"])
        for node in (leader, follower):
            for address in (node.http, node.gateway):
                with self.subTest(address=address):
                    # A client that does not trust the cluster's CA fails the handshake.
                    with self.assertRaises(ssl.SSLCertVerificationError):
                        request(address, "GET", "/healthz", context=ssl.create_default_context())
                    with self.assertRaises(ssl.SSLCertVerificationError):
                        request(address, "GET", "/healthz", context=other.context())
                    # Plaintext to a TLS port gets no HTTP 200.
                    head = raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertFalse(head.startswith(b"HTTP/1.1 200"), head)
                    self.assertFalse(head.startswith(b"HTTP/1.0 200"), head)
                    # A client certificate of another CA is refused (--http-ca is set).
                    self.assert_not_served(address, certs.context(client_cert=other.pair("admin")),
                                           "another CA's client certificate")
        # Without a token (and no client certificate): 401, over TLS too.
        self.assert_unauthenticated(request(leader.http, "GET", "/status", context=ctx))
        # With --http-ca, the client certificate "admin" stands for the principal admin on a
        # daemon's port; through nginx only tokens count.
        with_cert = certs.context(client_cert="admin")
        self.assertEqual(request(follower.http, "GET", "/status", context=with_cert).status, 200)
        self.assert_unauthenticated(request(follower.gateway, "GET", "/status", context=with_cert))

        # A follower's redirect names the leader's HTTPS port.
        r = request(follower.http, "PUT", "/key/user2", body="x", headers=admin, context=ctx)
        self.assertEqual(r.status, 307, r)
        self.assertEqual(r.header("Location"), f"https://{leader.http}/key/user2")

        # A node that presents another node's certificate (node4 with node3's files) never
        # takes part: the leader finds node3's certificate on its raft port, does not add it, and
        # it receives nothing.
        node4 = c.add("node4", certs.flags("node3"), join=leader, context=ctx, headers=admin)
        wait_until(lambda: "refused to add node4" in leader.log_tail(200),
                   what="the leader refusing node4")
        st = node4.status()
        self.assertIsNone(st["leader"])
        self.assertEqual(st["applied_index"], 0)
        self.assertEqual(node4.get("/key/user1").status, 404)

    def test_a_node_with_another_nodes_certificate_stays_out_of_the_members(self):
        certs = self.make_certs("certs", ["node1", "node3"])
        c = self.start_tls(certs, 1, nginx=False)
        leader = c["node1"]
        node2 = c.add("node2", certs.flags("node3"), join=leader,
                      context=certs.context(), headers=bearer(certs.token))
        # The leader dials node2's raft port before adding it, and finds node3's certificate.
        wait_until(lambda: "HTTP 403" in node2.log_tail(50), what="node2's join refused")
        self.assertIn("node2 cannot be added: the node at " + node2.raft +
                      " presents a certificate (CN=node3", node2.log_tail(50))
        self.assertEqual([m[0] for m in members(leader)], ["node1"])
        # A node that is not running cannot prove who it is either: 503, nothing added.
        r = leader.post("/join", {"id": "node3", "addr": f"127.0.0.1:{free_port()}",
                                  "http_addr": f"127.0.0.1:{free_port()}"})
        self.assert_json_error(r, 503)
        self.assertIn("node3 cannot be added", r.json()["error"])
        self.assertEqual([m[0] for m in members(leader)], ["node1"])

    def test_a_client_resumes_its_tls_session_with_a_certificate(self):
        # nginx reuses its TLS sessions to the leader, presenting the node's certificate: each
        # resumption once failed with an "internal error" alert (no session id context), and
        # the write it carried with a 502.
        certs = self.make_certs("certs", ["node1"])
        c = self.cluster.start(1, args=certs.flags("node1", verify=True), nginx=False,
                               context=certs.context(client_cert="admin"))
        node = c["node1"]
        host, port = node.http.rsplit(":", 1)
        ctx = certs.context(client_cert="node1")
        session = None
        for attempt in range(3):
            with socket.create_connection((host, int(port)), timeout=10 * SLOW) as raw:
                with ctx.wrap_socket(raw, server_hostname="raft-nginx", session=session) as tls:
                    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = b""
                    while chunk := tls.recv(65536):
                        reply += chunk
                    self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply)
                    if attempt > 0:
                        self.assertTrue(tls.session_reused, f"attempt {attempt}")
                    session = tls.session

    def test_client_certificates_with_verify_client(self):
        certs = self.make_certs("certs", ["node1", "node2"])
        other = self.make_certs("other", ["node1"])
        # The client certificate's CN "admin" names a principal that only reads routes/; "ops"
        # is an admin by token.
        auth = write_auth(os.path.join(self.root, "auth.json"), {
            "admin": (None, {"read": ["routes/"]}),
            "ops": ("ops-token", {"admin": True})})
        c = self.cluster.start(1, args=certs.flags("node1", auth=auth, verify=True),
                               nginx=True, context=certs.context(client_cert="admin"))
        node = c["node1"]
        with_cert = certs.context(client_cert="admin")
        for address in (node.http, node.gateway):
            with self.subTest(address=address):
                self.assert_not_served(address, certs.context(), "no client certificate")
                self.assert_not_served(address, certs.context(client_cert=other.pair("admin")),
                                       "a client certificate of another CA")
                r = request(address, "PUT", "/key/routes/a", body="v", context=with_cert,
                            headers=bearer("ops-token"))
                self.assertEqual(r.status, 200, r)
        # On the daemon's port the certificate alone names the principal "admin".
        r = request(node.http, "GET", "/key/routes/a", context=with_cert)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"routes/a": "v"})
        r = request(node.http, "PUT", "/key/routes/a", body="w", context=with_cert)
        self.assert_json_error(r, 403)
        self.assertIn("admin", r.json()["error"])
        self.assert_json_error(request(node.http, "GET", "/key/other", context=with_cert), 403)
        # An Authorization header wins over the certificate: an unknown token is 401.
        self.assert_unauthenticated(request(node.http, "GET", "/key/routes/a", context=with_cert,
                                            headers=bearer("nobody's")))
        # A certificate of the CA whose name is nobody's principal authenticates no one.
        self.assert_unauthenticated(request(node.http, "GET", "/key/routes/a",
                                            context=certs.context(client_cert="node2")))

        with self.subTest(case="an expired client certificate"):
            if OPENSSL is None:
                self.skipTest("no openssl command to make an expired certificate with")
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            expired = openssl_issue(certs, os.path.join(self.root, "openssl"), "admin", ["DNS:admin"],
                                    now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
            fresh = openssl_issue(certs, os.path.join(self.root, "openssl"), "admin", ["DNS:admin"],
                                  now - datetime.timedelta(days=1), now + datetime.timedelta(days=1))
            # The same CA and name, in date: served. Out of date: refused.
            r = request(node.http, "GET", "/key/routes/a", context=certs.context(client_cert=fresh))
            self.assertEqual(r.status, 200, r)
            for address in (node.http, node.gateway):
                self.assert_not_served(address, certs.context(client_cert=expired),
                                       "an expired client certificate")

    def test_certificates_are_re_read_on_sighup_without_a_restart(self):
        certs = self.make_certs("certs", ["node1", "node2", "node3", "spare"])
        http_dir = os.path.join(self.root, "http")
        c = self.start_tls(certs, 3, http_dir=http_dir)
        leader = c.leader()
        node2 = c["node2"]
        if node2 is leader:
            self.assertEqual(leader.post("/leader/transfer", {"id": "node1"}).status, 200)
            leader = c.leader()
        ctx, admin = certs.context(), bearer(certs.token)
        raft_ctx = certs.context(client_cert="node1")  # the raft port wants a member's certificate
        pid = node2.proc.pid
        self.assertEqual(peer_certificate(node2.http, ctx)[0], "node2")
        self.assertEqual(peer_certificate(node2.gateway, ctx)[0], "node2")
        raft_serial = peer_certificate(node2.raft, raft_ctx)[1]

        # A connection opened before the rotation, kept alive across it.
        host, port = node2.http.rsplit(":", 1)
        kept = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10 * SLOW)
        kept.request("GET", "/healthz")
        self.assertEqual(json.loads(kept.getresponse().read())["status"], "ok")

        # Writes through node2's nginx and linearizable reads on node2 all along.
        done, failures, served = threading.Event(), [], [0]

        def load():
            i = 0
            while not done.is_set():
                i += 1
                try:
                    w = request(node2.gateway, "PUT", f"/key/load{i}", body=str(i), headers=admin,
                                context=ctx, timeout=5)
                    r = request(node2.http, "GET", f"/key/load{i}?level=linearizable", headers=admin,
                                context=ctx, timeout=5)
                    if w.status != 200 or r.status != 200:
                        failures.append((i, w, r))
                except OSError as e:
                    failures.append((i, e))
                served[0] += 1
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            wait_until(lambda: served[0] >= 5, what="the load running")

            # node2's HTTP certificate becomes another one of the same CA (still naming the cluster).
            for source, target in zip(certs.pair("spare"), certs.pair("node2")):
                replace_file(source, os.path.join(http_dir, os.path.basename(target)))
            node2.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: peer_certificate(node2.http, ctx)[0] == "spare",
                       what="the daemon's port showing the new certificate")
            wait_until(lambda: peer_certificate(node2.gateway, ctx)[0] == "spare",
                       what="nginx showing the new certificate")
            after = served[0]
            wait_until(lambda: served[0] >= after + 5, what="the load going on after the rotation")

            with self.subTest(case="the node certificate, reissued by the same CA"):
                if OPENSSL is None:
                    self.skipTest("no openssl command to reissue node2's certificate with")
                now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
                cert, key = openssl_issue(certs, os.path.join(self.root, "openssl"), "node2",
                                          ["DNS:node2", "IP:127.0.0.1", "DNS:localhost", "DNS:raft-nginx"],
                                          now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
                for source, target in zip((cert, key), certs.pair("node2")):
                    replace_file(source, target)
                node2.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: peer_certificate(node2.raft, raft_ctx)[1] != raft_serial,
                           what="the raft port showing the new certificate")
                self.assertEqual(peer_certificate(node2.raft, raft_ctx)[0], "node2")
                expiry = node2.metric('raftnginx_tls_certificate_expiry_timestamp_seconds{port="raft"}')
                self.assertAlmostEqual(expiry, (now + datetime.timedelta(days=1)).replace(
                    tzinfo=datetime.timezone.utc).timestamp(), delta=2)
                after = served[0]
                wait_until(lambda: served[0] >= after + 5, what="the load going on")
        finally:
            done.set()
            loader.join(timeout=20 * SLOW)
        self.assertFalse(loader.is_alive())
        self.assertEqual(failures, [])
        kept.request("GET", "/healthz")
        self.assertEqual(json.loads(kept.getresponse().read())["status"], "ok")
        kept.close()
        self.assertTrue(node2.running())
        self.assertEqual(node2.proc.pid, pid)
        self.assertIn("node2", [m[0] for m in members(leader)])
        self.write(leader, "after-rotation", "yes")
        self.assert_value(node2, "after-rotation", "yes", level="linearizable")
        self.assertIn("HTTP TLS: certificate re-read", node2.log_tail(200))
        for node in c.running():
            log = node.log_tail(400)
            for refusal in ("presented a certificate", "TLS handshake failed", "kept the previous"):
                self.assertNotIn(refusal, log, node.name)


# --- Secure by default --------------------------------------------------------------------------

class SecureByDefault(SecurityTest):
    def test_a_node_reachable_beyond_loopback_refuses_to_start_without_trust(self):
        certs = self.make_certs("certs", ["n1"])
        cert, key = certs.pair("n1")
        loop = lambda: f"127.0.0.1:{free_port()}"
        anywhere = lambda: f"0.0.0.0:{free_port()}"
        cases = {
            "-haddr": ["-haddr", anywhere(), "-raddr", loop()],
            "-raddr": ["-haddr", loop(), "-raddr", anywhere()],
            "--nginx-listen": ["-haddr", loop(), "-raddr", loop(), "--nginx-listen", anywhere()],
            "no auth": ["-haddr", anywhere(), "-raddr", loop(), "--node-cert", cert, "--node-key", key,
                        "--node-ca", certs.ca, "--http-cert", cert, "--http-key", key],
            "no node TLS": ["-haddr", anywhere(), "-raddr", loop(), "--http-cert", cert,
                            "--http-key", key, "--auth", certs.auth],
            "no client TLS": ["-haddr", anywhere(), "-raddr", loop(), "--node-cert", cert,
                              "--node-key", key, "--node-ca", certs.ca, "--auth", certs.auth],
        }
        for case, args in cases.items():
            with self.subTest(case=case):
                r = self.run_daemon(["-id", "n1", *args])
                self.assertEqual(r.returncode, 2, r)
                self.assertIn("--insecure", r.stderr)

    def test_insecure_is_reported_in_status_and_metrics(self):
        c = self.cluster.start(1)
        plain = c["node1"]
        self.assertIs(plain.status()["insecure"], False)
        self.assertEqual(plain.metric("raftnginx_insecure"), 0)
        flagged = c.add("node2", ["--insecure"])  # its own one-node cluster, on loopback
        wait_until(lambda: flagged.get("/readyz").status == 200, what="node2 ready")
        self.assertIs(flagged.status()["insecure"], True)
        self.assertEqual(flagged.metric("raftnginx_insecure"), 1)
        self.assertIn("--insecure", flagged.log_tail(200))
        self.assertNotIn("--insecure", plain.log_tail(200))


# --- 3. Auth ------------------------------------------------------------------------------------

PRINCIPALS = {
    "admin": ("admin-token", {"admin": True}),
    "reader": ("reader-token", {"read": ["routes/"]}),
    "writer": ("writer-token", {"write": ["routes/"]}),
    "node2": ("node2-token", {"join": True}),  # a new node's credential, named like the node
}
ADMIN, READER, WRITER, JOINER = (bearer(PRINCIPALS[n][0]) for n in ("admin", "reader", "writer", "node2"))
# Authorization headers that name nobody.
NOBODY = {"unknown token": bearer("nobody's-token"), "Basic": {"Authorization": "Basic YWRtaW46eA=="},
          "scheme only": {"Authorization": "Bearer"}, "another scheme": {"Authorization": "Token admin-token"},
          "token without scheme": {"Authorization": "admin-token"}}


class Auth(SecurityTest):
    def auth_file(self, principals=PRINCIPALS):
        return write_auth(os.path.join(self.root, "auth.json"), principals)

    def test_every_route_needs_a_principal_with_the_permission(self):
        c = self.cluster.start(1, args=["--auth", self.auth_file()], headers=ADMIN)
        node = c["node1"]
        address = node.http
        self.write(node, "routes/a", "1")
        self.write(node, "secret/x", "s")
        self.write(node, "routes", "no slash")

        def call(method, path, headers=None, body=None):
            return request(address, method, path, body=body, headers=headers)
        join_self = {"id": "node1", "addr": node.raft, "http_addr": node.http}
        routes = [("GET", "/key/routes/a", None), ("PUT", "/key/routes/a", "v"),
                  ("DELETE", "/key/routes/a", None), ("POST", "/key", {"routes/a": "v"}),
                  ("GET", "/status", None), ("GET", "/nodes", None), ("GET", "/metrics", None),
                  ("POST", "/join", join_self), ("POST", "/remove", {"id": "node1"}),
                  ("POST", "/promote", {"id": "node1"}), ("POST", "/leader/transfer", {"id": "node1"})]
        for method, path, body in routes:
            for what, headers in [("no credentials", None), *NOBODY.items()]:
                with self.subTest(route=f"{method} {path}", credentials=what):
                    self.assert_unauthenticated(call(method, path, headers, body))
        for path in ("/healthz", "/readyz"):
            self.assertEqual(call("GET", path).status, 200, path)
        # /status, /nodes and /metrics: any principal.
        for headers in (ADMIN, READER, WRITER, JOINER):
            for path in ("/status", "/nodes", "/metrics"):
                self.assertEqual(call("GET", path, headers).status, 200, (path, headers))

        allowed = [
            (READER, "GET", "/key/routes/a", None), (READER, "GET", "/key/routes%2Fa", None),
            (WRITER, "PUT", "/key/routes/b", "v"), (WRITER, "POST", "/key", {"routes/c": "1", "routes/d": "2"}),
            (WRITER, "DELETE", "/key/routes/b", None),
            (ADMIN, "GET", "/key/secret/x", None), (ADMIN, "PUT", "/key/secret/y", "v"),
            (ADMIN, "POST", "/join", join_self),  # already a member: 200, nothing changes
            (ADMIN, "POST", "/leader/transfer", {"id": "node1"}),  # leads already
        ]
        for headers, method, path, body in allowed:
            with self.subTest(allowed=f"{headers} {method} {path}"):
                r = call(method, path, headers, body)
                self.assertEqual(r.status, 200, r)
        forbidden = [
            (READER, "GET", "/key/secret/x", None), (READER, "GET", "/key/routes", None),
            (READER, "GET", "/key/routesX", None), (READER, "PUT", "/key/routes/a", "v"),
            (READER, "POST", "/key", {"routes/a": "v"}), (READER, "DELETE", "/key/routes/a", None),
            (WRITER, "GET", "/key/routes/a", None), (WRITER, "PUT", "/key/secret/x", "v"),
            (WRITER, "DELETE", "/key/secret/x", None), (WRITER, "PUT", "/key/routes", "v"),
            (WRITER, "POST", "/key", {"routes/e": "1", "secret/e": "2"}),
            (JOINER, "GET", "/key/routes/a", None), (JOINER, "PUT", "/key/routes/a", "v"),
        ]
        for who in (READER, WRITER, JOINER):
            forbidden += [(who, "POST", "/remove", {"id": "node1"}),
                          (who, "POST", "/promote", {"id": "node1"}),
                          (who, "POST", "/leader/transfer", {"id": "node1"})]
        forbidden += [(who, "POST", "/join", join_self) for who in (READER, WRITER)]
        forbidden += [(JOINER, "POST", "/join", join_self)]  # not its own name
        for headers, method, path, body in forbidden:
            with self.subTest(forbidden=f"{headers} {method} {path}"):
                self.assert_json_error(call(method, path, headers, body), 403)
        # Nothing a refused request carried was applied: not even the covered key of a write
        # that also held one outside the principal's prefixes.
        self.assertEqual(node.get("/key/routes/e").status, 404)
        self.assertEqual(node.get("/key/secret/x").json(), {"secret/x": "s"})
        self.assertEqual(node.get("/key/routes/a").json(), {"routes/a": "1"})
        self.assertEqual(node.get("/key/routes/c").json(), {"routes/c": "1"})
        self.assertEqual(node.get("/key/routes/b").status, 404)
        self.assertEqual(members(node), [("node1", node.raft, node.http, True)])

    def test_public_status_opens_only_status_nodes_and_metrics(self):
        c = self.cluster.start(1, args=["--auth", self.auth_file(), "--public-status"], headers=ADMIN)
        node = c["node1"]
        for path in ("/status", "/nodes", "/metrics", "/healthz", "/readyz"):
            self.assertEqual(request(node.http, "GET", path).status, 200, path)
        self.assert_unauthenticated(request(node.http, "GET", "/key/routes/a"))
        self.assert_unauthenticated(request(node.http, "PUT", "/key/routes/a", body="v"))
        self.assert_unauthenticated(request(node.http, "POST", "/leader/transfer", body={}))
        self.assert_json_error(request(node.http, "POST", "/remove", body={"id": "node1"},
                                       headers=READER), 403)
        # --public-status without --auth is a mistake.
        r = self.run_daemon(["-id", "x", "-haddr", f"127.0.0.1:{free_port()}",
                             "-raddr", f"127.0.0.1:{free_port()}", "--public-status"])
        self.assertEqual(r.returncode, 2, r)

    def bad_auth_files(self):
        good = {"name": "ops", "token_sha256": sha256("t1"), "admin": True}
        return {
            "unknown field": [{**good, "writes": [""]}],
            "admin not a bool": [{**good, "admin": "yes"}],
            "read not an array": [{**good, "read": "routes/"}],
            "a prefix not a string": [{**good, "write": [1]}],
            "name not a string": [{**good, "name": 7}],
            "duplicate name": [good, {**good, "token_sha256": sha256("t2")}],
            "duplicate token": [good, {**good, "name": "ops2"}],
            "upper-case hex": [{**good, "token_sha256": sha256("t1").upper()}],
            "short hash": [{**good, "token_sha256": sha256("t1")[:63]}],
            "name outside the grammar": [{**good, "name": "o p s"}],
            "not an array": {"ops": good},
            "not JSON": "[{",
        }

    def test_the_auth_file_is_read_strictly(self):
        for case, doc in self.bad_auth_files().items():
            with self.subTest(case=case):
                path = os.path.join(self.root, "bad-auth.json")
                with open(path, "w") as f:
                    f.write(doc if isinstance(doc, str) else json.dumps(doc))
                r = self.run_daemon(["-id", "n1", "-haddr", f"127.0.0.1:{free_port()}",
                                     "-raddr", f"127.0.0.1:{free_port()}", "--auth", path])
                self.assertEqual(r.returncode, 1, r)
                self.assertIn("auth", r.stdout + r.stderr)

    def test_a_refused_auth_file_is_reported_on_stderr(self):
        path = os.path.join(self.root, "bad-auth.json")
        with open(path, "w") as f:
            json.dump([{"name": "ops", "token_sha256": sha256("t"), "bogus": True}], f)
        r = self.run_daemon(["-id", "n1", "-haddr", f"127.0.0.1:{free_port()}",
                             "-raddr", f"127.0.0.1:{free_port()}", "--auth", path])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("bogus", r.stderr)

    def test_a_join_only_principal_joins_as_itself_and_moves_nothing(self):
        auth = self.auth_file()
        token_file = os.path.join(self.root, "node2.token")
        with open(token_file, "w") as f:
            f.write(PRINCIPALS["node2"][0] + "\n")
        c = self.cluster.start(1, args=["--auth", auth], headers=ADMIN)
        node1 = c["node1"]
        node2 = c.add("node2", ["--auth", auth, "--token-file", token_file], join=node1, headers=ADMIN)
        c.wait_members(2)
        self.write(node1, "k", "v")
        self.assert_value(node2, "k", "v", level="linearizable")
        before = members(node1)
        # A join-only credential adds a learner: an admin makes it a voter.
        self.assertEqual(before, sorted([("node1", node1.raft, node1.http, True),
                                         ("node2", node2.raft, node2.http, False)]))

        # Another node holding node2's credential may not join under its own name.
        intruder = c.add("node3", ["--auth", auth, "--token-file", token_file], join=node1, headers=ADMIN)
        wait_until(lambda: "HTTP 403" in intruder.log_tail(20), what="node3's join refused")
        self.assertEqual(members(node1), before)
        intruder.kill()

        elsewhere = f"127.0.0.1:{free_port()}"
        moved = {"id": "node2", "addr": node2.raft, "http_addr": elsewhere}
        self.assert_json_error(node1.post("/join", moved, headers=JOINER), 409)
        self.assert_json_error(node1.post("/join", {**moved, "replace": True}, headers=JOINER), 403)
        self.assert_json_error(node1.post("/join", {"id": "node1", "addr": node1.raft,
                                                    "http_addr": elsewhere, "replace": True},
                                          headers=JOINER), 403)
        self.assert_json_error(node1.post("/join", {"id": "node4", "addr": f"127.0.0.1:{free_port()}",
                                                    "http_addr": elsewhere}, headers=JOINER), 403)
        self.assertEqual(members(node1), before)
        r = node1.post("/join", {"id": "node2", "addr": node2.raft, "http_addr": node2.http},
                       headers=JOINER)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["result"], "already a member")
        # An admin moves a member only with "replace": true.
        self.assert_json_error(node1.post("/join", moved), 409)
        self.assertEqual(members(node1), before)
        r = node1.post("/join", {**moved, "replace": True})
        self.assertEqual(r.status, 200, r)
        self.assertIn(("node2", node2.raft, elsewhere, False), members(node1))
        r = node1.post("/join", {"id": "node2", "addr": node2.raft, "http_addr": node2.http,
                                 "replace": True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(members(node1), before)
        # The join-only credential cannot promote itself; an admin can.
        self.assert_json_error(node1.post("/promote", {"id": "node2"}, headers=JOINER), 403)
        self.assertEqual(node1.post("/promote", {"id": "node2"}).status, 200)
        self.assertIn(("node2", node2.raft, node2.http, True), members(node1))

    def tls_auth_cluster(self, principals):
        certs = self.make_certs("certs", ["node1", "node2", "node3"])
        principals = {"admin": (certs.token, {"admin": True}), **principals}
        auth = write_auth(os.path.join(self.root, "auth.json"), principals)
        return certs, self.start_tls(certs, 3, auth=auth)

    def test_the_gateway_gives_the_same_answers_over_tls(self):
        certs, c = self.tls_auth_cluster({
            "reader": ("reader-token", {"read": ["routes/"]}),
            "writer": ("writer-token", {"write": ["routes/"]}),
            "edge7": ("edge7-token", {"join": True})})
        ctx = certs.context()
        leader = c.leader()
        self.write(leader, "routes/a", "1")
        c.wait_converged()
        checks = [
            ("no credentials", None, "POST", "/key", {"routes/x": "1"}, 401),
            ("no credentials", None, "GET", "/key/routes/a", None, 401),
            ("no credentials", None, "GET", "/status", None, 401),
            ("no credentials", None, "POST", "/join", {"id": "edge7", "addr": "127.0.0.1:9"}, 401),
            ("unknown token", bearer("nope"), "PUT", "/key/routes/x", "1", 401),
            ("unknown token", bearer("nope"), "GET", "/key/routes/a", None, 401),
            ("reader", READER, "PUT", "/key/routes/x", "1", 403),
            ("reader", READER, "GET", "/key/secret", None, 403),
            ("reader", READER, "GET", "/key/routes/a", None, 200),
            ("reader", READER, "POST", "/remove", {"id": "node3"}, 403),
            ("writer", WRITER, "GET", "/key/routes/a", None, 403),
            ("writer", WRITER, "DELETE", "/key/secret", None, 403),
            ("writer", WRITER, "PUT", "/key/routes/w", "1", 200),
            ("join-only", bearer("edge7-token"), "PUT", "/key/routes/x", "1", 403),
            ("join-only", bearer("edge7-token"), "POST", "/join",
             {"id": "node3", "addr": "127.0.0.1:9"}, 403),
            ("admin", bearer(certs.token), "GET", "/status", None, 200),
            ("admin", bearer(certs.token), "POST", "/key", {"secret": "s"}, 200),
            ("nothing needed", None, "GET", "/healthz", None, 200),
        ]
        for node in c.running():
            for address in (node.gateway, node.http):
                for who, headers, method, path, body, status in checks:
                    with self.subTest(address=address, who=who, request=f"{method} {path}"):
                        r = request(address, method, path, body=body, headers=headers, context=ctx)
                        if address == node.http and status == 200 and method != "GET" \
                                and node is not leader and path.startswith("/key"):
                            self.assertEqual(r.status, 307, r)  # the daemon redirects writes
                            continue
                        self.assertEqual(r.status, status, r)
                        if status == 401:
                            self.assert_unauthenticated(r)
                        elif status == 403:
                            self.assert_json_error(r, 403)

    def test_a_gateway_lends_no_identity_to_anonymous_clients(self):
        # Principals named like nodes: node2's join credential, and node3's credential for an
        # agent that reports its health.
        certs, c = self.tls_auth_cluster({
            "node2": ("node2-token", {"join": True}),
            "node3": ("node3-token", {"join": True, "write": ["health/node3/"]})})
        ctx = certs.context()
        got = {}
        for node in c.running():
            r = request(node.gateway, "POST", "/key", body={"x": "1"}, context=ctx)
            got[f"POST /key through {node.name}'s nginx"] = r.status
            r = request(node.gateway, "PUT", "/key/health/node3/up", body="1", context=ctx)
            got[f"PUT /key/health/node3/up through {node.name}'s nginx"] = r.status
        self.assertEqual(got, {case: 401 for case in got})


if __name__ == "__main__":
    unittest.main()
