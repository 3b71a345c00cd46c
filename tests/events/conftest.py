"""Fixtures for the security-event tests: the store backends, and a running ioc with tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ioc.event_sink import EventSink
from ioc.model import Event
from ioc.store.events import EventStore
from service.app import IocApp
from tests.conftest import demo_config, free_port
from tests.helpers import Changes
from tests.store.conftest import postgres_url, store_url  # noqa: F401  (fixtures)


class Arrivals:
    """Awaits stored events instead of sleeping."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = Changes()

    def __call__(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self._changed.set()

    async def until(self, count: int) -> None:
        await self._changed.until(lambda: len(self.events) >= count, 10)


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[EventSink]:
    """An event sink on its own SQLite store, for collectors tested without an app."""
    store = EventStore(f"sqlite+aiosqlite:///{tmp_path / 'ev.db'}")
    await store.open()
    sink = EventSink(store, CollectorRegistry())
    sink.start()
    try:
        yield sink
    finally:
        await sink.stop()
        await store.close()


INGEST_TOKEN = "ingest-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"


def events_config(tmp_path: Path, extra: dict[str, Any] | None = None,
                  collectors: list[dict[str, Any]] | None = None,
                  sim_port: int | None = None) -> Any:
    """A demo config with an ingest and a viewer token, polling only what the test asks."""
    port = sim_port or free_port()
    config = demo_config(tmp_path, port, codes=["STTTT", "STP"], extra={
        "auth": {"tokens": [
            {"name": "siem-bridge", "token": INGEST_TOKEN, "roles": ["ingest"]},
            {"name": "wall", "token": VIEWER_TOKEN, "roles": ["viewer"]},
        ]},
        "collectors": collectors or [],
        **(extra or {}),
    })
    return config


@pytest.fixture
async def events_app(tmp_path: Path) -> AsyncIterator[IocApp]:
    app = IocApp(events_config(tmp_path))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=1.0)
