"""The service's own config sections, and the vocabulary every section's errors are told in.

Each package keeps its section with its code (``alerts.config``, a collector's ``Config``,
the sections below for the core and the web layer); ``service.config`` puts them together
into the whole config.yaml. What lives here is what any of them may need: the path-named
``ConfigIssue``/``ConfigError``, ``issues_from_validation`` that turns a pydantic error into
them, and ``${VAR}`` substitution.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ioc.config_types import (
    Duration,
    ListenAddress,
    SecretStr,
    StrictModel,
)
from ioc.event_loop import EventLoopSetting, uvloop_factory
from ioc.rollups_config import RollupsConfig, check_against_raw

# --------------------------------------------------------------------------------------------
# Sections


def check_networks(value: list[str], example: str) -> list[str]:
    """Every item must be an IP network or address (host bits allowed: ``10.0.0.1/8``)."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"not a network: {item!r} (expected e.g. {example})") from None
    return value


class BodyLimitsConfig(StrictModel):
    """Each endpoint reads at most what its requests need: a forged huge ack or sign-in costs
    ioc nothing, while an event push may carry a 1,000-event batch."""

    events: int = Field(1 << 20, ge=1024, le=64 << 20,
                        description="bytes of one event push (POST /api/v1/events)")
    alerts: int = Field(16 << 10, ge=1024, le=64 << 20,
                        description="bytes of an ack, silence or maintenance window body")
    announcement: int = Field(4 << 10, ge=1024, le=64 << 20,
                              description="bytes of an announcement body")
    console: int = Field(4 << 10, ge=1024, le=64 << 20,
                         description="bytes of a console sign-in or sign-out form")


class ServiceConfig(StrictModel):
    listen: ListenAddress = Field("127.0.0.1:8080", description="address of the web server")
    title: str = Field("Trung tâm Giám sát, điều hành thông minh",
                       description="shown on the wall screen and in notifications")
    title_en: str = Field("", max_length=500,
                          description="the title on English pages; empty: title")
    max_concurrent_requests: int = Field(
        64, ge=1, le=10_000, description="API requests answered at once; more get 503")
    max_body_size: int = Field(1 << 20, ge=1024, le=64 << 20,
                               description="bytes of any request body (endpoints cap lower)")
    max_line_size: int = Field(8190, ge=1024, le=65536,
                               description="bytes of the request line (method, URL)")
    max_field_size: int = Field(8190, ge=1024, le=65536, description="bytes of one header")
    body_limits: BodyLimitsConfig = Field(
        default_factory=BodyLimitsConfig,
        description="per-endpoint body caps (413 beyond); max_body_size caps them all")
    event_loop: EventLoopSetting = Field(
        "auto", description="auto: uvloop when installed, else asyncio's loop")
    # Connection discipline (web/connections.py): every connection is bounded in time, in
    # number and in what is buffered for it, so no client can hold the room's screens out.
    header_timeout: Duration = Field(10.0, le=300.0, description="a request whose head is not "
                                     "complete this long after its first byte is closed")
    keepalive_timeout: Duration = Field(30.0, le=3600.0,
                                        description="an idle keep-alive connection is closed")
    write_timeout: Duration = Field(30.0, le=3600.0, description="a client that reads nothing "
                                    "of a pending response for this long is cut off")
    write_buffer: int = Field(256 << 10, ge=16 << 10, le=64 << 20,
                              description="bytes queued for a client before writing waits")
    max_connections: int = Field(2048, ge=4, le=100_000,
                                 description="open connections at once; more get 503")
    max_connections_per_address: int = Field(
        64, ge=1, le=100_000, description="open connections from one client address")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs of reverse proxies whose X-Forwarded-For "
                                          "and X-Forwarded-Proto are believed")

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        return check_networks(value, "127.0.0.1/32 or 10.0.0.0/8")

    @field_validator("event_loop")
    @classmethod
    def _check_event_loop(cls, value: EventLoopSetting) -> EventLoopSetting:
        if value == "uvloop":
            try:
                uvloop_factory()
            except ImportError as exc:
                raise ValueError(
                    f"uvloop cannot be loaded here ({exc}). Hint: pip install uvloop (not "
                    "available on Windows), or set auto to fall back to asyncio's loop") from exc
        return value

    def title_in(self, lang: str) -> str:
        """The title for a page in ``lang``: the English one on English pages, if given."""
        return (self.title_en if lang == "en" else "") or self.title


class LoggingConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


class ProvinceConfig(StrictModel):
    code: str = "HG"
    name: str = "Tỉnh Hậu Giang"
    timezone: str = "Asia/Ho_Chi_Minh"

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (expected e.g. Asia/Ho_Chi_Minh)") \
                from exc
        return value


class DepartmentConfig(StrictModel):
    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)
    name: str = Field(min_length=1)
    kind: Literal["department", "district", "shared"] = "department"


