"""The one fan-out point between collectors and everything that consumes their results.

collector → runner → ``Pipeline.publish`` → latest-value cache, store writer, status board,
metrics, and the hooks added with ``add_hook``: the event sink (a probe's security findings),
remote write and the wall's feed. The alert engine is not a hook: it reads the cache's
windows on its own timer (``alerts.engine``). Publishing is synchronous and cheap: nothing
here waits on I/O, so a slow database never slows polling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ioc.cache import SeriesCache
from ioc.metrics import ServiceMetrics
from ioc.model import FAILURE_REASONS, CollectResult, Event, Sample
from ioc.status import StatusBoard, TargetState

log = logging.getLogger("ioc.pipeline")


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One finished poll: the target, the collector's verdict and every sample to keep."""

    target: str
    kind: str
    ts: float
    duration: float
    result: CollectResult
    samples: tuple[Sample, ...]
    # The debounced verdict (failure_threshold / recovery_threshold); None means "as result.up".
    state_up: bool | None = None

    @property
    def events(self) -> tuple[Event, ...]:
        return self.result.events


Hook = Callable[[PollOutcome], None]


class SampleSink(Protocol):
    """Anything that accepts samples without blocking (the store writer)."""

    def submit(self, samples: Sequence[Sample]) -> None: ...


class Pipeline:
    def __init__(self, cache: SeriesCache, board: StatusBoard, sink: SampleSink,
                 metrics: ServiceMetrics) -> None:
        self.cache = cache
        self.board = board
        self.sink = sink
        self.metrics = metrics
        self.hooks: list[Hook] = []
        # The last success of each target is exported from the board, not set at every poll.
        metrics.last_success.watch(board)

    def add_hook(self, hook: Hook) -> None:
        self.hooks.append(hook)

    def publish(self, outcome: PollOutcome) -> TargetState:
        result = outcome.result
        self.cache.add(outcome.samples)
        self.sink.submit(outcome.samples)
        state = self.board.record(outcome.target, up=result.up, ts=outcome.ts,
                                  latency=outcome.duration, value=result.value,
                                  reason=result.reason, error=result.error,
                                  state_up=outcome.state_up, degraded=result.degraded)
        self.metrics.collector_duration.labels(kind=outcome.kind).observe(outcome.duration)
        if not result.up:
            # the label set stays closed even if a collector invents a reason
            reason = result.reason if result.reason in FAILURE_REASONS else "error"
            self.metrics.failures.labels(target=outcome.target, department=state.department,
                                         reason=reason).inc()
        for hook in self.hooks:
            try:
                hook(outcome)
            except Exception:  # a consumer's bug must not stop the data reaching the others
                log.exception("pipeline hook failed", extra={"fields": {"hook": repr(hook)}})
        return state
