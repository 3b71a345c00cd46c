"""kill -9 right after durable acknowledgements: every event acknowledged is on disk.

``ioc run`` is a real subprocess; four senders push batches with ``?durable=1`` (and one
with ``Prefer: durable``) as fast as they are answered. The process is killed with SIGKILL
the moment a round has collected its acknowledgements, while pushes are still in flight,
and restarted. Afterwards every event of every 200 answer must be in the database.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from collectors.simulator import units
from tests.conftest import free_port
from tests.trust.test_crash import start, tail

pytestmark = pytest.mark.slow

INGEST = "ingest-token-0123456789"
ROUNDS = 4
ACKS_PER_ROUND = 40
SENDERS = 4


def config(tmp_path: Path, port: int, sim_port: int) -> dict[str, Any]:
    chosen = units()[:2]
    return {
        "service": {"listen": f"127.0.0.1:{port}"},
        # a long flush interval: only the durable path can make the events reach the disk
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
                    "flush_interval": "5s"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "latency_scale": 0},
        "auth": {"tokens": [{"name": "bridge", "token": INGEST, "roles": ["ingest"]}]},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in chosen],
        "alerts": {"default_rules": False},
        "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                        "department": u.code,
                        "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"} for u in chosen],
    }


async def sender(url: str, name: str, acknowledged: list[str], enough: asyncio.Event,
                 header: bool) -> None:
    headers = {"Authorization": f"Bearer {INGEST}"}
    target = url + "/api/v1/events"
    if header:
        headers["Prefer"] = "durable"
    else:
        target += "?durable=1"
    n = 0
    async with aiohttp.ClientSession() as session:
        while True:
            batch = [{"source": "durable-test", "id": f"{name}-{n + i}", "severity": "high",
                      "title": "Đăng nhập sai", "occurred_at": time.time() - 1}
                     for i in range(10)]
            n += 10
            try:
                async with session.post(target, json=batch, headers=headers) as resp:
                    if resp.status == 200:
                        assert (await resp.json())["stored"] is True
                        acknowledged.extend(e["id"] for e in batch)
                        if len(acknowledged) >= ACKS_PER_ROUND * 10:
                            enough.set()
            except (TimeoutError, aiohttp.ClientError):
                return  # killed: what was in flight was never acknowledged


async def test_kill_9_after_durable_acknowledgements_loses_nothing(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, port, sim_port), allow_unicode=True),
                    encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "ioc.log"
    acknowledged: list[str] = []
    proc = await start(path, log)
    try:
        for round_ in range(ROUNDS):
            mine: list[str] = []
            enough = asyncio.Event()
            senders = [asyncio.create_task(sender(url, f"r{round_}s{i}", mine, enough,
                                                  header=i == 0)) for i in range(SENDERS)]
            async with asyncio.timeout(60):
                await enough.wait()
            proc.send_signal(signal.SIGKILL)  # while the senders still push
            await proc.wait()
            await asyncio.gather(*senders)
            acknowledged.extend(mine)
            proc = await start(path, log)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    db = sqlite3.connect(tmp_path / "ioc.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in db.execute(
            "SELECT event_id FROM ioc_events WHERE source = 'durable-test'")}
    finally:
        db.close()
    missing = [event_id for event_id in acknowledged if event_id not in stored]
    assert not missing, (len(missing), missing[:5], tail(log))
    assert len(acknowledged) >= ROUNDS * ACKS_PER_ROUND * 10
