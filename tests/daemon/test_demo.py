"""`make demo` and `make demo-secure` as a user runs them: scripts/demo.sh starts three nodes
with their nginx, the walkthrough works through any node's nginx (over HTTPS with a token when
secured), and Ctrl-C stops everything cleanly with exit 0."""
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

from cluster import BINARY, SLOW, wait_until
from cluster import request as plain_request


def request(address, method, path, tls=None, headers=None, **kw):
    """One HTTP or HTTPS request (tls: an ssl.SSLContext) through the demo's nginx."""
    if tls is None:
        return plain_request(address, method, path, headers=headers, **kw)
    import http.client
    import json
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=10 * SLOW)
    try:
        body = kw.get("body")
        if isinstance(body, dict):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read().decode(errors="replace")

        class Reply:
            status = r.status

            def json(self):
                return json.loads(data)

            def __repr__(self):
                return f"Reply({r.status}, {data[:200]!r})"
        return Reply()
    finally:
        conn.close()

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_offset():
    """An offset that puts all nine demo ports on free ports (checked now)."""
    for offset in range(7000, 19000, 137):
        ports = [base + i + offset for i in (1, 2, 3) for base in (11000, 12000)]
        ports += [8000 + 100 * i + offset for i in (1, 2, 3)]
        if all(port_free(p) for p in ports):
            return offset
    raise RuntimeError("no free ports for the demo")


def port_free(port):
    """Nothing listens there (connections lingering in TIME_WAIT do not count, as for the
    daemons, which bind with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Demo(unittest.TestCase):
    def test_walkthrough_then_ctrl_c_stops_cleanly(self):
        self.run_demo(secure=False)

    def test_secured_walkthrough_then_ctrl_c_stops_cleanly(self):
        self.run_demo(secure=True)

    def run_demo(self, secure):
        offset = free_offset()
        data = tempfile.mkdtemp(prefix="raftnginx-demo-")
        env = dict(os.environ, RAFTNGINX_BIN=BINARY, DEMO_DATA=data, DEMO_OFFSET=str(offset),
                   DEMO_SECURE="1" if secure else "0")
        # Its own process group, as a terminal gives it: Ctrl-C reaches the script and every node.
        proc = subprocess.Popen([os.path.join(ROOT, "scripts", "demo.sh")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        lines = []
        ready = threading.Event()

        def read():
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("demo: ready"):
                    ready.set()

        reader = threading.Thread(target=read)
        reader.start()
        try:
            self.assertTrue(ready.wait(60 * SLOW), "".join(lines))
            gateways = [f"localhost:{8000 + 100 * i + offset}" for i in (1, 2, 3)]
            kw = {}
            if secure:
                pki = os.path.join(data, "pki")
                with open(os.path.join(pki, "admin.token")) as f:
                    token = f.read().strip()
                kw = {"tls": ssl.create_default_context(cafile=os.path.join(pki, "ca.pem")),
                      "headers": {"Authorization": f"Bearer {token}"}}
                self.assertEqual(request(gateways[0], "GET", "/key/user1", tls=kw["tls"]).status,
                                 401)
            r = request(gateways[2], "POST", "/key", body={"user1": "batman"}, **kw)
            self.assertEqual(r.status, 200, r)
            for g in gateways:
                wait_until(lambda: request(g, "GET", "/key/user1", **kw).status == 200,
                           what="the write on every node")
                self.assertEqual(request(g, "GET", "/key/user1", **kw).json(), {"user1": "batman"})
            # The gateways run on the cluster's state: one write, every nginx serves it.
            hello = 'location = /hello { return 200 "hello from every gateway\\n"; }'
            r = request(gateways[0], "PUT", "/key/nginx/server/hello.conf", body=hello, **kw)
            self.assertEqual(r.status, 200, r)
            for g in gateways:
                wait_until(lambda: request(g, "GET", "/hello", tls=kw.get("tls")).status == 200,
                           timeout=20 * SLOW, what=f"/hello through {g}")
            r = request(gateways[1], "PUT", "/key/nginx/server/typo.conf",
                        body="location /t { retrun 200; }", **kw)
            self.assertEqual(r.status, 422, r)
            os.killpg(proc.pid, signal.SIGINT)
            self.assertEqual(proc.wait(timeout=30 * SLOW), 0, "".join(lines))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join()
        output = "".join(lines)
        self.assertIn("demo: the cluster stopped", output)
        self.assertNotIn("exited on its own", output)
        for g in gateways:
            self.assertTrue(port_free(int(g.rsplit(":", 1)[1])), output)


if __name__ == "__main__":
    unittest.main()
