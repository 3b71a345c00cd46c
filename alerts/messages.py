"""What a notification says, in Vietnamese, for every receiver.

``Notification`` is the durable unit of delivery: built once by the dispatcher, stored as JSON
in the outbox, and handed to a notifier (possibly after a restart). The renderers below are
pure functions of it, so every channel says the same thing — what, where (department,
target), since when, the current value, and links to the wall screen and the runbook — and
each can be tested without a network.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ioc.bidi import strip_bidi

SEVERITY_VI = {"critical": "NGHIÊM TRỌNG", "warning": "CẢNH BÁO", "info": "THÔNG TIN"}
RESOLVED_VI = "ĐÃ KHẮC PHỤC"


@dataclass(frozen=True, slots=True)
class NotifiedAlert:
    fingerprint: str
    status: str                      # "firing" or "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None = None
    value: float | None = None
    department_name: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.name


@dataclass(frozen=True, slots=True)
class Notification:
    receiver: str
    group_key: str
    status: str                      # "firing" when any alert fires, else "resolved"
    group_labels: dict[str, str]
    alerts: tuple[NotifiedAlert, ...]
    created_at: float
    dedup_key: str
    external_url: str = ""
    title: str = "Trung tâm Giám sát, điều hành thông minh"
    timezone: str = "Asia/Ho_Chi_Minh"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> list[NotifiedAlert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[NotifiedAlert]:
        return [a for a in self.alerts if a.status == "resolved"]

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        alerts = tuple(NotifiedAlert(**a) for a in data["alerts"])
        return cls(**{**data, "alerts": alerts})


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common


# --------------------------------------------------------------------------------------------
# Pieces


def local_time(ts: float, tz: str) -> str:
    """Total: a time no calendar can show (NaN, year 10000) reads "—" instead of raising."""
    try:
        return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%H:%M %d/%m/%Y")
    except (OverflowError, OSError, ValueError, TypeError):
        return "—"


def human_duration(seconds: float) -> str:
    """``2 giờ 5 phút``, ``40 giây``: how long something has lasted, for people.

    Total, like every format in a message: a duration that is no number reads "—".
    """
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "—"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} ngày"] if days else []
    if hours:
        parts.append(f"{hours} giờ")
    if minutes and not days:
        parts.append(f"{minutes} phút")
    if not parts:
        parts.append(f"{secs} giây")
    return " ".join(parts)


def format_value(value: float | None) -> str:
    """An alert's value: whole numbers as such, others to 4 digits; NaN and ±inf by name."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if abs(value) < 1e15 and value == int(value):
        return str(int(value))
    return f"{value:.4g}".replace(".", ",")  # Vietnamese decimal comma


def headline(n: Notification) -> str:
    """The one-line subject: severity, where, what, how many."""
    worst = _worst_severity(n)
    tag = RESOLVED_VI if n.status == "resolved" else SEVERITY_VI.get(worst, worst.upper())
    first = n.alerts[0] if n.alerts else None
    where = _where(first) if first else ""
    what = first.summary if first else ""
    count = len(n.firing) if n.status == "firing" else len(n.resolved)
    more = f" (+{count - 1} cảnh báo khác)" if count > 1 else ""
    # Plain text: a bidi override in a name would reorder the rest of the line (ioc.bidi).
    return strip_bidi(f"[{tag}] {where}{': ' if where else ''}{what}{more}")


def _worst_severity(n: Notification) -> str:
    order = {"critical": 3, "warning": 2, "info": 1}
    pool = n.firing or list(n.alerts)
    return max((a.labels.get("severity", "warning") for a in pool),
               key=lambda s: order.get(s, 0), default="warning")


def _where(alert: NotifiedAlert) -> str:
    dept = alert.labels.get("department", "")
    return alert.department_name or dept


