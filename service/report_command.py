"""``ioc report``: a period's report from the store, written in one format.

The data is :func:`ioc.reports.collect.collect`'s, the same the API's download
(``GET /api/v1/reports``) serves; this module is the command line around it. With
``--send SCHEDULE`` it queues a scheduled report's run instead, for the running service to
send (:func:`service.report_schedule.send_by_hand`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioc import clock
from ioc.availability import is_week
from ioc.reports.collect import collect
from ioc.reports.render import FORMATS, render
from ioc.store.base import StoreError
from service.config import Config, ConfigError, load_config
from service.report_schedule import send_by_hand

EXIT_OK, EXIT_FAILED, EXIT_BAD_CONFIG = 0, 1, 2


def add_parser(sub: Any) -> None:
    """``ioc report`` on the CLI's subparsers (one call from service/cli.py)."""
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
    report.add_argument("--send", metavar="SCHEDULE",
                        help="queue the period's report of a reports.schedules entry for its "
                             "receivers (once per schedule and period, like the schedule)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ioc report: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    period = args.week or args.period
    problem = None
    if not period:
        problem = "give --period (2026-11, 2026-W48, 2026-11-30) or --week"
    elif args.week and args.period:
        problem = "give --period or --week, not both"
    elif args.week and not is_week(args.week):
        problem = f"--week {args.week!r}: expected an ISO week (2026-W48)"
    if problem:
        print(f"ioc report: {problem}", file=sys.stderr)
        return EXIT_FAILED
    if args.send:
        return _send(config, args.send, period)
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


def _send(config: Config, name: str, period: str) -> int:
    try:
        queued, run = asyncio.run(send_by_hand(config, name, period, now=clock.now()))
    except (ValueError, StoreError) as exc:
        print(f"ioc report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if queued:
        print(f"ioc report: {name} {period} queued for its receivers "
              f"({run.notifications if run else 0} messages); the running ioc sends them")
    else:
        how = f" ({run.trigger}, {datetime.fromtimestamp(run.queued_at, UTC):%Y-%m-%d %H:%M} UTC)" \
            if run else ""
        print(f"ioc report: {name} {period} was queued before{how}; not sent again")
    return EXIT_OK
