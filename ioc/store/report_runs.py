"""The record of scheduled reports queued: one row per (schedule, period), ever.

The row goes in with the report's outbox rows in one transaction (:meth:`ReportRunStore.queue`),
behind the alert leader's fence when there is one. The primary key makes the second attempt
— after a restart, from another instance, or by hand with ``ioc report --send`` — insert
nothing and queue nothing, so a period's report is sent at most once per receiver channel
(and at least once: the outbox retries it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Integer, Table, Text, select

from ioc.store.alert_delivery import TABLES as DELIVERY_TABLES
from ioc.store.alert_delivery import DeliveryStore, NewNotification, ms, sec
from ioc.store.base import Fence
from ioc.store.schema import metadata

report_runs = Table(
    "ioc_report_runs", metadata,
    Column("schedule", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("fired_at", BigInteger, nullable=False),
    Column("queued_at", BigInteger, nullable=False),
    Column("trigger", Text, nullable=False),        # schedule, catch-up or manual
    Column("notifications", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class ReportRun:
    schedule: str
    period: str
    fired_at: float
    queued_at: float
    trigger: str
    notifications: int


class ReportRunStore(DeliveryStore):
    TABLES = [*DELIVERY_TABLES, report_runs]  # noqa: RUF012 (as DeliveryStore.TABLES)
    NAME = "report run store"
    OPENING = "the report run table"

    async def queue(self, run: ReportRun, rows: Sequence[NewNotification], *,
                    fence: Fence | None = None) -> bool:
        """Record ``run`` and queue ``rows``; False (nothing queued) if the run is recorded.

        With ``fence`` nothing is written unless this instance still leads (NotLeaderError).
        """
        async with self._begin("queue report") as conn:
            if fence is not None:
                await fence.verify(conn)
            stmt = self._insert(report_runs).values(
                schedule=run.schedule, period=run.period, fired_at=ms(run.fired_at),
                queued_at=ms(run.queued_at), trigger=run.trigger,
                notifications=run.notifications,
            ).on_conflict_do_nothing(index_elements=[report_runs.c.schedule,
                                                     report_runs.c.period])
            inserted = (await conn.execute(stmt.returning(report_runs.c.schedule))).first()
            if inserted is None:
                return False
            await self._add_outbox(conn, rows)
            return True

    async def runs(self, schedule: str | None = None) -> list[ReportRun]:
        """Recorded runs, newest first."""
        query = select(report_runs).order_by(report_runs.c.queued_at.desc())
        if schedule is not None:
            query = query.where(report_runs.c.schedule == schedule)
        async with self._read("report runs") as conn:
            rows = (await conn.execute(query)).all()
        return [ReportRun(r.schedule, r.period, sec(r.fired_at), sec(r.queued_at), r.trigger,
                          r.notifications) for r in rows]

    async def run(self, schedule: str, period: str) -> ReportRun | None:
        for found in await self.runs(schedule):
            if found.period == period:
                return found
        return None
