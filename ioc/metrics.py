"""Prometheus metric families owned by one app instance.

The app owns its ``CollectorRegistry`` (never the global one) so tests can build many apps in
one process. Measured samples (``ioc_target_up`` and friends) are not copied into
prometheus-client gauges one by one: ``SampleExporter`` reads them from the latest-value cache
at scrape time, so a removed target disappears from /metrics by itself; the last success of
each target is read from the status board the same way (``LastSuccessGauge``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PromSample

from ioc.cache import SeriesCache, Window
from ioc.model import Labels, make_labels

if TYPE_CHECKING:
    from ioc.status import StatusBoard, TargetState

# HELP texts of the sample metrics collectors produce. A metric a collector emits that is not
# listed here is still exported, with a generic help line.
SAMPLE_METRICS: dict[str, str] = {
    "ioc_target_up": "Whether the last poll of the target succeeded (1) or failed (0).",
    "ioc_probe_duration_seconds": "How long the last poll of the target took.",
    "ioc_probe_http_status_code": "HTTP status code of the last response of the target.",
    "ioc_target_state_up": "Debounced state of the target (failure_threshold / "
                           "recovery_threshold): 1 up, 0 down.",
    "ioc_target_failure_reason": "Why the last failed poll of the target failed, as the index "
                                 "of its reason in docs/reports.md's list (kept with each "
                                 "failed poll for the incident ledger).",
    "ioc_probe_http_content_length_bytes": "Bytes of the last response body (decompressed).",
    "ioc_probe_http_redirects": "Redirects followed by the last check.",
    "ioc_probe_http_final_url_info": "The URL the last check ended at after redirects "
                                     "(without query string), always 1.",
    "ioc_probe_phase_duration_seconds": "Time the last check spent per phase (dns, connect, "
                                        "tls, processing, transfer).",
    "ioc_probe_tls_cert_expiry_timestamp_seconds": "Unix time when the first certificate "
                                                   "of the TLS chain expires (leaf, "
                                                   "intermediates and the trusted root as "
                                                   "verified; as sent when not verified).",
    "ioc_probe_tls_version_info": "TLS version of the last check's connection, always 1.",
    "ioc_probe_dns_answer_rrs": "Records of the asked type in the server's last DNS answer "
                                "(0 with NXDOMAIN or another error code; server=\"system\" "
                                "for the system resolver).",
    "ioc_probe_dns_server_up": "Whether the server passed the last DNS check (1) or failed "
                               "(0); server=\"system\" for the system resolver.",
    "ioc_probe_dns_server_duration_seconds": "How long the server took to answer the last "
                                             "DNS check (UDP and any retry over TCP), or to "
                                             "fail it.",
    "ioc_probe_dns_ignored_datagrams": "Datagrams the last DNS check over UDP ignored while "
                                       "waiting for the server's answer: malformed (did not "
                                       "parse) or mismatch (another ID or question).",
    "ioc_probe_dns_soa_serial": "SOA serial of the target's soa_zone in the server's last "
                                "answer.",
    "ioc_probe_dns_soa_serial_mismatch": "1 when the servers that answered the last check "
                                         "gave different SOA serials, 0 when they agreed "
                                         "(absent with fewer than two serials).",
    "ioc_dossiers": "Administrative dossiers of the current period, by department and status.",
    "ioc_dossiers_received": "Dossiers received in the current period, by department and "
                             "channel (online, direct, postal).",
    "ioc_dossiers_period_start_timestamp_seconds": "Start of the portal's current reporting "
                                                   "period (its own `period.start`), in unix "
                                                   "seconds; absent when the portal does not "
                                                   "say it.",
    "ioc_dossier_ontime_ratio": "Dossiers handled on time (QĐ 766: resolved early or on time "
                                "plus in progress within deadline) over all handled; "
                                'department="" is the province.',
    "ioc_dossier_resolved_ontime_ratio": "Resolved dossiers resolved early or on time over all "
                                         'resolved; department="" is the province.',
    "ioc_feedback_reports": "Citizens' feedback reports of the current period, by department "
                            "and status.",
    "ioc_feedback_ontime_ratio": "Feedback reports resolved on time or in progress within "
                                 'deadline over all handled; department="" is the province.',
    "ioc_feedback_resolved_ontime_ratio": "Resolved feedback reports resolved on time over all "
                                          'resolved; department="" is the province.',
    "ioc_online_procedures": "Administrative procedures offered, by online level "
                             "(full, partial, none).",
}

# Labels of the sample metrics, besides the `labels:` a collector's config adds to all its
# samples. docs/metrics.md is generated from this (service/metrics_doc.py); a test compares it with
# what a running ioc exports.
_TARGET = ("target", "department", "kind")
SAMPLE_LABELS: dict[str, tuple[str, ...]] = {
    "ioc_target_up": _TARGET,
    "ioc_probe_duration_seconds": _TARGET,
    "ioc_probe_http_status_code": _TARGET,
    "ioc_target_state_up": _TARGET,
    "ioc_target_failure_reason": _TARGET,
    "ioc_probe_http_content_length_bytes": _TARGET,
    "ioc_probe_http_redirects": _TARGET,
    "ioc_probe_http_final_url_info": (*_TARGET, "url"),
    "ioc_probe_phase_duration_seconds": (*_TARGET, "phase"),
    "ioc_probe_tls_cert_expiry_timestamp_seconds": _TARGET,
    "ioc_probe_tls_version_info": (*_TARGET, "version"),
    "ioc_probe_dns_answer_rrs": (*_TARGET, "server"),
    "ioc_probe_dns_server_up": (*_TARGET, "server"),
    "ioc_probe_dns_server_duration_seconds": (*_TARGET, "server"),
    "ioc_probe_dns_ignored_datagrams": (*_TARGET, "server", "reason"),
    "ioc_probe_dns_soa_serial": (*_TARGET, "server"),
    "ioc_probe_dns_soa_serial_mismatch": _TARGET,
    "ioc_dossiers": ("target", "department", "status"),
    "ioc_dossiers_received": ("target", "department", "channel"),
    "ioc_dossiers_period_start_timestamp_seconds": ("target", "department"),
    "ioc_dossier_ontime_ratio": ("target", "department"),
    "ioc_dossier_resolved_ontime_ratio": ("target", "department"),
    "ioc_feedback_reports": ("target", "department", "status"),
    "ioc_feedback_ontime_ratio": ("target", "department"),
    "ioc_feedback_resolved_ontime_ratio": ("target", "department"),
    "ioc_online_procedures": ("target", "department", "level"),
}

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The loop's own lag: stalls of a few milliseconds matter (every check shares the loop).
_LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CacheFamily(Metric):
    """A gauge family read at scrape time whose ``Sample`` objects are built only when asked
    for (the cache's series, the board's last successes).

    It holds the family's series as they were when it was collected: two lists, labels and
    windows (anything with a ``latest`` point) in the same order. /metrics (ioc/exposition.py)
    writes the text from them directly; anything else reading ``samples`` (prometheus-client's
    encoders, ``get_sample_value``) gets the samples a ``GaugeMetricFamily`` would hold.
    """

    _samples: list[PromSample] | None

    def __init__(self, name: str, documentation: str, labels: list[Labels],
                 windows: list[Window]) -> None:
        super().__init__(name, documentation, "gauge")
        self.labels = labels
        self.windows = windows

    @property
    def samples(self) -> list[PromSample]:
        if self._samples is None:
            self._samples = [PromSample(self.name, dict(labels), latest[1], None, None)
                             for labels, window in zip(self.labels, self.windows, strict=True)
                             if (latest := window.latest) is not None]
        return self._samples

    @samples.setter
    def samples(self, value: list[PromSample]) -> None:
        # Metric.__init__ sets [] before the series are known: built on first read instead.
        self._samples = value or None


class SampleExporter(Collector):
    """The cache's series; ``exclude`` names families another collector exports (the
    province's indices are cached for the wall, exported by ioc.indices.IndexExporter)."""

    def __init__(self, cache: SeriesCache, exclude: frozenset[str] = frozenset()) -> None:
        self.cache = cache
        self.exclude = exclude

    def describe(self) -> list[Metric]:
        return []  # dynamic families: don't let the registry call collect() at register time

    def collect(self) -> Iterator[Metric]:
        for metric in sorted(self.cache.metrics()):
            if metric in self.exclude:
                continue
            by_labels = self.cache.snapshot(metric)  # not series(): see its docstring
            labels, windows = list(by_labels), list(by_labels.values())
            if any(window.latest is not None for window in windows):
                yield CacheFamily(metric, SAMPLE_METRICS.get(
                    metric, f"Sample metric {metric} collected by ioc."), labels, windows)


