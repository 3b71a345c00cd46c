"""The live stream: deltas from the pipeline, resume by event id, heartbeat, client cap."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from ioc import clock
from ioc.model import CollectResult
from ioc.pipeline import PollOutcome
from service.app import IocApp
from tests.conftest import SIM_TOKEN, demo_config, free_port, polled_app
from web.errors import ApiError
from web.stream import CLIENT_QUEUE, EventStream
from web.wall_feed import TILE_SPACING


def make_stream(ring: int = 10, clients: int = 2) -> tuple[EventStream, CollectorRegistry]:
    registry = CollectorRegistry()
    return EventStream(registry, epoch="e1", ring_size=ring, max_clients=clients,
                       heartbeat=1.0), registry


def test_resume_gives_what_was_missed_or_asks_for_a_reset() -> None:
    stream, _ = make_stream(ring=3)
    for n in range(5):
        stream.publish("tile", {"n": n})
    assert stream.last_id == "e1.5"
    assert [json.loads(e.data)["n"] for e in stream.missed_since("e1.3") or []] == [3, 4]
    assert stream.missed_since("e1.5") == []
    assert stream.missed_since("") == []
    assert stream.missed_since("e1.1") is None    # fell out of the ring
    assert stream.missed_since("e0.4") is None    # an earlier run of ioc
    assert stream.missed_since("e1.9") is None    # from the future
    assert stream.missed_since("garbage") is None


def test_client_cap_and_slow_clients_are_counted() -> None:
    stream, registry = make_stream(clients=2)
    fast, slow = stream.subscribe(), stream.subscribe()
    with pytest.raises(ApiError) as err:
        stream.subscribe()
    assert err.value.status == 503
    assert registry.get_sample_value("ioc_wall_stream_rejected_total") == 1
    assert registry.get_sample_value("ioc_wall_stream_clients") == 2
    for n in range(CLIENT_QUEUE + 1):
        stream.publish("tile", {"n": n})
        fast.queue.get_nowait()  # keeps up
    assert slow.closed and stream.client_count == 1
    assert registry.get_sample_value("ioc_wall_stream_dropped_total") == 1


def test_cutting_off_slow_clients_is_logged_once_per_episode(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.stream")
    stream, registry = make_stream(clients=5)
    fast = stream.subscribe()
    slow = [stream.subscribe() for _ in range(4)]
    for n in range(CLIENT_QUEUE + 3):  # the slow four fill their queues at the same event
        stream.publish("tile", {"n": n})
        fast.queue.get_nowait()
    assert all(client.closed for client in slow)
    assert registry.get_sample_value("ioc_wall_stream_dropped_total") == 4
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["wall stream client queue is full: cutting off slow clients "
                     "(counted in metrics)",
                     "wall stream client queue no longer cutting off slow clients"]
    assert caplog.records[-1].fields["dropped"] == 4  # type: ignore[attr-defined]


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Parse a text/event-stream body into {id, event, data} dicts."""
    current: dict[str, Any] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in current:
                current["data"] = json.loads(current["data"])
                yield current
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value if key != "data" else current.get("data", "") + value


async def next_event(stream: AsyncIterator[dict[str, Any]], kind: str,
                     predicate: Any = lambda d: True, limit: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(limit):
        async for event in stream:
            if event.get("event") == kind and predicate(event["data"]):
                return event
    raise AssertionError("stream ended")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[IocApp]:
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                         extra={"wall": {"max_clients": 2, "heartbeat": "200ms"}})
    async with polled_app(config) as (app, _):
        yield app


async def test_a_fault_streams_the_departments_new_tile(app: IocApp) -> None:
    sim = f"http://{app.config.simulator.listen}"
    async with aiohttp.ClientSession() as session:
        async with session.get(app.url + "/api/v1/stream?since=" + app.wall.stream.last_id) \
                as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            stream = events(resp)
            beat = await next_event(stream, "heartbeat")
            assert beat["data"]["now"] > 0
            async with session.post(f"{sim}/_sim/faults",
                                    headers={"Authorization": f"Bearer {SIM_TOKEN}"},
                                    json={"unit": "STP", "fault": "error", "status": 503}):
                pass
            down = await next_event(stream, "tile", lambda d: d["code"] == "STP"
                                    and d["state"] == "down")
            assert set(down["data"]["html"]) == {"vi", "en"}
            assert "Gián đoạn" in down["data"]["html"]["vi"]
            assert "Down" in down["data"]["html"]["en"]
            assert down["id"].startswith(app.wall.stream.epoch + ".")
            last_seen = down["id"]
        # a client that comes back with Last-Event-ID gets what it missed, nothing twice
        async with session.delete(f"{sim}/_sim/faults/STP",
                                  headers={"Authorization": f"Bearer {SIM_TOKEN}"}):
            pass
        async with session.get(app.url + "/api/v1/stream",
                               headers={"Last-Event-ID": last_seen}) as resp:
            stream = events(resp)
            up = await next_event(stream, "tile", lambda d: d["code"] == "STP"
                                  and d["state"] == "up")
            assert int(up["id"].split(".")[1]) > int(last_seen.split(".")[1])


async def test_unknown_id_gets_a_reset_and_the_cap_holds(app: IocApp) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(app.url + "/api/v1/stream",
                               headers={"Last-Event-ID": "old-run.5"}) as first:
            reset = await next_event(events(first), "reset")
            assert reset["id"].startswith(app.wall.stream.epoch + ".")
            async with session.get(app.url + "/api/v1/stream") as second:
                assert second.status == 200
                await next_event(events(second), "heartbeat")
                async with session.get(app.url + "/api/v1/stream") as third:
                    assert third.status == 503
                    body = await third.json()
                    assert body["error"] == "too many stream clients"
                async with session.get(app.url + "/metrics") as metrics:
                    text = await metrics.text()
                assert "ioc_wall_stream_clients 2.0" in text
                assert "ioc_wall_stream_rejected_total 1.0" in text


