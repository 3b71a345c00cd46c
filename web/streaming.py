"""Large answers written in pieces, so a client that does not read holds little memory.

A ``web.Response`` hands its whole body to the transport at once: for a client that never
reads, every byte of it then waits in the transport's buffer (a 25 MB event list per client
was measured). Written here in slices of ``CHUNK`` bytes, each ``write`` waits while the
transport holds more than ``service.write_buffer`` (web/connections.py), and a client that
lets it wait ``service.write_timeout`` is cut off, which ends the handler and frees what it
held.

``send_json`` encodes a document once and writes the bytes in slices (the status and series
answers: their data is in memory anyway). ``JsonArrayWriter`` writes an array element by
element for answers read from the database in pages (the event list), so only one page is
held for a slow client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

CHUNK = 64 * 1024
JSON_TYPE = "application/json; charset=utf-8"


async def send_json(request: web.Request, data: Any, dumps: Callable[[Any], str],
                    status: int = 200) -> web.StreamResponse:
    """The JSON answer for ``data``; a large one is written in slices (see the module)."""
    body = dumps(data).encode()
    if len(body) <= CHUNK:
        return web.Response(body=body, status=status, headers={"Content-Type": JSON_TYPE})
    response = web.StreamResponse(status=status, headers={"Content-Type": JSON_TYPE})
    response.content_length = len(body)
    await response.prepare(request)
    view = memoryview(body)
    for start in range(0, len(body), CHUNK):
        await response.write(view[start:start + CHUNK])
    await response.write_eof()
    return response


class JsonArrayWriter:
    """``{"<key>": [<items>…], <tail fields>}`` written as the items come (chunked)."""

    def __init__(self, request: web.Request, key: str, dumps: Callable[[Any], str]) -> None:
        self.request = request
        self.key = key
        self.dumps = dumps
        self.count = 0
        self._response = web.StreamResponse(headers={"Content-Type": JSON_TYPE})
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def start(self) -> None:
        await self._response.prepare(self.request)
        await self._response.write(b'{' + self.dumps(self.key).encode() + b':[')

    async def add(self, item: Any) -> None:
        piece = (b"," if self.count else b"") + self.dumps(item).encode()
        self.count += 1
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            await self._response.write(data)

    async def finish(self, **tail: Any) -> web.StreamResponse:
        await self._flush()
        rest = b"".join(b"," + self.dumps(k).encode() + b":" + self.dumps(v).encode()
                        for k, v in tail.items())
        await self._response.write(b"]" + rest + b"}")
        await self._response.write_eof()
        return self._response
