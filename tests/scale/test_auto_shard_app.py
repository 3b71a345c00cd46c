"""Two in-process ``--shard auto`` instances on one PostgreSQL database and the simulator, their
membership checks driven one at a time by the test: what each change does to the app — its
runners, its status board, ``/readyz``, and the state a taken-over target resumes from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from collectors.simulator import start_simulator, units
from ioc import clock
from ioc.leader import election_dsn
from service.app import IocApp
from service.config import Config, parse_config
from tests.conftest import SIM_TOKEN, PollWatcher, free_port
from tests.scale.auto_shard import share
from tests.scale.leader_processes import fault

pytestmark = [pytest.mark.postgres]

CODES = [u.code for u in units()][:8]
TARGETS = [f"{code.lower()}-health" for code in CODES]
DEADLINE = 30.0


def auto_config(db_url: str, sim_port: int, codes: list[str] = CODES) -> Config:
    return parse_config({
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": db_url, "flush_interval": "100ms"},
        "collection": {"interval": "300ms", "timeout": "250ms", "shard": "auto",
                       "shard_lease": "30s"},
        "alerts": {"evaluation_interval": "1s"},
        "wall": {"heartbeat": "200ms"},
        "departments": [{"code": code, "name": code} for code in codes],
        "collectors": [{"type": "http", "name": f"{code.lower()}-health", "department": code,
                        "url": f"http://127.0.0.1:{sim_port}/{code}/health",
                        "failure_threshold": 2, "recovery_threshold": 2}
                       for code in codes],
    }, env={})


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[IocApp, IocApp, str]]:
    sim_port = free_port()
    simulator = await start_simulator("127.0.0.1", sim_port, token=SIM_TOKEN, latency_scale=0)
    apps: list[IocApp] = []
    try:
        for _ in range(2):  # the first creates the schema, and takes slot 0
            app = IocApp(auto_config(postgres_url, sim_port))
            app.pipeline.add_hook(PollWatcher())
            await app.start()
            assert app.membership is not None
            await app.membership.halt()  # from here on the test runs each check
            apps.append(app)
        yield apps[0], apps[1], str(sim_port)
    finally:
        for app in apps:
            await app.stop(grace=1.0)
        await simulator.cleanup()


async def check(*apps: IocApp) -> None:
    for app in apps:
        assert app.membership is not None
        await app.membership.step()


async def readyz(session: aiohttp.ClientSession, app: IocApp) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{app.url}/readyz") as resp:
        return resp.status, (await resp.json())["checks"]


async def test_a_cut_off_member_stops_and_its_share_resumes_from_the_stored_state(
        pair: tuple[IocApp, IocApp, str], postgres_url: str) -> None:
    a, b, sim_port = pair
    sim = f"http://127.0.0.1:{sim_port}"
    assert a.membership is not None and b.membership is not None
    await check(a, b)
    assert (a.membership.slot, b.membership.slot) == (0, 1)
    mine_b = share(TARGETS, 1, [0, 1])
    assert set(a.runners) == share(TARGETS, 0, [0, 1]) and set(b.runners) == mine_b
    for app, own in ((a, 0), (b, 1)):  # every target on each board, with its poller's slot
        assert {n: s.shard for n, s in app.board.targets.items()} == {
            t: (0 if t in share(TARGETS, 0, [0, 1]) else 1) for t in TARGETS}
        assert all(s.remote == (s.shard != own) for s in app.board.targets.values())

    down = sorted(mine_b)[0]
    async with aiohttp.ClientSession() as session:
        await fault(session, sim, CODES[TARGETS.index(down)], "down")
        # b sees it down (two failures in a row), stores it, and a reads that from the store
        await watcher(b).until(lambda seen: sum(
            1 for o in seen if o.target == down and o.state_up is False) >= 1, DEADLINE)
        await b.writer.flush()
        assert a.shared_board is not None
        await a.shared_board.poll(clock.now())
        assert a.board.targets[down].up is False
        assert a.board.targets[down].consecutive_failures >= 1

        # every session of b's membership ended by the server
        conn = b.membership._conn
        assert conn is not None
        admin = await asyncpg.connect(election_dsn(postgres_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)",
                                        conn.get_server_pid())
        finally:
            await admin.close()
        await check(b)
        assert b.runners == {} and b.scheduler.job_names() == set()
        assert all(state.remote for state in b.board.targets.values())
        status, checks = await readyz(session, b)
        assert status == 503 and checks["shard"].startswith("lost: ")
        assert b.registry.get_sample_value("ioc_shard_member") == 0

        # a takes b's share over, each target from the state b stored
        await check(a)
        assert set(a.runners) == set(TARGETS)
        assert not any(state.remote for state in a.board.targets.values())
        runner = a.runners[down]
        assert runner.flap.state is False and runner.flap.failures >= 1  # no fresh "down"
        assert a.registry.get_sample_value("ioc_shard_takeovers_total") == len(mine_b)
        await watcher(a).until(lambda seen: any(o.target == down for o in seen), DEADLINE)
        assert a.board.targets[down].up is False  # still down, never "recovered" between

        # b rejoins: ready again, and its share comes back one check later
        await check(b)
        status, checks = await readyz(session, b)
        assert status == 200 and checks["shard"] == "ok"
        assert b.membership.slot == 1 and b.runners == {}
        await check(a)
        assert set(a.runners) == share(TARGETS, 0, [0, 1])
        # what a let go leaves its /metrics: b exports it now
        assert not any(("target", down) in labels
                       for labels, _ in a.cache.series("ioc_target_up"))
        await check(b)
        assert set(b.runners) == mine_b
        assert b.runners[down].flap.state is False
    # released twice: when b first joined, and when it came back
    assert a.registry.get_sample_value(
        "ioc_shard_ownership_changes_total", {"change": "released"}) == 2 * len(mine_b)


def watcher(app: IocApp) -> PollWatcher:
    (found,) = [h for h in app.pipeline.hooks if isinstance(h, PollWatcher)]
    return found


async def test_targets_a_reload_adds_or_removes_go_to_their_owner(
        pair: tuple[IocApp, IocApp, str], postgres_url: str) -> None:
    a, b, sim_port = pair
    await check(a, b)
    await check(a, b)
    extra = [u.code for u in units()][8:12]
    more = [f"{code.lower()}-health" for code in extra]
    bigger = auto_config(postgres_url, int(sim_port), CODES + extra)
    for app in (a, b):
        result = await app.reload(bigger)
        assert result.ok and sorted(result.added) == sorted(more)
        assert not set(more) & set(app.runners)  # shown as another's until a check
    await check(a, b)
    for app, slot in ((a, 0), (b, 1)):
        assert set(app.runners) == share(TARGETS + more, slot, [0, 1])
        for name in more:
            assert app.board.targets[name].shard == (0 if name in a.runners else 1)
    assert set(a.runners) | set(b.runners) == set(TARGETS + more)

    for app in (a, b):
        assert (await app.reload(auto_config(postgres_url, int(sim_port)))).ok
    await check(a, b)
    assert set(a.runners) | set(b.runners) == set(TARGETS)
    assert not set(more) & (set(a.board.targets) | set(b.board.targets))