class StorageConfig(StrictModel):
    url: str = Field("sqlite+aiosqlite:///var/ioc.db",
                     description="SQLAlchemy URL: sqlite+aiosqlite:///… or postgresql+asyncpg://…")
    retention: Duration = Field(30 * 86400.0, description="samples older than this are pruned")
    prune_interval: Duration = Field(3600.0, description="how often retention runs")
    # Each flush rewrites the newest page of every series it touches, so on SQLite its cost
    # grows with the number of flushes, not of samples (BENCHMARKS.md, "Probes"): samples go
    # out every few seconds, not as soon as a small batch is full.
    flush_interval: Duration = Field(5.0, description="writer flushes at least this often")
    batch_size: int = Field(200_000, ge=1, le=1_000_000)
    queue_limit: int = Field(1_000_000, ge=1000,
                             description="samples held in memory while the database is away")
    rollups: RollupsConfig = Field(default_factory=RollupsConfig,
                                   description="5-minute and 1-hour rollups for long-range charts")
    auto_migrate: bool = Field(True, description="apply pending schema migrations at start; "
                                                 "false: refuse to start on a database behind "
                                                 "this ioc, apply them with `ioc db upgrade`")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not (value.startswith("sqlite+aiosqlite://")
                or value.startswith("postgresql+asyncpg://")):
            raise ValueError(
                "expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
            )
        return value

    @model_validator(mode="after")
    def _check_rollups(self) -> StorageConfig:
        check_against_raw(self.rollups, self.retention)
        return self


class CollectionConfig(StrictModel):
    interval: Duration = Field(30.0, description="default poll interval of a collector")
    timeout: Duration = Field(10.0, description="default timeout of one poll")
    max_concurrency: int = Field(256, ge=1, le=100_000,
                                 description="polls in flight at once, over all targets")
    max_per_host: int = Field(16, ge=1, le=10_000,
                              description="polls in flight at once against one host:port")
    window: Duration = Field(3600.0, description="how much recent history stays in memory")
    window_points: int = Field(720, ge=2, le=100_000,
                               description="cap on in-memory points per series")
    max_series: int = Field(500_000, ge=1000, le=100_000_000,
                            description="series kept in memory; new ones past it are only "
                                        "stored")
    shard: str = Field("0/1", description="INDEX/COUNT: poll only this instance's share of "
                                          "the targets (ioc.sharding); auto: share them among "
                                          "the live instances (ioc.membership, PostgreSQL)")
    shard_lease: Duration = Field(10.0, description="with shard auto: how long an instance "
                                                    "may poll without proving its membership")

    @field_validator("shard")
    @classmethod
    def _check_shard(cls, value: str) -> str:
        from ioc.sharding import check_shard

        return check_shard(value)

    @field_validator("shard_lease")
    @classmethod
    def _check_lease(cls, value: float) -> float:
        if not 1.0 <= value <= 300.0:
            raise ValueError(f"the lease must be 1s to 5m, got {value:g}s")
        return value


class SimulatorConfig(StrictModel):
    enabled: bool = False
    listen: ListenAddress = "127.0.0.1:8081"
    token: SecretStr | None = Field(None, description="bearer token for fault injection")
    latency_scale: float = Field(1.0, ge=0, le=100)
    portal_time_scale: float = Field(1.0, gt=0, le=100_000,
                                     description="the simulated portal's clock runs this many "
                                                 "times faster from the simulator's start")
    portal_min_monthly: int = Field(0, ge=0, le=10_000,
                                    description="every unit receives at least this many "
                                                "dossiers a month (0: published proportions)")


Role = Literal["viewer", "operator", "ingest", "admin"]


class TokenConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64,
                      description="who holds the token; shown in logs and the audit trail")
    token: SecretStr = Field(description="the secret; write it as ${ENV_VAR}")
    roles: list[Role] = Field(min_length=1)

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters (generate one with "
                             "`openssl rand -hex 24`)")
        return value


def _default_anonymous() -> list[Role]:
    return ["viewer"]


class AuthConfig(StrictModel):
    tokens: list[TokenConfig] = Field(default_factory=list)
    anonymous: list[Role] = Field(default_factory=_default_anonymous,
                                  description="roles of requests without a token")
    max_failures: int = Field(10, ge=1, le=10_000,
                              description="failed credentials a client address may present "
                                          "at once before it gets 429")
    failure_window: Duration = Field(60.0, description="time in which max_failures refill")


WallPanel = Literal["clock", "health", "departments", "backlog", "feedback", "security",
                   "alerts", "indices", "announcement"]
# The one list of the wall's panels, in the order a view shows them (web.wall reads it too).
WALL_PANELS: tuple[WallPanel, ...] = get_args(WallPanel)


def _all_panels() -> list[WallPanel]:
    return list(WALL_PANELS)


class WallViewConfig(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=64,
                      description="the view's address: /wall/NAME")
    title: str = Field("", description="shown in the wall's header; empty: the service title")
    title_en: str = Field("", max_length=500,
                          description="the same on the English wall; empty: title, then "
                                      "the service's English title")
    panels: list[WallPanel] = Field(default_factory=_all_panels, min_length=1)
    departments: list[str] = Field(default_factory=list,
                                   description="department codes whose tiles show; empty: all")


