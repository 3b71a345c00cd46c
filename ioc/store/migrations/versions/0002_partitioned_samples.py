"""PostgreSQL: ioc_samples partitioned by day; everywhere: schema version 2.

Revision ID: 0002_partitioned_samples
Revises: 0001_baseline
Create Date: 2026-11-28

On PostgreSQL ``ioc_samples`` becomes ``PARTITION BY RANGE (ts)`` with the same columns and
primary key, a DEFAULT partition, and one partition per UTC day that holds samples; the rows
are copied over in this transaction (about the time of a COPY of the table: run ``ioc db
upgrade`` in a quiet hour on a big database). :mod:`ioc.store.partitions` then keeps the
coming days' partitions and drops expired ones. SQLite has no partitioning and keeps its
WITHOUT ROWID table.

``ioc_schema_version`` goes to 2 on both: ioc releases from before migrations read that row
and refuse a database above version 1, so they can no longer open (and quietly mis-maintain)
a database that migrations now manage. Later revisions leave it at 2; the Alembic revision in
``ioc_alembic_version`` is the real version from here on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0002_partitioned_samples"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

DAY_MS = 86_400_000
# Samples from before 1970 or after 9999 (a broken clock) have no day name; they go to DEFAULT.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST_MS = ((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).days + 1) * DAY_MS

_COLUMNS = "series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value FLOAT NOT NULL"


def _day_name(day: int) -> str:
    date = _EPOCH + timedelta(days=day)
    return f"ioc_samples_p{date:%Y%m%d}"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE ioc_samples RENAME TO ioc_samples_unpartitioned")
        op.execute("ALTER INDEX ioc_samples_pkey RENAME TO ioc_samples_unpartitioned_pkey")
        op.execute(f"CREATE TABLE ioc_samples ({_COLUMNS}, "
                   "CONSTRAINT ioc_samples_pkey PRIMARY KEY (series_id, ts)) "
                   "PARTITION BY RANGE (ts)")
        op.execute("CREATE TABLE ioc_samples_default PARTITION OF ioc_samples DEFAULT")
        days = bind.execute(sa.text(
            "SELECT DISTINCT ts / :day FROM ioc_samples_unpartitioned "
            "WHERE ts >= 0 AND ts < :last ORDER BY 1"), {"day": DAY_MS, "last": _LAST_MS})
        for (day,) in days.all():
            op.execute(f"CREATE TABLE {_day_name(day)} PARTITION OF ioc_samples "
                       f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})")
        op.execute("INSERT INTO ioc_samples (series_id, ts, value) "
                   "SELECT series_id, ts, value FROM ioc_samples_unpartitioned")
        op.execute("DROP TABLE ioc_samples_unpartitioned")
    op.execute("UPDATE ioc_schema_version SET version = 2")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"CREATE TABLE ioc_samples_unpartitioned ({_COLUMNS}, "
                   "CONSTRAINT ioc_samples_unpartitioned_pkey PRIMARY KEY (series_id, ts))")
        op.execute("INSERT INTO ioc_samples_unpartitioned (series_id, ts, value) "
                   "SELECT series_id, ts, value FROM ioc_samples")
        op.execute("DROP TABLE ioc_samples")  # and every partition with it
        op.execute("ALTER TABLE ioc_samples_unpartitioned RENAME TO ioc_samples")
        op.execute("ALTER INDEX ioc_samples_unpartitioned_pkey RENAME TO ioc_samples_pkey")
    op.execute("UPDATE ioc_schema_version SET version = 1")
