"""``ioc report`` end to end on a real SQLite store: the same numbers in every format.

PDF text is read back with poppler's ``pdftotext`` and page 1 rendered by ``pdftoppm``;
XLSX is read back with openpyxl; CSV with the csv module.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from ioc.incidents import Window, reason_code
from ioc.model import Sample, make_labels
from ioc.reports.collect import collect
from ioc.reports.render import Formatter, render
from ioc.store import SqlStore
from ioc.store.incidents import IncidentStore
from service.cli import main
from service.config import Config, parse_config

VN = ZoneInfo("Asia/Ho_Chi_Minh")
DAY0 = datetime(2026, 11, 10, tzinfo=VN).timestamp()   # 10 November, 00:00 in Hà Nội
NOW = datetime(2026, 12, 1, 1, tzinfo=VN).timestamp()
EVIL = "<b>yte</b>"


def config_for(url: str, **extra: Any) -> Config:
    return parse_config({**extra,
        "departments": [{"code": "STP", "name": "Sở Tư pháp"},
                        {"code": "SYT", "name": "Sở Y tế"}],
        "storage": {"url": url},
        "collectors": [
            {"type": "http", "name": "cong-stp", "department": "STP", "url": "http://x/",
             "interval": "60s"}]}, env={})  # EVIL's polls stay stored after its removal


@pytest.fixture
async def config(tmp_path: Path) -> Config:
    return await seed(tmp_path)


async def seed(tmp_path: Path, windows: Sequence[Window] = ()) -> Config:
    """A day of polls on 10 November: cong-stp down 10:00–10:10 (timeouts), the other up."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"
    store = SqlStore(url)
    await store.open()
    samples = []
    for target, dept in (("cong-stp", "STP"), (EVIL, "SYT")):
        labels = make_labels(target=target, department=dept, kind="http")
        for i in range(1440):
            ts = DAY0 + i * 60.0
            up = not (target == "cong-stp" and 600 <= i < 610)
            samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts))
            if not up:
                samples.append(Sample("ioc_target_failure_reason", labels,
                                      reason_code("timeout"), ts))
    stp = make_labels(target="portal-stp", department="STP")
    for status, n in (("resolved_early", 90), ("resolved_ontime", 5), ("resolved_late", 5),
                      ("in_progress_ontime", 10), ("in_progress_overdue", 0)):
        samples.append(Sample("ioc_dossiers", make_labels(stp, status=status), n, DAY0))
    samples.append(Sample("ioc_dossiers_received", make_labels(stp, channel="online"), 110,
                          DAY0))
    await store.append(samples)
    await store.close()
    ledger = IncidentStore(url)
    await ledger.open()
    await ledger.sync(NOW, windows)
    await ledger.close()
    return config_for(url)


async def test_the_report_counts_what_the_polls_say(config: Config) -> None:
    report = await collect(config, "2026-11", now=NOW)
    s = report["summary"]
    assert s["systems"] == 2 and s["incidents"] == 1
    assert s["downtime_seconds"] == 600 and s["mttr_seconds"] == 600
    assert s["longest"] == {"target": "cong-stp", "department": "STP", "seconds": 600}
    # each target: polls 00:00-23:59, the last one holding 120 s (to 00:01 on the 11th);
    # from there to the end of the month nobody looked: unknown, not up
    covered = 86_400 + 60
    assert s["down_seconds"] == 600
    assert s["up_seconds"] == 2 * covered - 600
    assert s["not_monitored_seconds"] == 2 * 9 * 86_400
    assert s["unknown_seconds"] == 2 * (21 * 86_400 - covered)
    stp = next(d for d in report["departments"] if d["code"] == "STP")
    assert stp["name"] == "Sở Tư pháp" and stp["incidents"] == 1
    assert stp["availability"] == pytest.approx(1 - 600 / covered)
    assert stp["dossiers"] == {"received": 110, "resolved": 100,
                               "ontime_rate": pytest.approx(105 / 110)}
    assert [d["availability"] for d in report["daily"][8:11]] == [
        None, pytest.approx(1 - 600 / (2 * 86_400)), 1.0]  # the province: both targets
    assert report["incidents"][0]["causes"] == {"timeout": 10}
    assert report["top_downtime"][0]["target"] == "cong-stp"


