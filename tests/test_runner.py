"""The poll runner against real local HTTP servers: verdicts, reasons, timeouts, logging."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString

from collectors.http import HttpCollector, HttpConfig
from ioc.cache import SeriesCache
from ioc.exposition import Exposition
from ioc.metrics import ServiceMetrics
from ioc.model import CollectResult, make_labels
from ioc.pipeline import Pipeline
from ioc.poll_limits import PollLimits
from ioc.runner import PollRunner
from ioc.status import StatusBoard, TargetState
from tests.helpers import ListSink


class Harness:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, "test")
        self.cache = SeriesCache(3600, 100)
        self.board = StatusBoard()
        self.sink = ListSink()
        self.pipeline = Pipeline(self.cache, self.board, self.sink, self.metrics)
        self.limits = PollLimits(10, 4)
        self.session = session

    def runner(self, collector: object, timeout: float = 2.0) -> PollRunner:
        cfg = collector.config  # type: ignore[attr-defined]
        self.board.register(TargetState(cfg.name, cfg.department, "http", 10.0))
        return PollRunner(collector, interval=10.0, timeout=timeout,  # type: ignore[arg-type]
                          limits=self.limits, pipeline=self.pipeline, metrics=self.metrics,
                          session=lambda: self.session)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with aiohttp.ClientSession() as session:
        yield Harness(session)


def http(url: str, **kw: object) -> HttpCollector:
    return HttpCollector(HttpConfig.model_validate(
        {"type": "http", "name": "stp-web", "department": "STP", "url": url, **kw}))


async def serve(aiohttp_server: Callable, handler: Callable) -> str:  # type: ignore[type-arg]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


async def test_up_target_records_samples_status_and_metrics(harness, aiohttp_server) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    url = await serve(aiohttp_server, ok)
    outcome = await harness.runner(http(url)).poll()
    assert outcome.result.up
    labels = make_labels(target="stp-web", department="STP", kind="http")
    assert harness.cache.latest("ioc_target_up", labels)[1] == 1.0
    assert harness.cache.latest("ioc_probe_http_status_code", labels)[1] == 200.0
    assert {s.metric for s in harness.sink.samples} == {
        "ioc_target_up", "ioc_target_state_up", "ioc_probe_duration_seconds",
        "ioc_probe_http_status_code", "ioc_probe_http_content_length_bytes",
        "ioc_probe_http_redirects", "ioc_probe_http_final_url_info",
        "ioc_probe_phase_duration_seconds"}
    state = harness.board.targets["stp-web"]
    assert state.up is True and state.last_value == 200 and state.latency > 0
    assert harness.registry.get_sample_value(
        "ioc_collector_last_success_timestamp_seconds", {"target": "stp-web"}) > 0
    assert harness.registry.get_sample_value(
        "ioc_collector_duration_seconds_count", {"kind": "http"}) == 1


async def test_last_success_is_exported_from_the_board(harness, aiohttp_server) -> None:
    """No sample before the first success; the value stays while the target fails; remote
    targets (another shard's) are not exported; a target leaves with its board entry."""
    healthy = True

    async def flaky(request: web.Request) -> web.Response:
        return web.Response(status=200 if healthy else 503)

    url = await serve(aiohttp_server, flaky)
    name = "ioc_collector_last_success_timestamp_seconds"
    runner = harness.runner(http(url))
    harness.board.register(TargetState("cat-web", "CAT", "http", 10.0, shard=1, remote=True,
                                       last_success=1_800_000_000.0))
    healthy = False
    await runner.poll()
    assert harness.registry.get_sample_value(name, {"target": "stp-web"}) is None
    assert name not in generate_latest(harness.registry).decode()

    healthy = True
    first = await runner.poll()
    assert harness.registry.get_sample_value(name, {"target": "stp-web"}) == first.ts
    healthy = False
    await runner.poll()
    assert harness.registry.get_sample_value(name, {"target": "stp-web"}) == first.ts
    assert harness.registry.get_sample_value(name, {"target": "cat-web"}) is None
    body, _ = await Exposition().render(harness.registry)
    assert body.decode() == generate_latest(harness.registry).decode()
    assert [line for line in body.decode().splitlines() if line.startswith(name)] == [
        f'{name}{{target="stp-web"}} {floatToGoString(first.ts)}']

    harness.board.remove("stp-web")
    assert harness.registry.get_sample_value(name, {"target": "stp-web"}) is None
    with pytest.raises(TypeError):
        harness.metrics.last_success.labels(target="stp-web")


async def test_unexpected_status_is_down_with_reason(harness, aiohttp_server) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503)

    url = await serve(aiohttp_server, unavailable)
    outcome = await harness.runner(http(url)).poll()
    assert not outcome.result.up
    assert outcome.result.reason == "http_status"
    assert "503" in (outcome.result.error or "")
    assert harness.registry.get_sample_value(
        "ioc_probe_failures_total",
        {"target": "stp-web", "department": "STP", "reason": "http_status"}) == 1


