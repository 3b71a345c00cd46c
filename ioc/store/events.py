"""Security events and SIEM cursors in the SQL store (SQLite and PostgreSQL).

Events are text, not time series, so they get their own table keyed by ``(source, event_id)``.
That key is what makes ingestion idempotent: :meth:`EventStore.insert` is an
insert-or-ignore that returns only the rows it really added, so a retried push, a SIEM page
fetched twice or a restart in the middle of a poll can never count an event twice; the caller
counts what comes back.

A SIEM collector's cursor is written **in the same transaction** as the events of the page it
describes: after a crash either both are stored or neither, so a restart neither skips nor
repeats a page.

Times are integer milliseconds like the samples table (see :mod:`ioc.store.schema`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    and_,
    delete,
    or_,
    select,
)

from ioc.model import Event, Labels, make_labels
from ioc.store.base import StoreError
from ioc.store.schema import metadata
from ioc.store.table_store import TableStore

log = logging.getLogger("ioc.store")

events_table = Table(
    "ioc_events",
    metadata,
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
    Column("labels", Text, nullable=False),  # JSON object
    PrimaryKeyConstraint("source", "event_id", name="ioc_events_pkey"),
)
# Listing is newest first, optionally by department; retention deletes by age.
Index("ioc_events_occurred_at", events_table.c.occurred_at)
# The alert leader reads events other instances received, by arrival time (ioc.store.tail).
Index("ioc_events_received_at", events_table.c.received_at)
Index("ioc_events_department_occurred_at", events_table.c.department,
      events_table.c.occurred_at)

cursors_table = Table(
    "ioc_event_cursors",
    metadata,
    Column("name", Text, primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

_CHUNK = 500  # rows per INSERT statement: 11 parameters each stays far below SQLite's limit


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    received_at: float


@dataclass(frozen=True, slots=True)
class EventQuery:
    since: float | None = None
    until: float | None = None
    severities: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    limit: int = 100
    # Keyset cursor: only events after this one in the query's order (newest first), so a
    # long answer is read in pages without OFFSET (web/events_api.py streams them).
    after: EventCursor | None = None


@dataclass(frozen=True, slots=True)
class EventCursor:
    """A position in the newest-first order: (occurred_at ms, received_at ms, source, id)."""

    occurred_ms: int
    received_ms: int
    source: str
    event_id: str

    @classmethod
    def of(cls, stored: StoredEvent) -> EventCursor:
        return cls(_ms(stored.event.occurred_at), _ms(stored.received_at),
                   stored.event.source, stored.event.id)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# One encoder for every row: json.dumps with options builds a new encoder on each call.
_labels_json = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD on every backend alike, so an event
    from a careless sender is stored (and looks the same on SQLite) instead of failing its
    whole batch."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _rows(events: Iterable[Event], received: int) -> list[dict[str, Any]]:
    return [{
        "source": e.source, "event_id": _text(e.id), "occurred_at": _ms(e.occurred_at),
        "received_at": received, "severity": e.severity, "category": e.category,
        "department": e.department, "host": e.host and _text(e.host), "title": _text(e.title),
        "message": _text(e.message),
        "labels": _labels_json(dict(e.labels)) if e.labels else "{}",  # \u0000 in JSON
    } for e in events]


class EventStore(TableStore):
    """The events and cursors tables on one database URL.

    It has its own small engine (built by the same dialect code as the sample store, so
    SQLite gets WAL, busy_timeout and BEGIN IMMEDIATE for writes): event writes are few,
    large transactions and must not queue behind or inside the sample writer's.
    """

    TABLES = (events_table, cursors_table)
    NAME = "event store"
    OPENING = "the events tables"

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        super().__init__(url, busy_timeout=busy_timeout)
        self._insert_events = (
            self._insert(events_table).on_conflict_do_nothing(
                index_elements=[events_table.c.source, events_table.c.event_id])
            .returning(events_table.c.source, events_table.c.event_id))
        upsert = self._insert(cursors_table)
        self._upsert_cursor = upsert.on_conflict_do_update(
            index_elements=[cursors_table.c.name],
            set_={"cursor": upsert.excluded.cursor, "updated_at": upsert.excluded.updated_at})

    # -- writing -------------------------------------------------------------------------

    async def insert(self, events: Sequence[Event], received_at: float,
                     cursor: tuple[str, str] | None = None) -> list[Event]:
        """Store events not stored yet (by source and id); return exactly those.

        ``cursor`` is ``(name, text)``, written in the same transaction. Of duplicates within
        ``events`` the first is kept.
        """
        unique: dict[tuple[str, str], Event] = {}
        for event in events:
            unique.setdefault((event.source, _text(event.id)), event)
        received = _ms(received_at)
        # Thousands of rows take tens of milliseconds to build: in a worker thread the event
        # loop (and the probes on it) gets the interpreter back every few milliseconds.
        rows = (await asyncio.to_thread(_rows, list(unique.values()), received)
                if len(unique) > _CHUNK else _rows(unique.values(), received))
        added: list[Event] = []
        try:
            async with self._writer().begin() as conn:
                for start in range(0, len(rows), _CHUNK):
                    result = await conn.execute(self._insert_events, rows[start:start + _CHUNK])
                    added.extend(unique[(source, eid)] for source, eid in result.all())
                if cursor is not None:
                    await conn.execute(self._upsert_cursor, {
                        "name": cursor[0], "cursor": cursor[1], "updated_at": received})
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: event insert failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        return added

    async def load_cursor(self, name: str) -> str | None:
        try:
            async with self._reader().connect() as conn:
                result = await conn.execute(
                    select(cursors_table.c.cursor).where(cursors_table.c.name == name))
                return result.scalar()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read cursor {name!r}: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def prune(self, older_than: float) -> int:
        """Delete events that occurred before ``older_than``; return how many went."""
        try:
            async with self._writer().begin() as conn:
                result = await conn.execute(
                    delete(events_table).where(events_table.c.occurred_at < _ms(older_than)))
                return int(result.rowcount or 0)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: event prune failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------

    async def query(self, query: EventQuery) -> list[StoredEvent]:
        """Events matching every filter, newest first (ties in a stable order)."""
        t = events_table
        stmt = select(t)
        if query.since is not None:
            stmt = stmt.where(t.c.occurred_at >= _ms(query.since))
        if query.until is not None:
            stmt = stmt.where(t.c.occurred_at <= _ms(query.until))
        for column, values in ((t.c.severity, query.severities),
                               (t.c.department, query.departments),
                               (t.c.source, query.sources),
                               (t.c.category, query.categories)):
            if values:
                stmt = stmt.where(column.in_(values))
        if query.after is not None:
            a = query.after
            stmt = stmt.where(or_(
                t.c.occurred_at < a.occurred_ms,
                and_(t.c.occurred_at == a.occurred_ms, t.c.received_at < a.received_ms),
                and_(t.c.occurred_at == a.occurred_ms, t.c.received_at == a.received_ms,
                     or_(t.c.source > a.source,
                         and_(t.c.source == a.source, t.c.event_id > a.event_id)))))
        stmt = stmt.order_by(t.c.occurred_at.desc(), t.c.received_at.desc(),
                             t.c.source, t.c.event_id).limit(max(0, query.limit))
        try:
            async with self._reader().connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: event query failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        return [StoredEvent(Event(
            source=r["source"], id=r["event_id"], severity=r["severity"],
            category=r["category"], title=r["title"], occurred_at=r["occurred_at"] / 1000,
            message=r["message"], department=r["department"], host=r["host"],
            labels=_stored_labels(r["labels"])), r["received_at"] / 1000)
            for r in rows]


def _stored_labels(text: Any) -> Labels:
    """A row's labels; a row no version of ioc wrote (not a JSON object) reads as none."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return make_labels()
    if not isinstance(data, dict):
        return make_labels()
    return make_labels({str(k): v if isinstance(v, str) else json.dumps(v)
                        for k, v in data.items()})
