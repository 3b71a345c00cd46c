"""The other shards' targets on this instance's status board, read from the shared store.

With ``collection.shard i/N`` every instance polls only its share, but operators look at
whichever wall or API they have open, and each must show the whole province. So every
instance also registers the targets other shards own (``TargetState.remote``), and this
module reads, every wall heartbeat, the samples their owners stored — the same three series
a local poll puts on the board: ``ioc_target_up`` (the poll's verdict),
``ioc_target_state_up`` (the debounced state) and ``ioc_probe_duration_seconds`` — and
records each poll it has not seen yet on the board, as the pipeline does for a local one.

Nothing read here enters the sample cache, so ``/metrics`` exports only what this instance
collected and Prometheus sees no series twice across instances. The board keeps the owner's
real poll times: a target whose owner stopped goes stale on every wall as it would on the
owner's. A remote target with no stored poll yet stays unknown ("chưa có dữ liệu"), like a
local one before its first poll. The stored samples carry no failure reason, so a remote
target that is down shows no reason.

The reads are the store tail's (ioc.store.tail): one probe of the samples' primary key per
followed series. Each read reaches ``overlap`` seconds back, because a sample is stored a
while after its timestamp; polls already recorded are skipped. The first read reaches back
``backfill`` seconds, so a target whose owner stopped before this instance started shows its
last poll (stale) rather than nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from ioc import clock
from ioc.logs import fields
from ioc.sharding import Ownership
from ioc.status import StatusBoard
from ioc.store.base import StoreError
from ioc.store.tail import SeriesRow, TailStore
from ioc.tasks import cancel_and_wait
from service.store_tail import CLOCK_SKEW

if TYPE_CHECKING:
    from service.config import Config

log = logging.getLogger("ioc.shared_board")

UP, STATE_UP, DURATION = "ioc_target_up", "ioc_target_state_up", "ioc_probe_duration_seconds"
_FOLLOWED = frozenset({UP, STATE_UP, DURATION})


@dataclass(slots=True)
class _Poll:
    """The samples one stored poll left, keyed by metric; the up sample may come alone."""

    up: float | None = None
    state_up: float | None = None
    duration: float | None = None


class SharedBoard:
    def __init__(self, store: TailStore, board: StatusBoard, *, every: float, overlap: float,
                 backfill: float,
                 on_update: Callable[[Collection[str], float], None] | None = None,
                 wall_clock: Callable[[], float] = clock.now) -> None:
        self.store = store
        self.board = board
        self.every = every
        self.overlap = overlap
        self.backfill = backfill
        self.on_update = on_update    # departments whose targets changed, and when
        self._clock = wall_clock
        self._series: dict[int, tuple[str, str] | None] = {}  # id -> (metric, target)
        self._seen: dict[str, int] = {}  # target -> ts (ms) of the last poll recorded
        self._read_to: float | None = None
        self._task: asyncio.Task[None] | None = None
        # One read at a time: a takeover (service.app) reads at once beside the heartbeat's read,
        # and two reads of the same polls must not count them twice on the board.
        self._reading = asyncio.Lock()
        self._failing = False

    async def start(self) -> None:
        await self.store.open()
        self._task = asyncio.create_task(self._run(), name="ioc-shared-board")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.store.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll(self._clock())
                if self._failing:
                    self._failing = False
                    log.info("other shards' targets read again")
            except StoreError as exc:  # their states age and go stale, honestly
                if not self._failing:
                    self._failing = True
                    log.warning("other shards' targets not read; retrying",
                                extra=fields(error=str(exc)))
            except Exception:
                log.exception("other shards' targets not read")
            await asyncio.sleep(self.every)

    async def poll(self, now: float) -> set[str]:
        """Record the remote targets' polls stored since the last read; returns the
        departments whose targets got a new poll."""
        async with self._reading:
            return await self._poll(now)

    async def _poll(self, now: float) -> set[str]:
        remote = {name for name, state in self.board.targets.items() if state.remote}
        since = now - self.backfill if self._read_to is None else self._read_to - self.overlap
        ids = await self._followed_ids(remote)
        polls: dict[str, dict[int, _Poll]] = {}
        if ids:
            for sid, ts_ms, value in await self.store.samples(ids, round(since * 1000),
                                                                round(now * 1000)):
                followed = self._series[sid]
                assert followed is not None
                metric, target = followed
                if ts_ms <= self._seen.get(target, -1):
                    continue  # recorded in an earlier read (the overlap reads it again)
                poll = polls.setdefault(target, {}).setdefault(ts_ms, _Poll())
                if metric == UP:
                    poll.up = value
                elif metric == STATE_UP:
                    poll.state_up = value
                else:
                    poll.duration = value
        self._read_to = now
        for gone in set(self._seen) - remote:  # removed from the config, or now polled here
            del self._seen[gone]
        changed: set[str] = set()
        for target, by_ts in polls.items():
            state = self.board.targets.get(target)
            if state is None or not state.remote:
                continue
            for ts_ms in sorted(by_ts):
                poll = by_ts[ts_ms]
                if poll.up is None:
                    continue  # the rest of that poll's samples are read with its up sample
                duration = poll.duration or 0.0
                self.board.record(
                    target, up=poll.up == 1.0, ts=ts_ms / 1000 + duration,
                    latency=poll.duration, value=None, reason=None, error=None,
                    state_up=None if poll.state_up is None else poll.state_up == 1.0)
                self._seen[target] = ts_ms
                changed.add(state.department)
        if changed and self.on_update is not None:
            self.on_update(changed, now)
        return changed

    async def _followed_ids(self, remote: set[str]) -> list[int]:
        await self.store.learn_series(self._series, _board_series)
        return [sid for sid, f in self._series.items() if f is not None and f[1] in remote]


def _board_series(row: SeriesRow) -> tuple[str, str] | None:
    """(metric, target) of a series the board is built from; None for every other series."""
    target = dict(row.labels).get("target")
    return (row.metric, target) if row.metric in _FOLLOWED and target is not None else None


def build_shared_board(config: Config, board: StatusBoard, shard: Ownership,
                       on_update: Callable[[Collection[str], float], None]
                       ) -> SharedBoard | None:
    """The reader of the other shards' targets, when there are other shards sharing a
    PostgreSQL store (else None: with SQLite each instance has a store of its own, and the
    other shards' targets are not shown at all rather than shown as never polled)."""
    if not shard.sharded or make_url(config.storage.url).get_backend_name() != "postgresql":
        return None
    longest_interval = max((config.interval_of(c) for c in config.collectors), default=0.0)
    longest_timeout = max((config.timeout_of(c) for c in config.collectors), default=0.0)
    overlap = config.storage.flush_interval + longest_timeout + CLOCK_SKEW
    return SharedBoard(
        TailStore(config.storage.url), board, every=config.wall.heartbeat, overlap=overlap,
        # far enough back to show a stopped owner's last polls as stale, not as "no data"
        backfill=max(config.wall.stale_after, 3 * longest_interval + overlap),
        on_update=on_update)
