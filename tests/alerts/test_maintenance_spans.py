"""The config's maintenance schedule laid out as instants: the same minutes ``in_window``
mutes are the ones the ledger, the reports and the status page count as planned."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.maintenance import MaintenanceConfig, in_window, scheduled_spans

VN = ZoneInfo("Asia/Ho_Chi_Minh")

WINDOWS = [
    {"department": "STP", "weekly": [{"days": ["sat"], "start": "22:00", "end": "02:00"}]},
    {"department": "SYT", "weekly": [{"days": ["mon", "wed", "fri"], "start": "12:00",
                                      "end": "12:30"}],
     "ranges": [{"start": "2026-11-30 23:00", "end": "2026-12-01 01:30"}]},
]


@pytest.mark.parametrize("raw", WINDOWS)
def test_spans_hold_exactly_the_minutes_in_window_says(raw: dict) -> None:
    window = MaintenanceConfig.model_validate(raw)
    start = datetime(2026, 11, 27, 0, 0, tzinfo=VN).timestamp()
    end = datetime(2026, 12, 8, 0, 0, tzinfo=VN).timestamp()
    spans = scheduled_spans(window, start, end, VN)
    assert spans == sorted(spans) and spans
    for minute in range(int((end - start) // 60)):
        ts = start + minute * 60 + 30
        assert in_window(window, ts, VN) == any(a <= ts < b for a, b in spans), \
            datetime.fromtimestamp(ts, VN)


def test_a_slot_over_midnight_that_began_before_the_span_is_included() -> None:
    window = MaintenanceConfig.model_validate(WINDOWS[0])
    # Sunday 29 November 01:00: inside Saturday's 22:00-02:00 slot
    start = datetime(2026, 11, 29, 1, 0, tzinfo=VN).timestamp()
    spans = scheduled_spans(window, start, start + 3600, VN)
    assert [(datetime.fromtimestamp(a, VN).hour, datetime.fromtimestamp(b, VN).hour)
            for a, b in spans] == [(22, 2)]


async def test_the_service_gives_the_ledger_the_schedule_open_now(tmp_path) -> None:
    """What the incident job is handed: the config's slot open now, beside announced ones."""
    from ioc import clock
    from service.app import IocApp
    from tests.conftest import demo_config, free_port

    now = datetime.fromtimestamp(clock.now(), VN)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]
    extra = {"alerts": {"maintenance": [{"department": "STP", "weekly": [
        {"days": [day], "start": "00:00", "end": "00:00"}]}]}}  # the whole day
    app = IocApp(demo_config(tmp_path, free_port(), codes=["STP"], extra=extra))
    windows = app.incident_windows()
    assert any(w.department == "STP" and w.covers("STP", clock.now()) for w in windows)
    assert not any(w.covers("SYT", clock.now()) for w in windows)
