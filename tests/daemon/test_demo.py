"""`make demo` as a user runs it: scripts/demo.sh starts three nodes with their nginx, the
walkthrough works through any node's nginx, and Ctrl-C stops everything cleanly with exit 0."""
import os
import signal
import socket
import subprocess
import tempfile
import threading
import unittest

from cluster import BINARY, SLOW, request, wait_until

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
        offset = free_offset()
        data = tempfile.mkdtemp(prefix="raftnginx-demo-")
        env = dict(os.environ, RAFTNGINX_BIN=BINARY, DEMO_DATA=data, DEMO_OFFSET=str(offset))
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
            gateways = [f"127.0.0.1:{8000 + 100 * i + offset}" for i in (1, 2, 3)]
            r = request(gateways[2], "POST", "/key", body={"user1": "batman"})
            self.assertEqual(r.status, 200, r)
            for g in gateways:
                wait_until(lambda: request(g, "GET", "/key/user1").status == 200,
                           what="the write on every node")
                self.assertEqual(request(g, "GET", "/key/user1").json(), {"user1": "batman"})
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
