"""Retention prunes by the clock it is given, and keeps going when a prune fails."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from ioc.model import Sample
from ioc.store import SqlStore
from ioc.store.retention import prune_loop, prune_once

T0 = 1_764_288_000.0


def minutely(count: int) -> list[Sample]:
    return [Sample("m", (), float(i), T0 + 60 * i) for i in range(count)]


async def stored_count(store: SqlStore) -> int:
    return sum(len(s.points) for s in await store.query_range("m", {}, 0, 4e9, 1))


async def test_prune_once_keeps_exactly_the_retention_window(store: SqlStore) -> None:
    await store.append(minutely(10))  # T0 .. T0+540

    removed = await prune_once(store, retention_seconds=300, now=T0 + 540)

    assert removed == 4  # T0 .. T0+180 are older than T0+240
    assert await stored_count(store) == 6
    with pytest.raises(ValueError, match="positive"):
        await prune_once(store, retention_seconds=0, now=T0)


async def test_prune_loop_follows_its_clock_and_survives_a_failed_prune(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ioc.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}", busy_timeout=0.01)
    await store.open()
    await store.append(minutely(10))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the first prune finds the database locked
    times = iter([T0 + 600, T0 + 600, T0])
    calls: list[float] = []
    third_call = asyncio.Event()

    def clock() -> float:
        if len(calls) == 1:
            other.execute("ROLLBACK")  # unlocked before the second prune
        calls.append(next(times))
        if len(calls) == 3:
            third_call.set()
        return calls[-1]

    task = asyncio.create_task(prune_loop(store, 300, 0.01, clock=clock))
    try:
        await asyncio.wait_for(third_call.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        other.close()
    try:
        # The second prune (now T0+600) removed T0..T0+240; the third, whether or not it ran
        # before the cancel, has nothing older than its cutoff (T0-300) to remove.
        assert await stored_count(store) == 5
        assert any("retention prune failed" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING)
    finally:
        await store.close()
