"""The reads of the store tail (service.store_tail): recent samples of chosen series, and recent
security events, from the shared PostgreSQL database.

Samples are read by series id *and* time, ``series_id = ANY(ids) AND ts > since``: one probe
of the samples' primary key ``(series_id, ts)`` per series, so the cost grows with the number
of series followed and not with the table, and needs no index beyond the primary key
(``bench/store_tail.py`` measures it against a time-only scan). Events are read by
``received_at``, the moment an instance stored them, so an event that occurred long ago but
was stored just now is still seen.

PostgreSQL only: the tail exists for several instances sharing one database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import BigInteger, Integer, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from ioc.model import Event, Labels
from ioc.store.base import StoreError
from ioc.store.events import events_table
from ioc.store.schema import parse_canonical_labels, samples, series
from ioc.store.table_store import TableStore

T = TypeVar("T")

_ID_CHUNK = 10_000  # series ids per query: one array parameter each

_SAMPLES = (select(samples.c.series_id, samples.c.ts, samples.c.value)
            .where(samples.c.series_id == any_(bindparam("ids", type_=ARRAY(Integer))),
                   samples.c.ts > bindparam("since", type_=BigInteger),
                   samples.c.ts <= bindparam("until", type_=BigInteger))
            .order_by(samples.c.series_id, samples.c.ts))
_SERIES = (select(series.c.id, series.c.metric, series.c.labels)
           .where(series.c.id == any_(bindparam("ids", type_=ARRAY(Integer)))))
_EVENTS = (select(events_table.c.source, events_table.c.event_id, events_table.c.severity,
                  events_table.c.category, events_table.c.department,
                  events_table.c.occurred_at, events_table.c.received_at)
           .where(events_table.c.received_at > bindparam("since", type_=BigInteger),
                  events_table.c.received_at <= bindparam("until", type_=BigInteger))
           .order_by(events_table.c.received_at))


@dataclass(frozen=True, slots=True)
class SeriesRow:
    id: int
    metric: str
    labels: Labels


@dataclass(frozen=True, slots=True)
class EventRow:
    event: Event       # what the counts need: source, id, severity, category, department
    received_ms: int


class TailStore(TableStore):
    TABLES = (series, samples, events_table)
    NAME = "store tail"
    OPENING = "the store tail"

    async def series_ids(self) -> list[int]:
        """Every series id (an index-only read of a small table)."""
        try:
            async with self._reader().connect() as conn:
                return list((await conn.execute(select(series.c.id))).scalars())
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed("read series ids", exc) from exc

    async def series(self, ids: Sequence[int]) -> list[SeriesRow]:
        """Metric and labels of these series; a damaged label text leaves its series out."""
        out: list[SeriesRow] = []
        try:
            async with self._reader().connect() as conn:
                for start in range(0, len(ids), _ID_CHUNK):
                    chunk = list(ids[start:start + _ID_CHUNK])
                    for sid, metric, text in await conn.execute(_SERIES, {"ids": chunk}):
                        try:
                            out.append(SeriesRow(sid, metric, parse_canonical_labels(text)))
                        except ValueError:
                            continue
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed("read series", exc) from exc
        return out

    async def learn_series(self, known: dict[int, T | None],
                           classify: Callable[[SeriesRow], T | None]) -> None:
        """Add the series stored since the last call to ``known``, each as ``classify`` sees it.

        Followers keep one such map for the life of their process: a series id never changes
        its series, so only ids new to the map are read. An id whose labels cannot be parsed
        stays ``None`` (not followed), so it is not read again on every poll.
        """
        new = [sid for sid in await self.series_ids() if sid not in known]
        if not new:
            return
        for sid in new:
            known[sid] = None
        for row in await self.series(new):
            known[row.id] = classify(row)

    async def samples(self, ids: Sequence[int], since_ms: int,
                      until_ms: int) -> list[tuple[int, int, float]]:
        """``(series_id, ts_ms, value)`` with ``since < ts <= until``, per series oldest first."""
        out: list[tuple[int, int, float]] = []
        try:
            async with self._reader().connect() as conn:
                for start in range(0, len(ids), _ID_CHUNK):
                    result = await conn.execute(_SAMPLES, {
                        "ids": list(ids[start:start + _ID_CHUNK]), "since": since_ms,
                        "until": until_ms})
                    out.extend((sid, ts, value) for sid, ts, value in result)
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed("read samples", exc) from exc
        return out

    async def events(self, since_ms: int, until_ms: int) -> list[EventRow]:
        """Events stored (by any instance) with ``since < received_at <= until``."""
        try:
            async with self._reader().connect() as conn:
                result = await conn.execute(_EVENTS, {"since": since_ms, "until": until_ms})
                return [EventRow(Event(source=r.source, id=r.event_id, severity=r.severity,
                                       category=r.category, title="",
                                       occurred_at=r.occurred_at / 1000,
                                       department=r.department), r.received_at)
                        for r in result]
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed("read events", exc) from exc

    def _failed(self, what: str, exc: Exception) -> StoreError:
        return StoreError(f"store {self.url_for_display}: cannot {what} for the store tail: "
                          f"{type(exc).__name__}: {exc}")
