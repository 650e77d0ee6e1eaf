"""deploy/monitoring as Prometheus and Grafana users load it: the alerting rules pass promtool's
checks and its unit tests (alerts_test.yml), every alert has a test in which it fires, every
dashboard query is valid PromQL, and every metric the rules and the dashboard name is one a
running daemon (TLS, auth and its nginx gateway on, so that each conditional reading is there)
exports."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

from cluster import Certs, ClusterTest

MONITORING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                          "monitoring")
ALERTS = os.path.join(MONITORING, "alerts.yml")
ALERTS_TEST = os.path.join(MONITORING, "alerts_test.yml")
DASHBOARD = os.path.join(MONITORING, "grafana-dashboard.json")
CONFIG = os.path.join(MONITORING, "prometheus.yml")


def promtool(*args, cwd=MONITORING):
    tool = shutil.which("promtool")
    if tool is None:
        raise AssertionError("promtool not found: scripts/install-deps.sh installs Debian's "
                             "prometheus package, which carries it")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def alert_rules():
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def dashboard_queries():
    with open(DASHBOARD) as f:
        board = json.load(f)
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


class AlertRules(unittest.TestCase):
    def test_promtool_checks_the_rules_the_config_and_runs_the_tests(self):
        for args in (["check", "rules", ALERTS], ["test", "rules", ALERTS_TEST],
                     ["check", "config", CONFIG]):
            r = promtool(*args)
            self.assertEqual(r.returncode, 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}")

    def test_every_alert_fires_in_a_test_and_none_on_a_healthy_cluster(self):
        fired, quiet = set(), set()
        for case in load_yaml(ALERTS_TEST)["tests"]:
            for expectation in case["alert_rule_test"]:
                (fired if expectation.get("exp_alerts") else quiet).add(expectation["alertname"])
        names = {r["alert"] for r in alert_rules()}
        self.assertEqual(names - fired, set(), "alerts no test sees fire")
        self.assertEqual(fired - names, set(), "tests of alerts that do not exist")
        self.assertTrue(quiet, "no test of a cluster that raises nothing")
        for rule in alert_rules():
            self.assertIn(rule["labels"].get("severity"), ("warning", "critical"), rule["alert"])
            self.assertTrue(rule["annotations"].get("summary"), rule["alert"])
            self.assertTrue(rule["annotations"].get("description"), rule["alert"])

    def test_the_checks_catch_a_broken_rule(self):
        with tempfile.TemporaryDirectory() as tmp:
            broken = os.path.join(tmp, "broken.yml")
            with open(broken, "w") as f:
                yaml.safe_dump({"groups": [{"name": "x", "rules": [
                    {"alert": "X", "expr": "max by (job (raftnginx_is_leader) < 1"}]}]}, f)
            self.assertNotEqual(promtool("check", "rules", broken).returncode, 0)


class Dashboard(unittest.TestCase):
    def test_every_query_is_valid_promql(self):
        queries = dashboard_queries()
        self.assertGreater(len(queries), 10)
        rules = [{"record": f"dashboard:query{i}", "expr": q.replace("$job", ".*")}
                 for i, q in enumerate(queries)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "queries.yml")
            with open(path, "w") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            r = promtool("check", "rules", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_the_json_is_what_dashboard_py_writes(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "dashboard.json")
            subprocess.run([sys.executable, os.path.join(MONITORING, "dashboard.py"), out],
                           check=True, timeout=60)
            with open(out) as f, open(DASHBOARD) as shipped:
                self.assertEqual(json.load(f), json.load(shipped),
                                 "run deploy/monitoring/dashboard.py after changing it")

    def test_panels_are_placed_once_and_use_the_chosen_source(self):
        with open(DASHBOARD) as f:
            board = json.load(f)
        ids = [p["id"] for p in board["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in board["panels"]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            if p["type"] != "row":
                self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
                self.assertTrue(p["targets"], p["title"])


class MetricsExist(ClusterTest):
    def test_every_metric_the_rules_and_dashboard_name_is_exported(self):
        certs = Certs.make(os.path.join(self.root, "certs"), ["node1"])
        c = self.cluster.start(1, args=certs.flags("node1"), nginx=True,
                               context=certs.context(), headers=certs.bearer())
        r = c["node1"].get("/metrics")
        self.assertEqual(r.status, 200, r)
        # Series, and the families a TYPE line declares that have none yet (no violation, say).
        exported = set()
        for line in r.body.splitlines():
            if line.startswith("# TYPE "):
                exported.add(line.split()[2])
            elif line and not line.startswith("#"):
                exported.add(line.split("{")[0].split(" ")[0])
        named = set()
        for expr in [r["expr"] for r in alert_rules()] + dashboard_queries():
            named |= set(re.findall(r"raftnginx_[a-z_]+", expr))
        self.assertGreater(len(named), 15)
        self.assertEqual(named - exported, set(), "named by deploy/monitoring, not exported")


if __name__ == "__main__":
    unittest.main()
