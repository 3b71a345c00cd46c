"""The web layer runs around a WebContext alone: no IocApp, no scheduler, no collectors.

What a handler shows comes from the context's parts and its clock; a write goes through the
context's operations. Built here from real parts (a status board, caches, SQLite stores,
delivery) with a fixed clock, which the web layer must use instead of the real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from alerts.dispatcher import build_dispatcher
from alerts.model import Alert, AlertState
from ioc.cache import SeriesCache
from ioc.event_sink import EventSink
from ioc.metrics import DeliveryMetrics
from ioc.model import make_labels
from ioc.status import StatusBoard, TargetState
from ioc.store import open_store
from ioc.store.announcement import AnnouncementStore
from ioc.store.audit import AuditStore
from ioc.store.events import EventStore
from ioc.store.incidents import IncidentStore
from ioc.trace import UnknownTarget
from service.config import Config, parse_config
from web.app import create_web_app
from web.client_limits import TrustMetrics
from web.context import WebContext
from web.forwarded import TrustedProxies
from web.wall_feed import WallFeed

NOW = 1_765_000_000.0  # a fixed instant: 2025-12-06 05:46:40 UTC
ADMIN = "admin-token-0123456789"


@dataclass
class Outcome:
    """What the context's reload returns (the real one is service.reload.ReloadResult)."""

    ok: bool
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors}


@pytest.fixture
async def web_client(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[
        tuple[TestClient[Any, Any], WebContext, list[Outcome]]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"
    config: Config = parse_config({
        "storage": {"url": url},
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "auth": {"tokens": [{"name": "admin", "token": ADMIN, "roles": ["admin"]}]},
    }, env={})
    registry = CollectorRegistry()
    board = StatusBoard()
    board.register(TargetState(name="stp-portal", department="STP", kind="http",
                               interval=30.0, up=False, last_check=NOW - 5,
                               reason="timeout"))
    samples = open_store(url)
    await samples.open()
    delivery = build_dispatcher(config, DeliveryMetrics(registry), lambda: NOW,
                                department_names={"STP": "Sở Tư pháp"})
    await delivery.open()
    reloads: list[Outcome] = []

    async def reload() -> Outcome:
        reloads.append(Outcome(ok=False, errors=["collectors[0].url: not a URL"]))
        return reloads[-1]

    async def report(period: str, now: float, department: str | None) -> dict[str, Any]:
        raise ValueError(f"no report in this test ({period})")

    async def try_target(name: str) -> Any:
        raise UnknownTarget([name], ["stp-portal"])

    hooks: list[Any] = []
    context = WebContext(
        config=lambda: config, clock=lambda: NOW, board=board,
        cache=SeriesCache(900.0, 64), event_counts=SeriesCache(900.0, 64),
        department_names={"STP": "Sở Tư pháp"}, samples=samples,
        events=EventSink(EventStore(url), registry), audit=AuditStore(url),
        incidents=IncidentStore(url), report=report,
        announcements=AnnouncementStore(url), alerts=delivery, registry=registry,
        trust=TrustMetrics(registry), polling=lambda: True, shard_ready=lambda: None,
        proxies=TrustedProxies([]), try_target=try_target, monotonic=lambda: 0.0,
        reload=reload, last_reload=lambda: reloads[-1] if reloads else None,
        add_poll_hook=hooks.append)
    wall = WallFeed(context, epoch="e1")
    wall.attach()
    await wall.open()
    await context.audit.open()
    client = await aiohttp_client(create_web_app(context, wall))
    try:
        yield client, context, reloads
    finally:
        await client.close()
        await wall.aclose()
        await context.audit.close()
        await delivery.stop()
        await samples.close()


async def test_status_and_readiness_read_the_context(web_client: Any) -> None:
    client, context, _ = web_client
    async with client.get("/api/v1/status") as resp:
        body = await resp.json()
    assert resp.status == 200
    (row,) = body["targets"]
    assert row["name"] == "stp-portal" and row["up"] is False
    assert row["department_name"] == "Sở Tư pháp"
    assert body["generated_at"] == NOW  # the context's clock, not the real time
    async with client.get("/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["checks"]["scheduler"] == "ok"
    # A rename reaches the page through the one mapping the context holds.
    context.department_names["STP"] = "Sở Tư pháp tỉnh"
    async with client.get("/api/v1/status") as resp:
        assert (await resp.json())["targets"][0]["department_name"] == "Sở Tư pháp tỉnh"


async def test_the_wall_subscribed_through_the_context(web_client: Any) -> None:
    client, context, _ = web_client
    assert len(context.events._listeners) == 1  # the wall's security panel
    async with client.get("/") as resp:
        html = await resp.text()
    assert resp.status == 200 and "Sở Tư pháp" in html
    # Its pipeline hook was handed to the context, and delivery tells it of alert changes.
    alert = Alert(labels=make_labels({"alertname": "PortalDown", "department": "STP",
                                      "severity": "critical"}),
                  annotations=(("summary", "cổng dịch vụ công không truy cập được"),),
                  state=AlertState.FIRING, value=0.0, active_at=NOW - 60, fired_at=NOW - 30,
                  last_eval=NOW)
    await context.alerts.update([alert], NOW)  # delivery itself: the facade names no update
    async with client.get("/") as resp:
        assert "cổng dịch vụ công không truy cập được" in await resp.text()


async def test_reload_goes_through_the_context(web_client: Any) -> None:
    client, _, reloads = web_client
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with client.post("/-/reload", headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["detail"]["errors"] == ["collectors[0].url: not a URL"]
    async with client.get("/-/reload", headers=headers) as resp:
        assert (await resp.json())["reload"] == {"ok": False,
                                                  "errors": ["collectors[0].url: not a URL"]}
    assert len(reloads) == 1
    async with client.post("/-/reload") as resp:  # anonymous: no admin role
        assert resp.status == 401


async def test_a_try_goes_through_the_context(web_client: Any) -> None:
    client, _, _ = web_client
    async with client.post("/api/v1/try/nope", headers={"Authorization": f"Bearer {ADMIN}"}
                           ) as resp:
        body = await resp.json()
    assert resp.status == 404 and body["error"] == "unknown target"
