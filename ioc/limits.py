"""Caps on outgoing polls: a global one and one per host.

So that 5,000 targets never open 5,000 sockets at once, and twenty targets on one department
server never hit it with twenty requests in the same instant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PollLimits:
    def __init__(self, max_concurrency: int, max_per_host: int) -> None:
        self.max_per_host = max_per_host
        self._global = asyncio.Semaphore(max_concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, host: str | None) -> AsyncIterator[None]:
        if host is None:
            async with self._global:
                yield
            return
        per_host = self._hosts.get(host)
        if per_host is None:
            per_host = self._hosts[host] = asyncio.Semaphore(self.max_per_host)
        async with per_host, self._global:
            yield
