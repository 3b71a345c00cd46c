"""Zalo Official Account messages — the channel Vietnamese state agencies actually use.

ioc posts a *consultation* ("tư vấn") text message to each follower's ``user_id`` through the
OA API v3 (``POST /v3.0/oa/message/cs``, header ``access_token``). Two rules of the platform
shape this module (see docs/alerting.md):

* **48-hour interaction window.** Consultation messages reach a follower only within 48 hours
  of that person's last interaction with the OA (a message, a tap). Outside it Zalo answers with
  an error code and nothing is delivered; on-call staff should message the OA at the start of
  their shift. The error is raised, so the outbox retries and finally marks the notification
  failed — visible in ``/api/v1/notifications`` — rather than pretending it was read.
* **Access tokens expire** (about 25 hours) and are renewed with the refresh token at
  ``oauth.zaloapp.com/v4/oa/access_token``; every refresh returns a *new* refresh token and
  invalidates the old one. The notifier refreshes on an "access token invalid/expired" answer
  and keeps the rotated tokens for the life of the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import Field, SecretStr

from alerts.messages import Notification, render_short
from alerts.notifiers.base import ChannelConfig, NotifierError

MAX_TEXT = 2000
TOKEN_ERRORS = {-216, -124}  # access token invalid / expired


class ZaloConfig(ChannelConfig):
    user_ids: list[str] = Field(min_length=1, description="followers' user_id in the OA")
    access_token: SecretStr = Field(description="OA access token; write ${ENV_VAR}")
    refresh_token: SecretStr | None = Field(None, description="to renew the access token")
    app_id: str | None = Field(None, description="Zalo app id, needed to refresh")
    secret_key: SecretStr | None = Field(None, description="Zalo app secret, needed to refresh")
    api_url: str = Field("https://openapi.zalo.me", pattern=r"^https?://",
                         description="OA API base URL")
    oauth_url: str = Field("https://oauth.zaloapp.com", pattern=r"^https?://",
                           description="OAuth base URL for token refresh")


def build_message(n: Notification, user_id: str) -> dict[str, Any]:
    return {"recipient": {"user_id": user_id}, "message": {"text": render_short(n, MAX_TEXT)}}


def api_error(body: Any) -> tuple[int, str]:
    """Zalo answers HTTP 200 with ``{"error": code, "message": …}``; 0 means success."""
    if not isinstance(body, dict):
        return -1, "unexpected answer"
    try:
        return int(body.get("error", -1)), str(body.get("message", ""))
    except (TypeError, ValueError):
        return -1, "unexpected answer"


class ZaloNotifier:
    def __init__(self, config: ZaloConfig,
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        self.config = config
        self.send_resolved = config.send_resolved
        self._session = session
        self._access = config.access_token.get_secret_value()
        self._refresh = config.refresh_token.get_secret_value() if config.refresh_token else None
        self._lock = asyncio.Lock()

    def message(self, notification: Notification, user_id: str) -> dict[str, Any]:
        """The request body for one follower (the on-call notifier adds its ack links)."""
        return build_message(notification, user_id)

    async def send(self, notification: Notification) -> None:
        failed = []
        for user_id in self.config.user_ids:
            code, message = await self._post(self.message(notification, user_id))
            if code in TOKEN_ERRORS and await self._refresh_token():
                code, message = await self._post(self.message(notification, user_id))
            if code != 0:
                failed.append(f"{user_id}: error {code} {message}")
        if failed:
            raise NotifierError("zalo: " + "; ".join(failed))

    async def _post(self, body: dict[str, Any]) -> tuple[int, str]:
        url = self.config.api_url.rstrip("/") + "/v3.0/oa/message/cs"
        try:
            async with self._session().post(
                    url, json=body, headers={"access_token": self._access},
                    timeout=aiohttp.ClientTimeout(total=self.config.timeout)) as resp:
                if resp.status != 200:
                    raise NotifierError(f"zalo: HTTP {resp.status}")
                return api_error(await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise NotifierError(f"zalo: {type(exc).__name__}") from exc

    async def _refresh_token(self) -> bool:
        cfg = self.config
        if not (self._refresh and cfg.app_id and cfg.secret_key):
            return False
        async with self._lock:
            url = cfg.oauth_url.rstrip("/") + "/v4/oa/access_token"
            try:
                async with self._session().post(
                        url, headers={"secret_key": cfg.secret_key.get_secret_value()},
                        data={"refresh_token": self._refresh, "app_id": cfg.app_id,
                              "grant_type": "refresh_token"},
                        timeout=aiohttp.ClientTimeout(total=cfg.timeout)) as resp:
                    answer = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise NotifierError(f"zalo: token refresh failed: {type(exc).__name__}") \
                    from exc
            if not isinstance(answer, dict) or not answer.get("access_token"):
                raise NotifierError("zalo: token refresh refused (renew the refresh token in "
                                    "the Zalo developer console)")
            self._access = str(answer["access_token"])
            self._refresh = str(answer.get("refresh_token") or self._refresh)
            return True
