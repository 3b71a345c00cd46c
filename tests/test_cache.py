"""The in-memory windows stay bounded by age and by count, and removed targets vanish; metrics
no rule reads as a range keep their latest point, and rules read the same from a kept range."""

from __future__ import annotations

import logging
import random

import pytest

from alerts.evaluate import aggregate
from ioc.cache import HISTORY_MARGIN, LatestPoint, SeriesCache
from ioc.model import Sample, make_labels

A = make_labels(target="a", department="STP", kind="http")
B = make_labels(target="b", department="STP", kind="http")


def test_window_is_bounded_by_age() -> None:
    cache = SeriesCache(window_seconds=60, max_points=1000)
    cache.add(Sample("ioc_target_up", A, 1.0, float(t)) for t in range(0, 200, 10))
    points = cache.window("ioc_target_up", A)
    assert points[0][0] == 130.0 and points[-1] == (190.0, 1.0)


def test_window_is_bounded_by_count() -> None:
    cache = SeriesCache(window_seconds=10_000, max_points=5)
    cache.add(Sample("ioc_target_up", A, float(t), float(t)) for t in range(100))
    assert [v for _, v in cache.window("ioc_target_up", A)] == [95, 96, 97, 98, 99]


def test_latest_and_out_of_order_samples() -> None:
    cache = SeriesCache(3600, 10)
    cache.add([Sample("m", A, 1.0, 100.0), Sample("m", A, 2.0, 90.0)])
    assert cache.latest("m", A) == (100.0, 1.0)
    assert cache.latest("m", B) is None


def test_drop_target_forgets_only_its_series() -> None:
    cache = SeriesCache(3600, 10)
    cache.add([Sample("m", A, 1.0, 1.0), Sample("m", B, 1.0, 1.0), Sample("n", A, 1.0, 1.0)])
    assert cache.drop_target("a") == 2
    assert len(cache) == 1 and cache.latest("m", B) == (1.0, 1.0)


def test_take_target_moves_whole_windows_to_another_cache() -> None:
    mine = SeriesCache(3600, 10)
    mine.set_history({"m": 3600})  # a ranged metric keeps its window, "n" its latest point
    mine.add([Sample("m", A, float(t), float(t)) for t in range(5)])
    mine.add([Sample("m", B, 7.0, 1.0), Sample("n", A, 2.0, 3.0), Sample("n", A, 3.0, 4.0)])
    theirs = SeriesCache(3600, 10)
    theirs.set_history({"m": 3600})
    theirs.add(mine.take_target("a"))
    assert theirs.window("m", A) == [(float(t), float(t)) for t in range(5)]
    assert theirs.latest("n", A) == (4.0, 3.0)
    assert mine.window("m", A) == [] and mine.latest("n", A) is None
    assert mine.latest("m", B) == (1.0, 7.0) and len(mine) == 1
    assert mine.take_target("nobody") == []


def test_window_stays_sorted_and_bounded_across_many_trims() -> None:
    cache = SeriesCache(window_seconds=50, max_points=30)
    for t in range(1000):
        cache.add([Sample("m", A, float(t), float(t))])
        if t % 7 == 0:
            cache.add([Sample("m", A, -1.0, float(t) - 3)])  # late: ignored
    points = cache.window("m", A)
    assert points == [(float(t), float(t)) for t in range(970, 1000)]
    (_, window), = cache.series("m")
    view = window.points
    assert len(view) == 30 and view[0] == (970.0, 970.0) and view[-1] == (999.0, 999.0)
    assert next(reversed(view)) == (999.0, 999.0) and view[1:3] == [(971.0, 971.0),
                                                                      (972.0, 972.0)]


def test_between_and_last_at_follow_range_selector_edges() -> None:
    cache = SeriesCache(window_seconds=3600, max_points=100)
    cache.add(Sample("m", A, float(t), float(t)) for t in range(0, 100, 10))
    (_, window), = cache.series("m")
    assert window.between(20, 50) == [(30.0, 30.0), (40.0, 40.0), (50.0, 50.0)]
    assert window.between(95, 200) == [] and window.between(-1, 0) == [(0.0, 0.0)]
    assert window.last_at(55) == (50.0, 50.0) and window.last_at(-1) is None


