"""The durable outbox: every notification is in the store before anyone is called.

The dispatcher writes notifications (with the notification-log entries that caused them) in
one transaction; this module's task sends them. Each *integration* (one channel of one
receiver) is sent to in order, one at a time, independently of the others: a Zalo outage
never delays the e-mail. A failed send defers that integration's whole queue with exponential
backoff (``initial_backoff`` doubling up to ``max_backoff``; a channel's own "retry after" wins),
persisted in the rows so a restart keeps it. A notification older than ``max_age`` is marked
failed — visible in ``/api/v1/notifications``, counted, and written to the alert history.

Delivery is at-least-once: a send that succeeded but whose "sent" mark did not reach the
store (a crash in between) is sent again after the restart, with the same ``dedup_key``.
The queue is bounded (``queue_limit`` pending rows); past it the oldest are dropped, counted,
and logged once when dropping starts and once when an enqueue fits again (``ioc.overflow``):
a receiver down during an alert storm must not add a log line per notification.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field

from alerts.messages import Notification
from alerts.notifiers import Integration, RetryLater
from ioc.config_types import Duration, StrictModel
from ioc.logs import fields
from ioc.overflow import OverflowLog
from ioc.store.alert_delivery import DeliveryStore, HistoryEvent, OutboxRow
from ioc.store.base import StoreError
from ioc.tasks import cancel_and_wait, wait_woken

log = logging.getLogger("ioc.alerts.outbox")


class OutboxConfig(StrictModel):
    max_age: Duration = Field(6 * 3600.0, description="give up on a notification this old")
    initial_backoff: Duration = Field(5.0, description="wait after a channel's first failure")
    max_backoff: Duration = Field(300.0, description="longest wait between two attempts")
    queue_limit: int = Field(10_000, ge=10, le=10_000_000,
                             description="pending notifications kept; past it the oldest drop")
    batch_size: int = Field(100, ge=1, le=10_000, description="rows read per round")


def backoff(failures: int, initial: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures of one channel."""
    return min(maximum, initial * 2 ** max(0, failures - 1))


class OutboxCounters(Protocol):
    """Where the outbox reports; ioc.metrics.DeliveryMetrics implements it."""

    def sent(self, integration: Integration, result: str) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass
class _Channel:
    failures: int = 0


