"""The console's pure parts: which targets are pending, the matchers a row's silence sends, the
filters' choices, and the incidents page's durations and default report period."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ioc.status import TargetState
from web.console import filter_choices
from web.console_feed import pending_targets, silence_matchers, silence_rows
from web.console_incidents import duration_text, last_month
from web.console_rows import RENDER_SLICE, RowCache, alert_signature
from web.i18n import Translator


def state(name: str, *, up: bool | None, raw_up: bool | None, since: float | None = None,
          department: str = "STP") -> TargetState:
    return TargetState(name, department, "http", 30.0, up=up, raw_up=raw_up,
                       failing_since=since, reason="timeout" if raw_up is False else None)


def test_pending_targets_are_failing_ones_no_firing_alert_names_longest_first() -> None:
    targets = {s.name: s for s in (
        state("ok", up=True, raw_up=True),
        state("unknown", up=None, raw_up=None),
        state("blip", up=True, raw_up=False, since=200.0),       # failing, not yet down
        state("down", up=False, raw_up=False, since=100.0),
        state("alerted", up=False, raw_up=False, since=50.0),   # an alert already says so
        state("recovering", up=False, raw_up=True, since=None, department="CAT"),
    )}
    rows = pending_targets(targets, {"alerted"}, {"STP": "Sở Tư pháp"})
    assert [r["target"] for r in rows] == ["down", "blip", "recovering"]
    assert rows[0] == {"target": "down", "department": "STP", "department_name": "Sở Tư pháp",
                       "down": True, "since": 100.0, "reason": "timeout",
                       "cause": "cause_timeout", "cause_status": None}  # plain words
    assert rows[1]["down"] is False and rows[2]["department_name"] == "CAT"


def test_a_rows_silence_names_its_rule_department_and_target_quoted() -> None:
    alert = {"labels": {"alertname": "TargetDown", "department": "STP",
                        "target": 'a"b\\c', "severity": "critical"}}
    assert silence_matchers(alert) == ['alertname="TargetDown"', 'department="STP"',
                                       'target="a\\"b\\\\c"']
    assert silence_matchers({"labels": {"alertname": "X"}}) == ['alertname="X"']


def test_silence_rows_leave_out_expired_ones_newest_first() -> None:
    rows = [{"id": "a", "state": "active", "created_at": 1.0},
            {"id": "b", "state": "expired", "created_at": 3.0},
            {"id": "c", "state": "pending", "created_at": 2.0}]
    assert [r["id"] for r in silence_rows(rows)] == ["c", "a"]


def test_filter_choices_hold_the_configured_and_what_alerts_name() -> None:
    alerts = [{"labels": {"severity": "page", "department": "GONE", "alertname": "Old"},
               "department_name": ""},
              {"labels": {"severity": "critical", "department": "STP",
                          "alertname": "TargetDown"}, "department_name": "Sở Tư pháp"}]
    choices = filter_choices(alerts, {"STP": "Sở Tư pháp", "CAT": "Công an tỉnh"}, ["SytDown"])
    assert [v for v, _ in choices["severity"]] == ["critical", "warning", "info", "page"]
    assert choices["department"] == [("CAT", "Công an tỉnh"), ("GONE", "GONE"),
                                     ("STP", "Sở Tư pháp")]
    assert [v for v, _ in choices["rule"]] == ["Old", "SytDown", "TargetDown"]


def test_durations_and_the_default_report_period() -> None:
    vi, en = Translator("vi"), Translator("en")
    assert duration_text(0.4, vi) == "0 giây"
    assert duration_text(60, vi) == "1 phút 00 giây"
    assert duration_text(3 * 3600 + 5 * 60 + 9, vi) == "3 giờ 05 phút"
    assert duration_text(2 * 86400 + 7200, en) == "2 d 2 h"
    assert duration_text(-5, en) == "0 s"
    hcm = ZoneInfo("Asia/Ho_Chi_Minh")
    # 31/12/2026 20:00 UTC is already 1 January 2027 in the province: last month is December.
    assert last_month(datetime(2026, 12, 31, 20, tzinfo=UTC).timestamp(), hcm) == "2026-12"
    assert last_month(datetime(2027, 1, 15, tzinfo=UTC).timestamp(), hcm) == "2026-12"
    assert last_month(datetime(2027, 3, 1, 12, tzinfo=UTC).timestamp(), hcm) == "2027-02"


async def test_row_deltas_carry_only_what_changed() -> None:
    renders: list[str] = []

    def render(row: dict[str, str], t: Translator) -> str:
        renders.append(row["k"])
        return f"<tr data-k={row['k']}>{row['v']}/{t.lang}</tr>"

    cache = RowCache(render)
    langs = {"vi": Translator("vi"), "en": Translator("en")}
    a, b = {"k": "a", "v": "1"}, {"k": "b", "v": "1"}
    first = await cache.update([("a", "1", a), ("b", "1", b)], langs)
    assert first is not None and first["order"] == ["a", "b"] and set(first["html"]["vi"]) == {
        "a", "b"}
    assert await cache.update([("a", "1", a), ("b", "1", b)], langs) is None  # nothing moved
    renders.clear()
    changed = await cache.update([("b", "2", {"k": "b", "v": "2"}), ("a", "1", a)], langs)
    assert changed is not None and renders == ["b", "b"]  # one row, two languages
    assert changed["order"] == ["b", "a"]
    assert changed["html"]["en"] == {"b": "<tr data-k=b>2/en</tr>"}
    gone = await cache.update([("a", "1", a)], langs)
    assert gone is not None and gone["order"] == ["a"] and gone["html"]["vi"] == {}
    full = await cache.update([("a", "1", a)], langs, full=True)
    assert full is not None and full["full"]
    assert full["html"]["vi"] == {"a": "<tr data-k=a>1/vi</tr>"}


def test_an_alerts_signature_ignores_its_value() -> None:
    base = {"labels": {"alertname": "X"}, "annotations": {"summary": "s"}, "value": 1.0,
            "ack": None, "muted": {}}
    assert alert_signature(base) == alert_signature({**base, "value": 2.0})
    assert alert_signature(base) != alert_signature({**base, "ack": {"by": "ca-truc"}})
    assert alert_signature(base) != alert_signature({**base, "muted": {"silenced_by": ["s"]}})


async def test_rendering_many_rows_lets_the_loop_run() -> None:
    turns = 0
    done = False

    async def other_work() -> None:  # a poll, a request: anything else on the loop
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    cache = RowCache(lambda row, t: f"<tr>{row}</tr>")
    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = turns
    delta = await cache.update([(str(i), i, i) for i in range(10 * RENDER_SLICE)],
                               {"vi": Translator("vi")})
    done = True
    await task
    assert delta is not None and delta["count"] == 10 * RENDER_SLICE
    assert turns - started >= 9  # the loop ran between slices, not once at the end
