"""Migrations build the schema the models describe, adopt pre-migration databases, and refuse
what they must, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ioc.model import Sample, make_labels
from ioc.store import MigrationRequiredError, SchemaVersionError, SqlStore
from ioc.store.alert_state import AlertStateStore, alert_state_table
from ioc.store.migrate import (
    BASELINE,
    VERSION_TABLE,
    alembic_config,
    head,
    include_name,
    target_metadata,
)
from ioc.store.schema import SCHEMA_VERSION, schema_version, series

T = TypeVar("T")

# The tables ioc created before migrations: exactly what 0001_baseline must produce.
BASELINE_TABLES = {
    "ioc_schema_version", "ioc_series", "ioc_samples", "ioc_alert_state", "ioc_alert_outbox",
    "ioc_alert_nflog", "ioc_alert_silences", "ioc_alert_acks", "ioc_alert_history",
    "ioc_wall_announcement", "ioc_audit_log", "ioc_events", "ioc_event_cursors",
    "ioc_maintenance_windows",
}
DAY0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY = 86_400.0


@pytest.fixture
def store_url(store_url: str) -> str:
    """The conftest's URL, with the SQLite file's directory made: these tests write with
    plain engines and Alembic, not only through a store (which would make it)."""
    database = make_url(store_url).database
    if store_url.startswith("sqlite") and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    return store_url


async def on(url: str, work: Callable[[Connection], T]) -> T:
    """Run ``work`` on a plain connection beside the store, in a committed transaction."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


async def alembic(action: Callable[..., Any], url: str, revision: str) -> None:
    """An Alembic command as a developer runs it: env.py opens the async engine itself."""
    await asyncio.to_thread(action, alembic_config(url), revision)


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {VERSION_TABLE}


def drift(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"include_name": include_name, "compare_type": True})
    return list(compare_metadata(context, target_metadata()))


def one(sql: str) -> Callable[[Connection], Any]:
    return lambda conn: conn.execute(text(sql)).scalar()


