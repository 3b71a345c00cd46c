"""The latest value of every series plus a short in-memory window of its history.

The wall screen, the status API and the alert engine read from here, never from the database
and never from the targets. Windows are bounded by age *and* by point count so a misconfigured
1 s interval cannot grow memory without limit.

A window keeps its points as two ``array('d')`` (times and values, 16 B a point) rather than a
deque of tuples (~90 B a point): at 10,000 targets × ~11 series the windows are most of ioc's
memory. Live points are the tail ``[start:]`` of the arrays; expired points are cut off in bulk
once they are a quarter of the arrays, so trimming is amortised O(1) and the arrays stay
sorted, which lets lookups bisect them in C.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from ioc.model import Labels, Sample
from ioc.overflow import OverflowLog

log = logging.getLogger("ioc.cache")

_COMPACT_MIN = 16  # dead points tolerated before a cut, whatever the window's size


class SeriesWindow:
    """One series' recent points, oldest first; out-of-order samples are ignored."""

    __slots__ = ("_start", "_ts", "_vs", "max_points")

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self._ts = array("d")
        self._vs = array("d")
        self._start = 0

    def add(self, ts: float, value: float, horizon: float) -> None:
        """Append a point and forget those older than ``horizon`` or beyond ``max_points``."""
        times = self._ts
        end = len(times)
        start = self._start
        if end > start and ts < times[-1]:
            return  # out-of-order sample: keep the window sorted, the store still has it
        times.append(ts)
        self._vs.append(value)
        end += 1
        if end - start > self.max_points:
            start = end - self.max_points
        if times[start] < horizon:
            start = bisect_left(times, horizon, start, end)
        if start >= _COMPACT_MIN and start * 4 >= end:
            del times[:start]
            del self._vs[:start]
            start = 0
        self._start = start

    def __len__(self) -> int:
        return len(self._ts) - self._start

    @property
    def latest(self) -> tuple[float, float] | None:
        return (self._ts[-1], self._vs[-1]) if len(self._ts) > self._start else None

    @property
    def points(self) -> PointsView:
        """The points as a read-only sequence of ``(ts, value)``, oldest first (no copy)."""
        return PointsView(self)

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        """The points with ``start < ts <= end``, oldest first."""
        times = self._ts
        lo = bisect_right(times, start, self._start)
        hi = bisect_right(times, end, lo)
        return list(zip(times[lo:hi], self._vs[lo:hi], strict=True))

    def last_at(self, end: float) -> tuple[float, float] | None:
        """The newest point with ``ts <= end``, if any."""
        i = bisect_right(self._ts, end, self._start) - 1
        return (self._ts[i], self._vs[i]) if i >= self._start else None


class PointsView(Sequence[tuple[float, float]]):
    """A live, read-only view of a window's points (what ``SeriesWindow.points`` returns)."""

    __slots__ = ("_window",)

    def __init__(self, window: SeriesWindow) -> None:
        self._window = window

    def __len__(self) -> int:
        return len(self._window)

    @overload
    def __getitem__(self, index: int) -> tuple[float, float]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[float, float]]: ...

    def __getitem__(self, index: int | slice) -> tuple[float, float] | list[tuple[float, float]]:
        w = self._window
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(w))
            return list(zip(w._ts[w._start + lo:w._start + hi:step],
                            w._vs[w._start + lo:w._start + hi:step], strict=True))
        n = len(w)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("window index out of range")
        i = w._start + index
        return (w._ts[i], w._vs[i])

    def __iter__(self) -> Iterator[tuple[float, float]]:
        w = self._window
        return zip(w._ts[w._start:], w._vs[w._start:], strict=True)

    def __reversed__(self) -> Iterator[tuple[float, float]]:
        w = self._window
        return zip(reversed(w._ts[w._start:]), reversed(w._vs[w._start:]), strict=True)

    def __bool__(self) -> bool:
        return len(self._window) > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PointsView({list(self)!r})"


class SeriesCache:
    """Windows by metric and labels, at most ``max_series`` of them (None: no cap).

    Some label values come from the targets themselves (the unit codes of a statistics
    endpoint), so a broken or hostile source could invent new series on every poll; past the
    cap a new series is not kept in memory (it is still stored), counted in ``refused`` and
    logged once per episode. Known series go on updating.
    """

    def __init__(self, window_seconds: float, max_points: int,
                 max_series: int | None = None) -> None:
        self.window_seconds = window_seconds
        self.max_points = max_points
        self.max_series = max_series
        self.refused = 0
        self._count = 0
        self._overflow = OverflowLog(log, "in-memory series cap", full="reached",
                                     action="refusing new series", max_series=max_series)
        self._metrics: dict[str, dict[Labels, SeriesWindow]] = {}

    def add(self, samples: Iterable[Sample]) -> None:
        metrics = self._metrics
        for sample in samples:
            by_labels = metrics.get(sample.metric)
            if by_labels is None:
                by_labels = metrics[sample.metric] = {}
            window = by_labels.get(sample.labels)
            if window is None:
                if self.max_series is not None and self._count >= self.max_series:
                    self.refused += 1
                    self._overflow.dropped(1, metric=sample.metric)
                    continue
                self._overflow.ok()
                window = by_labels[sample.labels] = SeriesWindow(self.max_points)
                self._count += 1
            window.add(sample.ts, sample.value, sample.ts - self.window_seconds)

    def latest(self, metric: str, labels: Labels) -> tuple[float, float] | None:
        window = self._metrics.get(metric, {}).get(labels)
        return window.latest if window is not None else None

    def window(self, metric: str, labels: Labels) -> list[tuple[float, float]]:
        window = self._metrics.get(metric, {}).get(labels)
        return list(window.points) if window is not None else []

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
        self._count -= dropped
        return dropped

    def clear(self) -> None:
        """Forget every series (the alert leader's copy of other shards' data, on step-down)."""
        self._metrics.clear()
        self._count = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._metrics.values())
