"""The province's published indices (PAR INDEX, PCI, SIPAS, PAPI, …), from config to /metrics
and to the wall.

These rankings are published once a year, so they are configuration, not measurements: the
``indices:`` section holds them, and :class:`IndexExporter` exposes them at scrape time as
``ioc_province_index_rank{index,year}`` (with the score, the number of provinces ranked and
the change since the previous year where given). They are not written to the sample store:
the config file is their history. :class:`IndexFeed` puts the same values into the
latest-value cache, which the wall's indices panel reads like every other panel; the cache's
own /metrics export leaves them to :class:`IndexExporter` (``INDEX_METRICS``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pydantic import AfterValidator, Field, model_validator

from ioc.config_types import StrictModel
from ioc.model import Sample, make_labels

if TYPE_CHECKING:
    from ioc.cache import SeriesCache
    from ioc.pipeline import PollOutcome

# The families the indices are exported as; the cache's exporter skips them (IndexExporter
# writes them, with their own help texts).
INDEX_METRICS = frozenset({"ioc_province_index_rank", "ioc_province_index_provinces",
                           "ioc_province_index_rank_change", "ioc_province_index_score"})
# How often the cached values are re-stamped: well inside wall.stale_after (15 min default),
# so the panel never dims values that are as current as the config.
REFRESH_SECONDS = 60.0


class IndexConfig(StrictModel):
    index: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.\-]*$", max_length=32,
                       description="name of the index, e.g. PAR INDEX, PCI, SIPAS, PAPI")
    year: int = Field(ge=2000, le=2100, description="the year the index measures")
    rank: int = Field(ge=1, description="the province's rank (1 is best)")
    of: int = Field(63, ge=1, description="provinces ranked")
    change: int | None = Field(None, description="places gained since the previous year "
                                                 "(negative: places lost)")
    score: float | None = Field(None, ge=0, description="the published score, if any")

    @model_validator(mode="after")
    def _check_rank(self) -> IndexConfig:
        if self.rank > self.of:
            raise ValueError(f"rank {self.rank} is beyond the {self.of} provinces ranked")
        return self


def _unique(indices: list[IndexConfig]) -> list[IndexConfig]:
    seen: set[tuple[str, int]] = set()
    for entry in indices:
        key = (entry.index, entry.year)
        if key in seen:
            raise ValueError(f"{entry.index} {entry.year} is listed twice")
        seen.add(key)
    return indices


IndexList = Annotated[list[IndexConfig], AfterValidator(_unique)]


class IndexExporter(Collector):
    """Exports the configured indices on every scrape (a prometheus-client custom collector)."""

    def __init__(self, indices: Sequence[IndexConfig]) -> None:
        self.indices = tuple(indices)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if not self.indices:
            return
        labels = ["index", "year"]
        rank = GaugeMetricFamily("ioc_province_index_rank",
                                 "The province's rank in a published index (1 is best).",
                                 labels=labels)
        of = GaugeMetricFamily("ioc_province_index_provinces",
                               "Provinces ranked in a published index.", labels=labels)
        change = GaugeMetricFamily("ioc_province_index_rank_change",
                                   "Places gained in a published index since the previous "
                                   "year (negative: places lost).", labels=labels)
        score = GaugeMetricFamily("ioc_province_index_score",
                                  "The province's score in a published index.", labels=labels)
        for entry in self.indices:
            values = [entry.index, str(entry.year)]
            rank.add_metric(values, entry.rank)
            of.add_metric(values, entry.of)
            if entry.change is not None:
                change.add_metric(values, entry.change)
            if entry.score is not None:
                score.add_metric(values, entry.score)
        for family in (rank, of, change, score):
            if family.samples:
                yield family


def index_samples(indices: Sequence[IndexConfig], now: float) -> list[Sample]:
    """The indices as samples at ``now``: what /metrics shows, for the cache.

    The wall tells places gained from the rank of the year before; where the config gives a
    year's ``change`` but not the year before, that rank is what the change says it was
    (``rank + change``), and it is added too. It stays in the cache: /metrics shows the
    indices as configured.
    """
    samples = []
    listed = {(entry.index, entry.year) for entry in indices}
    for entry in indices:
        if entry.change is not None and (entry.index, entry.year - 1) not in listed:
            before = entry.rank + entry.change
            if 1 <= before <= entry.of:
                samples.append(Sample(
                    "ioc_province_index_rank",
                    make_labels(index=entry.index, year=str(entry.year - 1)), before, now))
        labels = make_labels(index=entry.index, year=str(entry.year))
        samples.append(Sample("ioc_province_index_rank", labels, float(entry.rank), now))
        samples.append(Sample("ioc_province_index_provinces", labels, float(entry.of), now))
        if entry.change is not None:
            samples.append(Sample("ioc_province_index_rank_change", labels,
                                  float(entry.change), now))
        if entry.score is not None:
            samples.append(Sample("ioc_province_index_score", labels, entry.score, now))
    return samples


class IndexFeed:
    """Keeps the configured indices in the latest-value cache of this instance.

    Fed once when built and then re-stamped from the time of the polls that pass through the
    pipeline (a pipeline hook, at most every ``REFRESH_SECONDS``): the wall marks a panel
    stale when its newest sample is older than ``wall.stale_after``, and these values are as
    current as the config. ``indices`` is a restart section (service.reload), so the set itself
    never changes while the app runs.
    """

    def __init__(self, cache: SeriesCache, indices: Sequence[IndexConfig], now: float) -> None:
        self.cache = cache
        self.indices = tuple(indices)
        self._fed = -REFRESH_SECONDS
        self.feed(now)

    def feed(self, now: float) -> None:
        if self.indices:
            self.cache.add(index_samples(self.indices, now))
        self._fed = now

    def __call__(self, outcome: PollOutcome) -> None:
        if outcome.ts - self._fed >= REFRESH_SECONDS:
            self.feed(outcome.ts)
