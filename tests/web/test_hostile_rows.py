"""A database that already holds absurd rows still serves the wall and the console.

Rows like these were written by senders before times were bounded (a syslog line dated
9999-12-31), or by hand; every format filter must show them as "—" instead of raising.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from ioc import clock
from ioc.store.alert_delivery import DeliveryStore, silences
from ioc.store.events import EventStore, events_table
from service.app import IocApp
from tests.conftest import demo_config, free_port
from web.i18n import Translator

OPERATOR = "operator-token-0123456789"
INT64_MAX = 2**63 - 1
YEAR_9999_MS = 253_402_300_799_000

HOSTILE_NUMBERS = [None, math.nan, math.inf, -math.inf, -1.0, -1e300, 1e300, 10**40,
                   -(10**40), INT64_MAX, YEAR_9999_MS / 1000, 253_402_300_800.0, "12", True,
                   object()]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=repr)
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_format_is_total(value: object, lang: str) -> None:
    t = Translator(lang)
    for shown in (t.number(value), t.number(value, 2), t.percent(value), t.clock(value),
                  t.hhmm(value), t.date(value), t.age(value), t.span(value)):
        assert isinstance(shown, str) and shown


def _event_row(event_id: str, occurred_ms: int, received_ms: int, labels: str,
               severity: str = "critical") -> dict[str, object]:
    return {"source": "syslog", "event_id": event_id, "occurred_at": occurred_ms,
            "received_at": received_ms, "severity": severity, "category": "intrusion",
            "department": "STP", "host": "fw01", "title": f"hàng {event_id}",
            "message": "", "labels": labels}


async def _seed(url: str, now: float) -> None:
    """Create the schema through the stores, then write the rows as no sender could today."""
    for store in (EventStore(url), DeliveryStore(url)):
        await store.open()
        await store.close()
    rows = [
        _event_row("y9999", YEAR_9999_MS, YEAR_9999_MS, '{"sent_at": "9999-12-31"}'),
        _event_row("max", INT64_MAX, INT64_MAX, "{}"),
        _event_row("min", -INT64_MAX, -INT64_MAX, "{}"),
        _event_row("zero", 0, 0, '{"x": NaN, "y": 1e999, "z": [1, {"a": null}]}'),
        _event_row("notjson", 1_000, 1_000, "not json"),
        _event_row("list", 2_000, 2_000, "[1, 2]"),
        _event_row("oddsev", 3_000, 3_000, "{}", severity="zzz"),
        _event_row("real", round(now * 1000), round(now * 1000), "{}"),
    ]
    silence = {"id": "forever", "matchers": json.dumps(['department="STP"']),
               "starts_at": -INT64_MAX, "ends_at": INT64_MAX, "created_by": "x",
               "comment": "c", "created_at": -INT64_MAX}
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(events_table), rows)
            await conn.execute(insert(silences), [silence])
    finally:
        await engine.dispose()


async def test_absurd_rows_in_the_database_still_serve_wall_and_console(
        tmp_path: Path) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP"], extra={
        "auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]}]}})
    await _seed(config.storage.url, clock.now() - 60)
    app = IocApp(config)
    await app.start()
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            for path in ("/", "/?lang=en", "/api/v1/status"):
                async with session.get(app.url + path) as resp:
                    assert resp.status == 200, (path, await resp.text())
            headers = {"Authorization": f"Bearer {OPERATOR}"}
            for path in ("/api/v1/events", "/api/v1/events?limit=1000", "/api/v1/silences",
                         "/api/v1/alerts"):
                async with session.get(app.url + path, headers=headers) as resp:
                    assert resp.status == 200, (path, await resp.text())
            async with session.get(app.url + "/api/v1/events", headers=headers) as resp:
                listed = {e["id"] for e in (await resp.json())["events"]}
            assert {"y9999", "max"} <= listed  # shown as stored, and still served
            async with session.post(app.url + "/console/login", data={"token": OPERATOR},
                                    headers={"Origin": app.url.rstrip("/")},
                                    allow_redirects=False) as resp:
                assert resp.status == 303
            for path in ("/console", "/console?lang=en"):
                async with session.get(app.url + path) as resp:
                    page = await resp.text()
                    assert resp.status == 200, (path, page)
                    assert "forever" in page or "STP" in page
            async with session.get(app.url + "/healthz") as resp:
                assert resp.status == 200
        # The wall's "latest" events are not pinned by rows dated past the future bound.
        latest = {row["id"] for row in app.wall.state.security}
        assert "real" in latest and not latest & {"y9999", "max"}, latest
    finally:
        await app.stop(grace=1.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e300, -1e300, 10**40,
                                   253_402_300_800.0, -1.0], ids=repr)
def test_notification_formats_are_total(value: float) -> None:
    from alerts.messages import format_value, human_duration, local_time
    from alerts.rules import human_duration as rule_duration
    from alerts.rules import percent

    for shown in (format_value(value), human_duration(value), local_time(value, "UTC"),
                  rule_duration(value), percent(value)):
        assert isinstance(shown, str) and shown
