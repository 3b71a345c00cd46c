"""The ``http`` collector: is the department's web system answering, and how fast.

This is the foundation's probe: status code and latency. Content conditions, TLS details and
phase timings belong to the full uptime probe and extend this module.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator

from collectors.base import CollectorFailure
from ioc.config_types import CollectorConfig
from ioc.model import CollectResult, Sample, make_labels


def parse_status_spec(spec: list[int | str]) -> tuple[tuple[int, int], ...]:
    """``[200, "300-399"]`` → inclusive ranges; raises ValueError naming the bad item."""
    ranges: list[tuple[int, int]] = []
    for item in spec:
        if isinstance(item, bool):
            raise ValueError(f"expected a status code or range like 200-299, got {item!r}")
        if isinstance(item, int):
            low = high = item
        else:
            text = str(item).strip()
            low_text, sep, high_text = text.partition("-")
            if not low_text.isdigit() or (sep and not high_text.isdigit()):
                raise ValueError(f"expected a status code or range like 200-299, got {item!r}")
            low = int(low_text)
            high = int(high_text) if sep else low
        if not (100 <= low <= high <= 599):
            raise ValueError(f"status codes must be within 100-599 and low <= high, got {item!r}")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("at least one expected status is required")
    return tuple(ranges)


def _default_status() -> list[int | str]:
    return ["200-299"]


class HttpConfig(CollectorConfig):
    type: Literal["http"]
    url: str = Field(description="http:// or https:// address to request")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expected_status: list[int | str] = Field(
        default_factory=_default_status,
        description="status codes and ranges that count as up",
    )
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value

    @field_validator("expected_status")
    @classmethod
    def _check_status(cls, value: list[int | str]) -> list[int | str]:
        parse_status_spec(value)
        return value


class HttpCollector:
    kind: ClassVar[str] = "http"
    Config: ClassVar[type[CollectorConfig]] = HttpConfig

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self._ranges = parse_status_spec(config.expected_status)
        self._ssl: ssl.SSLContext | bool = True if config.verify_tls else False
        self._status_labels = make_labels(
            {"target": config.name, "department": config.department, "kind": self.kind}
        )

    @property
    def host(self) -> str | None:
        parts = urlsplit(self.config.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def status_ok(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self._ranges)

    async def collect(self, session: aiohttp.ClientSession, now: float) -> CollectResult:
        cfg = self.config
        try:
            async with session.request(
                cfg.method, cfg.url, headers=cfg.headers, ssl=self._ssl,
                allow_redirects=True,
            ) as response:
                # Drain (bounded) so the measured time includes the transfer.
                await response.content.read(1 << 20)
                status = response.status
        except aiohttp.ClientConnectorDNSError as exc:
            raise CollectorFailure("dns", f"name did not resolve: {exc.host}") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise CollectorFailure("tls", f"certificate error: {exc.certificate_error}") from exc
        except aiohttp.ClientSSLError as exc:
            raise CollectorFailure("tls", f"TLS error: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, (TimeoutError, asyncio.TimeoutError)):
                raise CollectorFailure("connect_timeout", f"connect timed out: {exc}") from exc
            raise CollectorFailure("connect_refused", f"cannot connect: {exc.os_error}") from exc
        except aiohttp.TooManyRedirects as exc:
            raise CollectorFailure("redirect_loop", "too many redirects") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                aiohttp.ClientResponseError) as exc:
            raise CollectorFailure("protocol_error", f"bad response: {exc}") from exc
        samples = (
            Sample("ioc_probe_http_status_code", self._status_labels, float(status), now),
        )
        if not self.status_ok(status):
            return CollectResult(up=False, samples=samples, reason="http_status",
                                 error=f"unexpected HTTP status {status}", value=status)
        return CollectResult(up=True, samples=samples, value=status)


