"""The latest value of every series plus a short in-memory window of its history.

The wall screen, the status API and the alert engine read from here, never from the database
and never from the targets. Windows are bounded by age *and* by point count so a misconfigured
1 s interval cannot grow memory without limit.

Only the alert rules read ranges of points from the sample cache (the wall, the status API and
``/metrics`` read latest values, the wall's security panel the event counts' own cache, history
pages the store), so a cache told which metrics its readers need as ranges (``history``:
metric → seconds) keeps a window only for those, as long as the longest range read plus
``HISTORY_MARGIN``, and the latest point alone (``LatestPoint``) of every other metric. With
the default rules and 30 s polls an http target keeps 2 windows (22 and 12 points) and 9
latest points, ~2.5 KB, instead of 11 windows of 120 points, ~27 KB (bench/cache_memory.py).
A metric that gains a range (a rule added at reload) starts its window from the latest point
then; older points were never kept. ``history=None`` keeps every metric's full window.

A window keeps its points as two ``array('d')`` (times and values, 16 B a point) rather than a
deque of tuples (~90 B a point). Live points are the tail ``[start:]`` of the arrays; expired
points are cut off in bulk once they are an eighth of the arrays, so trimming is amortised O(1)
and the arrays stay sorted, which lets lookups bisect them in C.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

from ioc.model import Labels, Sample
from ioc.overflow import OverflowLog

log = logging.getLogger("ioc.cache")

_COMPACT_MIN = 4  # dead points tolerated before a cut, whatever the window's size
_COMPACT_SHARE = 8  # ... and the arrays' length over the dead points at a cut
# Seconds a kept range reaches past the longest one its readers ask for: a rule reads
# ``(now - window, now]`` and the window is trimmed from its newest point, so a point stamped
# up to this much after the evaluation's ``now`` (another instance's clock, a clock step)
# still leaves every point the rule reads in memory.
HISTORY_MARGIN = 60.0


class Window:
    """What readers get for a series: its latest point, its points, ranges of them."""

    __slots__ = ()

    def add(self, ts: float, value: float, horizon: float) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def latest(self) -> tuple[float, float] | None:
        raise NotImplementedError

    @property
    def points(self) -> Sequence[tuple[float, float]]:
        """The points as a read-only sequence of ``(ts, value)``, oldest first."""
        raise NotImplementedError

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        """The points with ``start < ts <= end``, oldest first."""
        raise NotImplementedError

    def last_at(self, end: float) -> tuple[float, float] | None:
        """The newest point with ``ts <= end``, if any."""
        raise NotImplementedError


class LatestPoint(Window):
    """A series of a metric no reader needs a range of: its newest point alone (~100 B).

    Answers every ``Window`` question as a window holding that one point would.
    """

    __slots__ = ("_ts", "_value")

    def __init__(self, ts: float, value: float) -> None:
        self._ts = ts
        self._value = value

    def add(self, ts: float, value: float, horizon: float) -> None:
        if ts >= self._ts:  # an out-of-order sample is ignored, as by a window
            self._ts = ts
            self._value = value

    def __len__(self) -> int:
        return 1

    @property
    def latest(self) -> tuple[float, float]:
        return (self._ts, self._value)

    @property
    def points(self) -> tuple[tuple[float, float]]:
        return ((self._ts, self._value),)

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(self._ts, self._value)] if start < self._ts <= end else []

    def last_at(self, end: float) -> tuple[float, float] | None:
        return (self._ts, self._value) if self._ts <= end else None


class SeriesWindow(Window):
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
        if start >= _COMPACT_MIN and start * _COMPACT_SHARE >= end:
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
        times = self._ts
        lo = bisect_right(times, start, self._start)
        hi = bisect_right(times, end, lo)
        return list(zip(times[lo:hi], self._vs[lo:hi], strict=True))

    def last_at(self, end: float) -> tuple[float, float] | None:
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

    # a mutable sequence equal to lists is unhashable, as list is; typeshed types the
    # attribute as a method, so None needs the ignore
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PointsView({list(self)!r})"


class SeriesCache:
    """Windows by metric and labels, at most ``max_series`` of them (None: no cap).

    ``history`` (see the module docstring and ``set_history``): the metrics whose series keep
    a window and how many seconds of points their readers read; the others keep their latest
    point. None: every metric keeps ``window_seconds``.

    Some label values come from the targets themselves (the unit codes of a statistics
    endpoint), so a broken or hostile source could invent new series on every poll; past the
    cap a new series is not kept in memory (it is still stored), counted in ``refused`` and
    logged once per episode. Known series go on updating.
    """

    def __init__(self, window_seconds: float, max_points: int,
                 max_series: int | None = None, *,
                 history: Mapping[str, float] | None = None) -> None:
        self.window_seconds = window_seconds
        self.max_points = max_points
        self.max_series = max_series
        self.refused = 0
        self._count = 0
        self._overflow = OverflowLog(log, "in-memory series cap", full="reached",
                                     action="refusing new series", max_series=max_series)
        self._metrics: dict[str, dict[Labels, Window]] = {}
        self._keep: dict[str, float] | None = None  # metric -> seconds kept; None: all, full
        self.set_history(history)

    def set_history(self, history: Mapping[str, float] | None) -> None:
        """Keep a window for the metrics of ``history``, reaching ``HISTORY_MARGIN`` beyond the
        seconds given (at most ``window_seconds``), and the latest point of every other metric.

        Applies to the series held now: a metric that gains a window starts it from its latest
        point (older points were not kept), one that loses it keeps its latest point, a
        shorter range is trimmed at the series' next sample. Run between two reads of a rule
        cycle (the event loop's thread); ``/metrics`` may read from another thread meanwhile:
        a series' window is replaced whole, never emptied.
        """
        if history is None:
            self._keep = None
        else:
            self._keep = {metric: min(self.window_seconds, seconds + HISTORY_MARGIN)
                          for metric, seconds in history.items()}
        keep = self._keep
        for metric, by_labels in self._metrics.items():
            ranged = keep is None or metric in keep
            for labels, window in list(by_labels.items()):
                latest = window.latest
                if latest is None:
                    continue
                if ranged and isinstance(window, LatestPoint):
                    grown = SeriesWindow(self.max_points)
                    grown.add(latest[0], latest[1], latest[0])
                    by_labels[labels] = grown
                elif not ranged and not isinstance(window, LatestPoint):
                    by_labels[labels] = LatestPoint(*latest)

    def history(self) -> dict[str, float] | None:
        """Seconds of points kept per metric with a window (margin included); None: all."""
        return None if self._keep is None else dict(self._keep)

    def add(self, samples: Iterable[Sample]) -> None:
        metrics = self._metrics
        keep = self._keep
        full = self.window_seconds
        for sample in samples:
            metric = sample.metric
            by_labels = metrics.get(metric)
            if by_labels is None:
                by_labels = metrics[metric] = {}
            span = full if keep is None else keep.get(metric)
            window = by_labels.get(sample.labels)
            if window is None:
                if self.max_series is not None and self._count >= self.max_series:
                    self.refused += 1
                    self._overflow.dropped(1, metric=metric)
                    continue
                self._overflow.ok()
                self._count += 1
                if span is None:
                    by_labels[sample.labels] = LatestPoint(sample.ts, sample.value)
                    continue
                window = by_labels[sample.labels] = SeriesWindow(self.max_points)
            window.add(sample.ts, sample.value,
                       sample.ts - span if span is not None else sample.ts)

    def latest(self, metric: str, labels: Labels) -> tuple[float, float] | None:
        window = self._metrics.get(metric, {}).get(labels)
        return window.latest if window is not None else None

    def window(self, metric: str, labels: Labels) -> list[tuple[float, float]]:
        window = self._metrics.get(metric, {}).get(labels)
        return list(window.points) if window is not None else []

    def metrics(self) -> list[str]:
        return list(self._metrics)

    def series(self, metric: str) -> Iterator[tuple[Labels, Window]]:
        yield from list(self._metrics.get(metric, {}).items())

    def snapshot(self, metric: str) -> dict[Labels, Window]:
        """A copy of the metric's series by labels: one C call, so consistent even when read
        from another thread, and no (labels, window) pair built per series as ``series`` does
        (at 10,000 targets those tuples set off a full garbage collection at every scrape)."""
        return self._metrics.get(metric, {}).copy()

    def drop_target(self, target: str) -> int:
        """Forget every series of a target (it was removed from the config)."""
        dropped = 0
        for by_labels in self._metrics.values():
            for labels in [lb for lb in by_labels if ("target", target) in lb]:
                del by_labels[labels]
                dropped += 1
        self._count -= dropped
        return dropped

    def take_target(self, target: str) -> list[Sample]:
        """Remove a target's series and return their points, oldest first per series: with
        ``--shard auto`` a target's window moves between this instance's cache and the alert
        leader's copy of the others' (service.store_tail) when its owner changes, so the rules
        keep reading its whole window."""
        taken: list[Sample] = []
        for metric, by_labels in self._metrics.items():
            for labels in [lb for lb in by_labels if ("target", target) in lb]:
                taken.extend(Sample(metric, labels, value, ts)
                             for ts, value in by_labels[labels].points)
        self.drop_target(target)
        return taken

    def clear(self) -> None:
        """Forget every series (the alert leader's copy of other shards' data, on step-down)."""
        self._metrics.clear()
        self._count = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._metrics.values())
