"""`raft-nginx kv` and `raft-nginx cluster` as an operator's shell uses them: through any member
(a dead endpoint skipped, a follower's redirect followed), both output forms, every documented
exit code, transactions from standard input, membership changes, and a secured cluster reached
with a CA and a token from the environment."""
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import unittest

from cluster import BINARY, SLOW, Certs, ClusterTest, free_port, wait_until


class Cli(ClusterTest):
    def cli(self, *args, endpoints=None, stdin=None, env=None, expect=0):
        environment = dict(os.environ, **(env or {}))
        if endpoints is not None:
            environment["RAFTNGINX_ENDPOINTS"] = ",".join(endpoints)
        r = subprocess.run([BINARY, *args], capture_output=True, text=True, input=stdin,
                           env=environment, timeout=60 * SLOW)
        self.assertEqual(r.returncode, expect, f"{args}: {r.stdout}{r.stderr}")
        return r

    def test_kv_through_any_member_with_every_exit_code(self):
        c = self.cluster.start(3, args=["--fsm", "memory"])
        follower = c.followers()[0]
        # The first endpoint is down, the second a follower: the write reaches the leader.
        via = [f"127.0.0.1:{free_port()}", follower.http]
        out = self.cli("kv", "put", "app/a", "one two", endpoints=via).stdout
        self.assertRegex(out, r"^OK \(index \d+\)\n$")
        self.cli("kv", "put", "app/b", "2", "--ttl", "1h", endpoints=via)
        self.cli("kv", "put", "other", "x", endpoints=via)
        for node in c.nodes.values():
            wait_until(lambda: node.get("/key/app/a").status == 200, what="replicated")
            self.assertEqual(self.cli("kv", "get", "app/a", endpoints=[node.http]).stdout,
                             "one two\n")
        got = json.loads(self.cli("kv", "get", "app/a", "-o", "json", endpoints=via).stdout)
        self.assertEqual((got["key"], got["value"], got["version"]), ("app/a", "one two", 1))
        mod = got["mod_index"]
        self.assertIsInstance(mod, int)

        lin = ["--level", "linearizable"]
        table = self.cli("kv", "list", "app/", *lin, endpoints=via).stdout.splitlines()
        self.assertEqual(table[0].split(), ["KEY", "MOD_INDEX", "VERSION", "VALUE"])
        self.assertEqual([line.split()[0] for line in table[1:]], ["app/a", "app/b"])
        self.assertTrue(table[1].endswith("one two"), table[1])
        rows = json.loads(self.cli("kv", "list", "app/", "-o", "json", *lin,
                                   endpoints=via).stdout)
        self.assertEqual([r["key"] for r in rows], ["app/a", "app/b"])
        self.assertIn("expires_at", rows[1])
        page = self.cli("kv", "list", "--keys", "--limit", "1", *lin, endpoints=via)
        self.assertEqual(page.stdout, "app/a\n")
        self.assertIn("(more: --after app/a)", page.stderr)
        self.assertEqual(self.cli("kv", "list", "--keys", "--after", "app/a", *lin,
                                  endpoints=via).stdout, "app/b\nother\n")

        missing = self.cli("kv", "get", "nope", endpoints=via, expect=3)
        self.assertIn("404", missing.stderr)
        stale = self.cli("kv", "put", "app/a", "new", "--cas", str(mod - 1), endpoints=via,
                         expect=4)
        self.assertIn(f"mod_index is {mod}", stale.stderr)
        self.cli("kv", "put", "app/a", "new", "--cas", str(mod), endpoints=via)
        self.cli("kv", "put", "app/new", "v", "--cas", "0", endpoints=via)
        self.cli("kv", "put", "app/new", "v", "--cas", "0", endpoints=via, expect=4)
        self.cli("kv", "del", "other", endpoints=via)
        self.cli("kv", "get", "other", *lin, endpoints=via, expect=3)
        bad = self.cli("kv", "put", "k", "v", "--ttl", "soon", endpoints=via, expect=1)
        self.assertIn("400", bad.stderr)
        self.cli("kv", "get", endpoints=via, expect=2)
        self.assertIn("--timeout", self.cli("kv", "get", "k", "--timeout", "never",
                                            endpoints=via, expect=2).stderr)
        self.cli("kv", "put", "k", "v", "--cas", "", endpoints=via, expect=2)
        down = self.cli("kv", "get", "app/a", "--timeout", "1s", endpoints=via[:1], expect=5)
        self.assertIn(via[0], down.stderr)

        # Any bytes in a key; a value that would forge a line or drive the terminal is escaped
        # in tables, exact in JSON.
        odd_key, odd_value = "a b?c#d%e+f&g=h/\u00fc", "line1\nfake 2\x1b[31m"
        self.cli("kv", "put", odd_key, odd_value, endpoints=via)
        got = json.loads(self.cli("kv", "get", odd_key, "-o", "json", *lin, endpoints=via).stdout)
        self.assertEqual((got["key"], got["value"]), (odd_key, odd_value))
        shown = self.cli("kv", "get", odd_key, *lin, endpoints=via).stdout
        self.assertEqual(shown, "line1\\x0afake 2\\x1b[31m\n")
        # An option after the verb does not take the verb's word.
        self.assertEqual(self.cli("kv", "get", "--endpoints", via[1], "app/a").stdout, "new\n")

    def test_watch_moves_to_the_next_endpoint_missing_and_repeating_nothing(self):
        c = self.cluster.start(3, args=["--fsm", "memory"])
        leader = c.leader()
        first, second = c.followers()
        for i in range(5):
            self.cli("kv", "put", f"w/{i}", str(i), endpoints=[leader.http])
        self.cli("kv", "put", "elsewhere", "x", endpoints=[leader.http])
        watch = subprocess.Popen([BINARY, "kv", "watch", "w/", "--from", "1", "--count", "10",
                                  "-o", "json", "--endpoints", f"{first.http},{second.http}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(watch.stderr.close)
        self.addCleanup(watch.stdout.close)
        self.addCleanup(lambda: watch.poll() is None and watch.kill())
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in watch.stdout],
                         daemon=True).start()

        def events(n):
            got = []
            while len(got) < n:
                message = json.loads(lines.get(timeout=30 * SLOW))
                if "index" in message:
                    got.append(message)
            return got
        seen = events(5)
        # The member the watch follows goes away while the watch is stopped, and changes are
        # made meanwhile: resuming "from now" would miss them.
        watch.send_signal(signal.SIGSTOP)
        first.kill()
        self.cli("kv", "put", "w/5", "5", endpoints=[leader.http])
        three = {"success": [{"op": "put", "key": f"w/{i}", "value": str(i)} for i in (6, 7, 8)]}
        self.cli("kv", "txn", stdin=json.dumps(three), endpoints=[leader.http])
        watch.send_signal(signal.SIGCONT)
        self.cli("kv", "put", "w/9", "9", endpoints=[leader.http])
        seen += events(5)
        self.assertEqual(watch.wait(timeout=30 * SLOW), 0, watch.stderr.read())
        self.assertEqual([e["key"] for e in seen], [f"w/{i}" for i in range(10)])
        self.assertEqual([e["type"] for e in seen], ["put"] * 10)
        indexes = [e["index"] for e in seen]
        self.assertEqual(indexes[6], indexes[8])  # one transaction, one index
        self.assertEqual(indexes, sorted(indexes))
        self.assertEqual(len({(e["index"], e["key"]) for e in seen}), 10)

        table = self.cli("kv", "watch", "w/", "--from", "1", "--count", "2",
                         endpoints=[second.http]).stdout.splitlines()
        self.assertEqual([line.split()[1:] for line in table], [["put", "w/0", "0"],
                                                                ["put", "w/1", "1"]])
        gone = self.cli("kv", "watch", "w/", "--timeout", "1s", "--endpoints", first.http,
                        expect=5)
        self.assertIn(first.http, gone.stderr)

    def test_a_write_whose_answer_never_comes_exits_6(self):
        """A member that takes the request and closes without answering: a key-value write is
        sent again (its Idempotency-Key makes that safe) until --timeout, then exit 6; a
        membership call is not sent again."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            address = f"127.0.0.1:{listener.getsockname()[1]}"
            taken = []

            def swallow():
                while True:
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        return
                    with conn:
                        taken.append(conn.recv(65536))
            threading.Thread(target=swallow, daemon=True).start()
            lost = self.cli("kv", "put", "k", "v", "--timeout", "1s", endpoints=[address],
                            expect=6)
            self.assertIn("may have applied", lost.stderr)
            keys = {line.split(b":", 1)[1].strip() for r in taken for line in r.split(b"\r\n")
                    if line.lower().startswith(b"idempotency-key:")}
            self.assertGreater(len(taken), 1)
            self.assertEqual(len(keys), 1)  # every attempt the same write
            before = len(taken)
            self.cli("cluster", "remove", "node9", endpoints=[address], expect=6)
            self.assertEqual(len(taken), before + 1)

    def answering(self, answer):
        """A hostile member: every request gets `answer` (raw bytes, or a function of the
        member's own address that makes them), then the connection closes. Returns its
        address."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        self.addCleanup(listener.close)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        if callable(answer):
            answer = answer(address)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)
        threading.Thread(target=serve, daemon=True).start()
        return address

    def test_hostile_answers_neither_hang_crash_nor_reach_the_terminal_raw(self):
        def reply(status, body, headers=""):
            return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}"
                    f"Connection: close\r\n\r\n").encode() + body

        garbage = self.answering(reply("200 OK", b"not json \x1b[2J"))
        self.assertEqual(self.cli("kv", "get", "k", endpoints=[garbage]).stdout,
                         "not json \\x1b[2J\n")
        members = self.answering(reply("200 OK", json.dumps(
            [1, "x", {"id": "\x1b[2Jevil\nnode9", "voter": "yes"}]).encode()))
        table = self.cli("cluster", "members", endpoints=[members]).stdout.splitlines()
        self.assertEqual(len(table), 2)
        self.assertTrue(table[1].startswith("\\x1b[2Jevil\\x0anode9  learner"), table[1])
        # A redirect to itself, forever: bounded, nothing done.
        loop = self.answering(lambda me: reply("307 Temporary Redirect", b"",
                                               f"X-Raft-Leader: {me}\r\n"))
        self.cli("kv", "get", "k", "--timeout", "1s", endpoints=[loop], expect=5)
        # A watch whose member answers with nonsense: no index taken from it, no event shown.
        nonsense = self.answering(reply("200 OK", b'garbage\n{"progress": "12"}\n'
                                        b'{"index": "x", "type": "put", "key": "k"}\n'
                                        b'{"index": -3, "type": "put", "key": "k"}\n',
                                        "X-Raft-Index: abc\r\n"))
        watched = self.cli("kv", "watch", "--timeout", "1s", endpoints=[nonsense], expect=5)
        self.assertEqual(watched.stdout, "")

    def test_transactions_from_standard_input(self):
        c = self.cluster.start(1, args=["--fsm", "memory"])
        at = [c["node1"].http]
        self.cli("kv", "put", "t", "1", endpoints=at)
        mod = json.loads(self.cli("kv", "get", "t", "-o", "json", endpoints=at).stdout)["mod_index"]
        body = {"compare": [{"key": "t", "mod_index": mod}],
                "success": [{"op": "put", "key": "t", "value": "2"}],
                "failure": [{"op": "get", "key": "t"}]}
        done = json.loads(self.cli("kv", "txn", stdin=json.dumps(body), endpoints=at).stdout)
        self.assertTrue(done["succeeded"])
        again = self.cli("kv", "txn", "-", stdin=json.dumps(body), endpoints=at, expect=4)
        self.assertFalse(json.loads(again.stdout)["succeeded"])
        self.assertEqual(self.cli("kv", "get", "t", endpoints=at).stdout, "2\n")
        self.cli("kv", "txn", stdin="{not json", endpoints=at, expect=1)
        self.cli("kv", "txn", os.path.join(self.root, "absent.json"), endpoints=at, expect=2)

    def test_cluster_members_promote_transfer_and_remove(self):
        c = self.cluster.start(3, args=["--fsm", "memory"])
        leader = c.leader()
        learner = c.add("node4", ["--fsm", "memory", "--learner"], join=leader)
        c.wait_members(4)
        at = [c.followers()[0].http]
        members = self.cli("cluster", "members", endpoints=at).stdout.splitlines()
        self.assertEqual(members[0].split(), ["ID", "ROLE", "HTTP", "RAFT", "REACHABLE"])
        roles = {line.split()[0]: line.split()[1] for line in members[1:]}
        self.assertEqual(roles, {"node1": "voter", "node2": "voter", "node3": "voter",
                                 "node4": "learner"})
        status = dict(line.split(None, 1) for line in
                      self.cli("cluster", "status", endpoints=at).stdout.splitlines()[1:])
        self.assertEqual(status["leader"], leader.name)
        self.assertEqual(json.loads(self.cli("cluster", "status", "-o", "json",
                                             endpoints=at).stdout)["leader"]["id"], leader.name)

        self.cli("cluster", "promote", "node4", endpoints=at)
        wait_until(lambda: learner.status()["role"] in ("follower", "leader"), what="promoted")
        self.cli("cluster", "promote", "node4", endpoints=at, expect=1)  # 409: a voter already
        self.cli("cluster", "promote", "node9", endpoints=at, expect=3)
        target = next(n for n in ("node2", "node3") if n != leader.name)
        self.cli("cluster", "transfer", "--endpoints", at[0], target)
        wait_until(lambda: c[target].status()["role"] == "leader", what="transferred")
        self.cli("cluster", "remove", "node4", endpoints=at)
        wait_until(lambda: "node4" not in self.cli("cluster", "members", endpoints=at).stdout,
                   what="node4 removed")

    def test_a_secured_cluster_with_a_ca_and_a_token_from_the_environment(self):
        certs = Certs.make(os.path.join(self.root, "certs"), ["node1"])
        c = self.cluster.start(1, args=certs.flags("node1"), context=certs.context(),
                               headers=certs.bearer())
        at = [c["node1"].http]
        secured = {"RAFTNGINX_CACERT": certs.ca, "RAFTNGINX_TOKEN": certs.token}
        self.cli("kv", "put", "s", "v", endpoints=at, env=secured)
        self.assertEqual(self.cli("kv", "get", "s", endpoints=at, env=secured).stdout, "v\n")
        anonymous = self.cli("kv", "get", "s", endpoints=at, env={"RAFTNGINX_CACERT": certs.ca},
                             expect=1)
        self.assertIn("401", anonymous.stderr)
        other = Certs.make(os.path.join(self.root, "other"), ["x"])
        self.cli("kv", "get", "s", endpoints=at, expect=5,
                 env={"RAFTNGINX_CACERT": other.ca, "RAFTNGINX_TOKEN": certs.token})
        self.cli("kv", "get", "s", "--cert", certs.pair("admin")[0], endpoints=at, expect=2,
                 env=secured)
        self.cli("kv", "get", "s", endpoints=["https://" + at[0]],
                 env={"RAFTNGINX_TOKEN": certs.token}, expect=2)
        self.cli("kv", "get", "s", endpoints=["http://" + at[0]], env=secured, expect=2)
        clear = self.cli("kv", "get", "s", endpoints=["node.invalid:11000"],
                         env={"RAFTNGINX_TOKEN": certs.token}, expect=2)
        self.assertIn("refusing to send the token unencrypted", clear.stderr)
        self.cli("kv", "get", "s", "--cluster-name", "", endpoints=at, env=secured, expect=2)

    def test_help_names_every_verb_and_the_exit_codes(self):
        for command, verbs in (("kv", ["get", "put", "del", "list", "watch", "txn"]),
                               ("cluster", ["status", "members", "join", "remove", "promote",
                                            "transfer"])):
            out = self.cli(command, "--help").stdout
            self.assertIn("Exit codes", out)
            for verb in verbs:
                self.assertIn(verb, out)
                self.assertIn("Usage", self.cli(command, verb, "--help").stdout)


if __name__ == "__main__":
    unittest.main()
