"""/metrics written by ioc.exposition says exactly what prometheus-client's encoders say.

Every family kind ioc's registry holds (cache gauges, counters, histograms, info, enum, gauges
with callbacks) plus the awkward cases (escaped label values, non-finite values, -0.0, names the
fast path leaves to prometheus-client, exemplars) are rendered both ways and compared byte for
byte and, through prometheus-client's parsers, family by family.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from ioc.cache import SeriesCache
from ioc.exposition import Exposition
from ioc.metrics import CacheStats, SampleExporter, ServiceMetrics
from ioc.model import Sample, make_labels
from ioc.status import StatusBoard, TargetState

PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                "application/openmetrics-text;version=0.0.1;q=0.4,"
                "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
                "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
ACCEPTS = [
    "",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=underscores",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=dots",  # prometheus-client's own
    PROMETHEUS_3,
]
VALUES = [0.0, -0.0, 1.0, 200.0, 0.012345, 1e-7, 1234567.0, 12345678.9, 1e21, -3.5,
          math.inf, -math.inf, math.nan]


def registry_like_ioc() -> tuple[CollectorRegistry, SeriesCache]:
    disable_created_metrics()
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, "0.1.0")
    cache = SeriesCache(window_seconds=600.0, max_points=10)
    board = StatusBoard()
    metrics.last_success.watch(board)  # as the pipeline does
    # Neither a target that never succeeded nor another shard's target has a last success.
    board.register(TargetState("never", "STP", "http", 30.0))
    board.register(TargetState("remote", "STP", "http", 30.0, shard=1, remote=True,
                               last_success=1_800_000_000.0))
    registry.register(SampleExporter(cache))
    registry.register(CacheStats(cache))
    samples = []
    for i, value in enumerate(VALUES):
        target = f"t{i}"
        base = make_labels(target=target, department="STP", kind="http")
        samples.append(Sample("ioc_target_up", base, 1.0, 1_800_000_000.0))
        samples.append(Sample("ioc_probe_duration_seconds", base, value, 1_800_000_000.0))
        board.register(TargetState(target, "STP", "http", 30.0, last_success=value))
        metrics.collector_duration.labels(kind="http").observe(i / 10)
    odd = {"url": 'http://a/"q"\\b\nc', "department": "Sở Tư pháp", "empty": ""}
    samples.append(Sample("ioc_probe_http_final_url_info",
                          make_labels(odd, target="t-odd", kind="http"), 1.0, 1.8e9))
    samples.append(Sample("ioc_dossiers", make_labels({"x.y": "dotted label name"}), 4.0, 1.8e9))
    samples.append(Sample("ioc:recorded", make_labels(target="t0"), 2.0, 1.8e9))
    cache.add(samples)
    metrics.failures.labels(target="t1", department="STP", reason="timeout").inc(3)
    Info("ioc_extra", "An info metric.", registry=registry).info({"a": "1", "b": 'q"'})
    Enum("ioc_mode", "A stateset.", states=["up", "down"], registry=registry).state("down")
    exemplars = Counter("ioc_with_exemplar", "A counter with an exemplar.", registry=registry)
    exemplars.inc(exemplar={"trace_id": "abc"})
    Histogram("ioc_unlabelled_seconds", "A plain histogram.", registry=registry).observe(0.2)
    Gauge("ioc_callback", "A gauge read at scrape time.", registry=registry).set_function(
        lambda: 7)
    return registry, cache


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_same_bytes_and_families_as_prometheus_client(accept: str) -> None:
    registry, _ = registry_like_ioc()
    encoder, content_type = choose_encoder(accept)
    expected = encoder(registry)
    exposition = Exposition(slice_seconds=0)  # a turn of the loop at every chance
    for _ in range(2):  # the second time from the kept label texts
        body, got_type = await exposition.render(registry, accept)
        assert got_type == content_type
        assert body.decode() == expected.decode()
    if "escaping=dots" in accept:
        return  # prometheus-client's parser does not read its own dots escaping back
    parse = parse_openmetrics if "openmetrics" in content_type else parse_text
    assert _families(parse(body.decode())) == _families(parse(expected.decode()))


async def test_last_success_comes_from_the_board_without_remote_or_unpolled_targets() -> None:
    registry, _ = registry_like_ioc()
    body, _ = await Exposition().render(registry)
    family = next(f for f in parse_text(body.decode())
                  if f.name == "ioc_collector_last_success_timestamp_seconds")
    assert family.type == "gauge"
    assert family.documentation == "Unix time of the target's last successful poll."
    assert [s.labels for s in family.samples] == [{"target": f"t{i}"}
                                                  for i in range(len(VALUES))]


def _families(families: Iterable[Metric]) -> list[tuple[str, str, list[Any]]]:
    out = []
    for family in families:
        samples = [(s.name, sorted(s.labels.items()),
                    "nan" if isinstance(s.value, float) and math.isnan(s.value) else s.value)
                   for s in family.samples]
        out.append((family.name, family.type, samples))
    return out


async def test_the_loop_runs_while_a_big_cache_is_written() -> None:
    registry, cache = registry_like_ioc()
    cache.add(Sample("ioc_target_up", make_labels(target=f"n{i}"), 1.0, 1.8e9)
              for i in range(5_000))
    exposition = Exposition(slice_seconds=0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            # The cache changes under the writer: new series, a dropped target, new values.
            cache.add([Sample("ioc_target_up", make_labels(target=f"new{ticks}"), 0.0, 1.9e9),
                       Sample("ioc_target_up", make_labels(target="n1"), 0.0, 1.9e9 + ticks)])
            cache.drop_target(f"n{ticks + 100}")
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        body, _ = await exposition.render(registry)
    finally:
        task.cancel()
    assert exposition.last_turns >= 5_000 // 256 - 1
    assert ticks >= exposition.last_turns
    names = {f.name for f in parse_text(body.decode())}
    assert {"ioc_target_up", "ioc_cache_series", "ioc_collector_duration_seconds"} <= names


async def test_removed_series_leave_the_output_and_the_kept_texts() -> None:
    registry, cache = registry_like_ioc()
    cache.add(Sample("ioc_target_up", make_labels(target=f"gone{i}"), 1.0, 1.8e9)
              for i in range(200))
    exposition = Exposition()
    assert b'target="gone7"' in (await exposition.render(registry))[0]
    for i in range(200):
        cache.drop_target(f"gone{i}")
    body, _ = await exposition.render(registry)
    assert b"gone" not in body
    assert body == generate_latest(registry)
    assert len(exposition._kept["ioc_target_up"].prefixes) == len(VALUES)


async def test_kept_texts_follow_new_series_and_each_scrapers_escaping() -> None:
    registry, cache = registry_like_ioc()
    exposition = Exposition()
    for round_ in range(3):
        # Prometheus 3 (label names may stay UTF-8) and a plain scraper (underscores) in turn.
        for accept in (PROMETHEUS_3, "text/plain;version=1.0.0;escaping=underscores", ""):
            encoder, _ = choose_encoder(accept)
            assert (await exposition.render(registry, accept))[0] == encoder(registry)
        cache.add([Sample("ioc_target_up", make_labels(target=f"late{round_}"), 1.0, 1.9e9),
                   Sample("ioc_dossiers", make_labels({"a.b": str(round_)}), 1.0, 1.9e9)])