async def test_expected_status_ranges(harness, aiohttp_server) -> None:
    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418)

    url = await serve(aiohttp_server, teapot)
    outcome = await harness.runner(http(url, expected_status=[200, "400-499"])).poll()
    assert outcome.result.up


async def test_hanging_target_times_out_within_deadline(harness, aiohttp_server) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    url = await serve(aiohttp_server, hang)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await harness.runner(http(url), timeout=0.3).poll()
    elapsed = loop.time() - started
    release.set()
    assert outcome.result.reason == "timeout"
    assert 0.3 <= elapsed < 1.3


async def test_closed_port_is_connect_refused(harness, unused_tcp_port) -> None:
    outcome = await harness.runner(http(f"http://127.0.0.1:{unused_tcp_port}/")).poll()
    assert outcome.result.reason == "connect_refused"


async def test_unresolvable_name_is_dns(harness) -> None:
    outcome = await harness.runner(http("http://no-such-host.invalid/"), timeout=5).poll()
    assert outcome.result.reason == "dns"


async def test_server_closing_connection_is_protocol_error(harness, aiohttp_server) -> None:
    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError

    url = await serve(aiohttp_server, drop)
    outcome = await harness.runner(http(url)).poll()
    assert outcome.result.reason == "protocol_error"


class BrokenCollector:
    kind = "http"
    Config = HttpConfig

    def __init__(self, exc: BaseException | None = None, result: object = None) -> None:
        self.config = HttpConfig.model_validate(
            {"type": "http", "name": "broken", "department": "STP", "url": "http://x/"})
        self.exc = exc
        self.result = result

    @property
    def host(self) -> str | None:
        return None

    async def collect(self, session: aiohttp.ClientSession, now: float) -> CollectResult:
        if self.exc is not None:
            raise self.exc
        return self.result  # type: ignore[return-value]


async def test_collector_exception_becomes_a_recorded_failure(harness) -> None:
    outcome = await harness.runner(BrokenCollector(ZeroDivisionError("division by zero"))).poll()
    assert not outcome.result.up
    assert outcome.result.reason == "error"
    assert "ZeroDivisionError" in (outcome.result.error or "")


async def test_collector_returning_garbage_is_invalid_response(harness) -> None:
    outcome = await harness.runner(BrokenCollector(result={"up": True})).poll()
    assert outcome.result.reason == "invalid_response"


async def test_logs_once_when_down_and_once_when_recovered(harness, aiohttp_server,
                                                           caplog) -> None:
    healthy = True

    async def flip(request: web.Request) -> web.Response:
        return web.Response(status=200 if healthy else 500)

    url = await serve(aiohttp_server, flip)
    runner = harness.runner(http(url))
    caplog.set_level(logging.INFO, logger="ioc.collector")
    await runner.poll()
    healthy = False
    for _ in range(3):
        await runner.poll()
    healthy = True
    await runner.poll()
    await runner.poll()
    messages = [r.getMessage() for r in caplog.records if r.name == "ioc.collector"]
    assert messages == ["target down", "target recovered"]


async def test_per_host_limit_caps_concurrency(harness, aiohttp_server) -> None:
    in_flight = 0
    peak = 0
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak >= 2:
            gate.set()
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.Response(text="ok")

    url = await serve(aiohttp_server, slow)
    harness.limits = PollLimits(100, 2)
    runners = []
    for i in range(8):
        c = HttpCollector(HttpConfig.model_validate(
            {"type": "http", "name": f"t{i}", "department": "STP", "url": url}))
        runners.append(harness.runner(c))
    await asyncio.gather(*(r.poll() for r in runners))
    assert peak == 2
