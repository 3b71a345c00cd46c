"""A SIEM endpoint that answers like a hostile server: every failure gets a reason from the
probes' own vocabulary, never the catch-all ``error``, and nothing hangs the collector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.probe.session import open_probe_session
from collectors.siem import SiemCollector, SiemConfig
from collectors.simulator import hostile as hostile_answers
from ioc.collector import CollectorFailure
from ioc.event_sink import EventSink
from tests.helpers import trickling

# path on collectors.simulator.hostile: the reason the SIEM poll must fail with
EXPECTED = {
    "header-flood": "protocol_error",
    "endless-headers": "protocol_error",
    "repeated-header": "protocol_error",
    "endless-line": "protocol_error",
    "long-status": "protocol_error",
    "big-head": "invalid_response",  # within aiohttp's per-line and count limits: read, not JSON
    "interim-flood": "too_large",
    "not-http": "protocol_error",
    "bad-chunking": "protocol_error",
    "short-body": "protocol_error",
    "redirect-loop": "redirect_loop",
    "huge-body": "too_large",
    "gzip-bomb": "too_large",  # inflated by the session in bounded pieces, stopped at 32 MiB
    "ok": "invalid_response",   # an HTML page where JSON was promised
}


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    server = await hostile_answers.start()
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.parametrize("path", sorted(EXPECTED))
async def test_hostile_siem_answers_fail_with_a_named_reason(hostile: str, sink: EventSink,
                                                             path: str) -> None:
    config = SiemConfig.model_validate({"type": "siem", "name": "siem", "department": "STP",
                                        "shape": "json", "url": f"{hostile}/{path}"})
    collector = SiemCollector(config)
    collector.bind(sink)
    async with open_probe_session() as session:  # the session the service polls with
        with pytest.raises(CollectorFailure) as failure:
            async with asyncio.timeout(20):  # the runner's own timeout bounds a real poll
                await collector.collect(session, 1_800_000_000.0)
    assert failure.value.reason == EXPECTED[path], str(failure.value)
    assert str(failure.value)


async def test_refused_port_is_connect_refused(sink: EventSink) -> None:
    from tests.conftest import free_port

    config = SiemConfig.model_validate({"type": "siem", "name": "siem", "department": "STP",
                                        "shape": "json",
                                        "url": f"http://127.0.0.1:{free_port()}/alerts"})
    collector = SiemCollector(config)
    collector.bind(sink)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CollectorFailure) as failure:
            await collector.collect(session, 1_800_000_000.0)
    assert failure.value.reason == "connect_refused"


async def test_a_large_answer_is_read_whole_across_many_network_reads(aiohttp_server: Any,
                                                                     sink: EventSink) -> None:
    """A 3 MB JSON list streamed in small pieces: every item, not the first read's worth."""
    items = [{"id": f"evt-{n}", "timestamp": 1_800_000_000.0 - n, "severity": "high",
              "title": "Quét cổng " + "x" * 300} for n in range(8000)]
    payload = json.dumps(items).encode()
    app = web.Application()
    app.router.add_get("/alerts", trickling(payload, 1500))
    server = await aiohttp_server(app)
    config = SiemConfig.model_validate({"type": "siem", "name": "siem", "department": "STP",
                                        "shape": "json", "url": str(server.make_url("/alerts")),
                                        "lookback": "30d"})
    collector = SiemCollector(config)
    collector.bind(sink)
    async with open_probe_session() as session:
        result = await collector.collect(session, 1_800_000_000.0)
    assert len(payload) > 2_000_000
    assert result.up and result.value == len(items)
