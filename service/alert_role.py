"""Alert evaluation and sending run on one instance, the alert leader; the others follow.

With SQLite (one process by construction), or ``alerts.leader_election: off``, this instance
is the leader from start to stop and nothing else happens here. With PostgreSQL instances
elect a leader (ioc.leader), and this module turns each transition into work:

* **taking the lead**: the store tail fills the windows of the other shards' targets and the
  event counts (service.store_tail); delivery reads the notification log and starts its outbox,
  which holds whatever the previous leader had not sent yet; the engine loads the alert state
  the previous leader stored and starts evaluating. Nothing is held over from an earlier term.
* **losing the lead**: the engine stops without writing anything more (its successor owns the
  state), delivery stops grouping and sending, the tail forgets what it read.

Every evaluation interval every instance re-reads silences, acks and maintenance windows (an
operator may have written them through any instance); a follower also re-reads the alert
state, so its wall and alert API show what the leader decided rather than nothing; the leader
runs the store tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from alerts.dispatcher import Dispatcher
from alerts.engine import AlertEngine
from alerts.model import Alert, AlertState
from alerts.routing import Route
from alerts.rules import Rule
from ioc import clock
from ioc.leader import LeaderElection, LeaderMetrics, LockFence, cadence_for, election_dsn
from ioc.logs import fields
from ioc.sharding import Ownership
from ioc.store.alert_state import AlertRow, AlertStateStore
from ioc.store.base import StoreError
from ioc.store.tail import TailStore
from ioc.tasks import cancel_and_wait
from service.store_tail import CLOCK_SKEW, StoreTail, TailMetrics, backfill_seconds

if TYPE_CHECKING:
    from service.config import Config

log = logging.getLogger("ioc.alert_role")


def election_wanted(mode: str, storage_url: str) -> bool:
    """``auto`` elects a leader whenever the store is PostgreSQL (several instances may share
    it); SQLite is one process, which leads alone."""
    return mode == "auto" and make_url(storage_url).get_backend_name() == "postgresql"


def shown_alert(row: AlertRow, now: float) -> Alert:
    """A stored firing alert as a follower shows it (``last_eval``: when it was read)."""
    return Alert(labels=row.labels, annotations=row.annotations, state=AlertState.FIRING,
                 value=row.value, active_at=row.active_at, fired_at=row.fired_at,
                 last_eval=now, fingerprint=row.fingerprint)


class AlertRole:
    def __init__(self, engine: AlertEngine, dispatcher: Dispatcher, *, interval: float,
                 metrics: LeaderMetrics, storage_url: str | None = None,
                 tail: StoreTail | None = None, wall_clock: Callable[[], float] = clock.now
                 ) -> None:
        """``storage_url`` set: elect a leader through that PostgreSQL database."""
        self.engine = engine
        self.dispatcher = dispatcher
        self.interval = interval
        self.metrics = metrics
        self.tail = tail
        self._clock = wall_clock
        self._turn = asyncio.Lock()  # a takeover and a follower's refresh never interleave
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.election: LeaderElection | None = None
        self.view: AlertStateStore | None = None
        if storage_url is not None:
            self.view = AlertStateStore(storage_url)
            self.election = LeaderElection(
                election_dsn(storage_url), cadence=cadence_for(interval), metrics=metrics,
                on_acquire=self._lead, on_release=self._release,
                shown_as=self.view.url_for_display)
        self._leading_alone = False

    @property
    def leading(self) -> bool:
        return self.election.is_leader if self.election is not None else self._leading_alone

    async def start(self) -> None:
        await self.dispatcher.open()
        if self.election is None:
            self._leading_alone = True
            self.metrics.changed("acquired", leading=True)
            await self._lead(None)
            return
        assert self.view is not None
        await self.view.open()
        if self.tail is not None:
            await self.tail.open()
        log.info("alert leader election on", extra=fields(
            cadence=self.election.cadence, check_timeout=self.election.timeout))
        await self.election.start()
        if not self.leading:
            await self._refresh(self._clock())
        self._task = asyncio.create_task(self._follow(), name="ioc-alert-role")

    async def stop(self) -> None:
        """Stop leading (saving the state while the lock is still held) and following."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.election is not None:
            await self.election.stop()
        elif self._leading_alone:
            self._leading_alone = False
            await self._release(False)
            self.metrics.changed("released", leading=False)
        # Whatever a transition cut short by the stop left running, stop it without writing.
        await self.engine.stop(persist=False)
        await self.dispatcher.step_down()
        if self.tail is not None:
            await self.tail.close()
        if self.view is not None:
            await self.view.close()

    # -- transitions (from the election) -------------------------------------------------

    async def _lead(self, fence: LockFence | None) -> None:
        async with self._turn:
            self.engine.fence = self.dispatcher.fence = fence
            now = self._clock()
            if self.tail is not None:
                await self.tail.start(now)
            await self.dispatcher.lead()
            await self.engine.start(now)

    async def _release(self, lost: bool) -> None:
        # Not under the turn lock: stopping must not wait for a refresh that is reading.
        await self.engine.stop(persist=not lost)
        await self.dispatcher.step_down()
        if self.tail is not None:
            self.tail.stop()
        self.engine.fence = self.dispatcher.fence = None

    # -- every evaluation interval ---------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._refresh(self._clock())

    async def _refresh(self, now: float) -> None:
        try:
            async with self._turn:
                await self.dispatcher.refresh(now)
                if not self.leading:
                    assert self.view is not None
                    rows = await self.view.load()
                    self.dispatcher.show(shown_alert(row, now) for row in rows
                                         if row.state == AlertState.FIRING.value)
                elif self.tail is not None:
                    await self.tail.poll(now)
        except StoreError as exc:
            if not self._failing:
                self._failing = True
                log.warning("cannot read the shared alert tables; retrying every interval",
                            extra=fields(error=str(exc)))
            return
        except Exception:
            log.exception("alert refresh failed")
            return
        if self._failing:
            self._failing = False
            log.info("reading the shared alert tables again")


def build_store_tail(config: Callable[[], Config], registry: CollectorRegistry, shard: Ownership,
                     rules: Callable[[], Sequence[Rule]]) -> StoreTail | None:
    """The leader's store tail when an election runs (else None); reads the live config and
    rules through callables, so a reload's targets and rule windows apply at once."""
    # Registered on every instance, like ioc_alert_leader: zero where no tail runs.
    metrics = TailMetrics(registry)
    first = config()
    if not election_wanted(first.alerts.leader_election, first.storage.url):
        return None
    collection = first.collection
    longest_interval = max((first.interval_of(c) for c in first.collectors), default=0.0)
    longest_timeout = max((first.timeout_of(c) for c in first.collectors), default=0.0)
    return StoreTail(
        TailStore(first.storage.url), shard=shard,
        targets=lambda: [c.name for c in config().collectors],
        window=collection.window, window_points=collection.window_points,
        overlap=first.storage.flush_interval + longest_timeout + CLOCK_SKEW,
        backfill=lambda: backfill_seconds(
            [max(r.config.window, r.config.absent or 0.0) for r in rules()],
            longest_interval, collection.window),
        metrics=metrics)


def keep_resolved_for(route: Route, interval: float) -> float:
    """How long a resolved alert's row is kept: longer than any group can wait before it
    flushes (group_wait or group_interval), two evaluations, and a minute for retries."""
    longest = max((max(r.group_wait, r.group_interval) for r in route.walk()), default=0.0)
    return longest + 2 * interval + 60.0
