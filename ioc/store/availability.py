"""Reading availability for a period: rollups where they answer exactly, raw polls elsewhere.

A month of 1,000 targets polled every 30 s is 86 million polls; reading them all for a
report would take minutes. The 5 min rollup of ``ioc_target_up`` (``count``, ``sum`` per
bucket) answers most of the month exactly: a bucket is *solid* when it holds at least as
many polls as its width allows at the target's interval, all with one verdict, and the
bucket before it is the same, so the previous bucket's last poll (which covers the start of
this one) had that verdict too. A solid bucket is up (or down) for all its 300 s. Every
other bucket — an outage's edges, a gap, the newest hour the rollup job has not reached —
is read from the raw polls, from ``hold`` before it so the poll covering its start is seen,
and cut with :func:`ioc.availability.segments_from_polls`. The result equals reading every
raw poll (a test compares the two), at the cost of a few raw reads around each outage.

A target whose polls are spread over several series (its labels changed during the
period) is read raw whole: rare, and the merge of two rollups could not be exact.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy import Table, case, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ioc.availability import HOLD_INTERVALS, Segment, segments_from_polls
from ioc.store.alert_delivery import ms, sec
from ioc.store.base import StoreError, chunked
from ioc.store.events import events_table
from ioc.store.rollups import TIER_5M, ceil_to, floor_to
from ioc.store.schema import (
    parse_canonical_labels,
    rollup_1h,
    rollup_5m,
    rollup_watermarks,
    samples,
    series,
)
from ioc.store.table_store import TableStore

UP_METRIC = "ioc_target_up"
DEFAULT_INTERVAL = 60.0


@dataclass(slots=True)
class TargetHistory:
    """What a period's availability of one target needs: its segments and first poll."""

    target: str
    department: str
    monitored_from: float | None
    segments: list[Segment]
    interval: float


class HistoryStore(TableStore):
    """The polls side of reports: opens like the other small stores, reads only."""

    TABLES = (series, samples, rollup_5m, rollup_1h, rollup_watermarks, events_table)
    NAME = "poll history"
    OPENING = "the poll history"

    async def histories(self, start: float, end: float, *,
                        intervals: Mapping[str, float] | None = None,
                        department: str | None = None,
                        targets: Collection[str] | None = None) -> dict[str, TargetHistory]:
        try:
            return await read_histories(self._reader(), start, end, intervals=intervals,
                                        department=department, targets=targets)
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read the poll history: "
                             f"{type(exc).__name__}: {exc}") from exc


    async def last_values(self, metrics: Sequence[str], start: float, end: float
                          ) -> list[tuple[str, dict[str, str], float]]:
        """The last value of each series of ``metrics`` stored inside ``[start, end)``."""
        try:
            async with self._reader().connect() as conn:
                out = []
                for sid, metric, text in await conn.execute(
                        select(series.c.id, series.c.metric, series.c.labels)
                        .where(series.c.metric.in_(list(metrics)))):
                    value = (await conn.execute(
                        select(samples.c.value).where(samples.c.series_id == sid,
                                                      samples.c.ts >= ms(start),
                                                      samples.c.ts < ms(end))
                        .order_by(samples.c.ts.desc()).limit(1))).scalar()
                    if value is not None:
                        out.append((metric, dict(parse_canonical_labels(text)), value))
                return out
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read counters: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def last_values_by_month(self, metrics: Sequence[str],
                                   months: Sequence[tuple[str, float, float]]
                                   ) -> dict[str, list[tuple[str, dict[str, str], float]]]:
        """For each month ``(label, start, end)``: the last value of each series inside it.

        Raw samples where they are still kept; past the raw retention, the newest 1 h rollup
        bucket of the month, its ``max`` (the portal's counters only grow within their
        period, so a bucket's largest value is its last). One statement per month, two
        index seeks per series in it.
        """
        s = series.c
        try:
            async with self._reader().connect() as conn:
                names = {sid: (metric, dict(parse_canonical_labels(text)))
                         for sid, metric, text in await conn.execute(
                             select(s.id, s.metric, s.labels)
                             .where(s.metric.in_(list(metrics))))}
                out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
                for label, start, end in months:
                    raw = select(samples.c.value).where(
                        samples.c.series_id == s.id, samples.c.ts >= ms(start),
                        samples.c.ts < ms(end)).order_by(samples.c.ts.desc()).limit(1)
                    hour = select(rollup_1h.c.max).where(
                        rollup_1h.c.series_id == s.id, rollup_1h.c.ts >= ms(start),
                        rollup_1h.c.ts < ms(end)).order_by(rollup_1h.c.ts.desc()).limit(1)
                    found = []
                    for chunk in _chunks(list(names)):
                        for sid, last_raw, last_hour in await conn.execute(
                                select(s.id, raw.scalar_subquery(), hour.scalar_subquery())
                                .where(s.id.in_(chunk))):
                            value = last_raw if last_raw is not None else last_hour
                            if value is not None:
                                found.append((*names[sid], float(value)))
                    out[label] = found
                return out
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read monthly counters: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def events_by_severity(self, start: float, end: float
                                 ) -> dict[str, dict[str, int]]:
        """Security events that occurred in ``[start, end)``: department → severity → n."""
        e = events_table
        try:
            async with self._reader().connect() as conn:
                rows = await conn.execute(
                    select(e.c.department, e.c.severity, func.count())
                    .where(e.c.occurred_at >= ms(start), e.c.occurred_at < ms(end))
                    .group_by(e.c.department, e.c.severity))
                out: dict[str, dict[str, int]] = defaultdict(dict)
                for department, severity, count in rows:
                    out[department or ""][severity] = count
                return dict(out)
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot count events: "
                             f"{type(exc).__name__}: {exc}") from exc


