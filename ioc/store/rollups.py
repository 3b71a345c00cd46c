"""Keeping the 5 min and 1 h rollup tables up to date, a few closed buckets at a time.

A 30-day chart over thousands of series would read every raw sample; the rollup tables
(:mod:`ioc.store.schema`) hold one row per series and bucket instead, so such a chart reads
12 or 60 times fewer rows (at a 1-minute poll interval). This module only *writes* them; the
query side is :mod:`ioc.store.range_query`, the periodic task :mod:`ioc.store.rollup_job`.

**Incremental.** Each tier has a watermark: every bucket that starts before it has been
aggregated. A run aggregates the buckets that have closed since (``[watermark, now)`` cut to
whole buckets) and moves the watermark; it never rescans history. Aggregation is an
``INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE`` that *replaces* a bucket's row, so
running a bucket twice is harmless, and a raw sample overwritten with a corrected value (last
write wins) is reflected as soon as its bucket runs again. The 1 h tier is summed from the
5 min tier, never from raw: 12 rows per series and hour instead of one per sample.

**Late samples are not lost.** The store writer may write samples older than the watermark
(a batch retried after a database outage, a buffered backlog, another sharded instance
writing later). Two things re-open their buckets:

* this process's own writes: :meth:`SqlStore.append` tells :class:`LateWrites` the earliest
  timestamp of every batch, which keeps the minimum of those below the watermark; the next
  run starts there. The horizon it compares with is raised *before* a run reads the samples,
  so a batch committed during the run is either seen by it or marked for the next one.
* other processes' writes: every run also re-aggregates the last closed bucket (and from the
  horizon this process last used, in case another instance moved the watermark further), so
  a sample that reaches the database within one bucket width after its bucket closed is
  counted. Each instance runs the job and marks its own late writes, so with shards sharing
  one PostgreSQL nothing depends on which instance rolls up.

A bucket is only re-aggregated from a complete source: the 5 min tier never before the raw
retention cutoff and the 1 h tier never before the 5 min tier's, where pruning may have
removed part of the bucket's samples and recomputing would shrink a correct row.

**Short transactions.** One transaction covers a time window (the run's whole span up to a
day of raw samples, or a week of 5 min rows) for a slice of the series ids. Long windows
with few series are what a catch-up over weeks wants: each series' rows are read and written
contiguously, where an hour for many series would rewrite one B-tree page per series for a
dozen rows (measured: 12,000 rows/s on SQLite). The slice starts at 500 series per hour of
window (so 20 per day, thousands for the few minutes of a steady-state run) and is doubled
or halved after each transaction so that one takes about 0.1 s whatever the poll interval:
on SQLite the writer never waits behind the job for long. Between transactions the job
pauses there as long as the transaction took, leaving the write lock free at least half the
time while it catches up. On PostgreSQL the transactions hold an advisory lock, so instances
sharing a database take turns instead of upserting the same rows concurrently (which can
deadlock). Rows are read for ``series_id IN (ids of a slice of ioc_series)`` so that both
databases walk the ``(series_id, ts)`` key one series at a time, seeking straight to the
window (a range on ``series_id`` alone would read each series' whole history, and SQLite turns
a join with a range on ``ioc_series.id`` into exactly that); this also works unchanged when
``ioc_samples`` is partitioned, as it is read through its parent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Table,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ioc.store.schema import rollup_1h, rollup_5m, rollup_watermarks, samples, series

_ADVISORY_KEY = 7243190002  # beside the schema lock's 7243190001 (ioc.store.dialects)


@dataclass(frozen=True)
class Tier:
    name: str        # the watermark row and the metrics label
    width: int       # bucket width, ms
    table: Table
    source: Table    # raw samples, or the finer tier
    window: int      # longest time (ms, a multiple of width) one transaction covers
    budget: int      # series x ms of source rows a transaction starts with


TIER_5M = Tier("5m", 300_000, rollup_5m, samples, 86_400_000, 500 * 3_600_000)
TIER_1H = Tier("1h", 3_600_000, rollup_1h, rollup_5m, 7 * 86_400_000, 500 * 21_600_000)
TIERS = (TIER_5M, TIER_1H)  # finest first: each is built from the one before

# What one transaction should take: long enough that a catch-up over weeks is not thousands
# of commits, short enough that SQLite's writer waits for it unnoticed.
TRANSACTION_SECONDS = 0.1


def floor_to(ts: int, width: int) -> int:
    return ts - ts % width


def ceil_to(ts: int, width: int) -> int:
    return -floor_to(-ts, width)


class LateWrites:
    """The earliest sample this process wrote below the 5 min tier's horizon.

    ``horizon`` is ``None`` until the first rollup run: then every write counts as late,
    which costs nothing more than a first run that starts at the oldest of them.
    """

    def __init__(self) -> None:
        self.horizon: int | None = None
        self._since: int | None = None

    def note(self, earliest_ts: int) -> None:
        """A batch was committed whose earliest sample is at ``earliest_ts`` (ms)."""
        if self.horizon is not None and earliest_ts >= self.horizon:
            return
        if self._since is None or earliest_ts < self._since:
            self._since = earliest_ts

    def take(self) -> int | None:
        """The mark for a run to work from; cleared, so later writes start a new one."""
        since, self._since = self._since, None
        return since

    def restore(self, since: int | None) -> None:
        """Give back a mark that a failed run could not finish."""
        if since is not None and (self._since is None or since < self._since):
            self._since = since


@dataclass(frozen=True)
class Span:
    """Buckets ``[start, end)`` of one tier to (re)aggregate in a run."""

    start: int
    end: int


def plan(tier: Tier, *, watermark: int | None, first_source_ts: int | None,
         also_from: Sequence[int | None], closed_before: int, keep_from: int) -> Span | None:
    """The buckets a run of ``tier`` must aggregate, or None when there is nothing to do.

    ``watermark`` is the tier's stored one (None: never rolled up, so start at the oldest
    source row, ``first_source_ts``); the last bucket before it is always redone (late
    writes of other processes). ``also_from`` are further starts: this process's late writes
    or the finer tier's re-aggregated range. ``closed_before``: buckets ending after it are
    still open. ``keep_from``: the source's retention cutoff, before which a bucket may have
    lost part of its source rows, so one already rolled up is never recomputed there (one
    never rolled up, after a long stop, is still rolled up from what is left).
    """
    width = tier.width
    end = floor_to(closed_before, width)
    if watermark is None:
        if first_source_ts is None:
            return None
        start = floor_to(first_source_ts, width)
    else:
        start = watermark - width
        for ts in also_from:
            if ts is not None:
                start = min(start, floor_to(ts, width))
        start = max(start, min(ceil_to(keep_from, width), watermark))
    return Span(start, end) if start < end else None


@dataclass(frozen=True)
class TierRun:
    span: Span | None
    rows: int          # rollup rows written (inserted or replaced)
    rolled_to: int | None


@dataclass(frozen=True)
class RunReport:
    tiers: dict[str, TierRun]


class RollupSource(Protocol):
    """What the rollups need of the sample store (``ioc.store.sql.SqlStore``), which itself
    reads this module's tiers and watermarks: named here so the two modules import one way."""

    @property
    def backend(self) -> str: ...
    @property
    def late_writes(self) -> LateWrites: ...

    def engines(self) -> tuple[AsyncEngine, AsyncEngine]: ...
    def errors(self, operation: str) -> AbstractContextManager[None]: ...


