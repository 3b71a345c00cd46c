"""What the web layer may use of the running service: one small typed object, not the app.

The composition root (``service.app``) builds a :class:`WebContext` and hands it to
``web.app.create_web_app``; every handler and the wall feed reach the service only through
it. The web layer so depends on the core's types and on the few operations named here, never
on how the service is wired, and a test can build a web app around a context of its own.

Parts that change on reload are reached through calls (``config()``, ``department_names``
is the one mapping reload updates in place); the rest is built once at start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from alerts.acks import Ack
    from alerts.dispatcher import DeliverySettings
    from alerts.escalation import Escalator
    from alerts.model import Alert
    from alerts.silences import Silence
    from ioc.cache import SeriesCache
    from ioc.config import (
        AuthConfig,
        DepartmentConfig,
        ProvinceConfig,
        ServiceConfig,
        WallConfig,
    )
    from ioc.events_config import EventsConfig
    from ioc.metrics_config import MetricsConfig
    from ioc.model import Event, Series
    from ioc.pipeline import PollOutcome
    from ioc.reports.files import BuiltReport, ReportRequest
    from ioc.reports.schedule import ReportsConfig
    from ioc.status import StatusBoard
    from ioc.status_page_config import StatusPageConfig
    from ioc.store.alert_delivery import DeliveryStore
    from ioc.store.announcement import AnnouncementStore
    from ioc.store.audit import AuditStore
    from ioc.store.availability import HistoryStore
    from ioc.store.events import EventStore
    from ioc.store.incidents import IncidentStore
    from ioc.store.maintenance_store import OperatorWindow
    from ioc.trace import Trace
    from web.client_limits import TrustMetrics
    from web.forwarded import TrustedProxies


class SampleReader(Protocol):
    """What the web layer reads of the sample store (``ioc.store.SqlStore``): range queries
    for the API and the wall's figures, and the readiness ping."""

    async def query_range(self, metric: str, matchers: Mapping[str, str], start: float,
                          end: float, step: float) -> list[Series]: ...
    async def ping(self) -> None: ...


class WebConfig(Protocol):
    """The sections of the config in force that the web layer reads."""

    @property
    def service(self) -> ServiceConfig: ...
    @property
    def province(self) -> ProvinceConfig: ...
    @property
    def departments(self) -> Sequence[DepartmentConfig]: ...
    @property
    def auth(self) -> AuthConfig: ...
    @property
    def wall(self) -> WallConfig: ...
    @property
    def events(self) -> EventsConfig: ...
    @property
    def metrics(self) -> MetricsConfig: ...
    @property
    def status_pages(self) -> Sequence[StatusPageConfig]: ...
    @property
    def reports(self) -> ReportsConfig: ...


class AlertDesk(Protocol):
    """The alert delivery the API, the console and the wall read and write (the dispatcher).

    ``subscribe`` takes a callable run after every change of what ``view`` returns: an
    evaluation's result, an operator's silence, ack or window, a re-read of the shared
    tables; ``next_change`` is when time alone changes it next (a silence or a window
    starting or ending, an ack running out).
    """

    @property
    def settings(self) -> DeliverySettings: ...
    @property
    def store(self) -> DeliveryStore: ...
    @property
    def alerts(self) -> Mapping[str, Alert]: ...
    @property
    def silences(self) -> Mapping[str, Silence]: ...
    @property
    def windows(self) -> Mapping[str, OperatorWindow]: ...
    @property
    def escalator(self) -> Escalator | None: ...
    @property
    def clock(self) -> Callable[[], float]: ...

    def view(self, now: float) -> list[dict[str, Any]]: ...
    def maintenance_now(self, now: float) -> dict[str, str]: ...
    def maintenance_view(self, now: float) -> list[dict[str, Any]]: ...
    def subscribe(self, listener: Callable[[], None]) -> None: ...
    def next_change(self, now: float) -> float | None: ...

    async def acknowledge(self, fingerprint: str, *, by: str, comment: str, now: float,
                          duration: float, channel: str = "api",
                          nonce: tuple[str, str] | None = None) -> Ack | None: ...
    async def add_silence(self, matchers: Iterable[str], *, starts_at: float, ends_at: float,
                          created_by: str, comment: str, now: float) -> Silence: ...
    async def expire_silence(self, silence_id: str, *, by: str,
                             now: float) -> Silence | None: ...
    async def add_maintenance(self, *, department: str, starts_at: float, ends_at: float,
                              comment: str, created_by: str, now: float) -> OperatorWindow: ...
    async def end_maintenance(self, window_id: str, *, by: str,
                              now: float) -> OperatorWindow | None: ...


class EventIntake(Protocol):
    """The security-event sink: pushed events go in, stored batches come out to listeners."""

    @property
    def store(self) -> EventStore: ...

    def offer(self, events: Sequence[Event]) -> bool: ...
    def offer_durable(self, events: Sequence[Event]) -> asyncio.Future[None] | None: ...
    def count_out_of_window(self, ingest: str, sides: Mapping[str, int]) -> None: ...
    def subscribe(self, listener: Callable[[Sequence[Event]], None]) -> None: ...


class ReloadOutcome(Protocol):
    """What a config reload did (``service.reload.ReloadResult``)."""

    @property
    def ok(self) -> bool: ...
    @property
    def errors(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WebContext:
    """Everything the web layer uses of the service (see the module's docstring)."""

    config: Callable[[], WebConfig]              # the config in force, after any reload
    clock: Callable[[], float]                   # unix seconds (ioc.clock.now in service)
    monotonic: Callable[[], float]               # for intervals (ioc.clock.monotonic)
    board: StatusBoard
    cache: SeriesCache                           # latest samples and the rules' windows
    event_counts: SeriesCache                    # security-event counts over the window
    department_names: Mapping[str, str]          # code -> name; reload updates it in place
    samples: SampleReader                        # range queries and the readiness ping
    events: EventIntake
    audit: AuditStore
    incidents: IncidentStore                     # the incident ledger and its notes
    # a period's report as data (ioc.reports.collect; raises ValueError, StoreError)
    report: Callable[[str, float, str | None], Awaitable[dict[str, Any]]]
    announcements: AnnouncementStore
    alerts: AlertDesk
    registry: CollectorRegistry
    trust: TrustMetrics
    polling: Callable[[], bool]                  # whether the scheduler runs (readiness)
    shard_ready: Callable[[], str | None]        # --shard auto's readiness; None otherwise
    proxies: TrustedProxies                      # whose X-Forwarded-For is believed
    try_target: Callable[[str], Awaitable[Trace]]  # POST /api/v1/try/{name}: one poll now
    reload: Callable[[], Awaitable[ReloadOutcome]]
    last_reload: Callable[[], ReloadOutcome | None]
    add_poll_hook: Callable[[Callable[[PollOutcome], None]], None]
    # the names of the alert rules in force (the console's rule lists name rules that have
    # not fired yet); none when the service has no rules
    rule_names: Callable[[], Sequence[str]] = lambda: ()
    # the poll history the public status page's availability bars read (None: no bars)
    history: HistoryStore | None = None
    # a report's files, built once and kept a while for every asker (the scheduled report's
    # channels and its signed download links); None: links are not served
    report_files: Callable[[ReportRequest], Awaitable[BuiltReport]] | None = None
