"""The Alertmanager webhook format (version "4"), so existing webhook consumers just work.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config — ioc adds one field,
``dedupKey`` (also sent as the ``Idempotency-Key`` header): delivery is at-least-once, and a
consumer that must never act twice on one notification keeps the keys it has seen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import Field, SecretStr

from alerts.messages import Notification, NotifiedAlert
from alerts.notifiers.base import ChannelConfig, NotifierError, check_http_status

ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookConfig(ChannelConfig):
    url: str = Field(pattern=r"^https?://", description="where to POST the JSON")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer")
    max_alerts: int = Field(0, ge=0, description="cap on alerts per message; 0 = all")


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def webhook_alert(alert: NotifiedAlert, generator_url: str) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at),
        "generatorURL": generator_url,
        "fingerprint": alert.fingerprint,
    }


def build_payload(n: Notification, max_alerts: int = 0) -> dict[str, Any]:
    alerts = list(n.alerts)
    truncated = 0
    if max_alerts and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": n.external_url,
        "alerts": [webhook_alert(a, n.external_url) for a in alerts],
        "dedupKey": n.dedup_key,
    }


class WebhookNotifier:
    def __init__(self, config: WebhookConfig,
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        self.config = config
        self.send_resolved = config.send_resolved
        self._session = session

    def body(self, notification: Notification) -> dict[str, Any]:
        """The JSON posted (a scheduled report posts its own)."""
        return build_payload(notification, self.config.max_alerts)

    async def send(self, notification: Notification) -> None:
        headers = {"Idempotency-Key": notification.dedup_key}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        try:
            async with self._session().post(
                    self.config.url, json=self.body(notification),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.config.timeout)) as resp:
                check_http_status(resp.status, await resp.text(), "webhook")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotifierError(f"webhook: {type(exc).__name__}: {exc}") from exc
