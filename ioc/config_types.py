"""Building blocks shared by the config models of ioc and of every collector.

Kept apart from ``ioc.config`` so that collector modules can define their own config models
without importing the loader (which imports the collector registry).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """Turn ``15s``, ``5m``, ``1h30m``, ``30d`` or ``500ms`` into seconds.

    Bare numbers are refused on purpose: ``interval: 30`` is ambiguous to a reader, and the
    config is read by people on call at night.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"expected a duration such as 15s, 5m, 1h or 30d, got {value!r}"
        )
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"expected a duration such as 15s, 5m, 1h or 30d (units ms, s, m, h, d, w), "
            f"got {value!r}"
        )
    if total <= 0:
        raise ValueError(f"duration must be greater than zero, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest config spelling of a duration, for messages and docs."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _parse_listen(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    split_listen(value)
    return value


def split_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8080`` for IPv6) and check the port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"expected HOST:PORT with a host, got {value!r}")
    return host, port


ListenAddress = Annotated[str, BeforeValidator(_parse_listen)]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=128)]


class StrictModel(BaseModel):
    """Every config model rejects unknown keys: a typo must not silently do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectorConfig(StrictModel):
    """Keys every collector accepts; each collector type adds its own."""

    type: str
    name: Name = Field(description="unique target name; the `target` label of its series")
    department: str = Field(description="code of the department that owns the target")
    interval: Duration | None = Field(default=None, description="defaults to collection.interval")
    timeout: Duration | None = Field(default=None, description="defaults to collection.timeout")
    labels: dict[str, str] = Field(default_factory=dict)
    failure_threshold: int = Field(
        default=1, ge=1, le=100, description="failed polls in a row before the target is down")
    recovery_threshold: int = Field(
        default=1, ge=1, le=100, description="good polls in a row before it is up again")


def _long_secret(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 16:
        raise ValueError("at least 16 characters (e.g. `openssl rand -hex 32`)")
    return value


# An HMAC key of links that are their own credential (on-call ack links, report downloads).
SigningSecret = Annotated[SecretStr, AfterValidator(_long_secret)]


__all__ = [
    "CollectorConfig",
    "Duration",
    "ListenAddress",
    "Name",
    "SecretStr",
    "SigningSecret",
    "StrictModel",
    "format_duration",
    "parse_duration",
    "split_listen",
]
