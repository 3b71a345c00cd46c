"""Scheduled reports on the alert leader: when a schedule is due, queue its report once.

Every ``CHECK_SECONDS`` (and at each schedule's next fire time) the task asks, on the alert
leader only, which run each schedule is due for (:func:`ioc.reports.schedule.due_run`: the
latest firing within its grace) and queues it: the run's row and one outbox row per channel
in one transaction behind the leader fence (:mod:`ioc.store.report_runs`). A run already
recorded queues nothing, so restarts, a new leader and ``ioc report --send`` never send a
period twice; the outbox then sends (and retries) like any alert, building the files when a
channel sends (:mod:`ioc.reports.files`).

APScheduler's triggers compute the fire times; its scheduler is not used. A scheduler of its
own would run jobs on every instance and know nothing of the leader fence, its job store
would be a second record of what was sent, and a missed run after downtime is exactly the
question "was (schedule, period) recorded", which the run table answers. One asyncio task
that wakes for the next fire time and rechecks leadership each minute is all it takes.

Only :meth:`ReportScheduler.run_forever` reads the clock; :meth:`tick` takes ``now``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from alerts.dispatcher import Dispatcher
from alerts.notifiers import HttpSession, Integration
from alerts.report_delivery import report_integrations, report_notifications
from ioc.availability import parse_period
from ioc.logs import fields
from ioc.reports.files import BuiltReport, ReportFiles, ReportRequest
from ioc.reports.links import link_key, signed_links
from ioc.reports.schedule import ScheduleConfig, due_run, next_fire
from ioc.store.base import Fence, NotLeaderError, StoreError
from ioc.store.report_runs import ReportRun, ReportRunStore
from ioc.tasks import cancel_and_wait, wait_woken

if TYPE_CHECKING:
    from service.config import Config

log = logging.getLogger("ioc.reports.schedule")

CHECK_SECONDS = 60.0      # how often leadership and due runs are rechecked
ON_TIME_SECONDS = 120.0   # a run queued later than this after its firing is a catch-up


class ReportScheduler:
    def __init__(self, config: Callable[[], Config], store: ReportRunStore,
                 integrations: Mapping[str, Sequence[Integration]], *,
                 leading: Callable[[], bool], fence: Callable[[], Fence | None],
                 after_enqueue: Callable[[], object], download_url: Callable[[], str],
                 clock: Callable[[], float],
                 prepare: Callable[[ScheduleConfig, str], Awaitable[object]] | None = None,
                 channels: Callable[[], Mapping[str, Sequence[Integration]]] | None = None
                 ) -> None:
        self.config = config
        self.store = store
        self.integrations = integrations
        self._channels = channels  # builds them again for the receivers a reload sets
        self.leading = leading
        self.fence = fence
        self.after_enqueue = after_enqueue
        self.download_url = download_url
        self.clock = clock
        self.prepare = prepare
        self._recorded: set[tuple[str, str]] = set()  # runs known to be in the store
        self._waiting: set[str] = set()  # schedules told to wait for a restart
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._failing = False

    def schedules(self) -> list[ScheduleConfig]:
        return list(self.config().reports.schedules)

    def schedule(self, name: str) -> ScheduleConfig:
        for schedule in self.schedules():
            if schedule.name == name:
                return schedule
        known = ", ".join(s.name for s in self.schedules()) or "none configured"
        raise ValueError(f"schedule {name!r}: not under reports.schedules (known: {known})")

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        await self.store.open()

    def start(self) -> None:
        """Always, schedules or not: a reload may add the first one."""
        if self._task is None:
            self._task = asyncio.create_task(self.run_forever(), name="ioc-report-schedule")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.store.close()

    def wake(self) -> None:
        self._wake.set()

    def receivers_changed(self) -> None:
        """A reload changed ``alerts.receivers``: report channels for them from now on.

        Runs already queued keep the channels they were queued for (the outbox still knows
        them); a run due for a schedule that waited for its receivers is queued at once."""
        if self._channels is None:
            return
        self.integrations = self._channels()
        self._waiting.clear()
        self.wake()

    async def run_forever(self) -> None:
        while True:
            now = self.clock()
            try:
                if self.leading():
                    await self.tick(now)
                if self._failing:
                    self._failing = False
                    log.info("scheduled reports: store reachable again")
            except NotLeaderError:
                pass  # lost the lead between the check and the write: the new leader sends
            except StoreError as exc:
                if not self._failing:
                    self._failing = True
                    log.warning("scheduled reports: store unavailable, retrying every minute",
                                extra=fields(error=str(exc)))
            except Exception:
                log.exception("scheduled reports: check failed")
            wait = self.next_wait(now)
            self._wake.clear()
            await wait_woken(self._wake, wait)

    def next_wait(self, now: float) -> float:
        tz = ZoneInfo(self.config().province.timezone)
        fires = [f for s in self.schedules() if (f := next_fire(s, tz, now)) is not None]
        soonest = min(fires, default=now + CHECK_SECONDS)
        return max(0.05, min(CHECK_SECONDS, soonest - now))

    # -- the work (``now`` passed in) ------------------------------------------------------

    async def tick(self, now: float) -> list[tuple[str, str]]:
        """Queue every schedule's due run not sent yet; the (schedule, period) pairs queued."""
        tz = ZoneInfo(self.config().province.timezone)
        queued = []
        for schedule in self.schedules():
            run = due_run(schedule, tz, now)
            if run is None or (run.schedule, run.period) in self._recorded:
                continue
            unknown = [r for r in schedule.receivers if r not in self.integrations]
            if unknown:  # a reload between the config and its channels: they come next
                if schedule.name not in self._waiting:
                    self._waiting.add(schedule.name)
                    log.warning("scheduled report waits for its receivers' channels",
                                extra=fields(schedule=schedule.name,
                                             receivers=",".join(unknown)))
                continue
            trigger = "schedule" if now - run.fired_at <= ON_TIME_SECONDS else "catch-up"
            if self.prepare is not None:
                if await self.store.run(run.schedule, run.period) is not None:
                    self._recorded.add((run.schedule, run.period))
                    continue
                # Built before it is queued: the outbox then sends from the cache at once,
                # instead of holding its round (and a page due in it) for the build.
                await self.prepare(schedule, run.period)
            if await self.queue(schedule, run.period, fired_at=run.fired_at, now=now,
                                trigger=trigger, fence=self.fence()):
                queued.append((run.schedule, run.period))
        return queued

    async def queue(self, schedule: ScheduleConfig, period: str, *, fired_at: float,
                    now: float, trigger: str, fence: Fence | None) -> bool:
        """Record the run and queue its notifications; False if it was recorded before."""
        config = self.config()
        rows = report_notifications(
            schedule, period, self.integrations, now=now, download_url=self.download_url(),
            title=config.service.title, timezone=config.province.timezone)
        run = ReportRun(schedule.name, period, fired_at, now, trigger, len(rows))
        queued = await self.store.queue(run, rows, fence=fence)
        self._recorded.add((schedule.name, period))
        if queued:
            log.info("scheduled report queued", extra=fields(
                schedule=schedule.name, period=period, trigger=trigger,
                notifications=len(rows)))
            result = self.after_enqueue()
            if asyncio.iscoroutine(result):
                await result
        return queued


