"""Failures a caller can retry surface as StoreError, whatever the driver raised."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ioc.model import Sample
from ioc.store import SqlStore, StoreError, open_store


async def test_a_locked_sqlite_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ioc.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}", busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreError, match="database is locked"):
            await store.append([Sample("m", (), 1.0, 1.0)])
        other.execute("ROLLBACK")
        await store.append([Sample("m", (), 1.0, 1.0)])  # and it recovers on its own
        assert len(await store.query_range("m", {}, 0, 10, 1)) == 1
    finally:
        other.close()
        await store.close()


async def test_an_unreachable_postgresql_is_a_store_error() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    store = open_store("postgresql+asyncpg://ioc:s3cret@127.0.0.1:1/ioc")
    with pytest.raises(StoreError, match=r"refused|Connect call failed") as raised:
        await store.open()
    assert "s3cret" not in str(raised.value)
    with pytest.raises(StoreError):
        await store.ping()


def test_unsupported_databases_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        open_store("mysql+aiomysql://root@localhost/ioc")


async def test_using_a_store_before_open_is_a_programming_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}")
    with pytest.raises(RuntimeError, match="open"):
        await store.append([Sample("m", (), 1.0, 1.0)])
