"""A bounded buffer drained in batches by one task: what ioc's batching writers share.

The store writer (``ioc.store.writer``), each remote-write endpoint (``ioc.remote_write``) and
the security-event sink (``ioc.event_sink``) all accept items from producers that must never
wait, hold them in a bounded FIFO, and move them on in batches from one background task that
retries a failing batch. What they share is here, once: the buffer with the batch in flight
(which still counts as queued and goes back to the head when it could not be written), the
drop-oldest overflow policy, the wait between batches, and a stop that gives the task a
deadline to write what is left, which its retries and their backoff honour.

What they do with a batch, what they count, and whether they drop the oldest or refuse the
newest when full stays with each of them. Written by hand: asyncio.Queue has no batch take,
no put-back at the head and no drop-oldest, and a library for these few lines would cost more
than it saves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Pushed(NamedTuple):
    """What :meth:`Batches.push_dropping_oldest` did."""

    added: int        # items of the new ones now buffered
    dropped: int      # items lost to make room (buffered ones first, then the oldest new)
    from_buffer: int  # of ``dropped``, how many had been buffered already


class Batches(Generic[T]):
    """The bounded buffer, the batch in flight, and the stop deadline of one writer task."""

    def __init__(self, *, limit: int, batch_size: int, flush_interval: float,
                 stop_timeout: float) -> None:
        if limit < 1 or batch_size < 1 or flush_interval <= 0 or stop_timeout < 0:
            raise ValueError("limit, batch_size and flush_interval must be positive")
        self.limit = limit
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.stop_timeout = stop_timeout
        self.buffer: deque[T] = deque()
        self.inflight: list[T] = []   # the batch being written; still counts as queued
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.deadline: float | None = None  # loop time by which a stopping task gives up

    @property
    def queued(self) -> int:
        """Items accepted and not yet written or dropped."""
        return len(self.buffer) + len(self.inflight)

    @property
    def room(self) -> int:
        return max(0, self.limit - self.queued)

    # -- producers ------------------------------------------------------------------------

    def push(self, items: Sequence[T]) -> None:
        """Buffer ``items`` (the caller made sure they fit); a full batch wakes the task."""
        self.buffer.extend(items)
        if len(self.buffer) >= self.batch_size:
            self.wake.set()

    def push_dropping_oldest(self, items: Sequence[T]) -> Pushed:
        """Buffer ``items``; when they do not fit, the oldest go first: those already buffered,
        then (a batch larger than the whole buffer) the oldest of ``items``."""
        overflow = len(items) - (self.limit - self.queued)
        if overflow <= 0:
            self.push(items)
            return Pushed(len(items), 0, 0)
        from_buffer = min(overflow, len(self.buffer))
        for _ in range(from_buffer):
            self.buffer.popleft()
        kept = items[overflow - from_buffer:]
        self.push(kept)
        return Pushed(len(kept), overflow, from_buffer)

    # -- the writer task ------------------------------------------------------------------

    async def idle(self, *, urgent: bool = False) -> None:
        """Wait until a batch is full, the task is woken (a flush, a stop) or the flush
        interval passed; not at all when stopping, ``urgent`` or a batch is already full."""
        if not (urgent or self.stopping.is_set() or len(self.buffer) >= self.batch_size):
            with suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.flush_interval)
        self.wake.clear()

    def take(self, count: int) -> list[T]:
        """Move the ``count`` oldest buffered items into the batch in flight."""
        popleft = self.buffer.popleft
        self.inflight = [popleft() for _ in range(min(count, len(self.buffer)))]
        return self.inflight

    def settle(self, written: bool) -> None:
        """End the batch in flight: gone when ``written``, else back at the buffer's head."""
        if not written:
            self.buffer.extendleft(reversed(self.inflight))
        self.inflight = []

    def clear(self) -> int:
        """Forget everything queued (a stop that ran out of time); returns how many."""
        lost = self.queued
        self.buffer.clear()
        self.inflight = []
        return lost

    def past_deadline(self) -> bool:
        return self.deadline is not None and asyncio.get_running_loop().time() >= self.deadline

    async def backoff(self, delay: float) -> None:
        """Sleep before a retry. A stop cuts the sleep short (the retry happens at once); once
        stopping, never sleep past the deadline."""
        if not self.stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            return
        remaining = (self.deadline or 0.0) - asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, min(delay, remaining)))

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Let ``task`` write what is buffered until the deadline (``stop_timeout`` from now),
        which it honours itself; the grace of one more second covers a write that ignores
        cancellation for a moment, after which the task is cancelled. What is still queued
        afterwards is the caller's to count as lost (:meth:`clear`)."""
        self.deadline = asyncio.get_running_loop().time() + self.stop_timeout
        self.stopping.set()
        self.wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.stop_timeout + 1.0)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def restart(self) -> None:
        """Ready for a new task after a stop."""
        self.stopping.clear()
        self.deadline = None
