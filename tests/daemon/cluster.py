"""Starts real raft-nginx processes on loopback for the multi-process tests.

Every process is started by this module, tracked by PID and killed when the test ends; ports are
free ones picked at start. Nothing here talks to anything but 127.0.0.1.
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BINARY = os.environ.get("RAFTNGINX_BIN", "raft-nginx")
# Deadlines scale with the machine: the sanitizer build runs several times slower.
SLOW = float(os.environ.get("RAFTNGINX_TEST_SLOWDOWN", "1"))


def address(a):
    """("host", port) of a "host:port"."""
    host, port = a.rsplit(":", 1)
    return host, int(port)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """The largest RSS (KiB) of process `pid` while the with block runs, sampled every 10 ms."""

    def __init__(self, pid):
        self.pid = pid
        self.before = self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self):
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return

    @property
    def grown_mib(self):
        return (self.peak - self.before) / 1024

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def free_port():
    """A port that is free now, below Linux's ephemeral range (32768+): a port the kernel hands
    out for outgoing connections could be taken again before the daemon binds it."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"Reply({self.status}, {self.body[:200]!r})"


def request(address, method, path, body=None, headers=None, timeout=10, context=None):
    """One HTTP request; never follows redirects. Returns a Reply or raises OSError. With an
    ssl.SSLContext as `context` it is HTTPS (a failed handshake raises ssl.SSLError, an OSError)."""
    host, port = address.rsplit(":", 1)
    if context is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout * SLOW)
    else:
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout * SLOW, context=context)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read().decode(errors="replace")
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def wait_until(predicate, timeout=15, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Certs:
    """A directory written by `raft-nginx certs`: the CA, a certificate per node and for a client,
    auth.json and the client's admin token."""

    def __init__(self, path, client="admin"):
        self.path = path
        self.client = client
        self.ca = os.path.join(path, "ca.pem")
        self.ca_key = os.path.join(path, "ca-key.pem")
        self.auth = os.path.join(path, "auth.json")
        self.token_file = os.path.join(path, client + ".token")

    @classmethod
    def make(cls, path, nodes, client="admin", extra=()):
        """Runs `raft-nginx certs` for `nodes`, on loopback."""
        r = subprocess.run([BINARY, "certs", path, "--nodes", ",".join(nodes),
                            "--hosts", "127.0.0.1,localhost", "--client", client, *extra],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"raft-nginx certs failed: {r.stderr}")
        return cls(path, client)

    def pair(self, name):
        return os.path.join(self.path, name + ".pem"), os.path.join(self.path, name + "-key.pem")

    @property
    def token(self):
        with open(self.token_file) as f:
            return f.read().strip()

    def bearer(self):
        return {"Authorization": "Bearer " + self.token}

    def context(self, client_cert=None):
        """A client context that trusts this CA, presenting `client_cert` (a name here, or a
        (cert, key) pair) if given."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if client_cert is not None:
            cert, key = self.pair(client_cert) if isinstance(client_cert, str) else client_cert
            ctx.load_cert_chain(cert, key)
        return ctx

    def flags(self, cert_name, http_files=None, auth=None, token_file=None, verify=False):
        """The flags `raft-nginx certs` prints for a node, with its files under `cert_name`."""
        cert, key = self.pair(cert_name)
        http_cert, http_key = http_files or (cert, key)
        flags = ["--node-cert", cert, "--node-key", key, "--node-ca", self.ca,
                 "--http-cert", http_cert, "--http-key", http_key, "--http-ca", self.ca,
                 "--auth", auth or self.auth, "--token-file", token_file or self.token_file]
        return flags + (["--http-verify-client"] if verify else [])


class Daemon:
    """One raft-nginx process. `context` (an ssl.SSLContext) makes the helpers below speak HTTPS
    to it, and `headers` (e.g. an Authorization) go with each of their requests."""

    def __init__(self, root, name, args=(), http_port=None, raft_port=None, nginx=False,
                 context=None, headers=None, binary=None):
        self.name = name
        self.binary = binary or BINARY  # raft-nginx, or a program built on it
        self.http = f"127.0.0.1:{http_port or free_port()}"
        self.raft = f"127.0.0.1:{raft_port or free_port()}"
        # The address of the node's nginx gateway, which the daemon runs, if any.
        self.gateway = f"127.0.0.1:{free_port()}" if nginx else None
        self.data_dir = os.path.join(root, name)
        self.log_path = os.path.join(root, name + ".log")
        self.args = list(args)
        self.proc = None
        self.context = context
        self.headers = dict(headers or {})

    def command(self):
        gateway = ["--nginx-listen", self.gateway] if self.gateway else []
        return [self.binary, "-id", self.name, "-haddr", self.http, "-raddr", self.raft,
                *gateway, *self.args, self.data_dir]

    def start(self, command=None, cwd=None, env=None):
        """Starts the daemon and waits until its HTTP port is bound. If a port it was given
        turned out taken (another process got it first), it picks new ones and tries again."""
        for attempt in range(5):
            log = open(self.log_path, "a")
            self.proc = subprocess.Popen(command or self.command(), stdout=log,
                                         stderr=subprocess.STDOUT, cwd=cwd, env=env)
            log.close()
            deadline = time.monotonic() + 10 * SLOW
            while time.monotonic() < deadline and self.proc.poll() is None:
                host, port = self.http.rsplit(":", 1)
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            if command is not None or self.proc.poll() is None \
                    or "Address already in use" not in self.log_tail(5):
                return self
            self.http = f"127.0.0.1:{free_port()}"
            self.raft = f"127.0.0.1:{free_port()}"
            if self.gateway:
                self.gateway = f"127.0.0.1:{free_port()}"
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM, then wait; returns the exit code."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop within {timeout}s of SIGTERM")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def request(self, method, path, body=None, headers=None, **kw):
        """A request to the daemon's HTTP port with its context and headers (`headers` add to
        them or replace them by name)."""
        kw.setdefault("context", self.context)
        return request(self.http, method, path, body=body,
                       headers={**self.headers, **(headers or {})}, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def status(self):
        return self.get("/status").json()

    def metric(self, name):
        for line in self.get("/metrics").body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics of {self.name}")

    def staged_snapshot_bytes(self):
        """Bytes of the snapshot files the node is receiving (its snapshot store's tmp-
        directories)."""
        root = os.path.join(self.data_dir, "snapshots")
        total = 0
        for entry in os.listdir(root) if os.path.isdir(root) else []:
            if entry.startswith("tmp-"):
                for base, _, files in os.walk(os.path.join(root, entry)):
                    for f in files:
                        try:
                            total += os.path.getsize(os.path.join(base, f))
                        except OSError:
                            pass  # sealed or removed meanwhile
        return total

    def log_tail(self, lines=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    def __init__(self, root):
        self.root = root
        self.nodes = {}

    def add(self, name, args=(), join=None, **kw):
        args = list(args)
        if join is not None:
            args += ["-join", join.http]
        d = Daemon(self.root, name, args, **kw)
        self.nodes[name] = d
        return d.start()

    def start(self, count, args=(), nginx=False, node_args=None, **kw):
        """node1 bootstraps; the others join through it. Returns once all agree on a leader.
        `node_args(name)`, if given, adds flags of each node's own (its certificate); `kw` goes
        to each Daemon (context, headers)."""
        def flags(name):
            return list(args) + (list(node_args(name)) if node_args else [])
        first = self.add("node1", flags("node1"), nginx=nginx, **kw)
        wait_until(lambda: first.get("/readyz").status == 200, what="node1 ready")
        for i in range(2, count + 1):
            self.add(f"node{i}", flags(f"node{i}"), join=first, nginx=nginx, **kw)
        self.wait_members(count)
        self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        """Every running node answers /readyz 200 (with nginx: its gateway knows the members)."""
        wait_until(lambda: all(d.get("/readyz").status == 200 for d in self.running()),
                   timeout=timeout, what="every node ready")

    def __getitem__(self, name):
        return self.nodes[name]

    def running(self):
        return [d for d in self.nodes.values() if d.running()]

    def wait_members(self, count, timeout=20):
        def all_see():
            for d in self.running():
                st = d.status()
                if len(st["members"]) != count or st["leader"] is None:
                    return False
            return True
        wait_until(all_see, timeout=timeout, what=f"{count} members everywhere")

    def leader(self, timeout=15):
        """The running node that leads, once every running node agrees."""
        def agreed():
            names = set()
            for d in self.running():
                st = d.status()
                names.add(st["leader"]["id"] if st["leader"] else None)
            if len(names) == 1 and None not in names:
                name = names.pop()
                if self.nodes[name].running():
                    return self.nodes[name]
            return None
        return wait_until(agreed, timeout=timeout, what="an agreed leader")

    def followers(self):
        lead = self.leader()
        return [d for d in self.running() if d is not lead]

    def wait_converged(self, timeout=15):
        def same():
            applied = {d.status()["applied_index"] for d in self.running()}
            commits = {d.status()["commit_index"] for d in self.running()}
            return len(applied) == 1 and applied == commits
        wait_until(same, timeout=timeout, what="all nodes applied the same index")

    def close(self):
        for d in self.nodes.values():
            d.kill()


class ClusterTest(unittest.TestCase):
    """A test case with a fresh working directory; every daemon it starts is killed at the end
    and, if the test failed, the tail of each daemon's log is printed."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="raftnginx-test-")
        self.cluster = Cluster(self.root)
        self.failed = False

    def _callTestMethod(self, method):
        try:
            super()._callTestMethod(method)
        except BaseException:
            self.failed = True
            raise

    def tearDown(self):
        self.cluster.close()
        if self.failed:
            for d in self.cluster.nodes.values():
                sys.stderr.write(f"\n----- {d.name} log -----\n{d.log_tail()}")
        shutil.rmtree(self.root, ignore_errors=True)

    def write(self, node, key, value, **kw):
        r = node.post("/key", {key: value}, **kw)
        self.assertEqual(r.status, 200, r)
        return r

    def assert_value(self, node, key, value, level="stale"):
        r = node.get(f"/key/{key}?level={level}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {key: value})
