"""``ioc report``: read a period from the store, build the report, write one format.

The same :func:`collect` serves the API's download (``GET /api/v1/reports``), so the
command line and the API give the same file for the same period and ``now``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioc import clock
from ioc.availability import parse_period
from ioc.config import Config, ConfigError, load_config
from ioc.domain import DossierCounts, FeedbackCounts
from ioc.incidents import Window
from ioc.reports.build import build_report
from ioc.reports.render import FORMATS, render
from ioc.store.availability import HistoryStore
from ioc.store.base import StoreError
from ioc.store.incidents import IncidentStore
from ioc.store.maintenance_store import MaintenanceStore

EXIT_OK, EXIT_FAILED, EXIT_BAD_CONFIG = 0, 1, 2
DOSSIER_METRICS = ("ioc_dossiers", "ioc_dossiers_received", "ioc_feedback_reports")
_DOSSIER_FIELDS = set(DossierCounts.__dataclass_fields__)
_FEEDBACK_FIELDS = set(FeedbackCounts.__dataclass_fields__)


def add_parser(sub: Any) -> None:
    """``ioc report`` on the CLI's subparsers (one call from ioc/cli.py)."""
    report = sub.add_parser(
        "report", help="availability and incident report of a month, week or day "
                       "(Vietnamese; --lang en)")
    report.add_argument("-c", "--config", default="config.yaml", help="config file (config.yaml)")
    report.add_argument("--period",
                        help="2026-11 (month), 2026-W48 (ISO week) or 2026-11-30 (day)")
    report.add_argument("--week", help="an ISO week (2026-W48) instead of --period's month")
    report.add_argument("--department", help="one department's code (e.g. STP)")
    report.add_argument("--format", choices=FORMATS, default="html")
    report.add_argument("--lang", choices=("vi", "en"), default="vi")
    report.add_argument("-o", "--output", help="file to write (default: standard output)")


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


async def collect(config: Config, period_text: str, *, now: float,
                  department: str | None = None) -> dict[str, Any]:
    """The report of a period as data (raises ValueError on a bad period, StoreError)."""
    tz = ZoneInfo(config.province.timezone)
    period = parse_period(period_text, tz)
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
        dossiers, feedback = _dossiers(await history.last_values(
            DOSSIER_METRICS, period.start, period.end))
        security = await history.events_by_severity(period.start, period.end)
    finally:
        for store in (history, ledger, maintenance):
            await store.close()
    return build_report(
        period=period, day_bounds=period.day_bounds(tz), now=now,
        province=config.province.name,
        departments={d.code: d.name for d in config.departments}, histories=histories,
        incidents=incidents, windows=windows, dossiers=dossiers, feedback=feedback,
        security=security, department=department)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ioc report: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    period = args.week or args.period
    if not period:
        print("ioc report: give --period (2026-11, 2026-W48, 2026-11-30) or --week",
              file=sys.stderr)
        return EXIT_FAILED
    try:
        report = asyncio.run(collect(config, period, now=clock.now(),
                                     department=args.department))
        body = render(report, args.format, lang=args.lang,
                      tz=ZoneInfo(config.province.timezone),
                      departments={d.code: d.name for d in config.departments})
    except (ValueError, StoreError) as exc:
        print(f"ioc report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.output:
        Path(args.output).write_bytes(body)
    else:
        sys.stdout.buffer.write(body)
    return EXIT_OK
