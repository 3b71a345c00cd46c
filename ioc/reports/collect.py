"""A report's data: read a period from the store and build the report.

The same :func:`collect` serves ``ioc report`` (``service.report_command``) and the API's
download (``GET /api/v1/reports``), so the command line and the API give the same file for
the same period and ``now``. It reads only the config sections named by ``ReportConfig``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from ioc.availability import Period, parse_period
from ioc.domain import DossierCounts, FeedbackCounts
from ioc.incidents import Window
from ioc.reports.build import build_report
from ioc.store.availability import HistoryStore
from ioc.store.incidents import IncidentStore
from ioc.store.maintenance_store import MaintenanceStore

if TYPE_CHECKING:
    from ioc.config import DepartmentConfig, ProvinceConfig, StorageConfig
    from ioc.config_types import CollectorConfig

MONTHS = 12  # the on-time chart's months, the report's own month last
DOSSIER_METRICS = ("ioc_dossiers", "ioc_dossiers_received", "ioc_feedback_reports")
_DOSSIER_FIELDS = set(DossierCounts.__dataclass_fields__)
_FEEDBACK_FIELDS = set(FeedbackCounts.__dataclass_fields__)


def _dossiers(values: list[tuple[str, dict[str, str], float]]
              ) -> tuple[dict[str, DossierCounts], dict[str, FeedbackCounts]]:
    dossier: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    feedback: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for metric, labels, value in values:
        dept = labels.get("department", "")
        if metric == "ioc_dossiers" and labels.get("status") in _DOSSIER_FIELDS - {"due_soon"}:
            dossier[dept][labels["status"]] += int(value)
        elif metric == "ioc_dossiers_received":
            name = f"received_{labels.get('channel', '')}"
            if name in _DOSSIER_FIELDS:
                dossier[dept][name] += int(value)
        elif metric == "ioc_feedback_reports" and labels.get("status") in _FEEDBACK_FIELDS:
            feedback[dept][labels["status"]] += int(value)
    return ({d: DossierCounts(**v) for d, v in dossier.items()},
            {d: FeedbackCounts(**v) for d, v in feedback.items()})


def months_before(period: Period, tz: ZoneInfo, count: int = MONTHS) -> list[
        tuple[str, float, float]]:
    """The ``count`` calendar months up to the one the period ends in, oldest first."""
    last = datetime.fromtimestamp(period.end - 1, tz).date()
    out = []
    year, month = last.year, last.month
    for _ in range(count):
        label = f"{year}-{month:02d}"
        bounds = parse_period(label, tz)
        out.append((label, bounds.start, bounds.end))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


class ReportConfig(Protocol):
    """The sections of the whole config a report reads (``service.config.Config``)."""

    @property
    def province(self) -> ProvinceConfig: ...
    @property
    def departments(self) -> Sequence[DepartmentConfig]: ...
    @property
    def storage(self) -> StorageConfig: ...
    @property
    def collectors(self) -> Sequence[CollectorConfig]: ...

    def interval_of(self, collector: CollectorConfig) -> float: ...

    def maintenance_spans(self, start: float, end: float) -> Sequence[Window]:
        """The config's scheduled maintenance over ``[start, end)``."""
        ...


async def collect(config: ReportConfig, period_text: str, *, now: float,
                  department: str | None = None) -> dict[str, Any]:
    """The report of a period as data (raises ValueError on a bad period, StoreError)."""
    tz = ZoneInfo(config.province.timezone)
    period = parse_period(period_text, tz)
    if period.start > now:
        # Nothing of it can be known yet: an all-unknown report would read as a blank one.
        raise ValueError(f"period {period_text!r} has not begun yet")
    if department is not None and config.departments and department not in {
            d.code for d in config.departments}:
        raise ValueError(f"department {department!r}: not under departments: in the config")
    url = config.storage.url
    history, ledger, maintenance = HistoryStore(url), IncidentStore(url), MaintenanceStore(url)
    try:
        for store in (history, ledger, maintenance):
            await store.open()
        intervals = {c.name: config.interval_of(c) for c in config.collectors}
        histories = await history.histories(period.start, period.end, intervals=intervals,
                                            department=department)
        incidents = await ledger.all_between(period.start, period.end, department)
        windows = [Window(w.department, w.starts_at, w.ends_at)
                   for w in await maintenance.load(period.start)
                   if w.starts_at < period.end]
        windows += config.maintenance_spans(period.start, period.end)
        dossiers, feedback = _dossiers(await history.last_values(
            DOSSIER_METRICS, period.start, period.end))
        security = await history.events_by_severity(period.start, period.end)
        monthly = {label: _dossiers(values)[0] for label, values in (
            await history.last_values_by_month(DOSSIER_METRICS,
                                               months_before(period, tz))).items()}
    finally:
        for store in (history, ledger, maintenance):
            await store.close()
    return build_report(
        period=period, day_bounds=period.day_bounds(tz), now=now,
        province=config.province.name,
        departments={d.code: d.name for d in config.departments}, histories=histories,
        incidents=incidents, windows=windows, dossiers=dossiers, feedback=feedback,
        security=security, department=department, monthly_dossiers=monthly)
