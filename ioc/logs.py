"""Structured logs: one line per event, logfmt or JSON, with secrets masked.

Written on the standard ``logging`` module (a small formatter and filter, not a framework):
every library already logs through it, and this way their lines come out in the same shape.
Context goes in ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_RESERVED = {"fields"}


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\\\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class SecretMasker(logging.Filter):
    """Replaces every known secret value with ``***`` in the final message and fields.

    Secrets are the values the config took from the environment; they should never be logged
    in the first place, this is the net under that rule.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= 4)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self.mask(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: self.mask(str(v)) for k, v in fields.items()}
        return True


class StructuredFormatter(logging.Formatter):
    def __init__(self, fmt: str = "logfmt") -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry[key if key not in entry else f"field_{key}"] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc"] = self.formatException(record.exc_info)
        if self.fmt == "json":
            return json.dumps(entry, ensure_ascii=False, default=str)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in entry.items())


def setup_logging(level: str = "info", fmt: str = "logfmt", secrets: Iterable[str] = (),
                  stream: Any = None) -> None:
    """Configure the root logger once for the process (called by the CLI only)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(fmt))
    handler.addFilter(SecretMasker(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, root.level))
    # Alembic narrates every migration (its context, DDL mode, each revision's docstring);
    # ioc.store says in one line what changed ("schema upgraded from … to …"). Its own lines
    # come back with `logging.level: debug`, for whoever is debugging a migration.
    logging.getLogger("alembic").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else max(logging.WARNING, root.level))


def fields(**kw: Any) -> dict[str, Any]:
    """Shorthand: ``log.info("target down", extra=fields(target=name))``."""
    return {"fields": kw}
