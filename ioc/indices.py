"""The province's published indices (PAR INDEX, PCI, SIPAS, PAPI, …), from config to /metrics.

These rankings are published once a year, so they are configuration, not measurements: the
``indices:`` section holds them, and :class:`IndexExporter` exposes them at scrape time as
``ioc_province_index_rank{index,year}`` (with the score, the number of provinces ranked and
the change since the previous year where given). They are not written to the sample store:
the config file is their history.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pydantic import AfterValidator, Field, model_validator

from ioc.config_types import StrictModel


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
