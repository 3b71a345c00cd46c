"""Real ``ioc run --shard auto`` processes on one PostgreSQL database, and what their stored
polls say about a change of members: how long a moved target went unpolled, and whether two
instances polled it at once. Shared by tests/scale/test_auto_shard_processes.py and
bench/shard_takeover.py."""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml
from sqlalchemy.engine import make_url

from collectors.simulator import units
from ioc.sharding import owner_among
from service.config import parse_config

STATE_RULE = {"name": "TargetDown", "metric": "ioc_target_state_up", "aggregate": "last",
              "window": "1m", "op": "==", "threshold": 0, "for": "1s",
              "severity": "critical",
              "annotations": {"summary": "{{ labels.target }} không truy cập được"}}


def target_name(code: str) -> str:
    return f"{code.lower()}-health"


def write_auto_config(tmp_path: Path, db_url: str, sim_port: int, *, codes: Sequence[str],
                      interval: float, lease: float, hook_url: str | None = None,
                      thresholds: int = 3) -> Path:
    """A config every member shares: the simulator's health pages every ``interval``, the
    debounce at ``thresholds`` polls in a row, and (with ``hook_url``) one rule on the
    debounced state with a webhook receiver."""
    chosen = [u for u in units() if u.code in codes]
    raw: dict[str, Any] = {
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": db_url, "flush_interval": "200ms"},
        "collection": {"interval": f"{round(interval * 1000)}ms",
                       "timeout": f"{round(interval * 800)}ms", "shard": "auto",
                       "shard_lease": f"{round(lease * 1000)}ms"},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in chosen],
        "collectors": [{"type": "http", "name": target_name(u.code), "department": u.code,
                        "url": f"http://127.0.0.1:{sim_port}/{u.code}/health",
                        "failure_threshold": thresholds, "recovery_threshold": thresholds}
                       for u in chosen],
        "alerts": {"evaluation_interval": "500ms", "default_rules": False, "rules": []},
    }
    if hook_url is not None:
        raw["alerts"].update({
            "rules": [STATE_RULE],
            "route": {"receiver": "oncall", "group_by": ["alertname", "target"],
                      "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "oncall", "webhook": [{"url": hook_url, "timeout": "2s"}]}],
        })
    parse_config(raw, env={})  # a bad config fails here, not in a child process
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def share(targets: Iterable[str], slot: int, live: Sequence[int]) -> set[str]:
    return {t for t in targets if owner_among(t, live) == slot}


async def polled_here(session: aiohttp.ClientSession, url: str) -> tuple[int | None, set[str]]:
    """(slot, targets) an instance polls now, as its status API says."""
    async with session.get(f"{url}/api/v1/status") as resp:
        body = await resp.json()
    mine = [row for row in body["targets"] if not row["remote"]]
    slots = {row["shard"] for row in mine}
    return (slots.pop() if len(slots) == 1 else None), {row["name"] for row in mine}


async def stored_polls(db_url: str, start: float, end: float, metric: str = "ioc_target_up"
                       ) -> dict[str, list[tuple[int, float]]]:
    """(ts ms, value) of every stored sample of ``metric`` per target within [start, end]."""
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    try:
        rows = await conn.fetch(
            "SELECT s.labels, x.ts, x.value FROM ioc_samples x "
            "JOIN ioc_series s ON s.id = x.series_id "
            "WHERE s.metric = $1 AND x.ts BETWEEN $2 AND $3 ORDER BY x.ts",
            metric, int(start * 1000), int(end * 1000))
    finally:
        await conn.close()
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        target = row["labels"].split('target="', 1)[1].split('"', 1)[0]
        out[target].append((row["ts"], row["value"]))
    return out


@dataclass(frozen=True)
class Coverage:
    """What one target's stored polls say over a run with changes of its owner.

    Every member polls a target on the same epoch-anchored grid (``anchored_start``), so each
    stored poll belongs to one slot of that grid: the slot it started in, allowing the
    scheduler's lead (a poll a little early) and any lateness short of a whole interval.
    ``double``: polls beyond the first in one slot — two instances polled the target then.
    ``lost``: slots with no poll that lie outside every allowed window (a change of owner),
    ``lost_at`` when they were due. ``longest_gap``: seconds between two polls, at most.
    """

    double: int
    lost: int
    longest_gap: float
    lost_at: tuple[float, ...] = ()


def coverage(stamps_ms: Sequence[int], interval: float,
             allowed: Sequence[tuple[float, float]], phase: float) -> Coverage:
    """``allowed``: (start, end) unix-second windows in which missing slots are expected;
    ``phase``: the target's grid offset (``anchored_start(name, interval, 0.0)``)."""
    stamps = sorted(ms / 1000 for ms in stamps_ms)
    if not stamps:
        return Coverage(0, 0, 0.0)
    slots = Counter(math.floor((ts - phase) / interval + 0.05) for ts in stamps)
    double = sum(count - 1 for count in slots.values())
    lost = [phase + k * interval for k in range(min(slots), max(slots) + 1)
            if k not in slots]
    outside = tuple(at for at in lost if not any(lo <= at <= hi for lo, hi in allowed))
    longest = max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)
    return Coverage(double, len(outside), longest, outside)


def first_poll_after(stamps_ms: Sequence[int], when: float) -> float | None:
    later = [ms / 1000 for ms in stamps_ms if ms / 1000 > when]
    return later[0] if later else None


def member_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (Linux /proc), to find its sessions in
    ``pg_stat_activity`` by ``client_port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


async def terminate_sessions(db_url: str, pid: int) -> int:
    """``pg_terminate_backend`` on every session of process ``pid``; how many there were."""
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    ports = sorted(member_ports(pid))
    conn = await asyncpg.connect(plain)
    try:
        return int(await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND client_port = ANY($1::int[])", ports))
    finally:
        await conn.close()
