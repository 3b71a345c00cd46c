"""Rollup tables for long-range charts: 5 min and 1 h buckets, and their watermarks.

Revision ID: 0003_rollups
Revises: 0002_partitioned_samples
Create Date: 2026-11-28

Both tiers are ``(series_id, ts, count, sum, min, max)`` keyed by ``(series_id, ts)``,
WITHOUT ROWID on SQLite like the samples; ``ioc_rollup_watermarks`` holds, per tier, the
bucket start before which everything has been aggregated. The tables start empty: the
rollup job's first run fills them from the raw samples still kept (:mod:`ioc.store.rollups`),
and until it has, range queries read raw samples as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollups"
down_revision = "0002_partitioned_samples"
branch_labels = None
depends_on = None

TIERS = ("ioc_rollup_5m", "ioc_rollup_1h")


def upgrade() -> None:
    for name in TIERS:
        op.create_table(
            name,
            sa.Column("series_id", sa.Integer, nullable=False),
            sa.Column("ts", sa.BigInteger, nullable=False),
            sa.Column("count", sa.Integer, nullable=False),
            sa.Column("sum", sa.Float, nullable=False),
            sa.Column("min", sa.Float, nullable=False),
            sa.Column("max", sa.Float, nullable=False),
            sa.PrimaryKeyConstraint("series_id", "ts", name=f"{name}_pkey"),
            sqlite_with_rowid=False,
        )
    op.create_table(
        "ioc_rollup_watermarks",
        sa.Column("tier", sa.Text, primary_key=True),
        sa.Column("rolled_to", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ioc_rollup_watermarks")
    for name in reversed(TIERS):
        op.drop_table(name)
