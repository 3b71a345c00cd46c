"""A check's memory is returned by reference counting, on both HTTP engines.

Each kind of answer (good, hostile, failing, timed out) is polled many times with the cycle
collector switched off; afterwards the collector must find nothing to free, and the number of
live objects must not have grown with the number of polls. The target is the hostile-answer
server (collectors.simulator.hostile) in its own process, so the server's objects are not
counted, and the loop is uvloop, the loop ioc runs on (asyncio's own selector transport keeps
a cycle of its own per connection).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from collectors.http import HttpCollector
from collectors.probe.session import open_probe_session
from tests.collectors.probe_support import collector_config
from tests.conftest import free_port

POLLS = 20
ATTEMPTS = 3
PATHS = ["ok", "entity-keyword", "header-flood", "repeated-header", "big-head",
         "endless-line", "short-body", "not-http", "redirect-loop", "gzip-bomb", "hang"]


@pytest.fixture(scope="module")
def hostile_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "collectors.simulator.hostile",
                             "--port", str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "ok", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()


async def poll_many(url: str, extra: dict[str, Any]) -> tuple[int, int]:
    """(objects the cycle collector found after 3 x POLLS polls, how much more the live
    objects grew over the last 2 x POLLS polls than over the first POLLS).

    The second figure is what grows with the number of polls: some libraries' bounded
    caches and timers add a constant number of objects now and then."""
    session = open_probe_session(dns_cache_seconds=None)
    collector = HttpCollector(collector_config({"type": "http", "url": url, **extra}))

    async def once() -> None:
        try:
            async with asyncio.timeout(0.1):  # as the runner bounds a poll
                await collector.collect(session, 0.0)
        except (TimeoutError, Exception):
            pass

    try:
        for _ in range(POLLS):  # bounded caches (aiohttp's, yarl's) fill up here
            await once()
        gc.collect()
        gc.disable()
        try:
            counts = [len(gc.get_objects())]
            for batch in (POLLS, 2 * POLLS):
                for _ in range(batch):
                    await once()
                counts.append(len(gc.get_objects()))
            found = gc.collect()
        finally:
            gc.enable()
        return found, (counts[2] - counts[1]) - (counts[1] - counts[0])
    finally:
        await collector.close()
        await session.close()


@pytest.mark.parametrize("engine", ["wire", "aiohttp"])
def test_polls_leave_no_reference_cycles(hostile_process: str, engine: str) -> None:
    extra = {"keepalive": True} if engine == "aiohttp" else {}
    results: dict[str, tuple[int, int]] = {}

    def leaks(r: tuple[int, int]) -> bool:
        return r[0] > POLLS // 4 or r[1] > POLLS // 2

    async def main() -> None:
        for path in PATHS:
            # A leak shows on every measurement; a busy machine can cut a timed-out poll at a
            # different point and move a few dozen objects once. So a path counts as leaky
            # only when three measurements in a row say so.
            for _ in range(ATTEMPTS):
                results[path] = await poll_many(hostile_process + path, extra)
                if not leaks(results[path]):
                    break

    uvloop.run(main())
    leaky = {path: r for path, r in results.items() if leaks(r)}
    assert not leaky, f"(cycle garbage, growth with the polls) per {POLLS} polls: {leaky}"


def test_the_measure_sees_a_cycle() -> None:
    """The assertion above can fail: a cycle per poll is counted."""
    class Node:
        other: Any = None

    async def leaky() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a

    async def main() -> int:
        gc.collect()
        gc.disable()
        try:
            for _ in range(POLLS):
                await leaky()
            return gc.collect()
        finally:
            gc.enable()

    assert uvloop.run(main()) >= POLLS
