"""Pending and firing alerts in the SQL store, so a restart neither forgets nor re-fires them.

One row per active alert, keyed by its fingerprint: the engine writes the rows whose state
changed in a cycle (a new pending alert, pending → firing, keep-firing started or stopped) and
deletes the ones that were dropped, all in one transaction. The value is not written every
cycle — on restart the next evaluation refreshes it anyway.

A resolved alert stays a while as a ``resolved`` row (``updated_at`` is when it resolved):
delivery tells the resolution at its group's next flush, and an ioc that restarts or takes
over as alert leader before that flush hands those rows to delivery again, whose notification
log tells each resolution once. The engine prunes them once no flush can still be waiting.

The alert leader passes a fence (:class:`ioc.store.base.Fence`) with every write: only the
instance holding the leader lock may change the rows other instances show.

Like the events tables it has its own small engine built by the sample store's dialect code
(SQLite gets WAL, busy_timeout and BEGIN IMMEDIATE), so alert writes never queue behind the
sample writer's large transactions. Times are unix seconds as doubles: they are compared with
``now`` and shown, never grouped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Column, ColumnElement, Float, Table, Text, delete, select

from ioc.model import Labels, canonical_labels
from ioc.store.base import Fence, StoreError
from ioc.store.schema import metadata, parse_canonical_labels
from ioc.store.table_store import TableStore

alert_state_table = Table(
    "ioc_alert_state",
    metadata,
    Column("fingerprint", Text, primary_key=True),
    Column("rule", Text, nullable=False),        # RuleConfig.key: name/severity/labels
    Column("labels", Text, nullable=False),      # canonical label text
    Column("state", Text, nullable=False),       # pending | firing | resolved
    Column("value", Float, nullable=True),
    Column("active_at", Float, nullable=False),
    Column("fired_at", Float, nullable=True),
    Column("keep_firing_since", Float, nullable=True),
    Column("annotations", Text, nullable=False),  # JSON object
    Column("updated_at", Float, nullable=False),
)

_CHUNK = 400
RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertRow:
    fingerprint: str
    rule: str
    labels: Labels
    state: str
    value: float | None
    active_at: float
    fired_at: float | None
    keep_firing_since: float | None
    annotations: tuple[tuple[str, str], ...]
    updated_at: float | None = None  # when the row was written (a resolved row: resolved at)


class AlertStateStore(TableStore):
    TABLES = (alert_state_table,)
    NAME = "alert state store"
    OPENING = "the alert state table"

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        super().__init__(url, busy_timeout=busy_timeout)
        stmt = self._insert(alert_state_table)
        self._upsert = stmt.on_conflict_do_update(
            index_elements=[alert_state_table.c.fingerprint],
            set_={name: stmt.excluded[name] for name in (
                "rule", "labels", "state", "value", "active_at", "fired_at",
                "keep_firing_since", "annotations", "updated_at")})

    async def load(self) -> list[AlertRow]:
        """The pending and firing alerts."""
        return await self._load(alert_state_table.c.state != RESOLVED)

    async def load_resolved(self) -> list[AlertRow]:
        """The resolved alerts kept until delivery has surely told them."""
        return await self._load(alert_state_table.c.state == RESOLVED)

    async def _load(self, where: ColumnElement[bool]) -> list[AlertRow]:
        try:
            async with self._reader().connect() as conn:
                result = await conn.execute(select(alert_state_table).where(where))
                rows = result.mappings().all()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot read alert state: "
                             f"{type(exc).__name__}: {exc}") from exc
        out = []
        for row in rows:
            try:
                annotations = json.loads(row["annotations"])
                out.append(AlertRow(
                    fingerprint=row["fingerprint"], rule=row["rule"],
                    labels=parse_canonical_labels(row["labels"]), state=row["state"],
                    value=row["value"], active_at=row["active_at"], fired_at=row["fired_at"],
                    keep_firing_since=row["keep_firing_since"],
                    annotations=tuple((str(k), str(v)) for k, v in annotations.items()),
                    updated_at=row["updated_at"]))
            except (ValueError, AttributeError):
                continue  # a damaged row: the next evaluation recreates the alert
        return out

    async def save(self, changed: Iterable[AlertRow], removed: Sequence[str], now: float, *,
                   fence: Fence | None = None, resolved_before: float | None = None) -> None:
        """Upsert ``changed`` and delete the fingerprints in ``removed``, in one transaction.

        With ``fence`` nothing is written unless it holds (NotLeaderError); with
        ``resolved_before`` resolved rows that old are deleted too.
        """
        rows = [{
            "fingerprint": a.fingerprint, "rule": a.rule, "labels": canonical_labels(a.labels),
            "state": a.state, "value": _finite(a.value), "active_at": a.active_at,
            "fired_at": a.fired_at, "keep_firing_since": a.keep_firing_since,
            "annotations": json.dumps(dict(a.annotations), ensure_ascii=False),
            "updated_at": now,
        } for a in changed]
        if not rows and not removed and resolved_before is None:
            return
        try:
            async with self._writer().begin() as conn:
                if fence is not None:
                    await fence.verify(conn)
                if resolved_before is not None:
                    await conn.execute(delete(alert_state_table).where(
                        alert_state_table.c.state == RESOLVED,
                        alert_state_table.c.updated_at < resolved_before))
                for start in range(0, len(removed), _CHUNK):
                    chunk = list(removed[start:start + _CHUNK])
                    await conn.execute(delete(alert_state_table).where(
                        alert_state_table.c.fingerprint.in_(chunk)))
                for start in range(0, len(rows), _CHUNK):
                    await conn.execute(self._upsert, rows[start:start + _CHUNK])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url_for_display}: cannot write alert state: "
                             f"{type(exc).__name__}: {exc}") from exc


def _finite(value: float | None) -> float | None:
    """NaN and infinities do not survive every database; they are refreshed on restart."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return value
