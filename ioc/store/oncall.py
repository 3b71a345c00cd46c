"""Tables of on call: the roster as edited, each alert's escalation, and the used ack links.

:class:`OncallStore` extends the delivery store because an escalation step must be written
together with its notifications: the step counter and the outbox rows are one transaction,
checked against the leader fence and against an ack that landed meanwhile, so a restart or a
new leader finds exactly the steps that were queued — none twice, none skipped — and an ack
written through any instance stops the next step even before the leader has re-read it.

All the steps due at one tick are written in one transaction (1,000 escalations: one commit
instead of a thousand, see ``bench/oncall_escalation.py``).

An ack link's nonce is stored in the same transaction as the ack it makes, so a link is used
once, and a link whose ack could not be written is not used up.

Times are integer milliseconds, as in the delivery tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    Table,
    Text,
    bindparam,
    delete,
    select,
    update,
)

from ioc.store.alert_delivery import (
    TABLES as DELIVERY_TABLES,
)
from ioc.store.alert_delivery import (
    DeliveryStore,
    HistoryEvent,
    NewNotification,
    acks,
    ms,
    sec,
)
from ioc.store.base import Fence
from ioc.store.schema import metadata

roster_table = Table(
    "ioc_oncall_roster", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),   # always 1
    Column("document", Text, nullable=False),     # the roster as JSON
    Column("seed", Text, nullable=False),         # digest of the config roster it came from
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", Text, nullable=False),
)

escalations = Table(
    "ioc_oncall_escalations", metadata,
    Column("id", Text, primary_key=True),          # fingerprint:fired_at_ms
    Column("fingerprint", Text, nullable=False),
    Column("policy", Text, nullable=False),
    Column("team", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("sent", Integer, nullable=False),       # steps queued so far
    Column("state", Text, nullable=False),         # active, acked, resolved
    Column("held_until", BigInteger, nullable=True),
    Column("ended_by", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Index("ioc_oncall_escalations_state_idx", "state"),
)

used_links = Table(
    "ioc_oncall_used_links", metadata,
    Column("nonce", Text, primary_key=True),
    Column("person", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("used_at", BigInteger, nullable=False),
)

TABLES = [*DELIVERY_TABLES, roster_table, escalations, used_links]
ACTIVE = "active"


class LinkUsedError(Exception):
    """The ack link was used before (its nonce is stored)."""


@dataclass(frozen=True, slots=True)
class EscalationRow:
    id: str
    fingerprint: str
    policy: str
    team: str
    severity: str
    started_at: float
    sent: int
    state: str
    held_until: float | None = None
    ended_by: str | None = None


@dataclass(frozen=True, slots=True)
class StepWrite:
    """One escalation's due steps, as :meth:`OncallStore.advance` writes them."""

    row: EscalationRow
    sent: int                                  # the step count once these are queued
    notifications: Sequence[NewNotification]
    events: Sequence[HistoryEvent]


@dataclass(frozen=True, slots=True)
class StoredRoster:
    document: dict[str, Any]
    seed: str
    updated_at: float
    updated_by: str