class Rollups:
    """Rolls the store's samples up into both tiers and prunes the tiers by age.

    ``raw_retention`` is the samples' retention (``storage.retention``): buckets older than
    it are final. ``max_series_per_transaction`` caps the adaptive slice of series ids.
    """

    def __init__(self, store: RollupSource, *, raw_retention: float, retention_5m: float,
                 retention_1h: float, max_series_per_transaction: int = 5000) -> None:
        if min(raw_retention, retention_5m, retention_1h) <= 0 or max_series_per_transaction < 1:
            raise ValueError("retentions and max_series_per_transaction must be positive")
        self._store = store
        self._raw_retention_ms = round(raw_retention * 1000)
        self._retention_ms = {TIER_5M.name: round(retention_5m * 1000),
                              TIER_1H.name: round(retention_1h * 1000)}
        self._max_slice = max_series_per_transaction
        self._insert: Any = postgresql.insert if store.backend == "postgresql" else sqlite.insert
        self._statements = {tier.name: self._aggregate_statement(tier) for tier in TIERS}
        # SQLite has one write lock: after a transaction, leave it free for as long again.
        self._yield_ratio = 1.0 if store.backend == "sqlite" else 0.0

    # -- rolling up ----------------------------------------------------------------------

    async def run(self, now: float) -> RunReport:
        """Aggregate every bucket closed by ``now`` that is not yet (or no longer) current."""
        late = self._store.late_writes
        now_ms = round(now * 1000)
        since = late.take()
        previous_horizon = late.horizon
        # Raised before anything is read: a batch committed from here on below it is marked.
        late.horizon = floor_to(now_ms, TIER_5M.width)
        try:
            with self._store.errors("roll up"):
                return await self._run(now_ms, since, previous_horizon)
        except BaseException:
            # Writes during the failed run were compared with the new horizon; redo from the
            # old one so that none of them is missed.
            late.restore(since)
            late.restore(previous_horizon)
            raise

    async def _run(self, now_ms: int, since: int | None,
                   previous_horizon: int | None) -> RunReport:
        reader, _ = self._store.engines()
        async with reader.connect() as conn:
            watermarks = await read_watermarks(conn)
            max_id = (await conn.execute(select(func.max(series.c.id)))).scalar()
        if max_id is None:  # no series yet, nothing to roll up
            return RunReport({tier.name: TierRun(None, 0, watermarks.get(tier.name))
                              for tier in TIERS})
        report: dict[str, TierRun] = {}
        # The 5 min tier: from raw samples, closed by the clock.
        tier = TIER_5M
        span = plan(tier, watermark=watermarks.get(tier.name),
                    first_source_ts=await self._first_ts(tier, watermarks),
                    also_from=(since, None if previous_horizon is None
                               else previous_horizon - tier.width),
                    closed_before=now_ms, keep_from=now_ms - self._raw_retention_ms)
        report[tier.name] = await self._aggregate(tier, span, max_id, watermarks.get(tier.name))
        # The 1 h tier: from the 5 min tier, closed by its watermark; every hour whose 5 min
        # buckets were just redone is redone too.
        finer = report[TIER_5M.name]
        tier = TIER_1H
        span = plan(tier, watermark=watermarks.get(tier.name),
                    first_source_ts=await self._first_ts(tier, watermarks),
                    also_from=(finer.span.start if finer.span else None,),
                    closed_before=finer.rolled_to if finer.rolled_to is not None else 0,
                    keep_from=now_ms - self._retention_ms[TIER_5M.name])
        report[tier.name] = await self._aggregate(tier, span, max_id, watermarks.get(tier.name))
        return RunReport(report)

    async def _first_ts(self, tier: Tier, watermarks: dict[str, int]) -> int | None:
        """The oldest source row, needed only before a tier's first run."""
        if tier.name in watermarks:
            return None
        reader, _ = self._store.engines()
        src = tier.source
        # One index probe per series: the key is (series_id, ts), so min(ts) over the whole
        # table would be a full scan.
        first = (select(func.min(src.c.ts)).where(src.c.series_id == series.c.id)
                 .scalar_subquery())
        per_series = select(first.label("first")).select_from(series).subquery()
        async with reader.connect() as conn:
            found = (await conn.execute(select(func.min(per_series.c.first)))).scalar()
        return None if found is None else int(found)

    async def _aggregate(self, tier: Tier, span: Span | None, max_id: int,
                         watermark: int | None) -> TierRun:
        if span is None:
            return TierRun(None, 0, watermark)
        _, writer = self._store.engines()
        statement = self._statements[tier.name]
        rows = 0
        window = min(span.end - span.start, tier.window)
        size = min(max(tier.budget // window, 1), self._max_slice)
        for t0 in range(span.start, span.end, window):
            t1 = min(t0 + window, span.end)
            lo = 0
            while lo <= max_id:
                hi = lo + size
                started = time.monotonic()
                async with writer.begin() as conn:
                    await self._lock(conn)
                    result = await conn.execute(statement, {"lo": lo, "hi": hi,
                                                            "t0": t0, "t1": t1})
                    rows += max(result.rowcount, 0)
                    if hi > max_id and (watermark is None or t1 > watermark):
                        await conn.execute(self._advance(tier, t1))
                        watermark = t1
                took = time.monotonic() - started
                await self._pause(took)
                size, lo = next_slice(size, took, self._max_slice), hi
        return TierRun(span, rows, watermark)

    def _aggregate_statement(self, tier: Tier) -> Executable:
        src = tier.source
        width = literal_column(str(tier.width), BigInteger)
        bucket = src.c.ts - src.c.ts % width
        if src is samples:
            count: ColumnElement[Any] = func.count()
            total = func.sum(src.c.value)
            low, high = func.min(src.c.value), func.max(src.c.value)
        else:
            count = func.sum(src.c["count"])
            total = func.sum(src.c["sum"])
            low, high = func.min(src.c["min"]), func.max(src.c["max"])
        ids = select(series.c.id).where(series.c.id >= bindparam("lo", type_=Integer),
                                        series.c.id < bindparam("hi", type_=Integer))
        query = (
            select(src.c.series_id, bucket, count, total, low, high)
            .where(src.c.series_id.in_(ids),
                   src.c.ts >= bindparam("t0", type_=BigInteger),
                   src.c.ts < bindparam("t1", type_=BigInteger))
            .group_by(src.c.series_id, bucket)
        )
        table = tier.table
        stmt = self._insert(table).from_select(
            ["series_id", "ts", "count", "sum", "min", "max"], query)
        return stmt.on_conflict_do_update(
            index_elements=[table.c.series_id, table.c.ts],
            set_={name: stmt.excluded[name] for name in ("count", "sum", "min", "max")})

    def _advance(self, tier: Tier, rolled_to: int) -> Executable:
        """Move a tier's watermark forward, never back (another instance may be ahead)."""
        stmt = self._insert(rollup_watermarks).values(tier=tier.name, rolled_to=rolled_to)
        return stmt.on_conflict_do_update(
            index_elements=[rollup_watermarks.c.tier],
            set_={"rolled_to": stmt.excluded.rolled_to},
            where=rollup_watermarks.c.rolled_to < stmt.excluded.rolled_to)

    async def _lock(self, conn: AsyncConnection) -> None:
        if self._store.backend == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})"))

    async def _pause(self, took: float) -> None:
        await asyncio.sleep(took * self._yield_ratio)

    # -- retention -----------------------------------------------------------------------

    async def prune(self, now: float, batch_size: int = 10_000) -> dict[str, int]:
        """Delete rollup rows older than each tier's retention; rows removed per tier.

        Like the samples' prune: find the series with old rows by one index probe each,
        then delete at most ``batch_size`` rows per transaction.
        """
        removed: dict[str, int] = {}
        with self._store.errors("prune rollups"):
            for tier in TIERS:
                cutoff = round(now * 1000) - self._retention_ms[tier.name]
                removed[tier.name] = await self._prune_tier(tier.table, cutoff, batch_size)
        return removed

    async def _prune_tier(self, table: Table, cutoff: int, batch_size: int) -> int:
        reader, writer = self._store.engines()
        has_old = exists().where(table.c.series_id == series.c.id, table.c.ts < cutoff)
        async with reader.connect() as conn:
            pending = list((await conn.execute(
                select(series.c.id).where(has_old).order_by(series.c.id))).scalars())
        total = 0
        while pending:
            started = time.monotonic()
            async with writer.begin() as conn:
                budget = batch_size
                while pending and budget > 0:
                    deleted, finished = await _prune_series(conn, table, pending[0], cutoff,
                                                            budget)
                    budget -= deleted
                    total += deleted
                    if finished:
                        pending.pop(0)
            await self._pause(time.monotonic() - started)
        return total


