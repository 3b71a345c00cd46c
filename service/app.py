"""Builds a running ioc from a validated Config and owns its start and stop.

Start order follows the data's way backwards (store first, scheduler last) so nothing produces
data before its consumer exists; stop runs forwards (scheduler first, store last) so every
sample collected before the stop is written.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, disable_created_metrics

from alerts.config import default_external_url
from alerts.dispatcher import build_dispatcher, delivery_settings
from alerts.engine import AlertEngine
from alerts.escalation import OncallMetrics
from alerts.event_counts import EventCounts
from alerts.model import AlertSink
from alerts.rules import Rule, RuleConfig, compile_rules, read_ranges
from collectors.jsonstats import JsonStatsCollector
from collectors.probe.session import open_probe_session
from collectors.registry import build_collector
from collectors.siem import SiemCollector
from collectors.simulator import start_simulator
from ioc import __version__, clock
from ioc.cache import SeriesCache
from ioc.config import AuthConfig
from ioc.config_types import CollectorConfig, split_listen
from ioc.event_loop import loop_name, watch_lag
from ioc.event_sink import EventSink
from ioc.incident_job import INCIDENT_SYNC_INTERVAL, IncidentJob
from ioc.incidents import Window
from ioc.indices import INDEX_METRICS, IndexExporter, IndexFeed
from ioc.leader import LeaderMetrics, election_dsn
from ioc.logs import fields
from ioc.membership import AutoShard, Change, MembershipMetrics
from ioc.metrics import (
    CacheStats,
    DeliveryMetrics,
    SampleExporter,
    ServiceMetrics,
    watch_store_partitions,
)
from ioc.pipeline import Pipeline
from ioc.poll_limits import PollLimits
from ioc.remote_write import RemoteWriter
from ioc.reports.collect import collect as collect_report
from ioc.reports.files import ReportFiles
from ioc.runner import PollRunner
from ioc.scheduler import Job, Scheduler, SchedulerMetrics
from ioc.sharding import AUTO, Ownership, Shard, parse_shard
from ioc.status import StatusBoard, TargetState
from ioc.store import SqlStore, open_store
from ioc.store.alert_state import AlertStateStore
from ioc.store.announcement import AnnouncementStore
from ioc.store.audit import AuditStore
from ioc.store.availability import HistoryStore
from ioc.store.base import StoreError
from ioc.store.events import EventStore
from ioc.store.incidents import IncidentStore
from ioc.store.retention import prune_loop
from ioc.store.rollup_job import RollupJob
from ioc.store.writer import StoreWriter
from ioc.syslog import SyslogReceiver
from ioc.tasks import cancel_and_wait
from ioc.trace import Trace
from service.alert_role import AlertRole, build_store_tail, keep_resolved_for
from service.config import Config
from service.reload import Reloader, ReloadResult
from service.report_schedule import build_report_scheduler
from service.shared_board import build_shared_board
from service.try_command import API_LIMIT, find_targets, try_target
from web.app import create_web_app
from web.client_limits import TrustMetrics, server_logger
from web.connections import ConnectionGuard, ConnectionSettings, GuardedAppRunner
from web.console_feed import ConsoleFeed
from web.context import WebContext
from web.forwarded import TrustedProxies
from web.keys import AUTH
from web.wall_feed import WallFeed

log = logging.getLogger("ioc.app")

# Metrics the wall reads a whole window of: its security panel counts events over the window
# (web/wall.py security_panel; from the event counts, or the sample cache when those are empty).
WALL_RANGES = ("ioc_security_events_total",)
DRAIN_GRACE = 5.0  # seconds an in-flight poll of a removed target may take to finish
# How far back the config's maintenance schedule is laid out for the incident ledger: an
# outage still open that began in a window this long ago stays planned when re-derived.
PLANNED_LOOKBACK = 90 * 86_400.0


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


class IocApp:
    def __init__(self, config: Config, *, listen: str | None = None) -> None:
        self.config = config
        host, port = split_listen(listen or config.service.listen)
        self.listen = Listen(host, port)
        # Where people reach ioc: links in notifications and the default rules' runbooks.
        self.external_url = self.external_url_of(config)
        # No `<name>_created` series: they double every counter's and histogram's series in
        # the text format and nothing reads them (a process-wide prometheus-client switch).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, __version__)
        self.cache = SeriesCache(config.collection.window, config.collection.window_points,
                                 max_series=config.collection.max_series)
        self.registry.register(SampleExporter(self.cache, exclude=INDEX_METRICS))
        self.registry.register(CacheStats(self.cache))
        self.registry.register(IndexExporter(config.indices))
        self.board = StatusBoard()
        self.store: SqlStore = open_store(config.storage.url,
                                          rollups=config.storage.rollups.enabled,
                                          auto_migrate=config.storage.auto_migrate)
        watch_store_partitions(self.registry, lambda: self.store.partition_count)
        rollups = config.storage.rollups
        self.rollups = RollupJob(
            self.store, self.registry, raw_retention=config.storage.retention,
            retention_5m=rollups.retention_5m, retention_1h=rollups.retention_1h,
            interval=rollups.interval, prune_interval=config.storage.prune_interval,
            clock=clock.now) if rollups.enabled else None
        self.writer = StoreWriter(
            self.store, self.registry,
            flush_interval=config.storage.flush_interval,
            batch_size=config.storage.batch_size,
            queue_limit=config.storage.queue_limit,
        )
        self.pipeline = Pipeline(self.cache, self.board, self.writer, self.metrics)
        self.pipeline.add_hook(IndexFeed(self.cache, config.indices, clock.now()))
        # Security events: probes' findings come through the pipeline, pushes and syslog
        # straight into the sink; everything is stored and counted once by (source, id).
        self.event_store = EventStore(config.storage.url)
        self.events = EventSink(self.event_store, self.registry,
                                queue_limit=config.events.queue_limit,
                                retention=config.events.retention,
                                prune_interval=config.storage.prune_interval,
                                window=config.events.window(clamp=True))
        self.pipeline.add_hook(self.events.on_poll)
        # Every sample also streams to the remote-write endpoints (none by default).
        self.remote_write = RemoteWriter(config.remote_write, self.registry,
                                         user_agent=f"ioc/{__version__}")
        self.pipeline.add_hook(self.remote_write.on_poll)
        self.syslog = (SyslogReceiver(config.events.syslog, self.events, self.registry)
                       if config.events.syslog.enabled else None)
        self.limits = PollLimits(config.collection.max_concurrency,
                                 config.collection.max_per_host)
        # With --shard auto targets move between instances: each keeps one grid everywhere.
        self.scheduler = Scheduler(anchored=config.collection.shard == AUTO)
        self.registry.register(SchedulerMetrics(self.scheduler))
        self.runners: dict[str, PollRunner] = {}
        self.department_names = {d.code: d.name for d in config.departments}
        self._session: aiohttp.ClientSession | None = None
        self._web_runner: web.AppRunner | None = None
        self._sim_runner: web.AppRunner | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._rollup_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._incident_task: asyncio.Task[None] | None = None
        self.started_at: float | None = None
        self.bound_port: int | None = None
        # With collection.shard i/N this instance polls only its share of the targets; the
        # others' are on its board too, read from the shared store (docs/scaling.md). With
        # auto the share follows the live members (ioc.membership): every target starts as
        # another's, and the first check of the membership starts this instance's share.
        membership_metrics = MembershipMetrics(self.registry)  # zero unless auto
        self.membership: AutoShard | None = None
        self.shard: Ownership
        if config.collection.shard == AUTO:
            self.membership = AutoShard(
                election_dsn(config.storage.url), lease=config.collection.shard_lease,
                shortest_interval=min((config.interval_of(c) for c in config.collectors),
                                      default=0.0),
                targets=lambda: [c.name for c in self.config.collectors],
                metrics=membership_metrics, shown_as=self.store.url_for_display)
            self.shard = self.membership
        else:
            self.shard = parse_shard(config.collection.shard)
        self.shared_board = build_shared_board(
            config, self.board, self.shard,
            lambda departments, now: self.wall.on_remote_update(departments, now))
        for collector_config in config.collectors:
            if self.shard.owns(collector_config.name):
                self.add_target(collector_config)
            else:
                self.add_remote_target(collector_config)
        self.metrics.targets.set(len(self.runners))
        # Alert delivery (the alert engine's sink): routing, grouping, durable outbox.
        delivery_metrics = DeliveryMetrics(self.registry)
        self.dispatcher = build_dispatcher(config, delivery_metrics, clock.now,
                                           external_url=self.external_url,
                                           oncall_metrics=OncallMetrics(self.registry),
                                           department_names=self.department_names)
        delivery_metrics.watch_unusable_silences(
            lambda: len(self.dispatcher.unusable_silences))
        # Alert rules read the sample windows and the security-event counts; until the first
        # poll of every target has come back after a start, a missing series is no recovery.
        self.event_counts = EventCounts(config.collection.window,
                                        config.collection.window_points)
        self.events.subscribe(self.event_counts)
        self.alert_sink: AlertSink = self.dispatcher
        # With PostgreSQL one instance, the alert leader, evaluates and sends; its store tail
        # adds what the other instances collected and every instance's events (docs/scaling.md).
        self.store_tail = build_store_tail(lambda: self.config, self.registry, self.shard,
                                           lambda: self.alerts.rules)
        tail = self.store_tail
        self.alerts = AlertEngine(
            compile_rules(list(config.alert_rules), self.department_names,
                          self.external_url),
            [self.cache, tail.samples, tail.event_counts.cache] if tail is not None
            else [self.cache, self.event_counts.cache], self.alert_sink,
            interval=config.alerts.evaluation_interval, registry=self.registry,
            store=AlertStateStore(config.storage.url),
            warmup=max((config.interval_of(c) + config.timeout_of(c)
                        for c in config.collectors), default=0.0),
            data_ready=self.first_polls_done,
            keep_resolved_for=keep_resolved_for(self.dispatcher.settings.route,
                                                config.alerts.evaluation_interval))
        self.keep_ranges(self.alerts.rules)
        self.alert_role = AlertRole(
            self.alerts, self.dispatcher, interval=config.alerts.evaluation_interval,
            metrics=LeaderMetrics(self.registry), tail=tail,
            storage_url=config.storage.url if tail is not None else None)
        # Trust: the audit log of writes, the web layer's refusal counters, config reloads.
        self.audit = AuditStore(config.storage.url)
        self.incidents = IncidentStore(config.storage.url)
        self.history = HistoryStore(config.storage.url)  # the public status page's bars
        self.incident_job = IncidentJob(
            self.incidents, interval=INCIDENT_SYNC_INTERVAL,
            leading=lambda: self.alert_role.leading, fence=lambda: self.alerts.fence,
            windows=self.incident_windows, clock=clock.now,
            late=self.store.ledger_late_writes)
        # Scheduled reports (docs/reports.md): queued on the alert leader, sent by its outbox.
        self.report_files = ReportFiles(lambda: self.config, clock.now)
        self.report_schedule = build_report_scheduler(
            lambda: self.config, self.dispatcher, leading=lambda: self.alert_role.leading,
            fence=lambda: self.alerts.fence, external_url=lambda: self.external_url,
            clock=clock.now, files=self.report_files)
        self.trust = TrustMetrics(self.registry)
        # The edges of the web server: who is a proxy, and how long and how many connections
        # any client may hold (web/forwarded.py, web/connections.py).
        self.proxies = TrustedProxies(config.service.trusted_proxies)
        self.connections = ConnectionGuard(ConnectionSettings.from_config(config.service),
                                           self.registry, self.proxies)
        self.reloader = Reloader(self, self.registry, clock.now)
        # The web layer sees the service through this context alone; the wall's feed
        # subscribes through it to the pipeline, the event sink (after the event counts,
        # which its security panel reads) and alert delivery.
        self.web = WebContext(
            config=lambda: self.config, clock=clock.now, monotonic=clock.monotonic,
            board=self.board, cache=self.cache, event_counts=self.event_counts.cache,
            department_names=self.department_names, samples=self.store, events=self.events,
            audit=self.audit, incidents=self.incidents, report=self._report,
            announcements=AnnouncementStore(config.storage.url),
            alerts=self.dispatcher, registry=self.registry, trust=self.trust,
            polling=lambda: self.scheduler.running, shard_ready=self._shard_ready,
            proxies=self.proxies, try_target=self.try_target, reload=self.reload,
            last_reload=lambda: self.reloader.last, add_poll_hook=self.pipeline.add_hook,
            rule_names=lambda: [rule.name for rule in self.alerts.rules],
            history=self.history, report_files=self.report_files.get)
        self.wall = WallFeed(self.web, epoch=format(int(clock.now() * 1000), "x"))
        self.wall.attach()
        self.console = ConsoleFeed(self.web, self.wall.stream.epoch, self.wall.templates,
                                   lambda: self.wall.announcement)
        self.console.attach()
        self.wall.announcement_listeners.append(self.console.on_announcement)

    def incident_windows(self) -> list[Window]:
        """Maintenance that marks an incident planned: windows operators announced and the
        config's schedule, laid out over the span an open outage's start may lie in."""
        now = clock.now()
        return [Window(w.department, w.starts_at, w.ends_at)
                for w in self.dispatcher.windows.values()] + \
            self.config.maintenance_spans(now - PLANNED_LOOKBACK, now + 86_400.0)

    def first_polls_done(self) -> bool:
        """Every target this instance polls has finished a poll since start (the alert
        engine's warm-up waits for it; other shards' targets arrive through the store tail)."""
        return all(t.last_check is not None for t in self.board.targets.values() if not t.remote)

    def keep_ranges(self, rules: Sequence[Rule]) -> None:
        """Keep in memory the ranges of points the rules (and the wall) read, and only the
        latest point of every other metric (ioc.cache); again after each reload of the rules.

        Both sample caches: this instance's and, on an alert leader with shards, the store
        tail's copy of the others'. The event counts keep their whole window.
        """
        ranges = read_ranges(rules)
        for metric in WALL_RANGES:
            ranges[metric] = self.config.collection.window
        self.cache.set_history(ranges)
        if self.store_tail is not None:
            self.store_tail.samples.set_history(ranges)

    def add_target(self, collector_config: CollectorConfig) -> PollRunner:
        """Build a target's runner and show it on the status board (at start and on reload)."""
        collector = build_collector(collector_config)
        if isinstance(collector, SiemCollector):
            collector.bind(self.events)
        if isinstance(collector, JsonStatsCollector):
            collector.bind_units(frozenset(d.code for d in self.config.departments),
                                 self.metrics.unknown_units.labels(
                                     collector=collector_config.name).inc)
        runner = PollRunner(
            collector,
            interval=self.config.interval_of(collector_config),
            timeout=self.config.timeout_of(collector_config),
            limits=self.limits, pipeline=self.pipeline, metrics=self.metrics,
            session=self.session,
        )
        self.runners[runner.name] = runner
        self.board.register(TargetState(
            name=runner.name, department=collector_config.department, kind=runner.kind,
            interval=runner.interval, shard=self._own_index()))
        return runner

    async def _report(self, period: str, now: float,
                      department: str | None) -> dict[str, Any]:
        """A period's report as data, from the config in force (``GET /api/v1/reports``)."""
        return await collect_report(self.config, period, now=now, department=department)

    def _shard_ready(self) -> str | None:
        """With ``--shard auto``: ``ok`` while a proven member, else why not (``/readyz``)."""
        return self.membership.ready if self.membership is not None else None

    def _own_index(self) -> int | None:
        """What the status API shows as this instance: its shard index or member slot."""
        if isinstance(self.shard, Shard):
            return self.shard.index if self.shard.sharded else None
        return self.shard.slot if isinstance(self.shard, AutoShard) else None

    def job(self, runner: PollRunner) -> Job:
        """The scheduler's job of a runner; with ``--shard auto`` each poll first checks the
        membership's fence (owned, view proven within one lease) and is skipped otherwise."""
        membership = self.membership
        if membership is None:
            return Job(runner.name, runner.interval, runner.poll)
        name, poll = runner.name, runner.poll

        async def fenced(scheduled_at: float) -> object:
            if not membership.may_poll(name, clock.now()):
                return None
            return await poll(scheduled_at)

        return Job(name, runner.interval, fenced)

    async def _ownership_changed(self, change: Change) -> None:
        """Apply a change of the member set: stop polling what another member now owns (its
        cached series go to the alert leader's store tail), start what this instance now owns
        from the state its previous owner stored, and show every target's owner."""
        by_name = {c.name: c for c in self.config.collectors}
        tail = self.store_tail.samples if self.store_tail is not None else None
        for name in change.lost:
            if name in self.scheduler.job_names():
                self.scheduler.remove_job(name)
        await asyncio.gather(*(self.scheduler.drain(name, DRAIN_GRACE)
                               for name in change.lost))
        for name in change.lost:
            runner = self.runners.pop(name, None)
            if runner is not None:
                await runner.close()
            moved = self.cache.take_target(name)  # /metrics exports only what is polled here
            if tail is not None and self.alert_role.leading:  # its rules read it on
                tail.add(moved)
            self._drop_target_metrics(name)
            state = self.board.targets.get(name)
            if state is not None:
                state.remote = True
            elif name in by_name:
                self.add_remote_target(by_name[name])
        gained = [by_name[name] for name in sorted(change.gained) if name in by_name]
        if gained and self.shared_board is not None:
            try:  # the last polls their previous owner stored, to start from
                await self.shared_board.poll(clock.now())
            except StoreError as exc:
                log.warning("taken-over targets start without their stored state",
                            extra=fields(error=str(exc)))
        started = []
        for collector_config in gained:
            name = collector_config.name
            if name in self.runners:
                continue
            previous = self.board.targets.get(name)
            runner = self.add_target(collector_config)  # the board keeps `previous`
            if previous is not None:
                previous.remote = False
                runner.resume(up=previous.up, failures=previous.consecutive_failures,
                              successes=previous.consecutive_successes,
                              since=previous.last_check)
            if tail is not None:
                self.cache.add(tail.take_target(name))
            started.append(runner)
        if started:
            self.scheduler.add_jobs([self.job(r) for r in started])
        own = self._own_index()
        for state in self.board.targets.values():
            state.shard = self.shard.owner_of(state.name) if state.remote else own
        self.metrics.targets.set(len(self.runners))
        if change.lost or started:
            self.wall.forget_target_index()

    def add_remote_target(self, collector_config: CollectorConfig) -> None:
        """Show a target another shard polls (its state comes from the shared store)."""
        if self.shared_board is None:
            return
        name = collector_config.name
        self.board.register(TargetState(
            name=name, department=collector_config.department, kind=collector_config.type,
            interval=self.config.interval_of(collector_config),
            shard=self.shard.owner_of(name), remote=True))

    async def try_target(self, name: str) -> Trace:
        """Poll target ``name`` once, now, outside the schedule, and return its trace.

        A fresh collector on this instance's HTTP session; nothing it sees reaches the
        pipeline (docs: ``ioc try``). UnknownTarget when the config has no such target.
        """
        block = find_targets(self.config, [name])[0]
        return await try_target(block, self.config, self.session(), clock.now(),
                                limit=API_LIMIT)

    # -- what a reload changes (service.reload decides, these apply) ------------------

    def set_config(self, config: Config) -> None:
        """The config in force from now on (what ``config()`` of the web context returns)."""
        self.config = config

    def set_departments(self, names: Mapping[str, str]) -> None:
        """Department code -> name. The app keeps one mapping, which the status API, the wall
        and delivery all read, so a rename reaches all of them at once."""
        self.department_names.clear()
        self.department_names.update(names)

    def set_rules(self, rules: Sequence[tuple[RuleConfig, str]],
                  now: float) -> tuple[int, int, int]:
        """Swap the alert rules (each with where it was defined) between evaluation cycles,
        compiled with the department names in force; returns how many were kept, added and
        removed."""
        compiled = compile_rules(list(rules), self.department_names,
                                 self.external_url)  # alerts.external_url needs a restart
        counts = self.alerts.replace_rules(compiled, now)
        self.keep_ranges(compiled)  # a metric a new rule reads starts its window now
        return counts

    async def set_delivery(self, config: Config, now: float) -> None:
        """Apply a reload's receivers, routing tree, inhibit rules and maintenance windows.

        The report channels first, without waiting: a scheduled run checked meanwhile finds
        channels for every receiver its schedule names."""
        self.report_schedule.receivers_changed()
        assert self.dispatcher.session is not None
        settings = delivery_settings(config, self.dispatcher.session,
                                     external_url=self.external_url,
                                     department_names=self.department_names)
        await self.dispatcher.reconfigure(settings, now)
        self.alerts.keep_resolved_for = keep_resolved_for(settings.route,
                                                          config.alerts.evaluation_interval)

    def start_targets(self, configs: Sequence[CollectorConfig]) -> list[PollRunner]:
        """Add targets to the app: this instance's share polls (at once when the scheduler
        runs), the other shards' are shown from the shared store."""
        started = [self.add_target(c) for c in configs if self.shard.owns(c.name)]
        for collector_config in configs:
            if not self.shard.owns(collector_config.name):
                self.add_remote_target(collector_config)
        if started and self.scheduler.running:
            self.scheduler.add_jobs([self.job(r) for r in started])
        self._targets_changed()
        return started

    async def remove_target(self, name: str, *, drop_series: bool) -> None:
        """Stop polling a target (an in-flight poll may finish within ``DRAIN_GRACE``) and
        take it off the board; with ``drop_series`` its series leave the cache and
        ``/metrics`` too (removed, or its labels changed)."""
        runner = self.runners.pop(name, None)
        if name in self.scheduler.job_names():
            self.scheduler.remove_job(name)
        await self.scheduler.drain(name, DRAIN_GRACE)
        if runner is not None:
            await runner.close()
        self.board.remove(name)
        if drop_series:
            self.cache.drop_target(name)
            self._drop_target_metrics(name)
        self._targets_changed()

    def _drop_target_metrics(self, name: str) -> None:
        # ioc_collector_last_success_timestamp_seconds went with the board entry. The target's
        # failure series, under whichever department it had: read from the counter itself.
        failures = self.metrics.failures
        keys = {(s.labels["department"], s.labels["reason"])
                for family in failures.collect() for s in family.samples
                if s.labels.get("target") == name and s.name.endswith("_total")}
        for department, reason in keys:
            try:
                failures.remove(name, department, reason)
            except KeyError:
                pass

    def _targets_changed(self) -> None:
        self.metrics.targets.set(len(self.runners))
        self.wall.forget_target_index()

    async def reload(self, config: Config | None = None) -> ReloadResult:
        """Re-read the config file (SIGHUP, ``POST /-/reload``) and apply it: service.reload."""
        return await self.reloader.reload(config)

    def update_auth(self, auth: AuthConfig) -> None:
        """Swap the web layer's tokens after a reload (before start there is nothing to do)."""
        if self._web_runner is None:
            return
        self._web_runner.app[AUTH].replace(
            ((t.name, t.token.get_secret_value(), t.roles) for t in auth.tokens),
            anonymous_roles=auth.anonymous)
        # Sessions and wall cookies are checked against the new tokens on their next request;
        # a stream already open was authorised under the old ones, so every screen reconnects
        # (resuming from the replay ring) and is checked again.
        self.wall.stream.close_all()
        self.console.stream.close_all()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the HTTP client session is not open (app not started)")
        return self._session

    def external_url_of(self, config: Config, port: int | None = None) -> str:
        """``alerts.external_url``, or the address ioc serves on (``--listen`` included)."""
        if config.alerts.external_url:
            return config.alerts.external_url
        url, wildcard = default_external_url(self.listen.host, port or self.listen.port,
                                             socket.gethostname())
        if wildcard and port is None:
            log.warning("alerts.external_url is not set and ioc listens on every address; "
                        "links in notifications use this machine's name: set "
                        "alerts.external_url to the address people open",
                        extra=fields(listen=f"{self.listen.host}:{self.listen.port}",
                                     external_url=url))
        return url

    @property
    def url(self) -> str:
        host = self.listen.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.bound_port or self.listen.port}"

    async def start(self) -> None:
        cfg = self.config
        await self.store.open()
        self.writer.start()
        self.remote_write.start()
        await self.event_store.open()
        self.events.start()
        await self.wall.open()  # the announcement operators set
        await self.alert_role.start()  # delivery and, on the alert leader, evaluation
        await self.audit.open()
        await self.incidents.open()
        await self.history.open()
        self._incident_task = asyncio.create_task(self.incident_job.run_forever(),
                                                  name="ioc-incidents")
        await self.report_schedule.open()
        self.report_schedule.start()
        if self.shared_board is not None:
            await self.shared_board.start()
        self._prune_task = asyncio.create_task(
            prune_loop(self.store, cfg.storage.retention, cfg.storage.prune_interval),
            name="ioc-retention")
        self._lag_task = asyncio.create_task(watch_lag(self.metrics.loop_lag.observe),
                                             name="ioc-loop-lag")
        if self.rollups is not None:
            self._rollup_task = asyncio.create_task(self.rollups.run_forever(),
                                                    name="ioc-rollups")
        if cfg.simulator.enabled:
            sim_host, sim_port = split_listen(cfg.simulator.listen)
            token = cfg.simulator.token.get_secret_value() if cfg.simulator.token else None
            self._sim_runner = await start_simulator(
                sim_host, sim_port, token=token or None,
                latency_scale=cfg.simulator.latency_scale,
                portal_time_scale=cfg.simulator.portal_time_scale,
                portal_min_monthly=cfg.simulator.portal_min_monthly)
        # A fresh connection per check (that is what uptime means), traced for phase timings.
        self._session = open_probe_session(
            limit=cfg.collection.max_concurrency, limit_per_host=cfg.collection.max_per_host,
            keepalive=False, user_agent=f"ioc/{__version__}")
        self._web_runner = GuardedAppRunner(
            create_web_app(self.web, self.wall, self.console), self.connections, access_log=None,
            handle_signals=False, shutdown_timeout=2.0,
            logger=server_logger(self.trust, clock.monotonic),
            # request line and header caps: an oversized one gets 400 before any handler
            max_line_size=cfg.service.max_line_size,
            max_field_size=cfg.service.max_field_size)
        await self._web_runner.setup()
        # The accept queue holds a burst as large as the connection cap: with aiohttp's 128,
        # 2,000 connections reopened at once (half-open ones closed by the head timeout
        # together) overflow it, and every client behind them waits for SYN retries (1 s,
        # 3 s): measured as a 2.7 s first render of the wall (bench/edges.py). The kernel
        # caps it at net.core.somaxconn.
        site = web.TCPSite(self._web_runner, self.listen.host, self.listen.port,
                           backlog=cfg.service.max_connections)
        await site.start()
        addresses = self._web_runner.addresses
        if addresses:
            self.bound_port = int(addresses[0][1])
        if self.listen.port == 0 and self.bound_port:  # a port chosen by the system
            self.external_url = self.external_url_of(cfg, self.bound_port)
            self.dispatcher.settings = replace(self.dispatcher.settings,
                                               external_url=self.external_url)
        if self.syslog is not None:
            await self.syslog.start()
        self.scheduler.add_jobs([self.job(r) for r in self.runners.values()])
        self.scheduler.start()
        if self.membership is not None:  # joins, and starts this instance's share
            self.membership.on_change = self._ownership_changed
            await self.membership.start()
        self.started_at = clock.now()
        log.info("ioc started", extra=fields(
            url=self.url, targets=len(self.runners), shard=str(self.shard),
            store=self.store.url_for_display, event_loop=loop_name()))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop polling, finish in-flight polls, flush every collected sample, close."""
        if self.membership is not None:
            await self.membership.halt()  # no change applied while the polls wind down
        await self.scheduler.shutdown(grace=grace)
        if self.membership is not None:
            await self.membership.close()  # the others take this instance's share now
        await self.alert_role.stop()  # a leader saves its state, then lets another take over
        if self._web_runner is not None:
            await self._web_runner.cleanup()
            self._web_runner = None
        if self.syslog is not None:
            await self.syslog.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        for runner in self.runners.values():
            await runner.close()
        await cancel_and_wait(self._prune_task, self._rollup_task, self._lag_task,
                              self._incident_task)
        self._prune_task = self._rollup_task = self._lag_task = self._incident_task = None
        if self.shared_board is not None:
            await self.shared_board.stop()
        await self.writer.stop()
        await self.remote_write.stop()
        await self.events.stop()
        await self.event_store.close()
        await self.report_schedule.stop()
        await self.dispatcher.stop()
        await self.wall.aclose()
        await self.audit.close()
        await self.incidents.close()
        await self.history.close()
        await self.store.close()
        if self._sim_runner is not None:
            await self._sim_runner.cleanup()
            self._sim_runner = None
        log.info("ioc stopped")
