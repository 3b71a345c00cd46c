"""The Grafana dashboard and provisioning files are valid and provisioning-ready.

Whether each query works is proven against a real Prometheus in test_prometheus.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

GRAFANA = Path(__file__).parents[2] / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "ioc-overview.json").read_text(encoding="utf-8"))


def test_dashboard_identity_and_variables() -> None:
    board = dashboard()
    assert board["uid"] == "ioc-overview" and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None  # importable into any Grafana
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    department = variables["department"]
    assert department["type"] == "query" and department["datasource"] == DATASOURCE
    assert department["includeAll"] and department["allValue"] == ".*"
    assert "label_values(ioc_target_up, department)" in json.dumps(department["query"])


def test_every_panel_uses_the_datasource_variable_and_has_queries() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_covers_what_operators_asked_for() -> None:
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p.get("targets", []))
    for metric in ("ioc_target_up", "ioc_probe_duration_seconds", "ioc_dossier_ontime_ratio",
                   "ioc_dossiers", "ioc_feedback_reports", "ioc_security_events_total",
                   "ioc_alerts", "ioc_scheduler_lag_seconds_bucket",
                   "ioc_store_write_queue_samples", "ioc_notifications_total",
                   "ioc_oncall_time_to_ack_seconds_bucket", "ioc_oncall_escalation_steps_total",
                   "ioc_oncall_acks_total"):
        assert metric in exprs, metric
    assert 'department=~"$department"' in exprs


def test_provisioning_files() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "ioc.yml").read_text(encoding="utf-8"))
    (source,) = datasources["datasources"]
    assert datasources["apiVersion"] == 1 and source["type"] == "prometheus" and source["url"]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "ioc.yml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_the_failure_panel_follows_the_department_variable() -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])
             if "ioc_probe_failures_total" in t["expr"]]
    assert exprs and all('ioc_probe_failures_total{department=~"$department"}' in e
                         for e in exprs), exprs
