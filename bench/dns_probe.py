"""What a ``dns`` check costs: plain UDP answers, truncation retried over TCP, and junk floods.

A local DNS server runs in a child process (UDP and TCP on one port, built on asyncio and
dnspython like the collector tests' servers) and answers every query in one of three ways:
``plain`` (the answer), ``truncated`` (TC over UDP, the answer over TCP) or ``junk`` (N junk
datagrams, then the answer). ``dnspython`` is the baseline: a bare ``dns.asyncquery.udp``
query to the plain server, without the collector's verdict and samples. This process runs
``--checks`` checks of the real collector, ``--concurrency`` at a time, and prints checks per
second, the median and 95th percentile of one check, and this process's CPU per check (for
``junk``: per ignored datagram). The machine may be shared: the load average is printed with
the figures.

    .venv/bin/python bench/dns_probe.py [--checks 2000] [--concurrency 50] [--junk 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.asyncquery
import dns.flags
import dns.message
import dns.rrset

from collectors.dns import DnsCollector
from ioc.model import CollectResult
from tests.collectors.probe_support import collector_config

NAME = "dichvucong.haugiang.gov.vn"


def reply_to(query: dns.message.Message) -> bytes:
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text_list(query.question[0].name, 300, "IN", "A",
                                                    ["10.10.0.5", "10.10.0.6"]))
    return response.to_wire()


def serve(mode: str, junk: int, ports: Any) -> None:
    """The child process: one DNS server until it is terminated."""

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            query = dns.message.from_wire(data)
            if mode == "truncated":
                response = dns.message.make_response(query)
                response.flags |= dns.flags.TC
                self.transport.sendto(response.to_wire(), addr)
                return
            if mode == "junk":
                for i in range(junk):
                    self.transport.sendto(b"\xff" * (12 + i % 40), addr)
            self.transport.sendto(reply_to(query), addr)

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        wire = reply_to(dns.message.from_wire(await reader.readexactly(length)))
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        while True:
            udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            port = udp.get_extra_info("sockname")[1]
            try:
                await asyncio.start_server(on_tcp, "127.0.0.1", port, backlog=1024)
                break
            except OSError:
                udp.close()
        ports.put(port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def bare_dnspython(port: int) -> CollectResult:
    """The baseline: one ``dns.asyncquery.udp`` query, no verdict, no samples."""
    query = dns.message.make_query(NAME, "A")
    response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5,
                                        ignore_unexpected=True, ignore_errors=True)
    return CollectResult(up=bool(response.answer))


async def run(port: int, checks: int, concurrency: int,
              baseline: bool) -> tuple[list[float], float, float, float]:
    """Durations of each check, CPU and wall seconds of all, datagrams ignored in all."""
    collector = DnsCollector(collector_config({"type": "dns", "query": NAME,
                                               "server": f"127.0.0.1:{port}",
                                               "query_timeout": "5s"}))
    gate = asyncio.Semaphore(concurrency)
    durations: list[float] = []
    ignored = [0.0]

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            result = await (bare_dnspython(port) if baseline
                            else collector.collect(None, time.time()))
            durations.append(time.perf_counter() - started)
            if not result.up:
                raise SystemExit(f"check failed: {result.reason} {result.error}")
            ignored[0] += sum(s.value for s in result.samples
                              if s.metric == "ioc_probe_dns_ignored_datagrams")

    await one()  # warm-up
    durations.clear()
    ignored[0] = 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(checks)))
    return durations, time.process_time() - cpu, time.perf_counter() - wall, ignored[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--junk", type=int, default=100)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    cpu_per_check: dict[str, float] = {}
    for mode in ("dnspython", "plain", "truncated", "junk"):
        context = multiprocessing.get_context("spawn")
        ports: Any = context.Queue()
        served = "plain" if mode == "dnspython" else mode
        child = context.Process(target=serve, args=(served, args.junk, ports), daemon=True)
        child.start()
        try:
            port = ports.get(timeout=30)
            durations, cpu, wall, ignored = asyncio.run(
                run(port, args.checks, args.concurrency, mode == "dnspython"))
        finally:
            child.terminate()
            child.join()
        durations.sort()
        p95 = durations[int(len(durations) * 0.95) - 1]
        cpu_per_check[mode] = cpu / args.checks
        line = (f"{mode:>9}: {args.checks / wall:7.0f} checks/s, one check median "
                f"{statistics.median(durations) * 1000:6.2f} ms, p95 {p95 * 1000:6.2f} ms, "
                f"CPU {cpu_per_check[mode] * 1e6:6.0f} µs/check")
        if mode == "junk" and ignored:
            extra = (cpu_per_check["junk"] - cpu_per_check["plain"]) * args.checks / ignored
            line += (f"; {ignored / args.checks:.0f} of {args.junk} junk datagrams per check "
                     f"reached ioc, {extra * 1e6:.1f} µs CPU per ignored datagram")
        print(line)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
