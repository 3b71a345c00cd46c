"""The readable view of a :class:`ioc.trace.Trace`, in Vietnamese (the default) or English.

One renderer for every collector type: a section appears when the trace has something for
it (phases for probes, the payload and mapped fields for statistics, events for a SIEM).
The wording is a small table here rather than gettext catalogues: the command has a few dozen
phrases, and ``web/locales`` serves the browser pages, not the terminal. Messages that come
from a collector (an error, a check's detail) stay as the collector wrote them, as they do in
the log and on the status API, so they can be searched for.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from typing import Any

from ioc.trace import Trace

LANGS = ("vi", "en")

_TEXT: dict[str, dict[str, str]] = {
    "target": {"vi": "Mục tiêu", "en": "Target"},
    "result": {"vi": "Kết quả", "en": "Result"},
    "up": {"vi": "HOẠT ĐỘNG", "en": "UP"},
    "down": {"vi": "KHÔNG HOẠT ĐỘNG", "en": "DOWN"},
    "degraded": {"vi": "HOẠT ĐỘNG, CHẬM", "en": "UP, DEGRADED"},
    "reason": {"vi": "lý do", "en": "reason"},
    "took": {"vi": "mất", "en": "took"},
    "phases": {"vi": "Các giai đoạn", "en": "Phases"},
    "dns": {"vi": "phân giải tên miền", "en": "name lookup"},
    "connect": {"vi": "kết nối TCP", "en": "TCP connect"},
    "tls": {"vi": "bắt tay TLS", "en": "TLS handshake"},
    "processing": {"vi": "chờ máy chủ trả lời", "en": "server processing"},
    "transfer": {"vi": "nhận nội dung", "en": "transfer"},
    "http": {"vi": "Trao đổi HTTP", "en": "HTTP exchanges"},
    "cert": {"vi": "Chứng chỉ TLS", "en": "TLS certificates"},
    "issuer": {"vi": "cấp bởi", "en": "issued by"},
    "expires": {"vi": "hết hạn", "en": "expires"},
    "days_left": {"vi": "còn {days} ngày", "en": "{days} days left"},
    "checks": {"vi": "Kiểm tra", "en": "Checks"},
    "pass": {"vi": "đạt", "en": "pass"},
    "fail": {"vi": "KHÔNG ĐẠT", "en": "FAIL"},
    "payload": {"vi": "Dữ liệu nhận được ({n} byte, trích đoạn)",
                "en": "Payload ({n} bytes, excerpt)"},
    "fields": {"vi": "Các trường ánh xạ (JMESPath → giá trị tìm thấy → giá trị dùng)",
               "en": "Mapped fields (JMESPath → value found → value taken)"},
    "none_taken": {"vi": "không dùng", "en": "not taken"},
    "samples": {"vi": "Số liệu sẽ công bố", "en": "Samples that would be published"},
    "events": {"vi": "Sự kiện sẽ ghi nhận", "en": "Events that would be stored"},
    "notes": {"vi": "Lưu ý", "en": "Notes"},
    "none": {"vi": "(không có)", "en": "(none)"},
    "more": {"vi": "… và {n} mục nữa không hiển thị", "en": "… and {n} more not shown"},
}

# Notes the collectors write (in English, as in the log), in Vietnamese.
_NOTES_VI: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement) for pattern, replacement in (
        (r"^text read as a number$", "chuỗi đọc thành số"),
        (r"^null: unknown, not published$", "null: chưa biết, không công bố"),
        (r"^null: derived from its total if mapped$",
         "null: suy ra từ tổng (tổng trừ các phần còn lại) nếu tổng được ánh xạ"),
        (r"^null: not published$", "null: không công bố"),
        (r"^(\d+) item\(s\) without a usable id, time or severity were skipped$",
         r"bỏ qua \1 mục không có id, thời điểm hoặc mức độ dùng được"),
        (r"not a department of the config \(unknown unit\)",
         "không có trong departments (đơn vị lạ)"),
        (r"^unknown unit (.+): not a department of the config; published under its own code "
         r"and counted in the province's totals \(unknown_units\)$",
         r"đơn vị lạ \1: không có trong departments; vẫn công bố theo mã của nó và vẫn tính "
         r"vào số liệu toàn tỉnh (unknown_units: include)"),
        (r"^unknown unit (.+): not a department of the config; published under its own code "
         r"and left out of the province's totals \(unknown_units\)$",
         r"đơn vị lạ \1: không có trong departments; vẫn công bố theo mã của nó nhưng không "
         r"tính vào số liệu toàn tỉnh (unknown_units: exclude)"),
    ))


def _t(key: str, lang: str, **values: Any) -> str:
    return _TEXT[key][lang].format(**values)


def _note(text: str, lang: str) -> str:
    if lang != "vi":
        return text
    for pattern, vietnamese in _NOTES_VI:
        text = pattern.sub(vietnamese, text)
    return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def render(trace: Trace, lang: str = "vi") -> str:
    """The trace as text for a terminal; secrets masked like the JSON form."""
    if lang not in LANGS:
        raise ValueError(f"language must be one of {', '.join(LANGS)}, got {lang!r}")
    out: list[str] = []
    heading = f"{_t('target', lang)} {trace.target} ({trace.kind})"
    out.append(heading + (f" — {trace.url}" if trace.url else ""))
    verdict = _t("degraded" if trace.up and trace.degraded else "up" if trace.up else "down",
                 lang)
    took = f" · {_t('took', lang)} {_seconds(trace.duration)}" \
        if trace.duration is not None else ""
    out.append(f"{_t('result', lang)}: {verdict}{took}")
    if trace.reason or trace.error:
        why = f"{_t('reason', lang)} {trace.reason}: " if trace.reason else ""
        out.append(f"  {why}{trace.error or ''}")
    if trace.phases:
        out.append("")
        out.append(_t("phases", lang))
        width = max(len(_t(p, lang)) for p, _ in trace.phases)
        for phase, seconds in trace.phases:
            out.append(f"  {_t(phase, lang).ljust(width)}  {_seconds(seconds)}")
    if trace.exchanges:
        out.append("")
        out.append(_t("http", lang))
        for exchange in trace.exchanges:
            out.append(f"  {exchange.method} {exchange.url} → {exchange.status}")
            out.extend(f"      > {name}: {value}" for name, value in exchange.request_headers)
            out.extend(f"      < {name}: {value}" for name, value in exchange.headers)
        if trace.exchanges_left_out:
            out.append("  " + _t("more", lang, n=trace.exchanges_left_out))
    if trace.tls is not None:
        out.append("")
        out.append(f"{_t('cert', lang)} ({trace.tls.version})")
        for cert in trace.tls.chain:
            days = f"{(cert.not_after - trace.started_at) / 86400:.1f}"
            out.append(f"  {cert.subject}")
            out.append(f"      {_t('issuer', lang)} {cert.issuer}; {_t('expires', lang)} "
                       f"{_when(cert.not_after)} ({_t('days_left', lang, days=days)})")
    if trace.checks:
        out.append("")
        out.append(_t("checks", lang))
        for check in trace.checks:
            mark = _t("pass" if check.ok else "fail", lang)
            out.append(f"  [{mark}] {check.name} — {check.detail}")
    if trace.payload is not None:
        out.append("")
        out.append(_t("payload", lang, n=trace.payload_bytes or 0))
        for line in trace.payload.splitlines():
            out.extend(f"  {part}" for part in textwrap.wrap(
                line, 96, replace_whitespace=False, drop_whitespace=False) or [""])
    if trace.fields:
        out.append("")
        out.append(_t("fields", lang))
        scope = None
        for read in trace.fields:
            if read.scope != scope:
                scope = read.scope
                out.append(f"  {scope}")
            taken = read.value if read.value is not None else _t("none_taken", lang)
            note = f"   ({_note(read.note, lang)})" if read.note else ""
            out.append(f"    {read.name}: {read.expression} → {read.raw} → {taken}{note}")
        if trace.fields_left_out:
            out.append("  " + _t("more", lang, n=trace.fields_left_out))
    out.append("")
    out.append(_t("samples", lang))
    for sample in trace.samples:
        out.append(f"  {sample.metric}{_labels(sample.labels)} {_number(sample.value)}")
    if trace.samples_left_out:
        out.append("  " + _t("more", lang, n=trace.samples_left_out))
    if trace.events:
        out.append("")
        out.append(_t("events", lang))
        for event in trace.events:
            out.append(f"  [{event['severity']}] {event['title']} ({event['category']}, "
                       f"id {event['id']}, {_when(event['occurred_at'])})")
        if trace.events_left_out:
            out.append("  " + _t("more", lang, n=trace.events_left_out))
    if trace.notes:
        out.append("")
        out.append(_t("notes", lang))
        out.extend(f"  - {_note(note, lang)}" for note in trace.notes)
    return trace.masked("\n".join(out)) + "\n"