class CacheStats(Collector):
    """The in-memory cache's size and the series its cap kept out, read at scrape time."""

    def __init__(self, cache: SeriesCache) -> None:
        self.cache = cache

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("ioc_cache_series", "Series held in memory (latest value and "
                                "window).", value=len(self.cache))
        yield CounterMetricFamily(
            "ioc_cache_series_refused", "New series not kept in memory because "
            "collection.max_series were held (still stored).", value=self.cache.refused)


class _LastSuccess(Window):
    """One target's last success as the one point of a window, read when /metrics is written."""

    __slots__ = ("labels", "state")

    def __init__(self, state: TargetState) -> None:
        self.state = state
        self.labels = make_labels(target=state.name)  # the pair the target's own labels hold

    @property
    def latest(self) -> tuple[float, float] | None:
        ts = self.state.last_success
        return None if ts is None else (ts, ts)


class LastSuccessGauge(MetricWrapperBase):
    """``ioc_collector_last_success_timestamp_seconds``, read from the status board at scrape
    time.

    The board already holds every target's last success, so a poll sets nothing here (a
    labelled Gauge cost a child lookup and a lock per poll, and 60–190 ms of a worker thread
    at every scrape to collect 10,000 children), and a target leaves /metrics with its board
    entry. Only the targets this instance polls are exported: the remote ones of a shard are
    their owner's to export. A prometheus-client metric by type so that it declares its
    ``target`` label like the others (docs/metrics.md is read from the registry), but it has
    no children: its one family is a ``CacheFamily`` that ioc.exposition writes in slices on
    the loop, from label texts kept between scrapes.
    """

    _type = "gauge"

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__("ioc_collector_last_success_timestamp_seconds",
                         "Unix time of the target's last successful poll.", ["target"],
                         registry=registry)
        self.board: StatusBoard | None = None
        self._points: dict[str, _LastSuccess] = {}  # kept so their label tuples are too

    def watch(self, board: StatusBoard) -> None:
        self.board = board

    def labels(self, *labelvalues: object, **labelkwargs: object) -> LastSuccessGauge:
        raise TypeError("ioc_collector_last_success_timestamp_seconds is read from the "
                        "status board; record a poll there")

    def collect(self) -> list[Metric]:
        if self.board is None:
            return []
        # One C call copies the board's states, so this may run in a worker thread (as
        # ioc.exposition collects prometheus-client metrics) while the loop changes the board.
        states = list(self.board.targets.values())
        old = self._points
        points: list[_LastSuccess] = []
        succeeded = False
        for state in states:
            if state.remote:
                continue
            found = old.get(state.name)
            # A new point for a new target, or one added again at a reload (a new state).
            point = found if found is not None and found.state is state else _LastSuccess(state)
            points.append(point)
            succeeded = succeeded or state.last_success is not None
        self._points = {p.state.name: p for p in points}  # only the board's targets
        if not succeeded:
            return []  # as SampleExporter: no family without a sample
        return [CacheFamily(self._name, self._documentation, [p.labels for p in points],
                            list[Window](points))]


