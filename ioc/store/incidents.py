"""The incident ledger's tables: incidents derived from stored polls, and operators' notes.

:mod:`ioc.incidents` says what an incident is; this module keeps them. ``sync`` reads the
polls (``ioc_target_up`` and ``ioc_target_failure_reason`` samples) stored since its
watermark, minus a look-back for samples written late (a retried batch, another shard), and
re-derives every incident they touch from its first failed poll. Incidents have stable ids
(target and start), so deriving the same polls twice rewrites the same rows and the notes
stay attached; one that more polls showed to be something else (a late good poll splitting
it) is replaced. With shards sharing a PostgreSQL database only the alert leader runs
``sync``, and its transaction checks the leader fence first: an instance that lost the lead
writes nothing.

The alert an incident raised and who acknowledged it are not copied here: they are read from
the alert history (``firing`` and ``ack`` events of an alert labelled with the target,
between the incident's start and end) when incidents are listed, so they are never stale.
"""

from __future__ import annotations

import builtins
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ioc.incidents import Incident, Poll, Window, derive, reason_from_code
from ioc.store.alert_delivery import history, ms, sec
from ioc.store.base import StoreError, chunked
from ioc.store.rollups import LateWrites
from ioc.store.schema import metadata, parse_canonical_labels, samples, series
from ioc.store.table_store import TableStore

UP_METRIC = "ioc_target_up"
REASON_METRIC = "ioc_target_failure_reason"
# Samples another instance writes this late are still seen by the next sync (a shard's
# writer flushes every few seconds; this instance's own later writes are tracked exactly).
LOOKBACK_MS = 2 * 60_000
NOTE_LIMIT = 2000          # characters of one note
NOTES_PER_INCIDENT = 200   # a short timeline, not a chat
PUBLIC_NOTE_LIMIT = 1000   # characters of the public note: a few sentences for citizens
# The columns sync derives from polls; the rest of a row (the public note) is an operator's.
_DERIVED = ("department", "started_at", "ended_at", "last_failed_at", "failed_polls",
            "causes", "planned")

