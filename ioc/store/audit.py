"""The audit log: every write made through the web layer, who made it, from where, when.

An IOC holds who-acknowledged-what; an auditor asks "who silenced this alert last night?"
long after the shift. Each write request (any method but GET/HEAD/OPTIONS) becomes one row,
whether it succeeded or was refused, written before its response leaves: a request that was
answered is in the log, even if the process is killed a moment later.

Like the alert state it has its own small engine built by the sample store's dialect code
(SQLite gets WAL, busy_timeout and BEGIN IMMEDIATE), so an audit row never waits behind the
sample writer's large transactions. Times are unix seconds as doubles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Column, Float, Index, Integer, Table, Text, insert, select

from ioc.store.base import StoreError
from ioc.store.schema import metadata
from ioc.store.table_store import TableStore

MAX_FIELD = 512  # longer paths and targets are cut: the row records, it does not replay

audit_table = Table(
    "ioc_audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", Text, nullable=False),      # the token's name, or "anonymous"
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),       # the route, e.g. /api/v1/silences/{id}
    Column("target", Text, nullable=True),      # the id in the path, if any
    Column("client", Text, nullable=False),     # the client's address
    Column("status", Integer, nullable=False),  # the HTTP status answered
    Index("ix_ioc_audit_log_ts", "ts"),
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: float
    actor: str
    method: str
    path: str
    target: str | None
    client: str
    status: int
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cut(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_FIELD:
        return value
    return value[:MAX_FIELD - 1] + "…"


class AuditStore(TableStore):
    TABLES = (audit_table,)
    NAME = "audit log"
    OPENING = "the audit log"

    async def record(self, entry: AuditEntry) -> None:
        row = {"ts": entry.ts, "actor": _cut(entry.actor) or "", "method": entry.method,
               "path": _cut(entry.path) or "", "target": _cut(entry.target),
               "client": _cut(entry.client) or "", "status": entry.status}
        try:
            async with self._writer().begin() as conn:
                await conn.execute(insert(audit_table), [row])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot write the audit log: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def query(self, *, start: float, end: float, actor: str | None = None,
                    limit: int = 100) -> Sequence[AuditEntry]:
        """Entries with ``start <= ts <= end``, newest first."""
        t = audit_table
        stmt = select(t).where(t.c.ts >= start, t.c.ts <= end)
        if actor is not None:
            stmt = stmt.where(t.c.actor == actor)
        stmt = stmt.order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit)
        try:
            async with self._reader().connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read the audit log: "
                             f"{type(exc).__name__}: {exc}") from exc
        return [AuditEntry(ts=r["ts"], actor=r["actor"], method=r["method"], path=r["path"],
                           target=r["target"], client=r["client"], status=r["status"],
                           id=r["id"]) for r in rows]
