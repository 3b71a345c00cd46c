"""Pushed events reach the wall: an `event` stream delta and the security panel's latest list."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from ioc.model import Event
from service.app import IocApp
from tests.events.conftest import INGEST_TOKEN, VIEWER_TOKEN, events_config
from tests.web.test_stream import events as sse_events
from tests.web.test_stream import next_event
from web.i18n import Translator
from web.wall import latest_security, security_panel
from web.wall_feed import EVENTS_PER_DELTA

HOSTILE = "<script>alert('x')</script> Dò quét cổng"


def pushed(i: int, severity: str, **over: Any) -> dict[str, Any]:
    doc = {"source": "waf", "id": f"w-{i}", "severity": severity, "category": "intrusion",
           "title": f"Chặn truy cập {i}", "department": "STP",
           "occurred_at": time.time() - 100 + i / 10}
    doc.update(over)
    return doc


async def push(session: aiohttp.ClientSession, app: IocApp, body: Any) -> None:
    async with session.post(app.url + "/api/v1/events", data=json.dumps(body),
                            headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as resp:
        assert resp.status == 202, await resp.text()


async def test_pushed_events_go_to_the_stream_and_the_security_panel(
        events_app: IocApp) -> None:
    app = events_app
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + "/api/v1/stream", headers=viewer) as resp:
        assert resp.status == 200
        stream = sse_events(resp)
        await next_event(stream, "heartbeat")
        await push(session, app, [pushed(1, "low"),
                                  pushed(2, "critical", title=HOSTILE, category="malware")])
        delta = await next_event(stream, "event")
        assert delta["data"]["count"] == 2
        first = delta["data"]["events"][0]  # the most severe first
        assert (first["source"], first["id"], first["severity"], first["title"]) == \
            ("waf", "w-2", "critical", HOSTILE)
        panel = await next_event(stream, "panel", lambda d: d["panel"] == "security"
                                 and "event-list" in d["html"]["vi"])
        vi, en = panel["data"]["html"]["vi"], panel["data"]["html"]["en"]
        assert "<script>" not in vi and "&lt;script&gt;" in vi  # escaped, never markup
        assert "Mã độc" in vi and "Malware" in en              # category in each language
        assert "Nghiêm trọng" in vi and "Critical" in en
        assert "w-1" not in vi                                   # low is counted, not listed
        assert "Thấp" in vi                                      # ... in the counts by severity

        # A resent batch is stored once, so it is not streamed again.
        await push(session, app, [pushed(1, "low")])
        await push(session, app, [pushed(3, "high")])
        again = await next_event(stream, "event")
        assert [e["id"] for e in again["data"]["events"]] == ["w-3"]


async def test_the_page_lists_stored_events_after_a_restart(tmp_path: Path) -> None:
    app = IocApp(events_config(tmp_path))
    await app.start()
    try:
        async with aiohttp.ClientSession() as session:
            await push(session, app, [pushed(i, "high") for i in range(6)]
                       + [pushed(9, "medium")])
        await app.events.flush()
    finally:
        await app.stop(grace=1.0)
    app = IocApp(events_config(tmp_path))  # same database, nothing in memory
    await app.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(
                app.url + "/?lang=en", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}
        ) as resp:
            page = await resp.text()
        assert resp.status == 200
        listed = [f'data-event="waf/w-{i}"' in page for i in range(6)]
        assert listed == [False, False, True, True, True, True]  # the newest four
        assert 'data-event="waf/w-9"' not in page
        assert "Latest high and critical" in page
    finally:
        await app.stop(grace=1.0)


def event(i: int, severity: str, at: float) -> Event:
    return Event(source="siem", id=str(i), severity=severity, category="ddos",
                 title=f"t{i}", occurred_at=at, department="STP")


def test_latest_keeps_the_newest_high_and_critical_once() -> None:
    rows = latest_security([], [event(1, "high", 10), event(2, "low", 50)], {"STP": "Sở Tư pháp"})
    assert [(r["id"], r["department_name"]) for r in rows] == [("1", "Sở Tư pháp")]
    rows = latest_security(rows, [event(1, "high", 10), event(3, "critical", 30),
                                  event(4, "high", 20), event(5, "high", 5),
                                  event(6, "critical", 40)], {}, shown=4)
    assert [r["id"] for r in rows] == ["6", "3", "4", "1"]


def test_panel_shows_latest_without_counts_and_hides_when_empty() -> None:
    from ioc.cache import SeriesCache

    cache = SeriesCache(600, 100)
    assert security_panel(cache, 1000.0, 60) is None
    latest = latest_security([], [event(1, "critical", 990.0)], {})
    panel = security_panel(cache, 1000.0, 60, latest)
    assert panel is not None
    assert panel["by_severity"] == [] and panel["latest"] == latest
    assert panel["updated"] == 990.0 and not panel["stale"]
    assert Translator("vi")("category_ddos") == "Tấn công từ chối dịch vụ"


async def test_a_flood_makes_one_delta_per_stored_batch(events_app: IocApp) -> None:
    app = events_app
    before = app.wall.stream.last_id
    batch = [pushed(i, "medium") for i in range(500)]
    async with aiohttp.ClientSession() as session:
        await push(session, app, batch)
    await app.events.flush()
    kinds = [e for e in app.wall.stream.missed_since(before) or [] if e.kind == "event"]
    assert len(kinds) == 1
    data = json.loads(kinds[0].data)
    assert data["count"] == 500 and len(data["events"]) == EVENTS_PER_DELTA