incidents_table = Table(
    "ioc_incidents", metadata,
    Column("id", Text, primary_key=True),
    Column("target", Text, nullable=False),
    Column("department", Text, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("last_failed_at", BigInteger, nullable=False),
    Column("failed_polls", Integer, nullable=False),
    Column("causes", Text, nullable=False),       # JSON {reason: count}
    Column("planned", Boolean, nullable=False),
    # What the public status page says (revision 0007): an operator's words, never derived.
    Column("public_note", Text, nullable=True),
    Column("public_note_by", Text, nullable=True),
    Column("public_note_at", BigInteger, nullable=True),
    Column("public_note_en", Text, nullable=True),
    Index("ioc_incidents_started_idx", "started_at"),
    Index("ioc_incidents_target_idx", "target", "started_at"),
)

incident_notes = Table(
    "ioc_incident_notes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("text", Text, nullable=False),
    Index("ioc_incident_notes_incident_idx", "incident_id", "ts"),
)

incident_watermark = Table(
    "ioc_incident_watermark", metadata,
    Column("name", Text, primary_key=True),
    Column("synced_to", BigInteger, nullable=False),
)


class Fence(Protocol):
    async def verify(self, conn: AsyncConnection) -> None: ...


class NotFound(LookupError):
    """No incident has this id."""


@dataclass(frozen=True, slots=True)
class PublicIncident:
    """What the public status page may know of an incident: its target (to map it to a
    public service, never shown), times, whether it was planned, and the public note."""

    target: str
    department: str
    started_at: float
    ended_at: float | None
    planned: bool
    public_note: str | None
    public_note_at: float | None
    public_note_en: str | None = None  # the English page's wording; else public_note


@dataclass(frozen=True, slots=True)
class Query:
    department: str | None = None
    target: str | None = None
    since: float | None = None        # incidents still down at or after this time
    until: float | None = None        # incidents that started before this time
    open_only: bool = False
    before: tuple[int, str] | None = None  # cursor: (started_at ms, id) of the last row seen
    limit: int = 100


def _row_incident(row: Any) -> Incident:
    return Incident(row.target, row.department, sec(row.started_at),
                    None if row.ended_at is None else sec(row.ended_at),
                    sec(row.last_failed_at), row.failed_polls,
                    Counter(json.loads(row.causes)), bool(row.planned))


def _changed(target: str, found: Sequence[Incident], before: Mapping[str, Mapping[str, Any]]
             ) -> list[dict[str, Any]]:
    """The rows of ``found`` that are new or differ from what the ledger holds."""
    out = []
    for incident in found:
        values = {"department": incident.department,
                  "started_at": ms(incident.started_at),
                  "ended_at": None if incident.ended_at is None else ms(incident.ended_at),
                  "last_failed_at": ms(incident.last_failed_at),
                  "failed_polls": incident.failed_polls,
                  "causes": json.dumps(dict(sorted(incident.causes.items()))),
                  "planned": incident.planned}
        old = before.get(incident.id)
        if old is not None and {**old, "planned": bool(old["planned"])} == values:
            continue
        out.append({"id": incident.id, "target": target, **values})
    return out


class IncidentStore(TableStore):
    TABLES = (incidents_table, incident_notes, incident_watermark, history)
    NAME = "incident ledger"
    OPENING = "the incident ledger"

    # -- deriving (the alert leader only) -----------------------------------------------

    async def sync(self, now: float, windows: Sequence[Window] = (),
                   fence: Fence | None = None, late: LateWrites | None = None) -> int:
        """Derive the incidents of the polls stored since the last sync; returns how many
        incidents were written (new or changed).

        ``late`` is this process's record of batches it wrote with polls older than the
        look-back (a writer that buffered through a database outage): the sync then reads
        from the oldest of them. Other instances' writes later than the look-back are not
        seen (docs/reports.md).
        """
        engine = self._writer()
        since = late.take() if late is not None else None
        try:
            async with engine.begin() as conn:
                if fence is not None:
                    await fence.verify(conn)
                written, start = await self._sync(conn, ms(now), windows, since)
        except BaseException as exc:
            if late is not None:
                late.restore(since)
            if isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise  # NotLeaderError among them: the fence refused
            raise StoreError(f"store {self.url_for_display}: cannot derive incidents: "
                             f"{type(exc).__name__}: {exc}") from exc
        if late is not None:
            late.horizon = start if late.horizon is None else max(late.horizon, start)
        return written

    async def _sync(self, conn: AsyncConnection, now_ms: int, windows: Sequence[Window],
                    since: int | None) -> tuple[int, int]:
        mark = (await conn.execute(select(incident_watermark.c.synced_to).where(
            incident_watermark.c.name == "polls"))).scalar()
        start = 0 if mark is None else max(0, mark - LOOKBACK_MS)
        if since is not None:
            start = min(start, since)
        ids: dict[int, tuple[str, str, str]] = {}   # series id → (metric, target, department)
        for sid, metric, text in await conn.execute(
                select(series.c.id, series.c.metric, series.c.labels)
                .where(series.c.metric.in_((UP_METRIC, REASON_METRIC)))):
            labels = dict(parse_canonical_labels(text))
            if "target" in labels:
                ids[sid] = (metric, labels["target"], labels.get("department", ""))
        if not ids:
            await self._mark(conn, now_ms)
            return 0, max(0, now_ms - LOOKBACK_MS)
        # Incidents already open at the start of the slice: re-derive them from their start.
        seeds = {t: s for t, s in await conn.execute(
            select(incidents_table.c.target, func.min(incidents_table.c.started_at))
            .where(incidents_table.c.started_at < start,
                   or_(incidents_table.c.ended_at.is_(None),
                       incidents_table.c.ended_at >= start))
            .group_by(incidents_table.c.target))}
        rows = list((await conn.execute(  # .all(): one fetch, not a call per row
            select(samples.c.series_id, samples.c.ts, samples.c.value)
            .where(samples.c.series_id.in_(list(ids)), samples.c.ts >= start,
                   samples.c.ts <= now_ms))).all())
        for target, seed in seeds.items():
            sids = [sid for sid, (_, t, _) in ids.items() if t == target]
            rows.extend(await conn.execute(
                select(samples.c.series_id, samples.c.ts, samples.c.value)
                .where(samples.c.series_id.in_(sids), samples.c.ts >= seed,
                       samples.c.ts < start)))
        ups: dict[str, dict[int, bool]] = defaultdict(dict)
        reasons: dict[str, dict[int, float]] = defaultdict(dict)
        departments: dict[str, str] = {}
        for sid, ts, value in rows:
            metric, target, department = ids[sid]
            if metric == UP_METRIC:
                ups[target][ts] = value >= 0.5
                departments[target] = department
            else:
                reasons[target][ts] = value
        # What the ledger holds from the slice's start: only what changed is written.
        lowest = min([start, *seeds.values()])
        held: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in await conn.execute(select(incidents_table).where(
                incidents_table.c.started_at >= lowest)):
            values = dict(row._mapping)
            held[values.pop("target")][values.pop("id")] = {k: values[k] for k in _DERIVED}
        changed: list[dict[str, Any]] = []
        gone: set[str] = set()
        for target, polls in ups.items():
            from_ms = seeds.get(target, start)
            before = {i: v for i, v in held.get(target, {}).items()
                      if v["started_at"] >= from_ms}
            if not before and all(polls.values()):
                continue  # every poll good and nothing held: no incident to find (most)
            seq = [Poll(sec(ts), up, None if up else reason_from_code(reasons[target].get(ts)))
                   for ts, up in sorted(polls.items())]
            found = derive(target, departments[target], seq, windows)
            if found or before:
                changed += _changed(target, found, before)
                gone |= set(before) - {i.id for i in found}
        await self._upsert(conn, changed, gone)
        await self._mark(conn, now_ms)
        return len(changed), max(0, now_ms - LOOKBACK_MS)

    async def _upsert(self, conn: AsyncConnection, changed: Sequence[dict[str, Any]],
                     gone: set[str]) -> None:
        """Drop the incidents the polls undid and upsert the new or changed ones, each in one
        statement (a statement per incident cost more than deriving them)."""
        t = incidents_table
        for part in chunked(sorted(gone), 500):
            await conn.execute(delete(t).where(t.c.id.in_(part)))
        if changed:
            stmt = self._insert(t)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[t.c.id],
                set_={name: stmt.excluded[name] for name in ("target", *_DERIVED)}),
                list(changed))

    async def _mark(self, conn: AsyncConnection, now_ms: int) -> None:
        stmt = self._insert(incident_watermark).values(name="polls", synced_to=now_ms)
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=[incident_watermark.c.name], set_={"synced_to": now_ms}))

    # -- reading ---------------------------------------------------------------------------

    async def list(self, query: Query, now: float) -> tuple[list[dict[str, Any]],
                                                            tuple[int, str] | None]:
        """One page of incidents, newest first, and the cursor of the next page (or None)."""
        t = incidents_table
        where = []
        if query.department is not None:
            where.append(t.c.department == query.department)
        if query.target is not None:
            where.append(t.c.target == query.target)
        if query.since is not None:
            where.append(or_(t.c.ended_at.is_(None), t.c.ended_at >= ms(query.since)))
        if query.until is not None:
            where.append(t.c.started_at < ms(query.until))
        if query.open_only:
            where.append(t.c.ended_at.is_(None))
        if query.before is not None:
            at, ident = query.before
            where.append(or_(t.c.started_at < at, and_(t.c.started_at == at, t.c.id < ident)))
        stmt = (select(t).where(*where).order_by(t.c.started_at.desc(), t.c.id.desc())
                .limit(query.limit + 1))
        try:
            async with self._reader().connect() as conn:
                rows = list(await conn.execute(stmt))
                more = len(rows) > query.limit
                rows = rows[:query.limit]
                notes = await self._notes(conn, [r.id for r in rows])
                alerts = await self._alerts(conn, rows, ms(now))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read incidents: "
                             f"{type(exc).__name__}: {exc}") from exc
        items = [self._item(r, now, notes.get(r.id, []), alerts.get(r.id)) for r in rows]
        cursor = (rows[-1].started_at, rows[-1].id) if more and rows else None
        return items, cursor

    async def all_between(self, start: float, end: float, department: str | None = None
                          ) -> builtins.list[Incident]:
        """Every incident overlapping ``[start, end)`` (for reports), oldest first."""
        t = incidents_table
        stmt = select(t).where(t.c.started_at < ms(end),
                               or_(t.c.ended_at.is_(None), t.c.ended_at > ms(start)))
        if department is not None:
            stmt = stmt.where(t.c.department == department)
        try:
            async with self._reader().connect() as conn:
                rows = list(await conn.execute(stmt.order_by(t.c.started_at, t.c.id)))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read incidents: "
                             f"{type(exc).__name__}: {exc}") from exc
        return [_row_incident(r) for r in rows]

    @staticmethod
    def _item(row: Any, now: float, notes: builtins.list[dict[str, Any]],
              alert: dict[str, Any] | None) -> dict[str, Any]:
        incident = _row_incident(row)
        return {"id": row.id, "target": incident.target, "department": incident.department,
                "started_at": incident.started_at, "ended_at": incident.ended_at,
                "open": incident.ended_at is None,
                "duration_seconds": round(incident.duration(now), 3),
                "failed_polls": incident.failed_polls, "causes": dict(incident.causes),
                "planned": incident.planned,
                "public_note": row.public_note, "public_note_en": row.public_note_en,
                "alert": None if alert is None else alert["alert"],
                "acked_by": None if alert is None else alert["acked_by"],
                "acked_at": None if alert is None else alert["acked_at"],
                "notes": notes}

    async def _notes(self, conn: AsyncConnection, ids: Sequence[str]
                     ) -> dict[str, builtins.list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if not ids:
            return out
        n = incident_notes
        for row in await conn.execute(select(n).where(n.c.incident_id.in_(list(ids)))
                                      .order_by(n.c.ts, n.c.id)):
            out[row.incident_id].append({"at": sec(row.ts), "by": row.actor, "text": row.text})
        return out

    async def _alerts(self, conn: AsyncConnection, rows: Sequence[Any], now_ms: int
                      ) -> dict[str, dict[str, Any]]:
        """The first alert on each incident's target that fired while it lasted, and its ack."""
        if not rows:
            return {}
        low = min(r.started_at for r in rows)
        high = max(now_ms if r.ended_at is None else r.ended_at for r in rows)
        events = list(await conn.execute(
            select(history.c.ts, history.c.kind, history.c.fingerprint, history.c.actor,
                   history.c.detail)
            .where(history.c.kind.in_(("firing", "ack")), history.c.ts >= low,
                   history.c.ts <= high).order_by(history.c.ts)))
        fired: list[tuple[int, str, str, str]] = []   # ts, fingerprint, target, alertname
        acks: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for ts, kind, fingerprint, actor, detail in events:
            try:
                data = json.loads(detail)
            except ValueError:
                continue
            if kind == "firing":
                labels = data.get("labels") or {}
                if "target" in labels:
                    fired.append((ts, fingerprint, labels["target"],
                                  labels.get("alertname", "")))
            else:
                acks[fingerprint].append((ts, actor))
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            end = now_ms if r.ended_at is None else r.ended_at
            for ts, fingerprint, target, name in fired:
                if target == r.target and r.started_at <= ts <= end:
                    ack = next(((a_ts, by) for a_ts, by in acks.get(fingerprint, [])
                                if a_ts >= ts), None)
                    out[r.id] = {"alert": {"name": name, "fingerprint": fingerprint,
                                           "fired_at": sec(ts)},
                                 "acked_by": None if ack is None else ack[1],
                                 "acked_at": None if ack is None else sec(ack[0])}
                    break
        return out

    # -- operators' notes ------------------------------------------------------------------

    async def add_note(self, incident_id: str, *, actor: str, text: str, now: float
                       ) -> dict[str, Any]:
        """Append a note to an incident's timeline (raises NotFound, ValueError)."""
        text = text.strip()
        if not text:
            raise ValueError("text: a note needs some text")
        if len(text) > NOTE_LIMIT:
            raise ValueError(f"text: at most {NOTE_LIMIT} characters (got {len(text)})")
        try:
            async with self._writer().begin() as conn:
                exists = (await conn.execute(select(incidents_table.c.id).where(
                    incidents_table.c.id == incident_id))).scalar()
                if exists is None:
                    raise NotFound(incident_id)
                count = (await conn.execute(select(func.count()).select_from(incident_notes)
                                            .where(incident_notes.c.incident_id
                                                   == incident_id))).scalar_one()
                if count >= NOTES_PER_INCIDENT:
                    raise ValueError(f"incident {incident_id} already has {count} notes "
                                     f"(at most {NOTES_PER_INCIDENT})")
                await conn.execute(incident_notes.insert().values(
                    incident_id=incident_id, ts=ms(now), actor=actor, text=text))
        except (NotFound, ValueError):
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot add the note: "
                             f"{type(exc).__name__}: {exc}") from exc
        return {"at": sec(ms(now)), "by": actor, "text": text}  # as stored: milliseconds

    # -- the public note -------------------------------------------------------------------

    async def set_public_note(self, incident_id: str, *, actor: str, text: str, now: float,
                              text_en: str = "") -> dict[str, Any]:
        """Set (or, with empty text, clear) the incident's public note, in Vietnamese and
        optionally English (NotFound, ValueError)."""
        text, text_en = text.strip(), text_en.strip()
        for name, value in (("text", text), ("text_en", text_en)):
            if len(value) > PUBLIC_NOTE_LIMIT:
                raise ValueError(f"{name}: at most {PUBLIC_NOTE_LIMIT} characters "
                                 f"(got {len(value)})")
        if not text:
            text_en = ""  # withdrawing the note withdraws its English wording too
        t = incidents_table
        try:
            async with self._writer().begin() as conn:
                done = await conn.execute(t.update().where(t.c.id == incident_id).values(
                    public_note=text or None, public_note_en=text_en or None,
                    public_note_by=actor if text else None,
                    public_note_at=ms(now) if text else None))
                if done.rowcount == 0:
                    raise NotFound(incident_id)
        except NotFound:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot set the public note: "
                             f"{type(exc).__name__}: {exc}") from exc
        return {"id": incident_id, "public_note": text or None,
                "public_note_en": text_en or None, "by": actor if text else None,
                "at": sec(ms(now)) if text else None}

    async def public_between(self, start: float, end: float, targets: Sequence[str]
                             ) -> builtins.list[PublicIncident]:
        """Incidents of ``targets`` overlapping ``[start, end)``, oldest first: only the
        columns a public page may use (no causes, no internal notes)."""
        if not targets:
            return []
        t = incidents_table
        stmt = (select(t.c.target, t.c.department, t.c.started_at, t.c.ended_at, t.c.planned,
                       t.c.public_note, t.c.public_note_at, t.c.public_note_en)
                .where(t.c.started_at < ms(end),
                       or_(t.c.ended_at.is_(None), t.c.ended_at > ms(start)))
                .order_by(t.c.started_at, t.c.id))
        wanted = set(targets)
        try:
            async with self._reader().connect() as conn:
                rows = list(await conn.execute(stmt))
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read incidents: "
                             f"{type(exc).__name__}: {exc}") from exc
        return [PublicIncident(r.target, r.department, sec(r.started_at),
                               None if r.ended_at is None else sec(r.ended_at),
                               bool(r.planned), r.public_note,
                               None if r.public_note_at is None else sec(r.public_note_at),
                               r.public_note_en)
                for r in rows if r.target in wanted]
