"""The collector protocol: the one extension point for polling something.

A collector turns one poll of one target into a ``CollectResult``. It does not schedule itself,
enforce its own timeout, write metrics or log failures: ``ioc.runner`` does that once for every
collector, so each collector module stays a small fetch-and-parse.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import aiohttp

from ioc.config_types import CollectorConfig
from ioc.model import CollectResult


class CollectorFailure(Exception):
    """Raised by a collector to report a classified failure (reason is one of FAILURE_REASONS)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_PHASE_ATTR = "ioc_timeout_phase"


def mark_interrupted_phase(exc: BaseException, phase: str) -> None:
    """Note on a cancellation which phase of the check it cut short.

    The runner enforces the deadline of the whole check, so it only sees a timeout; a
    collector tags the cancellation on its way out so that a timeout while connecting can be
    reported as ``connect_timeout`` rather than ``timeout``.
    """
    setattr(exc, _PHASE_ATTR, phase)


def interrupted_phase(exc: BaseException) -> str | None:
    """The phase a timeout cut short, from the cancellation it was raised from."""
    cause = exc.__cause__ or exc.__context__
    return getattr(cause, _PHASE_ATTR, None) if cause is not None else None


class Collector(Protocol):
    kind: ClassVar[str]                          # the `type:` in config.yaml
    Config: ClassVar[type[CollectorConfig]]      # the pydantic model of its config block

    @property
    def config(self) -> CollectorConfig:
        """The validated config block this instance polls for."""

    @property
    def host(self) -> str | None:
        """The host this collector talks to, for the per-host concurrency limit."""

    async def collect(self, session: aiohttp.ClientSession, now: float) -> CollectResult:
        """Poll the target once. Raise CollectorFailure (or anything) on failure."""
