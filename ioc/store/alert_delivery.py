"""Tables and queries of alert delivery: the outbox, the notification log, silences, acks and
the alert history. SQLite and PostgreSQL, through SQLAlchemy Core.

Kept apart from the sample store (``ioc.store.sql``) because its traffic is different — a few
small transactions per evaluation cycle that must be durable before anything is sent — but the
tables live on the shared ``metadata`` so one database holds everything and one backup saves it.
Its own engine is built by the same dialect code, so SQLite gets the same WAL and busy-timeout
settings as the sample writer it shares the file with.

Times are integer milliseconds, as in the rest of the schema.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ioc.store.base import Fence, StoreError
from ioc.store.schema import metadata
from ioc.store.sql import _describe, _retryable
from ioc.store.table_store import TableStore

outbox = Table(
    "ioc_alert_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", Text, nullable=False, unique=True),
    Column("integration", Text, nullable=False),
    Column("receiver", Text, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", Text, nullable=False),          # pending, sent, failed, dropped
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Index("ioc_alert_outbox_state_idx", "state", "next_attempt_at"),
)

nflog = Table(
    "ioc_alert_nflog", metadata,
    Column("receiver", Text, primary_key=True),
    Column("group_key", Text, primary_key=True),
    Column("firing", Text, nullable=False),
    Column("resolved", Text, nullable=False),
    Column("sent_at", BigInteger, nullable=False),
    Column("content", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
)

silences = Table(
    "ioc_alert_silences", metadata,
    Column("id", Text, primary_key=True),
    Column("matchers", Text, nullable=False),
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

acks = Table(
    "ioc_alert_acks", metadata,
    Column("fingerprint", Text, primary_key=True),
    Column("by", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

history = Table(
    "ioc_alert_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", Text, nullable=False, unique=True),
    Column("ts", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("fingerprint", Text, nullable=True),
    Column("actor", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Index("ioc_alert_history_ts_idx", "ts"),
)

TABLES = [outbox, nflog, silences, acks, history]


def ms(ts: float) -> int:
    return round(ts * 1000)


def sec(value: int) -> float:
    return value / 1000


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    dedup_key: str
    integration: str
    receiver: str
    group_key: str
    status: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: float
    next_attempt_at: float
    updated_at: float
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dedup_key": self.dedup_key, "integration": self.integration,
                "receiver": self.receiver, "group_key": self.group_key, "status": self.status,
                "state": self.state, "attempts": self.attempts, "created_at": self.created_at,
                "updated_at": self.updated_at, "next_attempt_at": self.next_attempt_at,
                "last_error": self.last_error,
                "alerts": [a["fingerprint"] for a in self.payload.get("alerts", [])]}


@dataclass(frozen=True, slots=True)
class NewNotification:
    dedup_key: str
    integration: str
    receiver: str
    group_key: str
    status: str
    payload: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class NflogRow:
    receiver: str
    group_key: str
    firing: list[str]
    resolved: list[str]
    sent_at: float
    content: str
    sequence: int


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    event_key: str      # unique: recording the same event twice keeps one row
    ts: float
    kind: str           # firing, resolved, ack, unack, silence, silence_expired, failed, …
    fingerprint: str | None
    actor: str
    detail: dict[str, Any]


class DeliveryStore(TableStore):
    TABLES = TABLES
    NAME = "delivery store"
    OPENING = "the delivery tables"

    async def _prepare_schema(self, write: AsyncEngine) -> None:
        with self._errors("open"):
            await super()._prepare_schema(write)

    # -- outbox and notification log, written together ---------------------------------

    async def enqueue(self, rows: Sequence[NewNotification], log: Sequence[NflogRow],
                      events: Sequence[HistoryEvent] = (), *,
                      fence: Fence | None = None) -> None:
        """Store notifications, the log entries that led to them and history, atomically.

        A notification already stored (same dedup key, e.g. re-derived after a crash) is kept
        as it is: delivery stays at-least-once without growing duplicates. With ``fence``
        nothing is stored unless this instance still leads (NotLeaderError): a deposed leader
        must not queue what its successor, reading the log, queues too.
        """
        async with self._begin("enqueue") as conn:
            if fence is not None:
                await fence.verify(conn)
            await self._add_outbox(conn, rows)
            for entry in log:
                values = {"firing": json.dumps(sorted(entry.firing)),
                          "resolved": json.dumps(sorted(entry.resolved)),
                          "sent_at": ms(entry.sent_at), "content": entry.content,
                          "sequence": entry.sequence}
                stmt = self._insert(nflog).values(receiver=entry.receiver,
                                                  group_key=entry.group_key, **values)
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[nflog.c.receiver, nflog.c.group_key], set_=values))
            await self._add_history(conn, events)

    async def _add_outbox(self, conn: AsyncConnection,
                          rows: Sequence[NewNotification]) -> None:
        """Insert pending notifications; one already stored under its dedup key is kept."""
        if not rows:
            return
        await conn.execute(self._insert(outbox).on_conflict_do_nothing(
            index_elements=[outbox.c.dedup_key]), [
            {"dedup_key": r.dedup_key, "integration": r.integration,
             "receiver": r.receiver, "group_key": r.group_key, "status": r.status,
             "payload": json.dumps(r.payload, ensure_ascii=False),
             "state": "pending", "attempts": 0, "created_at": ms(r.created_at),
             "next_attempt_at": ms(r.created_at), "updated_at": ms(r.created_at),
             "last_error": None} for r in rows])

    async def load_nflog(self) -> list[NflogRow]:
        async with self._read("load_nflog") as conn:
            result = await conn.execute(select(nflog))
            return [NflogRow(r.receiver, r.group_key, json.loads(r.firing),
                             json.loads(r.resolved), sec(r.sent_at), r.content, r.sequence)
                    for r in result]

    async def due(self, now: float, limit: int,
                  exclude: Collection[str] = ()) -> list[OutboxRow]:
        """Pending notifications due now, oldest first, in order per integration.

        A channel with any row still waiting out its backoff is skipped entirely, so a
        notification queued during an outage never overtakes the older ones. ``exclude``
        names channels still sending, whose rows must not be read twice.
        """
        waiting = (select(outbox.c.integration)
                   .where(outbox.c.state == "pending", outbox.c.next_attempt_at > ms(now)))
        query = select(outbox).where(outbox.c.state == "pending",
                                     outbox.c.next_attempt_at <= ms(now),
                                     outbox.c.integration.not_in(waiting))
        if exclude:
            query = query.where(outbox.c.integration.not_in(list(exclude)))
        async with self._read("due") as conn:
            result = await conn.execute(query.order_by(outbox.c.id).limit(limit))
            return [_outbox_row(r) for r in result]

    async def next_attempt(self, exclude: Collection[str] = ()) -> float | None:
        """When the first channel's backoff ends (its latest deferred row), if any; channels
        in ``exclude`` are left out."""
        pending = outbox.c.state == "pending"
        if exclude:
            pending = pending & outbox.c.integration.not_in(list(exclude))
        per_channel = (select(func.max(outbox.c.next_attempt_at).label("until"))
                       .where(pending)
                       .group_by(outbox.c.integration).subquery())
        async with self._read("next_attempt") as conn:
            found = (await conn.execute(select(func.min(per_channel.c.until)))).scalar()
            return None if found is None else sec(found)

    async def pending_count(self) -> int:
        async with self._read("pending_count") as conn:
            return int((await conn.execute(select(func.count()).select_from(outbox)
                                           .where(outbox.c.state == "pending"))).scalar() or 0)

    async def mark(self, row_id: int, *, state: str, now: float, attempts: int,
                   next_attempt_at: float | None = None, error: str | None = None) -> None:
        values: dict[str, Any] = {"state": state, "updated_at": ms(now), "attempts": attempts,
                                  "last_error": error}
        if next_attempt_at is not None:
            values["next_attempt_at"] = ms(next_attempt_at)
        async with self._begin("mark") as conn:
            await conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))

    async def defer(self, integration: str, until: float) -> None:
        """Hold every pending row of a failing channel until its backoff ends."""
        async with self._begin("defer") as conn:
            await conn.execute(update(outbox).where(outbox.c.integration == integration,
                                                    outbox.c.state == "pending")
                               .values(next_attempt_at=ms(until)))

    async def drop_oldest_pending(self, keep: int, now: float) -> list[OutboxRow]:
        """Mark the oldest pending rows dropped so at most ``keep`` remain; return them."""
        async with self._begin("drop") as conn:
            total = int((await conn.execute(select(func.count()).select_from(outbox)
                                            .where(outbox.c.state == "pending"))).scalar() or 0)
            if total <= keep:
                return []
            result = await conn.execute(select(outbox).where(outbox.c.state == "pending")
                                        .order_by(outbox.c.id).limit(total - keep))
            victims = [_outbox_row(r) for r in result]
            await conn.execute(update(outbox).where(outbox.c.id.in_([v.id for v in victims]))
                               .values(state="dropped", updated_at=ms(now),
                                       last_error="queue full: dropped oldest"))
            return victims

    async def recent(self, *, limit: int, state: str | None = None,
                     receiver: str | None = None) -> list[OutboxRow]:
        query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if state:
            query = query.where(outbox.c.state == state)
        if receiver:
            query = query.where(outbox.c.receiver == receiver)
        async with self._read("recent") as conn:
            return [_outbox_row(r) for r in await conn.execute(query)]

    # -- silences and acks ------------------------------------------------------------

    async def put_silence(self, row: dict[str, Any], event: HistoryEvent) -> None:
        values = {**row, "starts_at": ms(row["starts_at"]), "ends_at": ms(row["ends_at"]),
                  "created_at": ms(row["created_at"]), "matchers": json.dumps(row["matchers"])}
        async with self._begin("put_silence") as conn:
            stmt = self._insert(silences).values(**values)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[silences.c.id],
                set_={k: v for k, v in values.items() if k != "id"}))
            await self._add_history(conn, [event])

    async def load_silences(self, newer_than: float) -> list[dict[str, Any]]:
        async with self._read("load_silences") as conn:
            result = await conn.execute(select(silences)
                                        .where(silences.c.ends_at > ms(newer_than))
                                        .order_by(silences.c.created_at))
            return [{"id": r.id, "matchers": json.loads(r.matchers),
                     "starts_at": sec(r.starts_at), "ends_at": sec(r.ends_at),
                     "created_by": r.created_by, "comment": r.comment,
                     "created_at": sec(r.created_at)} for r in result]

    async def put_ack(self, row: dict[str, Any], event: HistoryEvent) -> None:
        values = {**row, "at": ms(row["at"]), "expires_at": ms(row["expires_at"])}
        async with self._begin("put_ack") as conn:
            stmt = self._insert(acks).values(**values)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[acks.c.fingerprint],
                set_={k: v for k, v in values.items() if k != "fingerprint"}))
            await self._add_history(conn, [event])

    async def delete_acks(self, fingerprints: Sequence[str]) -> None:
        if not fingerprints:
            return
        async with self._begin("delete_acks") as conn:
            await conn.execute(delete(acks).where(acks.c.fingerprint.in_(list(fingerprints))))

    async def load_acks(self) -> list[dict[str, Any]]:
        async with self._read("load_acks") as conn:
            return [{"fingerprint": r.fingerprint, "by": r.by, "comment": r.comment,
                     "at": sec(r.at), "expires_at": sec(r.expires_at)}
                    for r in await conn.execute(select(acks))]

    # -- history ---------------------------------------------------------------------

    async def record(self, events: Sequence[HistoryEvent]) -> None:
        if events:
            async with self._begin("record") as conn:
                await self._add_history(conn, events)

    async def _add_history(self, conn: AsyncConnection,
                           events: Sequence[HistoryEvent]) -> None:
        if not events:
            return
        await conn.execute(self._insert(history).on_conflict_do_nothing(
            index_elements=[history.c.event_key]), [
            {"event_key": e.event_key, "ts": ms(e.ts), "kind": e.kind,
             "fingerprint": e.fingerprint, "actor": e.actor,
             "detail": json.dumps(e.detail, ensure_ascii=False)} for e in events])

    async def history(self, *, start: float, end: float, limit: int,
                      fingerprint: str | None = None) -> list[dict[str, Any]]:
        query = (select(history).where(history.c.ts >= ms(start), history.c.ts <= ms(end))
                 .order_by(history.c.ts.desc(), history.c.id.desc()).limit(limit))
        if fingerprint:
            query = query.where(history.c.fingerprint == fingerprint)
        async with self._read("history") as conn:
            return [{"ts": sec(r.ts), "kind": r.kind, "fingerprint": r.fingerprint,
                     "actor": r.actor, "detail": json.loads(r.detail)}
                    for r in await conn.execute(query)]

    async def prune(self, older_than: float) -> int:
        """Forget history, finished notifications and expired silences older than a time."""
        cutoff = ms(older_than)
        async with self._begin("prune") as conn:
            total = 0
            for stmt in (delete(history).where(history.c.ts < cutoff),
                         delete(outbox).where(outbox.c.state != "pending",
                                              outbox.c.updated_at < cutoff),
                         delete(silences).where(silences.c.ends_at < cutoff),
                         delete(acks).where(acks.c.expires_at < cutoff)):
                total += max((await conn.execute(stmt)).rowcount, 0)
            return total

    # -- helpers ---------------------------------------------------------------------

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if _retryable(exc):
                raise StoreError(f"{operation} on {self.url_for_display} failed, retry "
                                 f"later: {_describe(exc)}") from exc
            raise

    @asynccontextmanager
    async def _begin(self, operation: str) -> AsyncIterator[AsyncConnection]:
        if self._write is None:
            raise RuntimeError("the delivery store is not open; call open() first")
        with self._errors(operation):
            async with self._write.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _read(self, operation: str) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise RuntimeError("the delivery store is not open; call open() first")
        with self._errors(operation):
            async with self._engine.connect() as conn:
                yield conn


def _outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(r.id, r.dedup_key, r.integration, r.receiver, r.group_key, r.status,
                     json.loads(r.payload), r.state, r.attempts, sec(r.created_at),
                     sec(r.next_attempt_at), sec(r.updated_at), r.last_error)
