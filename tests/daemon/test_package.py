"""The Debian package as an operator installs it: scripts/make-deb.sh builds it from the binary
under test; its metadata, files, conffiles, unit and man page are what they should be; and the
unit's ExecStart, run from the package's files (systemd cannot run here), reports READY=1 on
NOTIFY_SOCKET once the node answers /readyz, serves, and reports STOPPING=1 on SIGTERM."""
import configparser
import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import unittest

from cluster import BINARY, SLOW, free_port, request, wait_until

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UNIT = "lib/systemd/system/raft-nginx.service"


def run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True, **kw)


class Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="raftnginx-deb-")
        cls.deb = run(os.path.join(ROOT, "scripts", "make-deb.sh"), BINARY,
                      os.path.join(cls.work, "out")).stdout.strip()
        cls.root = os.path.join(cls.work, "root")
        run("dpkg-deb", "-x", cls.deb, cls.root)
        cls.control = os.path.join(cls.work, "control")
        run("dpkg-deb", "-e", cls.deb, cls.control)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.work], check=False)

    def field(self, name):
        return run("dpkg-deb", "-f", self.deb, name).stdout.strip()

    def unit(self):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str
        parser.read(os.path.join(self.root, UNIT))
        return parser

    def test_metadata_names_the_version_and_what_it_needs(self):
        version = run(BINARY, "--version").stdout.split()[1]
        self.assertEqual(self.field("Package"), "raft-nginx")
        self.assertEqual(self.field("Version"), version)
        self.assertTrue(self.deb.endswith(f"raft-nginx_{version}_"
                                          f"{run('dpkg', '--print-architecture').stdout.strip()}"
                                          ".deb"), self.deb)
        depends = self.field("Depends")
        for package in ("librocksdb", "libssl3", "adduser", "procps"):
            self.assertIn(package, depends)
        self.assertIn("nginx", self.field("Recommends"))

    def test_files_conffiles_and_maintainer_scripts(self):
        listed = run("dpkg-deb", "-c", self.deb).stdout
        for path in ("./usr/bin/raft-nginx", "./" + UNIT, "./etc/raft-nginx/config.json",
                     "./etc/default/raft-nginx", "./usr/share/man/man1/raft-nginx.1.gz",
                     "./usr/share/doc/raft-nginx/copyright"):
            self.assertIn(path, listed)
        for line in listed.splitlines():  # whatever the builder's umask: readable by all
            mode = line.split()[0]
            self.assertEqual(mode[7], "r", line)
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/raft-nginx/config.json",
                                                "/etc/default/raft-nginx"])
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            run("sh", "-n", path)

    def test_the_unit_runs_the_packaged_binary_as_a_notify_service(self):
        service = self.unit()["Service"]
        self.assertEqual(service["Type"], "notify")
        self.assertEqual(service["User"], "raft-nginx")
        self.assertEqual(service["StateDirectory"], "raft-nginx")
        self.assertEqual(service["KillMode"], "mixed")  # nginx hears from the daemon
        self.assertEqual(service["AmbientCapabilities"], "CAP_NET_BIND_SERVICE")
        program = shlex.split(service["ExecStart"])[0]
        self.assertTrue(os.access(os.path.join(self.root, program.lstrip("/")), os.X_OK), program)
        self.assertEqual(self.unit()["Install"]["WantedBy"], "multi-user.target")

    def test_the_man_page_comes_from_help(self):
        page = subprocess.run(["zcat", os.path.join(self.root, "usr/share/man/man1/raft-nginx.1.gz")],
                              capture_output=True, text=True, check=True).stdout
        self.assertIn('.TH RAFT-NGINX "1"', page)
        for flag in ("election", "fsm", "nginx"):
            self.assertIn(flag, page)

    def start_as_the_unit_does(self, notify_socket, **config_changes):
        """Runs ExecStart with the package's files, its config pointed at a fresh directory and
        free ports (and `config_changes` made); returns the process, the node's HTTP address and
        its log."""
        with open(os.path.join(self.root, "etc/raft-nginx/config.json")) as f:
            config = json.load(f)
        config.update(config_changes)
        data = tempfile.mkdtemp(dir=self.work)
        http = f"127.0.0.1:{free_port()}"
        config["raft_dir"] = data
        config["nodes"][0].update(address=http, raft_bind=f"127.0.0.1:{free_port()}")
        config_path = os.path.join(data, "config.json")
        with open(config_path, "w") as f:
            json.dump(config, f)
        env_file = {}
        with open(os.path.join(self.root, "etc/default/raft-nginx")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    name, value = line.strip().split("=", 1)
                    # systemd unquotes the value; an unbraced $NAME then splits it on spaces
                    env_file[name] = " ".join(shlex.split(value)).split()
        argv = []
        for word in shlex.split(self.unit()["Service"]["ExecStart"]):
            if word.startswith("$"):
                argv += env_file.get(word[1:], [])
            elif word == "/etc/raft-nginx/config.json":
                argv.append(config_path)
            elif word.startswith("/"):
                argv.append(os.path.join(self.root, word.lstrip("/")))
            else:
                argv.append(word)
        log = os.path.join(data, "daemon.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, NOTIFY_SOCKET=notify_socket))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc, http, log

    @staticmethod
    def next_state(listener, wanted):
        """The assignments of the datagrams received until one sets `wanted` (e.g. READY),
        that one included."""
        said = []
        while True:
            lines = listener.recv(4096).decode().split("\n")
            said += lines
            if any(line.startswith(wanted + "=") for line in lines):
                return said

    def test_exec_start_reports_ready_serves_and_reports_stopping(self):
        path = os.path.join(self.work, "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.settimeout(30 * SLOW)
            proc, http, _ = self.start_as_the_unit_does(path)
            said = self.next_state(listener, "READY")
            self.assertEqual(said[-2:], ["READY=1", "STATUS=ready"])
            self.assertTrue(all(line.startswith("STATUS=") for line in said[:-2]), said)
            self.assertEqual(request(http, "GET", "/readyz").status, 200)
            self.assertEqual(request(http, "POST", "/key", body=json.dumps({"k": "v"})).status,
                             200)
            self.assertEqual(request(http, "GET", "/key/k").json(), {"k": "v"})
            proc.send_signal(signal.SIGTERM)
            self.assertIn("STOPPING=1", self.next_state(listener, "STOPPING"))
            self.assertEqual(proc.wait(timeout=30 * SLOW), 0)

    def test_a_node_that_cannot_be_ready_says_why_and_never_ready(self):
        """A node told to join a member that is not there: it serves, but knows no leader."""
        path = os.path.join(self.work, "notify-unready.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.settimeout(30 * SLOW)
            proc, http, _ = self.start_as_the_unit_does(
                path, single_node=False, server={"address": f"127.0.0.1:{free_port()}"})
            said = self.next_state(listener, "STATUS")
            self.assertEqual(said, ["STATUS=no leader is known"])
            self.assertEqual(request(http, "GET", "/readyz").status, 503)
            proc.send_signal(signal.SIGTERM)
            said = self.next_state(listener, "STOPPING")
            self.assertNotIn("READY=1", said)
            self.assertEqual(proc.wait(timeout=30 * SLOW), 0)

    def test_an_abstract_notify_socket(self):
        name = f"raftnginx-test-{os.getpid()}-{free_port()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind("\0" + name)
            listener.settimeout(30 * SLOW)
            proc, _, _ = self.start_as_the_unit_does("@" + name)
            self.assertIn("READY=1", self.next_state(listener, "READY"))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30 * SLOW), 0)

    def test_a_notify_socket_that_is_not_there_does_not_stop_the_daemon(self):
        for bad in (os.path.join(self.work, "nobody-listens.sock"), "not-a-path", "/" + "x" * 200):
            proc, http, log = self.start_as_the_unit_does(bad)
            wait_until(lambda: request(http, "GET", "/readyz").status == 200, what="ready")
            def warned():
                with open(log) as f:
                    return "could not tell systemd" in f.read()
            wait_until(warned, what="the warning in the log")
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30 * SLOW), 0)


if __name__ == "__main__":
    unittest.main()
