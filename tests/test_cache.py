"""The in-memory windows stay bounded by age and by count, and removed targets vanish."""

from __future__ import annotations

import logging

import pytest

from ioc.cache import SeriesCache
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
