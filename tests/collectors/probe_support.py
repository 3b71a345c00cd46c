"""A runner wired to a real pipeline and a traced probe session, for the probe tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collectors.probe.session import open_probe_session
from collectors.registry import build_collector
from ioc.cache import SeriesCache
from ioc.metrics import ServiceMetrics
from ioc.model import Labels, make_labels
from ioc.pipeline import Pipeline, PollOutcome
from ioc.poll_limits import PollLimits
from ioc.runner import PollRunner
from ioc.status import StatusBoard, TargetState
from service.config import parse_config
from tests.helpers import ListSink


class ProbeHarness:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, "test")
        self.cache = SeriesCache(3600, 100)
        self.board = StatusBoard()
        self.sink = ListSink()
        self.pipeline = Pipeline(self.cache, self.board, self.sink, self.metrics)
        self.limits = PollLimits(200, 100)
        self.session = session
        self.runners: list[PollRunner] = []

    def runner(self, block: dict[str, Any], timeout: float = 2.0,
               interval: float = 10.0) -> PollRunner:
        """A runner for one collector block, validated by the real config loader."""
        return self.runner_for(build_collector(collector_config(block)), timeout, interval)

    def runner_for(self, collector: Any, timeout: float = 2.0,
                   interval: float = 10.0) -> PollRunner:
        """A runner for a collector built by the test (e.g. with its own resolver)."""
        cfg = collector.config
        self.board.register(TargetState(cfg.name, cfg.department, collector.kind, interval))
        runner = PollRunner(collector, interval=interval, timeout=timeout, limits=self.limits,
                            pipeline=self.pipeline, metrics=self.metrics,
                            session=lambda: self.session)
        self.runners.append(runner)
        return runner

    async def close(self) -> None:
        for runner in self.runners:
            await runner.close()

    def value(self, metric: str, labels: Labels) -> float | None:
        latest = self.cache.latest(metric, labels)
        return None if latest is None else latest[1]


def collector_config(block: dict[str, Any]) -> Any:
    """One collector block through the real config loader, as config.yaml would give it."""
    block = {"name": "stp-web", "department": "STP", **block}
    config = parse_config({"departments": [{"code": "STP", "name": "Sở Tư pháp"}],
                           "collectors": [block]}, env={})
    return config.collectors[0]


def labels(kind: str = "http", name: str = "stp-web", **extra: str) -> Labels:
    return make_labels(target=name, department="STP", kind=kind, **extra)


def samples_of(outcome: PollOutcome, metric: str) -> dict[Labels, float]:
    return {s.labels: s.value for s in outcome.samples if s.metric == metric}


async def serve(aiohttp_server: Callable[..., Any], handler: Callable[..., Any],
                **kwargs: Any) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app, **kwargs)
    return str(server.make_url("/"))


@pytest.fixture
async def probe() -> AsyncIterator[ProbeHarness]:
    """A harness on a traced, fresh-connection probe session (import it into a test module)."""
    session = open_probe_session(limit=200, limit_per_host=100, dns_cache_seconds=None)
    harness = ProbeHarness(session)
    try:
        yield harness
    finally:
        await harness.close()
        await session.close()
