"""The engine with real parts: persisted state on SQLite and PostgreSQL, and the running
service noticing a fault injected into the bundled simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from alerts.engine import AlertEngine
from alerts.model import Alert, AlertState
from alerts.rules import RuleConfig, compile_rules
from ioc import clock
from ioc.cache import SeriesCache
from ioc.model import Sample, make_labels
from ioc.store.alert_state import AlertStateStore
from service.app import IocApp
from tests.conftest import SIM_TOKEN, demo_config, free_port
from tests.helpers import Changes

LABELS = make_labels(target="stp-portal", department="STP", kind="http")


class Recorder:
    """An AlertSink that keeps every update and lets a test await a condition."""

    def __init__(self) -> None:
        self.updates: list[tuple[float, list[Alert]]] = []
        self._changed = Changes()

    async def update(self, alerts: list[Alert], now: float) -> None:
        self.updates.append((now, list(alerts)))
        self._changed.set()

    def last(self) -> list[Alert]:
        return self.updates[-1][1] if self.updates else []

    async def until(self, predicate: Any, limit: float) -> None:
        await self._changed.until(
            lambda: any(predicate(alerts) for _, alerts in self.updates), limit)


def rules(*configs: dict[str, Any]) -> Any:
    return compile_rules([(RuleConfig.model_validate(c), "test") for c in configs])


DOWN = {"name": "TargetDown", "metric": "ioc_target_up", "op": "==", "threshold": 0}


def engine(url: str, cache: SeriesCache, sink: Recorder, *configs: dict[str, Any],
           warmup: float = 0.0) -> AlertEngine:
    return AlertEngine(rules(*(configs or (DOWN,))), [cache], sink, interval=15,
                       registry=CollectorRegistry(), store=AlertStateStore(url), warmup=warmup)


def down(cache: SeriesCache, ts: float, value: float = 0.0) -> None:
    cache.add([Sample("ioc_target_up", LABELS, value, ts)])


async def test_restart_keeps_firing_alerts_and_resolves_later(store_url: str) -> None:
    cache, sink = SeriesCache(3600, 100), Recorder()
    first = engine(store_url, cache, sink)
    await first.load(0)
    down(cache, 99)
    cycle = await first.run_cycle(100)
    (fired,) = cycle.firing()
    assert fired.fired_at == 100
    assert first.metrics.alerts.labels(state="firing", severity="warning")._value.get() == 1
    await first.stop()

    # A restart: empty windows, state from the database, and a warm-up that holds it.
    cache2, sink2 = SeriesCache(3600, 100), Recorder()
    second = engine(store_url, cache2, sink2, warmup=30)
    await second.load(110)
    (held,) = (await second.run_cycle(115)).alerts
    assert held.state is AlertState.FIRING
    assert (held.fingerprint, held.fired_at, held.active_at) == (fired.fingerprint, 100, 100)
    down(cache2, 140, 1.0)
    cycle = await second.run_cycle(145)
    (resolved,) = cycle.alerts
    assert resolved.state is AlertState.RESOLVED and resolved.fingerprint == fired.fingerprint
    await second.stop()

    store = AlertStateStore(store_url)
    await store.open()
    try:
        assert await store.load() == []
    finally:
        await store.close()


async def test_pending_alert_keeps_its_start_across_a_restart(store_url: str) -> None:
    slow = {**DOWN, "for": "1m"}
    cache, sink = SeriesCache(3600, 100), Recorder()
    first = engine(store_url, cache, sink, slow)
    await first.load(0)
    down(cache, 0)
    assert (await first.run_cycle(0)).pending == 1
    await first.stop()
    cache2 = SeriesCache(3600, 100)
    second = engine(store_url, cache2, Recorder(), slow)
    await second.load(50)
    down(cache2, 55)
    (alert,) = (await second.run_cycle(60)).firing()
    assert (alert.active_at, alert.fired_at) == (0, 60)
    await second.stop()


async def test_alert_of_a_removed_rule_is_resolved_once(store_url: str) -> None:
    cache, sink = SeriesCache(3600, 100), Recorder()
    first = engine(store_url, cache, sink)
    await first.load(0)
    down(cache, 0)
    await first.run_cycle(0)
    await first.stop()
    other = {"name": "Other", "metric": "x", "op": ">", "threshold": 1}
    second = engine(store_url, SeriesCache(3600, 100), Recorder(), other)
    await second.load(10)
    (orphan,) = (await second.run_cycle(15)).alerts
    assert orphan.state is AlertState.RESOLVED and orphan.label("alertname") == "TargetDown"
    assert (await second.run_cycle(30)).alerts == []
    await second.stop()


async def test_sink_failure_does_not_stop_the_engine(tmp_path: Path) -> None:
    class Broken:
        async def update(self, alerts: list[Alert], now: float) -> None:
            raise RuntimeError("receiver bug")

    cache = SeriesCache(3600, 100)
    eng = AlertEngine(rules(DOWN), [cache], Broken(), interval=15,
                      registry=CollectorRegistry(), store=None)
    await eng.load(0)
    down(cache, 0)
    assert len((await eng.run_cycle(0)).firing()) == 1
    assert len((await eng.run_cycle(15)).firing()) == 1


async def test_simulator_fault_fires_then_resolves(tmp_path: Path) -> None:
    """Fault → firing within interval + for + evaluation interval + 1 s; clear → resolved."""
    interval, hold, every = 0.2, 0.4, 0.2
    sim_port = free_port()
    config = demo_config(tmp_path, sim_port, codes=["STP", "CAT"], extra={"alerts": {
        "evaluation_interval": "200ms", "default_rules": False,
        "rules": [{**DOWN, "for": "400ms", "severity": "critical",
                   "annotations": {"summary": "{{ labels.target }} ({{ department }})"}}]}})
    app = IocApp(config)
    sink = Recorder()
    app.alerts.sink = sink
    await app.start()
    try:
        await sink.until(lambda alerts: True, 5)  # the engine runs
        assert not any(a.state is AlertState.FIRING for a in sink.last())
        async with aiohttp.ClientSession() as http:
            faults = f"http://127.0.0.1:{sim_port}/_sim/faults"
            headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
            started = clock.monotonic()
            async with http.post(faults, json={"unit": "STP", "fault": "down"},
                                 headers=headers) as response:
                assert response.status < 300
            budget = interval + hold + every + 1.0

            def stp_firing(alerts: list[Alert]) -> bool:
                return any(a.state is AlertState.FIRING and a.label("department") == "STP"
                           for a in alerts)

            await sink.until(stp_firing, 10)
            took = clock.monotonic() - started
            assert took <= budget, f"firing after {took:.2f}s, budget {budget:.2f}s"
            (alert,) = [a for a in sink.last() if a.state is AlertState.FIRING]
            assert alert.label("target") == "stp-health"
            assert dict(alert.annotations)["summary"] == "stp-health (Sở Tư pháp)"
            async with http.delete(f"{faults}/STP", headers=headers) as response:
                assert response.status < 300
            await sink.until(lambda alerts: any(
                a.state is AlertState.RESOLVED and a.fingerprint == alert.fingerprint
                for a in alerts), 10)
    finally:
        await app.stop(grace=1.0)


async def test_edited_annotations_reach_firing_alerts_at_reload_and_restart(
        store_url: str) -> None:
    """The value of a down target never changes, so nothing else would render them again."""
    old = {**DOWN, "annotations": {"summary": "cũ: {{ labels.target }}"}}
    new = {**DOWN, "annotations": {"summary": "mới: {{ labels.target }}",
                                   "runbook_url": "http://ioc.example/runbooks/TargetDown"}}
    cache, sink = SeriesCache(3600, 100), Recorder()
    first = engine(store_url, cache, sink, old)
    await first.load(0)
    down(cache, 0)
    (fired,) = (await first.run_cycle(0)).firing()
    assert dict(fired.annotations)["summary"] == "cũ: stp-portal"
    first.replace_rules(rules(new), 10)                        # a reload
    down(cache, 14)
    (alert,) = (await first.run_cycle(15)).firing()
    assert dict(alert.annotations) == {"summary": "mới: stp-portal",
                                       "runbook_url": "http://ioc.example/runbooks/TargetDown"}
    assert alert.fired_at == 0                                  # still the same alert
    await first.stop()

    # A restart with the old text in the store and a config edited while ioc was down.
    third = {**DOWN, "annotations": {"summary": "sau khi khởi động lại"}}
    second = engine(store_url, SeriesCache(3600, 100), Recorder(), third, warmup=60)
    await second.load(20)
    (held,) = (await second.run_cycle(25)).firing()
    assert dict(held.annotations) == {"summary": "sau khi khởi động lại"}
    await second.stop()
    store = AlertStateStore(store_url)
    await store.open()
    try:
        (row,) = await store.load()
        assert dict(row.annotations) == {"summary": "sau khi khởi động lại"}  # stored too
    finally:
        await store.close()


async def test_warm_up_waits_for_the_first_poll_of_every_target(store_url: str) -> None:
    """Polls slower than the warm-up after a restart: nothing resolves before they answer."""
    cache, sink = SeriesCache(3600, 100), Recorder()
    first = engine(store_url, cache, sink)
    await first.load(0)
    down(cache, 99)
    (fired,) = (await first.run_cycle(100)).firing()
    await first.stop()

    polled = False
    cache2 = SeriesCache(3600, 100)
    second = AlertEngine(rules(DOWN), [cache2], Recorder(), interval=15,
                         registry=CollectorRegistry(), store=AlertStateStore(store_url),
                         warmup=10, data_ready=lambda: polled)
    await second.load(110)
    # past the warm-up's own length, no poll answered yet: still held, not resolved
    (held,) = (await second.run_cycle(130)).alerts
    assert held.state is AlertState.FIRING and held.fingerprint == fired.fingerprint
    # the first poll answers: still down, the alert goes on firing from its old start
    polled = True
    down(cache2, 135)
    (kept,) = (await second.run_cycle(140)).alerts
    assert (kept.state, kept.fired_at) == (AlertState.FIRING, 100)
    await second.stop()


async def test_warm_up_gives_up_waiting_after_its_limit(store_url: str) -> None:
    cache, sink = SeriesCache(3600, 100), Recorder()
    first = engine(store_url, cache, sink)
    await first.load(0)
    down(cache, 99)
    await first.run_cycle(100)
    await first.stop()

    second = AlertEngine(rules(DOWN), [SeriesCache(3600, 100)], Recorder(), interval=15,
                         registry=CollectorRegistry(), store=AlertStateStore(store_url),
                         warmup=10, data_ready=lambda: False)
    await second.load(110)
    assert second.warming_up(200, 110) is True  # within 10 warm-ups
    (resolved,) = (await second.run_cycle(110 + 10 * 10)).alerts
    assert resolved.state is AlertState.RESOLVED
    await second.stop()
