"""Inhibition: a department-wide outage mutes the per-target alerts it causes."""

from __future__ import annotations

from alerts.inhibit import InhibitRule, InhibitRuleConfig, inhibited
from alerts.model import AlertState
from tests.alerts.delivery_helpers import alert

RULES = [InhibitRule.from_config(InhibitRuleConfig.model_validate(
    {"source_matchers": ['alertname="DepartmentDown"'],
     "target_matchers": ['alertname=~"TargetDown|BacklogStale"'],
     "equal": ["department"]}))]


def test_department_outage_inhibits_its_targets_only() -> None:
    outage = alert("DepartmentDown", department="STP")
    stp_target = alert("TargetDown", department="STP", target="stp-1")
    stp_backlog = alert("BacklogStale", department="STP", target="stp-dvc")
    cat_target = alert("TargetDown", department="CAT", target="cat-1")
    result = inhibited([outage, stp_target, stp_backlog, cat_target], RULES)
    assert result == {stp_target.fingerprint: outage.fingerprint,
                      stp_backlog.fingerprint: outage.fingerprint}


def test_a_resolved_source_inhibits_nothing() -> None:
    outage = alert("DepartmentDown", department="STP", state=AlertState.RESOLVED,
                   resolved_at=5.0)
    target = alert("TargetDown", department="STP", target="stp-1")
    assert inhibited([outage, target], RULES) == {}


def test_an_alert_never_inhibits_itself() -> None:
    rules = [InhibitRule.from_config(InhibitRuleConfig.model_validate(
        {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="critical"'],
         "equal": ["department"]}))]
    lone = alert("TargetDown", department="STP", target="stp-1")
    assert inhibited([lone], rules) == {}
