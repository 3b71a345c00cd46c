"""Polling a JSON statistics endpoint: the half shared by ``backlog`` and ``feedback``.

``JsonStatsCollector`` is their common outer class (fetch, then read with the block's mapping
or the native contract); each subclass only says how a payload becomes samples.

Portals guard their statistics differently (a bearer token, basic auth, an API-key header)
and some take the period or department as a POSTed query, so the config covers those; secret
values come from the environment through ``${VAR}`` and never appear in a repr or an error.
The body is read up to a limit so a runaway endpoint cannot fill memory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, SecretStr, field_validator, model_validator

from collectors.mapping import CompiledMapping, FieldMapping, UnknownUnits
from collectors.probe.body import read_capped
from ioc import trace
from ioc.collector import CollectorFailure
from ioc.config_types import CollectorConfig, StrictModel
from ioc.model import CollectResult, make_labels

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class BasicAuth(StrictModel):
    username: str = Field(min_length=1)
    password: SecretStr


class JsonStatsConfig(CollectorConfig):
    """Keys shared by the collectors that poll a JSON statistics endpoint."""

    url: str = Field(description="http:// or https:// address of the statistics endpoint")
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, Any] | None = Field(None, description="JSON body sent with POST")
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    verify_tls: bool = True
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=256 * 1024 * 1024)
    department_map: dict[str, str] = Field(
        default_factory=dict, description="unit code in the payload → ioc department code")
    unknown_units: Literal["include", "exclude"] = Field(
        "include", description="units whose code is no department of the config: counted in "
                               "the province's totals (include) or not (exclude)")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> JsonStatsConfig:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set bearer_token or basic_auth, not both")
        if self.body is not None and self.method != "POST":
            raise ValueError("body is sent only with method: POST")
        if any(k.lower() == "authorization" for k in self.headers) and (
                self.bearer_token is not None or self.basic_auth is not None):
            raise ValueError("headers.Authorization clashes with bearer_token/basic_auth")
        return self


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def request_headers(cfg: JsonStatsConfig) -> dict[str, str]:
    headers = {"Accept": "application/json", **cfg.headers}
    if cfg.bearer_token is not None:
        headers["Authorization"] = f"Bearer {cfg.bearer_token.get_secret_value()}"
    elif cfg.basic_auth is not None:
        pair = f"{cfg.basic_auth.username}:{cfg.basic_auth.password.get_secret_value()}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode()
    return headers


async def fetch_json(session: aiohttp.ClientSession, cfg: JsonStatsConfig) -> Any:
    """GET/POST the endpoint and decode its JSON; every failure is a CollectorFailure."""
    ssl_arg: ssl.SSLContext | bool = True if cfg.verify_tls else False
    headers = request_headers(cfg)
    try:
        async with session.request(cfg.method, cfg.url, headers=headers,
                                   json=cfg.body, ssl=ssl_arg) as response:
            raw = await read_capped(response, cfg.max_bytes)
            status = response.status
            tracer = trace.active()
            if tracer is not None:
                tracer.exchange(str(response.url), status, response.headers.items(),
                                cfg.method, headers.items())
                tracer.set_payload(raw[:cfg.max_bytes])
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
    if not 200 <= status <= 299:
        raise CollectorFailure("http_status", f"unexpected HTTP status {status}")
    if len(raw) > cfg.max_bytes:
        raise CollectorFailure("too_large", f"response is larger than {cfg.max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CollectorFailure("bad_payload", f"response is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CollectorFailure("bad_payload", f"response is not JSON: {exc}") from None


class JsonStatsCollector:
    """A collector of one JSON statistics endpoint: fetches the payload (URL, auth, size cap
    from the block) and hands it to :meth:`result`, read with the block's ``mapping`` or,
    without one, the subclass's ``native_mapping`` (ioc's own contract)."""

    kind: ClassVar[str]
    Config: ClassVar[type[CollectorConfig]]
    native_mapping: ClassVar[FieldMapping]

    def __init__(self, config: JsonStatsConfig, mapping: FieldMapping | None) -> None:
        self.config = config
        self.mapping = CompiledMapping(mapping or self.native_mapping, config.department_map)
        self.unknown_units = UnknownUnits(config.name)
        self.base = make_labels(config.labels, target=config.name)

    @property
    def host(self) -> str | None:
        return host_of(self.config.url)

    def bind_units(self, departments: frozenset[str],
                   count: Callable[[int], None] | None = None) -> None:
        """Tell the collector the config's department codes, so that a unit code that is
        none of them is noticed (warned once, counted through ``count``, and kept out of the
        province's totals with ``unknown_units: exclude``). The app calls it when it builds
        the target; without it every code is taken as it comes."""
        self.mapping.departments = departments
        self.unknown_units.count = count

    async def collect(self, session: aiohttp.ClientSession, now: float) -> CollectResult:
        return self.result(await fetch_json(session, self.config), now)

    def result(self, payload: Any, now: float) -> CollectResult:
        """The poll's result from a fetched payload (raises CollectorFailure on a bad one)."""
        raise NotImplementedError
