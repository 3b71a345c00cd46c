"""The SQL behind :meth:`SqlStore.query_range`: raw buckets, or rollups with raw edges.

A step that is a whole number of a rollup tier's buckets (1 h, 6 h, 1 d for the 1 h tier;
5 min, 15 min for the 5 min tier) reads the coarsest such tier instead of raw samples. The
answer stays the raw answer: rollup rows keep ``count`` and ``sum``, every step bucket is
``sum / count`` over the rows and samples that fall in it, and only whole tier buckets inside
``[start, end]`` that are already rolled up come from the tier. The rest — the partial buckets
at either edge, and everything after the tier's watermark (the last hour or so that the
rollup job has not reached) — comes from raw samples, so a chart is complete up to now,
while history older than the raw retention still comes from the tier.

Series are selected by metric and, per matcher, by its canonical text ``,name="value",``
occurring in ``,labels,``: that lets the database skip the metric's other series (a
wall-screen graph asks for one target among thousands), and can in theory over-match but
never under-match, so the caller checks the exact labels afterwards.

The bucket comes back as ``ts / step``: integer division is floor for the stored non-negative
timestamps (unix time after 1970) and the cheapest grouping key SQLite can compute. The step
is inlined rather than bound because PostgreSQL must see one identical expression in SELECT
and GROUP BY (two bound parameters would be two different expressions to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    true,
    union_all,
)

from ioc.store.dialects import Dialect
from ioc.store.rollups import TIER_1H, TIER_5M, Tier, ceil_to, floor_to
from ioc.store.schema import samples, series

RangeQuery = Select[tuple[int, int, float]]


def tier_for_step(step_ms: int) -> Tier | None:
    """The coarsest tier whose buckets tile the step exactly; None for raw samples."""
    for tier in (TIER_1H, TIER_5M):
        if step_ms % tier.width == 0:
            return tier
    return None


@dataclass(frozen=True)
class Split:
    """Where the tier's rows serve a query: ``[rolled_from, rolled_until)``."""

    rolled_from: int
    rolled_until: int


def split(tier: Tier, start_ms: int, end_ms: int, rolled_to: int | None) -> Split | None:
    """The whole, rolled-up tier buckets inside ``[start_ms, end_ms]``; None if there are none."""
    if rolled_to is None:
        return None
    rolled_from = ceil_to(start_ms, tier.width)
    rolled_until = min(rolled_to, floor_to(end_ms + 1, tier.width))
    return Split(rolled_from, rolled_until) if rolled_from < rolled_until else None


def _matching(dialect: Dialect, matcher_count: int) -> list[ColumnElement[bool]]:
    haystack = literal(",") + series.c.labels + literal(",")
    return [series.c.metric == bindparam("metric", type_=Text),
            *(dialect.contains(haystack, bindparam(f"m{i}", type_=Text))
              for i in range(matcher_count))]


def _bucket(table: Table, step_ms: int) -> ColumnElement[int]:
    return table.c.ts.op("/", return_type=BigInteger)(literal_column(str(int(step_ms))))


def _per_series(dialect: Dialect, matcher_count: int, inner: Select[Any]) -> RangeQuery:
    """PostgreSQL: run ``inner`` (buckets of one series) for each matching series.

    PostgreSQL cannot estimate the substring matchers and takes them to keep a third of a
    metric's series, which makes a hash join over a scan of every sample in the range (of
    every metric) look cheaper than walking the primary key per series: 1.4 s instead of
    17 ms for one series of 5,000 over three days on the bench machine. ``LATERAL`` leaves
    it only the walk per series, so a query costs what its series hold, never what the
    table holds — as the store tail reads (:mod:`ioc.store.tail`). The price is paid when
    one query asks for every series of a metric that is alone in the table: samples are
    stored in arrival order, one scrape round after another, so the walk visits a heap page
    per sample, about twice the time of the scan (17 s against 9 s for 4.3 million samples).
    """
    per_series = inner.lateral()
    return (
        select(series.c.id, per_series.c.bucket, per_series.c.value)
        .select_from(series)
        .join(per_series, true())
        .where(*_matching(dialect, matcher_count))
        .order_by(series.c.id, per_series.c.bucket)
    )


def raw_query(dialect: Dialect, matcher_count: int, step_ms: int) -> RangeQuery:
    """Averages per matching series and step bucket of the samples in ``[start, end]``."""
    bucket = _bucket(samples, step_ms)
    in_range = (samples.c.ts >= bindparam("start", type_=BigInteger),
                samples.c.ts <= bindparam("end", type_=BigInteger))
    if dialect.name == "postgresql":
        return _per_series(dialect, matcher_count, (
            select(bucket.label("bucket"), func.avg(samples.c.value).label("value"))
            .where(samples.c.series_id == series.c.id, *in_range)
            .correlate(series)
            .group_by(bucket)))
    return (
        select(samples.c.series_id, bucket, func.avg(samples.c.value))
        .join(series, series.c.id == samples.c.series_id)
        .where(*_matching(dialect, matcher_count), *in_range)
        .group_by(samples.c.series_id, bucket)
        .order_by(samples.c.series_id, bucket)
    )


def rollup_query(dialect: Dialect, tier: Tier, matcher_count: int, step_ms: int, *,
                 head: bool, tail: bool) -> RangeQuery:
    """Like :func:`raw_query`, reading ``[rolled_from, rolled_until)`` from the tier.

    ``head``: raw samples in ``[start, rolled_from)`` are added (the range starts inside a
    tier bucket); ``tail``: raw samples in ``[rolled_until, end]``. Branches that cannot
    match anything are left out rather than probed once per series.
    """
    start, end = bindparam("start", type_=BigInteger), bindparam("end", type_=BigInteger)
    rolled_from = bindparam("rolled_from", type_=BigInteger)
    rolled_until = bindparam("rolled_until", type_=BigInteger)
    one = literal_column("1", Integer)
    rolled = tier.table
    branches: list[tuple[Table, Any, Any, tuple[ColumnElement[bool], ...]]] = [
        (rolled, rolled.c["sum"], rolled.c["count"],
         (rolled.c.ts >= rolled_from, rolled.c.ts < rolled_until))]
    if head:
        branches.append((samples, samples.c.value, one,
                         (samples.c.ts >= start, samples.c.ts < rolled_from)))
    if tail:
        branches.append((samples, samples.c.value, one,
                         (samples.c.ts >= rolled_until, samples.c.ts <= end)))

    def average(total: Any, count: Any) -> ColumnElement[float]:
        return cast(func.sum(total), Float).op("/", return_type=Float)(func.sum(count))

    if dialect.name == "postgresql":
        rows = union_all(*(
            select(_bucket(table, step_ms).label("bucket"), total.label("total"),
                   count.label("n"))
            .where(table.c.series_id == series.c.id, *bounds)
            .correlate(series)
            for table, total, count, bounds in branches)).subquery()
        return _per_series(dialect, matcher_count, (
            select(rows.c.bucket, average(rows.c.total, rows.c.n).label("value"))
            .group_by(rows.c.bucket)))
    where = _matching(dialect, matcher_count)
    rows = union_all(*(
        select(table.c.series_id.label("series_id"), _bucket(table, step_ms).label("bucket"),
               total.label("total"), count.label("n"))
        .join(series, series.c.id == table.c.series_id)
        .where(*where, *bounds)
        for table, total, count, bounds in branches)).subquery()
    return (
        select(rows.c.series_id, rows.c.bucket, average(rows.c.total, rows.c.n))
        .group_by(rows.c.series_id, rows.c.bucket)
        .order_by(rows.c.series_id, rows.c.bucket)
    )
