"""The incident ledger: incidents derived from stored polls, operators' notes, a watermark.

Revision ID: 0006_incidents
Revises: 0005_oncall
Create Date: 2026-12-06

``ioc_incidents`` holds one row per outage of a target, keyed by a stable id (target and
start), so that deriving the same polls again rewrites the row and keeps its notes
(``ioc_incident_notes``). ``ioc_incident_watermark`` records how far the stored polls have
been read (:mod:`ioc.store.incidents`). The tables start empty: the alert leader's first
sync derives the incidents of every poll still stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_incidents"
down_revision = "0005_oncall"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ioc_incidents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("department", sa.Text, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("last_failed_at", sa.BigInteger, nullable=False),
        sa.Column("failed_polls", sa.Integer, nullable=False),
        sa.Column("causes", sa.Text, nullable=False),
        sa.Column("planned", sa.Boolean, nullable=False),
    )
    op.create_index("ioc_incidents_started_idx", "ioc_incidents", ["started_at"])
    op.create_index("ioc_incidents_target_idx", "ioc_incidents", ["target", "started_at"])
    op.create_table(
        "ioc_incident_notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ioc_incident_notes_incident_idx", "ioc_incident_notes",
                    ["incident_id", "ts"])
    op.create_table(
        "ioc_incident_watermark",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("synced_to", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ioc_incident_watermark")
    op.drop_index("ioc_incident_notes_incident_idx", table_name="ioc_incident_notes")
    op.drop_table("ioc_incident_notes")
    op.drop_index("ioc_incidents_target_idx", table_name="ioc_incidents")
    op.drop_index("ioc_incidents_started_idx", table_name="ioc_incidents")
    op.drop_table("ioc_incidents")
