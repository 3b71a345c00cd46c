"""The demo's alert rules over the simulator's timeline, with time passed in.

``make run`` polls the simulator and evaluates the rules in real time; finding out whether a
rule set is calm on the demo that way takes a quarter of an hour per try. The simulator's
answers are pure functions of the time and a seed (the portal model, the fault board, each
unit's stable latency), so this module asks them directly: at every poll moment it computes
what each of the config's collectors would read, turns it into samples with the collectors'
own parsing functions, and evaluates the config's rules with the engine's own ``Evaluator``
at every evaluation interval. Used by ``bench/calm_demo.py`` and the calm-demo test.

Only what the demo config uses is modelled: ``http`` targets on the simulator's units (up
unless a fault drops the connection, answers 4xx/5xx or delays past the timeout) and the
portal's ``backlog`` and ``feedback`` statistics; any other collector is refused rather than
guessed. Security events are not modelled (no event-count rule can fire here), and a poll
is taken to answer at once, at its due time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from alerts.engine import Evaluator
from alerts.model import AlertState
from alerts.rules import compile_rules
from collectors.backlog import BacklogCollector, backlog_samples, read_backlog
from collectors.feedback import FeedbackCollector, feedback_samples, read_feedback
from collectors.registry import build_collector
from collectors.simulator.app import base_latency
from collectors.simulator.faults import FaultBoard, FaultSpec
from collectors.simulator.portal import (
    PortalFault,
    PortalState,
    dossiers_document,
    feedback_document,
)
from collectors.simulator.portal_model import PortalClock, PortalModel
from collectors.simulator.province import units
from ioc.cache import SeriesCache
from ioc.model import Labels, Sample, make_labels
from service.config import Config


@dataclass(frozen=True, slots=True)
class Injected:
    """A fault put in force ``at`` seconds after the start: a unit fault or a portal fault."""

    at: float
    fault: FaultSpec | PortalFault


@dataclass(slots=True)
class DemoRun:
    """What the rules did: firings per alert (more than one is a flap), and the peak."""

    fired: Counter[tuple[str, ...]] = field(default_factory=Counter)
    resolved: Counter[tuple[str, ...]] = field(default_factory=Counter)
    first_fired: dict[tuple[str, str], float] = field(default_factory=dict)
    max_active: int = 0
    active_at_end: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def flaps(self) -> int:
        """Firings after an alert's first: each one resolved and came back."""
        return sum(n - 1 for n in self.fired.values())


def _key(labels: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in labels)


def run_demo(config: Config, *, start: float, seconds: float, seed: int = 0,
             faults: Sequence[Injected] = ()) -> DemoRun:
    """Evaluate ``config``'s rules over ``seconds`` of its simulator from ``start``.

    ``first_fired`` maps (alertname, department) to the seconds after ``start`` at which it
    first fired.
    """
    sim = config.simulator
    names = {d.code: d.name for d in config.departments}
    portal = PortalState(
        PortalModel({u.code: u.name for u in units()}, seed=seed,
                    min_monthly=sim.portal_min_monthly),
        names, time=PortalClock(start, sim.portal_time_scale))
    board = FaultBoard()
    http: list[tuple[Labels, str, float, float]] = []
    backlog: list[tuple[BacklogCollector, float]] = []
    feedback: list[tuple[FeedbackCollector, float]] = []
    interval = config.collection.interval
    for cfg in config.collectors:
        every = getattr(cfg, "interval", None) or interval
        collector = build_collector(cfg)
        if isinstance(collector, BacklogCollector):
            backlog.append((collector, every))
        elif isinstance(collector, FeedbackCollector):
            feedback.append((collector, every))
        elif collector.kind == "http":
            unit = urlsplit(str(getattr(cfg, "url", ""))).path.strip("/").split("/")[0]
            labels = make_labels(cfg.labels, target=cfg.name, department=cfg.department,
                                 kind="http")
            timeout = getattr(cfg, "timeout", None) or config.collection.timeout
            http.append((labels, unit, every, timeout))
        else:
            raise ValueError(f"collectors[{cfg.name}]: type {collector.kind!r} is not "
                             "modelled by the demo timeline")
    evaluator = Evaluator(compile_rules(list(config.alert_rules), names))
    cache = SeriesCache(4 * 3600.0, 1_000_000)
    run = DemoRun()
    pending = sorted(faults, key=lambda f: f.at)
    every_eval = config.alerts.evaluation_interval
    # Each poller and the evaluation keep their own next-due time (their first at the start,
    # as the scheduler's do at most one interval in), visited in time order.
    due = {("eval", 0): 0.0}
    due.update({("http", i): 0.0 for i in range(len(http))})
    due.update({("backlog", i): 0.0 for i in range(len(backlog))})
    due.update({("feedback", i): 0.0 for i in range(len(feedback))})
    active: list[tuple[str, ...]] = []
    while True:
        elapsed = min(due.values())
        if elapsed > seconds:
            break
        now = start + elapsed
        ready = [key for key, at in due.items() if at == elapsed]
        while pending and pending[0].at <= elapsed:
            fault = pending.pop(0).fault
            if isinstance(fault, PortalFault):
                portal.faults[fault.unit] = fault
            else:
                board.set(fault, now)
        samples: list[Sample] = []
        for kind, i in ready:
            if kind != "eval":
                due[(kind, i)] += (http[i][2] if kind == "http" else backlog[i][1]
                                   if kind == "backlog" else feedback[i][1])
        for labels, unit, _every, timeout in (http[i] for kind, i in ready if kind == "http"):
            effect = board.effect(unit, now)
            duration = min(timeout, base_latency(unit) * sim.latency_scale + effect.delay)
            up = not effect.disconnect and not (effect.status and effect.status >= 400) \
                and duration < timeout
            samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, now))
            samples.append(Sample("ioc_probe_duration_seconds", labels, duration, now))
        at = portal.time.at(now)
        for collector, _every in (backlog[i] for kind, i in ready if kind == "backlog"):
            found, catalogue = read_backlog(dossiers_document(portal, at, now),
                                            collector.mapping)
            samples.extend(backlog_samples(found, catalogue, collector.base, now))
        for fcollector, _every in (feedback[i] for kind, i in ready if kind == "feedback"):
            samples.extend(feedback_samples(
                read_feedback(feedback_document(portal, at), fcollector.mapping),
                fcollector.base, now))
        cache.add(samples)
        if ("eval", 0) not in ready:
            continue
        due[("eval", 0)] += every_eval
        cycle = evaluator.evaluate([cache], now, data_since=start)
        active = []
        for alert in cycle.alerts:
            key = _key(alert.labels)
            if alert.state is AlertState.RESOLVED:
                run.resolved[key] += 1
                continue
            active.append(key)
            if alert.fired_at == now:
                run.fired[key] += 1
                run.first_fired.setdefault(
                    (alert.label("alertname"), alert.label("department")), elapsed)
        run.max_active = max(run.max_active, len(active))
    run.active_at_end = active
    return run