def test_series_cap_keeps_known_series_and_logs_one_episode(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.cache")
    cache = SeriesCache(3600, 10, max_series=3)
    unit = [make_labels(target="dvc-stats", department=f"U{n:03d}") for n in range(50)]
    for poll in range(5):  # a source inventing unit codes: 50 new series per poll
        cache.add(Sample("ioc_dossiers", labels, float(poll), float(poll)) for labels in unit)
    assert len(cache) == 3 and cache.refused == 5 * 47
    assert cache.latest("ioc_dossiers", unit[0]) == (4.0, 4.0)  # known series still update
    assert cache.drop_target("dvc-stats") == 3
    cache.add([Sample("ioc_target_up", A, 1.0, 10.0)])  # fits again: the episode ends
    assert len(cache) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["in-memory series cap reached: refusing new series (counted in metrics)",
                     "in-memory series cap no longer refusing new series"]


# --------------------------------------------------------------------------------------------
# Windows only for the metrics readers read as ranges (history)


def test_a_metric_without_a_range_keeps_its_latest_point_alone() -> None:
    cache = SeriesCache(3600, 720, history={"ioc_target_up": 300})
    cache.add(Sample("ioc_probe_http_status_code", A, float(t), float(t)) for t in range(50))
    cache.add([Sample("ioc_probe_http_status_code", A, -1.0, 10.0)])  # late: ignored
    assert cache.latest("ioc_probe_http_status_code", A) == (49.0, 49.0)
    (_, window), = cache.series("ioc_probe_http_status_code")
    assert isinstance(window, LatestPoint) and len(window) == 1
    assert list(window.points) == [(49.0, 49.0)] == cache.window("ioc_probe_http_status_code", A)
    assert window.between(48, 49) == [(49.0, 49.0)] and window.between(49, 60) == []
    assert window.last_at(60) == (49.0, 49.0) and window.last_at(48.5) is None


def test_a_range_reaches_its_seconds_plus_the_margin_within_the_window() -> None:
    cache = SeriesCache(3600, 720, history={"ioc_target_up": 300, "ioc_dossiers": 7200})
    cache.add(Sample(m, A, 1.0, float(t)) for t in range(0, 5000, 10)
              for m in ("ioc_target_up", "ioc_dossiers"))
    up = cache.window("ioc_target_up", A)
    assert up[0][0] == 4990 - 300 - HISTORY_MARGIN and up[-1][0] == 4990
    assert cache.window("ioc_dossiers", A)[0][0] == 4990 - 3600  # capped by the window
    assert cache.history() == {"ioc_target_up": 300 + HISTORY_MARGIN, "ioc_dossiers": 3600}


def test_set_history_grows_a_latest_point_into_a_window_and_back() -> None:
    cache = SeriesCache(3600, 720, history={})
    cache.add(Sample("m", labels, 1.0, 10.0) for labels in (A, B))
    cache.add([Sample("m", A, 2.0, 20.0)])
    cache.set_history({"m": 600})
    assert cache.window("m", A) == [(20.0, 2.0)]  # older points were never kept
    cache.add([Sample("m", A, 3.0, 30.0), Sample("m", A, 4.0, 40.0)])
    assert cache.window("m", A) == [(20.0, 2.0), (30.0, 3.0), (40.0, 4.0)]
    assert cache.window("m", B) == [(10.0, 1.0)]
    cache.set_history({"other": 600})
    assert cache.window("m", A) == [(40.0, 4.0)] and len(cache) == 2
    assert all(isinstance(w, LatestPoint) for _, w in cache.series("m"))
    cache.set_history(None)  # every metric its full window again
    cache.add([Sample("m", A, 5.0, 50.0)])
    assert cache.window("m", A) == [(40.0, 4.0), (50.0, 5.0)]


AGGREGATES = ("last", "avg", "min", "max", "sum", "count", "rate", "increase", "delta")


@pytest.mark.parametrize("span", [30.0, 300.0, 600.0, 3600.0])
def test_rules_read_the_same_from_a_range_as_from_the_full_window(span: float) -> None:
    """Every aggregate a rule computes over ``(now - span, now]``, for every ``now`` from
    the newest point's time up to past the margin, is what the full window gives."""
    rng = random.Random(span)
    full = SeriesCache(3600, 720)
    ranged = SeriesCache(3600, 720, history={"m": span})
    ts = 0.0
    for _ in range(600):
        ts += rng.choice((0.0, 1.5, 10.0, 30.0, 31.7, 400.0))
        batch = [Sample("m", A, rng.choice((0.0, 1.0, rng.uniform(0, 100))), ts)]
        full.add(batch)
        ranged.add(batch)
        (_, whole), = full.series("m")
        (_, part), = ranged.series("m")
        for now in (ts, ts + 0.5, ts + 29.0, ts + span, ts + 2 * span):
            for how in AGGREGATES:
                assert aggregate(part, how, span, now) == aggregate(whole, how, span, now)
            assert part.last_at(now) == whole.last_at(now)
        # a sample stamped up to the margin after the evaluation's now reads the same too
        now = ts - HISTORY_MARGIN
        assert [aggregate(part, how, span, now) for how in AGGREGATES] == \
            [aggregate(whole, how, span, now) for how in AGGREGATES]
