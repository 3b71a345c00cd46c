"""Alert delivery changed at a reload: receivers, routing, inhibition and maintenance.

A running ioc with a real fault in the simulator and real webhook consumers; the config is
reloaded with a new delivery section. Nothing queued is lost, no one is told twice, and a
receiver added by the reload hears what fires.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from alerts.model import AlertState
from ioc import clock
from service.app import IocApp
from service.config import Config
from service.reload import effective_config, restart_required
from tests.alerts.test_delivery_e2e import RULE, fault
from tests.conftest import demo_config, free_port
from tests.helpers import Changes

pytestmark = pytest.mark.slow

VN = ZoneInfo("Asia/Ho_Chi_Minh")


class Hook:
    """A webhook consumer that can be told to fail (503) until further notice."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.failing = False
        self.refused = 0
        self.changed = Changes()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.failing:
            self.refused += 1
            self.changed.set()
            return web.Response(status=503, text="down for maintenance")
        self.payloads.append(body)
        self.changed.set()
        return web.Response(text="ok")

    def told(self) -> list[tuple[str, str]]:
        """(status, department) of every payload received, in order."""
        return [(p["status"], p["groupLabels"].get("department", "")) for p in self.payloads]

    async def until(self, predicate: Callable[[Hook], bool], limit: float = 15.0) -> None:
        await self.changed.until(lambda: predicate(self), limit)


@pytest.fixture
async def hooks(aiohttp_server: Any) -> AsyncIterator[tuple[tuple[Hook, str], ...]]:
    out = []
    for _ in range(2):
        consumer = Hook()
        app = web.Application()
        app.router.add_post("/hook", consumer.handle)
        server = await aiohttp_server(app)
        out.append((consumer, str(server.make_url("/hook"))))
    yield tuple(out)


def config(tmp_path: Path, sim_port: int, **alerts: Any) -> Config:
    section = {"evaluation_interval": "200ms", "default_rules": False, "rules": [RULE],
               "outbox": {"initial_backoff": "200ms", "max_backoff": "500ms"}, **alerts}
    return demo_config(tmp_path, sim_port, codes=["STP", "CAT"], extra={"alerts": section})


@contextlib.asynccontextmanager
async def running(tmp_path: Path, sim_port: int, **alerts: Any) -> AsyncIterator[IocApp]:
    app = IocApp(config(tmp_path, sim_port, **alerts))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def route(receiver: str, **more: Any) -> dict[str, Any]:
    return {"receiver": receiver, "group_by": ["alertname", "department"],
            "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h", **more}


def firing(app: IocApp, department: str) -> bool:
    return any(a.state is AlertState.FIRING and dict(a.labels).get("department") == department
               for a in app.dispatcher.alerts.values())


async def alert_fires(app: IocApp, department: str) -> None:
    changes = Changes()
    app.dispatcher.subscribe(changes.set)
    await changes.until(lambda: firing(app, department), 15.0)


async def test_a_receiver_added_by_a_reload_hears_what_fires(tmp_path: Path, hooks) -> None:
    (consumer, url), _ = hooks
    sim_port = free_port()
    async with running(tmp_path, sim_port) as app:  # no route: shown, sent to no one
        sim = f"http://127.0.0.1:{sim_port}"
        await fault(sim, "STP", "down")
        await alert_fires(app, "STP")
        result = await app.reload(config(
            tmp_path, sim_port, route=route("so-tt-tt"),
            receivers=[{"name": "so-tt-tt", "webhook": [{"url": url}]}]))
        assert result.ok and result.delivery == ["receivers", "route"]
        assert result.restart_required == []
        assert [r.name for r in app.config.alerts.receivers] == ["so-tt-tt"]
        await consumer.until(lambda h: ("firing", "STP") in h.told())
        await fault(sim, "STP", None)
        await consumer.until(lambda h: ("resolved", "STP") in h.told())
        assert consumer.told() == [("firing", "STP"), ("resolved", "STP")]


async def test_what_was_queued_for_a_removed_receiver_is_still_delivered(
        tmp_path: Path, hooks) -> None:
    (old, old_url), (new, new_url) = hooks
    sim_port = free_port()
    receivers = [{"name": "cu", "webhook": [{"url": old_url}]}]
    async with running(tmp_path, sim_port, route=route("cu"), receivers=receivers) as app:
        sim = f"http://127.0.0.1:{sim_port}"
        await fault(sim, "STP", "down")
        await old.until(lambda h: ("firing", "STP") in h.told())
        old.failing = True  # CAT's firing is queued for "cu" and waits in the outbox
        await fault(sim, "CAT", "down")
        await old.until(lambda h: h.refused > 0)

        result = await app.reload(config(
            tmp_path, sim_port, route=route("moi"),
            receivers=[{"name": "moi", "webhook": [{"url": new_url}]}]))
        assert result.delivery == ["receivers", "route"]
        # The new receiver hears both outages (its groups are new under the new tree) ...
        await new.until(lambda h: {("firing", "STP"), ("firing", "CAT")} <= set(h.told()))
        # ... and the removed one still gets what was queued for it before the reload.
        old.failing = False
        await old.until(lambda h: ("firing", "CAT") in h.told())

        await fault(sim, "STP", None)
        await fault(sim, "CAT", None)
        await new.until(lambda h: {("resolved", "STP"), ("resolved", "CAT")} <= set(h.told()))
        assert sorted(new.told()) == [("firing", "CAT"), ("firing", "STP"),
                                      ("resolved", "CAT"), ("resolved", "STP")]
        # Nothing new was queued for the removed receiver: not even the resolutions.
        assert old.told() == [("firing", "STP"), ("firing", "CAT")]


