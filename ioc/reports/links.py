"""Signed report download links: a leader taps the link in a Telegram or Zalo message and
gets the PDF, without a token.

A scheduled report's message links to each of its files. ``GET /api/v1/reports`` needs a
viewer token, which a phone's browser opening a chat link does not send. With
``reports.link_secret`` set (from the environment, ``${IOC_REPORT_LINK_SECRET}``), each link
instead carries an expiry and an HMAC-SHA256 of everything that chooses the file (period,
format, language, department, expiry) under a key derived from it; ``GET /reports/download`` serves
exactly that file until the expiry and nothing else. Changing any parameter, or the key,
makes the signature wrong. The key never leaves the process: the outbox row holds no link,
it is signed when the channel sends.

Pure functions: the key and ``now`` are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

PATH = "/reports/download"
LINK_FORMATS = ("pdf", "xlsx", "csv", "html")


class LinkError(ValueError):
    """A download link that is malformed, altered, signed with another key or expired."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # malformed | bad_signature | expired


@dataclass(frozen=True, slots=True)
class SignedFile:
    period: str
    format: str
    lang: str
    department: str | None
    expires: int


def link_key(secret: str) -> bytes:
    """The HMAC key of ``reports.link_secret``, apart from every other use of a secret."""
    return hashlib.sha256(b"ioc-report-link\0" + secret.encode()).digest()


def _signature(key: bytes, f: SignedFile) -> str:
    message = json.dumps(["ioc-report-link-1", f.period, f.format, f.lang,
                          f.department or "", f.expires], ensure_ascii=False)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def signed_url(base: str, key: bytes, f: SignedFile) -> str:
    query = {"period": f.period, "format": f.format, "lang": f.lang}
    if f.department:
        query["department"] = f.department
    query |= {"expires": str(f.expires), "sig": _signature(key, f)}
    return f"{base.rstrip('/')}{PATH}?{urlencode(query)}"


def verify(key: bytes, query: Mapping[str, str], now: float) -> SignedFile:
    """The file a link names, if its signature holds and it has not expired."""
    try:
        expires = int(query.get("expires", ""))
    except ValueError:
        raise LinkError("malformed", "the link has no valid expiry") from None
    f = SignedFile(query.get("period", ""), query.get("format", ""), query.get("lang", ""),
                   query.get("department") or None, expires)
    if not f.period or f.format not in LINK_FORMATS or f.lang not in ("vi", "en"):
        raise LinkError("malformed", "the link is incomplete")
    if not hmac.compare_digest(_signature(key, f).encode(), query.get("sig", "").encode()):
        raise LinkError("bad_signature", "the link was altered or signed with another key")
    if now >= expires:
        raise LinkError("expired", "the link has expired")
    return f


def signed_links(spec: Mapping[str, object], key: bytes, *, now: float,
                 ttl: float) -> dict[str, str]:
    """Format -> signed link for a scheduled report's spec (period, formats, lang, department,
    download_url as the base); empty without a base URL."""
    base = str(spec.get("download_url") or "")
    if not base:
        return {}
    formats = spec.get("formats") or ()
    assert isinstance(formats, (list, tuple))
    department = spec.get("department")
    return {str(fmt): signed_url(base, key, SignedFile(
        str(spec["period"]), str(fmt), str(spec.get("lang") or "vi"),
        str(department) if department else None, int(now + ttl)))
        for fmt in formats if fmt in LINK_FORMATS}
