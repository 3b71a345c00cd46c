"""Baseline: every table ioc created with ``metadata.create_all`` before it had migrations.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-28

The definitions are copied here, frozen, rather than taken from the models: a model changed
later must come with a new revision, and this one must keep producing the schema that
version-1 databases have. Tables added after the baseline (the rollups, for instance) belong to
their own revisions.

A database written by ioc before migrations (``ioc_schema_version`` = 1, no
``ioc_alembic_version``) reaches this revision too: its tables are adopted as they are and only
the ones it lacks are created — each side store used to create its own tables on first use, so
an older database may not have them all. :mod:`ioc.store.migrate` refuses such a database if
its schema version is above 1.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

Text, BigInteger, Integer, Float = sa.Text, sa.BigInteger, sa.Integer, sa.Float
Column = sa.Column


def _schema_version() -> None:
    op.create_table("ioc_schema_version", Column("version", Integer, nullable=False))


def _series() -> None:
    op.create_table(
        "ioc_series",
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("metric", Text, nullable=False),
        Column("labels", Text, nullable=False),
        sa.UniqueConstraint("metric", "labels", name="ioc_series_metric_labels_key"),
    )


def _samples() -> None:
    op.create_table(
        "ioc_samples",
        Column("series_id", Integer, nullable=False),
        Column("ts", BigInteger, nullable=False),
        Column("value", Float, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "ts", name="ioc_samples_pkey"),
        sqlite_with_rowid=False,
    )


def _alert_state() -> None:
    op.create_table(
        "ioc_alert_state",
        Column("fingerprint", Text, primary_key=True),
        Column("rule", Text, nullable=False),
        Column("labels", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("value", Float, nullable=True),
        Column("active_at", Float, nullable=False),
        Column("fired_at", Float, nullable=True),
        Column("keep_firing_since", Float, nullable=True),
        Column("annotations", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    )


def _alert_outbox() -> None:
    op.create_table(
        "ioc_alert_outbox",
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("dedup_key", Text, nullable=False, unique=True),
        Column("integration", Text, nullable=False),
        Column("receiver", Text, nullable=False),
        Column("group_key", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("payload", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("created_at", BigInteger, nullable=False),
        Column("next_attempt_at", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
        Column("last_error", Text, nullable=True),
    )
    op.create_index("ioc_alert_outbox_state_idx", "ioc_alert_outbox",
                    ["state", "next_attempt_at"])


def _alert_nflog() -> None:
    op.create_table(
        "ioc_alert_nflog",
        Column("receiver", Text, primary_key=True),
        Column("group_key", Text, primary_key=True),
        Column("firing", Text, nullable=False),
        Column("resolved", Text, nullable=False),
        Column("sent_at", BigInteger, nullable=False),
        Column("content", Text, nullable=False),
        Column("sequence", Integer, nullable=False),
    )


def _alert_silences() -> None:
    op.create_table(
        "ioc_alert_silences",
        Column("id", Text, primary_key=True),
        Column("matchers", Text, nullable=False),
        Column("starts_at", BigInteger, nullable=False),
        Column("ends_at", BigInteger, nullable=False),
        Column("created_by", Text, nullable=False),
        Column("comment", Text, nullable=False),
        Column("created_at", BigInteger, nullable=False),
    )


def _alert_acks() -> None:
    op.create_table(
        "ioc_alert_acks",
        Column("fingerprint", Text, primary_key=True),
        Column("by", Text, nullable=False),
        Column("comment", Text, nullable=False),
        Column("at", BigInteger, nullable=False),
        Column("expires_at", BigInteger, nullable=False),
    )


def _alert_history() -> None:
    op.create_table(
        "ioc_alert_history",
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_key", Text, nullable=False, unique=True),
        Column("ts", BigInteger, nullable=False),
        Column("kind", Text, nullable=False),
        Column("fingerprint", Text, nullable=True),
        Column("actor", Text, nullable=False),
        Column("detail", Text, nullable=False),
    )
    op.create_index("ioc_alert_history_ts_idx", "ioc_alert_history", ["ts"])


def _announcement() -> None:
    op.create_table(
        "ioc_wall_announcement",
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("text", Text, nullable=False),
        Column("set_by", Text, nullable=False),
        Column("set_at", Float, nullable=False),
    )


def _audit_log() -> None:
    op.create_table(
        "ioc_audit_log",
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("ts", Float, nullable=False),
        Column("actor", Text, nullable=False),
        Column("method", Text, nullable=False),
        Column("path", Text, nullable=False),
        Column("target", Text, nullable=True),
        Column("client", Text, nullable=False),
        Column("status", Integer, nullable=False),
    )
    op.create_index("ix_ioc_audit_log_ts", "ioc_audit_log", ["ts"])


def _events() -> None:
    op.create_table(
        "ioc_events",
        Column("source", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("occurred_at", BigInteger, nullable=False),
        Column("received_at", BigInteger, nullable=False),
        Column("severity", Text, nullable=False),
        Column("category", Text, nullable=False),
        Column("department", Text, nullable=True),
        Column("host", Text, nullable=True),
        Column("title", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("labels", Text, nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", name="ioc_events_pkey"),
    )
    op.create_index("ioc_events_occurred_at", "ioc_events", ["occurred_at"])
    op.create_index("ioc_events_department_occurred_at", "ioc_events",
                    ["department", "occurred_at"])


def _event_cursors() -> None:
    op.create_table(
        "ioc_event_cursors",
        Column("name", Text, primary_key=True),
        Column("cursor", Text, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
    )


def _maintenance_windows() -> None:
    op.create_table(
        "ioc_maintenance_windows",
        Column("id", Text, primary_key=True),
        Column("department", Text, nullable=False),
        Column("starts_at", BigInteger, nullable=False),
        Column("ends_at", BigInteger, nullable=False),
        Column("comment", Text, nullable=False),
        Column("created_by", Text, nullable=False),
        Column("created_at", BigInteger, nullable=False),
        Column("ended_by", Text, nullable=True),
    )
    op.create_index("ioc_maintenance_windows_ends_idx", "ioc_maintenance_windows", ["ends_at"])


TABLES: dict[str, Callable[[], None]] = {
    "ioc_schema_version": _schema_version,
    "ioc_series": _series,
    "ioc_samples": _samples,
    "ioc_alert_state": _alert_state,
    "ioc_alert_outbox": _alert_outbox,
    "ioc_alert_nflog": _alert_nflog,
    "ioc_alert_silences": _alert_silences,
    "ioc_alert_acks": _alert_acks,
    "ioc_alert_history": _alert_history,
    "ioc_wall_announcement": _announcement,
    "ioc_audit_log": _audit_log,
    "ioc_events": _events,
    "ioc_event_cursors": _event_cursors,
    "ioc_maintenance_windows": _maintenance_windows,
}


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()
    # The row ioc wrote at first open before migrations; 0002 raises it.
    if bind.execute(sa.text("SELECT count(*) FROM ioc_schema_version")).scalar() == 0:
        op.execute("INSERT INTO ioc_schema_version (version) VALUES (1)")


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