async def test_one_department(config: Config) -> None:
    report = await collect(config, "2026-W46", now=NOW, department="SYT")
    assert [d["code"] for d in report["departments"]] == ["SYT"]
    assert report["summary"]["incidents"] == 0 and report["summary"]["systems"] == 1
    with pytest.raises(ValueError, match="department"):
        await collect(config, "2026-11", now=NOW, department="NOPE")
    with pytest.raises(ValueError, match="period"):
        await collect(config, "2026-13", now=NOW)


def _pct(report: dict[str, Any], lang: str) -> str:
    return Formatter(lang, VN).pct(report["summary"]["availability"])


async def test_html_escapes_config_text(config: Config) -> None:
    report = await collect(config, "2026-11", now=NOW)
    report["incidents"][0]["target"] = EVIL  # as an older config may have named one
    html = render(report, "html", lang="vi", tz=VN, departments={}).decode()
    assert EVIL not in html and "&lt;b&gt;yte&lt;/b&gt;" in html
    assert _pct(report, "vi") in html and "Tỷ lệ sẵn sàng" in html
    english = render(report, "html", lang="en", tz=VN, departments={}).decode()
    assert "Availability" in english and _pct(report, "en") in english


def read_pdf(pdf: Path, pages: Path) -> tuple[str, bytes]:
    """The PDF's text as poppler reads it, and page 1 rendered to PNG."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", "-singlefile",
                    str(pdf), str(pages)], check=True)
    return text, pages.with_suffix(".png").read_bytes()


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils")
async def test_pdf_has_the_diacritics_and_the_numbers(config: Config, tmp_path: Path) -> None:
    report = await collect(config, "2026-11", now=NOW)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render(report, "pdf", lang="vi", tz=VN,
                           departments={"STP": "Sở Tư pháp", "SYT": "Sở Y tế"}))
    text, png = await asyncio.to_thread(read_pdf, pdf, tmp_path / "page1")
    for expected in ("Sở Tư pháp", "Sở Y tế", "Báo cáo vận hành hệ thống", _pct(report, "vi"),
                     "0:10:00", "quá thời gian × 10", "95,455 %"):
        assert expected in text, expected
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


async def test_xlsx_holds_numbers_equal_to_the_data(config: Config) -> None:
    report = await collect(config, "2026-11", now=NOW)
    book = load_workbook(io.BytesIO(render(report, "xlsx", lang="vi", tz=VN, departments={})))
    summary = {row[0]: row[1] for row in book["Tổng hợp"].iter_rows(values_only=True)}
    assert summary["Tỷ lệ sẵn sàng"] == pytest.approx(report["summary"]["availability"])
    assert summary["Số sự cố"] == 1
    # a duration is an Excel time (days), which openpyxl reads back as a timedelta
    assert summary["Tổng thời gian gián đoạn"] == timedelta(seconds=600)
    sheet = book["Theo đơn vị"]
    header = [c.value for c in sheet[1]]
    stp = next(r for r in sheet.iter_rows(min_row=2, values_only=True) if r[0] == "Sở Tư pháp")
    assert stp[header.index("Tỷ lệ sẵn sàng")] == pytest.approx(
        report["departments"][0]["availability"])
    cell = sheet.cell(2, header.index("Tỷ lệ sẵn sàng") + 1)
    assert isinstance(cell.value, float) and cell.number_format == "0.000%"


async def test_csv_one_row_per_system(config: Config) -> None:
    report = await collect(config, "2026-11", now=NOW)
    rows = list(csv.DictReader(io.StringIO(
        render(report, "csv", lang="en", tz=VN, departments={}).decode("utf-8-sig"))))
    assert [r["System"] for r in rows] == ["cong-stp", EVIL]
    assert float(rows[0]["Availability"]) == pytest.approx(1 - 600 / 86_460, abs=1e-6)
    assert rows[0]["Down (s)"] == "600"


def test_the_command_writes_the_file(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "departments:\n  - {code: STP, name: Sở Tư pháp}\n  - {code: SYT, name: Sở Y tế}\n"
        f"storage: {{url: '{config.storage.url}'}}\n", encoding="utf-8")
    out = tmp_path / "r.csv"
    assert main(["report", "-c", str(path), "--period", "2026-11", "--format", "csv",
                 "--lang", "en", "-o", str(out)]) == 0
    assert "cong-stp" in out.read_text(encoding="utf-8-sig")
    assert main(["report", "-c", str(path), "--period", "2026-99"]) == 1
    assert main(["report", "-c", str(path)]) == 1
    assert main(["report", "-c", str(tmp_path / "missing.yaml"), "--period", "2026-11"]) == 2
    assert main(["report", "-c", str(path), "--week", "2026-W48", "--format", "csv",
                 "-o", str(out)]) == 0
    for wrong in (["--week", "2026-11"], ["--week", "2026-W48", "--period", "2026-11"],
                  ["--period", "2099-01"]):
        assert main(["report", "-c", str(path), *wrong]) == 1, wrong


def test_the_command_says_what_was_wrong(config: Config, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"storage: {{url: '{config.storage.url}'}}\n", encoding="utf-8")
    assert main(["report", "-c", str(path), "--week", "2026-11"]) == 1
    assert "--week '2026-11': expected an ISO week (2026-W48)" in capsys.readouterr().err
    assert main(["report", "-c", str(path), "--period", "2099-01"]) == 1
    assert "period '2099-01' has not begun yet" in capsys.readouterr().err


async def test_pages_list_the_longest_incidents_and_say_how_many_more(config: Config) -> None:
    from ioc.reports import render as rendering

    report = await collect(config, "2026-11", now=NOW)
    base = report["incidents"][0]
    report["incidents"] = [{**base, "target": f"sys{i:04d}", "duration_seconds": float(i),
                            "started_at": base["started_at"] + i}
                           for i in range(rendering.PAGE_INCIDENTS + 5)]
    html = render(report, "html", lang="en", tz=VN, departments={}).decode()
    assert "5 shorter ones are in the XLSX" in html
    assert "sys0004" not in html and "sys0005" in html and "sys0204" in html
    book = load_workbook(io.BytesIO(render(report, "xlsx", lang="en", tz=VN, departments={})))
    assert book["Incidents"].max_row == rendering.PAGE_INCIDENTS + 5 + 1  # all, and a header



MAINTENANCE = {"maintenance": [{"department": "STP", "comment": "nâng cấp máy chủ",
                                "weekly": [{"days": ["tue"], "start": "09:55",
                                            "end": "10:30"}]}]}


async def test_the_config_maintenance_schedule_marks_the_outage_planned(tmp_path: Path) -> None:
    """A weekly slot in alerts.maintenance (Tuesdays 09:55-10:30; 10 November is one) covers
    cong-stp's outage: the ledger, synced with the windows the service gives it, marks the
    incident planned, and the report leaves it out of incidents and downtime."""
    scheduled = config_for(f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}", alerts=MAINTENANCE)
    spans = scheduled.maintenance_spans(DAY0 - 86_400, NOW)
    first = spans[0]
    assert (first.department, first.ends_at - first.starts_at) == ("STP", 2100.0)
    assert datetime.fromtimestamp(first.starts_at, VN) == datetime(2026, 11, 10, 9, 55,
                                                                   tzinfo=VN)
    assert len(spans) == 3  # 10, 17 and 24 November (1 December's opens after NOW)
    await seed(tmp_path, windows=spans)
    report = await collect(scheduled, "2026-11", now=NOW)
    s = report["summary"]
    assert (s["incidents"], s["planned_incidents"], s["downtime_seconds"]) == (0, 1, 0)
    # planned whatever the polls said (docs/reports.md): the three Tuesdays' slots of STP's
    # one system, the two after its polls stopped included
    assert s["down_seconds"] == 0 and s["planned_seconds"] == 3 * 2100
    stp = next(d for d in report["departments"] if d["code"] == "STP")
    assert stp["availability"] == 1.0