def build_report_scheduler(config: Callable[[], Config], dispatcher: Dispatcher, *,
                           leading: Callable[[], bool], fence: Callable[[], Fence | None],
                           external_url: Callable[[], str],
                           clock: Callable[[], float],
                           files: ReportFiles | None = None) -> ReportScheduler:
    """The scheduler with a report channel for every channel of every receiver, registered
    with the dispatcher's outbox (which sends them on the leader)."""
    first = config()
    assert dispatcher.session is not None
    files = files or ReportFiles(config, clock)

    def sign(spec: Mapping[str, Any]) -> dict[str, str]:
        reports = config().reports
        if reports.link_secret is None:
            return {}
        return signed_links(spec, link_key(reports.link_secret.get_secret_value()), now=clock(),
                            ttl=reports.link_ttl)

    session = dispatcher.session

    def channels() -> dict[str, list[Integration]]:
        """A report channel for every channel of every receiver in force, known to the
        outbox (which keeps those of removed receivers for the runs queued to them)."""
        receivers = config().alerts.receivers
        built = report_integrations(receivers, {r.name for r in receivers}, session, files,
                                    sign)
        dispatcher.outbox.integrations.update(
            {i.id: i for items in built.values() for i in items})
        return built

    return ReportScheduler(
        config, ReportRunStore(first.storage.url), channels(), leading=leading, fence=fence,
        channels=channels,
        after_enqueue=dispatcher.outbox.after_enqueue,
        download_url=lambda: config().reports.public_url or external_url(), clock=clock,
        prepare=lambda s, period: files.get(
            ReportRequest(period, tuple(s.formats), s.lang, s.department)))


PERIOD_KINDS = {"previous_day": "day", "previous_week": "week", "previous_month": "month"}


async def send_by_hand(config: Config, name: str, period: str, *, now: float
                       ) -> tuple[bool, ReportRun | None]:
    """``ioc report --send NAME --period P``: queue that run as the schedule would.

    (True, run) when queued now; (False, the recorded run) when it was queued before. The
    running service's alert leader sends what is queued (its outbox looks at least every
    minute); nothing is sent from this process, so a report is never sent from two places.
    """
    tz = ZoneInfo(config.province.timezone)
    chosen = next((s for s in config.reports.schedules if s.name == name), None)
    if chosen is None:
        known = ", ".join(s.name for s in config.reports.schedules) or "none configured"
        raise ValueError(f"schedule {name!r}: not under reports.schedules (known: {known})")
    wanted = PERIOD_KINDS[chosen.period]
    if parse_period(period, tz).kind != wanted:
        raise ValueError(f"period {period!r}: schedule {name!r} reports on a {wanted} "
                         f"({chosen.period})")
    store = ReportRunStore(config.storage.url)
    await store.open()
    try:
        channels = report_integrations(config.alerts.receivers, set(chosen.receivers),
                                       HttpSession(), _NoSource())
        scheduler = ReportScheduler(
            lambda: config, store, channels, leading=lambda: False, fence=lambda: None,
            after_enqueue=lambda: None,
            download_url=lambda: config.reports.public_url or config.alerts.external_url
            or f"http://{config.service.listen}/", clock=lambda: now)
        queued = await scheduler.queue(chosen, period, fired_at=now, now=now,
                                       trigger="manual", fence=None)
        return queued, await store.run(name, period)
    finally:
        await store.close()


class _NoSource:
    """The CLI only queues; the service's own channels build and send."""

    async def get(self, request: ReportRequest) -> BuiltReport:
        raise RuntimeError("reports are built by the running service")
