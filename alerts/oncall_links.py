"""One-click ack links for e-mail and Zalo: signed, bound to an alert and a person, expiring.

A link carries ``fingerprint``, ``person``, ``expires_at``, a ``nonce`` and the channel it was
sent through as base64url JSON,
followed by an HMAC-SHA256 of exactly those bytes under ``alerts.oncall.link_secret``. Changing
any part breaks the signature, so a link for one alert cannot ack another and a link for one
person cannot be passed off as someone else's. The nonce is stored when the link is used
(:mod:`ioc.store.oncall`), so each link works once; it is derived from the notification's
dedup key, so a retried send carries the same link.

Written with the standard library's ``hmac`` rather than a signing library: the expiry must be
checked against a ``now`` passed in (itsdangerous' timed serializers read the clock
themselves), and the payload is four fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

MAX_TOKEN = 1024


class LinkError(Exception):
    """Why a link is refused: ``tampered`` or ``expired`` (code), with a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AckLink:
    fingerprint: str
    person: str
    expires_at: float
    nonce: str
    channel: str = "email"   # where the link was sent: email or zalo


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def link_nonce(dedup_key: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{dedup_key}\0{fingerprint}".encode()).hexdigest()[:24]


class LinkSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"ioc-oncall-link\0" + secret.encode()).digest()

    def _mac(self, body: str, purpose: str = "ack") -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{body}".encode(), hashlib.sha256)
                    .digest())

    def sign(self, link: AckLink) -> str:
        body = _b64(json.dumps([link.fingerprint, link.person, round(link.expires_at),
                                link.nonce, link.channel], separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str, now: float) -> AckLink:
        """The link a token stands for; LinkError when it is forged, altered or expired."""
        body, _, mac = token.partition(".")
        if len(token) > MAX_TOKEN or not body or not hmac.compare_digest(
                mac.encode(), self._mac(body).encode()):
            raise LinkError("tampered", "the link is not one ioc signed, or it was altered")
        try:
            fingerprint, person, expires_at, nonce, channel = json.loads(_unb64(body))
            link = AckLink(str(fingerprint), str(person), float(expires_at), str(nonce),
                           "zalo" if channel == "zalo" else "email")
        except (ValueError, TypeError, binascii.Error):
            raise LinkError("tampered", "the link's content is damaged") from None
        if now >= link.expires_at:
            raise LinkError("expired", "the link has expired")
        return link

    def csrf(self, token: str) -> str:
        """The confirmation form's hidden field: only a page served for this link has it."""
        return self._mac(token, "csrf")

    def csrf_ok(self, token: str, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(),
                                                         self.csrf(token).encode())
