"""Day partitions of the samples table on PostgreSQL: create the coming days, drop the old.

On PostgreSQL ``ioc_samples`` is partitioned ``BY RANGE (ts)`` with one partition per UTC day
(migration ``0002_partitioned_samples``), so retention is a ``DROP TABLE`` of a whole day —
no row-by-row delete, no dead rows for VACUUM, no index churn — instead of deleting millions
of rows an hour. A DEFAULT partition takes any sample whose day has no partition (a clock far
ahead, a backfill of long ago), so a sample is never refused for want of a partition.

Partitions are found by their bounds in the catalog, not by their names, so a partition an
operator added by hand (a week, a month) is respected: no day partition is created over it,
and it is dropped once its upper bound is at or before the retention cutoff. SQLite has no
partitioning; nothing here runs there.

Everything here runs inside the caller's transaction, which holds the dialect's schema lock
(``dialects.lock_schema``), so two ioc processes never create or drop the same partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

PARENT = "ioc_samples"
DEFAULT = "ioc_samples_default"
DAY_MS = 86_400_000
# Today and this many days after it get their partition at open and at every retention run.
# Retention runs hourly by default; three days of slack cover a stopped service or a
# prune_interval of a day, and samples that still find no partition go to DEFAULT and are
# moved into their day's partition when it is created.
DAYS_AHEAD = 3
# The last day a partition name (pYYYYMMDD) can spell; later samples stay in DEFAULT.
_LAST_DAY = (datetime(9999, 12, 31, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days

_NAME = re.compile(r"^ioc_samples_(?:p\d{8}|default)$")
_RANGE = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")

# The name as regclass text: quoted and schema-qualified where needed, so a hand-made
# partition with an unusual name can still be counted and dropped safely.
_LIST = text(
    "SELECT CAST(CAST(c.oid AS regclass) AS text), pg_get_expr(c.relpartbound, c.oid) "
    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str          # usable in SQL as it is (regclass text)
    lower: int | None  # ms, inclusive; None for DEFAULT (or a bound this module cannot read)
    upper: int | None  # ms, exclusive
    default: bool = False


def is_partition_name(name: str) -> bool:
    """Whether a table is one of the partitions ioc creates (schema comparisons skip them)."""
    return _NAME.match(name) is not None


def day_of(ts_ms: int) -> int:
    """Days since the epoch (UTC) of a millisecond timestamp."""
    return ts_ms // DAY_MS


def day_name(day: int) -> str:
    """``ioc_samples_p20261128``: sorts by date and tells an operator which day it holds."""
    date = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)
    return f"{PARENT}_p{date:%Y%m%d}"


def parse_bound(expression: str) -> tuple[int | None, int | None]:
    """(lower, upper) of ``FOR VALUES FROM ('a') TO ('b')``; (None, None) for anything else.

    DEFAULT, and MINVALUE/MAXVALUE bounds of a hand-made partition, read as unbounded: such a
    partition is never dropped by retention and never counted as covering a day.
    """
    match = _RANGE.search(expression)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))


async def list_partitions(conn: AsyncConnection) -> list[Partition]:
    rows = await conn.execute(_LIST, {"parent": PARENT})
    return [Partition(name, *parse_bound(bound or ""), default=bound == "DEFAULT")
            for name, bound in rows]


def missing_days(partitions: list[Partition], now: float,
                 days_ahead: int = DAYS_AHEAD) -> list[int]:
    """Days from today to ``days_ahead`` later that no partition covers, even in part."""
    today = day_of(int(now * 1000))
    wanted = range(max(today, 0), min(today + days_ahead, _LAST_DAY) + 1)
    ranges = [(p.lower, p.upper) for p in partitions if p.lower is not None and p.upper is not None]
    return [day for day in wanted
            if not any(lo < (day + 1) * DAY_MS and hi > day * DAY_MS for lo, hi in ranges)]


async def ensure(conn: AsyncConnection, now: float, days_ahead: int = DAYS_AHEAD) -> int:
    """Create the DEFAULT partition if absent and today's and the next days' partitions.

    Returns the number of partitions afterwards. A day is created as a plain table, any rows
    of that day already sitting in DEFAULT are moved into it, and it is then attached: a
    plain ``CREATE TABLE … PARTITION OF`` would fail on such rows. Attaching needs only a
    SHARE UPDATE EXCLUSIVE lock on ``ioc_samples``, so concurrent COPY ingest goes on.
    """
    partitions = await list_partitions(conn)
    default = next((p.name for p in partitions if p.default), None)
    if default is None:
        await conn.execute(text(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT"))
        partitions.append(Partition(DEFAULT, None, None, default=True))
        default = DEFAULT
    for day in missing_days(partitions, now, days_ahead):
        name, lower, upper = day_name(day), day * DAY_MS, (day + 1) * DAY_MS
        await conn.execute(text(f"CREATE TABLE {name} (LIKE {PARENT})"))
        await conn.execute(text(
            f"WITH moved AS (DELETE FROM {default} WHERE ts >= {lower} AND ts < {upper} "
            f"RETURNING series_id, ts, value) "
            f"INSERT INTO {name} (series_id, ts, value) SELECT series_id, ts, value FROM moved"))
        await conn.execute(text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ({lower}) TO ({upper})"))
        partitions.append(Partition(name, lower, upper))
    return len(partitions)


def expired(partitions: list[Partition], cutoff_ms: int) -> list[Partition]:
    """Partitions holding only samples older than the cutoff, oldest first."""
    old = [p for p in partitions if p.upper is not None and p.upper <= cutoff_ms]
    return sorted(old, key=lambda p: p.upper or 0)


async def drop(conn: AsyncConnection, partition: Partition) -> int:
    """Drop one partition; return how many samples it held (counted just before the drop).

    The count costs one scan of the partition (an index-only scan once VACUUM has been by),
    a read the row-by-row delete it replaces would have done many times over; it keeps the
    retention log and ``prune``'s result honest.
    """
    count = (await conn.execute(text(f"SELECT count(*) FROM {partition.name}"))).scalar()
    await conn.execute(text(f"DROP TABLE {partition.name}"))
    return int(count or 0)
