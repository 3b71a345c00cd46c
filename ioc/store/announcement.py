"""The wall's announcement in the SQL store, so a restart does not lose what operators set.

One row (id 1) holds the current text, who set it and when; an empty text means an operator
cleared it, which must also survive a restart (the config's ``wall.announcement`` only applies
while no operator has ever set one). Every change is written together with an event in the
alert history (``kind`` ``announcement``), so the console's audit trail — who did what, when —
is one table for acks, silences and announcements alike.

Like the other small stores it has its own engine built by the shared dialect code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, Table, Text, select

from ioc.store.alert_delivery import history, ms
from ioc.store.base import StoreError
from ioc.store.schema import metadata
from ioc.store.table_store import TableStore

announcement_table = Table(
    "ioc_wall_announcement",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),
    Column("set_by", Text, nullable=False),
    Column("set_at", Float, nullable=False),
)

_ROW_ID = 1


@dataclass(frozen=True, slots=True)
class Announcement:
    text: str           # empty: cleared
    set_by: str         # token name, or "config" for the start-up text
    set_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "set_by": self.set_by, "set_at": self.set_at}


class AnnouncementStore(TableStore):
    TABLES = (announcement_table, history)
    NAME = "announcement store"
    OPENING = "the announcement table"

    async def load(self) -> Announcement | None:
        """The last announcement an operator set or cleared; None if none ever was."""
        engine = self._reader()
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(announcement_table).where(
                    announcement_table.c.id == _ROW_ID))).first()
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read the announcement: "
                             f"{type(exc).__name__}: {exc}") from exc
        return None if row is None else Announcement(row.text, row.set_by, row.set_at)

    async def save(self, announcement: Announcement) -> None:
        """Replace the announcement and record the change in the history, atomically."""
        write = self._writer()
        at = announcement.set_at or 0.0
        values = {"text": announcement.text, "set_by": announcement.set_by, "set_at": at}
        kind = "announcement" if announcement.text else "announcement_cleared"
        stmt = self._insert(announcement_table).values(id=_ROW_ID, **values)
        try:
            async with write.begin() as conn:
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[announcement_table.c.id], set_=values))
                await conn.execute(self._insert(history).on_conflict_do_nothing(
                    index_elements=[history.c.event_key]).values(
                    event_key=f"{kind}:{ms(at)}", ts=ms(at), kind=kind, fingerprint=None,
                    actor=announcement.set_by,
                    detail=json.dumps({"text": announcement.text}, ensure_ascii=False)))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot write the announcement: "
                             f"{type(exc).__name__}: {exc}") from exc
