"""The storage contract every backend implements.

The store knows nothing about HTTP, collectors or alerts: it keeps series and answers range
queries. One writer task (``ioc.store.writer``) is the only caller of ``append`` in the running
service; readers (the web API) call ``query_range`` concurrently and never wait on the writer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from ioc.model import Sample, Series


class StoreError(Exception):
    """A store operation failed in a way the caller may retry (database locked, restarting)."""


class NotLeaderError(StoreError):
    """A write only the alert leader may make was refused: this instance no longer leads."""


class Fence(Protocol):
    """Proof, checked inside a write transaction, that this instance still leads (ioc.leader).

    Shared tables that only the alert leader writes (alert state, outbox, notification log)
    take one: a leader cut off between two of its own checks then cannot write what its
    successor also writes.
    """

    async def verify(self, conn: AsyncConnection) -> None:
        """Raise NotLeaderError unless the leader's lock is still held."""


class Store(Protocol):
    url_for_display: str  # the database URL with any password masked, safe to log

    async def open(self) -> None:
        """Connect and bring the schema to this ioc's migrations (:mod:`ioc.store.migrate`)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached; used by /readyz."""

    async def append(self, samples: Sequence[Sample]) -> None:
        """Write samples in one transaction. Raises StoreError on a retryable failure."""

    async def query_range(self, metric: str, matchers: Mapping[str, str],
                          start: float, end: float, step: float) -> list[Series]:
        """Series of ``metric`` whose labels equal every matcher, downsampled to ``step``."""

    async def prune(self, older_than: float) -> int:
        """Delete samples with ts < older_than; return how many were removed."""


T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in runs of at most ``size``: one statement's ``IN (...)`` each, so no
    statement exceeds a database's limit on bound parameters."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
