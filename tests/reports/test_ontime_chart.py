"""The on-time rate by month: the portal's counters read month by month, raw or rolled up.

Hand-computed expectations (QĐ 766: resolved early + on time + in progress within deadline,
over everything handled), with two departments added before dividing. August's raw samples
are gone (as past the raw retention): its figures come from the 1 h rollup.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import delete

from ioc.model import Sample, make_labels
from ioc.reports.build import ontime_by_month
from ioc.reports.collect import collect, months_before
from ioc.reports.render import render
from ioc.store import SqlStore
from ioc.store.rollups import Rollups
from ioc.store.schema import samples
from service.config import Config, parse_config

VN = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = 86_400.0
NOW = datetime(2026, 12, 1, 1, tzinfo=VN).timestamp()
# month -> department -> (resolved_early, resolved_ontime, resolved_late, in_progress_ontime,
#                         in_progress_overdue), the last values stored in the month
COUNTS = {
    "2026-08": {"STP": (50, 30, 20, 0, 0)},                           # 80 / 100 = 80 %
    "2026-10": {"STP": (90, 0, 10, 0, 0), "SYT": (10, 10, 0, 20, 10)},  # 130 / 150
    "2026-11": {"STP": (100, 50, 25, 20, 5), "SYT": (0, 0, 0, 0, 0)},   # 170 / 200 = 85 %
}
STATUSES = ("resolved_early", "resolved_ontime", "resolved_late", "in_progress_ontime",
            "in_progress_overdue")


def config_for(url: str) -> Config:
    return parse_config({"departments": [{"code": "STP", "name": "Sở Tư pháp"},
                                         {"code": "SYT", "name": "Sở Y tế"}],
                         "storage": {"url": url}}, env={})


async def seed(url: str) -> None:
    store = SqlStore(url)
    await store.open()
    batch = []
    for month, by_dept in COUNTS.items():
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=VN).timestamp()
        for dept, values in by_dept.items():
            base = make_labels(target=f"portal-{dept.lower()}", department=dept)
            for status, value in zip(STATUSES, values, strict=True):
                labels = make_labels(base, status=status)
                # an earlier, smaller value in the month: the last one counts
                batch.append(Sample("ioc_dossiers", labels, value // 2, start + 5 * DAY))
                batch.append(Sample("ioc_dossiers", labels, value, start + 20 * DAY))
    await store.append(batch)
    await Rollups(store, raw_retention=30 * DAY, retention_5m=90 * DAY,
                  retention_1h=730 * DAY).run(NOW)
    august_end = datetime(2026, 9, 1, tzinfo=VN).timestamp()
    async with store._engine.begin() as conn:  # type: ignore[union-attr]
        await conn.execute(delete(samples).where(samples.c.ts < round(august_end * 1000)))
    await store.close()


@pytest.fixture
async def config(tmp_path: Path) -> Config:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"
    await seed(url)
    return config_for(url)


def test_twelve_months_ending_with_the_report_month() -> None:
    from ioc.availability import parse_period

    months = months_before(parse_period("2026-W01", VN), VN)
    assert next(m for m, _, _ in months) == "2025-02" and months[-1][0] == "2026-01"
    assert len(months) == 12


async def test_monthly_rates_match_the_hand_computed_ones(config: Config) -> None:
    report = await collect(config, "2026-11", now=NOW)
    rows = {m["month"]: m for m in report["ontime_by_month"]}
    assert next(iter(rows)) == "2025-12" and list(rows)[-1] == "2026-11" and len(rows) == 12
    assert rows["2026-08"]["ontime_rate"] == pytest.approx(0.80)  # from the 1 h rollup
    assert rows["2026-08"]["handled"] == 100
    assert rows["2026-09"]["ontime_rate"] is None
    assert rows["2026-10"]["ontime_rate"] == pytest.approx(130 / 150)
    assert rows["2026-11"]["ontime_rate"] == pytest.approx(0.85)
    assert rows["2026-11"]["resolved"] == 175
    one = await collect(config, "2026-11", now=NOW, department="SYT")
    syt = {m["month"]: m["ontime_rate"] for m in one["ontime_by_month"]}
    assert syt["2026-10"] == pytest.approx(40 / 50) and syt["2026-11"] is None
    assert syt["2026-08"] is None


async def test_the_chart_is_in_the_html_and_the_numbers_in_the_xlsx(config: Config) -> None:
    report = await collect(config, "2026-11", now=NOW)
    html = render(report, "html", lang="vi", tz=VN, departments={}).decode()
    assert "Tỷ lệ hồ sơ giải quyết đúng hạn theo tháng" in html
    assert "85,0%" in html and "86,7%" in html and "11/2026" in html
    book = load_workbook(io.BytesIO(render(report, "xlsx", lang="en", tz=VN, departments={})))
    sheet = book["On-time by month"]
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert rows[-1] == ("2026-11", 0, 175, 200, pytest.approx(0.85))  # received: not seeded
    assert rows[-4][4] == pytest.approx(0.80) and rows[-3][4] is None
    assert len(sheet._charts) == 1


def test_a_month_without_counters_has_no_rate() -> None:
    assert ontime_by_month({"2026-01": {}}, None) == [
        {"month": "2026-01", "received": None, "resolved": None, "handled": None,
         "ontime_rate": None}]
