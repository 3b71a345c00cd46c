"""Three real ``ioc run --shard auto`` processes on one PostgreSQL database with the simulator.

One member is killed with SIGKILL: the other two poll its targets again within lease +
interval, counted from the stored polls, and no alert or debounced state flaps (a target down
stays down and is told once; a flapping one under the debounce stays up). It is started again:
it takes its old slot and only its share moves back. Then every session of another member is
ended with ``pg_terminate_backend``: it stops polling, says so in its log, rejoins, and the
stored polls show no target polled twice for more than one interval at any change."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from collectors.simulator import start_simulator, units
from ioc.scheduler import anchored_start
from ioc.sharding import owner_among
from tests.conftest import SIM_TOKEN, free_port
from tests.scale.auto_shard import (
    coverage,
    first_poll_after,
    polled_here,
    share,
    stored_polls,
    target_name,
    terminate_sessions,
    write_auto_config,
)
from tests.scale.leader_processes import (
    Instance,
    Receiver,
    fault,
    poll,
    start_instance,
    stop_instances,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

INTERVAL = 1.0
FLUSH = 0.2  # storage.flush_interval of write_auto_config
LEASE = 4.0
SLOTS = [0, 1, 2]


def pick_codes() -> tuple[list[str], str, str]:
    """Nine units; among them one that will be down and one flapping, both owned by slot 1
    (the member the test kills), so the takeover is of targets with a state to keep."""
    codes = [u.code for u in units()]
    ones = [c for c in codes if owner_among(target_name(c), SLOTS) == 1]
    down, flapping = ones[0], ones[1]
    others = [c for c in codes if c not in (down, flapping)][:7]
    return [down, flapping, *others], down, flapping


async def owns(session: aiohttp.ClientSession, inst: Instance, slot: int,
               expected: set[str]) -> bool:
    got_slot, polled = await polled_here(session, inst.url)
    return got_slot == slot and polled == expected


async def test_members_cover_for_a_killed_one_and_a_cut_off_one(
        tmp_path: Path, postgres_url: str) -> None:
    codes, down, flapping = pick_codes()
    targets = [target_name(c) for c in codes]
    receiver = Receiver()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    hook_runner = web.AppRunner(hook_app)
    await hook_runner.setup()
    hook_port = free_port()
    await web.TCPSite(hook_runner, "127.0.0.1", hook_port).start()
    sim_port = free_port()
    sim = await start_simulator("127.0.0.1", sim_port, token=SIM_TOKEN, latency_scale=0)
    sim_url = f"http://127.0.0.1:{sim_port}"
    config = write_auto_config(tmp_path, postgres_url, sim_port, codes=codes,
                               interval=INTERVAL, lease=LEASE,
                               hook_url=f"http://127.0.0.1:{hook_port}/hook")
    instances: list[Instance] = []
    moments: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            await fault(session, sim_url, down, "down")
            await fault(session, sim_url, flapping, "flapping")
            # one after another: slots 0, 1, 2 in order of start
            for index in range(3):
                instances.append(await start_instance(
                    config, tmp_path / f"member{index}.log", shard="auto"))
            for slot, inst in enumerate(instances):
                await poll(lambda s=slot, i=inst: owns(session, i, s,
                                                       share(targets, s, SLOTS)))
            await receiver.until(lambda r: len(r.accepted) >= 1)  # the down target, told
            moments["steady"] = time.time()
            await asyncio.sleep(3 * INTERVAL)

            # kill -9 the member of slot 1: slots 0 and 2 take its share
            victim = instances[1]
            before_kill = await (await session.get(f"{victim.url}/metrics")).text()
            moments["kill"] = time.time()
            victim.proc.kill()
            await victim.proc.wait()
            for slot, inst in ((0, instances[0]), (2, instances[2])):
                await poll(lambda s=slot, i=inst: owns(session, i, s,
                                                       share(targets, s, [0, 2])))
            await asyncio.sleep(4 * INTERVAL)

            # it returns: slot 1 again, and only its share moves back
            moments["restart"] = time.time()
            instances[1] = await start_instance(config, tmp_path / "member1-again.log",
                                                shard="auto")
            moments["restarted"] = time.time()
            for slot, inst in enumerate(instances):
                await poll(lambda s=slot, i=inst: owns(session, i, s,
                                                       share(targets, s, SLOTS)))
            await asyncio.sleep(4 * INTERVAL)

            # every session of slot 2's process ended by the server
            cut = instances[2]
            moments["terminate"] = time.time()
            assert await terminate_sessions(postgres_url, cut.proc.pid) >= 1
            await poll(lambda: asyncio.sleep(0, "shard membership lost" in cut.tail()))
            await poll(lambda: owns(session, cut, 2, share(targets, 2, SLOTS)))
            moments["rejoined"] = time.time()
            async with session.get(f"{cut.url}/readyz") as resp:
                assert (await resp.json())["checks"]["shard"] == "ok"
            await asyncio.sleep(4 * INTERVAL)
            moments["end"] = time.time()
            metrics = [await (await session.get(f"{i.url}/metrics")).text()
                       for i in instances]
    finally:
        codes_out = await stop_instances(instances)
        await sim.cleanup()
        await hook_runner.cleanup()
    assert codes_out == [0, 0, 0]

    start, end = moments["steady"], moments["end"]
    ups = stored_polls(postgres_url, start, end)
    states = stored_polls(postgres_url, start, end, "ioc_target_state_up")
    polls, state_polls = await ups, await states
    assert set(polls) == set(targets)
    bound = LEASE + INTERVAL
    # a poll may be missed while a target moves: after the kill (and just before it: what
    # the killed member polled but had not yet stored died with it), while the returning
    # member joins, and while the cut-off one is away; never elsewhere
    unstored = FLUSH + INTERVAL
    allowed = [(moments["kill"] - unstored, moments["kill"] + bound),
               (moments["restart"], moments["restarted"] + bound),
               (moments["terminate"], moments["rejoined"] + bound)]
    victims = share(targets, 1, SLOTS)
    cut_off = share(targets, 2, SLOTS)
    # A slot a scheduler did not run (its loop woke late on this busy machine, or the
    # previous poll still ran) is no loss of a move: those are counted by the schedulers.
    unscheduled = sum(_value(text, name) for text in (before_kill, *metrics)
                      for name in ("ioc_scheduler_coalesced_polls_total",
                                   "ioc_scheduler_skipped_polls_total"))
    lost: list[tuple[str, float]] = []
    for target, rows in polls.items():
        stamps = [ts for ts, _ in rows]
        cov = coverage(stamps, INTERVAL, allowed, anchored_start(target, INTERVAL, 0.0))
        # every member polls a target on the same grid, so two pollers show as two polls
        # in one slot: at most one per move (a check's latency), never a run of them
        moves = 2 * (target in victims) + 2 * (target in cut_off)
        assert cov.double <= moves, (target, cov)
        lost += [(target, at) for at in cov.lost_at]
        if target in victims:
            taken = first_poll_after(stamps, moments["kill"])
            assert taken is not None and taken - moments["kill"] <= bound, (target, taken)
    # no slot missed outside a change's window, but for those the schedulers did not run
    assert len(lost) <= unscheduled, (
        unscheduled, [(t, round(at - start, 2)) for t, at in lost],
        {k: round(v - start, 2) for k, v in moments.items()})
    # no flaps: the down target's debounced state stayed down, the flapping one's stayed up
    assert {v for _, v in state_polls[target_name(down)]} == {0.0}
    assert {v for _, v in state_polls[target_name(flapping)]} == {1.0}
    assert {v for _, v in polls[target_name(flapping)]} == {0.0, 1.0}
    for target in targets:
        if target != target_name(down):
            assert {v for _, v in state_polls[target]} == {1.0}, target
    # told once that the down target is down; nothing resolved, nothing else
    told = [(p["status"], a["labels"]["target"]) for p in receiver.delivered()
            for a in p["alerts"]]
    assert told == [("firing", target_name(down))]
    for inst in instances:
        assert "target recovered" not in inst.log.read_text(errors="replace")
    # the survivors counted the takeover; the restarted member took nothing over
    takeovers = [_value(text, "ioc_shard_takeovers_total") for text in metrics]
    assert takeovers[0] + takeovers[2] >= len(victims)
    assert takeovers[1] <= len(cut_off)
    assert [_value(text, "ioc_shard_members") for text in metrics] == [3, 3, 3]


def _value(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")