async def test_refusals_at_the_client_cap_are_logged_once_per_episode(
        app: IocApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.stream")
    def cap_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("wall stream client cap")]

    async with aiohttp.ClientSession() as session:
        first = await session.get(app.url + "/api/v1/stream")
        async with session.get(app.url + "/api/v1/stream") as second:
            await next_event(events(first), "heartbeat")
            await next_event(events(second), "heartbeat")
            for _ in range(5):  # screens retrying against the full cap
                async with session.get(app.url + "/api/v1/stream") as refused:
                    assert refused.status == 503
            assert cap_lines() == ["wall stream client cap reached: refusing "
                                   "(counted in metrics)"]
            first.close()  # one screen leaves; the server notices at its next heartbeat
            async with asyncio.timeout(10):
                while True:  # what a wall screen does: retry until a slot is free
                    async with session.get(app.url + "/api/v1/stream") as again:
                        if again.status == 200:
                            await next_event(events(again), "heartbeat")
                            break
                        assert again.status == 503
                    await asyncio.sleep(0.05)
    assert (app.registry.get_sample_value("ioc_wall_stream_rejected_total") or 0) >= 5
    assert cap_lines() == ["wall stream client cap reached: refusing (counted in metrics)",
                           "wall stream client cap no longer refusing"]


async def test_tile_rebuilds_are_spaced_and_the_last_change_still_arrives(app: IocApp) -> None:
    """A department polled many times a second gets one tile at once and one at the end of
    the spacing carrying the latest state, not a rebuild per poll."""
    await app.scheduler.shutdown(grace=1.0)  # nothing polls behind the test's back
    wall = app.wall
    client = wall.stream.subscribe()
    target = next(n for n, st in app.board.targets.items() if st.department == "STP")
    wall.cancel_due_tiles()
    wall._tile_built.clear()
    while not client.queue.empty():
        client.queue.get_nowait()

    def poll(up: bool) -> None:
        now = clock.now()
        result = CollectResult(up=up, reason=None if up else "http_status",
                               error=None if up else "unexpected HTTP status 503")
        app.board.record(target, up=up, ts=now, latency=0.01, value=None,
                         reason=result.reason, error=result.error)
        wall.on_outcome(PollOutcome(target=target, kind="http", ts=now, duration=0.01,
                                    result=result, samples=()))

    def tiles() -> list[dict[str, Any]]:
        found = []
        while not client.queue.empty():
            event = client.queue.get_nowait()
            if event is not None and event.kind == "tile":
                found.append(json.loads(event.data))
        return [t for t in found if t["code"] == "STP"]

    poll(False)
    assert [t["state"] for t in tiles()] == ["down"]  # the first change: at once
    for up in (True, False, True, True):
        poll(up)
    assert tiles() == []  # within the spacing: no rebuild per poll
    async with asyncio.timeout(TILE_SPACING + 2):
        while True:
            event = await client.queue.get()
            if event is not None and event.kind == "tile":
                break
    assert json.loads(event.data)["code"] == "STP"
    assert json.loads(event.data)["state"] == "up"  # the latest state, not an older one
    assert tiles() == []
    wall.stream.unsubscribe(client)


async def test_a_page_rendered_as_the_last_screen_leaves_resumes_without_a_reset(
        tmp_path: Path) -> None:
    """A screen's stream connects a moment after its page. A poll in between used to start a
    new epoch (nobody was connected), so the new screen got a reset and reloaded itself."""
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                         extra={"wall": {"heartbeat": "200ms"}})
    async with polled_app(config) as (app, watcher), aiohttp.ClientSession() as session:
        async with session.get(app.url + "/api/v1/stream") as resp:  # the screen before
            await next_event(events(resp), "heartbeat")
            async with session.get(app.url + "/") as page:  # the new one's page
                html = unescape(await page.text())
            since = app.wall.stream.last_id
        await watcher.until(lambda _: app.wall.stream.client_count == 0)
        assert f'"since": "{since}"' in html
        polled = len(watcher.outcomes)
        await watcher.until(lambda outcomes: len(outcomes) > polled + 2)
        assert app.wall.stream.epoch == since.partition(".")[0]
        async with session.get(f"{app.url}/api/v1/stream?since={since}") as resp:
            first = await anext(events(resp))
            assert first["event"] != "reset", first


async def test_a_page_fetched_from_an_idle_wall_keeps_it_idle(tmp_path: Path) -> None:
    """A health check fetching the wall's page every few seconds must not make the wall
    render deltas for nobody: with no screen, polls keep publishing nothing."""
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                         extra={"wall": {"heartbeat": "200ms"}})
    async with polled_app(config) as (app, watcher), aiohttp.ClientSession() as session:
        assert app.wall.stream.client_count == 0
        before = app.wall.stream.last_id
        for _ in range(3):
            async with session.get(app.url + "/") as page:
                assert page.status == 200
            polled = len(watcher.outcomes)
            await watcher.until(lambda outcomes, n=polled: len(outcomes) > n + 2)
        sim = f"http://{app.config.simulator.listen}"
        async with session.post(f"{sim}/_sim/faults",
                                headers={"Authorization": f"Bearer {SIM_TOKEN}"},
                                json={"unit": "STP", "fault": "error", "status": 503}):
            pass
        await watcher.until(lambda outcomes: any(
            o.target == "stp-health" and not o.result.up for o in outcomes))
        assert app.wall.stream.last_id == before  # a tile changed, nobody was shown it
