"""Caps on outgoing polls: a global one and one per host.

So that 5,000 targets never open 5,000 sockets at once, and twenty targets on one department
server never hit it with twenty requests in the same instant.

Every poll enters a slot, so the slot is a small class rather than an
``asynccontextmanager`` (whose generator and wrapper cost about 2 % of ioc's CPU at 1,000
polls a second).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class _Slot:
    __slots__ = ("_global", "_host")

    def __init__(self, global_: asyncio.Semaphore, host: asyncio.Semaphore | None) -> None:
        self._global = global_
        self._host = host

    async def __aenter__(self) -> None:
        if self._host is not None:
            await self._host.acquire()
        try:
            await self._global.acquire()
        except BaseException:
            if self._host is not None:
                self._host.release()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._global.release()
        if self._host is not None:
            self._host.release()


class PollLimits:
    def __init__(self, max_concurrency: int, max_per_host: int) -> None:
        self.max_per_host = max_per_host
        self._global = asyncio.Semaphore(max_concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def slot(self, host: str | None) -> _Slot:
        """``async with limits.slot(host):`` holds the host's slot, then a global one."""
        if host is None:
            return _Slot(self._global, None)
        per_host = self._hosts.get(host)
        if per_host is None:
            per_host = self._hosts[host] = asyncio.Semaphore(self.max_per_host)
        return _Slot(self._global, per_host)
