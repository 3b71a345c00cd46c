"""The SQL store: SQLite (embedded default) or PostgreSQL, through SQLAlchemy async Core.

The store is tuned for its one heavy user, the writer task, which appends thousands of
samples per transaction, and for range queries that read one metric's series over hours.
Series are resolved to integer ids through an in-process cache so a sample row is only
``(series_id, ts, value)``; see :mod:`ioc.store.schema` for the layout and time units.

Duplicate ``(series, ts)`` samples are **last write wins**, inside a batch and against the
database: the writer re-sends a batch whose commit it could not confirm, and a re-sent sample
must neither fail the batch nor be counted twice, while a genuinely newer value for the same
instant (a corrected measurement) should replace the old one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import groupby
from math import isfinite
from operator import itemgetter

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import exists, select, text, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import ioc.clock
from ioc.model import Labels, Sample, Series, canonical_labels
from ioc.store import dialects, migrate, partitions, range_query
from ioc.store.base import StoreError, chunked
from ioc.store.rollups import LateWrites, Tier, read_watermarks
from ioc.store.schema import parse_canonical_labels, samples, series

log = logging.getLogger("ioc.store")

SeriesKey = tuple[str, Labels]

# Bound parameters per statement stay under SQLite's historical limit of 999.
_IN_CHUNK = 400


class SqlStore:
    """A :class:`ioc.store.Store` on an SQLAlchemy URL.

    ``busy_timeout`` is how long SQLite waits for another connection's write lock before
    reporting "database is locked"; ``prune_batch_size`` bounds the rows one prune transaction
    deletes, so retention never holds the write lock long enough to stall the writer.
    ``rollups`` lets range queries read the rollup tables (kept by :mod:`ioc.store.rollups`)
    when their step allows; off, they always read raw samples. ``open`` brings the schema to
    this ioc's newest migration (:mod:`ioc.store.migrate`), or with ``auto_migrate`` false
    refuses a database that is behind; ``clock`` tells which day's partitions PostgreSQL needs
    (:mod:`ioc.store.partitions`).
    """

    def __init__(self, url: str, *, busy_timeout: float = 5.0,
                 prune_batch_size: int = 10_000, rollups: bool = True,
                 auto_migrate: bool = True,
                 clock: Callable[[], float] = ioc.clock.now) -> None:
        self._url = make_url(url)
        self.url_for_display: str = self._url.render_as_string(hide_password=True)
        self._dialect = dialects.for_url(self._url, busy_timeout=busy_timeout)
        self._prune_batch_size = max(1, prune_batch_size)
        self._auto_migrate = auto_migrate
        self._clock = clock  # only for which days' partitions to create (PostgreSQL)
        # Partitions of ioc_samples as of the last open or prune (0 on SQLite), for /metrics.
        self.partition_count = 0
        self._engine: AsyncEngine | None = None
        self._write_engine: AsyncEngine | None = None
        self._series_ids: dict[SeriesKey, int] = {}
        self._labels_by_id: dict[int, tuple[Labels, frozenset[tuple[str, str]]]] = {}
        self._range_queries: dict[tuple[object, ...], range_query.RangeQuery] = {}
        self._rollups = rollups
        # Earliest sample this process wrote below the rollups' horizon (ioc.store.rollups).
        self.late_writes = LateWrites()
        # The incident ledger's own mark of late writes (ioc.store.incidents).
        self.ledger_late_writes = LateWrites()

    def __repr__(self) -> str:
        return f"SqlStore({self.url_for_display!r})"

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._dialect.name

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        engine = self._dialect.create_engine(self._url)
        write_engine = engine.execution_options(**{dialects.WRITE_OPTION: True})
        try:
            with self._errors("open"):
                async with write_engine.begin() as conn:
                    await self._dialect.lock_schema(conn)
                    await conn.run_sync(lambda sync: migrate.ensure_schema(
                        sync, where=self.url_for_display, auto_migrate=self._auto_migrate))
                    if self._dialect.name == "postgresql":
                        # Today's partition must exist before the first sample arrives.
                        self.partition_count = await partitions.ensure(conn, self._clock())
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._write_engine = engine, write_engine

    async def close(self) -> None:
        engine, self._engine, self._write_engine = self._engine, None, None
        self._series_ids.clear()
        self._labels_by_id.clear()
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        if self._engine is None:
            raise StoreError(f"store {self.url_for_display} is not open")
        with self._errors("ping"):
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    # -- writing -------------------------------------------------------------------------

    async def append(self, samples_: Sequence[Sample]) -> None:
        if not samples_:
            return
        write_engine = self._require(self._write_engine)
        ids = self._series_ids
        with self._errors("append"):
            async with write_engine.begin() as conn:
                try:
                    rows = _rows(samples_, ids)
                    learned: dict[SeriesKey, int] = {}
                except KeyError:  # a series this process has not seen yet
                    missing = {key for s in samples_ if (key := (s.metric, s.labels)) not in ids}
                    learned = await self._resolve_series(conn, missing)
                    rows = _rows(samples_, {**ids, **learned})
                if rows:
                    await self._dialect.insert_samples(conn, rows)
        # Only committed ids may enter the cache: a rolled-back insert leaves no series row.
        ids.update(learned)
        if rows:
            earliest = min(map(itemgetter(1), rows))
            self.late_writes.note(earliest)
            self.ledger_late_writes.note(earliest)

    async def _resolve_series(self, conn: AsyncConnection,
                              keys: set[SeriesKey]) -> dict[SeriesKey, int]:
        """Ids for series not in the cache, inserting the unknown ones.

        Insert-or-ignore then select is race-free between processes: whoever inserts first
        wins and everyone reads the same id back.
        """
        # Sorting makes differently ordered but equal label tuples one series.
        by_text: dict[tuple[str, str], list[SeriesKey]] = {}
        for key in keys:
            text_key = (key[0], canonical_labels(tuple(sorted(key[1]))))
            by_text.setdefault(text_key, []).append(key)
        pairs = list(by_text)
        await conn.execute(self._dialect.insert_series(),
                           [{"metric": m, "labels": t} for m, t in pairs])
        learned: dict[SeriesKey, int] = {}
        for chunk in chunked(pairs, _IN_CHUNK):
            query = select(series.c.id, series.c.metric, series.c.labels).where(
                tuple_(series.c.metric, series.c.labels).in_(chunk))
            for sid, metric, label_text in await conn.execute(query):
                for key in by_text[(metric, label_text)]:
                    learned[key] = sid
        return learned

    # -- reading -------------------------------------------------------------------------

    async def query_range(self, metric: str, matchers: Mapping[str, str],
                          start: float, end: float, step: float) -> list[Series]:
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        engine = self._require(self._engine)
        # Same rounding as append, so a bound equal to a stored timestamp includes it.
        start_ms, end_ms = round(start * 1000), round(end * 1000)
        step_ms = max(1, round(step * 1000))
        if end_ms < start_ms:
            return []
        wanted = frozenset(matchers.items())
        params: dict[str, object] = {
            f"m{i}": f",{canonical_labels((pair,))}," for i, pair in enumerate(wanted)}
        params.update(metric=metric, start=start_ms, end=end_ms)
        tier = range_query.tier_for_step(step_ms) if self._rollups else None
        with self._errors("query_range"):
            async with engine.connect() as conn:
                query = self._range_query(len(wanted), step_ms)
                if tier is not None:
                    rolled_to = (await read_watermarks(conn)).get(tier.name)
                    split = range_query.split(tier, start_ms, end_ms, rolled_to)
                    if split is not None:
                        query = self._rollup_query(tier, len(wanted), step_ms,
                                                   head=start_ms < split.rolled_from,
                                                   tail=split.rolled_until <= end_ms)
                        params.update(rolled_from=split.rolled_from,
                                      rolled_until=split.rolled_until)
                rows = await self._dialect.fetch_all(conn, query, params)
                unknown = {row[0] for row in rows} - self._labels_by_id.keys()
                if unknown:
                    await self._load_labels(conn, sorted(unknown))
        found: list[Series] = []
        # Rows arrive ordered by series then bucket.
        for sid, points in groupby(rows, key=itemgetter(0)):
            labels, label_set = self._labels_by_id[sid]
            if wanted <= label_set:
                found.append(Series(metric, labels,
                                    [(bucket * step_ms / 1000, avg) for _, bucket, avg in points]))
        found.sort(key=lambda s: s.labels)
        return found

    async def _load_labels(self, conn: AsyncConnection, ids: Sequence[int]) -> None:
        """Parse and cache the labels of series ids; an id never changes its series."""
        for chunk in chunked(ids, _IN_CHUNK):
            result = await conn.execute(
                select(series.c.id, series.c.labels).where(series.c.id.in_(chunk)))
            for sid, label_text in result:
                labels = parse_canonical_labels(label_text)
                self._labels_by_id[sid] = (labels, frozenset(labels))

    def _range_query(self, matcher_count: int, step_ms: int) -> range_query.RangeQuery:
        """The raw-samples statement; built once per shape, graphs repeat."""
        return self._cached(("raw", matcher_count, step_ms),
                            lambda: range_query.raw_query(self._dialect, matcher_count, step_ms))

    def _rollup_query(self, tier: Tier, matcher_count: int, step_ms: int, *, head: bool,
                      tail: bool) -> range_query.RangeQuery:
        return self._cached(
            (tier.name, matcher_count, step_ms, head, tail),
            lambda: range_query.rollup_query(self._dialect, tier, matcher_count, step_ms,
                                             head=head, tail=tail))

    def _cached(self, key: tuple[object, ...],
                build: Callable[[], range_query.RangeQuery]) -> range_query.RangeQuery:
        query = self._range_queries.get(key)
        if query is None:
            if len(self._range_queries) >= 256:  # shapes come from clients; stay bounded
                self._range_queries.clear()
            query = self._range_queries[key] = build()
        return query

    # -- retention -----------------------------------------------------------------------

    async def prune(self, older_than: float) -> int:
        engine = self._require(self._engine)
        write_engine = self._require(self._write_engine)
        cutoff = round(older_than * 1000)
        total = 0
        with self._errors("prune"):
            if self._dialect.name == "postgresql":
                total += await self._maintain_partitions(write_engine, cutoff)
            async with engine.connect() as conn:
                # One index probe per series, so series with nothing to delete cost nothing
                # later and the write transactions below only visit the ones that do.
                has_old = exists().where(samples.c.series_id == series.c.id,
                                         samples.c.ts < cutoff)
                result = await conn.execute(select(series.c.id).where(has_old)
                                            .order_by(series.c.id))
                pending = deque(result.scalars())
            while pending:
                async with write_engine.begin() as conn:
                    budget = self._prune_batch_size
                    while pending and budget > 0:
                        deleted, finished = await _prune_series(conn, pending[0], cutoff, budget)
                        budget -= deleted
                        total += deleted
                        if finished:
                            pending.popleft()
                # Let the writer (and readers) in between chunks.
                await asyncio.sleep(0)
        # Series rows are kept even when empty: other processes cache series ids, and a row
        # deleted under them would leave their next samples pointing at nothing.
        return total

    async def _maintain_partitions(self, write_engine: AsyncEngine, cutoff: int) -> int:
        """PostgreSQL: add the coming days' partitions, drop expired ones; samples dropped.

        Retention is the store's one periodic housekeeping, so partitions are kept here too.
        What is left older than the cutoff afterwards lies in the partition the cutoff falls
        in and in DEFAULT; the row deletes in :meth:`prune` take care of it. Each drop is its
        own transaction with a lock timeout: DROP holds an exclusive lock on ``ioc_samples``
        for an instant, and queued behind a long query it would hold up the writer and every
        reader behind it; a drop that times out is retried at the next prune.
        """
        async with write_engine.begin() as conn:
            await self._dialect.lock_schema(conn)
            await conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT_MS}ms'"))
            self.partition_count = await partitions.ensure(conn, self._clock())
        dropped = 0
        while True:
            async with write_engine.begin() as conn:
                await self._dialect.lock_schema(conn)
                await conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT_MS}ms'"))
                existing = await partitions.list_partitions(conn)
                self.partition_count = len(existing)
                expired = partitions.expired(existing, cutoff)
                if not expired:
                    return dropped
                count = await partitions.drop(conn, expired[0])
            dropped += count
            self.partition_count -= 1
            log.info("store %s: dropped partition %s (%d samples)", self.url_for_display,
                     expired[0].name, count)

    # -- for maintenance beside the store (ioc.store.rollups) ----------------------------

    def engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """The reading and the writing engine; raises if the store is not open."""
        return self._require(self._engine), self._require(self._write_engine)

    def errors(self, operation: str) -> AbstractContextManager[None]:
        """Turn retryable database failures inside the block into StoreError."""
        return self._errors(operation)

    # -- helpers -------------------------------------------------------------------------

    def _require(self, engine: AsyncEngine | None) -> AsyncEngine:
        if engine is None:
            raise RuntimeError(f"{self!r} is not open; call open() first")
        return engine

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Turn failures the caller can retry into StoreError; let bugs through unchanged."""
        try:
            yield
        except Exception as exc:
            if _retryable(exc):
                raise StoreError(
                    f"{operation} on {self.url_for_display} failed, retry later: "
                    f"{_describe(exc)}") from exc
            raise


