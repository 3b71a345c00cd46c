"""Scheduled reports through the receivers' own channels, queued in the alert outbox.

A report run (one schedule, one period) becomes one outbox row per channel of each receiver
the schedule names, so it is durable and retried exactly like an alert. Each channel gets
its own integration id, ``report:<receiver>/<kind>[i]``: a report e-mail of several
megabytes never waits in line before a page, nor a page before it.

* e-mail: a short summary in the body and the report files attached (``bao-cao-2026-11.pdf``,
  ``…xlsx``; each with its content type);
* Telegram, Zalo, Apprise: the summary (province availability, incidents, downtime) and a
  link to download each format (``reports.public_url`` or ``alerts.external_url`` +
  ``reports/download``, signed so it opens without a token, when ``reports.link_secret`` is
  set; otherwise ``api/v1/reports``, which asks for a viewer token);
* webhook: the same as JSON (``kind: "report"``), with the ``Idempotency-Key`` header.

Alertmanager receivers get no report (it takes alerts, not documents).

The files and figures are built when the channel sends, by a :class:`ReportSource`
(``ioc.reports.files.ReportFiles``), not stored in the outbox row: a row holds only what to
build (period, formats, language, department). Every text here is a pure function of the
notification and the report's data.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

from alerts.messages import Notification
from alerts.notifiers import Integration, Notifier, ReceiverConfig
from alerts.notifiers.apprise import AppriseNotifier
from alerts.notifiers.email import EmailConfig, EmailNotifier, one_line
from alerts.notifiers.telegram import MAX_TEXT as TELEGRAM_MAX
from alerts.notifiers.telegram import TelegramConfig, TelegramNotifier
from alerts.notifiers.webhook import WebhookConfig, WebhookNotifier
from alerts.notifiers.zalo import MAX_TEXT as ZALO_MAX
from alerts.notifiers.zalo import ZaloConfig, ZaloNotifier
from ioc.bidi import strip_bidi
from ioc.reports.files import BuiltReport, ReportRequest
from ioc.reports.render import CONTENT_TYPES
from ioc.reports.schedule import ScheduleConfig, file_name
from ioc.store.alert_delivery import NewNotification

PREFIX = "report:"
STATUS = "report"
# How long one report send may take: building the report (seconds for a month of a large
# province) and then the channel's own send. The outbox's backstop reads ``send_limit``.
BUILD_LIMIT = 300.0
KINDS = ("email", "webhook", "telegram", "zalo", "apprise")

TEXT = {
    "vi": {"report": "Báo cáo vận hành", "month": "tháng {m}/{y}", "week": "tuần {w}/{y}",
           "day": "ngày {d}/{m}/{y}", "availability": "Tỷ lệ sẵn sàng",
           "incidents": "Số sự cố", "downtime": "Tổng thời gian gián đoạn",
           "systems": "Số hệ thống giám sát", "download": "Tải báo cáo",
           "attached": "Báo cáo đính kèm", "none": "không có số liệu"},
    "en": {"report": "Operations report", "month": "{y}-{m}", "week": "week {w} of {y}",
           "day": "{y}-{m}-{d}", "availability": "Availability", "incidents": "Incidents",
           "downtime": "Total downtime", "systems": "Systems monitored",
           "download": "Download", "attached": "Attached", "none": "no data"},
}


LinkSigner = Callable[[Mapping[str, Any]], dict[str, str]]


class ReportSource(Protocol):
    """Builds (or hands back) a period's report data and files."""

    async def get(self, request: ReportRequest) -> BuiltReport: ...


# --------------------------------------------------------------------------------------------
# The outbox rows of one run


def report_notifications(schedule: ScheduleConfig, period: str,
                         integrations: Mapping[str, Sequence[Integration]], *, now: float,
                         download_url: str, title: str, timezone: str
                         ) -> list[NewNotification]:
    """One outbox row per report channel of each receiver of ``schedule``."""
    spec = {"schedule": schedule.name, "period": period, "formats": list(schedule.formats),
            "lang": schedule.lang, "department": schedule.department,
            "download_url": download_url}
    group = f"{PREFIX}{schedule.name}:{period}"
    out = []
    for receiver in schedule.receivers:
        for integration in integrations.get(receiver, ()):
            key = f"{integration.id}:{schedule.name}:{period}"
            n = Notification(receiver=receiver, group_key=group, status=STATUS,
                             group_labels={"schedule": schedule.name, "period": period},
                             alerts=(), created_at=now, dedup_key=key,
                             external_url=download_url, title=title, timezone=timezone,
                             extra={"report": spec})
            out.append(NewNotification(key, integration.id, receiver, group, STATUS,
                                       n.to_json(), now))
    return out


# --------------------------------------------------------------------------------------------
# Pure texts


def request_of(spec: Mapping[str, Any]) -> ReportRequest:
    return ReportRequest(spec["period"], tuple(spec["formats"]), spec.get("lang", "vi"),
                         spec.get("department"))


