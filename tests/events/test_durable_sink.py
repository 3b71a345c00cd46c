"""The event sink's durable offers: released by the commit that holds them, failed at stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ioc.event_sink import EventSink, EventsNotStored
from ioc.model import Event
from ioc.store.base import StoreError
from ioc.store.events import EventQuery, EventStore

NOW = 1_800_000_000.0


def events(prefix: str, n: int) -> list[Event]:
    return [Event(source="waf", id=f"{prefix}-{i}", severity="high", category="intrusion",
                  title="t", occurred_at=NOW) for i in range(n)]


class AwayStore(EventStore):
    """A real SQLite store whose writes fail, as while the database is unreachable."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.attempts = 0
        self.retried = asyncio.Event()

    async def insert(self, batch: Sequence[Event], received_at: float, **kw: object
                     ) -> list[Event]:
        self.attempts += 1
        if self.attempts >= 3:
            self.retried.set()
        raise StoreError("database away")


async def test_durable_offers_resolve_in_order_once_committed(tmp_path: Path) -> None:
    store = EventStore(f"sqlite+aiosqlite:///{tmp_path / 'ev.db'}")
    await store.open()
    # a flush interval far longer than the test: only the durable wake-up writes anything
    sink = EventSink(store, CollectorRegistry(), flush_interval=3600, wall_clock=lambda: NOW)
    sink.start()
    try:
        assert sink.offer(events("queued", 3))
        waits = [sink.offer_durable(events(f"d{n}", 5)) for n in range(20)]
        assert all(w is not None for w in waits)
        await asyncio.gather(*waits)  # type: ignore[misc]
        stored = await store.query(EventQuery(limit=1000))
        assert len(stored) == 103  # the queued ones ahead of them went in the same commits
    finally:
        await sink.stop()
        await store.close()


async def test_durable_offers_fail_when_ioc_stops_before_writing(tmp_path: Path) -> None:
    store = AwayStore(f"sqlite+aiosqlite:///{tmp_path / 'ev.db'}")
    await store.open()
    sink = EventSink(store, CollectorRegistry(), retry_initial=0.01, retry_max=0.01,
                     stop_timeout=0.5)
    sink.start()
    waiting = sink.offer_durable(events("lost", 2))
    assert waiting is not None
    await store.retried.wait()  # three failed writes of its batch
    assert not waiting.done()  # never answered while the database is away
    await sink.stop()
    with pytest.raises(EventsNotStored):
        await waiting
    await store.close()
    assert sink.offer_durable(events("late", 1)) is None  # stopped: refused, not queued
