"""The routing tree, read the way Alertmanager reads it."""

from __future__ import annotations

import pytest

from alerts.matchers import parse_matcher
from alerts.routing import RouteConfig, build_route
from service.config import ConfigError, parse_config

PROVINCE_TREE = {
    "receiver": "ioc-alertmanager",
    "group_by": ["alertname", "department"],
    "group_wait": "30s",
    "routes": [
        {"receiver": "ioc-alertmanager", "continue": True, "group_by": ["..."],
         "group_wait": "0s"},
        {"matchers": ['severity="critical"'], "receiver": "oncall", "continue": True,
         "repeat_interval": "1h"},
        {"matchers": ['department="STP"', 'severity=~"warning|info"'], "receiver": "stp"},
        {"matchers": ['department=~"ST.*"'], "receiver": "departments",
         "routes": [{"matchers": ['target="stttt-portal"'], "receiver": "portal"}]},
    ],
}


def receivers(labels: dict[str, str]) -> list[str]:
    return [r.receiver for r in build_route(RouteConfig.model_validate(PROVINCE_TREE))
            .match(labels)]


def test_critical_goes_to_oncall_and_continues_to_the_department_channel() -> None:
    labels = {"alertname": "TargetDown", "severity": "critical", "department": "STP"}
    assert receivers(labels) == ["ioc-alertmanager", "oncall", "departments"]


def test_first_match_without_continue_stops() -> None:
    labels = {"alertname": "Slow", "severity": "warning", "department": "STP"}
    assert receivers(labels) == ["ioc-alertmanager", "stp"]


def test_deepest_match_wins_and_unmatched_falls_back_to_the_parent() -> None:
    assert receivers({"severity": "warning", "department": "STTTT",
                      "target": "stttt-portal"}) == ["ioc-alertmanager", "portal"]
    assert receivers({"severity": "warning", "department": "STTTT",
                      "target": "other"}) == ["ioc-alertmanager", "departments"]
    # Only the catch-all child matched: as in Alertmanager the root is not added as well.
    assert receivers({"severity": "info", "department": "CAT"}) == ["ioc-alertmanager"]


def test_children_inherit_timers_and_group_by() -> None:
    root = build_route(RouteConfig.model_validate(PROVINCE_TREE))
    everything, oncall, _stp, departments = root.children
    assert oncall.group_by == ("alertname", "department")
    assert (oncall.group_wait, oncall.group_interval, oncall.repeat_interval) == \
        (30.0, 300.0, 3600.0)
    assert departments.children[0].repeat_interval == 4 * 3600.0
    assert everything.group_wait == 0.0 and everything.group_by_all
    assert everything.group_labels({"a": "1", "b": "2"}) == {"a": "1", "b": "2"}
    assert oncall.group_labels({"alertname": "X", "department": "STP", "target": "t"}) == \
        {"alertname": "X", "department": "STP"}
    assert len({r.key for r in root.walk()}) == 6, "every route has its own key"


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ('severity="critical"', {"severity": "critical"}, True),
    ('severity!="critical"', {"severity": "warning"}, True),
    ('target=~"stp-.*"', {"target": "stp-health"}, True),
    ('target=~"stp"', {"target": "stp-health"}, False),  # anchored, as in Alertmanager
    ('kind!~"http|tcp"', {"kind": "dns"}, True),
    ('team=""', {}, True),
    ("severity=critical", {"severity": "critical"}, True),
    (r'summary="say \"hi\""', {"summary": 'say "hi"'}, True),
])
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(("alerts", "message"), [
    ({"route": {"receiver": "nobody"}, "receivers": [{"name": "oncall"}]},
     "unknown receiver 'nobody' (defined: oncall)"),
    ({"route": {"receiver": "oncall", "routes": [{"matchers": ["severity=~\"(\""]}]},
      "receivers": [{"name": "oncall"}]},
     "routes[0].matchers: invalid regular expression"),
    ({"route": {"receiver": "oncall", "routes": [{"matchers": ["not a matcher"]}]},
      "receivers": [{"name": "oncall"}]}, "expected a matcher such as"),
    ({"receivers": [{"name": "a"}, {"name": "a"}]}, "duplicate name(s) a"),
])
def test_bad_routing_config_is_refused_with_the_reason(alerts: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": {"default_rules": False, **alerts}}, env={})
    assert message in str(caught.value)


def test_province_example_in_the_docs_is_a_valid_config() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[2] / "docs" / "alerting.md").read_text(encoding="utf-8")
    section = text[text.index("### A routing example for a province"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    raw = yaml.safe_load(block.group(1))
    raw["alerts"]["default_rules"] = False
    env = {name: "json://127.0.0.1/hook" if name.endswith("_URL") else "secret-value"
           for name in re.findall(r"\$\{(\w+)\}", block.group(1))}
    departments = [{"code": c, "name": c} for c in ("STP", "STTTT", "VITHANH")]
    config = parse_config({**raw, "departments": departments}, env=env)
    root = build_route(config.alerts.route)  # type: ignore[arg-type]
    critical_stp = {"alertname": "TargetDown", "severity": "critical", "department": "STP"}
    assert [r.receiver for r in root.match(critical_stp)] == [
        "ioc-alertmanager", "truc-ca", "so-tu-phap"]
    warning_huyen = {"alertname": "TargetSlow", "severity": "warning",
                     "department": "VITHANH"}
    assert [r.receiver for r in root.match(warning_huyen)] == [
        "ioc-alertmanager", "ubnd-huyen-thi"]
