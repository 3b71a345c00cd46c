"""The longest a single poll holds the event loop, per kind of answer and engine.

Every callback the loop runs during a target's polls is timed in CPU time of the loop's
thread (so the figure holds on a busy machine), and the longest is printed per hostile answer
of collectors.simulator.hostile (served from its own process) and per engine: the
fresh-connection engine and aiohttp (``keepalive``). The goal is under 10 ms for any answer.

asyncio's loop is used because its callbacks can be timed from Python (uvloop runs them in
C); uvloop's own share of a callback is smaller, so these figures bound uvloop's from above.

    .venv/bin/python bench/probe_stall.py [--polls 5]
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import free_port, loadavg, wait_http  # noqa: E402
from probe_vs_blackbox import started  # noqa: E402

from collectors.http import HttpCollector  # noqa: E402
from collectors.probe.session import open_probe_session  # noqa: E402
from collectors.simulator.hostile import ANSWERS  # noqa: E402
from service.config import parse_config  # noqa: E402

ENGINES = {"wire": {}, "aiohttp": {"keepalive": True}}


class CallbackTimer:
    """Wraps asyncio's Handle._run to keep the longest callback (thread CPU time)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._run = asyncio.events.Handle._run
        timer = self

        def timed(handle: asyncio.events.Handle) -> None:
            started_at = time.thread_time()
            timer._run(handle)
            timer.longest = max(timer.longest, time.thread_time() - started_at)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]


def collector(url: str, extra: dict[str, Any]) -> HttpCollector:
    config = parse_config({"departments": [{"code": "STP", "name": "Sở Tư pháp"}],
                           "collectors": [{"type": "http", "name": "t", "department": "STP",
                                           "url": url, **extra}]}, env={})
    return HttpCollector(config.collectors[0])  # type: ignore[arg-type]


async def measure(built: dict[tuple[str, str], HttpCollector], polls: int,
                  timer: CallbackTimer) -> list[tuple[str, str, float]]:
    await asyncio.sleep(0)  # the task's first step is not a poll's
    session = open_probe_session(dns_cache_seconds=None)
    rows = []
    try:
        for (engine, path), target in built.items():
            timer.longest = 0.0
            for _ in range(polls):
                try:
                    async with asyncio.timeout(1.0):
                        await target.collect(session, time.time())
                except Exception:
                    pass
            rows.append((engine, path, timer.longest))
            await target.close()
    finally:
        await session.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    with started([sys.executable, "-m", "collectors.simulator.hostile", "--port", str(port)],
                 ROOT, Path(os.devnull)) as proc:
        base = f"http://127.0.0.1:{port}/"
        wait_http(base + "ok", proc, Path(os.devnull))
        built = {(engine, path): collector(base + path, extra)  # config parsing: no poll's
                 for engine, extra in ENGINES.items() for path in ANSWERS}
        timer = CallbackTimer()
        rows = asyncio.run(measure(built, args.polls, timer))
    print(f"longest loop callback per poll (thread CPU ms, {args.polls} polls each); "
          f"load {loadavg()}")
    by_path: dict[str, dict[str, float]] = {}
    for engine, path, longest in rows:
        by_path.setdefault(path, {})[engine] = longest
    print(f"{'answer':<20} {'wire':>7} {'aiohttp':>8}")
    for path, engines in by_path.items():
        print(f"{path:<20} {engines['wire'] * 1000:>7.2f} {engines['aiohttp'] * 1000:>8.2f}")
    print(f"worst: {max(r[2] for r in rows) * 1000:.2f} ms (goal < 10 ms)")


if __name__ == "__main__":
    main()
