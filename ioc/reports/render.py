"""The report's formats, all drawn from one :func:`ioc.reports.build.build_report` dict.

* HTML: a Jinja2 template with autoescape on (target names and department names are
  config text, never trusted as markup);
* PDF: the same HTML through WeasyPrint, with the Be Vietnam Pro fonts the wall ships
  (``web/static/fonts``) embedded so diacritics print the same everywhere;
* XLSX: openpyxl, numbers as numbers (ratios formatted as percentages, durations as
  Excel time), one sheet per table;
* CSV: one row per system, the table people import elsewhere.

Vietnamese first; ``lang="en"`` for English.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape

FORMATS = ("html", "pdf", "xlsx", "csv")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
# The incident list a page shows: the longest ones, in time order. A month of a large province
# has thousands of short incidents; a document for readers lists what mattered, and says how
# many more the XLSX, CSV and API hold (they hold them all).
PAGE_INCIDENTS = 200
FONTS_DIR = Path(__file__).resolve().parents[2] / "web" / "static" / "fonts"
# The wall's two subsets of Be Vietnam Pro, each as a family of its own ("Latin" first, so
# the Vietnamese letters fall through to the other): WeasyPrint merges faces of one family
# into one embedded font, which garbles the glyphs of the second subset.
FONT_SUBSETS = ("latin", "vietnamese")

TEXT: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Báo cáo vận hành hệ thống thông tin", "period": "Kỳ báo cáo",
        "department": "Đơn vị", "generated": "Lập lúc", "summary": "Tổng hợp",
        "systems": "Số hệ thống giám sát", "availability": "Tỷ lệ sẵn sàng",
        "incidents": "Số sự cố", "downtime": "Tổng thời gian gián đoạn",
        "mttr": "Thời gian khắc phục trung bình", "longest": "Sự cố dài nhất",
        "unknown": "Không có số liệu", "planned": "Bảo trì theo kế hoạch",
        "daily": "Tỷ lệ sẵn sàng theo ngày",
        "daily_note": "Mỗi cột là một ngày, thang 90–100 %; cột xám: không có số liệu.",
        "monthly": "Tỷ lệ hồ sơ giải quyết đúng hạn theo tháng (QĐ 766)",
        "monthly_sheet": "Đúng hạn theo tháng", "month": "Tháng",
        "monthly_note": "12 tháng gần nhất của cả tỉnh (hoặc của đơn vị), thang 0–100 %; "
                        "cột xám: không có số liệu.",
        "dossiers_handled": "Hồ sơ đã và đang xử lý",
        "departments": "Theo đơn vị", "dossiers_received": "Hồ sơ tiếp nhận",
        "dossiers_resolved": "Hồ sơ đã giải quyết",
        "dossiers_ontime": "Tỷ lệ đúng hạn (QĐ 766)",
        "feedback_ontime": "Phản ánh xử lý đúng hạn", "security": "Sự kiện an ninh",
        "top": "Hệ thống gián đoạn nhiều nhất", "system": "Hệ thống",
        "incident_list": "Danh sách sự cố", "start": "Bắt đầu", "end": "Kết thúc",
        "duration": "Thời lượng", "causes": "Nguyên nhân", "ongoing": "đang diễn ra",
        "planned_one": "bảo trì", "none": "Không có.",
        "more": "Các sự cố dài nhất; {n} sự cố ngắn hơn có trong bản XLSX, CSV và API.",
        "target": "Hệ thống",
        "up": "Hoạt động (giây)", "down": "Gián đoạn (giây)",
        "not_monitored": "Chưa giám sát (giây)",
    },
    "en": {
        "title": "Information systems operations report", "period": "Period",
        "department": "Department", "generated": "Generated", "summary": "Summary",
        "systems": "Systems monitored", "availability": "Availability",
        "incidents": "Incidents", "downtime": "Total downtime",
        "mttr": "Mean time to recovery", "longest": "Longest outage",
        "unknown": "No data", "planned": "Planned maintenance",
        "daily": "Availability by day",
        "daily_note": "One bar per day, scale 90–100 %; grey: no data.",
        "monthly": "Dossier on-time rate by month (QĐ 766)",
        "monthly_sheet": "On-time by month", "month": "Month",
        "monthly_note": "The last 12 months of the province (or the department), scale "
                        "0–100 %; grey: no data.",
        "dossiers_handled": "Dossiers handled",
        "departments": "By department", "dossiers_received": "Dossiers received",
        "dossiers_resolved": "Dossiers resolved",
        "dossiers_ontime": "On-time rate (QĐ 766)",
        "feedback_ontime": "Feedback handled on time", "security": "Security events",
        "top": "Systems with the most downtime", "system": "System",
        "incident_list": "Incidents", "start": "Start", "end": "End",
        "duration": "Duration", "causes": "Causes", "ongoing": "ongoing",
        "planned_one": "planned", "none": "None.",
        "more": "The longest incidents; {n} shorter ones are in the XLSX, CSV and API.",
        "target": "System",
        "up": "Up (s)", "down": "Down (s)", "not_monitored": "Not monitored (s)",
    },
}

CAUSES = {
    "vi": {"timeout": "quá thời gian", "dns": "lỗi phân giải tên miền",
           "connect_refused": "từ chối kết nối", "connect_timeout": "không kết nối được",
           "tls": "lỗi chứng chỉ/TLS", "http_status": "mã trạng thái HTTP sai",
           "content": "nội dung sai", "too_large": "phản hồi quá lớn",
           "protocol_error": "lỗi giao thức", "redirect_loop": "chuyển hướng vòng",
           "invalid_response": "phản hồi không hợp lệ", "bad_payload": "số liệu không hợp lệ",
           "error": "lỗi khác"},
}


class Formatter:
    """Numbers, durations and times as a reader of ``lang`` writes them."""

    def __init__(self, lang: str, tz: ZoneInfo) -> None:
        self.lang = lang
        self.tz = tz
        self.decimal = "," if lang == "vi" else "."

    def pct(self, ratio: float | None) -> str:
        if ratio is None:
            return "—"
        return f"{ratio * 100:.3f}".replace(".", self.decimal) + " %"

    def num(self, value: float | None) -> str:
        if value is None:
            return "—"
        text = f"{int(value):,}"
        return text.replace(",", ".") if self.lang == "vi" else text

    def pct1(self, ratio: float | None) -> str:
        """A ratio to one decimal, for a chart's labels."""
        if ratio is None:
            return "—"
        return f"{ratio * 100:.1f}".replace(".", self.decimal) + "%"

    @staticmethod
    def dur(seconds: float | None) -> str:
        if seconds is None:
            return "—"
        whole = round(seconds)
        hours, rest = divmod(whole, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"

    def when(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return datetime.fromtimestamp(ts, self.tz).strftime("%d/%m/%Y %H:%M:%S")

    def day(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).strftime("%d/%m/%Y")

    def cause(self, reason: str) -> str:
        return CAUSES.get(self.lang, {}).get(reason, reason)


def _env() -> Environment:
    return Environment(loader=PackageLoader("ioc.reports", "templates"),
                       autoescape=select_autoescape(["html"], default=True))


def render_html(report: dict[str, Any], *, lang: str, tz: ZoneInfo,
                departments: dict[str, str], fonts: bool = False) -> str:
    fmt = Formatter(lang, tz)
    font_files = []
    if fonts:
        font_files = [(w, (FONTS_DIR / f"be-vietnam-pro-{script}-{w}-normal.woff2").as_uri(),
                       f"Report {script}") for w in (400, 700) for script in FONT_SUBSETS]

    def bar(ratio: float | None) -> str:
        """Bar height in %: the chart spans 90-100 %, where a province's days differ."""
        if ratio is None:
            return "4"  # a grey stub: the day is there, nobody looked
        return f"{min(100.0, max(2.0, (ratio - 0.9) * 1000)):.1f}"

    def month_bar(ratio: float | None) -> str:
        """Bar height in pt of the on-time chart (0-100 % over 60 pt; a stub when unknown)."""
        return "2" if ratio is None else f"{max(1.0, ratio * 60):.1f}"

    everything = report["incidents"]
    shown = sorted(everything, key=lambda i: -i["duration_seconds"])[:PAGE_INCIDENTS]
    shown.sort(key=lambda i: i["started_at"])
    return _env().get_template("report.html").render(
        r=report, shown=shown, hidden=len(everything) - len(shown), t=TEXT[lang], lang=lang,
        fonts=font_files, pct=fmt.pct, pct1=fmt.pct1, num=fmt.num, month_bar=month_bar,
        dur=fmt.dur, when=fmt.when, day=fmt.day, cause=fmt.cause, bar=bar,
        dept_name=lambda code: departments.get(code, code))


def render_pdf(report: dict[str, Any], *, lang: str, tz: ZoneInfo,
               departments: dict[str, str]) -> bytes:
    from weasyprint import HTML  # imported here: it loads pango, only reports need it

    html = render_html(report, lang=lang, tz=tz, departments=departments, fonts=True)
    return bytes(HTML(string=html, base_url=str(FONTS_DIR)).write_pdf())


def render_csv(report: dict[str, Any], *, lang: str) -> str:
    t = TEXT[lang]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([t["target"], t["department"], t["availability"], t["up"], t["down"],
                     t["unknown"], t["planned"], t["not_monitored"], t["incidents"],
                     t["downtime"]])
    for row in report["targets"]:
        writer.writerow([row["target"], row["department"],
                         "" if row["availability"] is None else f"{row['availability']:.6f}",
                         f"{row['up_seconds']:.0f}", f"{row['down_seconds']:.0f}",
                         f"{row['unknown_seconds']:.0f}", f"{row['planned_seconds']:.0f}",
                         f"{row['not_monitored_seconds']:.0f}", row["incidents"],
                         f"{row['downtime_seconds']:.0f}"])
    return out.getvalue()


def render_xlsx(report: dict[str, Any], *, lang: str, tz: ZoneInfo) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    t = TEXT[lang]
    pct, dur = "0.000%", "[h]:mm:ss"
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = t["summary"][:31]
    s = report["summary"]
    rows: list[tuple[str, Any, str | None]] = [
        (t["period"], report["period"], None),
        (t["systems"], s["systems"], "0"),
        (t["availability"], s["availability"], pct),
        (t["incidents"], s["incidents"], "0"),
        (t["downtime"], s["downtime_seconds"] / 86_400, dur),
        (t["mttr"], None if s["mttr_seconds"] is None else s["mttr_seconds"] / 86_400, dur),
        (t["longest"], None if s["longest"] is None else s["longest"]["seconds"] / 86_400,
         dur),
        (t["unknown"], s["unknown_seconds"] / 86_400, dur),
        (t["planned"], s["planned_seconds"] / 86_400, dur),
    ]
    for label, value, number_format in rows:
        sheet.append([label, value])
        if number_format:
            sheet.cell(sheet.max_row, 2).number_format = number_format

    def table(title: str, header: list[str], body: list[list[Any]],
              formats: list[str | None]) -> None:
        ws = book.create_sheet(title[:31])
        ws.append(header)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        # Row numbers counted here: ``ws.max_row`` walks every cell, once per row it was
        # asked for a table of thousands of incidents took seconds.
        for row, values in enumerate(body, start=2):
            ws.append(values)
            for col, number_format in enumerate(formats, start=1):
                if number_format:
                    ws.cell(row, col).number_format = number_format

    def days(seconds: float | None) -> float | None:
        return None if seconds is None else seconds / 86_400

    def rate(block: dict[str, Any] | None, key: str) -> Any:
        return None if block is None else block[key]

    table(t["departments"],
          [t["department"], t["systems"], t["availability"], t["incidents"], t["downtime"],
           t["unknown"], t["dossiers_received"], t["dossiers_resolved"], t["dossiers_ontime"],
           t["feedback_ontime"]],
          [[d["name"], d["systems"], d["availability"], d["incidents"],
            days(d["downtime_seconds"]), days(d["unknown_seconds"]),
            rate(d["dossiers"], "received"), rate(d["dossiers"], "resolved"),
            rate(d["dossiers"], "ontime_rate"), rate(d["feedback"], "ontime_rate")]
           for d in report["departments"]],
          [None, "0", pct, "0", dur, dur, "#,##0", "#,##0", pct, pct])
    table(t["target"], [t["target"], t["department"], t["availability"], t["incidents"],
                        t["downtime"], t["unknown"]],
          [[r["target"], r["department"], r["availability"], r["incidents"],
            days(r["downtime_seconds"]), days(r["unknown_seconds"])]
           for r in report["targets"]],
          [None, None, pct, "0", dur, dur])
    fmt = Formatter(lang, tz)
    table(t["incident_list"], [t["system"], t["department"], t["start"], t["end"],
                               t["duration"], t["causes"]],
          [[i["target"], i["department_name"], _local(i["started_at"], tz),
            None if i["ended_at"] is None else _local(i["ended_at"], tz),
            days(i["duration_seconds"]),
            ", ".join(f"{fmt.cause(c)} × {n}" for c, n in i["causes"].items())]
           for i in report["incidents"]],
          [None, None, "dd/mm/yyyy hh:mm:ss", "dd/mm/yyyy hh:mm:ss", dur, None])
    table(t["daily"], [t["period"], t["availability"]],
          [[d["day"], d["availability"]] for d in report["daily"]], [None, pct])
    monthly = report.get("ontime_by_month", [])
    table(t["monthly_sheet"], [t["month"], t["dossiers_received"], t["dossiers_resolved"],
                               t["dossiers_handled"], t["dossiers_ontime"]],
          [[m["month"], m["received"], m["resolved"], m["handled"], m["ontime_rate"]]
           for m in monthly], [None, "#,##0", "#,##0", "#,##0", pct])
    if monthly:
        _monthly_chart(book[t["monthly_sheet"]], len(monthly), t["monthly"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _monthly_chart(sheet: Any, months: int, title: str) -> None:
    """A column chart of the on-time rate (column E) by month (column A), beside the table."""
    from openpyxl.chart import BarChart, Reference

    chart = BarChart()
    chart.title = title
    chart.legend = None
    chart.y_axis.scaling.min = 0
    chart.y_axis.scaling.max = 1
    chart.y_axis.numFmt = "0%"
    chart.add_data(Reference(sheet, min_col=5, min_row=1, max_row=months + 1),
                   titles_from_data=True)
    chart.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=months + 1))
    chart.width, chart.height = 18, 8
    sheet.add_chart(chart, "G2")


def _local(ts: float, tz: ZoneInfo) -> datetime:
    """A naive local time: Excel has no time zones, the report's are the province's."""
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def render(report: dict[str, Any], fmt: str, *, lang: str, tz: ZoneInfo,
           departments: dict[str, str]) -> bytes:
    if fmt == "html":
        return render_html(report, lang=lang, tz=tz, departments=departments).encode()
    if fmt == "pdf":
        return render_pdf(report, lang=lang, tz=tz, departments=departments)
    if fmt == "xlsx":
        return render_xlsx(report, lang=lang, tz=tz)
    if fmt == "csv":
        return render_csv(report, lang=lang).encode("utf-8-sig")
    raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
