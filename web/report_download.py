"""``GET /reports/download``: a scheduled report's file through the signed link its message
carried (``ioc.reports.links``), for someone who has the link but no token.

The link is the credential: its signature (under ``reports.link_secret``) covers the period,
format, language, department and expiry, so it opens that one file until it expires and
nothing else. Whoever opens it is most likely on a phone, having tapped it in Telegram or
Zalo, so a refusal is a short readable page in Vietnamese and English, not JSON. The file
comes from the same builder the scheduled report's channels use: everyone who taps the link
of one report at once waits for one build, and later taps within the hour get the kept
file.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ioc.logs import fields
from ioc.reports.files import ReportRequest
from ioc.reports.links import PATH, LinkError, link_key, verify
from ioc.reports.render import CONTENT_TYPES
from ioc.reports.schedule import file_name
from ioc.store.base import StoreError
from web.keys import CONTEXT, TEMPLATES

log = logging.getLogger("ioc.web.reports")

_WORDS = {
    "off": ("Liên kết tải báo cáo không được bật trên máy chủ này.",
            "Report download links are not enabled on this server."),
    "malformed": ("Liên kết tải báo cáo không đầy đủ. Hãy mở lại liên kết trong tin nhắn.",
                  "The report link is incomplete. Open the link from the message again."),
    "bad_signature": ("Liên kết tải báo cáo không hợp lệ.", "The report link is not valid."),
    "expired": ("Liên kết tải báo cáo đã hết hạn. Hãy tải báo cáo từ bảng điều khiển.",
                "The report link has expired. Download the report from the console."),
    "store": ("Chưa đọc được số liệu. Hãy thử lại sau ít phút.",
              "The data could not be read. Try again in a few minutes."),
    "period": ("Không lập được báo cáo cho kỳ này.", "No report can be made for this period."),
}
_STATUS = {"off": 404, "malformed": 400, "bad_signature": 403, "expired": 410,
           "store": 503, "period": 400}


def _refusal(request: web.Request, reason: str, detail: str = "") -> web.Response:
    vi, en = _WORDS[reason]
    body = request.app[TEMPLATES].get_template("report_link_error.html").render(
        vi=vi, en=en, detail=detail)
    headers = {"Cache-Control": "no-store"}
    if reason == "store":
        headers["Retry-After"] = "60"
    return web.Response(status=_STATUS[reason], text=body, content_type="text/html",
                        charset="utf-8", headers=headers)


async def download(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT]
    reports: Any = context.config().reports
    if reports.link_secret is None or context.report_files is None:
        return _refusal(request, "off")
    try:
        wanted = verify(link_key(reports.link_secret.get_secret_value()), request.query,
                        context.clock())
    except LinkError as exc:
        context.trust.rejected.labels(reason="report_link_refused").inc()
        log.debug("report download link refused", extra=fields(  # counted; not a flood
            reason=exc.reason, client=request.remote or ""))
        return _refusal(request, exc.reason)
    try:
        built = await context.report_files(ReportRequest(
            wanted.period, (wanted.format,), wanted.lang, wanted.department))
    except ValueError as exc:
        return _refusal(request, "period", str(exc))
    except StoreError:
        return _refusal(request, "store")
    name = file_name(wanted.period, wanted.format, wanted.lang, wanted.department)
    return web.Response(body=built.files[wanted.format], headers={
        "Content-Type": CONTENT_TYPES[wanted.format],
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, download)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------

def _q(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": name != "department",
            "description": text, "schema": {"type": "string"}}


_PAGE = {"text/html": {"schema": {"type": "string"}}}
REPORT_DOWNLOAD_PATHS: dict[str, Any] = {
    PATH: {"get": {
        "summary": "A scheduled report's file through the signed link in its message",
        "description": "No token: the link is the credential (docs/reports.md, Download links "
                       "in messages). Only with reports.link_secret set. A refusal is a short "
                       "HTML page in Vietnamese and English.",
        "operationId": "reportDownload",
        "parameters": [_q("period", "2026-11, 2026-W48 or 2026-11-30"),
                       _q("format", "pdf, xlsx, csv or html"), _q("lang", "vi or en"),
                       _q("department", "a department's code, for its own report"),
                       _q("expires", "unix seconds the link works until"),
                       _q("sig", "HMAC-SHA256 of the link, hex")],
        "responses": {
            "200": {"description": "the file", "content": {
                "application/pdf": {}, "text/csv": {}, "text/html": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}},
            "400": {"description": "an incomplete link or a period no report can be made for",
                    "content": _PAGE},
            "403": {"description": "an altered link, or one signed with another secret",
                    "content": _PAGE},
            "404": {"description": "signed links are not enabled", "content": _PAGE},
            "410": {"description": "the link has expired", "content": _PAGE},
            "503": {"description": "the store is unavailable", "content": _PAGE}},
    }},
}
