"""Maintenance windows operators announce (``POST /api/v1/maintenance``), in the SQL store.

A restart must not forget planned work — a window that vanished would page the on-call team in
the middle of it — so every window is a row, written together with its event in the alert
history (``kind`` ``maintenance`` or ``maintenance_ended``, actor the token's name): the
console's record of who did what stays one table. Ending a window early rewrites its end.

Like the other small stores it has its own engine built by the shared dialect code; the table
lives on the shared ``metadata``. Times are integer milliseconds, as in the rest of the schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Table, Text, delete, select

from ioc.store.alert_delivery import history, ms, sec
from ioc.store.base import StoreError
from ioc.store.schema import metadata
from ioc.store.table_store import TableStore


@dataclass(frozen=True, slots=True)
class OperatorWindow:
    """A fixed range an operator announced; it lives in the store, not in the config.

    Defined with the table that keeps it (as ``AuditEntry`` and ``Announcement`` are), so the
    store needs nothing from ``alerts``; ``alerts.maintenance`` decides what it mutes."""

    id: str
    department: str
    starts_at: float    # unix seconds
    ends_at: float
    comment: str
    created_by: str
    created_at: float
    ended_by: str | None = None   # who ended it early, if anyone

    def state(self, now: float) -> str:
        if now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def ended(self, *, by: str, now: float) -> OperatorWindow:
        """The same window ending at ``now`` (a pending one never begins)."""
        return replace(self, starts_at=min(self.starts_at, now), ends_at=now, ended_by=by)

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"source": "api", "id": self.id, "department": self.department,
                "starts_at": self.starts_at, "ends_at": self.ends_at, "comment": self.comment,
                "created_by": self.created_by, "created_at": self.created_at,
                "ended_by": self.ended_by, "state": self.state(now), "read_only": False}


maintenance_table = Table(
    "ioc_maintenance_windows", metadata,
    Column("id", Text, primary_key=True),
    Column("department", Text, nullable=False),
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("ended_by", Text, nullable=True),
    Index("ioc_maintenance_windows_ends_idx", "ends_at"),
)


class MaintenanceStore(TableStore):
    TABLES = (maintenance_table, history)
    NAME = "maintenance store"
    OPENING = "the maintenance table"

    async def load(self, newer_than: float) -> list[OperatorWindow]:
        """Windows ending after ``newer_than`` (the expired ones stay listed a while)."""
        engine = self._reader()
        query = (select(maintenance_table)
                 .where(maintenance_table.c.ends_at > ms(newer_than))
                 .order_by(maintenance_table.c.created_at))
        try:
            async with engine.connect() as conn:
                rows = list(await conn.execute(query))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read maintenance windows: "
                             f"{type(exc).__name__}: {exc}") from exc
        return [OperatorWindow(r.id, r.department, sec(r.starts_at), sec(r.ends_at), r.comment,
                               r.created_by, sec(r.created_at), r.ended_by) for r in rows]

    async def put(self, window: OperatorWindow, *, kind: str, actor: str, now: float) -> None:
        """Insert or rewrite a window and record ``kind`` in the history, atomically."""
        write = self._writer()
        values = {"department": window.department, "starts_at": ms(window.starts_at),
                  "ends_at": ms(window.ends_at), "comment": window.comment,
                  "created_by": window.created_by, "created_at": ms(window.created_at),
                  "ended_by": window.ended_by}
        stmt = self._insert(maintenance_table).values(id=window.id, **values)
        detail = {k: v for k, v in window.to_dict(now).items() if k not in ("read_only", "state")}
        try:
            async with write.begin() as conn:
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[maintenance_table.c.id], set_=values))
                await conn.execute(self._insert(history).on_conflict_do_nothing(
                    index_elements=[history.c.event_key]).values(
                    event_key=f"{kind}:{window.id}", ts=ms(now), kind=kind, fingerprint=None,
                    actor=actor, detail=json.dumps(detail, ensure_ascii=False)))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot write the maintenance "
                             f"window: {type(exc).__name__}: {exc}") from exc

    async def prune(self, older_than: float) -> int:
        """Forget windows that ended before ``older_than`` (their history rows stay)."""
        write = self._writer()
        try:
            async with write.begin() as conn:
                result = await conn.execute(delete(maintenance_table).where(
                    maintenance_table.c.ends_at < ms(older_than)))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot prune maintenance windows: "
                             f"{type(exc).__name__}: {exc}") from exc
        return max(result.rowcount, 0)
