"""The gateways' own configuration from the cluster's state: keys under nginx/ become files that
every node's nginx includes, checked by the nginx of the node that takes the write before they
enter the log (422 otherwise), and by each node's nginx again before it swaps them in; a node
whose nginx refuses them keeps its last good set and says so. Real nginx, real daemons."""
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import stat
import threading
import unittest

from cluster import ClusterTest, address, wait_until, SLOW

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "gateway")

# An nginx that refuses, in `nginx -t`, any set holding http/only-elsewhere.conf: a node whose
# nginx lacks a module the others have.
PICKY_NGINX = """#!/bin/sh
prev=""; conf=""; testing=0
for a in "$@"; do
  [ "$a" = "-t" ] && testing=1
  [ "$prev" = "-c" ] && conf="$a"
  prev="$a"
done
file="$(dirname "$conf")/cluster/http/only-elsewhere.conf"
if [ $testing = 1 ] && [ -e "$file" ]; then
  echo "nginx: [emerg] unknown directive \\"only_elsewhere\\" in $file:1" >&2
  exit 1
fi
exec %s "$@"
"""

HELLO = 'location = /hello { default_type text/plain; return 200 "hello from the cluster\\n"; }\n'
BLOCKLIST = {
    "nginx/maps/blocked.map": "127.0.0.2 1;\n",
    "nginx/http/blocked.conf":
        "map $remote_addr $cluster_blocked { default 0; include cluster/maps/blocked.map; }\n",
    "nginx/server/blocked.conf": 'if ($cluster_blocked) { return 403 "blocked\\n"; }\n',
}


