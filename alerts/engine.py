"""The alert engine: every ``alerts.evaluation_interval`` evaluate every rule and tell the sink.

Two layers, so the rule tests and the benchmark run exactly the code the service runs:

* :class:`Evaluator` is pure: given the windows and ``now`` it advances every rule's state
  machine and returns what the sink must hear (every firing alert, plus those resolved in this
  cycle) and what persistence must write.
* :class:`AlertEngine` owns the loop, the clock, the persisted state, the sink and the metrics.
  On start it loads the persisted alerts; for a *warm-up* period after that, alerts missing
  from the results are held rather than dropped or resolved, because the in-memory windows are
  empty after a restart and an empty window is not a recovery.

With several instances the engine runs only on the alert leader (service.alert_role): it is
started when this instance takes the lead — loading the state the previous leader wrote — and
stopped, without writing anything more, when it loses it. Resolved alerts are kept as rows for
``keep_resolved_for`` and handed to the sink again at such a start, so a resolution the previous
leader had not yet notified is not lost (delivery's notification log tells each one once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerts.evaluate import SeriesIndex, evaluate_rule
from alerts.model import SEVERITIES, Alert, AlertSink, AlertState
from alerts.rules import Rule
from alerts.state import ActiveAlert, RuleState, StepResult
from ioc import clock
from ioc.cache import SeriesCache
from ioc.logs import fields
from ioc.model import Labels
from ioc.store.alert_state import RESOLVED, AlertRow, AlertStateStore
from ioc.store.base import Fence, StoreError
from ioc.tasks import cancel_and_wait

log = logging.getLogger("ioc.alerts")

# The longest a warm-up waits for the first poll of every target, in warm-ups: a target whose
# first poll never comes back (a hung scheduler) must not hold resolutions forever.
WARMUP_LIMIT = 10

_EVAL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(slots=True)
class Cycle:
    """The outcome of one evaluation of every rule."""

    now: float
    alerts: list[Alert] = field(default_factory=list)  # firing + resolved now: for the sink
    pending: int = 0
    changed: dict[str, AlertRow | None] = field(default_factory=dict)  # None: delete the row
    failed_rules: list[str] = field(default_factory=list)

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.state is AlertState.FIRING]

    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.state is AlertState.RESOLVED]


class Evaluator:
    """Every rule with its state machine; advanced by :meth:`evaluate` with time passed in."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.states = [RuleState(pending_for=rule.config.pending_for,
                                 keep_firing_for=rule.config.keep_firing_for or 0.0,
                                 render=rule.render) for rule in self.rules]
        self._labels: list[dict[Labels, Labels]] = [{} for _ in self.rules]
        self._by_key = {rule.config.key: i for i, rule in enumerate(self.rules)}

    def restore(self, rows: Sequence[AlertRow], now: float) -> list[Alert]:
        """Load persisted alerts; return the firing ones whose rule is gone, as resolved.

        A rule removed from the config while its alert fired would otherwise leave the alert
        open forever at every receiver; resolving it once closes it. Resolved rows are not
        restored (see :func:`resolved_alert`).
        """
        orphans = []
        for row in rows:
            if row.state == RESOLVED:
                continue
            index = self._by_key.get(row.rule)
            alert = ActiveAlert(
                labels=row.labels, state=AlertState(row.state), active_at=row.active_at,
                value=row.value, fired_at=row.fired_at,
                keep_firing_since=row.keep_firing_since, annotations=row.annotations,
                rendered_for=row.value, fingerprint=row.fingerprint)
            if index is None:
                if alert.state is AlertState.FIRING:
                    orphans.append(alert.to_alert(now, AlertState.RESOLVED, resolved_at=now))
                continue
            self.states[index].restore([alert])
        return orphans

    def rerender(self, indexes: Iterable[int] | None = None) -> list[AlertRow]:
        """Re-render the firing alerts of the rules at ``indexes`` (all by default); the rows
        whose annotations changed, for persistence."""
        chosen = range(len(self.rules)) if indexes is None else indexes
        return [_row(self.rules[i], alert) for i in chosen
                for alert in self.states[i].rerender()]

    def rows(self) -> list[AlertRow]:
        """Every active alert as persistence stores it."""
        return [_row(rule, alert) for rule, state in zip(self.rules, self.states, strict=True)
                for alert in state.alerts.values()]

    def evaluate(self, caches: Sequence[SeriesCache], now: float, *, data_since: float,
                 warming_up: bool = False) -> Cycle:
        index = SeriesIndex(*caches)
        cycle = Cycle(now)
        step = StepResult(firing=cycle.alerts)
        for i, rule in enumerate(self.rules):
            try:
                results = evaluate_rule(rule, index, now, data_since)
            except Exception:  # a bug in one rule's evaluation must not stop the others
                log.exception("rule evaluation failed", extra=fields(rule=rule.name))
                cycle.failed_rules.append(rule.name)
                continue
            state = self.states[i]
            if not results and not state.alerts:
                continue  # the common case: nothing true, nothing active
            resolved_before = len(step.resolved)
            full = self._labels[i]
            if len(full) > 4 * len(results) + 1024:
                full.clear()  # series come and go; keep the label cache bounded
            static = rule.static_labels
            pairs = []
            for result in results:
                labels = full.get(result.labels)
                if labels is None:
                    merged = dict(result.labels)
                    merged.update(static)
                    labels = full[result.labels] = tuple(sorted(merged.items()))
                pairs.append((labels, result.value))
            step.changed.clear()
            step.removed.clear()
            state.step(pairs, now, warming_up=warming_up, out=step)
            for alert in step.changed:
                if alert.labels in state.alerts:
                    cycle.changed[alert.fingerprint] = _row(rule, alert)
            for alert in step.removed:
                cycle.changed[alert.fingerprint] = None
            for resolved in step.resolved[resolved_before:]:
                cycle.changed[resolved.fingerprint] = resolved_row(rule.config.key, resolved)
        cycle.alerts.extend(step.resolved)
        cycle.pending = sum(1 for state in self.states for a in state.alerts.values()
                            if a.state is AlertState.PENDING)
        return cycle

    def counts(self) -> dict[tuple[str, str], int]:
        """Active alerts by (state, severity), for the ``ioc_alerts`` gauge."""
        out = {(state, sev): 0 for state in ("pending", "firing") for sev in SEVERITIES}
        for rule, state in zip(self.rules, self.states, strict=True):
            sev = rule.config.severity
            for alert in state.alerts.values():
                key = (alert.state.value, sev)
                out[key] = out.get(key, 0) + 1
        return out


