"""Read a response body without trusting it: a byte cap, and a cap on what it inflates to.

aiohttp's own decompression is switched off for probes: a small gzip bomb would otherwise
inflate to gigabytes inside one read. Here every chunk is inflated with ``max_length`` so the
decompressed size can never pass ``limit`` (plus one chunk of slack to notice it passed).
"""

from __future__ import annotations

import zlib

import aiohttp

from ioc.collector import CollectorFailure

CHUNK = 64 * 1024


class Inflater:
    """Inflates gzip or deflate chunk by chunk, never past the room it is given."""

    def __init__(self, encoding: str) -> None:
        if encoding == "gzip" or encoding == "x-gzip":
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:  # deflate: zlib-wrapped, or raw as some servers send it
            self._z = zlib.decompressobj(zlib.MAX_WBITS)
        self._raw_fallback = encoding == "deflate"

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data``, returning at most ``room`` + 1 bytes."""
        try:
            out = self._z.decompress(data, room + 1)
        except zlib.error:
            if not self._raw_fallback:
                raise
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_fallback = False
            out = self._z.decompress(data, room + 1)
        return out

    def pending(self) -> bool:
        """Whether compressed input is still waiting for output room."""
        return bool(self._z.unconsumed_tail)


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body as the session hands it over, at most ``limit`` + 1 bytes.

    ``StreamReader.read(n)`` returns what is buffered, not n bytes: a JSON answer larger than
    one network read would be cut. Reading chunk by chunk until the end or past the cap reads
    it whole, and the caller sees that it passed the cap from the length.
    """
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(min(CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The (decompressed) body, or CollectorFailure("too_large") once it passes ``limit``."""
    declared = response.content_length
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if declared is not None and declared > limit and encoding in ("", "identity"):
        raise CollectorFailure("too_large",
                               f"Content-Length {declared} is over max_body_bytes {limit}")
    inflater = Inflater(encoding) if encoding in ("gzip", "x-gzip", "deflate") else None
    parts: list[bytes] = []
    size = 0
    raw = 0
    while True:
        chunk = await response.content.read(CHUNK)
        if not chunk:
            break
        raw += len(chunk)
        if inflater is None:
            size += len(chunk)
            parts.append(chunk)
        else:
            try:
                out = inflater.feed(chunk, limit - size)
            except zlib.error as exc:
                raise CollectorFailure("protocol_error",
                                       f"body is not valid {encoding}: {exc}") from exc
            size += len(out)
            parts.append(out)
            if inflater.pending() and size <= limit:
                size = limit + 1  # more output waits than there was room for
        if size > limit:
            what = "decompressed body" if inflater is not None else "body"
            raise CollectorFailure(
                "too_large", f"{what} is over max_body_bytes {limit} "
                             f"(stopped after {raw} bytes received)")
    return b"".join(parts)