class WallConfig(StrictModel):
    views: list[WallViewConfig] = Field(default_factory=list)
    stale_after: Duration = Field(900.0, description="a panel dims when its data is older")
    offline_after: Duration = Field(15.0, description="the screen says it is offline after "
                                    "this long without a message from the stream")
    heartbeat: Duration = Field(5.0, description="stream heartbeat interval")
    max_clients: int = Field(100, ge=1, le=10_000, description="stream connections at once")
    max_clients_per_address: int = Field(
        20, ge=1, le=10_000, description="stream connections from one client address")
    replay_events: int = Field(1000, ge=10, le=1_000_000,
                               description="recent events kept for Last-Event-ID resume")
    announcement: str = Field("", max_length=500, description="banner text at start")
    sound: bool = Field(False, description="a short tone (made in the page) when a critical "
                                           "alert newly fires")
    allowed_networks: list[str] = Field(default_factory=list,
                                        description="CIDRs that may see the wall; empty: any")

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        return check_networks(value, "10.0.0.0/8 or 192.168.1.20")


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str
    # What the path points into, by name: a collector's `name` (collectors[10] is hard to
    # find in a file of 40 blocks; stttt-health is not). The path stays positional, so it is
    # exact even when the name is missing or duplicated.
    subject: str = ""

    def __str__(self) -> str:
        where = f"{self.path} ({self.subject})" if self.subject else self.path
        return f"{where}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The config is invalid; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} error(s) in config\n{lines}")


def format_path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def short_value(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The model class holding the last key of ``loc``, or None where it is not a model."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return None
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type)
                        and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts at ``loc`` (for an "unknown key" hint)."""
    return sorted(getattr(_model_at(model, loc), "model_fields", {}))


def _is_secret(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """Whether ``loc`` is a secret field, whose value an error must never quote back."""
    if not loc:
        return False
    info = getattr(_model_at(model, loc), "model_fields", {}).get(loc[-1])
    pending = [getattr(info, "annotation", None)]
    while pending:  # through Optional[...] and Annotated[SecretStr, ...]
        annotation = pending.pop()
        if annotation is SecretStr:
            return True
        pending.extend(getattr(annotation, "__args__", ()))
        origin = getattr(annotation, "__origin__", None)
        if origin is not None and origin is not annotation:
            pending.append(origin)
    return False


def issues_from_validation(exc: ValidationError, prefix: tuple[Any, ...],
                           model: type[BaseModel]) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = format_path(prefix + loc)
        kind = err["type"]
        if kind == "missing":
            message = "required key is missing"
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            message = f"unknown key{hint}"
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            message = msg
            if "input" in err and not msg.endswith(repr(err["input"])) \
                    and kind not in ("dict_type", "list_type", "model_type", "ioc_config") \
                    and not _is_secret(model, loc):
                message += f" (got {short_value(err['input'])})"
        issues.append(ConfigIssue(path, message))
    return issues


# --------------------------------------------------------------------------------------------
# Environment substitution

_ENV_REF = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?::-([^}]*))?\}|\$\$")


def _referenced(root: Any, name: str) -> Any:
    """The value at a dotted key path (``simulator.listen``) of the parsed document."""
    node = root
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def substitute_env(data: Any, env: Mapping[str, str], path: tuple[Any, ...] = (),
                   issues: list[ConfigIssue] | None = None,
                   used: list[str] | None = None, root: Any = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string value; ``$$`` is a ``$``.

    Done on the parsed YAML (not the raw text) so a secret containing ``:`` or ``#`` cannot
    change the document's structure. Values taken from the environment are remembered in
    ``used`` so the log formatter can mask them.

    A dotted name refers to another key of the same file instead: ``${simulator.listen}``
    is that key's value (itself substituted), so one setting can feed many (the demo's 38
    collector URLs follow the simulator's address). A reference must name a string or
    number, and may not lead to another reference (no chains, no cycles).
    """
    if issues is None:
        issues = []
    if root is None:
        root = data
    if isinstance(data, dict):
        return {k: substitute_env(v, env, (*path, k), issues, used, root)
                for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_env(v, env, (*path, i), issues, used, root)
                for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def reference(name: str) -> str:
        value = _referenced(root, name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            issues.append(ConfigIssue(
                format_path(path), f"${{{name}}} refers to no string or number in this file"))
            return ""
        text = str(value)
        if any("." in m.group(1) for m in _ENV_REF.finditer(text) if m.group(1)):
            issues.append(ConfigIssue(
                format_path(path), f"${{{name}}} refers to a value with a reference of its "
                                   "own; refer to the variable it uses instead"))
            return ""
        # the referenced key's own substitution reports its problems and records secrets
        return str(substitute_env(text, env, path, [], None, root))

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if "." in name:
            return reference(name)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                issues.append(ConfigIssue(
                    format_path(path),
                    f"environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"))
                return ""
            return default
        if used is not None and value:
            used.append(value)
        return value

    return _ENV_REF.sub(repl, data)


