"""``ioc try NAME...`` and ``POST /api/v1/try/{name}``: poll one target now and show how.

A tried target is polled by a fresh collector built from its config block, exactly as the
service builds it (the same ``department`` codes for spotting unknown units), through the
runner's :func:`ioc.runner.guarded_collect` (the same timeout and failure reasons), with an
:class:`ioc.trace.Trace` active so the collector's own hooks fill it in. Nothing it produces
goes anywhere else: no pipeline, no store, no alert, no event sink, no counter; the live
collector of a running service (its title baseline, its SIEM cursor) is not touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from collectors.http import HttpCollector
from collectors.jsonstats import JsonStatsCollector
from collectors.probe.phases import PHASES
from collectors.probe.session import open_probe_session
from collectors.registry import build_collector
from collectors.siem import SiemCollector
from ioc import __version__, clock
from ioc.collector import Collector
from ioc.config_types import CollectorConfig
from ioc.events import TimeWindow
from ioc.model import Event, Sample, make_labels
from ioc.runner import guarded_collect
from ioc.trace import Check, Trace, UnknownTarget, mask_url, tracing
from ioc.trace_text import render
from service.config import Config

EXIT_UP = 0
EXIT_DOWN = 1
API_LIMIT = 60.0  # seconds a tried poll may take through POST /api/v1/try/{name}


@dataclass
class DryEvents:
    """The SIEM collector's event state for a try: no stored cursor, nothing stored.

    The pull starts ``lookback`` before now, as a first poll would, and the events it would
    store are kept here for the trace instead.
    """

    events: list[Event] = field(default_factory=list)
    window: TimeWindow = field(default_factory=lambda: TimeWindow(clamp=True))
    out_of_window: dict[str, int] = field(default_factory=dict)

    def count_out_of_window(self, ingest: str, sides: Mapping[str, int]) -> None:
        for side, count in sides.items():
            self.out_of_window[side] = self.out_of_window.get(side, 0) + count

    async def load_cursor(self, name: str) -> str | None:
        return None

    async def commit(self, events: Sequence[Event], cursor: tuple[str, str]) -> list[Event]:
        self.events.extend(events)
        return list(events)


def find_targets(config: Config, names: Sequence[str]) -> list[CollectorConfig]:
    """The config blocks of ``names``, in that order; UnknownTarget for any that is not one."""
    blocks = {c.name: c for c in config.collectors}
    unknown = [n for n in names if n not in blocks]
    if unknown or not names:
        raise UnknownTarget(unknown, sorted(blocks))
    return [blocks[n] for n in names]


def build_tried(block: CollectorConfig, config: Config) -> tuple[Collector, DryEvents]:
    """A collector for ``block`` wired as the service wires it, minus every side effect."""
    collector = build_collector(block)
    dry = DryEvents(window=config.events.window(clamp=True))
    if isinstance(collector, SiemCollector):
        collector.bind(dry)
    if isinstance(collector, JsonStatsCollector):
        collector.bind_units(frozenset(d.code for d in config.departments))
    return collector, dry


async def try_target(block: CollectorConfig, config: Config, session: aiohttp.ClientSession,
                     now: float, monotonic: Callable[[], float] = clock.monotonic,
                     limit: float | None = None) -> Trace:
    """Poll the target of ``block`` once, now, and return its trace.

    The poll has the target's own timeout, cut to ``limit`` seconds when given (the API's
    bound on how long a request may hold a connection and a slot).
    """
    timeout = config.timeout_of(block)
    if limit is not None:
        timeout = min(timeout, limit)
    collector, dry = build_tried(block, config)
    url = _address(block)
    trace = Trace(target=block.name, kind=block.type, url=mask_url(url), started_at=now,
                  secrets=config.secrets)
    try:
        with tracing(trace):
            started = monotonic()
            result = await guarded_collect(collector, session, timeout, now, block.name)
            trace.duration = monotonic() - started
    finally:
        close = getattr(collector, "close", None)
        if close is not None:
            await close()
    trace.up, trace.degraded = result.up, result.degraded
    trace.reason, trace.error = result.reason, result.error
    labels = make_labels(block.labels, target=block.name, department=block.department,
                         kind=block.type)
    # as the runner adds them (ioc_target_state_up is left out: it is the debounced state
    # over the polls before, which a single try does not have)
    samples = [
        Sample("ioc_target_up", labels, 1.0 if result.up else 0.0, now),
        Sample("ioc_probe_duration_seconds", labels, trace.duration or 0.0, now),
        *result.samples,
    ]
    durations = {dict(s.labels).get("phase"): s.value for s in result.samples
                 if s.metric == "ioc_probe_phase_duration_seconds"}
    trace.phases = [(p, durations[p]) for p in PHASES if p in durations]
    for sample in samples:
        trace.sample(sample.metric, dict(sample.labels), sample.value)
    for event in (*result.events, *dry.events):
        trace.event({"source": event.source, "id": event.id, "severity": event.severity,
                     "category": event.category, "title": event.title,
                     "occurred_at": event.occurred_at, "department": event.department,
                     "host": event.host})
    if isinstance(collector, HttpCollector):
        _verdict_checks(trace, collector, result.value)
    return trace


def _address(block: CollectorConfig) -> str:
    """What the target points at, for the trace's heading."""
    url = getattr(block, "url", None)
    if url:
        return str(url)
    host, port = getattr(block, "host", None), getattr(block, "port", None)
    if host:
        return f"{host}:{port}" if port else str(host)
    query = getattr(block, "query", None)
    if query:
        record = getattr(block, "record_type", "")
        server = getattr(block, "server", None)
        return f"{query} {record}" + (f" @{server}" if server else "")
    return ""


