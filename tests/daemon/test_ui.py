"""The status page (/ui/) in a real browser: headless Chromium, driven through ChromeDriver's
WebDriver protocol (plain HTTP, from the standard library). It loads the page through a
follower's nginx, sees 3 members and the leader, then the leader is killed and the page names the
new one within a few seconds. Screenshots go to the test's directory, or to docs/img/ (which the
README shows) with RAFTNGINX_UPDATE_SCREENSHOTS=1."""
import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import unittest
import urllib.request

from cluster import SLOW, ClusterTest, free_port, request, wait_until

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium")
DOCS_IMG = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img")


class Browser:
    """One ChromeDriver and its headless Chromium session; everything it started is killed with
    its process group when closed."""

    def __init__(self, root):
        self.port = free_port()
        log = open(os.path.join(root, "chromedriver.log"), "w")
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.session = None
        try:
            wait_until(lambda: self._ready(), timeout=20, what="chromedriver up")
            # The profile in the test's directory, which goes with it.
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                     "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000", "--no-first-run",
                         "--disable-extensions", f"--user-data-dir={os.path.join(root, 'chrome')}"]}}}}
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _ready(self):
        try:
            return self._call("GET", "/status")["ready"]
        except OSError:
            return False

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                   method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=60 * SLOW) as answer:
            return json.loads(answer.read())["value"]

    def open(self, url):
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script):
        return self._call("POST", f"/session/{self.session}/execute/sync",
                          {"script": script, "args": []})

    def screenshot(self, path):
        png = base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return png

    def close(self):
        try:
            if self.session is not None:
                self._call("DELETE", f"/session/{self.session}")
        except Exception:  # whatever happened, the processes go
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


# What the page shows, read from its DOM.
PAGE = """
const rows = [...document.querySelectorAll('#members tr')];
return {
  leader: document.getElementById('leader').textContent,
  cluster: document.getElementById('cluster-id').textContent,
  updated: document.getElementById('updated').textContent,
  members: rows.map(r => ({id: r.dataset.member, role: r.cells[1].textContent,
                           reachable: r.cells[7].textContent})),
  charted: rates.data.datasets[0].data.filter(p => p.y > 0).length >= 5 &&
           rates.data.datasets[1].data.filter(p => p.y > 0).length >= 5 &&
           latency.data.datasets[1].data.some(p => p.y > 0),
  events: document.querySelectorAll('#events li').length,
};
"""


def page_until(browser, condition, timeout, what):
    """The page as PAGE reads it, once `condition` holds of it; on timeout, says what it showed."""
    shown = {}

    def check():
        shown["page"] = browser.run(PAGE)
        return shown["page"] if condition(shown["page"]) else None
    try:
        return wait_until(check, timeout=timeout, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; the page showed {shown.get('page')}") from None


@unittest.skipUnless(CHROMEDRIVER and CHROMIUM, "chromium and chromium-driver are not installed")
class StatusPage(ClusterTest):
    def shots_dir(self):
        if os.environ.get("RAFTNGINX_UPDATE_SCREENSHOTS") == "1":
            os.makedirs(DOCS_IMG, exist_ok=True)
            return DOCS_IMG
        return self.root

    def test_the_page_shows_the_members_and_follows_a_new_leader(self):
        c = self.cluster.start(3, nginx=True)
        viewer = c.followers()[0]  # the member whose nginx serves the page stays up
        # Traffic for the charts (five seconds of it before the first screenshot): writes
        # through the viewer's nginx, reads too.
        stop = threading.Event()

        def traffic():
            n = 0
            while not stop.is_set():
                try:
                    request(viewer.gateway, "POST", "/key", {f"k{n % 50}": str(n)})
                    request(viewer.gateway, "GET", f"/key/k{n % 50}")
                except OSError:
                    pass  # the leader is being killed: the next one takes the writes
                n += 1
                stop.wait(0.005)  # steady, not all the CPU the browser needs too
        writer = threading.Thread(target=traffic)
        writer.start()
        self.addCleanup(writer.join)
        self.addCleanup(stop.set)

        # The page and its script are served through nginx, from the binary.
        page = request(viewer.gateway, "GET", "/ui/")
        self.assertEqual(page.status, 200)
        self.assertIn("text/html", page.header("Content-Type"))
        self.assertEqual(request(viewer.gateway, "GET", "/ui/chart.js").status, 200)

        browser = Browser(self.root)
        self.addCleanup(browser.close)
        browser.open(f"http://{viewer.gateway}/ui/")
        shown = page_until(
            browser, lambda p: len(p["members"]) == 3 and p["leader"] == c.leader().name
            and all(m["reachable"] == "yes" for m in p["members"]) and p["charted"],
            timeout=20, what="3 members, the leader and charts on the page")
        self.assertEqual(shown["cluster"], "raft-nginx")
        self.assertEqual({m["id"] for m in shown["members"]}, {"node1", "node2", "node3"})
        leader = c.leader()
        if leader is viewer:  # leadership moved under the load: the page must outlive the kill
            self.assertEqual(viewer.post("/leader/transfer").status, 200)
            leader = wait_until(lambda: (lambda l: l if l is not viewer else None)(c.leader()),
                                what="leadership away from the viewer")
            shown = page_until(browser, lambda p: p["leader"] == leader.name, timeout=10,
                               what="the page names the leader")
        self.assertEqual(shown["leader"], leader.name)
        self.assertEqual([m["id"] for m in shown["members"] if m["role"] == "leader"],
                         [leader.name])
        self.assertGreaterEqual(shown["events"], 2)  # the election, the members joining
        png = browser.screenshot(os.path.join(self.shots_dir(), "ui-cluster.png"))
        self.assertTrue(png.startswith(b"\x89PNG") and len(png) > 20_000)

        leader.kill()
        killed_at = time.monotonic()
        after = page_until(browser, lambda p: p["leader"] not in (leader.name, "none"),
                           timeout=10, what="the page names a new leader")
        took = time.monotonic() - killed_at
        print(f"\nthe page named the new leader {after['leader']} {took:.1f} s after the "
              f"leader was killed", flush=True)
        self.assertLess(took, 5 * SLOW)
        page_until(browser, lambda p: {m["id"]: m["reachable"] for m in p["members"]}
                   .get(leader.name) == "no", timeout=10, what="the killed leader shown unreachable")
        browser.screenshot(os.path.join(self.shots_dir(), "ui-new-leader.png"))


if __name__ == "__main__":
    unittest.main()
