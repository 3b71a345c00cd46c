"""What differs between the SQLite and PostgreSQL backends of :class:`ioc.store.SqlStore`.

Everything else in the store is plain SQLAlchemy Core shared by both; only engine setup,
"insert unless present" syntax, a case-sensitive substring test, and the two hot paths (bulk
insert of samples, fetching range-query rows) need to know the database.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from sqlalchemy import ColumnElement, Select, Table, event, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Compiled
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ioc.store.schema import samples, series

# Execution option marking a connection that will write; SQLite then starts its transaction
# with BEGIN IMMEDIATE (see _SqliteDialect).
WRITE_OPTION = "ioc_write"

Row = tuple[int, int, float]  # (series_id, ts in ms, value)


class Dialect(Protocol):
    name: str

    def create_engine(self, url: URL) -> AsyncEngine: ...

    def insert_series(self) -> Any:
        """INSERT into ioc_series that silently skips rows that already exist."""

    async def lock_schema(self, conn: AsyncConnection) -> None:
        """Serialise schema creation between processes opening the same database."""

    async def insert_samples(self, conn: AsyncConnection, rows: Sequence[Row]) -> None:
        """Insert rows; an existing sample is overwritten, and of duplicates the last wins."""

    def contains(self, haystack: ColumnElement[str], needle: Any) -> ColumnElement[bool]:
        """Case-sensitive substring test (LIKE is case-insensitive on SQLite)."""

    async def fetch_all(self, conn: AsyncConnection, query: Select[Any],
                        params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """All rows of a read-only query, as plain sequences."""


def for_url(url: URL, *, busy_timeout: float) -> Dialect:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _SqliteDialect(busy_timeout)
    if backend == "postgresql":
        return _PostgresDialect()
    raise ValueError(f"unsupported database {backend!r}: use sqlite+aiosqlite or "
                     "postgresql+asyncpg")


def _upsert(insert_fn: Any, table: Table) -> Any:
    stmt = insert_fn(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.series_id, table.c.ts],
        set_={"value": stmt.excluded.value},
    )


class _SqliteDialect:
    """Embedded default: one file, WAL so the web API reads while the writer writes.

    ``synchronous=NORMAL`` in WAL mode cannot corrupt the database; a power cut loses at most
    the last transactions, which for monitoring samples is the right trade for not fsyncing
    every flush. Write transactions start with BEGIN IMMEDIATE: a deferred transaction that
    reads (series ids) and then upgrades to a write lock fails instantly with "database is
    locked" if another connection wrote meanwhile, whereas IMMEDIATE waits for busy_timeout.
    The page cache and autocheckpoint are raised because each flush touches one leaf page per
    series; a larger WAL lets a page changed by many flushes be checkpointed once.
    """

    name = "sqlite"

    def __init__(self, busy_timeout: float) -> None:
        self._busy_timeout_ms = max(0, round(busy_timeout * 1000))
        # id(query) -> (query, compiled); the query is kept so its id is never reused.
        self._compiled: dict[int, tuple[Select[Any], Compiled]] = {}

    def create_engine(self, url: URL) -> AsyncEngine:
        database = url.database or ""
        in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
        if not in_memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # An in-memory database exists once per connection, so all users must share one.
        extra: dict[str, Any] = {"poolclass": StaticPool} if in_memory else {}
        engine = create_async_engine(url, **extra)
        busy_ms = self._busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take BEGIN away from the driver so _on_begin decides its kind.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            _enable_wal(cursor, busy_ms / 1000)
            # 8 MiB of page cache per connection: a flush touches one page per series anyway
            # (far more than any cache holds at 10,000 targets, the OS's page cache serves
            # them), and every connection's cache counts in ioc's RSS (32 MiB each before).
            for pragma in ("synchronous=NORMAL", "cache_size=-8192", "wal_autocheckpoint=10000",
                           "journal_size_limit=67108864"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Readers run each statement in its own implicit read transaction: they need no
            # snapshot across statements, and every BEGIN is another trip to aiosqlite's
            # thread on the latency path of a graph.
            if conn.get_execution_options().get(WRITE_OPTION, False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def insert_series(self) -> Any:
        return sqlite.insert(series).on_conflict_do_nothing(
            index_elements=[series.c.metric, series.c.labels])

    async def lock_schema(self, conn: AsyncConnection) -> None:
        """BEGIN IMMEDIATE already holds the database's single write lock."""

    def contains(self, haystack: ColumnElement[str], needle: Any) -> ColumnElement[bool]:
        return func.instr(haystack, needle) > 0

    async def fetch_all(self, conn: AsyncConnection, query: Select[Any],
                        params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        # Range queries are the latency path of every graph. Through SQLAlchemy's result
        # layer a 2,880-row answer costs four hops to aiosqlite's thread plus a Row object
        # per row; the driver's execute_fetchall is one hop returning plain tuples, which
        # measured about 2.5 ms (20-25%) faster on the bench. The statement is still built
        # with Core and compiled by SQLAlchemy, once per statement.
        entry = self._compiled.get(id(query))
        if entry is None:
            if len(self._compiled) >= 256:
                self._compiled.clear()
            entry = self._compiled[id(query)] = (query, query.compile(dialect=conn.dialect))
        compiled = entry[1]
        values: Any = compiled.construct_params(dict(params))
        names: Any = getattr(compiled, "positiontup", None) or ()
        positional = tuple(values[name] for name in names)
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        return list(await driver.execute_fetchall(compiled.string, positional))

    async def insert_samples(self, conn: AsyncConnection, rows: Sequence[Row]) -> None:
        # The statement is built with Core once, then run as a driver-level executemany of
        # plain tuples: Core's per-row parameter processing would cost more than SQLite's
        # insert itself at these batch sizes. Grouping rows by series makes consecutive
        # inserts land on the same B-tree leaf (measured 7-12% faster, sort included); the
        # sort is stable, so of duplicate samples the last still wins.
        await conn.exec_driver_sql(_SQLITE_UPSERT_SQL, sorted(rows, key=itemgetter(0)))


def _enable_wal(cursor: Any, patience: float) -> None:
    """Switch the database to WAL, waiting out another connection doing the same.

    Only a database not yet in WAL mode (a new file) needs this: the switch takes an exclusive
    lock, and when two connections switch such a file at once SQLite answers one of them
    "database is locked" at once instead of waiting busy_timeout, because waiting could
    deadlock. The other switch finishes on its own thread, after which a retry finds WAL on,
    so the retry runs for as long as busy_timeout would have waited. The connect hook is
    synchronous, hence a blocking sleep: a few milliseconds, once, when a new file is opened
    by several connections together.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)


_SQLITE_UPSERT_SQL = str(_upsert(sqlite.insert, samples).compile(dialect=sqlite.dialect()))


class _PostgresDialect:
    """PostgreSQL through asyncpg; samples go in with COPY.

    Measured on the bench machine (2 cores, 1000 series, 5000-20000-row batches), COPY ran
    at 240-450k rows/s against 85-155k for INSERT … SELECT unnest(arrays) and 55-95k for
    executemany (see BENCHMARKS.md). COPY cannot resolve conflicts, so it runs under a
    savepoint and, in the rare batch that repeats a stored (series_id, ts), the batch is
    redone as an upsert.
    """

    name = "postgresql"

    def create_engine(self, url: URL) -> AsyncEngine:
        # pre_ping replaces connections a PostgreSQL restart killed instead of failing the
        # next flush with them; the timeout keeps /readyz from hanging on an unreachable host.
        # JIT off: ioc's statements walk an index for milliseconds, but the planner's cost
        # for a range query over thousands of series passes jit_above_cost, and compiling
        # took 0.3-1.3 s per statement on the bench machine (bench/rollup_query.py).
        return create_async_engine(url, pool_pre_ping=True, connect_args={
            "timeout": 10, "server_settings": {"jit": "off"}})

    def insert_series(self) -> Any:
        return postgresql.insert(series).on_conflict_do_nothing(
            index_elements=[series.c.metric, series.c.labels])

    async def lock_schema(self, conn: AsyncConnection) -> None:
        # Two services starting on an empty database would otherwise race on CREATE TABLE.
        await conn.execute(text("SELECT pg_advisory_xact_lock(7243190001)"))

    def contains(self, haystack: ColumnElement[str], needle: Any) -> ColumnElement[bool]:
        return func.strpos(haystack, needle) > 0

    async def fetch_all(self, conn: AsyncConnection, query: Select[Any],
                        params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        return (await conn.execute(query, dict(params))).all()

    async def insert_samples(self, conn: AsyncConnection, rows: Sequence[Row]) -> None:
        savepoint = await conn.begin_nested()
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        try:
            await driver.copy_records_to_table(
                samples.name, records=rows, columns=("series_id", "ts", "value"))
        except asyncpg.UniqueViolationError:
            await savepoint.rollback()
            # One upsert statement may not touch a row twice: keep the last of duplicates.
            latest = {(sid, ts): value for sid, ts, value in rows}
            series_ids, timestamps = zip(*latest, strict=True)
            values = latest.values()
            await conn.execute(_PG_UNNEST_UPSERT, {"series_ids": list(series_ids),
                                                   "timestamps": list(timestamps),
                                                   "values": list(values)})
        else:
            await savepoint.commit()


_PG_UNNEST_UPSERT = text(
    "INSERT INTO ioc_samples (series_id, ts, value) "
    "SELECT * FROM unnest(CAST(:series_ids AS integer[]), CAST(:timestamps AS bigint[]), "
    "CAST(:values AS double precision[])) "
    "ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value"
)
