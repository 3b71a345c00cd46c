"""Tables of the SQL store, and the text form of label sets kept in them.

Six tables, kept as small as the data allows because samples are by far the largest thing
the service stores:

* ``ioc_schema_version`` — one row, 2 since migrations manage the schema: ioc releases from
  before migrations refuse anything above 1, so they never touch a migrated database. The
  real version is the Alembic revision in ``ioc_alembic_version`` (:mod:`ioc.store.migrate`);
  these models are what the revisions in ``ioc/store/migrations`` must add up to, and a test
  compares the two.
* ``ioc_series`` — one row per (metric, label set). Labels are stored once, as the canonical
  text of :func:`ioc.model.canonical_labels`, which is both the uniqueness key and (being
  unambiguously escaped) enough to rebuild the ``Labels`` tuple, so no second column is needed.
* ``ioc_samples`` — ``(series_id, ts, value)`` keyed by ``(series_id, ts)``. On SQLite it is a
  WITHOUT ROWID table: the primary-key B-tree *is* the table, so each sample is stored once
  (no separate rowid table plus index), and a range query for one series reads contiguous
  pages. On PostgreSQL it is partitioned by UTC day, so retention drops whole days
  (:mod:`ioc.store.partitions`); the model here is the parent table's shape.
* ``ioc_rollup_5m`` and ``ioc_rollup_1h`` — ``(series_id, ts, count, sum, min, max)`` keyed
  by ``(series_id, ts)``, WITHOUT ROWID on SQLite like the samples, ``ts`` being the start of
  the bucket. ``count`` and ``sum`` rather than an average so that buckets add up exactly:
  the 1 h tier is summed from the 5 min one, and a chart step of several buckets is
  ``sum(sum) / sum(count)``, equal to the average of the raw samples. ``min`` and ``max``
  keep the spikes an average hides. Maintained by :mod:`ioc.store.rollups`.
* ``ioc_rollup_watermarks`` — per tier, ``rolled_to``: every bucket that starts before it has
  been aggregated at least once. Readers take newer data from the raw samples.

Timestamps are integer **milliseconds** since the epoch, like Prometheus: integers compare and
group exactly (no float rounding when bucketing with ``ts - ts % step``), SQLite stores them in
6 bytes instead of an 8-byte REAL, and millisecond resolution is finer than any poll interval
while still keeping sub-second probe times distinct.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from ioc.model import Labels

SCHEMA_VERSION = 2  # what ioc_schema_version holds once migrations manage the database

metadata = MetaData()

schema_version = Table(
    "ioc_schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

series = Table(
    "ioc_series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("metric", Text, nullable=False),
    Column("labels", Text, nullable=False),
    UniqueConstraint("metric", "labels", name="ioc_series_metric_labels_key"),
)

samples = Table(
    "ioc_samples",
    metadata,
    Column("series_id", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    PrimaryKeyConstraint("series_id", "ts", name="ioc_samples_pkey"),
    sqlite_with_rowid=False,
)


def _rollup_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("series_id", Integer, nullable=False),
        Column("ts", BigInteger, nullable=False),
        Column("count", Integer, nullable=False),
        Column("sum", Float, nullable=False),
        Column("min", Float, nullable=False),
        Column("max", Float, nullable=False),
        PrimaryKeyConstraint("series_id", "ts", name=f"{name}_pkey"),
        sqlite_with_rowid=False,
    )


rollup_5m = _rollup_table("ioc_rollup_5m")
rollup_1h = _rollup_table("ioc_rollup_1h")

rollup_watermarks = Table(
    "ioc_rollup_watermarks",
    metadata,
    Column("tier", Text, primary_key=True),
    Column("rolled_to", BigInteger, nullable=False),
)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer ioc; opening it could corrupt data it relies on.

    Not a ``StoreError``: retrying cannot help, an operator has to upgrade ioc or point it
    at another database.
    """


# One `name="value"` pair of the canonical text. Values escape backslash, quote and newline, so
# an unescaped quote always ends a value and `="` never occurs inside one. Names are not
# escaped by canonical_labels; they may hold anything but a double quote (Prometheus names
# are far narrower), which keeps the split between name and value unambiguous.
_PAIR = re.compile(r'([^"]*?)="((?:[^"\\]|\\.)*)"(,|$)', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return "\n" if char == "n" else char


def parse_canonical_labels(text: str) -> Labels:
    """Rebuild the ``Labels`` tuple from :func:`ioc.model.canonical_labels` text."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _PAIR.match(text, pos)
        if match is None:
            raise ValueError(f"not canonical label text: {text!r}")
        name, raw, sep = match.groups()
        pairs.append((name, _ESCAPE.sub(_unescape, raw)))
        pos = match.end()
        if sep == "," and pos == len(text):
            raise ValueError(f"not canonical label text (trailing comma): {text!r}")
    return tuple(pairs)
