"""Every shard's wall and status API show every target: two in-process instances, one
PostgreSQL database, the simulator. Each lists the other's targets with the states their owner
stored, a fault on the other shard's target shows as down (in the API and as a tile on the
wall's stream), and ``/metrics`` still exports only what each instance polled itself."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from collectors.simulator import start_simulator, units
from ioc.model import Sample, make_labels
from ioc.sharding import Shard
from ioc.status import StatusBoard, TargetState
from ioc.store import SqlStore
from ioc.store.tail import TailStore
from service.app import IocApp
from service.config import Config, parse_config
from service.shared_board import SharedBoard
from tests.conftest import SIM_TOKEN, free_port
from tests.web.test_stream import events, next_event

pytestmark = [pytest.mark.postgres]

COUNT = 2
CODES = [u.code for u in units()][:8]
TARGETS = [f"{code.lower()}-health" for code in CODES]
DEADLINE = 30.0  # seconds: generous on a loaded 2-core machine


def shard_config(db_url: str, sim_port: int, index: int) -> Config:
    return parse_config({
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": db_url, "flush_interval": "100ms"},
        "collection": {"interval": "300ms", "timeout": "250ms", "shard": f"{index}/{COUNT}"},
        "alerts": {"evaluation_interval": "1s"},
        "wall": {"heartbeat": "200ms"},
        "departments": [{"code": code, "name": code} for code in CODES],
        "collectors": [{"type": "http", "name": name, "department": code,
                        "url": f"http://127.0.0.1:{sim_port}/{code}/health"}
                       for code, name in zip(CODES, TARGETS, strict=True)],
    }, env={})


@pytest.fixture
async def shards(postgres_url: str) -> AsyncIterator[tuple[list[IocApp], str]]:
    assert all(Shard(i, COUNT).select(TARGETS) for i in range(COUNT))  # both have a share
    sim_port = free_port()
    simulator = await start_simulator("127.0.0.1", sim_port, token=SIM_TOKEN,
                                      latency_scale=0)
    apps: list[IocApp] = []
    try:
        for index in range(COUNT):  # the first creates the schema
            app = IocApp(shard_config(postgres_url, sim_port, index))
            await app.start()
            apps.append(app)
        yield apps, f"http://127.0.0.1:{sim_port}"
    finally:
        for app in apps:
            await app.stop(grace=1.0)
        await simulator.cleanup()


async def status(session: aiohttp.ClientSession, app: IocApp) -> dict[str, dict[str, Any]]:
    async with session.get(f"{app.url}/api/v1/status") as resp:
        assert resp.status == 200
        body = await resp.json()
    return {row["name"]: row for row in body["targets"]}


async def until_status(session: aiohttp.ClientSession, app: IocApp,
                       done: Any) -> dict[str, dict[str, Any]]:
    """Poll the status API until ``done(rows)``; the wait is bounded, never a fixed sleep."""
    async with asyncio.timeout(DEADLINE):
        while True:
            rows = await status(session, app)
            if done(rows):
                return rows
            await asyncio.sleep(0.1)


async def stored_up(db_url: str) -> dict[tuple[str, int], float]:
    """Every stored ``ioc_target_up`` sample: (target, ts in ms) -> value."""
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    try:
        rows = await conn.fetch(
            "SELECT s.labels, x.ts, x.value FROM ioc_samples x "
            "JOIN ioc_series s ON s.id = x.series_id WHERE s.metric = 'ioc_target_up'")
    finally:
        await conn.close()
    return {(row["labels"].split('target="', 1)[1].split('"', 1)[0], row["ts"]): row["value"]
            for row in rows}


async def test_each_shard_shows_every_target_from_the_shared_store(
        shards: tuple[list[IocApp], str], postgres_url: str) -> None:
    apps, sim = shards
    async with aiohttp.ClientSession() as session:
        for index, app in enumerate(apps):
            rows = await until_status(session, app, lambda r: set(r) == set(TARGETS) and all(
                row["up"] is True for row in r.values()))
            mine = set(Shard(index, COUNT).select(TARGETS))
            for name, row in rows.items():
                assert row["remote"] is (name not in mine), name
                assert row["shard"] == (index if name in mine
                                        else 1 - index), name
                assert row["stale"] is False, name

        # What a shard shows of the other's targets is what their owner stored: the poll
        # it shows started at a stored ioc_target_up sample with the same verdict.
        stored = await stored_up(postgres_url)
        for index, app in enumerate(apps):
            for name, row in (await status(session, app)).items():
                if not row["remote"]:
                    continue
                started = round((row["last_check"] - row["latency_seconds"]) * 1000)
                assert stored.get((name, started)) == 1.0, (index, name, row)
                assert row["raw_up"] is True and row["consecutive_successes"] >= 1

        # A fault on a target only shard 1 polls shows on shard 0: status API and wall tile.
        victim = Shard(1, COUNT).select(TARGETS)[0]
        code = CODES[TARGETS.index(victim)]
        async with session.get(f"{apps[0].url}/api/v1/stream") as stream_resp:
            stream = events(stream_resp)
            async with session.post(f"{sim}/_sim/faults", json={
                    "unit": code, "fault": "error", "status": 503},
                    headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
            tile = await next_event(stream, "tile", lambda d: d["code"] == code
                                    and d["state"] == "down", limit=DEADLINE)
            assert tile["data"]["html"]["vi"]
        rows = await until_status(session, apps[0], lambda r: r[victim]["up"] is False)
        row = rows[victim]
        assert row["remote"] is True and row["raw_up"] is False
        assert row["consecutive_failures"] >= 1
        assert apps[1].board.targets[victim].up is False  # as its owner sees it
        assert all(r["up"] is True for n, r in rows.items() if n != victim)

        # /metrics: each instance exports only the targets it polled itself.
        for index, app in enumerate(apps):
            async with session.get(f"{app.url}/metrics") as resp:
                text = await resp.text()
            exported = set(re.findall(r'^ioc_target_up\{[^}]*target="([^"]+)"', text, re.M))
            assert exported == set(Shard(index, COUNT).select(TARGETS)), index
            # The board also holds the other shard's targets (remote): not exported here.
            exported = set(re.findall(
                r'^ioc_collector_last_success_timestamp_seconds\{target="([^"]+)"', text, re.M))
            assert exported == set(Shard(index, COUNT).select(TARGETS)), index


async def test_a_stopped_owner_goes_stale_on_the_other_shard(
        shards: tuple[list[IocApp], str]) -> None:
    apps, _ = shards
    theirs = Shard(1, COUNT).select(TARGETS)
    async with aiohttp.ClientSession() as session:
        await until_status(session, apps[0], lambda r: all(
            r[n]["up"] is True for n in theirs))
        owner = apps.pop()
        await owner.stop(grace=1.0)  # its owner stops: nothing new is stored for them
        rows = await until_status(session, apps[0], lambda r: all(
            r[n]["stale"] for n in theirs))
    for name in theirs:  # the last stored state stays, dimmed as stale
        assert rows[name]["up"] is True and rows[name]["remote"] is True
    assert not any(row["stale"] for name, row in rows.items() if name not in theirs)


async def test_board_records_each_stored_poll_once_and_unknown_until_one(
        postgres_url: str) -> None:
    """The reader alone: no stored poll leaves a remote target unknown; each stored poll is
    recorded once however often the overlap reads it; the debounced state comes from
    ``ioc_target_state_up``; this shard's own targets are never touched."""
    now = float(int(time.time()))  # today: the day's sample partition exists
    store = SqlStore(postgres_url)
    await store.open()
    board = StatusBoard()
    theirs, mine = "theirs-health", "mine-health"
    board.register(TargetState(theirs, "STP", "http", 30.0, shard=1, remote=True))
    board.register(TargetState(mine, "STP", "http", 30.0, shard=0))
    updates: list[set[str]] = []
    reader = SharedBoard(TailStore(postgres_url), board, every=1.0, overlap=60.0,
                         backfill=600.0, on_update=lambda d, _: updates.append(set(d)))
    await reader.store.open()
    try:
        assert await reader.poll(now) == set()
        assert board.targets[theirs].up is None  # "chưa có dữ liệu"

        labels = {name: make_labels(target=name, department="STP", kind="http")
                  for name in (theirs, mine)}
        await store.append([
            Sample("ioc_target_up", labels[theirs], 1.0, now - 40),
            Sample("ioc_target_state_up", labels[theirs], 1.0, now - 40),
            Sample("ioc_probe_duration_seconds", labels[theirs], 0.5, now - 40),
            Sample("ioc_target_up", labels[theirs], 0.0, now - 10),
            Sample("ioc_target_state_up", labels[theirs], 1.0, now - 10),  # debounced: up
            Sample("ioc_probe_duration_seconds", labels[theirs], 0.25, now - 10),
            Sample("ioc_target_up", labels[mine], 0.0, now - 10),
        ])
        assert await reader.poll(now + 1) == {"STP"}
        assert await reader.poll(now + 2) == set()  # the overlap reads them again
        state = board.targets[theirs]
        assert (state.raw_up, state.up) == (False, True)
        assert state.last_check == now - 10 + 0.25 and state.latency == 0.25
        assert state.last_success == now - 40 + 0.5
        assert (state.consecutive_failures, state.consecutive_successes) == (1, 0)
        assert board.targets[mine].last_check is None  # its own: the pipeline's alone
        assert updates == [{"STP"}]
    finally:
        await reader.store.close()
        await store.close()
