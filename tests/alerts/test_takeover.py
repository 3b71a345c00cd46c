"""A new alert leader (or a restarted ioc) starts from the stores alone and loses nothing.

The previous leader may die after its engine resolved an alert but before delivery's group
flushed the resolution: the resolved row it kept lets the next leader tell it, once; a later
start hands it over again and the notification log keeps it from being told twice. Operator
writes made through another instance reach this one at its next refresh. On SQLite and on
PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from alerts.dispatcher import Dispatcher, build_dispatcher
from alerts.engine import AlertEngine
from alerts.rules import RuleConfig, compile_rules
from ioc.cache import SeriesCache
from ioc.metrics import DeliveryMetrics
from ioc.model import Sample, make_labels
from ioc.store.alert_state import AlertRow, AlertStateStore
from service.alert_role import shown_alert
from service.config import Config, parse_config

T0 = 1_800_000_000.0
LABELS = make_labels(target="stp-health", department="STP", kind="http")
DOWN = {"name": "TargetDown", "metric": "ioc_target_up", "op": "==", "threshold": 0}


def config(url: str) -> Config:
    raw: dict[str, Any] = {
        "storage": {"url": url},
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "alerts": {
            "default_rules": False, "rules": [DOWN],
            # A long group interval: a resolution waits in memory until the next flush.
            "route": {"receiver": "oncall", "group_by": ["alertname"], "group_wait": "0s",
                      "group_interval": "10m", "repeat_interval": "1h"},
            "receivers": [{"name": "oncall", "webhook": [{"url": "http://127.0.0.1:9/h"}]}],
        },
    }
    return parse_config(raw, env={})


class Instance:
    """One ioc's engine and delivery on the shared store, driven with time passed in."""

    def __init__(self, url: str, now: list[float]) -> None:
        self.cache = SeriesCache(3600, 100)
        cfg = config(url)
        self.dispatcher: Dispatcher = build_dispatcher(
            cfg, DeliveryMetrics(CollectorRegistry()), lambda: now[0])
        self.engine = AlertEngine(
            compile_rules([(RuleConfig.model_validate(DOWN), "test")]), [self.cache],
            self.dispatcher, interval=15, registry=CollectorRegistry(),
            store=AlertStateStore(url), keep_resolved_for=700)

    async def lead(self, now: float) -> None:
        await self.dispatcher.open()
        await self.dispatcher.load_log()
        await self.engine.load(now)

    async def cycle(self, now: float, up: float | None = None) -> None:
        if up is not None:
            self.cache.add([Sample("ioc_target_up", LABELS, up, now - 1)])
        await self.engine.run_cycle(now)
        await self.dispatcher.flush(now)

    async def close(self) -> None:
        """Gone without a goodbye: nothing more is written (as after kill -9)."""
        await self.engine.stop(persist=False)
        await self.dispatcher.stop()


async def statuses(inst: Instance) -> list[str]:
    rows = await inst.dispatcher.store.recent(limit=10)
    return [row.status for row in reversed(rows)]


async def test_a_resolution_not_yet_told_survives_the_leader(store_url: str) -> None:
    now = [T0]
    first = Instance(store_url, now)
    await first.lead(T0)
    await first.cycle(T0, up=0)
    assert await statuses(first) == ["firing"]
    now[0] = T0 + 30
    await first.cycle(T0 + 30, up=1)  # resolved; its group flushes only at T0 + 600
    assert await statuses(first) == ["firing"]
    await first.close()  # the leader dies with the resolution in memory

    second = Instance(store_url, now)
    now[0] = T0 + 60
    await second.lead(T0 + 60)
    await second.cycle(T0 + 60, up=1)
    assert await statuses(second) == ["firing", "resolved"]
    (told,) = [r for r in await second.dispatcher.store.recent(limit=10)
               if r.status == "resolved"]
    assert told.payload["alerts"][0]["ends_at"] == T0 + 30  # when it really resolved
    await second.close()

    third = Instance(store_url, now)  # handed the resolution again: the log says it was told
    now[0] = T0 + 90
    await third.lead(T0 + 90)
    await third.cycle(T0 + 90, up=1)
    assert await statuses(third) == ["firing", "resolved"]

    # Kept no longer than the hold: then pruned.
    store = third.engine.store
    assert store is not None
    assert len(await store.load_resolved()) == 1
    now[0] = T0 + 30 + 701
    await third.cycle(now[0], up=1)
    assert await store.load_resolved() == []
    await third.close()


async def test_operator_writes_through_another_instance_reach_this_one(
        store_url: str) -> None:
    now = [T0]
    leader, follower = Instance(store_url, now), Instance(store_url, now)
    await leader.lead(T0)
    await follower.dispatcher.open()
    try:
        silence = await follower.dispatcher.add_silence(
            ['department="STP"'], starts_at=T0, ends_at=T0 + 3600, created_by="ca-truc",
            comment="bảo trì", now=T0)
        window = await follower.dispatcher.add_maintenance(
            department="STP", starts_at=T0, ends_at=T0 + 600, comment="nâng cấp",
            created_by="ca-truc", now=T0)
        assert silence.id not in leader.dispatcher.silences
        await leader.dispatcher.refresh(T0 + 1)
        assert leader.dispatcher.silences[silence.id].comment == "bảo trì"
        assert leader.dispatcher.windows[window.id].comment == "nâng cấp"

        await leader.cycle(T0 + 2, up=0)
        assert await statuses(leader) == []  # silenced through the follower: nobody paged
        (firing,) = leader.dispatcher.alerts.values()
        # The follower shows the leader's stored alert and can acknowledge it.
        (row,) = await stored_alerts(store_url)
        follower.dispatcher.show([shown_alert(row, T0 + 3)])
        ack = await follower.dispatcher.acknowledge(firing.fingerprint, by="ca-truc",
                                                    comment="đang xử lý", now=T0 + 3,
                                                    duration=3600)
        assert ack is not None
        await leader.dispatcher.refresh(T0 + 4)
        assert leader.dispatcher.acks[firing.fingerprint].by == "ca-truc"
        ended = await follower.dispatcher.expire_silence(silence.id, by="ca-truc", now=T0 + 5)
        assert ended is not None
        await leader.dispatcher.refresh(T0 + 6)
        assert leader.dispatcher.silences[silence.id].ends_at == T0 + 5
    finally:
        await leader.close()
        await follower.close()


async def stored_alerts(url: str) -> list[AlertRow]:
    store = AlertStateStore(url)
    await store.open()
    try:
        return await store.load()
    finally:
        await store.close()
