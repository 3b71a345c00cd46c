"""Real ``ioc run`` processes sharing one PostgreSQL database, a webhook receiver that can
refuse, and the questions the alert-leader tests ask them (over HTTP, as an operator would)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from collectors.simulator import units
from service.config import parse_config
from tests.conftest import SIM_TOKEN
from tests.helpers import Changes

ROOT = Path(__file__).parents[2]
LIMIT = 30.0  # generous limit on any awaited change, for a loaded 2-core machine
RULE = {"name": "TargetDown", "metric": "ioc_target_up", "aggregate": "last", "window": "1m",
        "op": "==", "threshold": 0, "for": "1s", "severity": "critical",
        "annotations": {"summary": "{{ labels.target }} không truy cập được"}}


def write_config(tmp_path: Path, db_url: str, sim_port: int, hook_url: str, *,
                 codes: list[str], evaluation: float) -> Path:
    chosen = [u for u in units() if u.code in codes]
    raw: dict[str, Any] = {
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": db_url, "flush_interval": "200ms"},
        "collection": {"interval": "300ms", "timeout": "250ms"},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in chosen],
        "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                        "department": u.code,
                        "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"}
                       for u in chosen],
        "alerts": {
            "evaluation_interval": f"{round(evaluation * 1000)}ms", "default_rules": False,
            "rules": [RULE],
            "route": {"receiver": "oncall", "group_by": ["alertname", "department"],
                      "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "oncall", "webhook": [{"url": hook_url, "timeout": "2s"}]}],
            "outbox": {"initial_backoff": "200ms", "max_backoff": "1s"},
        },
    }
    parse_config(raw, env={})  # a bad config fails here, not in a child process
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Instance:
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


async def start_instance(config: Path, log: Path, shard: str | None = None) -> Instance:
    args = [sys.executable, "-m", "ioc", "run", "-c", str(config)]
    if shard is not None:
        args += ["--shard", shard]
    with log.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    async with asyncio.timeout(LIMIT):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                await proc.wait()
                raise AssertionError(f"ioc exited ({proc.returncode}) before serving; see {log}")
            if " is running at " in line:
                return Instance(proc, line.split(" is running at ")[1].split()[0], log)


async def stop_instances(instances: list[Instance]) -> list[int | None]:
    for inst in instances:
        if inst.proc.returncode is None:
            inst.proc.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for inst in instances:
        try:
            codes.append(await asyncio.wait_for(inst.proc.wait(), timeout=20))
        except TimeoutError:
            inst.proc.kill()
            await inst.proc.wait()
            codes.append(None)
    return codes


async def metric(session: aiohttp.ClientSession, inst: Instance, name: str) -> float | None:
    """One unlabelled sample from an instance's /metrics (None: not exported)."""
    async with session.get(f"{inst.url}/metrics") as resp:
        body = await resp.text()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def firing_alerts(session: aiohttp.ClientSession, inst: Instance) -> list[dict[str, Any]]:
    async with session.get(f"{inst.url}/api/v1/alerts?state=firing") as resp:
        return list((await resp.json())["alerts"])


async def poll(check: Any, limit: float = LIMIT, every: float = 0.05) -> Any:
    """Another process's state has no event to await: ask until the answer is there."""
    async with asyncio.timeout(limit):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(every)


async def fault(session: aiohttp.ClientSession, sim: str, unit: str, kind: str | None) -> None:
    headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
    if kind is None:
        async with session.delete(f"{sim}/_sim/faults/{unit}", headers=headers) as resp:
            assert resp.status == 200
    else:
        async with session.post(f"{sim}/_sim/faults", json={"unit": unit, "fault": kind},
                                headers=headers) as resp:
            assert resp.status == 200, await resp.text()


@dataclass
class Receiver:
    """A webhook consumer that refuses (503) while ``accept`` is False; keeps everything."""

    accept: bool = True
    attempts: list[dict[str, Any]] = field(default_factory=list)   # every request
    accepted: list[dict[str, Any]] = field(default_factory=list)   # answered 200
    arrived: list[float] = field(default_factory=list)             # monotonic, accepted ones
    _changed: Changes = field(default_factory=Changes)

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.attempts.append(payload)
        self._changed.set()
        if not self.accept:
            return web.Response(status=503, text="busy")
        self.accepted.append(payload)
        self.arrived.append(time.monotonic())
        return web.Response(text="ok")

    def delivered(self) -> list[dict[str, Any]]:
        """Accepted notifications, one per dedup key (a re-send of the same key is allowed:
        delivery is at-least-once and the receiver deduplicates by that key)."""
        seen: set[str] = set()
        out = []
        for payload in self.accepted:
            if payload["dedupKey"] not in seen:
                seen.add(payload["dedupKey"])
                out.append(payload)
        return out

    def duplicates(self) -> dict[tuple[str, str, frozenset[str]], set[str]]:
        """The same news told twice: one (group, status, alerts) under several dedup keys."""
        keys: dict[tuple[str, str, frozenset[str]], set[str]] = defaultdict(set)
        for payload in self.accepted:
            told = frozenset(a["fingerprint"] for a in payload["alerts"])
            keys[(payload["groupKey"], payload["status"], told)].add(payload["dedupKey"])
        return {k: v for k, v in keys.items() if len(v) > 1}

    async def until(self, predicate: Any, limit: float = LIMIT) -> None:
        await self._changed.until(lambda: predicate(self), limit)
