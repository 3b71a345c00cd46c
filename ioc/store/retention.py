"""Deleting samples older than the retention period.

Kept apart from the writer so the service decides when retention runs (and a one-off
maintenance command can call :func:`prune_once`), and so a slow prune never delays writes
beyond the short transactions the store itself uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ioc.store.base import Store, StoreError

log = logging.getLogger("ioc.store")


async def prune_once(store: Store, retention_seconds: float, now: float) -> int:
    """Delete samples older than ``now - retention_seconds``; return how many went."""
    if retention_seconds <= 0:
        raise ValueError(f"retention_seconds must be positive, got {retention_seconds}")
    return await store.prune(now - retention_seconds)


async def prune_loop(store: Store, retention_seconds: float, interval_seconds: float,
                     clock: Callable[[], float] = time.time) -> None:
    """Prune now and then every ``interval_seconds`` until cancelled.

    A failed prune is logged and tried again next interval: retention is housekeeping, and
    the samples it missed are simply deleted a little later.
    """
    if interval_seconds <= 0 or retention_seconds <= 0:
        raise ValueError("retention_seconds and interval_seconds must be positive")
    while True:
        started = time.monotonic()
        try:
            removed = await prune_once(store, retention_seconds, clock())
        except StoreError as exc:
            log.warning("store %s: retention prune failed, will retry in %.0f s: %s",
                        store.url_for_display, interval_seconds, exc)
        except Exception:
            log.exception("store %s: retention prune failed unexpectedly",
                          store.url_for_display)
        else:
            log.info("store %s: pruned %d samples older than %.0f s in %.1f s",
                     store.url_for_display, removed, retention_seconds,
                     time.monotonic() - started)
        await asyncio.sleep(interval_seconds)
