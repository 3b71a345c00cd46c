"""The periodic task that keeps the rollups current, and the metrics that show it does.

Kept apart from :mod:`ioc.store.rollups` (what a run does) so the service decides when runs
happen, and tests drive single runs with a clock of their own. A failed run is logged and
retried at the next interval: nothing is lost meanwhile, since the watermark only moves
after the buckets before it were written, and this process's late writes stay marked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ioc.store.base import StoreError
from ioc.store.rollups import TIERS, Rollups, RunReport
from ioc.store.sql import SqlStore

log = logging.getLogger("ioc.store")

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                     1800.0)


class RollupJob:
    """Runs :class:`Rollups` every ``interval`` and prunes the tiers every ``prune_interval``."""

    def __init__(self, store: SqlStore, registry: CollectorRegistry, *, raw_retention: float,
                 retention_5m: float, retention_1h: float, interval: float,
                 prune_interval: float, clock: Callable[[], float] = time.time) -> None:
        if interval <= 0 or prune_interval <= 0:
            raise ValueError("interval and prune_interval must be positive")
        self.rollups = Rollups(store, raw_retention=raw_retention, retention_5m=retention_5m,
                               retention_1h=retention_1h)
        self._store = store
        self._interval = interval
        self._prune_interval = prune_interval
        self._clock = clock
        self._rolled_to: dict[str, int] = {}
        self._duration = Histogram(
            "ioc_store_rollup_duration_seconds",
            "Time one rollup run took (both tiers), pauses for the writer included.",
            buckets=_DURATION_BUCKETS, registry=registry)
        self._failures = Counter(
            "ioc_store_rollup_failures_total",
            "Rollup runs or rollup prunes that failed; they are retried at the next interval.",
            registry=registry)
        self._rows = Counter(
            "ioc_store_rollup_rows_total",
            "Rollup rows written (inserted or replaced) per tier.", ["tier"],
            registry=registry)
        lag = Gauge(
            "ioc_store_rollup_lag_seconds",
            "How far a tier's watermark is behind now: buckets newer than it are read from raw "
            "samples. Normally under one bucket width plus storage.rollups.interval; NaN "
            "until the tier's first run.", ["tier"], registry=registry)
        for tier in TIERS:
            self._rows.labels(tier=tier.name)
            lag.labels(tier=tier.name).set_function(partial(self._lag, tier.name))

    def _lag(self, tier: str) -> float:
        rolled_to = self._rolled_to.get(tier)
        return math.nan if rolled_to is None else self._clock() - rolled_to / 1000

    async def run_once(self) -> RunReport | None:
        """One run at the clock's now; None when it failed (logged and counted)."""
        started = time.monotonic()
        try:
            report = await self.rollups.run(self._clock())
        except StoreError as exc:
            self._failures.inc()
            log.warning("store %s: rollup failed, will retry in %.0f s: %s",
                        self._store.url_for_display, self._interval, exc)
            return None
        except Exception:
            self._failures.inc()
            log.exception("store %s: rollup failed unexpectedly", self._store.url_for_display)
            return None
        took = time.monotonic() - started
        self._duration.observe(took)
        for name, run in report.tiers.items():
            self._rows.labels(tier=name).inc(run.rows)
            if run.rolled_to is not None:
                self._rolled_to[name] = run.rolled_to
        if took > self._interval:  # a first run over existing history, or a long outage
            log.info("store %s: rollups caught up in %.1f s", self._store.url_for_display,
                     took)
        return report

    async def prune_once(self) -> dict[str, int] | None:
        try:
            removed = await self.rollups.prune(self._clock())
        except StoreError as exc:
            self._failures.inc()
            log.warning("store %s: rollup prune failed, will retry: %s",
                        self._store.url_for_display, exc)
            return None
        except Exception:
            self._failures.inc()
            log.exception("store %s: rollup prune failed unexpectedly",
                          self._store.url_for_display)
            return None
        if any(removed.values()):
            log.info("store %s: pruned rollup rows %s", self._store.url_for_display,
                     ", ".join(f"{tier}={count}" for tier, count in removed.items()))
        return removed

    async def run_forever(self) -> None:
        """Roll up now and every ``interval``, prune now and every ``prune_interval``."""
        next_prune = time.monotonic()
        while True:
            await self.run_once()
            if time.monotonic() >= next_prune:
                await self.prune_once()
                next_prune = time.monotonic() + self._prune_interval
            await asyncio.sleep(self._interval)
