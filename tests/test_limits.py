"""PollLimits: the per-host and the global cap hold, and a poll cancelled while it waits for a
global slot gives its host slot back."""

from __future__ import annotations

import asyncio

from ioc.poll_limits import PollLimits


async def test_per_host_and_global_caps_hold() -> None:
    limits = PollLimits(max_concurrency=3, max_per_host=2)
    inside: dict[str, int] = {}
    peak: dict[str, int] = {}
    release = asyncio.Event()
    entered = asyncio.Queue[str]()

    async def poll(host: str) -> None:
        async with limits.slot(host):
            inside[host] = inside.get(host, 0) + 1
            inside["*"] = inside.get("*", 0) + 1
            for key in (host, "*"):
                peak[key] = max(peak.get(key, 0), inside[key])
            entered.put_nowait(host)
            await release.wait()
            inside[host] -= 1
            inside["*"] -= 1

    tasks = [asyncio.create_task(poll(h)) for h in ("a", "a", "a", "b", "b")]
    for _ in range(3):
        await entered.get()
    await asyncio.sleep(0)  # let any poll that could still enter try to
    assert entered.empty() and inside["*"] == 3 and inside["a"] <= 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak["a"] == 2 and peak["b"] <= 2 and peak["*"] == 3


async def test_cancelled_while_waiting_for_global_slot_frees_its_host_slot() -> None:
    limits = PollLimits(max_concurrency=1, max_per_host=1)
    hold = asyncio.Event()
    holding = asyncio.Event()

    async def holder() -> None:
        async with limits.slot("other"):
            holding.set()
            await hold.wait()

    first = asyncio.create_task(holder())
    await holding.wait()
    waiting = asyncio.create_task(limits.slot("portal").__aenter__())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    hold.set()
    await first
    async with asyncio.timeout(1):
        async with limits.slot("portal"):  # would hang if the host slot had leaked
            pass


async def test_no_host_takes_only_a_global_slot() -> None:
    limits = PollLimits(max_concurrency=1, max_per_host=1)
    async with limits.slot(None):
        assert limits._global.locked()
    assert not limits._global.locked()
