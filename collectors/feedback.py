"""The ``feedback`` collector: citizens' feedback reports (phản ánh, kiến nghị) per department.

The same shape as ``backlog``: a JSON statistics endpoint, ioc's own contract by default or
any shape through a JMESPath ``mapping``, all-or-nothing parsing, and a ``department`` label on
every sample because one poll covers every department the province's app routes reports to.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field, model_validator

from collectors.jsonstats import JsonStatsCollector, JsonStatsConfig
from collectors.mapping import CompiledMapping, FieldMapping, PayloadError
from ioc.collector import CollectorFailure
from ioc.config_types import CollectorConfig
from ioc.domain import (
    FEEDBACK_FIELDS,
    FEEDBACK_RATIO_NEEDS,
    FEEDBACK_RESOLVED_RATIO_NEEDS,
    FEEDBACK_STATUSES,
    CountError,
    FeedbackCounts,
    feedback_from_fields,
    feedback_known,
    feedback_ontime_ratio,
    feedback_resolved_ontime_ratio,
)
from ioc.model import CollectResult, Labels, Sample, make_labels

# ioc's own contract, ``ioc.portal.feedback/v1``.
NATIVE_MAPPING = FieldMapping(
    units="units",
    code="code",
    fields={
        "received": "received",
        "in_progress": "in_progress",
        "overdue": "overdue",
        "resolved_ontime": "resolved.on_time",
        "resolved_late": "resolved.late",
    },
)


class FeedbackConfig(JsonStatsConfig):
    type: Literal["feedback"]
    mapping: FieldMapping | None = Field(
        None, description="where the counters are; absent: ioc's own contract")

    @model_validator(mode="after")
    def _check_mapping(self) -> FeedbackConfig:
        if self.mapping is not None:
            self.mapping.check_names(FEEDBACK_FIELDS, ())
        return self


class UnitFeedback(NamedTuple):
    code: str
    counts: FeedbackCounts
    known: frozenset[str]   # the counters the source reports for this unit
    listed: bool = True     # a department of the config (see CompiledMapping)


def read_feedback(payload: Any, mapping: CompiledMapping) -> list[UnitFeedback]:
    """Every department's code, counts and the counters the source reports; raises
    CollectorFailure("bad_payload") naming the field at fault."""
    try:
        extracted = mapping.extract(payload)
    except PayloadError as exc:
        raise CollectorFailure("bad_payload", str(exc)) from None
    units = []
    for index, unit in enumerate(extracted.units):
        try:
            counts = feedback_from_fields(unit.values, unit.unknown)
        except CountError as exc:
            expression = mapping.mapping.fields.get(exc.field)
            where = f" ({expression!r})" if expression else ""
            raise CollectorFailure(
                "bad_payload", f"units[{index}] ({unit.code}).{exc.field}{where}: {exc.message}"
            ) from None
        units.append(UnitFeedback(unit.code, counts, feedback_known(unit.values, unit.unknown),
                                  unit.listed))
    return units


def feedback_samples(units: list[UnitFeedback], base: Labels, now: float,
                     unknown_units: str = "include") -> list[Sample]:
    """Only counters the source reports; no ratio with a zero or unknown denominator; units
    that are no department of the config out of the province with ``unknown_units: exclude``.
    """
    samples: list[Sample] = []

    def add(metric: str, value: float, **labels: str) -> None:
        samples.append(Sample(metric, make_labels(base, **labels), float(value), now))

    def ratio(metric: str, value: float | None, department: str) -> None:
        if value is not None:
            add(metric, value, department=department)

    province_all = FeedbackCounts()
    province_resolved = FeedbackCounts()
    for code, reports, known, listed in units:
        in_province = listed or unknown_units == "include"
        for status in FEEDBACK_STATUSES:
            if status in known:
                add("ioc_feedback_reports", getattr(reports, status), department=code,
                    status=status)
        if FEEDBACK_RATIO_NEEDS <= known:
            if in_province:
                province_all = province_all + reports
            ratio("ioc_feedback_ontime_ratio", feedback_ontime_ratio(reports), code)
        if FEEDBACK_RESOLVED_RATIO_NEEDS <= known:
            if in_province:
                province_resolved = province_resolved + reports
            ratio("ioc_feedback_resolved_ontime_ratio",
                  feedback_resolved_ontime_ratio(reports), code)
    ratio("ioc_feedback_ontime_ratio", feedback_ontime_ratio(province_all), "")
    ratio("ioc_feedback_resolved_ontime_ratio",
          feedback_resolved_ontime_ratio(province_resolved), "")
    return samples


def parse_feedback(payload: Any, mapping: CompiledMapping, base: Labels,
                   now: float) -> list[Sample]:
    """Payload → samples; all or nothing (raises CollectorFailure on any bad field)."""
    return feedback_samples(read_feedback(payload, mapping), base, now)


class FeedbackCollector(JsonStatsCollector):
    kind: ClassVar[str] = "feedback"
    Config: ClassVar[type[CollectorConfig]] = FeedbackConfig
    native_mapping: ClassVar[FieldMapping] = NATIVE_MAPPING

    def __init__(self, config: FeedbackConfig) -> None:
        super().__init__(config, config.mapping)

    def result(self, payload: Any, now: float) -> CollectResult:
        units = read_feedback(payload, self.mapping)
        self.unknown_units.report(units, self.config.unknown_units)
        samples = feedback_samples(units, self.base, now, self.config.unknown_units)
        return CollectResult(up=True, samples=tuple(samples))