def summary_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a short message carries."""
    s = data["summary"]
    return {"province": data.get("province", ""), "systems": s["systems"],
            "availability": s["availability"], "incidents": s["incidents"],
            "downtime_seconds": s["downtime_seconds"]}


def period_text(period: str, lang: str) -> str:
    t = TEXT[lang]
    parts = period.split("-")
    if len(parts) == 2 and parts[1].startswith("W"):
        return t["week"].format(w=int(parts[1][1:]), y=parts[0])
    if len(parts) == 2:
        return t["month"].format(m=parts[1], y=parts[0])
    if len(parts) == 3:
        return t["day"].format(d=parts[2], m=parts[1], y=parts[0])
    return period


def links(spec: Mapping[str, Any]) -> dict[str, str]:
    """Format -> download URL: the signed links the channel added when it sent
    (``ioc.reports.links``), else ``GET /api/v1/reports``, which asks for a viewer token."""
    if spec.get("links"):
        return dict(spec["links"])
    base = str(spec.get("download_url") or "")
    if not base:
        return {}
    out = {}
    for fmt in spec["formats"]:
        query = {"period": spec["period"], "format": fmt, "lang": spec.get("lang", "vi")}
        if spec.get("department"):
            query["department"] = spec["department"]
        out[fmt] = f"{base.rstrip('/')}/api/v1/reports?{urlencode(query)}"
    return out


def _pct(ratio: float | None, lang: str) -> str:
    if ratio is None:
        return TEXT[lang]["none"]
    text = f"{ratio * 100:.3f} %"
    return text.replace(".", ",") if lang == "vi" else text


def _dur(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def subject(spec: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    lang = spec.get("lang", "vi")
    dept = f" — {spec['department']}" if spec.get("department") else ""
    return one_line(f"{TEXT[lang]['report']} {period_text(spec['period'], lang)} — "
                    f"{summary.get('province', '')}{dept}")


def summary_lines(spec: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    t = TEXT[spec.get("lang", "vi")]
    lang = spec.get("lang", "vi")
    return [f"{t['systems']}: {summary['systems']}",
            f"{t['availability']}: {_pct(summary['availability'], lang)}",
            f"{t['incidents']}: {summary['incidents']}",
            f"{t['downtime']}: {_dur(summary['downtime_seconds'])}"]


def render_text(spec: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The short message: subject, figures, one download link per format."""
    t = TEXT[spec.get("lang", "vi")]
    lines = [subject(spec, summary), *summary_lines(spec, summary)]
    found = links(spec)
    if found:
        lines.append(f"{t['download']}:")
        lines.extend(f"- {fmt.upper()}: {url}" for fmt, url in found.items())
    return strip_bidi("\n".join(lines) + "\n")


def build_email(spec: Mapping[str, Any], built: BuiltReport, *, sender: str, to: list[str],
                created_at: float, dedup_key: str) -> EmailMessage:
    """The e-mail: summary as text and HTML, each format attached with its content type."""
    summary = summary_of(built.data)
    t = TEXT[spec.get("lang", "vi")]
    message = EmailMessage()
    message["Subject"] = subject(spec, summary)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(created_at, localtime=False)
    message["Message-ID"] = make_msgid(idstring=dedup_key, domain="ioc")
    message["X-Ioc-Dedup-Key"] = dedup_key
    names = [file_name(spec["period"], fmt, spec.get("lang", "vi"), spec.get("department"))
             for fmt in spec["formats"]]
    text = render_text(spec, summary) + f"{t['attached']}: {', '.join(names)}\n"
    message.set_content(text, charset="utf-8")
    rows = "".join(f"<li>{html.escape(strip_bidi(line))}</li>"
                   for line in summary_lines(spec, summary))
    message.add_alternative(
        f"<!doctype html><html><body><h2>{html.escape(str(message['Subject']))}</h2>"
        f"<ul>{rows}</ul><p>{html.escape(t['attached'])}: "
        f"{html.escape(', '.join(names))}</p></body></html>", subtype="html", charset="utf-8")
    for fmt, name in zip(spec["formats"], names, strict=True):
        maintype, _, rest = CONTENT_TYPES[fmt].partition("/")
        subtype = rest.split(";")[0]
        message.add_attachment(built.files[fmt], maintype=maintype, subtype=subtype,
                               filename=name)
    return message


def webhook_body(n: Notification, spec: Mapping[str, Any],
                 summary: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": "1", "kind": "report", "receiver": n.receiver,
            "schedule": spec["schedule"], "period": spec["period"],
            "lang": spec.get("lang", "vi"), "department": spec.get("department"),
            "summary": dict(summary), "links": links(spec), "text": render_text(spec, summary),
            "dedupKey": n.dedup_key}


# --------------------------------------------------------------------------------------------
# The channels