def fetch(gateway, path, source="127.0.0.1", headers=None):
    """GET through a gateway from a source address of loopback's: (status, body)."""
    host, port = address(gateway)
    conn = http.client.HTTPConnection(host, port, timeout=5 * SLOW, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


class App(http.server.ThreadingHTTPServer):
    """The application behind the gateways: answers 200 "app <path>", and keeps the headers of
    every request it got."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(dict(self.headers))
                body = f"app {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"


def recipe(name, app):
    with open(os.path.join(RECIPES, name)) as f:
        return {k: v.replace("APP_ADDRESS", app.address()) for k, v in json.load(f).items()}


class GatewayFiles(ClusterTest):
    def start_cluster(self, count=3, wait_min="200ms", wait_max="2s", picky=None):
        """`count` nodes with nginx; the node named `picky` runs PICKY_NGINX."""
        script = os.path.join(self.root, "picky-nginx")
        with open(script, "w") as f:
            f.write(PICKY_NGINX % NGINX)
        os.chmod(script, os.stat(script).st_mode | stat.S_IEXEC)
        self.picky_script = script

        def node_args(name):
            return ["--nginx-binary", script] if name == picky else []
        self.cluster.start(count, args=["--nginx-wait-min", wait_min, "--nginx-wait-max", wait_max],
                           nginx=True, node_args=node_args)
        return self.cluster.leader()

    def served(self, node):
        return node.status()["gateway"]["files_index"]

    def wait_served(self, nodes, index):
        wait_until(lambda: all(self.served(n) >= index for n in nodes), timeout=20 * SLOW,
                   what=f"every gateway serving the files of index {index}")

    def put(self, node, key, body):
        return node.request("PUT", f"/key/{key}", body=body)

    def test_files_reach_every_gateway_after_nginx_checked_them(self):
        leader = self.start_cluster(picky="node3")
        nodes = self.cluster.running()
        # One write of several files: a map, the map block that reads it, a location using it.
        r = leader.post("/key", {**BLOCKLIST, "nginx/server/hello.conf": HELLO})
        self.assertEqual(r.status, 200, r)
        self.wait_served(nodes, int(r.header("X-Raft-Mod-Index")))
        for n in nodes:
            self.assertEqual(fetch(n.gateway, "/hello"), (200, "hello from the cluster\n"))
            self.assertEqual(fetch(n.gateway, "/hello", source="127.0.0.2"), (403, "blocked\n"))
            # The key-value API behind the gateway is still there.
            self.assertEqual(fetch(n.gateway, "/key/nginx/maps/blocked.map")[0], 200)

        # nginx refuses it on the node that takes it: 422 with nginx's words, nothing written.
        r = self.put(leader, "nginx/server/broken.conf", "location = /x { no_such_directive; }")
        self.assertEqual(r.status, 422, r)
        self.assertIn('unknown directive "no_such_directive" in server/broken.conf:1',
                      r.json()["error"])
        self.assertEqual(leader.get("/key/nginx/server/broken.conf").status, 404)
        # A file the others still need: removing the map breaks the map block.
        r = leader.request("DELETE", "/key/nginx/maps/blocked.map")
        self.assertEqual(r.status, 422, r)
        self.assertIn("http/blocked.conf", r.json()["error"])
        # The same through a transaction, and a delete_prefix that would take the map along.
        r = leader.post("/txn", {"success": [{"op": "delete_prefix", "prefix": "nginx/maps/"}]})
        self.assertEqual(r.status, 422, r)

        # Names are a strict grammar: nothing escapes the files' directory.
        for key in ["nginx/x.conf", "nginx/http/x.txt", "nginx/http/.conf", "nginx/http/a.b.conf",
                    "nginx/http/..%2F..%2Fescape.conf", "nginx/other/a.conf",
                    "nginx/http/a%20b.conf", "nginx/http/" + "a" * 65 + ".conf"]:
            r = self.put(leader, key, "# nothing\n")
            self.assertEqual(r.status, 400, f"{key}: {r}")
        r = leader.request("PUT", "/key/nginx/http/short.conf?ttl=10s", body="# nothing\n")
        self.assertEqual(r.status, 400, r)
        # What a file may say: nothing that names a file, a path or a port of the node (nginx
        # reads its conf as root), nothing of the gateway's own; quotes and escapes hide nothing.
        hostile = [
            ("http/log.conf", "access_log /tmp/written-by-nginx.log;"),
            ("http/quoted.conf", '"access_log" /tmp/x;'),
            ("http/escaped.conf", "acc\\ess_log /tmp/x;"),
            ("http/include.conf", "include /etc/passwd;"),
            ("http/temp.conf", "client_body_temp_path /etc/x;"),
            ("http/cert.conf", "ssl_certificate /etc/shadow;"),
            ("http/server.conf", "server { listen 127.0.0.1:22; }"),
            ("http/own.conf", "upstream raftnginx_member_0 { server 127.0.0.1:9; }"),
            ("server/alias.conf", "location /k { alias /; }"),
            ("server/unix.conf", "location /d { proxy_pass http://unix:/run/x.sock:/; }"),
            ("server/open.conf", "location /d { return 200;"),
            ("maps/shadow.map", "include /etc/shadow;"),
            # nginx reads '#' and quotes inside a word as plain characters: so does the filter.
            ("server/hash.conf", "add_header X a#; include /etc/shadow;\nadd_header Y b;"),
            ("server/quote.conf", "add_header X a'; root /; add_header Y b';"),
            ("server/upper.conf", "location /d { proxy_pass http://UNIX:/run/x.sock:/; }"),
            ("server/var.conf", "location /d { proxy_pass http://$arg_u; }"),
            ("server/try.conf", "location = /x { try_files /../../etc/passwd =404; }"),
            ("http/case.conf", "map $host $RAFTNGINX_request_key { default k; }"),
        ]
        for path, text in hostile:
            r = self.put(leader, "nginx/" + path, text)
            self.assertEqual(r.status, 422, f"{path}: {r}")
            self.assertIn("the gateway files are refused", r.json()["error"], path)
        # A map's keys are data: one that looks like a directive is still a key.
        r = self.put(leader, "nginx/maps/names.map", "default_log 1;\nroot_file 2;\n")
        self.assertEqual(r.status, 200, r)
        for n in nodes:
            prefix = os.path.join(n.data_dir, "nginx")
            self.assertFalse(os.path.exists(os.path.join(prefix, "escape.conf")))
            maps = os.path.join(prefix, "cluster", "maps")
            wait_until(lambda: sorted(os.listdir(maps)) == ["blocked.map", "names.map"],
                       timeout=20 * SLOW, what=f"names.map on {n.name}")
            self.assertEqual(sorted(os.listdir(os.path.join(prefix, "cluster", "http"))),
                             ["blocked.conf"])

        # A file the leader's nginx takes but node3's refuses: node3 keeps its last good files
        # and says which key, at which index, and what its nginx said.
        r = self.put(leader, "nginx/http/only-elsewhere.conf", "# fine here\n")
        self.assertEqual(r.status, 200, r)
        index = int(r.header("X-Raft-Mod-Index"))
        self.wait_served([self.cluster["node1"], self.cluster["node2"]], index)
        node3 = self.cluster["node3"]
        wait_until(lambda: "refused" in node3.status()["gateway"], timeout=20 * SLOW,
                   what="node3 refusing the files")
        refused = node3.status()["gateway"]["refused"]
        self.assertEqual(refused["key"], "nginx/http/only-elsewhere.conf")
        self.assertEqual(refused["index"], index)
        self.assertIn('unknown directive "only_elsewhere"', refused["error"])
        self.assertLess(self.served(node3), index)
        self.assertEqual(node3.metric("raftnginx_gateway_files_refused"), 1)
        self.assertEqual(fetch(node3.gateway, "/hello")[0], 200)  # still serving
        by_id = {m["id"]: m for m in leader.get("/nodes").json()}
        self.assertEqual(by_id["node3"]["gateway"]["refused"],
                         {"key": "nginx/http/only-elsewhere.conf", "index": index})
        self.assertNotIn("refused", by_id["node2"]["gateway"])
        # Once the file is gone, node3 serves the cluster's files again.
        r = leader.request("DELETE", "/key/nginx/http/only-elsewhere.conf")
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: "refused" not in node3.status()["gateway"], timeout=20 * SLOW,
                   what="node3 serving the cluster's files again")
        self.assertEqual(node3.metric("raftnginx_gateway_files_refused"), 0)

        # A restarted gateway starts with the cluster's files, and a node that joins later gets
        # them too.
        node2 = self.cluster["node2"]
        self.assertEqual(node2.stop(), 0)
        node2.start()
        wait_until(lambda: node2.get("/readyz").status == 200, what="node2 ready")
        self.assertEqual(fetch(node2.gateway, "/hello")[0], 200)
        node4 = self.cluster.add("node4", join=leader, nginx=True)
        self.cluster.wait_members(4)
        # While it catches up it reloads with each set it reaches (old workers may still take a
        # connection during a reload): wait for the last.
        self.wait_served([node4], self.served(leader))
        wait_until(lambda: fetch(node4.gateway, "/hello")[0] == 200 and
                   fetch(node4.gateway, "/hello", source="127.0.0.2") == (403, "blocked\n"),
                   timeout=20 * SLOW, what="node4's gateway serving the cluster's files")

    def test_the_recipes_guard_an_app_and_change_with_one_write(self):
        leader = self.start_cluster()
        nodes = self.cluster.running()
        app = App()
        self.addCleanup(app.server_close)
        self.addCleanup(app.shutdown)
        r = leader.post("/key", {**recipe("ip-blocklist.json", app), **recipe("api-keys.json", app)})
        self.assertEqual(r.status, 200, r)
        self.wait_served(nodes, int(r.header("X-Raft-Mod-Index")))

        def everywhere(path, expected, **kw):
            wait_until(lambda: all(fetch(n.gateway, path, **kw)[0] == expected for n in nodes),
                       timeout=10 * SLOW, what=f"{path} answering {expected} on every gateway")

        # The blocklist: one write blocks an address on every gateway, one write lets it in.
        everywhere("/app/x", 200, source="127.0.0.2")
        self.assertEqual(leader.request("PUT", "/key/sets/blocklist/127.0.0.2", body="").status,
                         200)
        everywhere("/app/x", 403, source="127.0.0.2")
        self.assertEqual(fetch(nodes[1].gateway, "/app/x"), (200, "app /app/x"))
        self.assertEqual(leader.request("DELETE", "/key/sets/blocklist/127.0.0.2").status, 200)
        everywhere("/app/x", 200, source="127.0.0.2")

        # API keys, stored as their SHA-256: none, a wrong one, a forged lookup header, the key
        # stored as it is rather than hashed: 403; a key once written: 200.
        def sha(text):
            return hashlib.sha256(text.encode()).hexdigest()

        key = {"X-Api-Key": "k-7f3a"}
        everywhere("/api/v1", 403)
        everywhere("/api/v1", 403, headers=key)
        everywhere("/api/v1", 403, headers={"X-Raft-Lookup-Key": "k-7f3a"})
        self.assertEqual(leader.request("PUT", "/key/sets/apikeys/k-7f3a", body="ci").status, 200)
        everywhere("/api/v1", 403, headers=key)
        self.assertEqual(leader.request("DELETE", "/key/sets/apikeys/k-7f3a").status, 200)
        self.assertEqual(leader.request("PUT", "/key/sets/apikeys/" + sha("k-7f3a"),
                                        body="ci").status, 200)
        everywhere("/api/v1", 200, headers=key)
        everywhere("/api/v1", 403, headers={"X-Raft-Lookup-Key": "k-7f3a"})
        # The API never sees the key.
        self.assertTrue(app.seen)
        self.assertFalse(any("X-Api-Key" in h or "x-api-key" in h for h in app.seen))
        # Keys expire like any other.
        r = leader.request("PUT", f"/key/sets/apikeys/{sha('short')}?ttl={3 * SLOW}s", body="")
        self.assertEqual(r.status, 200, r)
        everywhere("/api/v1", 200, headers={"X-Api-Key": "short"})
        everywhere("/api/v1", 403, headers={"X-Api-Key": "short"})

        # The lookup itself, on a daemon's own port: 204 or 403, nothing else said.
        r = leader.get("/check?set=apikeys&hash=sha256&key=k-7f3a")
        self.assertEqual((r.status, r.body), (204, ""))
        self.assertEqual(leader.get("/check?set=apikeys&key=" + sha("k-7f3a")).status, 204)
        self.assertEqual(leader.get("/check?set=apikeys&hash=md5&key=k-7f3a").status, 400)
        self.assertEqual(leader.get("/check?set=apikeys&key=nope").status, 403)
        self.assertEqual(leader.get("/check?set=apikeys&key=nope&absent").status, 204)
        self.assertEqual(leader.get("/check?set=../x&key=a").status, 400)
        self.assertEqual(leader.get("/check?set=apikeys").status, 403)
        # Hostile lookups: a key longer than any set holds, an oversized or unnamed set.
        self.assertEqual(leader.get("/check?set=apikeys&key=" + "k" * 5000).status, 403)
        self.assertEqual(leader.get("/check?set=" + "s" * 65 + "&key=a").status, 400)
        self.assertEqual(leader.get("/check?key=a").status, 400)

    def test_a_burst_of_changes_costs_each_gateway_at_most_two_reloads(self):
        leader = self.start_cluster(wait_min="1s", wait_max="60s")
        nodes = self.cluster.running()
        passes = {n.name: n.log_tail(10_000).count("pass nginx -t") for n in nodes}
        for i in range(100):
            r = self.put(leader, "nginx/server/burst.conf",
                         f'location = /burst {{ return 200 "{i}"; }}\n')
            self.assertEqual(r.status, 200, r)
        self.wait_served(nodes, int(r.header("X-Raft-Mod-Index")))
        for n in nodes:
            self.assertEqual(fetch(n.gateway, "/burst"), (200, "99"))
            reloads = n.log_tail(10_000).count("pass nginx -t") - passes[n.name]
            self.assertLessEqual(reloads, 2, n.name)
            self.assertGreaterEqual(reloads, 1, n.name)

        # nginx -t passes, but the running nginx will not take the reload (a shared zone that
        # changes its key): every gateway goes back to its last good files and says so.
        zone = "limit_req_zone {} zone=cluster_zone:1m rate=100r/s;\n"
        r = self.put(leader, "nginx/http/zone.conf", zone.format("$binary_remote_addr"))
        self.assertEqual(r.status, 200, r)
        good = int(r.header("X-Raft-Mod-Index"))
        self.wait_served(nodes, good)
        r = self.put(leader, "nginx/http/zone.conf", zone.format("$remote_addr"))
        self.assertEqual(r.status, 200, r)
        bad = int(r.header("X-Raft-Mod-Index"))
        for n in nodes:
            wait_until(lambda: "refused" in n.status()["gateway"], timeout=30 * SLOW,
                       what=f"{n.name} rolling the reload back")
            st = n.status()["gateway"]
            self.assertEqual(st["refused"]["index"], bad, st)
            self.assertIn("did not take the reload", st["refused"]["error"])
            self.assertGreaterEqual(st["files_index"], good, st)
            self.assertLess(st["files_index"], bad, st)
        self.cluster.wait_ready(timeout=30 * SLOW)
        self.assertEqual(fetch(nodes[0].gateway, "/burst"), (200, "99"))


if __name__ == "__main__":
    unittest.main()
