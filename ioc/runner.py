"""The one wrapper around every poll of every collector.

It takes a concurrency slot, enforces the timeout, turns every exception into a recorded
failure with a reason (so a collector bug never reaches the scheduler), adds the samples every
target reports the same way (``ioc_target_up``, ``ioc_probe_duration_seconds``), publishes the
outcome, and logs once when a target turns bad and once when it recovers — not once per poll.

"Bad" and "recovered" follow the debounced state (``failure_threshold`` failed polls in a row
before down, ``recovery_threshold`` good ones before up, see ``ioc.status.FlapFilter``), which
is also exported as ``ioc_target_state_up`` next to the raw ``ioc_target_up``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from ioc import clock
from ioc.collector import Collector, CollectorFailure, interrupted_phase
from ioc.incidents import reason_code
from ioc.logs import fields
from ioc.metrics import ServiceMetrics
from ioc.model import CollectResult, Sample, make_labels
from ioc.pipeline import Pipeline, PollOutcome
from ioc.poll_limits import PollLimits
from ioc.status import FlapFilter

log = logging.getLogger("ioc.collector")


class PollRunner:
    def __init__(self, collector: Collector, *, interval: float, timeout: float,
                 limits: PollLimits, pipeline: Pipeline, metrics: ServiceMetrics,
                 session: Callable[[], aiohttp.ClientSession],
                 wall_clock: Callable[[], float] = clock.now,
                 monotonic: Callable[[], float] = clock.monotonic) -> None:
        cfg = collector.config
        self.collector = collector
        self.name = cfg.name
        self.kind = collector.kind
        self.interval = interval
        self.timeout = timeout
        self.limits = limits
        self.pipeline = pipeline
        self.metrics = metrics
        self.session = session
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.labels = make_labels(cfg.labels, target=cfg.name, department=cfg.department,
                                  kind=collector.kind)
        self._failing_since: float | None = None
        self.flap = FlapFilter(cfg.failure_threshold, cfg.recovery_threshold)

    async def poll(self, scheduled_at: float | None = None) -> PollOutcome:
        async with self.limits.slot(self.collector.host):
            started_wall = self.wall_clock()
            if scheduled_at is not None:
                self.metrics.scheduler_lag.observe(max(0.0, started_wall - scheduled_at))
            self.metrics.polls_in_flight.inc()
            started = self.monotonic()
            try:
                result = await self._collect(started_wall)
            finally:
                self.metrics.polls_in_flight.dec()
            duration = self.monotonic() - started
        finished = started_wall + duration
        state_up = self.flap.update(result.up)
        samples = (
            Sample("ioc_target_up", self.labels, 1.0 if result.up else 0.0, started_wall),
            Sample("ioc_target_state_up", self.labels, 1.0 if state_up else 0.0, started_wall),
            Sample("ioc_probe_duration_seconds", self.labels, duration, started_wall),
            *result.samples,
        )
        if not result.up:  # stored beside the poll, so incidents know their causes
            samples += (Sample("ioc_target_failure_reason", self.labels,
                               reason_code(result.reason), started_wall),)
        outcome = PollOutcome(target=self.name, kind=self.kind, ts=finished,
                              duration=duration, result=result, samples=samples,
                              state_up=state_up)
        self.pipeline.publish(outcome)
        self._log_transition(state_up, result, finished)
        return outcome

    def resume(self, *, up: bool | None, failures: int, successes: int,
               since: float | None) -> None:
        """Continue from the state the target's previous poller stored (``--shard auto``
        takeover): the debounced state and the polls in a row, so the first poll here does
        not announce a "down" or "recovered" that did not happen. ``since``: the last poll
        known, taken as the start of an ongoing outage (its real start is not stored)."""
        self.flap.state = up
        self.flap.failures = failures
        self.flap.successes = successes
        self._failing_since = since if up is False else None

    async def close(self) -> None:
        """Release what the collector holds (its own connections), if anything."""
        close = getattr(self.collector, "close", None)
        if close is not None:
            await close()

    async def _collect(self, now: float) -> CollectResult:
        return await guarded_collect(self.collector, self.session(), self.timeout, now,
                                     self.name)

    def _log_transition(self, state_up: bool, result: CollectResult, now: float) -> None:
        if not state_up and self._failing_since is None:
            self._failing_since = now
            log.warning("target down", extra=fields(
                target=self.name, kind=self.kind, reason=result.reason, error=result.error))
        elif state_up and self._failing_since is not None:
            down_for = now - self._failing_since
            self._failing_since = None
            log.info("target recovered", extra=fields(
                target=self.name, kind=self.kind, down_seconds=round(down_for, 3)))


async def guarded_collect(collector: Collector, session: aiohttp.ClientSession,
                          limit: float, now: float, name: str) -> CollectResult:
    """One poll under the timeout, every exception turned into a failed CollectResult.

    The part of a poll that decides its verdict, shared by the scheduled polls and by
    ``ioc try``, so a tried target fails for exactly the reason a scheduled poll would.
    ``limit`` is the poll's timeout in seconds.
    """
    timeout = limit
    try:
        async with asyncio.timeout(timeout):
            result = await collector.collect(session, now)
    except TimeoutError as exc:
        phase = interrupted_phase(exc)
        if phase == "connect":
            return CollectResult(up=False, reason="connect_timeout",
                                 error=f"connection not set up within {timeout:g}s")
        if phase == "dns":
            return CollectResult(up=False, reason="dns",
                                 error=f"name not resolved within {timeout:g}s")
        where = f" (in the {phase} phase)" if phase else ""
        return CollectResult(up=False, reason="timeout",
                             error=f"no complete answer within {timeout:g}s{where}")
    except CollectorFailure as exc:
        return CollectResult(up=False, reason=exc.reason, error=str(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("collector raised", exc_info=True, extra=fields(target=name))
        return CollectResult(up=False, reason="error",
                             error=f"{type(exc).__name__}: {exc}"[:500])
    if not isinstance(result, CollectResult):
        return CollectResult(up=False, reason="invalid_response",
                             error=f"collector returned {type(result).__name__}, "
                                   "not a CollectResult")
    return result
