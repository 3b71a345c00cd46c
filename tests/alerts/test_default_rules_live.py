"""The shipped default rules against the bundled simulator's fault injection.

Real polls of the real simulator feed the in-memory windows; only the clock is stepped (30 s
per step), so rules with `for: 2m` or a 1 h window are exercised in a second of test time.
Each scenario checks that the right default rule fires — not earlier than its `for` — and
that nothing else does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from alerts.engine import Evaluator
from alerts.event_counts import EventCounts
from alerts.model import Alert, AlertState
from alerts.rules import compile_rules, gather_rules
from collectors.registry import COLLECTOR_TYPES
from collectors.simulator import start_simulator
from ioc import clock
from ioc.cache import SeriesCache
from ioc.metrics import ServiceMetrics
from ioc.pipeline import Pipeline, PollOutcome
from ioc.poll_limits import PollLimits
from ioc.runner import PollRunner
from ioc.status import StatusBoard, TargetState
from tests.conftest import SIM_TOKEN, free_port
from tests.helpers import ListSink

STEP = 30.0


class FakeClock:
    """The one clock the runners read; the test steps it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Province:
    sim: str
    cache: SeriesCache
    events: EventCounts
    runners: list[PollRunner]
    evaluator: Evaluator
    clock: FakeClock
    start: float

    async def step(self, seconds: float = STEP) -> list[Alert]:
        """Advance the clock, poll every target once, evaluate every default rule."""
        self.clock.now += seconds
        for runner in self.runners:
            await runner.poll(self.clock.now)
        cycle = self.evaluator.evaluate([self.cache, self.events.cache], self.clock.now,
                                        data_since=self.start)
        return cycle.firing()

    async def fault(self, path: str, body: dict[str, Any] | None) -> None:
        headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            if body is None:
                async with session.delete(self.sim + path) as resp:
                    assert resp.status == 200, await resp.text()
            else:
                async with session.post(self.sim + path, json=body) as resp:
                    assert resp.status == 200, await resp.text()


def names(alerts: list[Alert]) -> set[tuple[str, str]]:
    return {(a.label("alertname"), a.label("department")) for a in alerts}


@pytest.fixture
async def province() -> AsyncIterator[Province]:
    port = free_port()
    runner_web = await start_simulator("127.0.0.1", port, token=SIM_TOKEN, latency_scale=0)
    sim = f"http://127.0.0.1:{port}"
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, "test")
    cache = SeriesCache(window_seconds=3 * 3600, max_points=1000)
    events = EventCounts(window_seconds=3 * 3600)
    board = StatusBoard()
    pipeline = Pipeline(cache, board, ListSink(), metrics)
    fake = FakeClock(clock.now())

    def count_events(outcome: PollOutcome) -> None:
        if outcome.events:
            events.add(outcome.events, fake.now)

    pipeline.add_hook(count_events)
    blocks = [
        {"type": "http", "name": "stp-health", "department": "STP",
         "url": f"{sim}/STP/health"},
        {"type": "http", "name": "stp-web", "department": "STP", "url": f"{sim}/STP/"},
        {"type": "backlog", "name": "dvc-dossiers", "department": "HTTT-TTHC",
         "url": f"{sim}/_portal/v1/dossiers"},
    ]
    found, issues = gather_rules([], [], True, base_dir=Path("."))
    assert not issues
    async with aiohttp.ClientSession() as session:
        runners = []
        for block in blocks:
            cls = COLLECTOR_TYPES[block["type"]]
            collector = cls(cls.Config.model_validate(block))  # type: ignore[call-arg]
            board.register(TargetState(block["name"], block["department"], block["type"], STEP))
            runners.append(PollRunner(
                collector, interval=STEP, timeout=5.0, limits=PollLimits(10, 10),
                pipeline=pipeline, metrics=metrics, session=lambda: session,
                wall_clock=fake))
        try:
            yield Province(sim, cache, events, runners, Evaluator(compile_rules(found)), fake,
                           start=fake.now)
        finally:
            await runner_web.cleanup()


async def test_a_quiet_province_fires_nothing(province: Province) -> None:
    for _ in range(12):  # six minutes
        assert await province.step() == []


async def test_target_down_fires_after_two_minutes_and_resolves(province: Province) -> None:
    for _ in range(3):
        await province.step()
    await province.fault("/_sim/faults", {"unit": "STP", "fault": "down"})
    fired_after = None
    for i in range(1, 10):
        firing = await province.step()
        if ("TargetDown", "STP") in names(firing):
            fired_after = i * STEP
            break
    assert fired_after is not None and fired_after >= 120  # `for: 2m`
    targets = {a.label("target") for a in firing if a.label("alertname") == "TargetDown"}
    assert targets == {"stp-health", "stp-web"}
    await province.fault("/_sim/faults/STP", None)
    firing = await province.step()
    assert ("TargetDown", "STP") not in names(firing)


async def test_defacement_fires_site_defaced(province: Province) -> None:
    await province.step()
    await province.fault("/_sim/faults", {"unit": "STP", "fault": "content"})
    firing = await province.step()
    assert ("SiteDefaced", "STP") in names(firing)
    alert = next(a for a in firing if a.label("alertname") == "SiteDefaced")
    assert alert.label("severity") == "critical"
    assert "thay đổi nội dung" in dict(alert.annotations)["summary"]


async def test_overdue_surge_fires_overdue_dossiers_rising(province: Province) -> None:
    for _ in range(2):
        await province.step()
    await province.fault("/_sim/portal/faults", {"unit": "STP", "fault": "overdue_surge"})
    for _ in range(10):  # `for: 5m`
        firing = await province.step()
        assert ("OverdueDossiersRising", "STP") not in names(firing)
    firing = await province.step()
    assert ("OverdueDossiersRising", "STP") in names(firing)
    rising = [a for a in firing if a.label("alertname") == "OverdueDossiersRising"]
    assert {a.label("department") for a in rising} == {"STP"}
    assert all(a.state is AlertState.FIRING for a in rising)