class ServiceMetrics:
    """ioc's own health metrics (the measured samples come from SampleExporter)."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.registry = registry
        self.build_info = Gauge("ioc_build_info", "ioc version, always 1.", ["version"],
                                registry=registry)
        self.build_info.labels(version=version).set(1)
        self.collector_duration = Histogram(
            "ioc_collector_duration_seconds", "Wall time of one poll, by collector type.",
            ["kind"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.last_success = LastSuccessGauge(registry)
        self.failures = Counter(
            "ioc_probe_failures_total",
            "Failed polls by target (with its department) and failure reason.",
            ["target", "department", "reason"], registry=registry)
        self.scheduler_lag = Histogram(
            "ioc_scheduler_lag_seconds",
            "How late each poll started after its scheduled time (incl. waiting for a slot).",
            buckets=_LAG_BUCKETS, registry=registry)
        self.loop_lag = Histogram(
            "ioc_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 50 ms: the stalls every poll, "
            "web request and alert evaluation waited through.",
            buckets=_LOOP_LAG_BUCKETS, registry=registry)
        self.polls_in_flight = Gauge("ioc_collector_polls_in_flight",
                                     "Polls running right now.", registry=registry)
        self.targets = Gauge("ioc_targets", "Configured targets.", registry=registry)
        self.unknown_units = Counter(
            "ioc_backlog_unknown_units",
            "Units in backlog and feedback statistics whose code is no department of the "
            "config, summed over polls (unknown_units: include or exclude).",
            ["collector"], registry=registry)


def watch_store_partitions(registry: CollectorRegistry, count: Callable[[], int]) -> Gauge:
    """Export the sample store's partition count, read at scrape time.

    The store counts its partitions whenever it opens or prunes, so a scrape costs no query;
    one series, however many days are kept.
    """
    gauge = Gauge("ioc_store_partitions",
                  "Partitions of the samples table: one per UTC day plus the default one on "
                  "PostgreSQL, 0 on SQLite; as of the last open or retention run.",
                  registry=registry)
    gauge.set_function(count)
    return gauge


class DeliveryMetrics:
    """Alert delivery: what the outbox sent, retried, gave up on or dropped, and its backlog."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "ioc_notifications_total",
            "Notification sends by receiver, channel and result "
            "(sent, retry, failed, dropped).",
            ["receiver", "integration", "result"], registry=registry)
        self.queue = Gauge("ioc_notification_queue_depth",
                           "Notifications stored and not yet delivered.", registry=registry)
        self.unusable_silences = Gauge(
            "ioc_silences_unusable",
            "Stored silences that mute nothing because a matcher's regular expression is "
            "not RE2 syntax (created before ioc matched with RE2); replace them.",
            registry=registry)

    def watch_unusable_silences(self, count: Callable[[], int]) -> None:
        """Read the unusable silences' count from the dispatcher at each scrape."""
        self.unusable_silences.set_function(count)

    def sent(self, integration: Any, result: str) -> None:
        self.notifications.labels(receiver=integration.receiver,
                                  integration=integration.id, result=result).inc()

    def queue_depth(self, depth: int) -> None:
        self.queue.set(depth)
