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


@pytest.mark.postgres
async def test_writer_survives_postgresql_dropping_every_connection(postgres_url: str) -> None:
    """What a PostgreSQL restart looks like from ioc: every pooled connection dies at once."""
    import asyncpg
    from prometheus_client import CollectorRegistry
    from sqlalchemy.engine import make_url

    from ioc.store.writer import StoreWriter

    store = SqlStore(postgres_url)
    await store.open()
    registry = CollectorRegistry()
    writer = StoreWriter(store, registry, flush_interval=3600, retry_initial=0.05)
    writer.start()
    try:
        writer.submit([Sample("m", (("target", "a"),), 1.0, 1.0)])
        await writer.flush()
        database = make_url(postgres_url).database
        admin = await asyncpg.connect(
            make_url(postgres_url).set(drivername="postgresql", database="postgres")
            .render_as_string(hide_password=False))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        finally:
            await admin.close()
        assert killed >= 1
        writer.submit([Sample("m", (("target", "a"),), float(t), float(t)) for t in range(2, 12)])
        await writer.flush()
        series = await store.query_range("m", {"target": "a"}, 0, 100, 1)
        assert [v for _, v in series[0].points] == [float(t) for t in range(1, 12)]
        assert registry.get_sample_value("ioc_store_samples_dropped_total") == 0
    finally:
        await writer.stop()
        await store.close()
