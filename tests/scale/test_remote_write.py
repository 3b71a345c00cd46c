"""Remote write: the wire format, buffering through a receiver's outage, and the real
VictoriaMetrics reading back what a running ioc wrote."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from ioc.model import Sample, make_labels
from ioc.remote_write import RemoteWriter, decode_body, encode_body
from ioc.remote_write_config import RemoteWriteEndpoint
from service.app import IocApp
from service.config import ConfigError, parse_config
from tests.conftest import PollWatcher, demo_config, free_port, require_binary
from tests.helpers import Changes


def points(request: Any) -> list[tuple[str, dict[str, str], int, float]]:
    """(metric, labels, timestamp ms, value) of every point in a decoded WriteRequest."""
    out = []
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        metric = labels.pop("__name__")
        out.extend((metric, labels, s.timestamp, s.value) for s in series.samples)
    return out


def make_samples(count: int, start: float = 1_700_000_000.0) -> list[Sample]:
    return [Sample("ioc_target_up", make_labels(target=f"t{i % 3}"), float(i % 2), start + i)
            for i in range(count)]


# --------------------------------------------------------------------------------------------
# Wire format


def test_body_is_snappy_protobuf_with_sorted_labels_and_external_labels() -> None:
    samples = [
        Sample("ioc_target_up", make_labels(target="stp-health", Zone="a"), 1.0, 1700000000.25),
        Sample("ioc_target_up", make_labels(target="stp-health", Zone="a"), 0.0, 1700000001.0),
        Sample("ioc_probe_duration_seconds", make_labels(target="x", province="own"), 0.5,
               1700000000.0),
    ]
    request = decode_body(encode_body(samples, {"province": "HG"}))
    assert len(request.timeseries) == 2  # one TimeSeries per series, points kept together
    names = [[label.name for label in series.labels] for series in request.timeseries]
    assert names == [sorted(n) for n in names]  # receivers require sorted label names
    assert points(request) == [
        ("ioc_target_up", {"Zone": "a", "province": "HG", "target": "stp-health"},
         1700000000250, 1.0),
        ("ioc_target_up", {"Zone": "a", "province": "HG", "target": "stp-health"},
         1700000001000, 0.0),
        # a series' own label wins over the endpoint's
        ("ioc_probe_duration_seconds", {"province": "own", "target": "x"}, 1700000000000, 0.5),
    ]


@pytest.mark.parametrize(("entry", "message"), [
    ({"url": "ftp://x/api/v1/write"}, "expected an http:// or https:// URL"),
    ({"url": "http://u:p@x/api/v1/write"}, "put credentials in basic_auth"),
    ({"url": "http://x/w", "bearer_token": "t" * 20,
      "basic_auth": {"username": "u", "password": "p"}}, "bearer_token or basic_auth"),
    ({"url": "http://x/w", "labels": {"__x": "1"}}, "invalid label name"),
    ({"url": "http://x/w", "min_backoff": "10s", "max_backoff": "1s"}, "max_backoff"),
    ({"url": "http://x/w", "batch": 10}, "unknown key"),
])
def test_bad_remote_write_config_is_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"remote_write": [entry]}, env={})
    assert any(issue.path.startswith("remote_write[0]") and message in issue.message
               for issue in err.value.issues), err.value.issues


def test_remote_write_secrets_are_masked_and_name_hides_the_path() -> None:
    config = parse_config({"remote_write": [
        {"url": "https://vm.example:8428/api/v1/write?tenant=1",
         "basic_auth": {"username": "ioc", "password": "${RW_PASSWORD}"}}]},
        env={"RW_PASSWORD": "s3cret-password-value"})
    assert "s3cret-password-value" in config.secrets
    assert config.remote_write[0].remote == "vm.example:8428"


# --------------------------------------------------------------------------------------------
# A receiver that is away for a while


@dataclass
class Receiver:
    """A remote-write receiver: answers ``statuses`` in turn (then 204), records what it took."""

    statuses: list[int] = field(default_factory=list)
    accepted: list[tuple[str, dict[str, str], int, float]] = field(default_factory=list)
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    changed: Changes = field(default_factory=Changes)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.headers.append(dict(request.headers))
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 204
        if status < 300:
            self.accepted.extend(points(decode_body(body)))
        self.changed.set()
        return web.Response(status=status, text="" if status < 300 else "not now")

    async def until(self, predicate: Any, limit: float = 10.0) -> None:
        await self.changed.until(predicate, limit)

    async def serve(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/api/v1/write", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


def endpoint(port: int, **extra: Any) -> RemoteWriteEndpoint:
    values: dict[str, Any] = {"url": f"http://127.0.0.1:{port}/api/v1/write",
                              "name": "test", "flush_interval": "50ms",
                              "min_backoff": "20ms", "max_backoff": "100ms", **extra}
    return RemoteWriteEndpoint.model_validate(values)


def sample_count(registry: CollectorRegistry, result: str) -> float:
    value = registry.get_sample_value("ioc_remote_write_samples_total",
                                      {"remote": "test", "result": result})
    return value or 0.0


@pytest.fixture
async def writer_registry() -> AsyncIterator[CollectorRegistry]:
    yield CollectorRegistry()


async def test_receiver_down_for_a_while_gets_every_buffered_sample_once(
        writer_registry: CollectorRegistry) -> None:
    port = free_port()
    receiver = Receiver(statuses=[503, 429])  # after the outage: busy twice, then fine
    writer = RemoteWriter([endpoint(port, batch_size=40,
                                    bearer_token="remote-write-token-01")],
                          writer_registry, user_agent="ioc/test")
    writer.start()
    runner: web.AppRunner | None = None
    try:
        samples = make_samples(100)
        writer.submit(samples[:60])
        # nothing listens: connection refused, retried with backoff, the samples wait
        retries = {"remote": "test", "result": "retry"}
        async with asyncio.timeout(10):  # a refused connection has no event to await
            while True:
                if (writer_registry.get_sample_value("ioc_remote_write_requests_total",
                                                     retries) or 0) >= 3:
                    break
                await asyncio.sleep(0.02)
        writer.submit(samples[60:])
        assert writer_registry.get_sample_value(
            "ioc_remote_write_queue_samples", {"remote": "test"}) == 100
        runner = await receiver.serve(port)
        await receiver.until(lambda: len(receiver.accepted) == 100)
        expected = [(s.metric, dict(s.labels), round(s.ts * 1000), s.value) for s in samples]
        assert sorted(receiver.accepted, key=lambda p: p[2]) == expected
        head = receiver.headers[0]
        assert head["Content-Encoding"] == "snappy"
        assert head["Content-Type"] == "application/x-protobuf"
        assert head["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        assert head["Authorization"] == "Bearer remote-write-token-01"
    finally:
        await writer.stop()
        if runner is not None:
            await runner.cleanup()
    assert len(receiver.accepted) == 100  # none twice
    assert sample_count(writer_registry, "sent") == 100
    assert sample_count(writer_registry, "dropped") == 0
    assert writer_registry.get_sample_value(
        "ioc_remote_write_queue_samples", {"remote": "test"}) == 0


async def test_full_queue_drops_the_oldest_and_counts_them(
        writer_registry: CollectorRegistry) -> None:
    port = free_port()
    receiver = Receiver()
    writer = RemoteWriter([endpoint(port, queue_limit=100, batch_size=1000)],
                          writer_registry, user_agent="ioc/test")
    writer.start()
    runner: web.AppRunner | None = None
    try:
        samples = make_samples(250)
        for start in range(0, 250, 50):
            writer.submit(samples[start:start + 50])
        assert sample_count(writer_registry, "dropped") == 150
        runner = await receiver.serve(port)
        await receiver.until(lambda: len(receiver.accepted) == 100)
        assert sorted(p[2] for p in receiver.accepted) == [
            round(s.ts * 1000) for s in samples[150:]]
    finally:
        await writer.stop()
        if runner is not None:
            await runner.cleanup()


async def test_rejected_batch_is_counted_and_skipped(writer_registry: CollectorRegistry) -> None:
    port = free_port()
    receiver = Receiver(statuses=[400])
    runner = await receiver.serve(port)
    writer = RemoteWriter([endpoint(port, batch_size=10)], writer_registry,
                          user_agent="ioc/test")
    writer.start()
    try:
        samples = make_samples(20)
        writer.submit(samples[:10])
        await receiver.until(lambda: receiver.requests == 1)
        writer.submit(samples[10:])
        await receiver.until(lambda: len(receiver.accepted) == 10)
        assert sorted(p[2] for p in receiver.accepted) == [
            round(s.ts * 1000) for s in samples[10:]]
    finally:
        await writer.stop()
        await runner.cleanup()
    assert sample_count(writer_registry, "rejected") == 10
    assert sample_count(writer_registry, "sent") == 10


async def test_stop_counts_unsent_samples_as_dropped(writer_registry: CollectorRegistry) -> None:
    writer = RemoteWriter([endpoint(free_port())], writer_registry, user_agent="ioc/test",
                          stop_timeout=0.2)
    writer.start()
    writer.submit(make_samples(30))
    await writer.stop()
    assert sample_count(writer_registry, "dropped") == 30
    assert writer.queues[0].queued == 0


# --------------------------------------------------------------------------------------------
# The real VictoriaMetrics


@pytest.fixture
async def victoria_metrics(tmp_path: Path) -> AsyncIterator[str]:
    binary = require_binary("victoria-metrics", "victoria-metrics")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={tmp_path / 'vm'}", "-retentionPeriod=100y",
        "-loggerLevel=ERROR", "-search.latencyOffset=0s",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            while True:
                assert proc.returncode is None, "victoria-metrics exited at start"
                try:
                    async with session.get(f"{url}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def export(session: aiohttp.ClientSession, url: str, match: str) -> list[dict[str, Any]]:
    """Every raw sample VictoriaMetrics holds for ``match``, one JSON line per series."""
    async with session.get(f"{url}/internal/force_flush") as resp:
        assert resp.status == 200
    async with session.post(f"{url}/api/v1/export", data={"match[]": match}) as resp:
        assert resp.status == 200
        return [json.loads(line) for line in (await resp.text()).splitlines()]


async def query(session: aiohttp.ClientSession, url: str, expr: str) -> list[str]:
    """The values of an instant PromQL query through the Prometheus-compatible API."""
    async with session.get(f"{url}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    return [row["value"][1] for row in body["data"]["result"]]


@pytest.mark.slow
async def test_victoria_metrics_stores_what_a_running_ioc_writes(
        tmp_path: Path, victoria_metrics: str) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STTTT", "STP", "CAT"], extra={
        "remote_write": [{"url": f"{victoria_metrics}/api/v1/write", "name": "vm",
                          "flush_interval": "100ms", "labels": {"province": "HG"}}]})
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        targets = set(app.runners)
        await watcher.until(lambda seen: all(
            sum(o.target == t for o in seen) >= 3 for t in targets))
    finally:
        await app.stop(grace=1.0)  # sends what is still queued
    sent = [s for o in watcher.outcomes for s in o.samples if s.metric == "ioc_target_up"]
    assert app.registry.get_sample_value("ioc_remote_write_samples_total",
                                         {"remote": "vm", "result": "dropped"}) == 0

    count = 'count(last_over_time(ioc_target_up{province="HG"}[1h]))'
    async with aiohttp.ClientSession() as session:
        # New series become searchable a moment after the write is acknowledged.
        async with asyncio.timeout(10):
            while True:
                exported = await export(session, victoria_metrics, "ioc_target_up")
                counted = await query(session, victoria_metrics, count)
                if (sum(len(row["timestamps"]) for row in exported) >= len(sent)
                        and counted == [str(len(targets))]):
                    break
                await asyncio.sleep(0.1)
    stored = {(row["metric"]["target"], ts, value)
              for row in exported for ts, value in zip(row["timestamps"], row["values"],
                                                       strict=True)}
    assert stored == {(dict(s.labels)["target"], round(s.ts * 1000), s.value) for s in sent}
    assert {row["metric"]["target"] for row in exported} == targets
    assert all(row["metric"]["province"] == "HG" and row["metric"]["kind"] == "http"
               for row in exported)