def _row(rule: Rule, alert: ActiveAlert) -> AlertRow:
    return AlertRow(fingerprint=alert.fingerprint, rule=rule.config.key, labels=alert.labels,
                    state=alert.state.value, value=alert.value, active_at=alert.active_at,
                    fired_at=alert.fired_at, keep_firing_since=alert.keep_firing_since,
                    annotations=alert.annotations)


def resolved_row(rule_key: str, alert: Alert) -> AlertRow:
    """The row kept for an alert that resolved (its ``updated_at`` is the resolution)."""
    return AlertRow(fingerprint=alert.fingerprint, rule=rule_key, labels=alert.labels,
                    state=RESOLVED, value=alert.value, active_at=alert.active_at,
                    fired_at=alert.fired_at, keep_firing_since=None,
                    annotations=alert.annotations, updated_at=alert.resolved_at)


def resolved_alert(row: AlertRow, now: float) -> Alert:
    """A kept resolved row as the sink hears it again after a start or a takeover."""
    at = row.updated_at if row.updated_at is not None else now
    return Alert(labels=row.labels, annotations=row.annotations, state=AlertState.RESOLVED,
                 value=row.value, active_at=row.active_at, fired_at=row.fired_at,
                 resolved_at=at, last_eval=at, fingerprint=row.fingerprint)


