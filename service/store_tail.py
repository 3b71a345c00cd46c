"""The alert leader's follower of the shared store: what other instances collected, in memory.

Rules are evaluated against in-memory windows, and with ``collection.shard i/N`` an instance's
windows hold only its own share of the targets. While this instance is the alert leader, the
store tail reads, every evaluation interval, the samples the other shards stored since the
last read and adds them to a window cache of their own that the engine evaluates beside the
instance's own cache (never exported on ``/metrics``: every instance exports only what it
collected). Each read reaches ``overlap`` seconds back (the writers' flush interval, the
longest poll and some clock skew), because a sample is stored a while after its timestamp;
points a window already holds are skipped, so reading a point twice is harmless.

Security events reach the leader the same way, whichever instance stored them: the engine's
event counts (alerts.event_counts) come from the store alone while an election runs, each
event counted once by ``(source, id)`` however many reads see it.

On taking the lead the tail first fills the windows with the last ``backfill`` seconds (the
longest rule window, capped by ``collection.window``), so rules see history at once. A
shard's samples that reach the store later than ``overlap`` after their timestamp (its
writer was held up by a slow database) are stored but not seen by the rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from alerts.event_counts import EventCounts
from ioc import clock
from ioc.cache import SeriesCache
from ioc.model import Labels, Sample
from ioc.sharding import Ownership
from ioc.store.tail import SeriesRow, TailStore

log = logging.getLogger("ioc.store_tail")

CLOCK_SKEW = 5.0  # seconds the instances' clocks may disagree
_READ_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class TailMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.samples = Counter(
            "ioc_store_tail_samples",
            "Samples of other shards' targets the alert leader read from the shared store "
            "into its windows.", registry=registry)
        self.events = Counter(
            "ioc_store_tail_events",
            "Security events the alert leader read from the shared store into the event "
            "counts its rules read (each counted once).", registry=registry)
        self.duration = Histogram(
            "ioc_store_tail_read_duration_seconds",
            "Wall time of one read of the shared store by the alert leader's store tail.",
            buckets=_READ_BUCKETS, registry=registry)


@dataclass(frozen=True, slots=True)
class _Followed:
    metric: str
    labels: Labels
    target: str | None


class StoreTail:
    def __init__(self, store: TailStore, *, shard: Ownership,
                 targets: Callable[[], Collection[str]],
                 window: float, window_points: int, overlap: float,
                 backfill: Callable[[], float], metrics: TailMetrics,
                 monotonic: Callable[[], float] = clock.monotonic) -> None:
        self.store = store
        self.shard = shard
        self.targets = targets              # every configured target (reload may change them)
        self.follow_samples = shard.sharded
        self.overlap = overlap
        self.backfill = backfill
        self.samples = SeriesCache(window, window_points)      # other shards' series only
        self.event_counts = EventCounts(window, window_points)  # every instance's events
        self.metrics = metrics
        self._monotonic = monotonic
        self._series: dict[int, _Followed | None] = {}  # None: not parseable, never followed
        self._followed_targets: set[str] = set()
        self._read_to: float | None = None
        self._seen: dict[tuple[str, str], int] = {}      # event key -> received_at (ms)

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def start(self, now: float) -> None:
        """Fill the windows and counts afresh from the store (on taking the lead)."""
        self.stop()
        self._read_to = now - self.backfill() + self.overlap
        await self.poll(now)

    def stop(self) -> None:
        """Forget everything read (on losing the lead): a later lead starts from the store."""
        self.samples.clear()
        self.event_counts.clear()
        self._seen.clear()
        self._followed_targets.clear()
        self._read_to = None

    async def poll(self, now: float) -> None:
        """Read what was stored since the last read (minus the overlap) up to ``now``."""
        if self._read_to is None:
            self._read_to = now
        since, until = _ms(self._read_to - self.overlap), _ms(now)
        started = self._monotonic()
        if self.follow_samples:
            await self._poll_samples(since, until)
        await self._poll_events(since, until, now)
        self.metrics.duration.observe(self._monotonic() - started)
        self._read_to = now

    async def _poll_samples(self, since: int, until: int) -> None:
        known = self._series
        await self.store.learn_series(known, _followed)
        wanted = {t for t in self.targets() if not self.shard.owns(t)}
        for target in self._followed_targets - wanted:  # removed from the config
            self.samples.drop_target(target)
        self._followed_targets &= wanted
        ids = [sid for sid, f in known.items() if f is not None and f.target in wanted]
        if not ids:
            return
        rows = await self.store.samples(ids, since, until)
        cache = self.samples
        added: list[Sample] = []
        last: tuple[int, float] | None = None
        for sid, ts_ms, value in rows:
            followed = known[sid]
            assert followed is not None
            ts = ts_ms / 1000
            if last is None or last[0] != sid:
                latest = cache.latest(followed.metric, followed.labels)
                last = (sid, latest[0] if latest is not None else float("-inf"))
            if ts <= last[1]:
                continue  # already in the window: read again through the overlap
            last = (sid, ts)
            added.append(Sample(followed.metric, followed.labels, value, ts))
            if followed.target is not None:
                self._followed_targets.add(followed.target)
        cache.add(added)
        self.metrics.samples.inc(len(added))

    async def _poll_events(self, since: int, until: int, now: float) -> None:
        rows = await self.store.events(since, until)
        seen = self._seen
        fresh = []
        for row in rows:
            key = (row.event.source, row.event.id)
            if key not in seen:
                seen[key] = row.received_ms
                fresh.append(row.event)
        # Keys older than this read's start are never read again: the next read starts later.
        for key in [k for k, received in seen.items() if received <= since]:
            del seen[key]
        if fresh:
            self.event_counts.add(fresh, now)
            self.metrics.events.inc(len(fresh))


def _followed(row: SeriesRow) -> _Followed:
    return _Followed(row.metric, row.labels, dict(row.labels).get("target"))


def backfill_seconds(rule_spans: Collection[float], longest_interval: float,
                     window: float) -> float:
    """How far back a new leader reads: the longest rule span plus a poll, within the window."""
    return min(window, max(rule_spans, default=300.0) + longest_interval)
