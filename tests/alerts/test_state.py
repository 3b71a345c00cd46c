"""The state machine of one rule, stepped with a fake clock (no sleeps)."""

from __future__ import annotations

from alerts.model import AlertState
from alerts.state import RuleState
from ioc.model import Labels, make_labels

A = make_labels(target="a", alertname="X")
B = make_labels(target="b", alertname="X")


def render(labels: Labels, value: float | None) -> tuple[tuple[str, str], ...]:
    return (("summary", f"{dict(labels)['target']}={value}"),)


def machine(hold: float = 0.0, keep: float = 0.0) -> RuleState:
    return RuleState(pending_for=hold, keep_firing_for=keep, render=render)


def test_pending_then_firing_after_for() -> None:
    state = machine(hold=60)
    out = state.step([(A, 1.0)], 0)
    assert out.firing == [] and state.alerts[A].state is AlertState.PENDING
    assert state.step([(A, 1.0)], 59).firing == []
    out = state.step([(A, 2.0)], 60)
    (alert,) = out.firing
    assert alert.state is AlertState.FIRING
    assert (alert.active_at, alert.fired_at, alert.value) == (0, 60, 2.0)
    assert alert.annotations == (("summary", "a=2.0"),)


def test_without_for_fires_on_first_evaluation() -> None:
    (alert,) = machine().step([(A, 1.0)], 10).firing
    assert alert.fired_at == 10 == alert.active_at


def test_pending_that_clears_is_dropped_silently() -> None:
    state = machine(hold=60)
    state.step([(A, 1.0)], 0)
    out = state.step([], 30)
    assert out.firing == [] and out.resolved == []
    assert [a.labels for a in out.removed] == [A]
    assert state.alerts == {}
    # it starts over from pending when the condition returns
    state.step([(A, 1.0)], 40)
    assert state.alerts[A].active_at == 40


def test_firing_resolves_once_and_is_forgotten() -> None:
    state = machine()
    state.step([(A, 1.0), (B, 1.0)], 0)
    out = state.step([(B, 1.0)], 15)
    assert [a.labels for a in out.firing] == [B]
    (resolved,) = out.resolved
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == 15
    assert resolved.fired_at == 0
    assert state.step([(B, 1.0)], 30).resolved == []


def test_keep_firing_for_holds_then_resolves() -> None:
    state = machine(keep=60)
    state.step([(A, 1.0)], 0)
    assert len(state.step([], 15).firing) == 1      # clear since 15
    assert len(state.step([], 74).firing) == 1      # 59 s < 60 s
    out = state.step([], 75)
    assert out.firing == [] and len(out.resolved) == 1


def test_keep_firing_resets_when_condition_returns() -> None:
    state = machine(keep=60)
    state.step([(A, 1.0)], 0)
    state.step([], 15)
    state.step([(A, 1.0)], 30)                     # back: keep_firing_since cleared
    assert state.alerts[A].keep_firing_since is None
    state.step([], 45)
    assert len(state.step([], 100).firing) == 1     # 55 s since 45
    assert len(state.step([], 105).resolved) == 1


def test_hold_keeps_missing_alerts_unchanged() -> None:
    state = machine(hold=60)
    state.step([(A, 1.0)], 0)
    state.step([(A, 1.0), (B, 1.0)], 60)           # A firing, B pending
    out = state.step([], 75, warming_up=True)
    assert [a.labels for a in out.firing] == [A]
    assert out.resolved == [] and out.removed == []
    assert set(state.alerts) == {A, B}


def test_changed_lists_transitions_only() -> None:
    state = machine(hold=30)
    assert [a.state for a in state.step([(A, 1.0)], 0).changed] == [AlertState.PENDING]
    assert state.step([(A, 2.0)], 10).changed == []
    assert [a.state for a in state.step([(A, 3.0)], 30).changed] == [AlertState.FIRING]


def test_annotations_follow_the_value() -> None:
    state = machine()
    state.step([(A, 1.0)], 0)
    (alert,) = state.step([(A, 7.0)], 15).firing
    assert alert.annotations == (("summary", "a=7.0"),)
