"""The ``backlog`` collector: administrative dossiers per department, and on-time rates.

It polls a JSON statistics endpoint of the province's public-service portal. With no
``mapping`` it reads ioc's own contract (docs/integrations/portal.md); with one, any other
shape. :func:`parse_backlog` is the pure half, tested on saved payloads: it reads every unit,
checks the counters make sense, and only then builds samples, so a bad payload stores nothing.

One poll reports many departments, so every sample carries its own ``department`` label (the
department the dossiers belong to, not the owner of the target), plus ``target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from collectors.jsonstats import JsonStatsCollector, JsonStatsConfig
from collectors.mapping import CompiledMapping, FieldMapping, PayloadError
from ioc.collector import CollectorFailure
from ioc.config_types import CollectorConfig
from ioc.domain import (
    CATALOGUE_FIELDS,
    CHANNELS,
    DOSSIER_FIELDS,
    DOSSIER_RATIO_NEEDS,
    DOSSIER_RESOLVED_RATIO_NEEDS,
    DOSSIER_STATUSES,
    CountError,
    DossierCounts,
    catalogue_levels,
    dossier_known,
    dossier_ontime_ratio,
    dossier_resolved_ontime_ratio,
    dossiers_from_fields,
)
from ioc.model import CollectResult, Labels, Sample, make_labels

# ioc's own contract, ``ioc.portal.dossiers/v1``: the mapping used when none is configured.
NATIVE_MAPPING = FieldMapping(
    units="units",
    code="code",
    fields={
        "received_online": "received.online",
        "received_direct": "received.direct",
        "received_postal": "received.postal",
        "carried_over": "carried_over",
        "resolved_early": "resolved.early",
        "resolved_ontime": "resolved.on_time",
        "resolved_late": "resolved.late",
        "in_progress_ontime": "in_progress.on_time",
        "in_progress_overdue": "in_progress.overdue",
        "due_soon": "in_progress.due_soon",
        "waiting_supplement": "waiting_supplement",
        "paused": "paused",
        "returned": "returned",
        "withdrawn": "withdrawn",
    },
    optional=["due_soon", "total", "full", "partial"],
    province={"total": "procedures.total", "full": "procedures.full_online",
              "partial": "procedures.partial_online"},
)


class BacklogConfig(JsonStatsConfig):
    type: Literal["backlog"]
    mapping: FieldMapping | None = Field(
        None, description="where the counters are; absent: ioc's own contract")

    @model_validator(mode="after")
    def _check_mapping(self) -> BacklogConfig:
        if self.mapping is not None:
            self.mapping.check_names(DOSSIER_FIELDS, CATALOGUE_FIELDS)
        return self


def _fail(message: str) -> CollectorFailure:
    return CollectorFailure("bad_payload", message)


@dataclass(frozen=True, slots=True)
class UnitDossiers:
    code: str
    counts: DossierCounts
    known: frozenset[str]   # the counters the source reports for this unit
    listed: bool = True     # a department of the config (see CompiledMapping)


def read_backlog(payload: Any, mapping: CompiledMapping
                 ) -> tuple[list[UnitDossiers], dict[str, int] | None]:
    """Every department's counts and the catalogue levels (None if not given).

    Raises CollectorFailure("bad_payload") naming the unit and counter at fault.
    """
    try:
        extracted = mapping.extract(payload)
    except PayloadError as exc:
        raise _fail(str(exc)) from None
    units: list[UnitDossiers] = []
    for index, unit in enumerate(extracted.units):
        try:
            counts = dossiers_from_fields(unit.values, unit.unknown)
        except CountError as exc:
            expression = mapping.mapping.fields.get(exc.field)
            where = f" ({expression!r})" if expression else ""
            raise _fail(f"units[{index}] ({unit.code}).{exc.field}{where}: {exc.message}") \
                from None
        units.append(UnitDossiers(unit.code, counts, dossier_known(unit.values, unit.unknown),
                                  unit.listed))
    catalogue = None
    if extracted.province:
        try:
            catalogue = catalogue_levels(extracted.province)
        except CountError as exc:
            raise _fail(f"province.{exc.field}: {exc.message}") from None
    return units, catalogue


def backlog_samples(units: list[UnitDossiers], catalogue: dict[str, int] | None,
                    base: Labels, now: float, unknown_units: str = "include") -> list[Sample]:
    """The samples of one poll: only counters the source reports, and no ratio whose
    denominator is 0 or unknown (absent, not 0 and not 1). With ``unknown_units="exclude"``
    a unit that is no department of the config is published but left out of the province's
    totals."""
    samples: list[Sample] = []

    def add(metric: str, value: float, **labels: str) -> None:
        samples.append(Sample(metric, make_labels(base, **labels), float(value), now))

    def ratio(metric: str, value: float | None, department: str) -> None:
        if value is not None:
            add(metric, value, department=department)

    province_all = DossierCounts()
    province_resolved = DossierCounts()
    for unit in units:
        dossiers, known = unit.counts, unit.known
        for status in DOSSIER_STATUSES:
            value = getattr(dossiers, status)
            if status in known and value is not None:
                add("ioc_dossiers", value, department=unit.code, status=status)
        for channel in CHANNELS:
            if f"received_{channel}" in known:
                add("ioc_dossiers_received", getattr(dossiers, f"received_{channel}"),
                    department=unit.code, channel=channel)
        in_province = unit.listed or unknown_units == "include"
        if DOSSIER_RATIO_NEEDS <= known:
            if in_province:
                province_all = province_all + dossiers
            ratio("ioc_dossier_ontime_ratio", dossier_ontime_ratio(dossiers), unit.code)
        if DOSSIER_RESOLVED_RATIO_NEEDS <= known:
            if in_province:
                province_resolved = province_resolved + dossiers
            ratio("ioc_dossier_resolved_ontime_ratio",
                  dossier_resolved_ontime_ratio(dossiers), unit.code)
    ratio("ioc_dossier_ontime_ratio", dossier_ontime_ratio(province_all), "")
    ratio("ioc_dossier_resolved_ontime_ratio",
          dossier_resolved_ontime_ratio(province_resolved), "")
    if catalogue is not None:
        for level, value in catalogue.items():
            add("ioc_online_procedures", value, department="", level=level)
    return samples


def period_start(payload: Any) -> float | None:
    """The start of the reporting period ioc's own contract names (``period.start``, ISO 8601
    with its offset), as unix seconds; None when absent or not such a time. Only the wall uses
    it (to say which month "received" counts), so a missing or odd one is no error."""
    period = payload.get("period") if isinstance(payload, dict) else None
    start = period.get("start") if isinstance(period, dict) else None
    if not isinstance(start, str) or len(start) > 64:
        return None
    try:
        moment = datetime.fromisoformat(start)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # a local time without its offset names no instant
    return moment.timestamp()


def parse_backlog(payload: Any, mapping: CompiledMapping, base: Labels,
                  now: float) -> list[Sample]:
    """Payload → samples; all or nothing (raises CollectorFailure on any bad field)."""
    units, catalogue = read_backlog(payload, mapping)
    return backlog_samples(units, catalogue, base, now)


class BacklogCollector(JsonStatsCollector):
    kind: ClassVar[str] = "backlog"
    Config: ClassVar[type[CollectorConfig]] = BacklogConfig
    native_mapping: ClassVar[FieldMapping] = NATIVE_MAPPING

    def __init__(self, config: BacklogConfig) -> None:
        super().__init__(config, config.mapping)
        self.native = config.mapping is None  # ioc's own contract, which names its period

    def result(self, payload: Any, now: float) -> CollectResult:
        units, catalogue = read_backlog(payload, self.mapping)
        self.unknown_units.report(units, self.config.unknown_units)
        samples = backlog_samples(units, catalogue, self.base, now, self.config.unknown_units)
        start = period_start(payload) if self.native else None
        if start is not None:
            samples.append(Sample("ioc_dossiers_period_start_timestamp_seconds",
                                  make_labels(self.base, department=""), start, now))
        return CollectResult(up=True, samples=tuple(samples), value=float(len(units)))
