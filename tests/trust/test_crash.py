"""kill -9 under load, five times: the database stays sound and nothing durable is lost.

``ioc run`` is started as a subprocess polling the bundled simulator (24 targets every
200 ms), reading a SIEM endpoint, evaluating a rule that fires, with a notification channel
that never answers (so the outbox holds rows), while events are pushed continuously. Before
the kills an operator sets a silence, an announcement and an ack. Then the process is killed
with SIGKILL at random moments (a fixed seed) and restarted each time. Afterwards the SQLite
file must pass ``PRAGMA integrity_check``, every kept thing must still be there, and the
samples stored before each kill must reach to within the flush interval (plus a poll) of it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from collectors.simulator import units
from tests.conftest import free_port

pytestmark = pytest.mark.slow

OPERATOR = "operator-token-0123456789"
INGEST = "ingest-token-0123456789"
FLUSH = 0.3
INTERVAL = 0.2
KILLS = 5
ROOT = Path(__file__).parent.parent.parent


def config(tmp_path: Path, port: int, sim_port: int, siem_url: str) -> dict[str, Any]:
    chosen = units()[:24]
    return {
        "service": {"listen": f"127.0.0.1:{port}"},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
                    "flush_interval": f"{int(FLUSH * 1000)}ms"},
        "collection": {"interval": f"{int(INTERVAL * 1000)}ms", "timeout": "150ms"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                      "latency_scale": 0},
        "auth": {"tokens": [{"name": "duty", "token": OPERATOR, "roles": ["operator"]},
                            {"name": "bridge", "token": INGEST, "roles": ["ingest"]}]},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in chosen],
        "alerts": {
            "evaluation_interval": "200ms", "default_rules": False,
            "rules": [{"name": "AllUp", "metric": "ioc_target_up", "op": "==", "threshold": 1,
                       "matchers": ['department="STP"']}],
            "route": {"receiver": "nowhere", "group_wait": "0s"},
            "receivers": [{"name": "nowhere", "webhook": [
                {"url": f"http://127.0.0.1:{free_port()}/hook", "timeout": "200ms"}]}],
        },
        "collectors": [
            *({"type": "http", "name": f"{u.code.lower()}-health", "department": u.code,
               "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"} for u in chosen),
            {"type": "siem", "name": "siem-test", "department": "STP", "shape": "json",
             "url": siem_url, "interval": "500ms", "timeout": "400ms"},
        ],
    }


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def start(path: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "run", "-c", str(path), cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"))
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while b"is running at" not in (line := await proc.stdout.readline()):
            assert line, f"ioc run exited: {tail(log)}"
    return proc


async def push_events(url: str, stop: asyncio.Event, accepted: list[tuple[float, str]],
                      prefix: str) -> None:
    headers = {"Authorization": f"Bearer {INGEST}"}
    n = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            batch = [{"source": "crash-test", "id": f"{prefix}-{n + i}", "severity": "high",
                      "title": "Đăng nhập sai", "department": "STP",
                      "occurred_at": time.time() - 1} for i in range(20)]
            n += 20
            try:
                async with session.post(url + "/api/v1/events", json=batch,
                                        headers=headers) as resp:
                    if resp.status == 202:
                        accepted.append((time.time(), batch[-1]["id"]))
            except aiohttp.ClientError:
                return  # the process was killed
            await asyncio.sleep(0.05)


async def call(session: aiohttp.ClientSession, method: str, url: str,
               body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body,
                               headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
        return resp.status, await resp.json()


async def test_kill_9_loses_at_most_a_flush_and_never_corrupts(tmp_path: Path,
                                                               aiohttp_server: Any) -> None:
    siem = web.Application()

    async def events(request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response([{"id": f"siem-{int(now)}", "timestamp": now - 1,
                                   "severity": "high", "title": "Quét cổng"}])

    siem.router.add_get("/events", events)
    server = await aiohttp_server(siem)
    port, sim_port = free_port(), free_port()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, port, sim_port,
                                          str(server.make_url("/events"))),
                                   allow_unicode=True), encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "ioc.log"
    rng = random.Random(9)
    kills: list[float] = []
    accepted: list[tuple[float, str]] = []

    proc = await start(path, log)
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await call(session, "POST", url + "/api/v1/silences", {
                "matchers": ['department="CAT"'], "comment": "bảo trì", "duration": "2h"})
            assert status == 201
            silence_id = body["silence"]["id"]
            assert (await call(session, "POST", url + "/api/v1/announcement",
                               {"text": "Diễn tập"}))[0] == 200
            firing: list[Any] = []
            for _ in range(200):  # another process: nothing to await but its API
                firing = (await call(session, "GET", url + "/api/v1/alerts"))[1]["alerts"]
                if firing:
                    break
                await asyncio.sleep(0.1)
            assert firing, tail(log)
            fingerprint = firing[0]["fingerprint"]
            status, _ = await call(session, "POST", url + f"/api/v1/alerts/{fingerprint}/ack",
                                   {"comment": "đang xử lý"})
            assert status == 200
        for round_ in range(KILLS):
            stop = asyncio.Event()
            pusher = asyncio.create_task(push_events(url, stop, accepted, f"r{round_}"))
            # the kill comes at a random moment, but late enough that the first batches
            # pushed in this round are due on disk by then
            await asyncio.sleep(rng.uniform(FLUSH + 1.2, FLUSH + 2.0))
            kills.append(time.time())
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            stop.set()
            await pusher
            proc = await start(path, log)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    db = sqlite3.connect(tmp_path / "ioc.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for kill in kills:
            (newest,) = db.execute("SELECT max(ts) FROM ioc_samples WHERE ts <= ?",
                                   (int(kill * 1000),)).fetchone()
            assert newest is not None
            # lost at most: the last flush interval, the poll that was under way, and the
            # time a loaded machine takes to commit a batch
            assert kill - newest / 1000 <= FLUSH + INTERVAL + 1.0, (kill, newest / 1000)
        silences = db.execute("SELECT id FROM ioc_alert_silences").fetchall()
        assert (silence_id,) in silences
        assert db.execute("SELECT count(*) FROM ioc_alert_acks").fetchone()[0] >= 1
        assert db.execute("SELECT count(*) FROM ioc_alert_state").fetchone()[0] >= 1
        assert db.execute("SELECT count(*) FROM ioc_alert_outbox").fetchone()[0] >= 1
        assert db.execute("SELECT count(*) FROM ioc_event_cursors").fetchone()[0] >= 1
        assert db.execute("SELECT count(*) FROM ioc_wall_announcement").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM ioc_audit_log").fetchone()[0] >= 3
        stored = {row[0] for row in db.execute(
            "SELECT event_id FROM ioc_events WHERE source = 'crash-test'")}
        # a batch accepted (202) more than a flush (plus slack) before the next kill is stored
        checked = 0
        for at, last_id in accepted:
            next_kill = min((kill for kill in kills if kill > at), default=None)
            if next_kill is not None and next_kill - at > FLUSH + 1.0:
                assert last_id in stored, last_id
                checked += 1
        assert checked > 0
    finally:
        db.close()
