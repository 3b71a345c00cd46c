"""``storage.rollups``: the 5 min and 1 h rollup tables behind long-range charts.

Kept beside the loader like the other section models; the tables and their upkeep are
:mod:`ioc.store.rollups`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ioc.config_types import Duration, StrictModel, format_duration


class RollupsConfig(StrictModel):
    enabled: bool = Field(True, description="keep 5-minute and 1-hour rollups and answer "
                                            "range queries whose step allows from them")
    interval: Duration = Field(60.0, description="how often newly closed buckets are rolled up")
    retention_5m: Duration = Field(90 * 86400.0,
                                   description="5-minute rollups older than this are pruned")
    retention_1h: Duration = Field(730 * 86400.0,
                                   description="1-hour rollups older than this are pruned")

    @model_validator(mode="after")
    def _check_retention(self) -> RollupsConfig:
        # The 1 h tier is summed from the 5 min one: an hour is only recomputed while its
        # 5 min rows are kept, so a shorter 1 h retention would only throw away history.
        if self.retention_1h < self.retention_5m:
            raise ValueError(
                f"retention_1h ({format_duration(self.retention_1h)}) must not be shorter "
                f"than retention_5m ({format_duration(self.retention_5m)})")
        return self


def check_against_raw(rollups: RollupsConfig, raw_retention: float) -> None:
    """Rollups must outlive the samples they summarise.

    A chart reads whole rolled-up buckets from the tier and only the edges and the newest
    part from raw samples, so a tier pruned before the samples would leave a hole in
    history the database still holds.
    """
    if rollups.enabled and rollups.retention_5m < raw_retention:
        raise ValueError(
            f"rollups.retention_5m ({format_duration(rollups.retention_5m)}) must not be "
            f"shorter than retention ({format_duration(raw_retention)}), the samples' own")