class Outbox:
    def __init__(self, store: DeliveryStore, integrations: Mapping[str, Integration],
                 config: OutboxConfig, counters: OutboxCounters,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.integrations = dict(integrations)
        self.config = config
        self.counters = counters
        self.clock = clock
        self._wake = asyncio.Event()
        self._channels: dict[str, _Channel] = {}
        self._task: asyncio.Task[None] | None = None
        self._sending: dict[str, asyncio.Task[None]] = {}  # integration → its sender now
        self._overflow = OverflowLog(log, "notification queue")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="ioc-outbox")

    async def stop(self) -> None:
        task, self._task = self._task, None
        sending = list(self._sending.values())
        self._sending.clear()
        await cancel_and_wait(task, *sending)

    def wake(self) -> None:
        """New rows were stored: look now instead of at the next deadline."""
        self._wake.set()

    async def after_enqueue(self) -> None:
        """Enforce the bound and wake the sender."""
        dropped = await self.store.drop_oldest_pending(self.config.queue_limit, self.clock())
        for row in dropped:
            integration = self.integrations.get(row.integration)
            if integration is not None:
                self.counters.sent(integration, "dropped")
        if dropped:
            self._overflow.dropped(len(dropped), queue_limit=self.config.queue_limit)
        else:
            self._overflow.ok()
        self.wake()

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            # Cleared before looking, so a wake during the look (a channel done, a new row)
            # is not lost.
            self._wake.clear()
            try:
                busy = await self.dispatch()
                if busy:
                    continue
                wait = await self._until_next()
            except StoreError as exc:
                log.warning("outbox: store unavailable, retrying", extra=fields(error=str(exc)))
                wait = 5.0
            except Exception:
                log.exception("outbox: unexpected error")
                wait = 5.0
            await wait_woken(self._wake, wait)

    async def _until_next(self) -> float:
        depth = await self.store.pending_count()
        self.counters.queue_depth(depth)
        # A channel still sending wakes the loop when it is done; its rows are not a reason
        # to look again sooner.
        nxt = await self.store.next_attempt(exclude=self._sending.keys())
        if nxt is None:
            return 60.0
        return min(60.0, max(0.05, nxt - self.clock()))

    async def dispatch(self) -> bool:
        """Start sending what is due on every channel not already sending.

        Each channel sends from a task of its own and the loop does not wait for it, so a
        receiver that hangs until its timeout holds up only its own queue, never another
        channel's next notification. True when a full batch was read (there may be more)."""
        rows = await self.store.due(self.clock(), self.config.batch_size,
                                    exclude=self._sending.keys())
        by_channel: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_channel.setdefault(row.integration, []).append(row)
        for name, queue in by_channel.items():
            task = asyncio.create_task(self._send_channel(name, queue),
                                       name=f"ioc-outbox-{name}")
            self._sending[name] = task
            task.add_done_callback(functools.partial(self._sent, name))
        return len(rows) >= self.config.batch_size

    def _sent(self, name: str, task: asyncio.Task[None]) -> None:
        if self._sending.get(name) is task:
            del self._sending[name]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("outbox: sending failed unexpectedly",
                      extra=fields(integration=name, error=repr(exc)))
        self.wake()

    async def run_once(self) -> bool:
        """Send what is due and wait until it is sent (or deferred); True when a full batch
        was read. The loop uses ``dispatch``; this is for callers that step the outbox."""
        busy = await self.dispatch()
        while self._sending:
            await asyncio.gather(*self._sending.values(), return_exceptions=True)
        return busy

    async def _send_channel(self, name: str, queue: list[OutboxRow]) -> None:
        integration = self.integrations.get(name)
        for row in queue:
            now = self.clock()
            if integration is None:
                await self._fail(row, None, now, "receiver is no longer configured")
                continue
            if now - row.created_at > self.config.max_age:
                await self._fail(row, integration, now, row.last_error or "too old")
                continue
            try:
                notification = Notification.from_json(row.payload)
                async with asyncio.timeout(_send_limit(integration)):
                    await integration.notifier.send(notification)
            except Exception as exc:  # every failure is a retry; bugs show in last_error
                await self._retry(row, integration, exc)
                return  # the rest of this channel's queue waits for the backoff
            self._channels.pop(name, None)
            await self.store.mark(row.id, state="sent", now=self.clock(),
                                  attempts=row.attempts + 1)
            self.counters.sent(integration, "sent")

    async def _retry(self, row: OutboxRow, integration: Integration, exc: Exception) -> None:
        now = self.clock()
        channel = self._channels.setdefault(integration.id, _Channel())
        channel.failures += 1
        delay = backoff(channel.failures, self.config.initial_backoff, self.config.max_backoff)
        if isinstance(exc, RetryLater):
            delay = max(delay if channel.failures > 1 else 0.0, exc.after)
        error = str(exc) or type(exc).__name__
        if now + delay - row.created_at > self.config.max_age:
            await self._fail(row, integration, now, error)
            return
        log.warning("notification not delivered, will retry", extra=fields(
            integration=integration.id, attempt=row.attempts + 1, retry_in=round(delay, 1),
            error=error))
        self.counters.sent(integration, "retry")
        await self.store.mark(row.id, state="pending", now=now, attempts=row.attempts + 1,
                              error=error)
        await self.store.defer(integration.id, now + delay)

    async def _fail(self, row: OutboxRow, integration: Integration | None, now: float,
                    error: str) -> None:
        log.error("notification failed for good", extra=fields(
            integration=row.integration, dedup_key=row.dedup_key, error=error))
        await self.store.mark(row.id, state="failed", now=now, attempts=row.attempts,
                              error=error)
        await self.store.record([HistoryEvent(
            f"failed:{row.dedup_key}", now, "notification_failed", None, "ioc",
            {"integration": row.integration, "group_key": row.group_key, "error": error,
             "alerts": [a["fingerprint"] for a in row.payload.get("alerts", [])]})])
        if integration is not None:
            self.counters.sent(integration, "failed")


def _send_limit(integration: Integration) -> float:
    """A notifier enforces its own timeout; this is the backstop for one that hangs.

    A notifier that does more than one request (a scheduled report builds its files first)
    says how long it may take in ``send_limit``."""
    limit = getattr(integration.notifier, "send_limit", None)
    if limit is not None:
        return float(limit)
    own = getattr(getattr(integration.notifier, "config", None), "timeout", 10.0)
    return float(own) + 5.0
