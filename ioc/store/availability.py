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

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ioc.availability import HOLD_INTERVALS, Segment, segments_from_polls
from ioc.store.alert_delivery import ms, sec
from ioc.store.base import StoreError
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
                        department: str | None = None) -> dict[str, TargetHistory]:
        try:
            return await read_histories(self._reader(), start, end, intervals=intervals,
                                        department=department)
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
        period, so a bucket's largest value is its last). One indexed lookup per series and
        month: a year of a province is a few thousand of them, not a scan.
        """
        try:
            async with self._reader().connect() as conn:
                out: dict[str, list[tuple[str, dict[str, str], float]]] = {
                    label: [] for label, _, _ in months}
                for sid, metric, text in await conn.execute(
                        select(series.c.id, series.c.metric, series.c.labels)
                        .where(series.c.metric.in_(list(metrics)))):
                    labels = dict(parse_canonical_labels(text))
                    for label, start, end in months:
                        value = (await conn.execute(
                            select(samples.c.value).where(
                                samples.c.series_id == sid, samples.c.ts >= ms(start),
                                samples.c.ts < ms(end))
                            .order_by(samples.c.ts.desc()).limit(1))).scalar()
                        if value is None:
                            value = (await conn.execute(
                                select(rollup_1h.c.max).where(
                                    rollup_1h.c.series_id == sid,
                                    rollup_1h.c.ts >= ms(start), rollup_1h.c.ts < ms(end))
                                .order_by(rollup_1h.c.ts.desc()).limit(1))).scalar()
                        if value is not None:
                            out[label].append((metric, labels, float(value)))
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
                         department: str | None = None) -> dict[str, TargetHistory]:
    """Every target's segments over ``[start, end)``, from rollups and raw polls."""
    intervals = intervals or {}
    async with engine.connect() as conn:
        by_target: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for sid, text in await conn.execute(
                select(series.c.id, series.c.labels).where(series.c.metric == UP_METRIC)):
            labels = dict(parse_canonical_labels(text))
            if "target" not in labels:
                continue
            if department is not None and labels.get("department") != department:
                continue
            by_target[labels["target"]].append((sid, labels.get("department", "")))
        rolled = (await conn.execute(select(rollup_watermarks.c.rolled_to).where(
            rollup_watermarks.c.tier == TIER_5M.name))).scalar()
        out: dict[str, TargetHistory] = {}
        for target, sids in sorted(by_target.items()):
            ids = [sid for sid, _ in sids]
            first = await _first_poll(conn, ids)
            monitored_from = None if first is None else sec(first)
            interval = intervals.get(target) or await _guess_interval(conn, ids)
            hold = interval * HOLD_INTERVALS
            if monitored_from is None or monitored_from >= end:
                segments: list[Segment] = []
            elif len(ids) == 1:
                segments = await _segments(conn, ids[0], start, end, interval, rolled)
            else:
                segments = await _raw_segments(conn, ids, start - hold, end, hold)
            out[target] = TargetHistory(target, sids[-1][1], monitored_from,
                                        _clip(segments, start, end), interval)
    return out


async def _first_poll(conn: AsyncConnection, ids: Sequence[int]) -> int | None:
    """The oldest poll kept: raw, or a rollup bucket's start where raw history was pruned
    (then only the bucket is known, and the target counts as watched from its start)."""
    found: dict[str, list[int]] = {"raw": [], "rolled": []}
    for key, table in (("raw", samples), ("rolled", rollup_1h), ("rolled", rollup_5m)):
        for sid in ids:  # one index seek per series
            value = (await conn.execute(select(func.min(table.c.ts))
                                        .where(table.c.series_id == sid))).scalar()
            if value is not None:
                found[key].append(value)
    raw = min(found["raw"]) if found["raw"] else None
    rolled = min(found["rolled"]) if found["rolled"] else None
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


async def _irregular(conn: AsyncConnection, sid: int, lo: int, hi: int, need: int) -> set[int]:
    """Buckets in ``[lo, hi)`` that are not full of good polls: missing, short, or holding
    a failed poll. The database walks the month's rows; Python sees a few per outage.

    Missing buckets are found per UTC day: a day with all its rows is complete (the usual
    case, one row of counts), only the others have their bucket starts read.
    """
    width = TIER_5M.width
    r = rollup_5m
    in_range = (r.c.series_id == sid, r.c.ts >= lo, r.c.ts < hi)
    out = {ts for (ts,) in await conn.execute(select(r.c.ts).where(
        *in_range, (r.c.count < need) | (r.c.sum != r.c.count)))}
    day = (r.c.ts // _DAY_MS).label("day")
    days: set[int] = set()
    for raw_day, count in await conn.execute(select(day, func.count()).where(*in_range)
                                             .group_by(day)):
        number = int(raw_day)
        days.add(number)
        first, last = max(lo, number * _DAY_MS), min(hi, (number + 1) * _DAY_MS)
        if count == (last - first) // width:
            continue
        present = {ts for (ts,) in await conn.execute(select(r.c.ts).where(
            r.c.series_id == sid, r.c.ts >= first, r.c.ts < last))}
        out.update(b for b in range(first, last, width) if b not in present)
    # days without a single row
    for number in range(lo // _DAY_MS, (hi - 1) // _DAY_MS + 1):
        if number not in days:
            first, last = max(lo, number * _DAY_MS), min(hi, (number + 1) * _DAY_MS)
            out.update(range(first, last, width))
    return out


async def _segments(conn: AsyncConnection, sid: int, start: float, end: float,
                    interval: float, rolled_to: int | None) -> list[Segment]:
    """Solid buckets are good polls through and through; the rest is read raw.

    A bucket is solid when it and the bucket before it hold as many polls as the width
    allows at the interval, all good (the previous bucket's last poll covers this one's
    start). Only good buckets are taken from the rollups: an outage, short or long, is
    read from its raw polls, so its edges fall where the polls put them.
    """
    width = TIER_5M.width
    hold = interval * HOLD_INTERVALS
    lo, hi = floor_to(ms(start), width), ceil_to(ms(end), width)
    top = lo if rolled_to is None else max(lo, min(hi, floor_to(rolled_to, width)))
    dirty: set[int] = set(range(top, hi, width))
    if top > lo:
        need = max(1, int(width / 1000 // interval))
        for b in await _irregular(conn, sid, lo - width, top, need):
            dirty.add(b)
            dirty.add(b + width)
    runs: list[tuple[int, int]] = []
    for b in sorted(d for d in dirty if lo <= d < hi):
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + width)
        else:
            runs.append((b, b + width))
    out: list[Segment] = []
    cursor = lo
    for a, b in runs:
        if a > cursor:
            out.append(Segment(sec(cursor), sec(a), True))
        out += await _raw_segments(conn, [sid], sec(a) - hold, sec(b), hold, clip_from=sec(a))
        cursor = b
    if cursor < hi:
        out.append(Segment(sec(cursor), sec(hi), True))
    return _joined(out)


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
