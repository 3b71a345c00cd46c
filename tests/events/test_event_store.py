"""The events table on SQLite and PostgreSQL: idempotent insert, cursors, queries, retention."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ioc.model import Event, make_labels
from ioc.store.events import EventCursor, EventQuery, EventStore, StoredEvent

T0 = 1_750_000_000.0


def ev(i: int, *, source: str = "wazuh", severity: str = "high",
       department: str | None = "STP", at: float | None = None) -> Event:
    return Event(source=source, id=f"a{i}", severity=severity, category="intrusion",
                 title=f"Tấn công {i}", occurred_at=T0 + i if at is None else at,
                 message="chi tiết", department=department, host="web01",
                 labels=make_labels({"rule_id": str(i)}))


@pytest.fixture
async def events_store(store_url: str) -> AsyncIterator[EventStore]:
    store = EventStore(store_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_insert_returns_only_new_events(events_store: EventStore) -> None:
    batch = [ev(i) for i in range(1200)]  # more than one statement's worth
    assert len(await events_store.insert(batch, T0)) == 1200
    again = await events_store.insert([*batch[:3], ev(5000), ev(5000)], T0 + 1)
    assert again == [ev(5000)]
    found = await events_store.query(EventQuery(limit=2000))
    assert len(found) == 1201
    assert found[0].event == ev(5000) and found[0].received_at == T0 + 1
    assert found[-1].event == ev(0)  # labels, text and None round-trip


async def test_same_id_in_another_source_is_another_event(events_store: EventStore) -> None:
    assert len(await events_store.insert([ev(1), ev(1, source="syslog")], T0)) == 2


async def test_cursor_is_written_with_the_events(events_store: EventStore) -> None:
    assert await events_store.load_cursor("siem:w") is None
    await events_store.insert([ev(1)], T0, cursor=("siem:w", "one"))
    await events_store.insert([], T0, cursor=("siem:w", "two"))
    assert await events_store.load_cursor("siem:w") == "two"


async def test_reopened_store_keeps_events_and_cursor(store_url: str) -> None:
    first = EventStore(store_url)
    await first.open()
    await first.insert([ev(1)], T0, cursor=("siem:w", "c1"))
    await first.close()
    second = EventStore(store_url)
    await second.open()
    try:
        assert await second.load_cursor("siem:w") == "c1"
        assert await second.insert([ev(1)], T0) == []
    finally:
        await second.close()


async def test_query_filters_newest_first(events_store: EventStore) -> None:
    await events_store.insert([
        ev(1, severity="low"), ev(2, severity="critical", department="STTTT"),
        ev(3, severity="critical", department=None), ev(4, source="syslog"),
    ], T0)

    async def ids(**kw: object) -> list[str]:
        return [f"{s.event.source}/{s.event.id}"
                for s in await events_store.query(EventQuery(**kw))]  # type: ignore[arg-type]

    assert await ids() == ["syslog/a4", "wazuh/a3", "wazuh/a2", "wazuh/a1"]
    assert await ids(severities=("critical",)) == ["wazuh/a3", "wazuh/a2"]
    assert await ids(departments=("STP",)) == ["syslog/a4", "wazuh/a1"]
    assert await ids(sources=("wazuh",), since=T0 + 2, limit=1) == ["wazuh/a3"]
    assert await ids(until=T0 + 1) == ["wazuh/a1"]


async def test_keyset_pages_give_the_unpaged_order_with_ties(events_store: EventStore) -> None:
    # Ties on occurred_at and received_at, several sources: the cursor walks the same order.
    batch = [ev(i, at=T0 + i // 4, source=("wazuh", "syslog")[i % 2]) for i in range(50)]
    await events_store.insert(batch[:25], T0)
    await events_store.insert(batch[25:], T0 + 1)
    whole = await events_store.query(EventQuery(limit=1000))
    paged: list[StoredEvent] = []
    cursor: EventCursor | None = None
    while True:
        page = await events_store.query(EventQuery(limit=7, after=cursor))
        paged += page
        if len(page) < 7:
            break
        cursor = EventCursor.of(page[-1])
    assert [(s.event.source, s.event.id) for s in paged] == \
        [(s.event.source, s.event.id) for s in whole]
    assert len(whole) == 50


async def test_prune_by_age(events_store: EventStore) -> None:
    await events_store.insert([ev(i) for i in range(10)], T0)
    assert await events_store.prune(T0 + 4) == 4
    remaining = await events_store.query(EventQuery(limit=100))
    assert sorted(s.event.id for s in remaining) == [f"a{i}" for i in range(4, 10)]
