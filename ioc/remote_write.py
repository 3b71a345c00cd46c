"""Streams every sample to Prometheus remote-write receivers (VictoriaMetrics, Mimir, Thanos…).

One province's history fits ioc's own store; a national view does not. Remote write hands every
sample, as it is collected, to a clustered time-series database that already scales, speaking
the protocol they all accept: a protobuf ``WriteRequest``, snappy block-compressed, POSTed.

The wire format comes from the ``protobuf`` library, with the four messages of Prometheus'
``remote.proto``/``types.proto`` (WriteRequest, TimeSeries, Label, Sample) declared here as a
``FileDescriptorProto`` and turned into classes at import. That needs no ``protoc`` at build or
run time, no generated file to keep in step, and no hand-written varint encoder: the library
does the encoding (in C, through upb) and the test decodes with it too, while the real
VictoriaMetrics test proves the bytes are what receivers expect. Snappy comes from ``cramjam``
(Rust, wheels for every platform; python-snappy itself now wraps it).

Delivery follows Prometheus' own queue manager: each endpoint has one bounded queue and one
sender task; a batch is sent when ``batch_size`` samples wait or ``flush_interval`` passed;
network errors, 5xx and 429 are retried with exponential backoff (the same batch, so order per
series holds and nothing is lost while the queue has room); any other 4xx means the receiver
will never take that batch, so it is counted as rejected and skipped. When the queue is full
the **oldest** samples are dropped and counted, as the store writer does: after an outage the
newest data is what operators need first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ioc.batching import Batches
from ioc.model import Sample
from ioc.overflow import OverflowLog
from ioc.remote_write_config import RemoteWriteEndpoint

if TYPE_CHECKING:
    from ioc.pipeline import PollOutcome

log = logging.getLogger("ioc.remote_write")

ERROR_BODY_LIMIT = 512  # characters of a receiver's error answer worth logging


# --------------------------------------------------------------------------------------------
# Wire format


def _message_classes() -> dict[str, Any]:
    """Prometheus' WriteRequest and its parts, declared in code (see the module docstring)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="ioc/prometheus_remote.proto",
                                             package="prometheus", syntax="proto3")
    f = descriptor_pb2.FieldDescriptorProto
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        msg = fdp.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            msg.field.add(name=field_name, number=number, type=kind, label=label,
                          **({"type_name": type_name} if type_name else {}))

    message("Label", ("name", 1, f.TYPE_STRING, optional, ""),
            ("value", 2, f.TYPE_STRING, optional, ""))
    message("Sample", ("value", 1, f.TYPE_DOUBLE, optional, ""),
            ("timestamp", 2, f.TYPE_INT64, optional, ""))
    message("TimeSeries", ("labels", 1, f.TYPE_MESSAGE, repeated, ".prometheus.Label"),
            ("samples", 2, f.TYPE_MESSAGE, repeated, ".prometheus.Sample"))
    message("WriteRequest",
            ("timeseries", 1, f.TYPE_MESSAGE, repeated, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()  # private: never clashes with another remote.proto
    file_desc = pool.Add(fdp)
    return {name: message_factory.GetMessageClass(file_desc.message_types_by_name[name])
            for name in ("Label", "Sample", "TimeSeries", "WriteRequest")}


MESSAGES = _message_classes()
WriteRequest = MESSAGES["WriteRequest"]


def build_write_request(samples: Sequence[Sample], extra_labels: dict[str, str]) -> bytes:
    """The serialized WriteRequest for ``samples``: one TimeSeries per series, points in order.

    ``extra_labels`` are added to every series unless the series has that label already (like
    Prometheus' external labels); labels are sorted by name, as receivers require.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.series_key, []).append(sample)
    request = WriteRequest()
    for (metric, labels), points in groups.items():
        merged = dict(extra_labels)
        merged.update(labels)
        merged["__name__"] = metric
        series = request.timeseries.add()
        for name in sorted(merged):
            series.labels.add(name=name, value=merged[name])
        for point in points:
            series.samples.add(value=point.value, timestamp=round(point.ts * 1000))
    return bytes(request.SerializeToString())


def encode_body(samples: Sequence[Sample], extra_labels: dict[str, str]) -> bytes:
    """A request body: the WriteRequest, snappy block format (not the framed format)."""
    return bytes(cramjam.snappy.compress_raw(build_write_request(samples, extra_labels)))


def decode_body(body: bytes) -> Any:
    """The WriteRequest in a body (what a receiver does; ioc's tests use it)."""
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request


# --------------------------------------------------------------------------------------------
# Metrics


class RemoteWriteMetrics:
    """Per endpoint (label ``remote``): what was sent, dropped or rejected, and the backlog."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.samples = Counter(
            "ioc_remote_write_samples_total",
            "Samples handed to remote-write endpoints, by result: sent (accepted by the "
            "receiver), dropped (oldest discarded from a full queue, or unsent at shutdown), "
            "rejected (the receiver refused the batch with a 4xx other than 429).",
            ["remote", "result"], registry=registry)
        self.requests = Counter(
            "ioc_remote_write_requests_total",
            "Remote-write requests by result: ok, retry (network error, 5xx or 429; the same "
            "batch is sent again after a backoff) or rejected.",
            ["remote", "result"], registry=registry)
        self.queue = Gauge(
            "ioc_remote_write_queue_samples",
            "Samples waiting for a remote-write endpoint (including the batch being sent).",
            ["remote"], registry=registry)
        self.duration = Histogram(
            "ioc_remote_write_request_duration_seconds",
            "Time of one remote-write request, whatever its result.",
            ["remote"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        self.highest_sent = Gauge(
            "ioc_remote_write_highest_sent_timestamp_seconds",
            "Unix time of the newest sample a remote-write endpoint accepted; its distance "
            "from now is how far the endpoint is behind.",
            ["remote"], registry=registry)


# --------------------------------------------------------------------------------------------
# One endpoint


class RejectedError(Exception):
    """The receiver answered a 4xx other than 429: this batch will never be accepted."""


class RemoteWriteQueue:
    """The bounded queue and sender task of one endpoint."""

    def __init__(self, endpoint: RemoteWriteEndpoint, metrics: RemoteWriteMetrics, *,
                 user_agent: str, stop_timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self.remote = endpoint.remote
        self._overflow = OverflowLog(log, "remote write queue", remote=endpoint.remote)
        self._metrics = metrics
        self._user_agent = user_agent
        self._batches: Batches[Sample] = Batches(
            limit=endpoint.queue_limit, batch_size=endpoint.batch_size,
            flush_interval=endpoint.flush_interval, stop_timeout=stop_timeout)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failing_since: float | None = None
        self._failures = 0
        for result in ("sent", "dropped", "rejected"):  # every series exists from the start
            metrics.samples.labels(remote=self.remote, result=result)
        metrics.queue.labels(remote=self.remote).set(0)

    @property
    def queued(self) -> int:
        return self._batches.queued

    def submit(self, samples: Sequence[Sample]) -> None:
        """Queue samples; never blocks. A full queue drops its oldest samples (counted)."""
        if not samples:
            return
        pushed = self._batches.push_dropping_oldest(samples)
        if pushed.dropped:
            self._metrics.samples.labels(remote=self.remote, result="dropped").inc(
                pushed.dropped)
            self._overflow.dropped(pushed.dropped, queue_limit=self.endpoint.queue_limit)
        else:
            self._overflow.ok()
        self._gauge()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("remote-write queue already started")
        self._batches.restart()
        # Keep-alive here (unlike probes): one receiver, many requests.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout),
            headers={"User-Agent": self._user_agent})
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"ioc-remote-write-{self.remote}")

    async def stop(self) -> None:
        """Send what is queued for at most ``stop_timeout`` s; the rest is counted as dropped."""
        task = self._task
        if task is not None:
            await self._batches.stop(task)
            self._task = None
        lost = self._batches.clear()
        if lost:
            log.error("remote write %s: stopping with %d samples unsent; they are lost",
                      self.remote, lost)
            self._metrics.samples.labels(remote=self.remote, result="dropped").inc(lost)
            self._gauge()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _gauge(self) -> None:
        self._metrics.queue.labels(remote=self.remote).set(self.queued)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batches = self._batches
        while True:
            await batches.idle()
            while batches.buffer:
                sent = await self._deliver(batches.take(batches.batch_size), loop)
                batches.settle(sent)  # not sent: the deadline passed, stop() counts the rest
                if not sent:
                    return
                self._gauge()
            if batches.stopping.is_set():
                return

    async def _deliver(self, batch: list[Sample], loop: asyncio.AbstractEventLoop) -> bool:
        """Send one batch until accepted or rejected; False if shutdown's deadline passed."""
        body = encode_body(batch, self.endpoint.labels)
        delay = self.endpoint.min_backoff
        samples = self._metrics.samples
        batches = self._batches
        while True:
            if batches.past_deadline():
                return False
            try:
                async with asyncio.timeout_at(batches.deadline):
                    await self._post(body)
            except RejectedError as exc:
                self._metrics.requests.labels(remote=self.remote, result="rejected").inc()
                samples.labels(remote=self.remote, result="rejected").inc(len(batch))
                log.error("remote write %s: receiver rejected %d samples: %s",
                          self.remote, len(batch), exc)
                return True
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._metrics.requests.labels(remote=self.remote, result="retry").inc()
                self._record_failure(exc, loop.time())
                await batches.backoff(delay)
                delay = min(delay * 2, self.endpoint.max_backoff)
                continue
            self._metrics.requests.labels(remote=self.remote, result="ok").inc()
            samples.labels(remote=self.remote, result="sent").inc(len(batch))
            self._metrics.highest_sent.labels(remote=self.remote).set(
                max(sample.ts for sample in batch))
            if self._failing_since is not None:
                log.warning("remote write %s: recovered after %d failed attempts over %.1f s",
                            self.remote, self._failures, loop.time() - self._failing_since)
                self._failing_since = None
                self._failures = 0
            return True

    async def _post(self, body: bytes) -> None:
        session = self._session
        if session is None:
            raise RuntimeError("remote-write queue not started")
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                   "X-Prometheus-Remote-Write-Version": "0.1.0"}
        endpoint = self.endpoint
        auth = None
        if endpoint.bearer_token is not None:
            headers["Authorization"] = f"Bearer {endpoint.bearer_token.get_secret_value()}"
        elif endpoint.basic_auth is not None:
            auth = aiohttp.BasicAuth(endpoint.basic_auth.username,
                                     endpoint.basic_auth.password.get_secret_value())
        started = time.perf_counter()
        try:
            async with session.post(endpoint.url, data=body, headers=headers,
                                    auth=auth) as response:
                if response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:ERROR_BODY_LIMIT].strip()
                message = f"HTTP {response.status} {text}".strip()
                if response.status == 429 or response.status >= 500:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status, message=message)
                raise RejectedError(message)
        finally:
            self._metrics.duration.labels(remote=self.remote).observe(
                time.perf_counter() - started)

    def _record_failure(self, exc: Exception, now: float) -> None:
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.warning("remote write %s: sending failed (%s); retrying with backoff up to "
                        "%g s, queueing up to %d samples", self.remote, reason,
                        self.endpoint.max_backoff, self.endpoint.queue_limit)


# --------------------------------------------------------------------------------------------
# All endpoints


class RemoteWriter:
    """Every configured endpoint's queue, fed by one pipeline hook."""

    def __init__(self, endpoints: Sequence[RemoteWriteEndpoint], registry: CollectorRegistry,
                 *, user_agent: str, stop_timeout: float = 5.0) -> None:
        self.metrics = RemoteWriteMetrics(registry)
        self.queues = [RemoteWriteQueue(endpoint, self.metrics, user_agent=user_agent,
                                        stop_timeout=stop_timeout)
                       for endpoint in endpoints]

    def on_poll(self, outcome: PollOutcome) -> None:
        """Pipeline hook: queue the poll's samples for every endpoint."""
        self.submit(outcome.samples)

    def submit(self, samples: Sequence[Sample]) -> None:
        for queue in self.queues:
            queue.submit(samples)

    def start(self) -> None:
        for queue in self.queues:
            queue.start()

    async def stop(self) -> None:
        await asyncio.gather(*(queue.stop() for queue in self.queues))
