"""The public document's pure parts: service states, day levels, merged incidents, planned
windows laid out from the config (time passed in, no app)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alerts.maintenance import MaintenanceConfig
from ioc.availability import Tally
from ioc.status import TargetState
from ioc.status_page_config import StatusPageConfig
from ioc.store.incidents import PublicIncident
from ioc.store.maintenance_store import OperatorWindow
from web.status_view import Inputs, build_document, day_level, duration_text, service_state
from web.status_windows import planned_windows

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 6, 14, 0, tzinfo=TZ).timestamp()


def state(name: str, up: bool | None, degraded: bool = False) -> TargetState:
    return TargetState(name=name, department="STP", kind="http", interval=60, up=up,
                       degraded=degraded)


def test_service_state_from_its_targets() -> None:
    assert service_state([state("a", True), state("b", True)], False) == "operational"
    assert service_state([state("a", True), state("b", False)], False) == "partial"
    assert service_state([state("a", True, degraded=True)], False) == "partial"
    assert service_state([state("a", False), state("b", False)], False) == "major"
    assert service_state([state("a", False), state("b", None)], False) == "major"
    assert service_state([state("a", False)], True) == "maintenance"
    assert service_state([state("a", None)], False) == "unknown"
    assert service_state([], False) == "unknown"


def test_day_levels() -> None:
    assert day_level(None) == "none"
    assert day_level(Tally(not_monitored=86400)) == "none"
    assert day_level(Tally(up=86400)) == "ok"
    assert day_level(Tally(up=86400 - 60, down=60)) == "ok"          # 99.93 %
    assert day_level(Tally(up=86400 - 600, down=600)) == "minor"     # 99.31 %
    assert day_level(Tally(up=80000, down=6400)) == "major"
    assert day_level(Tally(planned=86400)) == "maintenance"
    assert day_level(Tally(up=82800, planned=3600)) == "maintenance"
    assert day_level(Tally(up=82000, down=800, planned=3600)) == "minor"  # a real outage too


def test_durations_in_public_words() -> None:
    assert duration_text(30, "vi") == "1 phút"
    assert duration_text(15 * 60, "vi") == "15 phút"
    assert duration_text(7200, "vi") == "2 giờ"
    assert duration_text(3900, "en") == "1 h 5 min"
    assert duration_text(2 * 86400 + 3600, "vi") == "2 ngày 1 giờ"


def page(**extra: object) -> StatusPageConfig:
    return StatusPageConfig.model_validate({
        "slug": "p", "title": {"vi": "Trang", "en": "Page"}, **extra,
        "groups": [{"name": "G", "services": [
            {"slug": "portal", "name": {"vi": "Cổng", "en": "Portal"},
             "targets": ["a", "b"]},
            {"slug": "dept", "name": "Sở", "departments": ["SYT"]}]}]})


def inputs(incidents: list[PublicIncident]) -> Inputs:
    return Inputs(now=NOW, tz=TZ, targets={"a": "STP", "b": "STP", "c": "SYT"},
                  states={"a": state("a", True), "b": state("b", True),
                          "c": state("c", True)},
                  days=[date(2026, 12, 5), date(2026, 12, 6)],
                  tallies={"a": [Tally(up=86400), Tally(up=50400)],
                           "b": [Tally(up=86400 - 1728, down=1728), Tally(up=50400)]},
                  incidents=incidents, windows=[])


def test_targets_add_their_seconds_and_overlapping_outages_merge() -> None:
    h = 3600.0
    incidents = [
        PublicIncident("a", "STP", NOW - 30 * h, NOW - 29 * h, False, None, None),
        PublicIncident("b", "STP", NOW - 29.5 * h, NOW - 28 * h, False, "Đã xử lý", NOW - 28 * h),
        PublicIncident("a", "STP", NOW - 2 * h, None, False, None, None),
        PublicIncident("b", "STP", NOW - 10 * h, NOW - 10 * h + 30, False, None, None),
        PublicIncident("a", "STP", NOW - 5 * h, NOW - 4 * h, True, None, None),   # planned
        PublicIncident("a", "STP", NOW - 20 * 86400, NOW - 19 * 86400, False, "old", None),
    ]
    doc = build_document(page(), "vi", inputs(incidents))
    portal = doc["groups"][0]["services"][0]
    # day 1: (86,400 + 84,672) up of 172,800 -> 99 %: amber
    assert portal["days"][0]["availability"] == 1 - 1728 / 172800
    assert portal["days"][0]["level"] == "minor"
    assert portal["days"][0]["label"] == "05/12/2026: 99 %"
    assert doc["groups"][0]["services"][1]["days"][0]["level"] == "none"
    listed = [(i["service"], i["open"], i["duration_seconds"], i["notes"])
              for i in doc["incidents"]]
    assert listed == [("portal", True, None, []),
                      ("portal", False, round(2 * h), ["Đã xử lý"])]
    assert doc["overall"]["state"] == "operational"


def test_a_page_shows_its_own_number_of_days() -> None:
    short = page(history_days=7)
    many = replace(inputs([]), days=[date(2026, 11, d) for d in range(1, 31)],
                   tallies={"a": [Tally(up=86400)] * 30}, memo={})
    doc = build_document(short, "vi", many)
    bars = doc["groups"][0]["services"][0]["days"]
    assert [d["date"] for d in bars] == [f"2026-11-{d}" for d in range(24, 31)]
    assert doc["history_days"] == 7 and doc["first_day"] == "2026-11-24"


def test_windows_from_config_ranges_weekly_slots_and_operators() -> None:
    config = [MaintenanceConfig.model_validate({
        "department": "SYT", "comment": "internal", "public_note": "Nâng cấp",
        "ranges": [{"start": "2026-12-08 22:00", "end": "2026-12-09 01:00"}],
        "weekly": [{"days": ["sat"], "start": "23:00", "end": "01:00"}]})]
    announced = [OperatorWindow("w1", "STP", NOW + 3600, NOW + 7200, "db swap", "ops", NOW)]
    start = datetime(2026, 12, 6, tzinfo=TZ).timestamp()
    found = planned_windows(config, announced, start, start + 7 * 86400, TZ)
    local = [(w.department, datetime.fromtimestamp(w.starts_at, TZ).strftime("%a %d %H:%M"),
              (w.ends_at - w.starts_at) / 3600, w.note) for w in found]
    assert local == [
        ("SYT", "Sat 05 23:00", 2.0, "Nâng cấp"),   # the slot before runs into the span
        ("STP", "Sun 06 15:00", 1.0, None),          # an operator's comment is never public
        ("SYT", "Tue 08 22:00", 3.0, "Nâng cấp"),
        ("SYT", "Sat 12 23:00", 2.0, "Nâng cấp"),
    ]


def test_the_english_page_takes_the_english_wording_or_falls_back() -> None:
    h = 3600.0
    incidents = [
        PublicIncident("a", "STP", NOW - 30 * h, NOW - 29 * h, False, "Đã xử lý", NOW - 29 * h,
                       "Resolved"),
        PublicIncident("b", "STP", NOW - 10 * h, NOW - 9 * h, False, "Chỉ tiếng Việt",
                       NOW - 9 * h, None),
    ]
    windows = planned_windows([MaintenanceConfig.model_validate({
        "department": "STP", "public_note": "Nâng cấp", "public_note_en": "Upgrade",
        "ranges": [{"start": "2026-12-08 22:00", "end": "2026-12-09 01:00"}]})], [],
        NOW, NOW + 7 * 86400, TZ)
    data = replace(inputs(incidents), windows=windows)

    def words(lang: str) -> tuple[list[list[str]], list[str]]:
        doc = build_document(page(), lang, data)
        return [i["notes"] for i in doc["incidents"]], [m["note"] for m in doc["maintenance"]]

    assert words("vi") == ([["Chỉ tiếng Việt"], ["Đã xử lý"]], ["Nâng cấp"])
    assert words("en") == ([["Chỉ tiếng Việt"], ["Resolved"]], ["Upgrade"])


def test_an_english_window_note_needs_the_vietnamese_one() -> None:
    with pytest.raises(ValidationError, match="give public_note too"):
        MaintenanceConfig.model_validate({
            "department": "STP", "public_note_en": "Upgrade",
            "ranges": [{"start": "2026-12-08 22:00", "end": "2026-12-09 01:00"}]})
