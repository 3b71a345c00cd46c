"""Forwarding to an existing Alertmanager (POST /api/v2/alerts), as Prometheus does.

Alertmanager expires an alert at its ``endsAt``; Prometheus therefore re-sends every active
alert periodically with ``endsAt`` a few intervals ahead, and a resolved one with ``endsAt``
set to when it resolved. The dispatcher re-sends this receiver's groups every
``resend_interval`` (acks do not stop it: Alertmanager must keep knowing the alert is active);
this module only builds and posts the list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import Field, SecretStr

from alerts.messages import Notification
from alerts.notifiers.base import ChannelConfig, NotifierError, check_http_status
from alerts.notifiers.webhook import rfc3339
from ioc.config_types import Duration


class AlertmanagerConfig(ChannelConfig):
    urls: list[str] = Field(min_length=1, description="base URLs, e.g. http://am:9093")
    resend_interval: Duration = Field(60.0, description="re-send active alerts this often")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer")


def build_alerts(n: Notification, resend_interval: float) -> list[dict[str, Any]]:
    """The v2 API body. Firing alerts end 4 resend intervals after this notification
    (Prometheus's rule), so a lost ioc lets them expire instead of firing forever."""
    horizon = n.created_at + 4 * resend_interval
    out = []
    for alert in n.alerts:
        ends = alert.ends_at if alert.status == "resolved" else horizon
        out.append({
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": rfc3339(alert.starts_at),
            "endsAt": rfc3339(ends),
            "generatorURL": n.external_url,
        })
    return out


class AlertmanagerNotifier:
    def __init__(self, config: AlertmanagerConfig,
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        self.config = config
        self.send_resolved = True  # Alertmanager must learn about resolutions
        self._session = session

    async def send(self, notification: Notification) -> None:
        body = build_alerts(notification, self.config.resend_interval)
        headers = {}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        errors = []
        for base in self.config.urls:
            url = base.rstrip("/") + "/api/v2/alerts"
            try:
                async with self._session().post(
                        url, json=body, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=self.config.timeout)) as resp:
                    check_http_status(resp.status, await resp.text(), f"alertmanager {base}")
            except NotifierError as exc:
                errors.append(str(exc))
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"alertmanager {base}: {type(exc).__name__}: {exc}")
        # Like Prometheus: delivered when at least one Alertmanager of the cluster took it.
        if len(errors) == len(self.config.urls):
            raise NotifierError("; ".join(errors))
