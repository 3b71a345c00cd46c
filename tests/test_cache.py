"""The in-memory windows stay bounded by age and by count, and removed targets vanish."""

from __future__ import annotations

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
