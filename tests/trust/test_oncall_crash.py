"""kill -9 during an escalation: after each restart no step is sent twice and none is skipped.

``ioc run`` runs as a subprocess with a rule that fires at once and a policy of three steps
(on duty at once, the lead after 4 s, the director after 8 s), paging through a local fake
of the Telegram Bot API. It is killed with SIGKILL right after the first page was delivered,
stays down past the second step's time, and is started again; killed again after the last
step and started once more. The fake must have received exactly one page per step, in order,
and the store must count three steps queued, each with one outbox row.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.alerts.oncall_fakes import TOKEN, FakeBotApi
from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent.parent
AN, DUNG, DIRECTOR = 2001, 2004, 2009


def config(tmp_path: Path, port: int, sim_port: int, bot_url: str) -> dict[str, Any]:
    return {
        "service": {"listen": f"127.0.0.1:{port}"},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
                    "flush_interval": "300ms"},
        "collection": {"interval": "200ms", "timeout": "150ms"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "latency_scale": 0},
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "alerts": {
            "evaluation_interval": "200ms", "default_rules": False,
            # keep_firing_for: however late the first poll after a restart comes on a busy
            # machine, the alert stays the same firing (a resolution and a new firing would
            # be a new incident with an escalation of its own, rightly).
            "rules": [{"name": "AllUp", "metric": "ioc_target_up", "op": "==", "threshold": 1,
                       "severity": "critical", "matchers": ['department="STP"'],
                       "keep_firing_for": "5m"}],
            "route": {"receiver": "wall", "group_wait": "0s"},
            "receivers": [{"name": "wall"}],
            "oncall": {
                "people": [{"id": "an", "name": "Nguyễn Văn An", "telegram": str(AN)},
                           {"id": "dung", "name": "Phạm Văn Dũng", "telegram": str(DUNG)},
                           {"id": "giamdoc", "name": "Giám đốc", "telegram": str(DIRECTOR)}],
                "teams": [{"name": "vanhanh", "lead": "dung", "rotation": {
                    "start": "2026-01-01", "handoff": "00:00", "people": ["an"]}}],
                "policies": [{"name": "critical", "team": "vanhanh",
                              "steps": [{"after": "0s", "notify": ["oncall"]},
                                        {"after": "4s", "notify": ["lead"]},
                                        {"after": "8s", "notify": ["giamdoc"]}]}],
                "telegram": {"bot_token": "${IOC_TEST_BOT_TOKEN}", "api_url": bot_url,
                             "min_interval": "1ms", "poll_timeout": "1s"},
            },
        },
        "collectors": [{"type": "http", "name": "stp-health", "department": "STP",
                        "url": f"http://127.0.0.1:{sim_port}/STP/health"}],
    }


@pytest.fixture
async def bot() -> AsyncIterator[tuple[FakeBotApi, str]]:
    fake = FakeBotApi()
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def start(path: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IOC_TEST_BOT_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "run", "-c", str(path), cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"))
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while b"is running at" not in (line := await proc.stdout.readline()):
            assert line, f"ioc run exited: {tail(log)}"
    return proc


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def delivered(db: Path, count: int) -> None:
    """Wait until ``count`` escalation pages are marked sent in the outbox (another process:
    nothing to await but its database)."""
    sql = "SELECT count(*) FROM ioc_alert_outbox WHERE dedup_key LIKE 'esc:%' AND state='sent'"
    async with asyncio.timeout(15):
        while True:
            if query(db, sql)[0][0] >= count:
                return
            await asyncio.sleep(0.05)


async def evaluations(base: str, count: int) -> None:
    """Wait until the running ioc has evaluated its rules ``count`` times (from /metrics)."""
    name = "ioc_alert_evaluation_duration_seconds_count "
    async with aiohttp.ClientSession() as session, asyncio.timeout(15):
        while True:
            async with session.get(base + "/metrics") as resp:
                text = await resp.text()
            done = [float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith(name)]
            if done and done[0] >= count:
                return
            await asyncio.sleep(0.1)


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def test_kill_9_mid_escalation_neither_repeats_nor_skips_a_step(
        tmp_path: Path, bot: tuple[FakeBotApi, str]) -> None:
    fake, bot_url = bot
    path, log, db = tmp_path / "config.yaml", tmp_path / "ioc.log", tmp_path / "ioc.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config(tmp_path, port, free_port(), bot_url),
                                   allow_unicode=True), encoding="utf-8")
    proc = await start(path, log)
    try:
        await fake.until(1, limit=30)
        await delivered(db, 1)
        await kill(proc)  # after the first page, before the lead's step
        ((started,),) = query(db, "SELECT started_at FROM ioc_oncall_escalations")
        assert [m["chat"]["id"] for m in fake.sent] == [AN]
        # Stay down past the lead's step time: it must come after the restart, once.
        await asyncio.sleep(max(0.0, started / 1000 + 4.5 - time.time()))

        proc = await start(path, log)
        await fake.until(3, limit=30)
        await delivered(db, 3)
        await kill(proc)
        proc = await start(path, log)
        # Five evaluations after the restart, each followed by a flush and an escalation
        # tick: nothing is due any more, and nothing is sent.
        await evaluations(base, 5)
    finally:
        await kill(proc)

    kinds = query(db, "SELECT kind, ts FROM ioc_alert_history ORDER BY ts")
    assert [m["chat"]["id"] for m in fake.sent] == [AN, DUNG, DIRECTOR], kinds
    assert query(db, "SELECT sent, state FROM ioc_oncall_escalations") == [(3, "active")]
    keys = [k for (k,) in query(db, "SELECT dedup_key FROM ioc_alert_outbox")]
    assert len(keys) == 3 and len(set(keys)) == 3
    steps = query(db, "SELECT detail FROM ioc_alert_history WHERE kind = 'escalation'")
    assert len(steps) == 3