async def read_histories(engine: AsyncEngine, start: float, end: float, *,
                         intervals: Mapping[str, float] | None = None,
                         department: str | None = None,
                         targets: Collection[str] | None = None) -> dict[str, TargetHistory]:
    """Every target's segments over ``[start, end)``, from rollups and raw polls (only
    ``targets``' when given: the public status page reads the targets it shows).

    What every target needs is asked for all of them at once — each series' first poll
    (one statement of index seeks), the month's irregular 5 min buckets (one pass over the
    rollup rows), the raw polls around outage edges and of the newest hour (a hundred
    primary-key ranges per statement). A query per target and step (ten per target) made a
    province's month 8-10 s of round trips through aiosqlite's thread (BENCHMARKS.md).
    """
    intervals = intervals or {}
    width = TIER_5M.width
    async with engine.connect() as conn:
        by_target: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for sid, text in await conn.execute(
                select(series.c.id, series.c.labels).where(series.c.metric == UP_METRIC)):
            labels = dict(parse_canonical_labels(text))
            if "target" not in labels:
                continue
            if department is not None and labels.get("department") != department:
                continue
            if targets is not None and labels["target"] not in targets:
                continue
            by_target[labels["target"]].append((sid, labels.get("department", "")))
        rolled = (await conn.execute(select(rollup_watermarks.c.rolled_to).where(
            rollup_watermarks.c.tier == TIER_5M.name))).scalar()
        firsts = await _first_polls(conn, [sid for sids in by_target.values()
                                           for sid, _ in sids])
        lo, hi = floor_to(ms(start), width), ceil_to(ms(end), width)
        top = lo if rolled is None else max(lo, min(hi, floor_to(rolled, width)))
        plans: dict[str, tuple[list[int], float | None, float]] = {}
        need: dict[int, int] = {}
        # Nothing exists before a target's first poll: it is read from there, not from the
        # period's start (a target watched for a day is one day of buckets, not 90 days of
        # empty ones, each counted missing and read back from raw polls).
        begins: dict[int, int] = {}
        for target, sids in sorted(by_target.items()):
            ids = [sid for sid, _ in sids]
            first = _first_of(firsts, ids)
            monitored_from = None if first is None else sec(first)
            interval = intervals.get(target) or await _guess_interval(conn, ids)
            plans[target] = (ids, monitored_from, interval)
            if monitored_from is not None and monitored_from < end and len(ids) == 1:
                need[ids[0]] = max(1, int(width / 1000 // interval))
                begins[ids[0]] = max(lo, floor_to(ms(monitored_from), width))
        # from the bucket before the period's first (a solid bucket needs a full one before
        # it), or from a later target's first bucket
        windows = {sid: lo - width if begin <= lo else begin for sid, begin in begins.items()}
        irregular = await _irregular(conn, need, windows, top) if top > lo else {}
        # The raw polls every target's runs need, read for all targets together.
        runs = {sid: _dirty_runs(begins[sid], hi, top, irregular.get(sid, set()))
                for sid in need}
        holds = {ids[0]: interval * HOLD_INTERVALS for ids, _, interval in plans.values()
                 if len(ids) == 1}
        wanted = [(sid, a - round(holds[sid] * 1000), b)
                  for sid, sid_runs in runs.items() for a, b in sid_runs]
        polls = await _raw_many(conn, wanted)
        out: dict[str, TargetHistory] = {}
        for target, (ids, monitored_from, interval) in plans.items():
            hold = interval * HOLD_INTERVALS
            if monitored_from is None or monitored_from >= end:
                segments: list[Segment] = []
            elif len(ids) == 1:
                sid = ids[0]
                segments = _assemble(begins[sid], hi, runs[sid], [
                    polls[(sid, a - round(hold * 1000), b)] for a, b in runs[sid]], hold)
            else:
                begin = start if monitored_from is None else max(start, monitored_from)
                segments = await _raw_segments(conn, ids, begin - hold, end, hold)
            out[target] = TargetHistory(target, by_target[target][-1][1], monitored_from,
                                        _clip(segments, start, end), interval)
    return out



CHUNK = 500  # series ids per statement (bound parameters stay far below every limit)
# Statements a month's read runs at once on PostgreSQL, each on a connection of its own: the
# server spends a core per statement scanning rollup rows, so a report no longer waits for
# one core while the others idle. SQLite reads on its one connection, one at a time.
PARALLEL = 4

T = TypeVar("T")


async def _each(conn: AsyncConnection, jobs: Sequence[Callable[[AsyncConnection], Awaitable[T]]]
                ) -> list[T]:
    """Run read-only ``jobs``: on PostgreSQL up to PARALLEL at once, each on its own pooled
    connection (every job reads committed data; none needs another's snapshot); else in turn
    on ``conn``."""
    if conn.dialect.name != "postgresql" or len(jobs) < 2:
        return [await job(conn) for job in jobs]
    gate = asyncio.Semaphore(PARALLEL)

    async def run(job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with gate, conn.engine.connect() as own:
            return await job(own)

    return list(await asyncio.gather(*(run(job) for job in jobs)))


def _chunks(ids: Sequence[int], spread: int = 1) -> list[list[int]]:
    """``ids`` in statements of at most CHUNK, and in at least ``spread`` of them when there
    are that many (for statements run at once)."""
    return chunked(ids, max(1, min(CHUNK, -(-len(ids) // spread))))


async def _first_polls(conn: AsyncConnection, ids: Sequence[int]
                       ) -> dict[int, tuple[int | None, int | None]]:
    """Series id -> (oldest raw poll, oldest rollup bucket), by one index seek per series
    and table inside one statement per chunk of series."""
    out: dict[int, tuple[int | None, int | None]] = {}
    s = series.c
    raw = select(func.min(samples.c.ts)).where(samples.c.series_id == s.id).scalar_subquery()
    hour = select(func.min(rollup_1h.c.ts)).where(
        rollup_1h.c.series_id == s.id).scalar_subquery()
    five = select(func.min(rollup_5m.c.ts)).where(
        rollup_5m.c.series_id == s.id).scalar_subquery()
    for chunk in _chunks(ids):
        for sid, first_raw, first_hour, first_five in await conn.execute(
                select(s.id, raw, hour, five).where(s.id.in_(chunk))):
            rolled = [v for v in (first_hour, first_five) if v is not None]
            out[sid] = (first_raw, min(rolled) if rolled else None)
    return out


def _first_of(firsts: Mapping[int, tuple[int | None, int | None]],
              ids: Sequence[int]) -> int | None:
    """The oldest poll kept: raw, or a rollup bucket's start where raw history was pruned
    (then only the bucket is known, and the target counts as watched from its start)."""
    raws = [firsts[i][0] for i in ids if i in firsts and firsts[i][0] is not None]
    rolls = [firsts[i][1] for i in ids if i in firsts and firsts[i][1] is not None]
    raw = min(v for v in raws if v is not None) if raws else None
    rolled = min(v for v in rolls if v is not None) if rolls else None
    if raw is None or (rolled is not None and rolled < floor_to(raw, TIER_5M.width)):
        return rolled
    return raw


async def _guess_interval(conn: AsyncConnection, ids: Sequence[int]) -> float:
    """A target no longer in the config: its interval from the gap of its newest polls."""
    rows = list(await conn.execute(
        select(samples.c.ts).where(samples.c.series_id == ids[-1])
        .order_by(samples.c.ts.desc()).limit(5)))
    gaps = [a[0] - b[0] for a, b in pairwise(rows) if a[0] > b[0]]
    return sec(min(gaps)) if gaps else DEFAULT_INTERVAL


_DAY_MS = 86_400_000


async def _irregular(conn: AsyncConnection, need: Mapping[int, int],
                     windows: Mapping[int, int], hi: int) -> dict[int, set[int]]:
    """Per series, the buckets in ``[windows[series], hi)`` that are not full of good polls:
    missing, short (fewer than ``need[series]`` polls), or holding a failed poll.

    One pass over the rollup rows in primary-key order, per chunk of series with the same
    ``need`` (a province has one or a few intervals), counts each series' rows and gathers
    its bad buckets (grouped by series only: grouping by day as well made SQLite sort the
    month's rows). A month of 1,000 targets is 8.6 million rows, read once. Only a series
    missing buckets has its days counted, to find which.
    """
    width = TIER_5M.width
    r = rollup_5m
    out: dict[int, set[int]] = defaultdict(set)
    if not windows:
        return out
    lo = min(windows.values())  # rows before a series' own window do not exist
    short_series: list[int] = []
    by_need: dict[int, list[int]] = defaultdict(list)
    for sid, n in need.items():
        by_need[n].append(sid)
    postgres = conn.dialect.name == "postgresql"

    def counted(n: int, chunk: list[int]) -> Callable[[AsyncConnection], Awaitable[list[Any]]]:
        is_bad = (r.c.count < n) | (r.c.sum != r.c.count)
        # the bad buckets' starts in the same pass: an array on PostgreSQL, a list of
        # numbers on SQLite (group_concat skips the NULLs of the good ones)
        bad = func.array_agg(r.c.ts).filter(is_bad) if postgres else \
            func.group_concat(case((is_bad, r.c.ts)))

        async def job(c: AsyncConnection) -> list[Any]:
            return list(await c.execute(
                select(r.c.series_id, func.count(), bad)
                .where(r.c.series_id.in_(chunk), r.c.ts >= lo, r.c.ts < hi)
                .group_by(r.c.series_id)))
        return job

    chunks = [chunk for n, sids in by_need.items()
              for chunk in _chunks(sids, PARALLEL if postgres else 1)]
    needs = [need[chunk[0]] for chunk in chunks]
    results = await _each(conn, [counted(n, chunk) for n, chunk in zip(needs, chunks,
                                                                         strict=True)])
    for chunk, rows in zip(chunks, results, strict=True):
        seen = set()
        for sid, count, starts in rows:
            seen.add(sid)
            if starts:
                out[sid].update(starts if postgres else map(int, starts.split(",")))
            if count != (hi - windows[sid]) // width:
                short_series.append(sid)
        short_series.extend(sid for sid in chunk if sid not in seen)
    day = (r.c.ts // _DAY_MS).label("day")
    for sid in short_series:  # which days miss buckets, then which buckets
        own = windows[sid]
        counts = {int(number): count for number, count in await conn.execute(
            select(day, func.count()).where(r.c.series_id == sid, r.c.ts >= own, r.c.ts < hi)
            .group_by(day))}
        for number in range(own // _DAY_MS, (hi - 1) // _DAY_MS + 1):
            first, last = max(own, number * _DAY_MS), min(hi, (number + 1) * _DAY_MS)
            if number not in counts:
                out[sid].update(range(first, last, width))
            elif counts[number] != (last - first) // width:
                present = {ts for (ts,) in await conn.execute(select(r.c.ts).where(
                    r.c.series_id == sid, r.c.ts >= first, r.c.ts < last))}
                out[sid].update(b for b in range(first, last, width) if b not in present)
    return out


def _dirty_runs(lo: int, hi: int, top: int, irregular: set[int]) -> list[tuple[int, int]]:
    """The runs of buckets (ms) read from raw polls: irregular buckets and the one after each
    (its start is covered by the irregular one's last poll), and everything from ``top``
    (the rollup watermark) on. A bucket is solid when it and the bucket before it hold as
    many polls as the width allows at the interval, all good; only solid buckets are taken
    from the rollups, so an outage's edges fall where its polls put them."""
    width = TIER_5M.width
    dirty: set[int] = set(range(top, hi, width))
    for b in irregular:
        dirty.add(b)
        dirty.add(b + width)
    runs: list[tuple[int, int]] = []
    for b in sorted(d for d in dirty if lo <= d < hi):
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + width)
        else:
            runs.append((b, b + width))
    return runs


def _assemble(lo: int, hi: int, runs: Sequence[tuple[int, int]],
              polls: Sequence[Sequence[tuple[float, bool]]], hold: float) -> list[Segment]:
    """Solid time up between the runs, each run's segments from its raw polls."""
    out: list[Segment] = []
    cursor = lo
    for (a, b), found in zip(runs, polls, strict=True):
        if a > cursor:
            out.append(Segment(sec(cursor), sec(a), True))
        out += _clip(segments_from_polls(found, hold), sec(a), sec(b))
        cursor = b
    if cursor < hi:
        out.append(Segment(sec(cursor), sec(hi), True))
    return _joined(out)


UNION_PARTS = 100  # ranges per statement (SQLite allows 500 parts in a compound select)


def _ranges(table: Table, cols: Sequence[Any], ranges: Sequence[tuple[int, int, int]],
            *where: Any) -> Any:
    """Rows of ``table`` in each ``(series, from_ms, to_ms)``: one SELECT per range joined
    by UNION ALL, so each part is an index range of the primary key (an OR of the ranges
    lets SQLite's planner scan the whole table instead)."""
    parts = [select(*cols).where(table.c.series_id == sid, table.c.ts >= a, table.c.ts < b,
                                 *where) for sid, a, b in ranges]
    return parts[0] if len(parts) == 1 else union_all(*parts)


async def _raw_many(conn: AsyncConnection, ranges: Sequence[tuple[int, int, int]]
                    ) -> dict[tuple[int, int, int], list[tuple[float, bool]]]:
    """The raw polls in each ``(series, from_ms, to_ms)``, read for many series per
    statement (a statement per target made a round trip and, on PostgreSQL, a plan over
    every day partition per target)."""
    by_series: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    cols = (samples.c.series_id, samples.c.ts, samples.c.value)
    unique = sorted(set(ranges))

    def part(first: int) -> Callable[[AsyncConnection], Awaitable[list[Any]]]:
        async def job(c: AsyncConnection) -> list[Any]:
            return list(await c.execute(
                _ranges(samples, cols, unique[first:first + UNION_PARTS])))
        return job

    for rows in await _each(conn, [part(first)
                                   for first in range(0, len(unique), UNION_PARTS)]):
        for sid, ts, value in rows:
            by_series[sid].append((ts, value >= 0.5))
    for found in by_series.values():
        found.sort()
    out = {}
    for sid, a, b in unique:
        found = by_series.get(sid, [])
        first = bisect_left(found, (a, False))
        last = bisect_left(found, (b, False))
        out[(sid, a, b)] = [(sec(ts), up) for ts, up in dict(found[first:last]).items()]
    return out


async def _raw_segments(conn: AsyncConnection, ids: Sequence[int], start: float, end: float,
                        hold: float, clip_from: float | None = None) -> list[Segment]:
    rows = await conn.execute(
        select(samples.c.ts, samples.c.value)
        .where(samples.c.series_id.in_(list(ids)), samples.c.ts >= ms(start),
               samples.c.ts < ms(end)).order_by(samples.c.ts))
    polls: dict[int, bool] = {}
    for ts, value in rows:
        polls[ts] = value >= 0.5
    segments = segments_from_polls(((sec(ts), up) for ts, up in sorted(polls.items())), hold)
    return _clip(segments, start if clip_from is None else clip_from, end)


def _clip(segments: Sequence[Segment], start: float, end: float) -> list[Segment]:
    out = []
    for seg in segments:
        a, b = max(seg.start, start), min(seg.end, end)
        if a < b:
            out.append(Segment(a, b, seg.up))
    return out


def _joined(segments: Sequence[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        if out and out[-1].up == seg.up and out[-1].end == seg.start:
            out[-1] = Segment(out[-1].start, seg.end, seg.up)
        else:
            out.append(seg)
    return out
