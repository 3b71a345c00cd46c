"""Two moves every background loop of ioc makes: stop a task, and sleep until woken.

Each long-running part (the alert dispatcher and its outbox, the report scheduler, the
leader election, the shared board, the status page's snapshots, …) runs one loop task that
sleeps until something wakes it or its next deadline passes, and is stopped by cancelling
that task and waiting until it has ended. Written here once so every loop does both the
same way.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel each task (None is skipped) and wait until it has ended, its ``finally``
    blocks run. What a task raised is not raised here: a task being stopped has nothing
    more to report."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


async def wait_woken(wake: asyncio.Event, seconds: float) -> bool:
    """Wait until ``wake`` is set or ``seconds`` pass; True when it was set."""
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        return False
    return True
