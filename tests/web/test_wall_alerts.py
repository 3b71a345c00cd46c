"""The wall's alerts panel is told of every alert change as it happens, not polled.

Delivery (the dispatcher) calls its listeners after each change of the alerts it shows; the
wall publishes its alerts panel then, and arms one timer for the next instant time alone
changes the panel (a silence, ack or maintenance window starting or ending).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from alerts.maintenance import MaintenanceConfig, next_config_boundary
from alerts.model import Alert, AlertState
from ioc import clock
from ioc.model import make_labels
from service.app import IocApp
from tests.conftest import demo_config, free_port, polled_app
from tests.web.test_stream import events, next_event

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def firing(name: str, now: float, department: str = "STP") -> Alert:
    return Alert(labels=make_labels({"alertname": name, "department": department,
                                     "severity": "critical", "target": f"{name}-target"}),
                 annotations=(("summary", f"{name} is down"),), state=AlertState.FIRING,
                 value=0.0, active_at=now - 60, fired_at=now - 30, last_eval=now)


def alerts_panel(name: str, *, present: bool = True, marked: bool | None = None) -> Any:
    """A predicate over `panel` deltas: the alerts panel with (or without) alert ``name``."""
    def check(data: dict[str, Any]) -> bool:
        if data.get("panel") != "alerts":
            return False
        html = data["html"]["vi"]
        if (f"{name} is down" in html) != present:
            return False
        return marked is None or (" handled" in html) == marked
    return check


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[IocApp]:
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                         extra={"wall": {"heartbeat": "200ms"}})
    async with polled_app(config) as (app, _):
        yield app


async def test_alert_changes_reach_the_panel_when_they_happen(app: IocApp) -> None:
    desk = app.dispatcher
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + "/api/v1/stream?since=" + app.wall.stream.last_id) as resp:
        stream = events(resp)
        await next_event(stream, "heartbeat")  # subscribed
        await desk.update([firing("PortalDown", clock.now())], clock.now())
        await next_event(stream, "panel", alerts_panel("PortalDown"))
        # A silence that covers it marks it handled at once; ending the silence unmarks it.
        silence = await desk.add_silence(['alertname="PortalDown"'], starts_at=clock.now(),
                                         ends_at=clock.now() + 3600, created_by="ca-truc",
                                         comment="bảo trì", now=clock.now())
        await next_event(stream, "panel", alerts_panel("PortalDown", marked=True))
        await desk.expire_silence(silence.id, by="ca-truc", now=clock.now())
        await next_event(stream, "panel", alerts_panel("PortalDown", marked=False))
        # The next evaluation without it clears it from the panel.
        await desk.update([], clock.now())
        await next_event(stream, "panel", alerts_panel("PortalDown", present=False))


async def test_a_silence_starting_later_marks_the_alert_when_it_starts(app: IocApp) -> None:
    desk = app.dispatcher
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + "/api/v1/stream?since=" + app.wall.stream.last_id) as resp:
        stream = events(resp)
        await next_event(stream, "heartbeat")  # subscribed
        await desk.update([firing("DbSlow", clock.now())], clock.now())
        await next_event(stream, "panel", alerts_panel("DbSlow", marked=False))
        now = clock.now()
        starts = now + 0.3  # no evaluation and no operator write happens in between
        await desk.add_silence(['alertname="DbSlow"'], starts_at=starts, ends_at=starts + 60,
                               created_by="ca-truc", comment="bảo trì", now=now)
        assert desk.next_change(now) == pytest.approx(starts)
        await next_event(stream, "panel", alerts_panel("DbSlow", marked=True))
        assert clock.now() >= starts


async def test_no_screen_no_rendering_and_no_timer_without_a_boundary(app: IocApp) -> None:
    assert app.wall.stream.client_count == 0
    before = app.wall.stream.last_id
    await app.dispatcher.update([firing("Quiet", clock.now())], clock.now())
    assert app.wall.stream.last_id == before  # nobody reads deltas: none is rendered
    assert app.dispatcher.next_change(clock.now()) is None
    assert app.wall._alerts_timer.handle is None


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-12-07 21:00", "2026-12-07 22:00"),   # Monday: tonight's slot opens
    ("2026-12-07 23:00", "2026-12-08 02:00"),   # inside it: it closes after midnight
    ("2026-12-08 03:00", "2026-12-09 22:00"),   # Tuesday is not listed: Wednesday's opens
    ("2026-12-13 21:59", "2026-12-13 22:00"),   # Sunday, a minute before
    ("2026-12-14 22:00", "2026-12-15 02:00"),   # exactly at an opening: the closing is next
])
def test_next_boundary_of_a_weekly_window(now: str, expected: str) -> None:
    window = MaintenanceConfig.model_validate({
        "department": "STP", "weekly": [{"days": ["mon", "wed", "sun"], "start": "22:00",
                                         "end": "02:00"}]})
    assert next_config_boundary([window], local(now), TZ) == local(expected)


def test_next_boundary_of_ranges_and_of_nothing() -> None:
    window = MaintenanceConfig.model_validate({
        "department": "CAT", "ranges": [{"start": "2026-12-05 22:00", "end": "2026-12-06 01:30"}]})
    assert next_config_boundary([window], local("2026-12-05 10:00"), TZ) == \
        local("2026-12-05 22:00")
    assert next_config_boundary([window], local("2026-12-05 23:00"), TZ) == \
        local("2026-12-06 01:30")
    assert next_config_boundary([window], local("2026-12-06 01:30"), TZ) is None
    assert next_config_boundary([], local("2026-12-06 01:30"), TZ) is None


async def test_next_change_is_the_earliest_future_boundary(app: IocApp) -> None:
    desk = app.dispatcher
    now = clock.now()
    await desk.update([firing("Ack", now)], now)
    await desk.add_silence(['alertname="X"'], starts_at=now - 10, ends_at=now + 500,
                           created_by="a", comment="bảo trì", now=now)
    assert desk.next_change(now) == pytest.approx(now + 500)
    await desk.add_maintenance(department="CAT", starts_at=now + 100, ends_at=now + 200,
                               comment="bảo trì", created_by="a", now=now)
    assert desk.next_change(now) == pytest.approx(now + 100)
    fingerprint = next(iter(desk.alerts))
    await desk.acknowledge(fingerprint, by="a", comment="bảo trì", now=now, duration=50)
    assert desk.next_change(now) == pytest.approx(now + 50)
    assert desk.next_change(now + 150) == pytest.approx(now + 200)
    assert desk.next_change(now + 600) is None
    # The wall keeps one timer, at the earliest of them.
    assert app.wall._alerts_timer.handle is not None


async def test_a_failing_listener_does_not_stop_delivery(app: IocApp,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    told: list[int] = []

    def broken() -> None:
        raise RuntimeError("listener bug")

    app.dispatcher.subscribe(broken)
    app.dispatcher.subscribe(lambda: told.append(1))
    await app.dispatcher.update([firing("Still", clock.now())], clock.now())
    assert told == [1]
    assert "Still" in {a.label("alertname") for a in app.dispatcher.alerts.values()}
    assert any("alert change listener failed" in r.getMessage() for r in caplog.records)


async def test_screens_connecting_keep_one_timer(app: IocApp) -> None:
    """Every refresh moves the one timer; none leaves another one running beside it."""
    now = clock.now()
    await app.dispatcher.add_silence(['alertname="Later"'], starts_at=now + 3600,
                                     ends_at=now + 7200, created_by="a", comment="bảo trì",
                                     now=now)
    handles = []
    for _ in range(3):
        app.wall.on_screen()
        await asyncio.sleep(0)  # the refresh runs on the loop's next turn
        assert app.wall._alerts_timer.handle is not None
        handles.append(app.wall._alerts_timer.handle)
    assert len(set(map(id, handles))) == 3
    assert [h.cancelled() for h in handles] == [True, True, False]
    assert handles[-1].when() - asyncio.get_running_loop().time() == pytest.approx(
        now + 3600 - clock.now(), abs=5.0)
