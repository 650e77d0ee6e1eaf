#!/usr/bin/env python3
"""Writes grafana-dashboard.json beside it: the dashboard's panels as code, so that a change is
one line here (tests/daemon/test_monitoring.py checks that the JSON is this script's output).

    python3 deploy/monitoring/dashboard.py [OUT]
"""
import json
import os
import sys

panels, next_id = [], [1]
y = [0]


def panel(title, kind, targets, w=8, h=7, unit=None, description="", x=None, **extra):
    p = {"id": next_id[0], "type": kind, "title": title, "description": description,
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "gridPos": {"h": h, "w": w, "x": x, "y": y[0]},
         "targets": [{"refId": chr(65 + i), "expr": expr, "legendFormat": legend,
                      "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                     for i, (expr, legend) in enumerate(targets)],
         "fieldConfig": {"defaults": {"unit": unit or "short"}, "overrides": []},
         "options": {}}
    if extra.pop("instant", False):
        for t in p["targets"]:
            t.update(instant=True, range=False)
    p.update(extra)
    next_id[0] += 1
    panels.append(p)


def row(title, members):
    panels.append({"id": next_id[0], "type": "row", "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    next_id[0] += 1
    y[0] += 1
    x = 0
    height = 0
    for m in members:
        title_, kind, targets, kw = m[0], m[1], m[2], (m[3] if len(m) > 3 else {})
        w = kw.pop("w", 8)
        if x + w > 24:
            x, y[0] = 0, y[0] + height
        panel(title_, kind, targets, w=w, x=x, **kw)
        height = max(height, panels[-1]["gridPos"]["h"])
        x += w
    y[0] += height


J = 'job=~"$job"'
row("Cluster", [
    ("Leader", "stat", [(f'raftnginx_is_leader{{{J}}} == 1', "{{instance}}")],
     {"w": 6, "h": 4, "description": "The member that leads now; empty when none does.",
      "instant": True,
      "options": {"textMode": "name", "reduceOptions": {"calcs": ["lastNotNull"]}}}),
    ("Term", "stat", [(f'max(raftnginx_term{{{J}}})', "term")], {"w": 6, "h": 4}),
    ("Members", "stat", [(f'max(raftnginx_members{{{J}}})', "members")], {"w": 6, "h": 4}),
    ("Leader changes (1 h)", "stat",
     [(f'max(increase(raftnginx_leader_changes_total{{{J}}}[1h]))', "changes")],
     {"w": 6, "h": 4, "description": "More than a few an hour: timeouts too tight for the links "
      "(--rtt), slow fsyncs, or a node restarting."}),
])
row("Traffic", [
    ("Writes applied per second", "timeseries",
     [(f'rate(raftnginx_fsm_applied_entries_total{{{J}}}[1m])', "{{instance}}")],
     {"unit": "ops"}),
    ("Requests per second by route", "timeseries",
     [(f'sum by (route) (rate(raftnginx_http_requests_total{{{J}}}[1m]))', "{{route}}")],
     {"unit": "reqps"}),
    ("Errors per second by status", "timeseries",
     [(f'sum by (code) (rate(raftnginx_http_requests_total{{{J},code=~"5.."}}[1m]))', "{{code}}")],
     {"unit": "reqps", "description": "503 on a follower while there is no leader or it "
      "diverged; 504 when a write timed out."}),
    ("Request latency p99 by route", "timeseries",
     [(f'histogram_quantile(0.99, sum by (route, le) '
       f'(rate(raftnginx_http_request_duration_seconds_bucket{{{J}}}[5m])))', "{{route}}")],
     {"unit": "s", "w": 12}),
    ("Log fsync p99", "timeseries",
     [(f'histogram_quantile(0.99, sum by (instance, le) '
       f'(rate(raftnginx_log_sync_duration_seconds_bucket{{{J}}}[5m])))', "{{instance}}")],
     {"unit": "s", "w": 12, "description": "Every write waits for one; near the heartbeat "
      "(50 ms by default) it causes elections."}),
])
row("Replication", [
    ("Commit and applied index", "timeseries",
     [(f'raftnginx_commit_index{{{J}}}', "commit {{instance}}"),
      (f'raftnginx_applied_index{{{J}}}', "applied {{instance}}")], {"w": 12}),
    ("Entries behind the commit of a minute ago", "timeseries",
     [(f'clamp_min(max by (job) (raftnginx_commit_index{{{J}}} offset 1m) - on (job) '
       f'group_right raftnginx_applied_index{{{J}}}, 0)', "{{instance}}")],
     {"w": 12, "description": "Above 0: the member's reads are more than a minute old (a "
      "learner across a thin link, a member catching up). Measured against the commit of a "
      "minute ago because members are scraped seconds apart."}),
    ("Snapshots", "timeseries",
     [(f'increase(raftnginx_snapshots_taken_total{{{J}}}[5m])', "taken {{instance}}"),
      (f'increase(raftnginx_snapshots_installed_total{{{J}}}[5m])', "installed {{instance}}")]),
    ("Snapshot bytes sent and resumed", "timeseries",
     [(f'rate(raftnginx_snapshot_sent_bytes_total{{{J}}}[1m])', "sent {{instance}}"),
      (f'rate(raftnginx_snapshot_resumed_bytes_total{{{J}}}[1m])', "not sent again {{instance}}")],
     {"unit": "Bps"}),
    ("Client sessions remembered", "timeseries",
     [(f'raftnginx_sessions{{{J}}}', "{{instance}}")]),
])
row("Integrity, gateways and security", [
    ("Replica checks", "timeseries",
     [(f'raftnginx_replica_hash_mismatch{{{J}}}', "peers differing, {{instance}}"),
      (f'raftnginx_replica_diverged{{{J}}}', "diverged {{instance}}"),
      (f'raftnginx_storage_damaged{{{J}}}', "damaged {{instance}}")],
     {"description": "Anything above 0: see /nodes, and rebuild the named member with "
      "`raft-nginx repair`."}),
    ("Gateway files", "timeseries",
     [(f'raftnginx_gateway_files_refused{{{J}}}', "refused {{instance}}"),
      (f'raftnginx_gateway_files_index{{{J}}}', "served index {{instance}}")],
     {"description": "1 while a gateway's nginx refuses the latest nginx/ keys and serves its "
      "last good ones."}),
    ("Days until a certificate expires", "timeseries",
     [(f'(raftnginx_tls_certificate_expiry_timestamp_seconds{{{J}}} - time()) / 86400',
       "{{instance}} {{port}}")], {"unit": "d"}),
    ("Protocol violations per minute", "timeseries",
     [(f'sum by (instance, kind) (rate(raftnginx_protocol_violations_total{{{J}}}[5m])) * 60',
       "{{instance}} {{kind}}")]),
    ("Refused raft connections per minute", "timeseries",
     [(f'rate(raftnginx_raft_refused_connections_total{{{J}}}[5m]) * 60', "{{instance}}")]),
    ("Runs with --insecure", "timeseries", [(f'raftnginx_insecure{{{J}}}', "{{instance}}")]),
])

dashboard = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
                   {"type": "datasource", "id": "prometheus", "name": "Prometheus",
                    "version": "1.0.0"}],
    "uid": "raft-nginx", "title": "raft-nginx", "tags": ["raft-nginx"], "editable": True,
    "schemaVersion": 36, "version": 1, "refresh": "10s", "timezone": "",
    "time": {"from": "now-30m", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        {"name": "job", "label": "Cluster (job)", "type": "query",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(raftnginx_term, job)", "refId": "job"},
         "definition": "label_values(raftnginx_term, job)", "refresh": 2, "current": {},
         "includeAll": False, "multi": False, "hide": 0},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "grafana-dashboard.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
