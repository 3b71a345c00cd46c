"""Rule evaluation against real SeriesCache windows at a given moment."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.evaluate import SeriesIndex, aggregate, evaluate_rule
from alerts.rules import RuleConfig, compile_rule
from ioc.cache import SeriesCache, SeriesWindow
from ioc.model import Sample, make_labels


def rule(**fields: Any) -> Any:
    fields.setdefault("name", "R")
    return compile_rule(RuleConfig.model_validate(fields))


def window(*points: tuple[float, float]) -> SeriesWindow:
    w = SeriesWindow(100)
    for ts, value in points:
        w.add(ts, value, -1e9)
    return w


def cache_with(metric: str, series: dict[str, list[tuple[float, float]]],
               **labels: str) -> SeriesCache:
    cache = SeriesCache(3600, 1000)
    for target, points in series.items():
        lbl = make_labels(labels, target=target)
        cache.add(Sample(metric, lbl, v, ts) for ts, v in points)
    return cache


POINTS = ((10, 1.0), (20, 4.0), (30, 2.0), (40, 3.0))


@pytest.mark.parametrize(("how", "expected"), [
    ("last", 3.0), ("avg", 3.0), ("min", 2.0), ("max", 4.0), ("sum", 9.0), ("count", 3.0),
    ("delta", -1.0), ("increase", 2.0 + 1.0), ("rate", 3.0 / 20),
])
def test_aggregates_over_the_window(how: str, expected: float) -> None:
    # window (15, 40]: the point at 10 is outside
    assert aggregate(window(*POINTS), how, 25, 40) == pytest.approx(expected)


def test_increase_treats_a_drop_as_a_reset() -> None:
    assert aggregate(window((0, 5.0), (10, 8.0), (20, 2.0)), "increase", 60, 20) == 5.0


def test_points_after_now_and_stale_last_are_ignored() -> None:
    w = window((10, 1.0), (100, 9.0))
    assert aggregate(w, "last", 30, 50) is None       # newest point before now is too old
    assert aggregate(w, "last", 60, 50) == 1.0
    assert aggregate(w, "max", 60, 50) == 1.0
    assert aggregate(w, "count", 5, 50) == 0.0
    assert aggregate(w, "rate", 60, 50) is None       # one point: no change to measure


def test_threshold_and_matchers_select_series() -> None:
    cache = cache_with("ioc_target_up", {"a": [(0, 0.0)], "b": [(0, 1.0)], "c": [(0, 0.0)]},
                       department="STP")
    r = rule(metric="ioc_target_up", matchers=['department="STP"', 'target!="c"'],
             op="==", threshold=0)
    results = evaluate_rule(r, SeriesIndex(cache), 10, 0)
    assert [dict(x.labels)["target"] for x in results] == ["a"]
    r2 = rule(metric="ioc_target_up", matchers=['target=~"a|c"'], op="<", threshold=1)
    assert len(evaluate_rule(r2, SeriesIndex(cache), 10, 0)) == 2
    r3 = rule(metric="ioc_target_up", matchers=['department="CAT"'], op="<", threshold=1)
    assert evaluate_rule(r3, SeriesIndex(cache), 10, 0) == []


def test_by_combines_series() -> None:
    cache = cache_with("ioc_target_up", {"a": [(0, 0.0)], "b": [(0, 0.0)]}, department="STP")
    cache.add([Sample("ioc_target_up", make_labels(target="x", department="CAT"), 1.0, 0)])
    r = rule(metric="ioc_target_up", by=["department"], combine="max", op="==", threshold=0)
    (result,) = evaluate_rule(r, SeriesIndex(cache), 10, 0)
    assert result.labels == (("department", "STP"),)


def test_transform_until_reads_a_timestamp() -> None:
    cache = cache_with("ioc_probe_tls_cert_expiry_timestamp_seconds",
                       {"a": [(0, 1000.0 + 5 * 86400)], "b": [(0, 1000.0 + 30 * 86400)]})
    r = rule(metric="ioc_probe_tls_cert_expiry_timestamp_seconds", transform="until",
             op="<", threshold=14 * 86400, window="1h")
    (result,) = evaluate_rule(r, SeriesIndex(cache), 1000, 0)
    assert result.value == 5 * 86400


def test_absent_per_series_and_when_nothing_matches() -> None:
    cache = cache_with("ioc_target_up", {"a": [(0, 1.0)], "b": [(590, 1.0)]})
    r = rule(metric="ioc_target_up", absent="5m")
    (stale,) = evaluate_rule(r, SeriesIndex(cache), 600, 0)
    assert dict(stale.labels)["target"] == "a" and stale.value == 600
    nothing = rule(metric="ioc_nothing", matchers=['department="STP"'], absent="5m")
    (missing,) = evaluate_rule(nothing, SeriesIndex(cache), 600, 0)
    assert missing.labels == (("department", "STP"),) and missing.value is None
    # right after a start the windows cannot tell yet
    assert evaluate_rule(nothing, SeriesIndex(cache), 600, 400) == []


def test_index_reads_several_caches() -> None:
    one = cache_with("m", {"a": [(0, 5.0)]})
    two = cache_with("m", {"b": [(0, 6.0)]})
    r = rule(metric="m", op=">", threshold=0)
    assert len(evaluate_rule(r, SeriesIndex(one, two), 1, 0)) == 2
