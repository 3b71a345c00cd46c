"""Hostile HTTP answers, one per path, from a raw asyncio server.

Each path of the server answers the way a broken or malicious target might: never, too
slowly, with a head that never ends or floods headers or interim answers, with broken
framing, with a body too big or a compression bomb, with something that is not HTTP, with a
redirect loop, or with gambling text hidden behind entities, tags, NUL bytes or a missing
diacritic. The probe tests run both HTTP engines against every path
(tests/collectors/test_hostile.py) and bench/hostile_targets.py mixes some into a thousand
well-behaved targets.

Run on its own: ``python -m collectors.simulator.hostile --port 9200`` (``/`` lists paths).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import unicodedata
from collections.abc import Awaitable, Callable
from functools import cache

Writer = asyncio.StreamWriter
Answer = Callable[[Writer], Awaitable[None]]
DRIP = 0.2  # seconds between the pieces of a slow answer


def ok_page(text: str) -> bytes:
    body = f"<html><head><title>Sở Tư pháp</title></head><body>{text}</body></html>".encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


@cache
def bomb() -> bytes:
    """64 MiB of spaces gzipped to about 64 KiB."""
    return gzip.compress(b" " * (64 << 20), compresslevel=9)


async def _send(writer: Writer, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def hang(writer: Writer) -> None:
    await asyncio.sleep(3600)


async def slow_head(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 OK\r\n")
    for n in range(100_000):
        await _send(writer, b"X-Slow-%d: 1\r\n" % n)
        await asyncio.sleep(DRIP)


async def endless_line(writer: Writer) -> None:
    """One header line that never ends, streamed as fast as it is read."""
    await _send(writer, b"HTTP/1.1 200 OK\r\nX-Endless: ")
    chunk = b"a" * 65536
    for _ in range(1 << 14):
        await _send(writer, chunk)


async def endless_headers(writer: Writer) -> None:
    """Short, distinct header lines that never end."""
    await _send(writer, b"HTTP/1.1 200 OK\r\n")
    for block in range(1 << 14):
        await _send(writer, b"".join(b"X-H-%d-%d: v\r\n" % (block, n) for n in range(1000)))


async def interim_flood(writer: Writer) -> None:
    """``100 Continue`` after ``100 Continue``, never the response."""
    block = b"HTTP/1.1 100 Continue\r\n\r\n" * 1000
    for _ in range(1 << 14):
        await _send(writer, block)


async def header_flood(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 OK\r\n"
                + b"".join(b"X-Flood-%d: v\r\n" % n for n in range(10_000))
                + b"Content-Length: 2\r\n\r\nok")


async def repeated_header(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 OK\r\n" + b"Set-Cookie: a=b; Path=/\r\n" * 10_000
                + b"Content-Length: 2\r\n\r\nok")


async def big_head(writer: Writer) -> None:
    """Every line and the count within limits, the head as a whole too large (90 KiB)."""
    await _send(writer, b"HTTP/1.1 200 OK\r\n"
                + b"".join(b"X-Big-%d: %s\r\n" % (n, b"b" * 1000) for n in range(90))
                + b"Content-Length: 2\r\n\r\nok")


async def long_status(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 " + b"O" * 20_000 + b"\r\nContent-Length: 2\r\n\r\nok")


async def bad_chunking(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\nzz\r\n")
    await asyncio.sleep(3600)


async def short_body(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")


async def drip_body(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(100_000):
        await _send(writer, b"x")
        await asyncio.sleep(DRIP)


async def huge_body(writer: Writer) -> None:
    """1 GiB streamed lazily without a length (framed by closing)."""
    await _send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n")
    chunk = b"<p>" + b"a" * (64 * 1024 - 3)
    for _ in range((1 << 30) // len(chunk)):
        await _send(writer, chunk)


async def gzip_bomb(writer: Writer) -> None:
    data = bomb()
    await _send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip"
                        b"\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    await asyncio.sleep(3600)


async def not_http(writer: Writer) -> None:
    await _send(writer, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    await asyncio.sleep(3600)


async def redirect_loop(writer: Writer) -> None:
    await _send(writer, b"HTTP/1.1 302 Found\r\nLocation: /redirect-loop\r\n"
                        b"Connection: close\r\nContent-Length: 0\r\n\r\n")


@cache
def big_page() -> bytes:
    """A well-formed page just under 1 MB (max_body_bytes' default is 1 MiB) of Vietnamese
    prose, entities and markup: the content check reads all of it."""
    para = ("<p class=\"tin\">Ủy ban nhân dân tỉnh Hậu Giang thông báo lịch tiếp công dân "
            "tháng 12; <a href=\"/van-ban?id=42\">xem văn bản</a> &amp; phụ lục.</p>\n")
    return ok_page(para * (1_000_000 // len(para.encode())))


async def big(writer: Writer) -> None:
    await _send(writer, big_page())


def _page(text: str) -> Answer:
    async def answer(writer: Writer) -> None:
        await _send(writer, ok_page(text))
    return answer


ANSWERS: dict[str, Answer] = {
    "hang": hang,
    "slow-head": slow_head,
    "endless-line": endless_line,
    "endless-headers": endless_headers,
    "interim-flood": interim_flood,
    "header-flood": header_flood,
    "repeated-header": repeated_header,
    "big-head": big_head,
    "long-status": long_status,
    "bad-chunking": bad_chunking,
    "short-body": short_body,
    "drip-body": drip_body,
    "huge-body": huge_body,
    "gzip-bomb": gzip_bomb,
    "not-http": not_http,
    "redirect-loop": redirect_loop,
    "entity-keyword": _page("Chào mừng — nh&agrave; c&aacute;i uy t&iacute;n, "
                            "t&agrave;i&nbsp;x&#7881;u"),
    "nul-keyword": _page("Tin tức: t\x00ài x\u200bỉu hôm nay"),
    "tag-split-keyword": _page("Khuyến mãi nh<b></b>à c<span>ái</span> mới"),
    "decomposed-keyword": _page("Trang chủ — " + unicodedata.normalize("NFD", "Lô Đề")),
    "unaccented-keyword": _page("Dang ky nha cai uy tin nhat"),
    "big-page": big,
    "ok": _page("Cổng thông tin điện tử"),
}


async def handle(reader: asyncio.StreamReader, writer: Writer) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode("latin-1").strip("/").split("?")[0]
        answer = ANSWERS.get(path)
        if answer is None:
            await _send(writer, ok_page("<br>".join(sorted(ANSWERS))))
        else:
            await answer(writer)
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.transport.abort()


async def start(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """A server answering every path of ``ANSWERS``; port 0 takes a free one."""
    return await asyncio.start_server(handle, host, port, backlog=1024)


async def _serve(host: str, port: int) -> None:
    server = await start(host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
