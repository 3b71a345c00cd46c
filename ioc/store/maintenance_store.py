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
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Table, Text, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.maintenance import OperatorWindow
from ioc.store import dialects
from ioc.store.alert_delivery import history, ms, sec
from ioc.store.base import StoreError
from ioc.store.schema import metadata

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


class MaintenanceStore:
    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        self._url = make_url(url)
        self.url_for_display = self._url.render_as_string(hide_password=True)
        self._dialect = dialects.for_url(self._url, busy_timeout=busy_timeout)
        self._insert: Any = sqlite.insert if self._dialect.name == "sqlite" else postgresql.insert
        self._engine: AsyncEngine | None = None
        self._write: AsyncEngine | None = None

    async def open(self) -> None:
        if self._engine is not None:
            return
        engine = self._dialect.create_engine(self._url)
        write = engine.execution_options(**{dialects.WRITE_OPTION: True})
        try:
            async with write.begin() as conn:
                await self._dialect.lock_schema(conn)
                await conn.run_sync(lambda sync: metadata.create_all(
                    sync, tables=[maintenance_table, history]))
        except Exception as exc:
            await engine.dispose()
            raise StoreError(f"store {self.url_for_display}: cannot open the maintenance "
                             f"table: {type(exc).__name__}: {exc}") from exc
        self._engine, self._write = engine, write

    async def close(self) -> None:
        engine, self._engine, self._write = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def load(self, newer_than: float) -> list[OperatorWindow]:
        """Windows ending after ``newer_than`` (the expired ones stay listed a while)."""
        if self._engine is None:
            raise StoreError(f"maintenance store {self.url_for_display} is not open")
        query = (select(maintenance_table)
                 .where(maintenance_table.c.ends_at > ms(newer_than))
                 .order_by(maintenance_table.c.created_at))
        try:
            async with self._engine.connect() as conn:
                rows = list(await conn.execute(query))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read maintenance windows: "
                             f"{type(exc).__name__}: {exc}") from exc
        return [OperatorWindow(r.id, r.department, sec(r.starts_at), sec(r.ends_at), r.comment,
                               r.created_by, sec(r.created_at), r.ended_by) for r in rows]

    async def put(self, window: OperatorWindow, *, kind: str, actor: str, now: float) -> None:
        """Insert or rewrite a window and record ``kind`` in the history, atomically."""
        if self._write is None:
            raise StoreError(f"maintenance store {self.url_for_display} is not open")
        values = {"department": window.department, "starts_at": ms(window.starts_at),
                  "ends_at": ms(window.ends_at), "comment": window.comment,
                  "created_by": window.created_by, "created_at": ms(window.created_at),
                  "ended_by": window.ended_by}
        stmt = self._insert(maintenance_table).values(id=window.id, **values)
        detail = {k: v for k, v in window.to_dict(now).items() if k not in ("read_only", "state")}
        try:
            async with self._write.begin() as conn:
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
        if self._write is None:
            raise StoreError(f"maintenance store {self.url_for_display} is not open")
        try:
            async with self._write.begin() as conn:
                result = await conn.execute(delete(maintenance_table).where(
                    maintenance_table.c.ends_at < ms(older_than)))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot prune maintenance windows: "
                             f"{type(exc).__name__}: {exc}") from exc
        return max(result.rowcount, 0)