def _rows(samples_: Sequence[Sample], ids: Mapping[SeriesKey, int]) -> list[dialects.Row]:
    """Rows in the samples' order (so of duplicates the last wins); KeyError on a new series.

    Samples that cannot be stored faithfully are left out rather than failing the batch (the
    writer would retry a failing batch forever): a NaN value (SQLite would turn it into NULL;
    it means "no measurement" anyway) and a non-finite timestamp. This is the per-sample hot
    path of ingestion, hence one comprehension, with the timestamp check only on failure.
    """
    try:
        return [(ids[(s.metric, s.labels)], round(s.ts * 1000), s.value)
                for s in samples_ if s.value == s.value]
    except (ValueError, OverflowError):  # round() of a NaN or infinite timestamp
        return [(ids[(s.metric, s.labels)], round(s.ts * 1000), s.value)
                for s in samples_ if s.value == s.value and isfinite(s.ts)]


async def _prune_series(conn: AsyncConnection, series_id: int, cutoff: int,
                        budget: int) -> tuple[int, bool]:
    """Delete at most ``budget`` old samples of one series; say whether it is now clean."""
    # The budget-th oldest old sample, if any: deleting below it removes exactly budget rows.
    bound = (await conn.execute(
        select(samples.c.ts)
        .where(samples.c.series_id == series_id, samples.c.ts < cutoff)
        .order_by(samples.c.ts).offset(budget).limit(1))).scalar()
    upto = cutoff if bound is None else bound
    result = await conn.execute(
        samples.delete().where(samples.c.series_id == series_id, samples.c.ts < upto))
    return max(result.rowcount, 0), bound is None


# How long retention's partition DDL waits for its lock on ioc_samples before giving up until
# the next prune (SQLSTATE 55P03, retryable below).
_DDL_LOCK_TIMEOUT_MS = 5000

# SQLSTATE classes/codes worth retrying: connection exceptions, insufficient resources
# (too many connections, disk full), operator intervention (shutdown, starting up, cancel),
# serialization failure, deadlock, lock not available.
_RETRYABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_RETRYABLE_SQLSTATES = ("40001", "40P01", "55P03")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        sqlite3.OperationalError, asyncpg.InterfaceError,
                        asyncpg.PostgresConnectionError, OSError, TimeoutError)):
        return True
    code = _sqlstate(exc)
    return code is not None and (code[:2] in _RETRYABLE_SQLSTATE_CLASSES
                                 or code in _RETRYABLE_SQLSTATES)


def _sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL error code, wherever SQLAlchemy's wrapping put the driver error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None)
        if isinstance(code, str):
            return code
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