class LoggingSink:
    """A sink that only logs state changes; used until delivery is wired to the engine."""

    def __init__(self) -> None:
        self._firing: set[str] = set()

    async def update(self, alerts: list[Alert], now: float) -> None:
        for alert in alerts:
            if alert.state is AlertState.FIRING and alert.fingerprint not in self._firing:
                self._firing.add(alert.fingerprint)
                log.warning("alert firing", extra=fields(
                    alertname=alert.label("alertname"), severity=alert.label("severity"),
                    target=alert.label("target"), department=alert.label("department"),
                    value=alert.value))
            elif alert.state is AlertState.RESOLVED:
                self._firing.discard(alert.fingerprint)
                log.info("alert resolved", extra=fields(
                    alertname=alert.label("alertname"), target=alert.label("target"),
                    department=alert.label("department")))


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.alerts = Gauge("ioc_alerts", "Active alerts by state (pending, firing) and "
                            "severity.", ["state", "severity"], registry=registry)
        self.rules = Gauge("ioc_alert_rules", "Alert rules loaded.", registry=registry)
        self.duration = Histogram("ioc_alert_evaluation_duration_seconds",
                                  "Wall time of one evaluation of every rule.",
                                  buckets=_EVAL_BUCKETS, registry=registry)
        self.failures = Counter("ioc_alert_rule_evaluation_failures_total",
                                "Rule evaluations that raised, by rule.", ["rule"],
                                registry=registry)
        self.missed = Counter("ioc_alert_evaluations_missed_total",
                              "Evaluation ticks skipped because the previous one overran.",
                              registry=registry)
        self.state_errors = Counter("ioc_alert_state_write_errors_total",
                                    "Failed writes of alert state; retried next cycle.",
                                    registry=registry)


