"""On call: the roster as edited, escalations, used ack links.

Revision ID: 0005_oncall
Revises: 0004_events_received_at
Create Date: 2026-12-06

The roster is seeded from config.yaml and edited by admins (one row of JSON); each firing
alert under an escalation policy has a row counting the steps queued, written in the same
transaction as the steps' outbox rows; an ack link's nonce is stored when it is used.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_oncall"
down_revision = "0004_events_received_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ioc_oncall_roster",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("seed", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
    )
    op.create_table(
        "ioc_oncall_escalations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("held_until", sa.BigInteger, nullable=True),
        sa.Column("ended_by", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ioc_oncall_escalations_state_idx", "ioc_oncall_escalations", ["state"])
    op.create_table(
        "ioc_oncall_used_links",
        sa.Column("nonce", sa.Text, primary_key=True),
        sa.Column("person", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ioc_oncall_used_links")
    op.drop_index("ioc_oncall_escalations_state_idx", table_name="ioc_oncall_escalations")
    op.drop_table("ioc_oncall_escalations")
    op.drop_table("ioc_oncall_roster")
