"""The wall's alerts panel as data and as rendered: order, folding, since when, languages."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.model import SEVERITIES
from web.i18n import Translator
from web.wall import (
    alert_plans,
    alert_rows,
    alerts_panel,
    fold_alerts,
    fresh_criticals,
)
from web.wall_feed import make_templates

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=TZ).timestamp()


def alert(fp: str, severity: str = "critical", since: float = NOW - 600, *,
          rule: str = "TargetDown", ack: tuple[str, float] | None = None, silenced: bool = False,
          target: str | None = "", department: str = "STP", fired: float | None = None,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"alertname": rule, "severity": severity, "department": department}
    if target is not None:
        labels["target"] = target or f"{fp}-portal"
    return {"fingerprint": fp, "state": "firing", "labels": labels,
            "annotations": annotations if annotations is not None else {
                "title": "Mất kết nối", "title_en": "Unreachable",
                "summary": f"{fp}-portal (Sở Tư pháp) không truy cập được",
                "summary_en": f"{fp}-portal (Sở Tư pháp) is unreachable"},
            "value": 0.0, "active_at": since, "fired_at": since + 120 if fired is None else fired,
            "resolved_at": None, "department_name": "Sở Tư pháp", "receivers": [],
            "muted": {"silenced_by": ["s1"]} if silenced else {},
            "ack": {"by": ack[0], "at": ack[1]} if ack else None}


def rows_of(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return alert_rows(alerts)


def mix(criticals: int, acked: int, warnings: int, rules: int = 1) -> list[dict[str, Any]]:
    out = [alert(f"c{i}", since=NOW - 3600 + i, rule=f"Rule{i % rules}",
                 ack=("Nguyễn Văn A", NOW - 60) if i < acked else None)
           for i in range(criticals)]
    out += [alert(f"w{i}", "warning", since=NOW - 1800 + i, rule="TargetSlow")
            for i in range(warnings)]
    return out


def test_severity_first_then_unhandled_then_newest_outage() -> None:
    rows = rows_of([alert("w-new", "warning", NOW - 10), alert("c-acked", ack=("An", NOW - 5)),
                    alert("c-old", since=NOW - 900), alert("c-new", since=NOW - 100),
                    alert("c-quiet", silenced=True), alert("i", "info", NOW - 1),
                    alert("w-old", "warning", NOW - 5000)])
    assert [r["fingerprint"] for r in rows] == [
        "c-new", "c-old", "c-acked", "c-quiet", "w-new", "w-old", "i"]


CASES = list(itertools.product((0, 1, 3, 10, 35, 40), ("none", "half", "all"), (0, 2, 10),
                               (1, 2, 3, 4, 6, 8, 16), (1, 3)))


@pytest.mark.parametrize(("criticals", "acked", "warnings", "capacity", "rules"), CASES)
def test_folding_never_hides_a_critical_for_a_warning(criticals: int, acked: str,
                                                      warnings: int, capacity: int,
                                                      rules: int) -> None:
    count = {"none": 0, "half": criticals // 2, "all": criticals}[acked]
    panel_rows = rows_of(mix(criticals, count, warnings, rules)) if criticals + warnings else []
    fold = fold_alerts(panel_rows, capacity)
    shown = sum(line.get("count", 1) for line in fold.lines)
    # every alert is either on a line or counted by the "more" line, which takes a line
    assert shown + fold.hidden_total == criticals + warnings
    assert len(fold.lines) + (1 if fold.hidden else 0) <= capacity
    ranks = [SEVERITIES.index(line["severity"]) for line in fold.lines]
    assert ranks == sorted(ranks, reverse=True)  # critical, then warning, then info
    hidden = dict(fold.hidden)
    shown_warnings = any(line["severity"] == "warning" for line in fold.lines)
    assert not (hidden.get("critical") and shown_warnings)  # warnings fold first
    if (capacity >= 2 and rules == 1) or criticals + warnings <= capacity:
        assert "critical" not in hidden  # one line says how many, none is hidden
    if fold.mode == "full":
        handled = [line["handled"] for line in fold.lines if line["severity"] == "critical"]
        assert handled == sorted(handled)  # unhandled criticals before handled ones


def test_thirty_five_departments_down_are_one_line_that_counts_them() -> None:
    fold = fold_alerts(rows_of(mix(35, 12, 5)), 4)
    assert fold.mode == "grouped"
    group, *rest = fold.lines
    assert group["kind"] == "group" and group["count"] == 35 and group["handled"] == 12
    assert [r["severity"] for r in rest] == ["warning", "warning"]
    assert fold.hidden == (("warning", 3),)


def test_plans_go_from_the_most_lines_to_one() -> None:
    rows = rows_of(mix(3, 0, 5, rules=3))
    plans, mores = alert_plans(rows, 16)
    assert plans[0] == {"mode": "full", "n": 8, "more": None}
    assert plans[-1]["n"] == 0 and mores[plans[-1]["more"]] == (("critical", 3), ("warning", 5))
    assert len(plans) == len({tuple(p.items()) for p in plans})  # no repeats


@pytest.mark.parametrize(("failing", "expected"), [
    ({"c1-portal": NOW - 900}, NOW - 900),   # the outage's first failed poll
    ({}, NOW - 600),                         # not failing: when the condition began
    ({"c1-portal": NOW - 300}, NOW - 600),   # failing again after the alert began: its own
    ({"other": NOW - 5000}, NOW - 600),
])
def test_an_alert_starts_when_its_outage_did(failing: dict[str, float], expected: float) -> None:
    panel = alerts_panel([alert("c1", since=NOW - 600, fired=NOW - 480)], NOW, NOW, 600, failing)
    assert panel is not None
    assert panel["lists"]["full"][0]["since"] == expected


def render(panel: dict[str, Any] | None, lang: str) -> str:
    module = make_templates().get_template("wall_parts.html").module
    return str(module.side_panel("alerts", panel, Translator(lang), NOW))  # type: ignore[attr-defined]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_an_acked_critical_says_who_and_when_ahead_of_warnings() -> None:
    acked_at = datetime(2026, 12, 7, 9, 24, tzinfo=TZ).timestamp()
    panel = alerts_panel([alert("w", "warning", NOW - 10),
                          alert("c", since=datetime(2026, 12, 7, 9, 2, tzinfo=TZ).timestamp(),
                                ack=("Nguyễn Văn A", acked_at))], NOW, NOW, 600)
    html = text(render(panel, "vi"))
    assert "Đã tiếp nhận: Nguyễn Văn A, 09:24" in html
    assert "từ 09:02" in html
    assert html.index("c-portal") < html.index("w-portal")
    assert "Acknowledged: Nguyễn Văn A, 09:24" in text(render(panel, "en"))


def test_the_screens_language_picks_the_annotations() -> None:
    alerts = [alert(f"c{i}") for i in range(3)] + [
        alert(f"x{i}", "warning", rule="Custom", annotations={"summary": "chỉ tiếng Việt"})
        for i in range(2)]
    panel = alerts_panel(alerts, NOW, NOW, 600, lines_max=2)
    en, vi = text(render(panel, "en")), text(render(panel, "vi"))
    assert "Unreachable — 3 systems" in en and "Mất kết nối — 3 hệ thống" in vi
    assert "and 2 more: 2 warnings" in en and "và 2 cảnh báo khác: 2 cảnh báo" in vi
    full = alerts_panel(alerts, NOW, NOW, 600)
    en = text(render(full, "en"))
    assert "c0-portal (Sở Tư pháp) is unreachable" in en
    assert "chỉ tiếng Việt" in en  # no translation given: the default text, not nothing


def test_a_new_critical_is_marked_fresh_for_a_minute() -> None:
    panel = alerts_panel([alert("new", fired=NOW - 10), alert("old", fired=NOW - 120),
                          alert("w", "warning", fired=NOW - 5)], NOW, NOW, 600)
    assert panel is not None
    assert panel["fresh"] == [["new", "STP", NOW + 50]]
    assert 'data-fresh=\'[["new", "STP", ' in render(panel, "vi")


def test_one_fresh_critical_per_department_flashes() -> None:
    rows = alert_rows([alert("a", department="STP", fired=NOW - 30),
                       alert("b", department="STP", fired=NOW - 5),
                       alert("c", department="CAT", fired=NOW - 59),
                       alert("d", department="SYT", fired=NOW - 61)])
    assert fresh_criticals(rows, NOW) == [["c", "CAT", NOW + 1], ["b", "STP", NOW + 55]]
