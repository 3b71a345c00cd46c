"""Security events as counter series the rules can read: ``ioc_security_events_total``.

Events are not samples, so they never reach the sample cache; the event sink counts them in a
prometheus-client counter, which rules cannot read. This listener keeps the same counts, with
the same name and labels, in a small window cache of its own that the engine evaluates
alongside the sample cache, so ``increase(ioc_security_events_total{severity="critical"})``
means in a rule what it means in Prometheus. When a label set is first seen a zero point is
written just before its first count: the counter was zero before, and without that point the
first critical event of a kind could never show an increase.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from ioc import clock
from ioc.cache import SeriesCache
from ioc.model import Event, Labels, Sample, make_labels

METRIC = "ioc_security_events_total"


class EventCounts:
    def __init__(self, window_seconds: float, max_points: int = 720,
                 wall_clock: Callable[[], float] = clock.now) -> None:
        self.cache = SeriesCache(window_seconds, max_points)
        self._totals: dict[Labels, float] = {}
        self._clock = wall_clock

    def clear(self) -> None:
        """Start counting from nothing (the alert leader rebuilds its counts from the store)."""
        self._totals.clear()
        self.cache.clear()

    def __call__(self, events: Sequence[Event]) -> None:
        self.add(events, self._clock())

    def add(self, events: Sequence[Event], now: float) -> None:
        tally = Counter(make_labels(department=e.department or "", source=e.source,
                                    severity=e.severity, category=e.category) for e in events)
        samples = []
        for labels, count in tally.items():
            total = self._totals.get(labels)
            if total is None:
                total = 0.0
                samples.append(Sample(METRIC, labels, 0.0, now - 0.001))
            total += count
            self._totals[labels] = total
            samples.append(Sample(METRIC, labels, total, now))
        self.cache.add(samples)
