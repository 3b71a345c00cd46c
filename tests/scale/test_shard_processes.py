"""Two and three real ``ioc run --shard i/N`` processes, one PostgreSQL database, the simulator:
every target is polled by exactly one shard, once per interval."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml
from sqlalchemy.engine import make_url

from collectors.simulator import start_simulator, units
from ioc.sharding import Shard
from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).parents[2]
INTERVAL = 0.5
WINDOW = 4.0
CODES = [u.code for u in units()][:18]


def shard_config(tmp_path: Path, db_url: str, sim_port: int) -> Path:
    raw: dict[str, Any] = {
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": db_url, "flush_interval": "200ms"},
        "collection": {"interval": f"{int(INTERVAL * 1000)}ms", "timeout": "400ms"},
        "departments": [{"code": code, "name": code} for code in CODES],
        "collectors": [{"type": "http", "name": f"{code.lower()}-health", "department": code,
                        "url": f"http://127.0.0.1:{sim_port}/{code}/health"}
                       for code in CODES],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


async def start_ioc(config: Path, shard: str) -> tuple[asyncio.subprocess.Process, str]:
    """An ``ioc run`` process and the URL it printed once it is serving."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ioc", "run", "-c", str(config), "--shard", shard,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, f"ioc --shard {shard} exited before serving ({proc.returncode})"
            if " is running at " in line:
                return proc, line.split(" is running at ")[1].split()[0]


async def stop_all(procs: list[asyncio.subprocess.Process]) -> list[int | None]:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(await asyncio.wait_for(proc.wait(), timeout=15))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            codes.append(None)
    return codes


async def stored_up_samples(db_url: str, start: float, end: float) -> dict[str, list[int]]:
    """Timestamps (ms) of every stored ioc_target_up sample per target within [start, end]."""
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    try:
        rows = await conn.fetch(
            "SELECT s.labels, x.ts FROM ioc_samples x JOIN ioc_series s ON s.id = x.series_id "
            "WHERE s.metric = 'ioc_target_up' AND x.ts BETWEEN $1 AND $2 ORDER BY x.ts",
            int(start * 1000), int(end * 1000))
    finally:
        await conn.close()
    out: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        target = row["labels"].split('target="', 1)[1].split('"', 1)[0]
        out[target].append(row["ts"])
    return out


@pytest.mark.parametrize("count", [2, 3])
async def test_every_target_is_polled_by_exactly_one_shard(tmp_path: Path, postgres_url: str,
                                                           count: int) -> None:
    sim_port = free_port()
    simulator = await start_simulator("127.0.0.1", sim_port, token=None, latency_scale=0)
    config = shard_config(tmp_path, postgres_url, sim_port)
    targets = [f"{code.lower()}-health" for code in CODES]
    procs: list[asyncio.subprocess.Process] = []
    try:
        # The first creates the schema; the others start together once it exists.
        first, first_url = await start_ioc(config, f"0/{count}")
        procs.append(first)
        rest = await asyncio.gather(*(start_ioc(config, f"{i}/{count}")
                                      for i in range(1, count)))
        procs.extend(proc for proc, _ in rest)
        urls = [first_url, *(url for _, url in rest)]

        polled: list[set[str]] = []
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(f"{url}/api/v1/status") as resp:
                    body = await resp.json()
                # every instance lists every target; it polls those not marked remote
                assert {row["name"] for row in body["targets"]} == set(targets)
                polled.append({row["name"] for row in body["targets"] if not row["remote"]})
        for index, names in enumerate(polled):  # each polls exactly its rendezvous share
            assert names == set(Shard(index, count).select(targets))
        assert set().union(*polled) == set(targets)

        start = time.time() + 2 * INTERVAL  # every shard is polling by then
        await asyncio.sleep(2 * INTERVAL + WINDOW)  # wall-clock window across processes
        end = start + WINDOW
    finally:
        codes = await stop_all(procs)
        await simulator.cleanup()
    assert codes == [0] * count  # each flushed its samples and exited cleanly

    stored = await stored_up_samples(postgres_url, start, end)
    expected = WINDOW / INTERVAL
    assert set(stored) == set(targets)
    for target, stamps in stored.items():
        # one poller: one sample per interval; two pollers would double the count
        assert 0.6 * expected <= len(stamps) <= 1.3 * expected, (target, len(stamps))
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= 0.6 * INTERVAL * 1000, (target, gaps)