async def read_watermarks(conn: AsyncConnection) -> dict[str, int]:
    """Each tier's stored watermark; a tier never rolled up has none."""
    result = await conn.execute(select(rollup_watermarks.c.tier, rollup_watermarks.c.rolled_to))
    return {tier: int(rolled_to) for tier, rolled_to in result}


async def _prune_series(conn: AsyncConnection, table: Table, series_id: int, cutoff: int,
                        budget: int) -> tuple[int, bool]:
    """Delete at most ``budget`` old rows of one series; say whether it is now clean."""
    bound = (await conn.execute(
        select(table.c.ts).where(table.c.series_id == series_id, table.c.ts < cutoff)
        .order_by(table.c.ts).offset(budget).limit(1))).scalar()
    upto = cutoff if bound is None else bound
    result = await conn.execute(
        delete(table).where(table.c.series_id == series_id, table.c.ts < upto))
    return max(result.rowcount, 0), bound is None


def next_slice(size: int, seconds: float, largest: int) -> int:
    """How many series ids the next transaction takes, from how long the last one took.

    The rows behind a slice depend on the poll interval, which the job does not know;
    doubling or halving towards :data:`TRANSACTION_SECONDS` keeps transactions short at any
    density. Only the number of transactions depends on it, not the rows written.
    """
    if seconds < TRANSACTION_SECONDS / 2:
        return min(size * 2, largest)
    if seconds > TRANSACTION_SECONDS * 2:
        return max(size // 2, 1)
    return size