class _ReportChannel:
    """What every report channel shares: the report source and a longer send limit."""

    source: ReportSource
    send_resolved = True
    send_limit: float
    signer: LinkSigner | None = None  # signs the download links when reports.link_secret is set

    async def _fill(self, n: Notification) -> tuple[Notification, BuiltReport]:
        """The notification with the report's figures (and signed links) in ``extra``, and
        the built report."""
        spec = n.extra["report"]
        built = await self.source.get(request_of(spec))
        signed = self.signer(spec) if self.signer is not None else {}
        filled = replace(n, extra={**n.extra, "report": {
            **spec, "summary": summary_of(built.data), **({"links": signed} if signed else {})}})
        return filled, built

    async def send(self, notification: Notification) -> None:
        """The channel's own send (next in the class order), with the report's figures
        filled in; e-mail sends its files instead."""
        filled, _ = await self._fill(notification)
        await super().send(filled)  # type: ignore[misc]  # the channel class after this mixin


def _spec(n: Notification) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = dict(n.extra["report"])
    return spec, spec.get("summary") or {}


class ReportEmail(_ReportChannel, EmailNotifier):
    def __init__(self, config: EmailConfig, source: ReportSource) -> None:
        EmailNotifier.__init__(self, config)
        self.source = source
        self.send_limit = config.timeout + BUILD_LIMIT

    async def send(self, notification: Notification) -> None:
        spec = notification.extra["report"]
        built = await self.source.get(request_of(spec))
        await self.deliver(build_email(spec, built, sender=self.config.sender,
                                       to=self.config.to, created_at=notification.created_at,
                                       dedup_key=notification.dedup_key))


class ReportWebhook(_ReportChannel, WebhookNotifier):
    def __init__(self, config: WebhookConfig, session: Callable[[], aiohttp.ClientSession],
                 source: ReportSource) -> None:
        WebhookNotifier.__init__(self, config, session)
        self.source = source
        self.send_limit = config.timeout + BUILD_LIMIT

    def body(self, notification: Notification) -> dict[str, Any]:
        spec, summary = _spec(notification)
        return webhook_body(notification, spec, summary)


class ReportTelegram(_ReportChannel, TelegramNotifier):
    def __init__(self, config: TelegramConfig, session: Callable[[], aiohttp.ClientSession],
                 source: ReportSource) -> None:
        TelegramNotifier.__init__(self, config, session)
        self.source = source
        self.send_limit = config.timeout + BUILD_LIMIT

    def request(self, notification: Notification) -> dict[str, Any]:
        spec, summary = _spec(notification)
        return {"chat_id": self.config.chat_id,
                "text": render_text(spec, summary)[:TELEGRAM_MAX],
                "disable_web_page_preview": True}


class ReportZalo(_ReportChannel, ZaloNotifier):
    def __init__(self, config: ZaloConfig, session: Callable[[], aiohttp.ClientSession],
                 source: ReportSource) -> None:
        ZaloNotifier.__init__(self, config, session)
        self.source = source
        self.send_limit = config.timeout + BUILD_LIMIT

    def message(self, notification: Notification, user_id: str) -> dict[str, Any]:
        spec, summary = _spec(notification)
        return {"recipient": {"user_id": user_id},
                "message": {"text": render_text(spec, summary)[:ZALO_MAX]}}


class ReportApprise(_ReportChannel, AppriseNotifier):
    def __init__(self, config: Any, source: ReportSource) -> None:
        AppriseNotifier.__init__(self, config)
        self.source = source
        self.send_limit = BUILD_LIMIT + 30.0

    def message(self, notification: Notification) -> dict[str, Any]:
        spec, summary = _spec(notification)
        text = render_text(spec, summary)
        head, _, body = text.partition("\n")
        return {"title": head, "body": body}


def _channel(kind: str, cfg: Any, session: Callable[[], aiohttp.ClientSession],
             source: ReportSource) -> Notifier | None:
    if kind == "email":
        return ReportEmail(cfg, source)
    if kind == "webhook":
        return ReportWebhook(cfg, session, source)
    if kind == "telegram":
        return ReportTelegram(cfg, session, source)
    if kind == "zalo":
        return ReportZalo(cfg, session, source)
    if kind == "apprise":
        return ReportApprise(cfg, source)
    return None  # alertmanager: alerts only


def report_integrations(receivers: Sequence[ReceiverConfig], used: set[str],
                        session: Callable[[], aiohttp.ClientSession],
                        source: ReportSource, signer: LinkSigner | None = None
                        ) -> dict[str, list[Integration]]:
    """Receiver name -> its report channels, for the receivers some schedule names."""
    out: dict[str, list[Integration]] = {}
    for receiver in receivers:
        if receiver.name not in used:
            continue
        items = []
        counts: dict[str, int] = {}
        for kind, cfg in receiver.channels():
            index = counts.get(kind, 0)
            counts[kind] = index + 1
            notifier = _channel(kind, cfg, session, source)
            if isinstance(notifier, _ReportChannel):
                notifier.signer = signer
            if notifier is not None:
                items.append(Integration(f"{PREFIX}{receiver.name}/{kind}[{index}]",
                                         receiver.name, kind, notifier))
        out[receiver.name] = items
    return out
