"""Scheduled reports: one row per schedule and period queued, so none is ever sent twice.

Revision ID: 0008_report_runs
Revises: 0006_incidents
Create Date: 2026-12-06

``ioc_report_runs`` is keyed by (schedule, period). The row is inserted in the transaction
that queues the report's notifications into the outbox (:mod:`ioc.store.report_runs`): a
restart, a second shard or ``ioc report --send`` finding the row queues nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_report_runs"
down_revision = "0007_incident_public_note"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ioc_report_runs",
        sa.Column("schedule", sa.Text, primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.Column("queued_at", sa.BigInteger, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("notifications", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ioc_report_runs")