class AlertEngine:
    def __init__(self, rules: Sequence[Rule], caches: Sequence[SeriesCache], sink: AlertSink,
                 *, interval: float, registry: CollectorRegistry,
                 store: AlertStateStore | None = None, warmup: float = 0.0,
                 keep_resolved_for: float = 3600.0,
                 data_ready: Callable[[], bool] | None = None,
                 wall_clock: Callable[[], float] = clock.now,
                 monotonic: Callable[[], float] = clock.monotonic) -> None:
        self.evaluator = Evaluator(rules)
        self.caches = list(caches)
        self.sink = sink
        self.interval = interval
        self.store = store
        self.warmup = warmup
        # Under load the first polls after a start can take longer than ``warmup``: until every
        # target has answered once (``data_ready``) the warm-up goes on, up to WARMUP_LIMIT
        # times its length, so an empty window is never read as a recovery (and a re-page).
        self.data_ready = data_ready
        self.keep_resolved_for = keep_resolved_for
        # Set while this instance is the alert leader (ioc.leader): every state write proves it.
        self.fence: Fence | None = None
        self._pruned_at = float("-inf")
        self.metrics = AlertMetrics(registry)
        self.metrics.rules.set(len(self.evaluator.rules))
        self._clock = wall_clock
        self._monotonic = monotonic
        self._started_at: float | None = None
        self._dirty: dict[str, AlertRow | None] = {}
        self._carry: list[Alert] = []  # resolved alerts still to hand to the sink
        self._task: asyncio.Task[None] | None = None
        self.last_cycle: Cycle | None = None

    @property
    def rules(self) -> list[Rule]:
        return self.evaluator.rules

    async def start(self, now: float | None = None) -> None:
        """Load persisted state and begin the periodic loop."""
        await self.load(self._clock() if now is None else now)
        self._task = asyncio.create_task(self._run(), name="ioc-alert-engine")

    async def load(self, now: float) -> None:
        """Start from the stored state alone (at start, and again on each takeover)."""
        self._started_at = now
        self.evaluator = Evaluator(self.evaluator.rules)
        self._carry.clear()
        self._dirty.clear()
        if self.store is None:
            return
        try:
            await self.store.open()
            rows = await self.store.load()
            resolved = await self.store.load_resolved()
        except StoreError as exc:
            log.error("cannot load alert state; starting without it",
                      extra=fields(error=str(exc)))
            return
        orphans = self.evaluator.restore(rows, now)
        self._carry.extend(orphans)
        # Stored annotations were rendered by the config of their time: show today's text.
        for row in self.evaluator.rerender():
            self._dirty[row.fingerprint] = row
        rules = {row.fingerprint: row.rule for row in rows}
        for alert in orphans:
            self._dirty[alert.fingerprint] = resolved_row(rules[alert.fingerprint], alert)
        self._carry.extend(resolved_alert(row, now) for row in resolved)
        if rows or resolved:
            log.info("alert state restored", extra=fields(
                alerts=len(rows) - len(orphans), resolved_orphans=len(orphans),
                recently_resolved=len(resolved)))

    def replace_rules(self, rules: Sequence[Rule], now: float) -> tuple[int, int, int]:
        """Swap in a reloaded rule set between cycles; (kept, added, removed) rule counts.

        A rule whose key (name, severity, labels) is unchanged keeps its pending and firing
        alerts, so a reload neither re-notifies nor restarts a ``for`` wait; an identical
        rule keeps its state object as is. Alerts of a rule that is gone are resolved once,
        as on a restart without the rule.
        """
        old = self.evaluator
        new = Evaluator(rules)
        old_index = {rule.config.key: i for i, rule in enumerate(old.rules)}
        kept = 0
        for i, rule in enumerate(new.rules):
            j = old_index.pop(rule.config.key, None)
            if j is None:
                continue
            kept += 1
            if rule.config == old.rules[j].config:
                new.states[i] = old.states[j]
                new._labels[i] = old._labels[j]
            else:
                new.states[i].restore(old.states[j].alerts.values())
                for row in new.rerender([i]):  # edited annotations reach firing alerts now
                    self._dirty[row.fingerprint] = row
        for j in old_index.values():
            for alert in old.states[j].alerts.values():
                self._dirty[alert.fingerprint] = None
                if alert.state is AlertState.FIRING:
                    ended = alert.to_alert(now, AlertState.RESOLVED, resolved_at=now)
                    self._carry.append(ended)
                    self._dirty[alert.fingerprint] = resolved_row(old.rules[j].config.key,
                                                                  ended)
        self.evaluator = new
        self.metrics.rules.set(len(new.rules))
        return kept, len(new.rules) - kept, len(old_index)

    async def stop(self, *, persist: bool = True) -> None:
        """Stop evaluating; ``persist=False`` when leadership was lost and the successor owns
        the stored state (nothing more is written)."""
        await cancel_and_wait(self._task)
        self._task = None
        if persist:
            await self._persist(self._clock())
        self._dirty.clear()
        for labels in self.evaluator.counts():  # only a running engine reports alerts
            self.metrics.alerts.labels(*labels).set(0)
        if self.store is not None:
            await self.store.close()

    async def _run(self) -> None:
        next_tick = self._monotonic()
        while True:
            try:
                await self.run_cycle(self._clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert evaluation cycle failed")
            next_tick += self.interval
            delay = next_tick - self._monotonic()
            if delay < 0:  # overran: skip the ticks that passed rather than bunching up
                skipped = int(-delay // self.interval) + 1
                self.metrics.missed.inc(skipped)
                next_tick += skipped * self.interval
                delay = next_tick - self._monotonic()
            await asyncio.sleep(max(0.0, delay))

    def warming_up(self, now: float, since: float) -> bool:
        """Whether alerts missing from this cycle's results are still held (see the module)."""
        if now < since + self.warmup:
            return True
        if self.data_ready is None or now >= since + WARMUP_LIMIT * max(self.warmup, 1.0):
            return False
        return not self.data_ready()

    async def run_cycle(self, now: float) -> Cycle:
        """Evaluate every rule at ``now``, persist what changed, tell the sink."""
        started = self._monotonic()
        since = self._started_at if self._started_at is not None else now
        cycle = self.evaluator.evaluate(self.caches, now, data_since=since,
                                        warming_up=self.warming_up(now, since))
        if self._carry:
            cycle.alerts.extend(self._carry)
            self._carry.clear()
        for name in cycle.failed_rules:
            self.metrics.failures.labels(rule=name).inc()
        for (state, severity), count in self.evaluator.counts().items():
            self.metrics.alerts.labels(state=state, severity=severity).set(count)
        self._dirty.update(cycle.changed)
        await self._persist(now)
        self.metrics.duration.observe(self._monotonic() - started)
        try:
            await self.sink.update(cycle.alerts, now)
        except Exception:
            log.exception("alert sink failed")
        self.last_cycle = cycle
        return cycle

    async def _persist(self, now: float) -> None:
        prune = now - self._pruned_at >= min(60.0, self.keep_resolved_for)
        if self.store is None or not (self._dirty or prune):
            return
        dirty, self._dirty = self._dirty, {}
        changed = [row for row in dirty.values() if row is not None]
        removed = [fp for fp, row in dirty.items() if row is None]
        try:
            await self.store.open()  # a no-op once open; retries a failed open at start
            await self.store.save(changed, removed, now, fence=self.fence,
                                  resolved_before=now - self.keep_resolved_for if prune else None)
            if prune:
                self._pruned_at = now
        except StoreError as exc:
            self.metrics.state_errors.inc()
            log.warning("cannot write alert state; retrying next cycle",
                        extra=fields(error=str(exc)))
            dirty.update(self._dirty)
            self._dirty = dirty
