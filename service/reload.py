"""Hot reload: re-read the config file and apply what changed to a running IocApp.

This module decides what changed (pure functions over two configs); the app's own operations
(``set_departments``, ``remove_target``, ``start_targets``, ``set_rules``, ``update_auth``)
apply it, so nothing here reaches into the app's parts.

SIGHUP and ``POST /-/reload`` both land here. A new config that does not validate is refused
whole: its errors are logged and kept for the API, ``ioc_config_last_reload_successful`` drops
to 0 and the old config keeps running — the same contract as Prometheus, so the same alert
(``ioc_config_last_reload_successful == 0``) catches a bad edit.

A valid config is applied without a restart where that is safe, and nothing held in memory
or in the store is dropped (history, alert state, the outbox, silences, acks):

* targets (``collectors``, and ``collection.interval``/``timeout`` through them): added ones
  start, removed ones stop (their job is removed, an in-flight poll is let finish, their series
  leave the cache, the status board and ``/metrics``), changed ones restart with a new job
  (with ``collection.shard``, other shards' targets are only shown: added to or removed from
  the board);
* alert rules: swapped between evaluation cycles; unchanged rules keep their alerts; the
  cache keeps windows for the metrics the new rules read (ioc.cache): a metric only a new rule
  reads has kept its latest point alone so far, and its window fills from then on, while a
  metric no rule reads any more keeps only its latest point;
* alert delivery: receivers, the routing tree, inhibit rules and the config's maintenance
  windows (unless ``alerts.oncall`` changed with them, which needs a restart). Notifications
  already queued are still sent through the channels they were queued for; groups are formed
  again only when the tree changed, and the notification log keeps them from re-sending what
  was already told; scheduled reports get channels for new receivers at once;
* department names, auth tokens and anonymous roles, the log level.

Everything else (the store, the listen address, the simulator, the event queues, the wall's
views, on-call teams and escalation) is built once at start. A change there is reported as
"restart required" and the running value is kept, so ``app.config`` always says what runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Gauge

from ioc.logs import SecretMasker, fields
from service.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from alerts.rules import RuleConfig
    from ioc.config import AuthConfig
    from ioc.config_types import CollectorConfig
    from ioc.status import StatusBoard

log = logging.getLogger("ioc.reload")

# Sections built once at start: a change is reported, not applied.
RESTART_SECTIONS = ("service", "storage", "simulator", "events", "wall", "metrics",
                    "province", "indices")
LIVE_COLLECTION_KEYS = frozenset({"interval", "timeout"})
LIVE_ALERTS_KEYS = frozenset({"rules", "rule_files", "default_rules"})
# Delivery: live too, unless alerts.oncall changed with them (a route may name an on-call
# team, and the teams in force only change at a restart).
DELIVERY_KEYS = frozenset({"route", "receivers", "inhibit_rules", "maintenance"})


def live_alerts_keys(old: Config, new: Config) -> frozenset[str]:
    """The ``alerts`` keys a reload applies (pure)."""
    if old.alerts.oncall != new.alerts.oncall:
        return LIVE_ALERTS_KEYS
    return LIVE_ALERTS_KEYS | DELIVERY_KEYS


class Reloadable(Protocol):
    """The operations a reload applies its decisions through (``service.app.IocApp``)."""

    @property
    def config(self) -> Config: ...
    @property
    def board(self) -> StatusBoard: ...

    def set_config(self, config: Config) -> None: ...
    def set_departments(self, names: Mapping[str, str]) -> None: ...
    def set_rules(self, rules: Sequence[tuple[RuleConfig, str]],
                  now: float) -> tuple[int, int, int]: ...
    def start_targets(self, configs: Sequence[CollectorConfig]) -> Sequence[object]: ...
    async def remove_target(self, name: str, *, drop_series: bool) -> None: ...
    def update_auth(self, auth: AuthConfig) -> None: ...
    async def set_delivery(self, config: Config, now: float) -> None: ...


class ReloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.successful = Gauge(
            "ioc_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful (1) or not (0).",
            registry=registry)
        self.success_time = Gauge(
            "ioc_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (the start counts).",
            registry=registry)
        self.restart_required = Gauge(
            "ioc_config_restart_required",
            "1 when the file holds changes that only a restart applies.", registry=registry)


@dataclass
class ReloadResult:
    ok: bool
    at: float
    errors: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)
    delivery: list[str] = field(default_factory=list)  # alerts.* delivery keys applied
    restart_required: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TargetDiff:
    added: list[str]
    removed: list[str]
    changed: list[str]


def diff_targets(old: Config, new: Config) -> TargetDiff:
    """Which targets a reload adds, removes and restarts (pure)."""
    before = {c.name: (c, old.interval_of(c), old.timeout_of(c)) for c in old.collectors}
    after = {c.name: (c, new.interval_of(c), new.timeout_of(c)) for c in new.collectors}
    return TargetDiff(
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        changed=[n for n in after if n in before and after[n] != before[n]])


def restart_required(old: Config, new: Config) -> list[str]:
    """The config paths whose change needs a restart (pure)."""
    out = [name for name in RESTART_SECTIONS if getattr(old, name) != getattr(new, name)]
    for key in type(old.collection).model_fields:
        if key not in LIVE_COLLECTION_KEYS and \
                getattr(old.collection, key) != getattr(new.collection, key):
            out.append(f"collection.{key}")
    live = live_alerts_keys(old, new)
    for key in type(old.alerts).model_fields:
        if key not in live and getattr(old.alerts, key) != getattr(new.alerts, key):
            out.append(f"alerts.{key}")
    return out


def effective_config(old: Config, new: Config) -> Config:
    """The new config with every restart-only part kept as it runs now."""
    kept: dict[str, Any] = {name: getattr(old, name) for name in RESTART_SECTIONS}
    kept["collection"] = old.collection.model_copy(update={
        k: getattr(new.collection, k) for k in LIVE_COLLECTION_KEYS})
    kept["alerts"] = old.alerts.model_copy(update={
        k: getattr(new.alerts, k) for k in live_alerts_keys(old, new)})
    # Old secrets stay masked in the log too: they may still be in messages being written.
    kept["secrets"] = tuple(sorted(set(old.secrets) | set(new.secrets), key=len, reverse=True))
    return dataclasses.replace(new, **kept)


class Reloader:
    """One per app: serialises reloads and remembers the last outcome."""

    def __init__(self, app: Reloadable, registry: CollectorRegistry,
                 now: Callable[[], float]) -> None:
        self.app = app
        self.now = now
        self.metrics = ReloadMetrics(registry)
        self.metrics.successful.set(1)
        self.metrics.success_time.set(now())
        self.last: ReloadResult | None = None
        self._lock = asyncio.Lock()

    async def reload(self, config: Config | None = None) -> ReloadResult:
        """Re-read the config file (or take ``config``) and apply it; never raises on bad input."""
        async with self._lock:
            now = self.now()
            try:
                new = config if config is not None else load_config(self.app.config.source)
            except ConfigError as err:
                result = ReloadResult(ok=False, at=now, errors=[str(i) for i in err.issues])
                self.metrics.successful.set(0)
                log.error("config reload refused; the running config is kept", extra=fields(
                    source=err.source, errors=len(err.issues), first=result.errors[0]
                    if result.errors else ""))
                for issue in result.errors:
                    log.error("config error", extra=fields(issue=issue))
                self.last = result
                return result
            result = await apply(self.app, new, now)
            self.metrics.successful.set(1)
            self.metrics.success_time.set(now)
            self.metrics.restart_required.set(1 if result.restart_required else 0)
            self.last = result
            log.info("config reloaded", extra=fields(
                added=len(result.added), removed=len(result.removed),
                changed=len(result.changed), delivery=",".join(result.delivery) or "none",
                restart_required=",".join(result.restart_required) or "none"))
            if result.restart_required:
                log.warning("config changes need a restart to take effect",
                            extra=fields(sections=",".join(result.restart_required)))
            return result


async def apply(app: Reloadable, new: Config, now: float) -> ReloadResult:
    """Apply a validated config to a running app; returns what was done."""
    old = app.config
    effective = effective_config(old, new)
    diff = diff_targets(old, effective)
    result = ReloadResult(ok=True, at=now, added=diff.added, removed=diff.removed,
                          changed=diff.changed, restart_required=restart_required(old, new))

    # Names first: the targets and rules below read them.
    names = {d.code: d.name for d in effective.departments}
    app.set_departments(names)
    app.set_config(effective)
    delivery = [k for k in sorted(DELIVERY_KEYS)
                if getattr(effective.alerts, k) != getattr(old.alerts, k)]
    if delivery:
        await app.set_delivery(effective, now)
        result.delivery = delivery

    last_success: dict[str, float] = {}
    for name in diff.removed + diff.changed:
        drop = name in diff.removed or _labels_changed(old, effective, name)
        state = app.board.targets.get(name)
        if not drop and state is not None and state.last_success is not None:
            last_success[name] = state.last_success
        await app.remove_target(name, drop_series=drop)
    by_name = {c.name: c for c in effective.collectors}
    # With collection.shard i/N only this instance's share is started, as at start-up; with
    # auto, what it owns now (a new target it wins is started by the membership's next check).
    app.start_targets([by_name[name] for name in diff.added + diff.changed])
    # A target whose series are kept keeps its last success too (on the board, and so in
    # ioc_collector_last_success_timestamp_seconds): a target down while its URL is fixed
    # still shows since when.
    for name, ts in last_success.items():
        state = app.board.targets.get(name)
        if state is not None and not state.remote and state.last_success is None:
            state.last_success = ts

    if effective.alert_rules != old.alert_rules or names != {d.code: d.name
                                                             for d in old.departments}:
        kept, added, removed = app.set_rules(effective.alert_rules, now)
        result.rules = {"kept": kept, "added": added, "removed": removed}

    if effective.auth != old.auth:
        app.update_auth(effective.auth)
    if effective.logging.level != old.logging.level:
        logging.getLogger().setLevel(effective.logging.level.upper())
    _update_log_secrets(effective.secrets)
    return result


def _update_log_secrets(secrets: tuple[str, ...]) -> None:
    """New token values are masked in the log from now on, like the ones read at start."""
    for handler in logging.getLogger().handlers:
        for fil in handler.filters:
            if isinstance(fil, SecretMasker):
                fil.secrets = tuple(s for s in secrets if len(s) >= 4)


def _labels_changed(old: Config, new: Config, name: str) -> bool:
    before = next(c for c in old.collectors if c.name == name)
    after = next(c for c in new.collectors if c.name == name)
    return (before.type, before.department, before.labels) != \
        (after.type, after.department, after.labels)

