"""The latest value of every series plus a short in-memory window of its history.

The wall screen, the status API and (later) the alert engine read from here, never from the
database and never from the targets. Windows are bounded by age *and* by point count so a
misconfigured 1 s interval cannot grow memory without limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from ioc.model import Labels, Sample


class SeriesWindow:
    __slots__ = ("points",)

    def __init__(self, max_points: int) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=max_points)

    def add(self, ts: float, value: float, horizon: float) -> None:
        points = self.points
        if points and ts < points[-1][0]:
            return  # out-of-order sample: keep the window sorted, the store still has it
        points.append((ts, value))
        while points and points[0][0] < horizon:
            points.popleft()

    @property
    def latest(self) -> tuple[float, float] | None:
        return self.points[-1] if self.points else None


class SeriesCache:
    def __init__(self, window_seconds: float, max_points: int) -> None:
        self.window_seconds = window_seconds
        self.max_points = max_points
        self._metrics: dict[str, dict[Labels, SeriesWindow]] = {}

    def add(self, samples: Iterable[Sample]) -> None:
        metrics = self._metrics
        for sample in samples:
            by_labels = metrics.get(sample.metric)
            if by_labels is None:
                by_labels = metrics[sample.metric] = {}
            window = by_labels.get(sample.labels)
            if window is None:
                window = by_labels[sample.labels] = SeriesWindow(self.max_points)
            window.add(sample.ts, sample.value, sample.ts - self.window_seconds)

    def latest(self, metric: str, labels: Labels) -> tuple[float, float] | None:
        window = self._metrics.get(metric, {}).get(labels)
        return window.latest if window else None

    def window(self, metric: str, labels: Labels) -> list[tuple[float, float]]:
        window = self._metrics.get(metric, {}).get(labels)
        return list(window.points) if window else []

    def metrics(self) -> list[str]:
        return list(self._metrics)

    def series(self, metric: str) -> Iterator[tuple[Labels, SeriesWindow]]:
        yield from list(self._metrics.get(metric, {}).items())

    def drop_target(self, target: str) -> int:
        """Forget every series of a target (it was removed from the config)."""
        dropped = 0
        for by_labels in self._metrics.values():
            for labels in [lb for lb in by_labels if ("target", target) in lb]:
                del by_labels[labels]
                dropped += 1
        return dropped

    def __len__(self) -> int:
        return sum(len(v) for v in self._metrics.values())
