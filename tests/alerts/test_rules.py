"""Rule config: every mistake named with its place, sandboxed templates, rule files, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerts.rules import RuleConfig, compile_rule, gather_rules, human_duration
from ioc.model import make_labels
from service.config import ConfigError, parse_config

GOOD = {"name": "Down", "metric": "ioc_target_up", "op": "==", "threshold": 0}


def config_with(rules: list[dict[str, Any]], **alerts: Any) -> Any:
    return parse_config({"alerts": {"rules": rules, "default_rules": False, **alerts}}, env={})


BAD_RULES = [
    ({"op": None, "threshold": None}, "alerts.rules[0]", "needs `op` and `threshold`"),
    ({"op": "=>"}, "alerts.rules[0].op", "Input should be"),
    ({"aggregate": "median"}, "alerts.rules[0].aggregate", "Input should be"),
    ({"for": 30}, "alerts.rules[0].for", "expected a duration"),
    ({"matchers": ["department STP"]}, "alerts.rules[0].matchers", "expected a matcher"),
    ({"matchers": ['target=~"("']}, "alerts.rules[0].matchers", "invalid regular expression"),
    ({"severity": "urgent"}, "alerts.rules[0].severity", "Input should be"),
    ({"labels": {"severity": "x"}}, "alerts.rules[0].labels", "set by ioc"),
    ({"annotations": {"summary": "{{ labels.target "}}, "alerts.rules[0].annotations",
     "not a valid template"),
    ({"annotations": {"summary_en": "{{ labels.target }} is down"}},
     "alerts.rules[0].annotations", "is the 'en' text of 'summary', which the rule does not give"),
    ({"absent": "5m"}, "alerts.rules[0]", "takes no op, threshold"),
    ({"transform": "until", "aggregate": "rate"}, "alerts.rules[0]", "does not apply"),
    ({"combine": "max"}, "alerts.rules[0]", "`combine` needs `by`"),
    ({"thresold": 1}, "alerts.rules[0].thresold", "unknown key"),
    ({"name": "bad name"}, "alerts.rules[0].name", "should match pattern"),
]


@pytest.mark.parametrize(("change", "path", "message"), BAD_RULES,
                         ids=[p for _, p, _ in BAD_RULES])
def test_bad_rule_is_reported_with_its_path(change: dict[str, Any], path: str,
                                            message: str) -> None:
    rule = {**GOOD, **change}
    rule = {k: v for k, v in rule.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        config_with([rule])
    issues = [(i.path, i.message) for i in caught.value.issues]
    assert any(p == path and message in m for p, m in issues), issues


def test_duplicate_rule_identity_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        config_with([GOOD, {**GOOD, "threshold": 1}])
    assert "same name, severity and labels" in str(caught.value)
    # same name with another severity is the usual warning/critical pair
    config = config_with([GOOD, {**GOOD, "severity": "critical"}])
    assert len(config.alert_rules) == 2


def test_rule_files_globs_and_errors(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("rules:\n  - {name: A, metric: m, op: '>', "
                                               "threshold: 1}\n", encoding="utf-8")
    (tmp_path / "rules" / "b.yaml").write_text("rules:\n  - {name: B, metric: m, op: '>'}\n",
                                               encoding="utf-8")
    source = str(tmp_path / "config.yaml")
    raw = {"alerts": {"default_rules": False, "rule_files": ["rules/*.yaml", "missing.yaml"]}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={}, source=source)
    text = str(caught.value)
    assert "rules/b.yaml: rules[0]" in text and "needs `op` and `threshold`" in text
    assert "alerts.rule_files[1]: no such rule file: 'missing.yaml'" in text
    (tmp_path / "rules" / "b.yaml").write_text("rules: []\n", encoding="utf-8")
    raw["alerts"]["rule_files"] = ["rules/*.yaml"]
    config = parse_config(raw, env={}, source=source)
    assert [(r.name, src) for r, src in config.alert_rules] == [("A", "rules/a.yaml: rules[0]")]


def test_invalid_yaml_rule_file(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"r.yaml: invalid YAML: line"):
        parse_config({"alerts": {"rule_files": ["r.yaml"]}}, env={},
                     source=str(tmp_path / "c.yaml"))


def test_defaults_load_and_a_rule_of_the_same_name_replaces_them(tmp_path: Path) -> None:
    rules, issues = gather_rules([], [], True, tmp_path)
    assert not issues
    names = {r.name for r, _ in rules}
    assert {"TargetDown", "TargetSlow", "CertificateExpiringSoon", "SiteDefaced",
            "DossierOnTimeRateLow", "OverdueDossiersRising", "FeedbackOverdue",
            "CriticalSecurityEvent", "CollectorStale"} <= names
    mine = RuleConfig.model_validate({**GOOD, "name": "CertificateExpiringSoon"})
    rules, _ = gather_rules([mine], [], True, tmp_path)
    assert [src for r, src in rules if r.name == "CertificateExpiringSoon"] == [
        "alerts.rules[0]"]


def test_annotations_render_with_labels_value_and_department_name() -> None:
    cfg = RuleConfig.model_validate({**GOOD, "annotations": {
        "summary": "{{ labels.target }} ({{ department }}) = {{ value|percent }}",
        "description": "{{ labels.nothing }}|{{ 90061|duration }}"}})
    rule = compile_rule(cfg, department_names={"STP": "Sở Tư pháp"})
    rendered = dict(rule.render(make_labels(target="stp-portal", department="STP"), 0.5))
    assert rendered["summary"] == "stp-portal (Sở Tư pháp) = 50.0 %"
    assert rendered["description"] == "|1 ngày 1 giờ"


def test_templates_are_sandboxed() -> None:
    cfg = RuleConfig.model_validate({**GOOD, "annotations": {
        "summary": "{{ labels.__class__.__mro__[1].__subclasses__() }}"}})
    (summary,) = compile_rule(cfg).render(make_labels(target="a"), 1.0)
    assert summary[1].startswith("(template error in summary:")
    assert "subclasses" not in summary[1] or "unsafe" in summary[1]


def test_human_duration() -> None:
    assert human_duration(0) == "0 giây"
    assert human_duration(59) == "59 giây"
    assert human_duration(3600 * 26 + 5) == "1 ngày 2 giờ"
    assert human_duration(-120) == "-2 phút"


def test_describe_reads_like_a_query() -> None:
    cfg = RuleConfig.model_validate({**GOOD, "aggregate": "max", "window": "2m",
                                     "matchers": ['kind="http"'], "for": "1m"})
    assert cfg.describe() == 'max(ioc_target_up{kind="http"}[2m]) == 0 for 1m'
