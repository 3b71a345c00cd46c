"""The incident ledger on both backends: derived from stored polls, stable across re-runs
and restarts, notes kept, one writer behind the fence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from ioc.incidents import Window, reason_code
from ioc.model import Sample, make_labels
from ioc.store import SqlStore
from ioc.store.alert_delivery import history
from ioc.store.base import NotLeaderError
from ioc.store.incidents import LOOKBACK_MS, IncidentStore, NotFound, Query

T0 = 1_790_000_000.0


def poll(target: str, ts: float, up: bool, reason: str = "timeout",
         department: str = "STP") -> list[Sample]:
    labels = make_labels(target=target, department=department, kind="http")
    out = [Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts)]
    if not up:
        out.append(Sample("ioc_target_failure_reason", labels, reason_code(reason), ts))
    return out


def run(target: str, spec: str, t0: float = T0, step: float = 30.0,
        department: str = "STP") -> list[Sample]:
    out: list[Sample] = []
    for i, c in enumerate(spec):
        out += poll(target, t0 + i * step, c == "u", "dns" if c == "n" else "timeout",
                    department)
    return out


@pytest.fixture
async def ledger(store: SqlStore, store_url: str) -> AsyncIterator[IncidentStore]:
    opened = IncidentStore(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_incidents_come_from_stored_polls(store: SqlStore, ledger: IncidentStore) -> None:
    await store.append(run("portal", "uddnuuddd") + run("mail", "uuuu", department="SYT"))
    assert await ledger.sync(T0 + 1000) == 2
    assert await ledger.sync(T0 + 1010) == 0  # the same polls again: nothing to rewrite
    items, cursor = await ledger.list(Query(), now=T0 + 1000)
    assert cursor is None
    assert [(i["started_at"], i["ended_at"], i["causes"], i["open"]) for i in items] == [
        (T0 + 180, None, {"timeout": 3}, True),
        (T0 + 30, T0 + 120, {"timeout": 2, "dns": 1}, False)]
    assert items[1]["duration_seconds"] == 90.0 and items[1]["department"] == "STP"
    assert items[0]["duration_seconds"] == 1000 - 180


async def test_a_rerun_and_a_restart_give_the_same_ledger_and_keep_notes(
        store: SqlStore, ledger: IncidentStore, store_url: str) -> None:
    await store.append(run("portal", "uddu"))
    await ledger.sync(T0 + 200)
    (item,), _ = await ledger.list(Query(), now=T0 + 200)
    await ledger.add_note(item["id"], actor="ops", text="Đã gọi nhà cung cấp", now=T0 + 300)
    await ledger.sync(T0 + 400)
    again = IncidentStore(store_url)  # a new process: nothing but the database
    await again.open()
    try:
        await again.sync(T0 + 500)
        (same,), _ = await again.list(Query(), now=T0 + 500)
    finally:
        await again.close()
    assert same["id"] == item["id"] and same["ended_at"] == T0 + 90
    assert same["notes"] == [{"at": T0 + 300, "by": "ops", "text": "Đã gọi nhà cung cấp"}]


async def test_an_outage_spanning_syncs_stays_one_incident(store: SqlStore,
                                                           ledger: IncidentStore) -> None:
    long = LOOKBACK_MS / 1000 * 3
    await store.append(run("portal", "ud"))
    await ledger.sync(T0 + 40)
    # still failing long after the look-back, then recovering
    await store.append(poll("portal", T0 + long, False, "dns"))
    await ledger.sync(T0 + long + 1)
    await store.append(poll("portal", T0 + 2 * long, True))
    await ledger.sync(T0 + 2 * long + 1)
    items, _ = await ledger.list(Query(), now=T0 + 2 * long + 1)
    assert [(i["started_at"], i["ended_at"], i["failed_polls"]) for i in items] == [
        (T0 + 30, T0 + 2 * long, 2)]
    assert items[0]["causes"] == {"timeout": 1, "dns": 1}


async def test_a_late_good_poll_splits_an_incident(store: SqlStore,
                                                   ledger: IncidentStore) -> None:
    await store.append(run("portal", "uddddu"))
    await ledger.sync(T0 + 200)
    await store.append(poll("portal", T0 + 75, True))  # written late by another shard
    await ledger.sync(T0 + 300)
    items, _ = await ledger.list(Query(), now=T0 + 300)
    assert sorted((i["started_at"], i["ended_at"]) for i in items) == [
        (T0 + 30, T0 + 75), (T0 + 90, T0 + 150)]


async def test_planned_windows_mark_incidents(store: SqlStore, ledger: IncidentStore) -> None:
    await store.append(run("portal", "udu") + run("mail", "udu", department="SYT"))
    await ledger.sync(T0 + 100, windows=[Window("STP", T0, T0 + 60)])
    items, _ = await ledger.list(Query(), now=T0 + 100)
    assert {i["target"]: i["planned"] for i in items} == {"portal": True, "mail": False}


async def test_filters_and_cursor_pagination(store: SqlStore, ledger: IncidentStore) -> None:
    await store.append(run("portal", "ud" * 5) + run("mail", "du", department="SYT"))
    await ledger.sync(T0 + 400)
    assert [i["target"] for i in (await ledger.list(Query(department="SYT"), T0))[0]] == ["mail"]
    assert len((await ledger.list(Query(target="portal"), T0 + 400))[0]) == 5
    assert [i["started_at"] for i in (await ledger.list(Query(open_only=True), T0))[0]] == [
        T0 + 270]
    window = Query(since=T0 + 100, until=T0 + 200)
    assert sorted(i["started_at"] for i in (await ledger.list(window, T0))[0]) == [
        T0 + 90, T0 + 150]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await ledger.list(Query(limit=2, before=cursor), T0 + 400)
        seen += [i["id"] for i in page]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6


async def test_alert_and_ack_are_read_from_the_history(store: SqlStore, ledger: IncidentStore,
                                                        store_url: str) -> None:
    await store.append(run("portal", "udddu"))
    await ledger.sync(T0 + 200)
    engine = ledger._writer()
    async with engine.begin() as conn:
        await conn.execute(history.insert(), [
            {"event_key": "firing:f1:1", "ts": round((T0 + 60) * 1000), "kind": "firing",
             "fingerprint": "f1", "actor": "ioc",
             "detail": '{"labels": {"alertname": "TargetDown", "target": "portal"}}'},
            {"event_key": "ack:f1:2", "ts": round((T0 + 70) * 1000), "kind": "ack",
             "fingerprint": "f1", "actor": "lan", "detail": "{}"}])
    (item,), _ = await ledger.list(Query(), now=T0 + 200)
    assert item["alert"] == {"name": "TargetDown", "fingerprint": "f1", "fired_at": T0 + 60}
    assert (item["acked_by"], item["acked_at"]) == ("lan", T0 + 70)


async def test_notes_are_checked(store: SqlStore, ledger: IncidentStore) -> None:
    await store.append(run("portal", "ud"))
    await ledger.sync(T0 + 100)
    (item,), _ = await ledger.list(Query(), now=T0 + 100)
    with pytest.raises(NotFound):
        await ledger.add_note("nope", actor="ops", text="x", now=T0)
    with pytest.raises(ValueError, match="text"):
        await ledger.add_note(item["id"], actor="ops", text="   ", now=T0)
    with pytest.raises(ValueError, match="at most"):
        await ledger.add_note(item["id"], actor="ops", text="x" * 5000, now=T0)
    assert (await ledger.list(Query(), now=T0 + 100))[0][0]["notes"] == []


class Refusing:
    async def verify(self, conn: AsyncConnection) -> None:
        raise NotLeaderError("this instance no longer holds the alert leader lock")


async def test_a_writer_that_lost_the_fence_writes_nothing(store: SqlStore,
                                                           ledger: IncidentStore) -> None:
    await store.append(run("portal", "ud"))
    with pytest.raises(NotLeaderError):
        await ledger.sync(T0 + 100, fence=Refusing())
    assert (await ledger.list(Query(), now=T0 + 100))[0] == []


async def test_polls_written_later_than_the_look_back_are_seen_through_late_writes(
        store: SqlStore, ledger: IncidentStore) -> None:
    """A writer that buffered through a database outage writes old polls: its own record of
    late writes makes the next sync read from them."""
    late = store.ledger_late_writes
    await store.append(run("portal", "uu"))
    await ledger.sync(T0 + 60, late=late)
    long = LOOKBACK_MS / 1000 * 5
    await ledger.sync(T0 + long, late=late)          # the watermark moves on
    await store.append(run("portal", "dddu", t0=T0 + 120))  # written an hour late
    await ledger.sync(T0 + long + 30, late=late)
    items, _ = await ledger.list(Query(), now=T0 + long + 30)
    assert [(i["started_at"], i["ended_at"]) for i in items] == [(T0 + 120, T0 + 210)]
