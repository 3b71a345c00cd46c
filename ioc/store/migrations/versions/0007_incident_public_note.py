"""An incident's public note: what the public status page says about it.

Revision ID: 0007_incident_public_note
Revises: 0006_incidents
Create Date: 2026-12-06

Operators write one short public text per incident (``PUT /api/v1/incidents/{id}/public-note``);
the public status page shows it instead of anything internal. Kept on the incident row,
with who wrote it and when: re-deriving an incident updates only the columns the polls decide,
so the note stays. Nullable columns added to an existing table: the same statement on
SQLite and PostgreSQL, no table rebuild.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_incident_public_note"
down_revision = "0006_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ioc_incidents", sa.Column("public_note", sa.Text, nullable=True))
    op.add_column("ioc_incidents", sa.Column("public_note_by", sa.Text, nullable=True))
    op.add_column("ioc_incidents", sa.Column("public_note_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ioc_incidents") as batch:  # SQLite drops columns by rebuild
        batch.drop_column("public_note_at")
        batch.drop_column("public_note_by")
        batch.drop_column("public_note")