async def test_a_reload_that_keeps_the_tree_tells_no_one_again(tmp_path: Path,
                                                               hooks) -> None:
    (consumer, url), _ = hooks
    sim_port = free_port()
    receivers = [{"name": "so-tt-tt", "webhook": [{"url": url}]}]
    async with running(tmp_path, sim_port, route=route("so-tt-tt"),
                       receivers=receivers) as app:
        sim = f"http://127.0.0.1:{sim_port}"
        await fault(sim, "STP", "down")
        await consumer.until(lambda h: ("firing", "STP") in h.told())
        # Same tree shape, other timings, a new inhibit rule: the STP group is formed again,
        # asks the notification log after its group_wait and stays quiet.
        result = await app.reload(config(
            tmp_path, sim_port, route=route("so-tt-tt", group_wait="100ms"),
            receivers=receivers,
            inhibit_rules=[{"source_matchers": ['alertname="PortalDown"'],
                            "target_matchers": ['severity="warning"'],
                            "equal": ["department"]}]))
        assert result.delivery == ["inhibit_rules", "route"]
        assert app.dispatcher.settings.route.group_wait == 0.1
        await fault(sim, "CAT", "down")  # fires at least `for` (1 s) after the reload
        await consumer.until(lambda h: ("firing", "CAT") in h.told())
        assert consumer.told() == [("firing", "STP"), ("firing", "CAT")]


def local(moment: datetime) -> str:
    return moment.astimezone(VN).strftime("%Y-%m-%d %H:%M")


async def test_a_maintenance_window_added_by_a_reload_marks_the_alert_at_once(
        tmp_path: Path) -> None:
    sim_port = free_port()
    async with running(tmp_path, sim_port) as app:
        await fault(f"http://127.0.0.1:{sim_port}", "STP", "down")
        await alert_fires(app, "STP")
        (fingerprint,) = [fp for fp, a in app.dispatcher.alerts.items()
                          if dict(a.labels).get("department") == "STP"]
        assert fingerprint not in app.dispatcher.muted(clock.now())
        now = datetime.now(VN)
        window = {"department": "STP", "comment": "nâng cấp máy chủ",
                  "ranges": [{"start": local(now - timedelta(hours=1)),
                              "end": local(now + timedelta(hours=1))}]}
        result = await app.reload(config(tmp_path, sim_port, maintenance=[window]))
        assert result.delivery == ["maintenance"]
        muted = app.dispatcher.muted(clock.now())
        assert muted[fingerprint]["maintenance"]
        # and the window's end, read from the new config, is when time alone changes it
        assert app.dispatcher.next_change(clock.now()) is not None
        result = await app.reload(config(tmp_path, sim_port))
        assert fingerprint not in app.dispatcher.muted(clock.now())


def test_delivery_waits_for_a_restart_when_the_on_call_teams_change(tmp_path: Path) -> None:
    teams = {"people": [{"id": "a", "name": "Nguyễn Văn A", "email": "a@haugiang.gov.vn"}],
             "teams": [{"name": "ha-tang", "rotation": {"start": "2026-01-01",
                                                        "people": ["a"]}}]}
    old = config(tmp_path, 9, route=route("so-tt-tt"),
                 receivers=[{"name": "so-tt-tt", "webhook": [{"url": "http://127.0.0.1:9/"}]}])
    new = config(tmp_path, 9, route=route("oncall:ha-tang"), oncall=teams,
                 receivers=[{"name": "so-tt-tt", "webhook": [{"url": "http://127.0.0.1:9/"}]}])
    assert restart_required(old, new) == ["alerts.route", "alerts.oncall"]
    kept = effective_config(old, new)
    assert kept.alerts.route == old.alerts.route and kept.alerts.oncall == old.alerts.oncall
    # without the on-call change the same route edit applies
    plain = config(tmp_path, 9, route=route("so-tt-tt", group_wait="5s"),
                   receivers=[{"name": "so-tt-tt", "webhook": [{"url": "http://127.0.0.1:9/"}]}])
    assert restart_required(old, plain) == []
    assert effective_config(old, plain).alerts.route == plain.alerts.route
