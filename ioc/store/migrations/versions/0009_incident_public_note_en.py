"""An incident's public note in English, beside the Vietnamese one.

Revision ID: 0009_incident_public_note_en
Revises: 0008_report_runs
Create Date: 2026-12-06

The public status page is Vietnamese first with an English version (``?lang=en``). An
operator may now give the public note in both languages; the English page shows the English
text and falls back to the Vietnamese one when there is none. A nullable column added to an
existing table: the same statement on SQLite and PostgreSQL, no table rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_incident_public_note_en"
down_revision = "0008_report_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ioc_incidents", sa.Column("public_note_en", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ioc_incidents") as batch:  # SQLite drops columns by rebuild
        batch.drop_column("public_note_en")