async def test_migrations_build_exactly_the_models(store_url: str) -> None:
    store = SqlStore(store_url)
    await store.open()
    await store.close()

    assert await on(store_url, drift) == []
    assert await on(store_url, one(f"SELECT version_num FROM {VERSION_TABLE}")) == head()
    assert await on(store_url, one("SELECT version FROM ioc_schema_version")) == SCHEMA_VERSION
    if store.backend == "sqlite":
        ddl = await on(store_url, one("SELECT sql FROM sqlite_master WHERE name = 'ioc_samples'"))
        assert "WITHOUT ROWID" in ddl
    else:
        kind = await on(store_url, one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'ioc_samples'::regclass"))
        assert kind == "p"  # partitioned


async def test_the_baseline_is_the_schema_from_before_migrations(store_url: str) -> None:
    await alembic(command.upgrade, store_url, BASELINE)

    assert await on(store_url, table_names) == BASELINE_TABLES
    assert await on(store_url, one("SELECT version FROM ioc_schema_version")) == 1


def _legacy_database(version: int, with_rows: bool) -> Callable[[Connection], None]:
    """What ioc before migrations left: create_all, a version row, and no migration record.

    One side table is missing, as in a database last opened by an ioc that predates it.
    """
    def build(conn: Connection) -> None:
        metadata = target_metadata()
        tables = [t for t in metadata.sorted_tables
                  if t.name in BASELINE_TABLES - {"ioc_maintenance_windows"}]
        metadata.create_all(conn, tables=tables)
        # Today's models carry indexes later revisions added; an old database had none.
        conn.execute(text("DROP INDEX ioc_events_received_at"))
        conn.execute(insert(schema_version).values(version=version))
        if not with_rows:
            return
        conn.execute(insert(series), [{"id": 1, "metric": "m", "labels": 'job="a"'},
                                      {"id": 2, "metric": "m", "labels": 'job="b"'}])
        conn.execute(text("INSERT INTO ioc_samples (series_id, ts, value) VALUES (:s, :t, :v)"),
                     [{"s": s, "t": int((DAY0 + d * DAY + 3600) * 1000), "v": 10 * s + d}
                      for s in (1, 2) for d in range(3)])
        conn.execute(insert(alert_state_table).values(
            fingerprint="f1", rule="r", labels='job="a"', state="firing", value=1.0,
            active_at=DAY0, fired_at=DAY0, keep_firing_since=None, annotations="{}",
            updated_at=DAY0))
    return build


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(
        store_url: str) -> None:
    await on(store_url, _legacy_database(1, with_rows=True))

    store = SqlStore(store_url, clock=lambda: DAY0 + 2 * DAY)
    await store.open()
    try:
        found = await store.query_range("m", {}, DAY0, DAY0 + 3 * DAY, 1)
    finally:
        await store.close()
    alerts = AlertStateStore(store_url)
    await alerts.open()
    try:
        assert [row.fingerprint for row in await alerts.load()] == ["f1"]
    finally:
        await alerts.close()

    assert [(dict(s.labels)["job"], [v for _, v in s.points]) for s in found] == [
        ("a", [10.0, 11.0, 12.0]), ("b", [20.0, 21.0, 22.0])]
    assert await on(store_url, one(f"SELECT version_num FROM {VERSION_TABLE}")) == head()
    assert await on(store_url, one("SELECT version FROM ioc_schema_version")) == SCHEMA_VERSION
    assert "ioc_maintenance_windows" in await on(store_url, table_names)
    assert await on(store_url, drift) == []
    if store.backend == "postgresql":
        where = await on(store_url, lambda c: c.execute(text(
            "SELECT DISTINCT tableoid::regclass::text FROM ioc_samples ORDER BY 1")).scalars()
            .all())
        assert where == ["ioc_samples_p20261101", "ioc_samples_p20261102",
                         "ioc_samples_p20261103"]


async def test_a_pre_migration_database_above_version_1_is_refused(store_url: str) -> None:
    await on(store_url, _legacy_database(3, with_rows=False))

    with pytest.raises(SchemaVersionError,
                       match="schema version 3 without a migration record, newer than"):
        await SqlStore(store_url).open()
    assert VERSION_TABLE not in await on(store_url, lambda c: inspect(c).get_table_names())


async def test_downgrade_to_the_baseline_and_back_keeps_the_samples(store_url: str) -> None:
    samples = [Sample("m", make_labels({"job": "a"}), float(d), DAY0 + d * DAY)
               for d in range(3)]
    store = SqlStore(store_url, clock=lambda: DAY0)
    await store.open()
    await store.append(samples)
    await store.close()

    await alembic(command.downgrade, store_url, BASELINE)
    assert await on(store_url, table_names) == BASELINE_TABLES
    assert await on(store_url, one("SELECT version FROM ioc_schema_version")) == 1
    assert await on(store_url, one("SELECT count(*) FROM ioc_samples")) == 3

    store = SqlStore(store_url, clock=lambda: DAY0)
    await store.open()
    try:
        found = await store.query_range("m", {}, DAY0, DAY0 + 3 * DAY, 1)
    finally:
        await store.close()
    assert [v for _, v in found[0].points] == [0.0, 1.0, 2.0]
    assert await on(store_url, drift) == []


async def test_without_auto_migrate_a_database_behind_is_refused(store_url: str) -> None:
    for prepare in (None, BASELINE):  # empty, then one revision behind
        if prepare is not None:
            await alembic(command.upgrade, store_url, prepare)
        with pytest.raises(MigrationRequiredError,
                           match=r"storage.auto_migrate is false: run `ioc db upgrade"):
            await SqlStore(store_url, auto_migrate=False).open()

    await SqlStore(store_url).open()  # the upgrade `ioc db upgrade` would do
    at_head = SqlStore(store_url, auto_migrate=False)
    await at_head.open()
    await at_head.close()


async def test_stores_opening_one_empty_database_at_once_migrate_it_once(
        store_url: str) -> None:
    stores = [SqlStore(store_url), SqlStore(store_url), AlertStateStore(store_url)]

    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))

    versions = await on(store_url, lambda c: c.execute(
        text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all())
    assert versions == [head()]
    assert await on(store_url, one("SELECT count(*) FROM ioc_schema_version")) == 1
