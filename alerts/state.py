"""The alert state machine of one rule: inactive → pending → firing → resolved.

Modelled on Prometheus ``rules/alerting.go`` (``AlertingRule.Eval``), with time passed in:

* a label set whose condition becomes true starts **pending** at ``active_at``;
* it turns **firing** once it has been true for the rule's ``for`` (at once without ``for``);
* a pending alert whose condition clears is dropped silently — nobody was told about it;
* a firing alert whose condition clears keeps firing for ``keep_firing_for`` (counted from
  the first evaluation that found it clear; the condition coming back resets that), then
  **resolves**: it is reported once in that state and forgotten. If the condition returns
  later, a new alert starts pending.

While ``warming_up`` is set (the windows are still filling after a restart) alerts missing from the
results are neither dropped nor resolved: an empty window after a restart is not a recovery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from alerts.model import Alert, AlertState, fingerprint
from ioc.model import Labels

Annotations = tuple[tuple[str, str], ...]
Render = Callable[[Labels, "float | None"], Annotations]


@dataclass(slots=True)
class ActiveAlert:
    """A pending or firing alert, as kept between evaluations and persisted."""

    labels: Labels
    state: AlertState
    active_at: float
    value: float | None = None
    fired_at: float | None = None
    keep_firing_since: float | None = None
    annotations: Annotations = ()
    rendered_for: float | None = None  # the value the annotations were rendered with
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    def to_alert(self, now: float, state: AlertState | None = None,
                 resolved_at: float | None = None, keep_firing_for: float = 0.0) -> Alert:
        return Alert(labels=self.labels, annotations=self.annotations,
                     state=state or self.state, value=self.value, active_at=self.active_at,
                     fired_at=self.fired_at, resolved_at=resolved_at, last_eval=now,
                     fingerprint=self.fingerprint, keep_firing_for=keep_firing_for)


@dataclass(slots=True)
class StepResult:
    """What one evaluation changed: ``changed`` and ``removed`` are what persistence writes."""

    firing: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    changed: list[ActiveAlert] = field(default_factory=list)
    removed: list[ActiveAlert] = field(default_factory=list)


class RuleState:
    """The active alerts of one rule, keyed by their full label set."""

    __slots__ = ("alerts", "keep_firing_for", "pending_for", "render")

    def __init__(self, *, pending_for: float, keep_firing_for: float, render: Render) -> None:
        self.pending_for = pending_for
        self.keep_firing_for = keep_firing_for
        self.render = render
        self.alerts: dict[Labels, ActiveAlert] = {}

    def restore(self, alerts: Iterable[ActiveAlert]) -> None:
        for alert in alerts:
            self.alerts[alert.labels] = alert

    def step(self, results: Iterable[tuple[Labels, float | None]], now: float, *,
             warming_up: bool = False, out: StepResult | None = None) -> StepResult:
        """Advance every alert of the rule to ``now`` given the label sets that are true."""
        out = out if out is not None else StepResult()
        alerts = self.alerts
        seen: set[Labels] = set()
        for labels, value in results:
            seen.add(labels)
            alert = alerts.get(labels)
            if alert is None:
                alert = alerts[labels] = ActiveAlert(labels, AlertState.PENDING, now, value)
                out.changed.append(alert)
            else:
                alert.value = value
                if alert.keep_firing_since is not None:
                    alert.keep_firing_since = None
                    out.changed.append(alert)
            if alert.state is AlertState.PENDING and now - alert.active_at >= self.pending_for:
                alert.state = AlertState.FIRING
                alert.fired_at = now
                self._annotate(alert)
                out.changed.append(alert)
            if alert.state is AlertState.FIRING:
                if alert.rendered_for != value or not alert.annotations:
                    self._annotate(alert)
                out.firing.append(alert.to_alert(now))
        if len(seen) == len(alerts):
            return out
        for labels in [lb for lb in alerts if lb not in seen]:
            alert = alerts[labels]
            if warming_up:
                if alert.state is AlertState.FIRING:
                    out.firing.append(alert.to_alert(now))
                continue
            if alert.state is AlertState.PENDING:
                del alerts[labels]
                out.removed.append(alert)
                continue
            if self.keep_firing_for > 0:
                if alert.keep_firing_since is None:
                    alert.keep_firing_since = now
                    out.changed.append(alert)
                if now - alert.keep_firing_since < self.keep_firing_for:
                    out.firing.append(alert.to_alert(now))
                    continue
            del alerts[labels]
            out.removed.append(alert)
            out.resolved.append(alert.to_alert(now, AlertState.RESOLVED, resolved_at=now,
                                               keep_firing_for=self.keep_firing_for))
        return out

    def rerender(self) -> list[ActiveAlert]:
        """Render the firing alerts' annotations again; return those whose text changed.

        The rule's annotations were edited (a reload), or the stored copy was rendered by an
        older config (a restart): an alert already firing must show the current text, not
        the one it fired with, even when its value never changes again.
        """
        changed = []
        for alert in self.alerts.values():
            if alert.state is AlertState.FIRING:
                before = alert.annotations
                self._annotate(alert)
                if alert.annotations != before:
                    changed.append(alert)
        return changed

    def _annotate(self, alert: ActiveAlert) -> None:
        alert.annotations = self.render(alert.labels, alert.value)
        alert.rendered_for = alert.value
