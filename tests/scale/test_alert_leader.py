"""One alert leader among real ``ioc run`` processes sharing one PostgreSQL database.

* two instances: exactly one leads (``ioc_alert_leader`` on each ``/metrics``), the follower
  shows the leader's firing alert, and the webhook hears the firing and the resolution once;
* the leader killed with SIGKILL while its firing notification waits in the outbox (the
  receiver refuses it): the follower leads within two evaluation intervals, delivers that very
  notification (same dedup key), then the resolution, and nothing is told twice;
* two shards: the leader fires for a target only the *other* shard polls (the store tail).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.simulator import start_simulator
from ioc.sharding import Shard
from tests.conftest import SIM_TOKEN, free_port
from tests.scale.leader_processes import (
    Instance,
    Receiver,
    fault,
    firing_alerts,
    metric,
    poll,
    start_instance,
    stop_instances,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CODES = ["STP", "CAT", "SYT", "SNV"]


@pytest.fixture
async def receiver(aiohttp_server: Any) -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = await aiohttp_server(app)
    yield hook, str(server.make_url("/hook"))


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    port = free_port()
    runner = await start_simulator("127.0.0.1", port, token=SIM_TOKEN, latency_scale=0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def sim_port(sim: str) -> int:
    return int(sim.rsplit(":", 1)[1])


async def leaders(session: aiohttp.ClientSession, instances: list[Instance]) -> list[float]:
    return [await metric(session, inst, "ioc_alert_leader") or 0.0 for inst in instances]


def explain(instances: list[Instance], hook: Receiver) -> str:
    logs = "\n".join(f"--- {inst.url}\n{inst.tail()}" for inst in instances)
    return f"attempts: {[(p['status'], p['dedupKey']) for p in hook.attempts]}\n{logs}"


async def test_two_instances_one_leader_one_notification(
        tmp_path: Path, postgres_url: str, receiver: tuple[Receiver, str],
        simulator: str) -> None:
    hook, hook_url = receiver
    config = write_config(tmp_path, postgres_url, sim_port(simulator), hook_url,
                          codes=CODES, evaluation=0.5)
    instances: list[Instance] = []
    try:
        # The first creates the schema and leads from its start; the second follows.
        instances.append(await start_instance(config, tmp_path / "a.log"))
        instances.append(await start_instance(config, tmp_path / "b.log"))
        leader, follower = instances
        async with aiohttp.ClientSession() as session:
            assert await leaders(session, instances) == [1.0, 0.0]

            await fault(session, simulator, "STP", "down")
            await hook.until(lambda h: any(p["status"] == "firing" for p in h.accepted))

            async def follower_shows() -> list[dict[str, Any]]:
                return await firing_alerts(session, follower)

            (shown,) = await poll(follower_shows)
            assert shown["labels"]["target"] == "stp-health"
            assert [a["fingerprint"] for a in await firing_alerts(session, leader)] == \
                [shown["fingerprint"]]
            # Several group intervals in which a second sender would have told it again.
            await asyncio.sleep(3.0)
            assert [p["status"] for p in hook.delivered()] == ["firing"], explain(instances,
                                                                                   hook)

            await fault(session, simulator, "STP", None)
            await hook.until(lambda h: any(p["status"] == "resolved" for p in h.accepted))
            assert await leaders(session, instances) == [1.0, 0.0]
        assert [p["status"] for p in hook.delivered()] == ["firing", "resolved"]
        assert hook.duplicates() == {}
    except BaseException:
        print(explain(instances, hook))
        raise
    finally:
        codes = await stop_instances(instances)
    assert codes == [0, 0]


async def test_kill_9_of_the_leader_mid_firing(tmp_path: Path, postgres_url: str,
                                               receiver: tuple[Receiver, str],
                                               simulator: str) -> None:
    evaluation = 1.0
    hook, hook_url = receiver
    hook.accept = False  # the firing notification stays in the leader's outbox
    config = write_config(tmp_path, postgres_url, sim_port(simulator), hook_url,
                          codes=CODES, evaluation=evaluation)
    instances: list[Instance] = []
    try:
        instances.append(await start_instance(config, tmp_path / "a.log"))
        instances.append(await start_instance(config, tmp_path / "b.log"))
        leader, follower = instances
        async with aiohttp.ClientSession() as session:
            assert await leaders(session, instances) == [1.0, 0.0]
            await fault(session, simulator, "STP", "down")
            await hook.until(lambda h: len(h.attempts) >= 2)  # refused, and retried
            pending_key = hook.attempts[0]["dedupKey"]
            assert hook.attempts[0]["status"] == "firing"

            leader.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await leader.proc.wait()

            async def follower_leads() -> bool:
                return await metric(session, follower, "ioc_alert_leader") == 1.0

            await poll(follower_leads, every=0.02)
            took = time.monotonic() - killed
            print(f"takeover {took:.2f} s after kill -9 "
                  f"(evaluation interval {evaluation:g} s)")
            # Within two evaluation intervals; the extra second is for a loaded machine
            # scheduling the processes and for this test's own polling.
            assert took <= 2 * evaluation + 1.0, explain(instances, hook)

            hook.accept = True
            await hook.until(lambda h: bool(h.accepted))
            # The new leader sent the notification the old one had queued, not a new one.
            assert [(p["status"], p["dedupKey"]) for p in hook.accepted] == \
                [("firing", pending_key)], explain(instances, hook)
            assert [a["labels"]["target"] for a in hook.accepted[0]["alerts"]] == \
                ["stp-health"]

            await fault(session, simulator, "STP", None)
            await hook.until(lambda h: any(p["status"] == "resolved" for p in h.accepted))
            await asyncio.sleep(2.0)  # two group intervals in which a re-page would come
        assert [p["status"] for p in hook.delivered()] == ["firing", "resolved"], \
            explain(instances, hook)
        assert hook.duplicates() == {}
    except BaseException:
        print(explain(instances, hook))
        raise
    finally:
        codes = await stop_instances(instances)
    assert codes == [-signal.SIGKILL, 0]


async def test_sharded_leader_fires_for_the_other_shards_target(
        tmp_path: Path, postgres_url: str, receiver: tuple[Receiver, str],
        simulator: str) -> None:
    hook, hook_url = receiver
    others = [c for c in CODES if Shard(1, 2).owns(f"{c.lower()}-health")]
    assert others, "no target of shard 1 among CODES"
    unit = others[0]
    target = f"{unit.lower()}-health"
    config = write_config(tmp_path, postgres_url, sim_port(simulator), hook_url,
                          codes=CODES, evaluation=0.5)
    instances: list[Instance] = []
    try:
        instances.append(await start_instance(config, tmp_path / "a.log", shard="0/2"))
        instances.append(await start_instance(config, tmp_path / "b.log", shard="1/2"))
        leader, _ = instances
        async with aiohttp.ClientSession() as session:
            assert await leaders(session, instances) == [1.0, 0.0]
            async with session.get(f"{leader.url}/api/v1/status") as resp:
                polled = {row["name"] for row in (await resp.json())["targets"]
                          if not row["remote"]}
            assert target not in polled  # the leader never polls it itself

            await fault(session, simulator, unit, "down")
            await hook.until(lambda h: any(p["status"] == "firing" for p in h.accepted))
            (alert,) = hook.accepted[0]["alerts"]
            assert alert["labels"]["target"] == target
            # Read from the store for the rules only: /metrics shows what this shard polls.
            async with session.get(f"{leader.url}/metrics") as resp:
                assert f'target="{target}"' not in await resp.text()

            await fault(session, simulator, unit, None)
            await hook.until(lambda h: any(p["status"] == "resolved" for p in h.accepted))
        assert [p["status"] for p in hook.delivered()] == ["firing", "resolved"]
        assert hook.duplicates() == {}
    except BaseException:
        print(explain(instances, hook))
        raise
    finally:
        codes = await stop_instances(instances)
    assert codes == [0, 0]