class OncallStore(DeliveryStore):
    TABLES = TABLES
    NAME = "delivery store"
    OPENING = "the delivery and on-call tables"

    # -- roster --------------------------------------------------------------------------

    async def load_roster(self) -> StoredRoster | None:
        async with self._read("load_roster") as conn:
            row = (await conn.execute(select(roster_table))).first()
        if row is None:
            return None
        return StoredRoster(json.loads(row.document), row.seed, sec(row.updated_at),
                            row.updated_by)

    async def seed_roster(self, document: dict[str, Any], seed: str, now: float) -> bool:
        """Store the config's roster unless the stored one came from the same config.

        The console's edits are kept while config.yaml's roster stays as it was; editing the
        roster in config.yaml (a new seed) replaces them. True when the seed was written.
        """
        async with self._begin("seed_roster") as conn:
            row = (await conn.execute(select(roster_table.c.seed))).first()
            if row is not None and row.seed == seed:
                return False
            values = {"document": json.dumps(document, ensure_ascii=False), "seed": seed,
                      "updated_at": ms(now), "updated_by": "config"}
            stmt = self._insert(roster_table).values(id=1, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=[roster_table.c.id],
                                                          set_=values))
            return True

    async def put_roster(self, document: dict[str, Any], *, by: str, now: float,
                         event: HistoryEvent) -> None:
        """An admin's edit, with its history event (the seed stays: config is unchanged)."""
        async with self._begin("put_roster") as conn:
            await conn.execute(update(roster_table).where(roster_table.c.id == 1).values(
                document=json.dumps(document, ensure_ascii=False), updated_at=ms(now),
                updated_by=by))
            await self._add_history(conn, [event])

    # -- escalations ---------------------------------------------------------------------

    async def load_escalations(self) -> list[EscalationRow]:
        async with self._read("load_escalations") as conn:
            result = await conn.execute(select(escalations)
                                        .where(escalations.c.state == ACTIVE))
            return [_escalation(r) for r in result]

    async def start_escalations(self, rows: Sequence[EscalationRow], now: float, *,
                                fence: Fence | None = None) -> None:
        """Store new escalations; one already stored (same alert, same firing) is kept."""
        if not rows:
            return
        async with self._begin("start_escalations") as conn:
            if fence is not None:
                await fence.verify(conn)
            await conn.execute(self._insert(escalations).on_conflict_do_nothing(
                index_elements=[escalations.c.id]), [
                {"id": r.id, "fingerprint": r.fingerprint, "policy": r.policy, "team": r.team,
                 "severity": r.severity, "started_at": ms(r.started_at), "sent": r.sent,
                 "state": r.state, "held_until": None, "ended_by": None,
                 "updated_at": ms(now)} for r in rows])

    async def advance(self, steps: Sequence[StepWrite], *, now: float,
                      fence: Fence | None = None) -> list[str]:
        """Queue the steps' notifications and count them sent, in one transaction.

        A step is skipped (not written) when its escalation is no longer active with
        ``row.sent`` steps sent (another leader moved it on) or its alert has an ack now
        (written through any instance). Returns the ids of the escalations advanced.
        """
        if not steps:
            return []
        advanced: list[str] = []
        async with self._begin("advance") as conn:
            if fence is not None:
                await fence.verify(conn)
            fingerprints = sorted({s.row.fingerprint for s in steps})
            acked = {r.fingerprint for r in await conn.execute(select(acks.c.fingerprint).where(
                acks.c.fingerprint.in_(fingerprints), acks.c.expires_at > ms(now)))}
            ids = [s.row.id for s in steps]
            stored = {r.id: r.sent for r in await conn.execute(
                select(escalations.c.id, escalations.c.sent).where(
                    escalations.c.id.in_(ids), escalations.c.state == ACTIVE))}
            notifications: list[NewNotification] = []
            events: list[HistoryEvent] = []
            counts: list[dict[str, Any]] = []
            for step in steps:
                row = step.row
                if row.fingerprint in acked or stored.get(row.id) != row.sent:
                    continue
                advanced.append(row.id)
                counts.append({"key": row.id, "new_sent": step.sent})
                notifications.extend(step.notifications)
                events.extend(step.events)
            if counts:
                # Read and written in one transaction under the leader fence (and on SQLite
                # BEGIN IMMEDIATE), so the counts read above still hold.
                await conn.execute(update(escalations).where(
                    escalations.c.id == bindparam("key")).values(
                    sent=bindparam("new_sent"), updated_at=ms(now)), counts)
            await self._add_outbox(conn, notifications)
            await self._add_history(conn, events)
        return advanced

    async def end_escalation(self, escalation_id: str, *, state: str, by: str, now: float,
                             fence: Fence | None = None) -> None:
        async with self._begin("end_escalation") as conn:
            if fence is not None:
                await fence.verify(conn)
            await conn.execute(update(escalations).where(
                escalations.c.id == escalation_id, escalations.c.state == ACTIVE).values(
                state=state, ended_by=by, updated_at=ms(now)))

    async def hold_escalation(self, escalation_id: str, until: float, now: float) -> None:
        """A snooze: no step before ``until`` (any instance may write it, like an ack)."""
        async with self._begin("hold_escalation") as conn:
            await conn.execute(update(escalations).where(
                escalations.c.id == escalation_id).values(held_until=ms(until),
                                                          updated_at=ms(now)))

    # -- acks through a link ---------------------------------------------------------------

    async def put_ack(self, row: dict[str, Any], event: HistoryEvent, *,
                      nonce: tuple[str, str] | None = None) -> None:
        """The ack and (for a link) its nonce as used, in one transaction.

        ``nonce`` is (nonce, person); LinkUsedError when it was used before.
        """
        values = {**row, "at": ms(row["at"]), "expires_at": ms(row["expires_at"])}
        async with self._begin("put_ack") as conn:
            if nonce is not None:
                stored = await conn.execute(self._insert(used_links).on_conflict_do_nothing(
                    index_elements=[used_links.c.nonce]).values(
                    nonce=nonce[0], person=nonce[1], fingerprint=row["fingerprint"],
                    used_at=ms(row["at"])))
                if stored.rowcount != 1:
                    raise LinkUsedError(nonce[0])
            stmt = self._insert(acks).values(**values)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[acks.c.fingerprint],
                set_={k: v for k, v in values.items() if k != "fingerprint"}))
            await self._add_history(conn, [event])

    async def link_used(self, nonce: str) -> bool:
        async with self._read("link_used") as conn:
            return (await conn.execute(select(used_links.c.nonce)
                                       .where(used_links.c.nonce == nonce))).first() is not None

    async def prune(self, older_than: float) -> int:
        total = await super().prune(older_than)
        cutoff = ms(older_than)
        async with self._begin("prune_oncall") as conn:
            for stmt in (delete(used_links).where(used_links.c.used_at < cutoff),
                         delete(escalations).where(escalations.c.state != ACTIVE,
                                                   escalations.c.updated_at < cutoff)):
                total += max((await conn.execute(stmt)).rowcount, 0)
        return total


def _escalation(r: Any) -> EscalationRow:
    return EscalationRow(r.id, r.fingerprint, r.policy, r.team, r.severity,
                         sec(r.started_at), r.sent, r.state,
                         None if r.held_until is None else sec(r.held_until), r.ended_by)
