"""Small real parts shared by tests (no mocks of what they stand for)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web

from ioc.model import Sample


class Inbox:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


def trickling(body: bytes, piece: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler answering ``body`` as JSON in writes of ``piece`` bytes, so no one
    network read holds all of it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for start in range(0, len(body), piece):
            await resp.write(body[start:start + piece])
        await resp.write_eof()
        return resp

    return handler


class Changes:
    """What a test awaits instead of sleeping: whatever it watches calls ``set()`` when
    something happened, and ``until`` waits (at most ``limit`` seconds) for the condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def until(self, condition: Callable[[], bool], limit: float = 10.0) -> None:
        async with asyncio.timeout(limit):
            while not condition():
                self._event.clear()
                await self._event.wait()


class ListSink:
    """A sample sink that keeps what it is given (stands in for the store writer)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def submit(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)