def _verdict_checks(trace: Trace, collector: HttpCollector, status: float | None) -> None:
    """The status, certificate and latency judgements, put before the content checks."""
    cfg = collector.config
    checks: list[Check] = []
    if status is not None:
        wanted = ", ".join(str(s) for s in cfg.expected_status)
        checks.append(Check(f"HTTP status {int(status)}", collector.status_ok(int(status)),
                            f"expected_status: {wanted}"))
    if trace.tls is not None and trace.tls.earliest_not_after is not None:
        left = (trace.tls.earliest_not_after - trace.started_at) / 86400
        if cfg.cert_min_days is not None:
            checks.append(Check("certificate validity", left >= cfg.cert_min_days,
                                f"{left:.1f} days left, cert_min_days {cfg.cert_min_days:g}"))
    if cfg.max_latency is not None and trace.duration is not None and trace.up:
        checks.append(Check("latency", not trace.degraded,
                            f"max_latency {cfg.max_latency:g}s"))
    trace.checks[:0] = checks


async def try_targets(config: Config, names: Sequence[str],
                      session: aiohttp.ClientSession | None = None,
                      now: Callable[[], float] = clock.now) -> list[Trace]:
    """Try each named target in turn (UnknownTarget before any is polled)."""
    blocks = find_targets(config, names)
    own = session is None
    if session is None:
        session = open_probe_session(limit=4, limit_per_host=2, keepalive=False,
                                     user_agent=f"ioc/{__version__}")
    try:
        return [await try_target(block, config, session, now()) for block in blocks]
    finally:
        if own:
            await session.close()


def exit_code(traces: Sequence[Trace]) -> int:
    return EXIT_UP if all(t.up for t in traces) else EXIT_DOWN


def output(traces: Sequence[Trace], *, as_json: bool, lang: str) -> str:
    """What ``ioc try`` prints: the JSON document or the readable text."""
    if as_json:
        return json.dumps({"up": all(t.up for t in traces),
                           "targets": [t.to_dict() for t in traces]},
                          ensure_ascii=False, indent=2)
    return "\n".join(render(t, lang) for t in traces)
