"""The task that keeps the incident ledger up to date, on the alert leader only.

Every ``interval`` it asks :meth:`IncidentStore.sync` to derive the incidents of the polls
stored since the last run. Only the instance that leads alerting runs it (with one
instance, always that one): with shards sharing PostgreSQL the others would derive the same
rows, and two writers upserting the same incidents could deadlock. The leader fence is
checked inside the sync's transaction, so an instance that has just lost the lead writes
nothing. A failed run is logged and retried at the next tick; since the ledger is a
function of the stored polls, nothing is lost by a skipped run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from ioc.incidents import Window
from ioc.logs import fields
from ioc.store.base import StoreError
from ioc.store.incidents import Fence, IncidentStore
from ioc.store.rollups import LateWrites

log = logging.getLogger("ioc.incidents")

# How often the leader reads new polls into the ledger: an incident shows within a minute
# of its first failed poll, and each run reads only the polls stored since the last.
INCIDENT_SYNC_INTERVAL = 30.0


class IncidentJob:
    def __init__(self, store: IncidentStore, *, interval: float, leading: Callable[[], bool],
                 fence: Callable[[], Fence | None],
                 windows: Callable[[], Sequence[Window]], clock: Callable[[], float],
                 late: LateWrites | None = None) -> None:
        self.store = store
        self.interval = interval
        self.leading = leading
        self.fence = fence
        self.windows = windows
        self.clock = clock
        self.late = late
        self.failing = False

    async def run_once(self) -> int | None:
        """One sync if this instance leads; the number of incidents written, or None."""
        if not self.leading():
            return None
        try:
            written = await self.store.sync(self.clock(), self.windows(), self.fence(),
                                            self.late)
        except StoreError as exc:  # NotLeaderError too: the next leader takes over
            if not self.failing:
                log.warning("cannot update the incident ledger", extra=fields(error=str(exc)))
            self.failing = True
            return None
        if self.failing:
            log.info("incident ledger updated again")
        self.failing = False
        return written

    async def run_forever(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)
