"""An ack survives a flap: the same alert resolving and firing again within its rule's
``keep_firing_for`` keeps the operator's ack; later, or without ``keep_firing_for``, it ends."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from alerts.dispatcher import Dispatcher, build_dispatcher
from alerts.model import Alert, AlertState
from alerts.state import RuleState
from ioc.metrics import DeliveryMetrics
from ioc.model import make_labels
from tests.alerts.delivery_helpers import alert, resolved
from tests.conftest import demo_config, free_port

T0 = 1_796_000_000.0
KEEP = 1800.0


@pytest.fixture
async def dispatcher(tmp_path: Path):
    config = demo_config(tmp_path, free_port(), codes=["STP"])
    now = [T0]
    built = build_dispatcher(config, DeliveryMetrics(CollectorRegistry()), lambda: now[0])
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


def firing(at: float) -> Alert:
    return replace(alert("OverdueDossiersRising", at=at, department="STP"),
                   keep_firing_for=KEEP)


async def acked_then_resolved(dispatcher: Dispatcher, keep: float = KEEP) -> Alert:
    first = replace(firing(T0), keep_firing_for=keep)
    await dispatcher.update([first], T0)
    assert await dispatcher.acknowledge(first.fingerprint, by="ca-truc", comment="đang xử lý",
                                        now=T0 + 10, duration=86400) is not None
    gone = replace(resolved(first, T0 + 60), keep_firing_for=keep)
    await dispatcher.update([gone], T0 + 60)
    return first


async def stored_acks(dispatcher: Dispatcher) -> set[str]:
    return {row["fingerprint"] for row in await dispatcher.store.load_acks()}


async def test_a_flap_within_keep_firing_for_keeps_the_ack(dispatcher: Dispatcher) -> None:
    first = await acked_then_resolved(dispatcher)
    await dispatcher.update([], T0 + 120)                  # pending again: not handed over
    await dispatcher.refresh(T0 + 120)                     # re-read from the store
    assert first.fingerprint in dispatcher.acks
    again = firing(T0 + 60 + KEEP - 1)
    await dispatcher.update([again], again.active_at)
    await dispatcher.refresh(again.active_at)
    assert dispatcher.acks[first.fingerprint].by == "ca-truc"
    assert first.fingerprint in await stored_acks(dispatcher)
    # the alert fires on: the ack holds past the span, until the alert is over for good
    await dispatcher.update([again], T0 + 60 + 2 * KEEP)
    assert first.fingerprint in dispatcher.acks
    await dispatcher.update([replace(resolved(again, T0 + 3 * KEEP), keep_firing_for=KEEP)],
                            T0 + 3 * KEEP)
    await dispatcher.update([], T0 + 4 * KEEP + 1)
    assert first.fingerprint not in dispatcher.acks
    assert first.fingerprint not in await stored_acks(dispatcher)


async def test_coming_back_after_keep_firing_for_is_a_new_problem(
        dispatcher: Dispatcher) -> None:
    first = await acked_then_resolved(dispatcher)
    await dispatcher.update([], T0 + 60 + KEEP)
    assert first.fingerprint not in dispatcher.acks
    await dispatcher.update([firing(T0 + 60 + KEEP + 5)], T0 + 60 + KEEP + 5)
    await dispatcher.refresh(T0 + 60 + KEEP + 5)
    assert first.fingerprint not in dispatcher.acks
    assert first.fingerprint not in await stored_acks(dispatcher)


async def test_without_keep_firing_for_the_ack_ends_with_the_alert(
        dispatcher: Dispatcher) -> None:
    first = await acked_then_resolved(dispatcher, keep=0.0)
    assert first.fingerprint not in dispatcher.acks
    assert first.fingerprint not in await stored_acks(dispatcher)


def test_the_resolution_carries_the_rules_keep_firing_for() -> None:
    state = RuleState(pending_for=0.0, keep_firing_for=KEEP, render=lambda labels, value: ())
    labels = make_labels(alertname="OverdueDossiersRising", department="STP")
    state.step([(labels, 20.0)], T0)
    assert state.step([], T0 + 60).resolved == []          # kept firing
    (over,) = state.step([], T0 + 60 + KEEP).resolved
    assert over.state is AlertState.RESOLVED and over.keep_firing_for == KEEP