def alert_facts(alert: NotifiedAlert, n: Notification) -> list[tuple[str, str]]:
    """Label/value lines describing one alert, in display order."""
    facts: list[tuple[str, str]] = []
    dept = alert.labels.get("department")
    if dept:
        name = alert.department_name
        facts.append(("Đơn vị", f"{name} ({dept})" if name and name != dept else dept))
    if alert.labels.get("target"):
        facts.append(("Hệ thống", alert.labels["target"]))
    facts.append(("Mức độ", SEVERITY_VI.get(alert.labels.get("severity", ""),
                                             alert.labels.get("severity", "—"))))
    if alert.status == "resolved" and alert.ends_at is not None:
        facts.append(("Từ lúc", local_time(alert.starts_at, n.timezone)))
        facts.append(("Khắc phục lúc", f"{local_time(alert.ends_at, n.timezone)} "
                      f"(kéo dài {human_duration(alert.ends_at - alert.starts_at)})"))
    else:
        facts.append(("Từ lúc", f"{local_time(alert.starts_at, n.timezone)} "
                      f"({human_duration(n.created_at - alert.starts_at)} trước)"))
        facts.append(("Giá trị hiện tại", format_value(alert.value)))
    if alert.annotations.get("description"):
        facts.append(("Chi tiết", alert.annotations["description"]))
    if alert.annotations.get("runbook_url"):
        facts.append(("Hướng dẫn xử lý", alert.annotations["runbook_url"]))
    return facts


def _sections(n: Notification) -> list[tuple[str, list[NotifiedAlert]]]:
    out = []
    if n.firing:
        out.append((f"Đang có sự cố ({len(n.firing)})", n.firing))
    if n.resolved:
        out.append((f"Đã khắc phục ({len(n.resolved)})", n.resolved))
    return out


# --------------------------------------------------------------------------------------------
# Whole messages


def render_text(n: Notification) -> str:
    lines = [headline(n), n.title, ""]
    for title, alerts in _sections(n):
        lines.append(f"== {title} ==")
        for alert in alerts:
            mark = "🔴" if alert.status == "firing" else "✅"
            lines.append(f"{mark} {alert.summary}")
            lines.extend(f"   {k}: {v}" for k, v in alert_facts(alert, n))
            lines.append("")
    if n.external_url:
        lines.append(f"Màn hình giám sát: {n.external_url}")
    # Plain text cannot isolate a name's direction: bidi controls are removed (ioc.bidi).
    return strip_bidi("\n".join(lines).rstrip() + "\n")


def render_html(n: Notification) -> str:
    def e(text: str, quote: bool = True) -> str:
        # Mail clients differ in what they honour of <bdi>: the controls go here too.
        return html.escape(strip_bidi(text), quote=quote)

    parts = [f"<h2>{e(headline(n))}</h2>", f"<p>{e(n.title)}</p>"]
    for title, alerts in _sections(n):
        parts.append(f"<h3>{e(title)}</h3>")
        for alert in alerts:
            color = "#c62828" if alert.status == "firing" else "#2e7d32"
            parts.append(f'<p style="color:{color}"><b><bdi>{e(alert.summary)}</bdi></b></p>'
                         "<table>")
            for key, value in alert_facts(alert, n):
                shown = f"<bdi>{e(value)}</bdi>"
                if key == "Hướng dẫn xử lý" and value.startswith(("http://", "https://")):
                    shown = f'<a href="{e(value, quote=True)}">{e(value)}</a>'
                parts.append(f"<tr><td>{e(key)}</td><td>{shown}</td></tr>")
            parts.append("</table>")
    if n.external_url:
        url = e(n.external_url, quote=True)
        parts.append(f'<p><a href="{url}">Mở màn hình giám sát</a></p>')
    return "<!doctype html><html><body>" + "".join(parts) + "</body></html>"


def render_short(n: Notification, limit: int) -> str:
    """The text form cut to a channel's length limit, saying that it was cut."""
    text = render_text(n)
    if len(text) <= limit:
        return text
    cut = "\n… (xem đầy đủ trên màn hình giám sát)"
    return text[: max(0, limit - len(cut))] + cut
