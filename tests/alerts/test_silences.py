"""Silences, acknowledgements and maintenance windows."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.acks import new_ack
from alerts.maintenance import MaintenanceConfig, departments_in_maintenance, in_window
from alerts.silences import new_silence, silenced_by

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = 1_800_000_000.0


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=HCM).timestamp()


def test_silence_mutes_matching_alerts_only_while_active() -> None:
    silence = new_silence("s1", ['department="STP"', 'alertname=~"Target.*"'],
                          starts_at=NOW + 60, ends_at=NOW + 3600, created_by="ca-truc",
                          comment="nâng cấp máy chủ", now=NOW)
    labels = {"department": "STP", "alertname": "TargetDown"}
    assert silence.state(NOW) == "pending" and not silence.mutes(labels, NOW)
    assert silence.mutes(labels, NOW + 60) and silence.state(NOW + 60) == "active"
    assert not silence.mutes({**labels, "department": "CAT"}, NOW + 60)
    assert silenced_by([silence], labels, NOW + 3600) == []
    assert silence.to_dict(NOW)["matchers"] == ['department="STP"', 'alertname=~"Target.*"']


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"matchers": []}, "at least one matcher"),
    ({"matchers": ['team=~".*"']}, "match every alert"),
    ({"comment": " "}, "say why"),
    ({"ends_at": NOW - 1, "starts_at": NOW - 10}, "in the past"),
    ({"ends_at": NOW}, "after starts_at"),
    ({"ends_at": NOW + 400 * 86400}, "at most 366 days"),
])
def test_bad_silences_are_refused(kwargs: dict, message: str) -> None:
    args = {"matchers": ['department="STP"'], "starts_at": NOW, "ends_at": NOW + 60,
            "created_by": "x", "comment": "why", **kwargs}
    matchers = args.pop("matchers")
    with pytest.raises(ValueError, match=message):
        new_silence("s", matchers, now=NOW, **args)


def test_ack_expires() -> None:
    ack = new_ack("abc", by="ca-truc", comment="đang xử lý", now=NOW, duration=600)
    assert ack.active(NOW + 599) and not ack.active(NOW + 600)
    with pytest.raises(ValueError):
        new_ack("abc", by="x", comment="", now=NOW, duration=0)


WEEKLY = MaintenanceConfig.model_validate({
    "department": "STP", "comment": "bảo trì định kỳ",
    "weekly": [{"days": ["sat"], "start": "22:00", "end": "02:00"}]})
FIXED = MaintenanceConfig.model_validate({
    "department": "CAT", "ranges": [{"start": "2026-12-05 08:00", "end": "2026-12-05 12:00"}]})


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-12-05 21:59", False),   # Saturday, before the slot
    ("2026-12-05 22:00", True),
    ("2026-12-06 01:59", True),    # Sunday night: the Saturday slot runs past midnight
    ("2026-12-06 02:00", False),
    ("2026-12-06 22:30", False),   # Sunday's own evening is not in the schedule
])
def test_weekly_window_in_local_time(when: str, expected: bool) -> None:
    assert in_window(WEEKLY, at(when), HCM) is expected


def test_fixed_range_and_which_departments_are_muted() -> None:
    assert departments_in_maintenance([WEEKLY, FIXED], at("2026-12-05 09:00"), HCM) == \
        {"CAT": "bảo trì theo lịch"}
    assert departments_in_maintenance([WEEKLY, FIXED], at("2026-12-05 23:00"), HCM) == \
        {"STP": "bảo trì định kỳ"}


def test_maintenance_config_errors() -> None:
    with pytest.raises(ValueError, match="at least one of ranges or weekly"):
        MaintenanceConfig.model_validate({"department": "STP"})
    with pytest.raises(ValueError, match="end must be after start"):
        MaintenanceConfig.model_validate({"department": "STP", "ranges": [
            {"start": "2026-12-05 12:00", "end": "2026-12-05 08:00"}]})
    with pytest.raises(ValueError, match="time of day"):
        MaintenanceConfig.model_validate({"department": "STP", "weekly": [
            {"days": ["mon"], "start": "25:00", "end": "02:00"}]})
