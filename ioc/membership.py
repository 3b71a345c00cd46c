"""``--shard auto``: the live instances share the targets, and cover for one that stops.

With static ``--shard i/N`` a stopped instance's targets are polled by nobody until a person
starts it again. With ``auto`` every instance joins a member set kept in PostgreSQL and owns
the targets whose rendezvous hash it wins among the **live** members (ioc.sharding's
``owner_among``), so when one dies the others take its share, and when it returns only its
share moves back.

**A member is a session advisory lock on a slot.** An instance takes the lowest free slot
``0…1023`` (lock ``ioc_sh`` + slot) on a connection of its own, outside SQLAlchemy's pools,
and the live members are the slots whose locks are granted (``pg_locks``). A lock rather
than lease rows with an expiry because:

* a member that dies (``kill -9``, OOM, a crash) ends its session at once, and PostgreSQL
  releases the lock at once: survivors take over at their next check, not a lease later;
* it needs no table, no migration, no clocks compared across hosts, and no writes every few
  seconds; the alert leader (ioc.leader) already proves the same mechanism;
* a member whose host vanishes without closing its socket is let go by the server after the
  lease: the session asks for TCP keepalives and a user timeout of ``lease`` seconds;
* a member whose process hangs with its socket open (SIGSTOP, a blocked event loop) keeps its
  lock, but its session then runs no check: the others leave out a member whose session has
  been silent for longer than a lease (``pg_stat_activity.state_change``, on the server's
  clock) and end that session. This is the lease of lease rows, kept without writing any.

Slots are small integers, and a restarted instance takes the lowest free slot — the one it
left — so its share comes back to it; slot numbers are what the status API shows as ``shard``.
An instance back from a partition may find its old session still holding its slot (the server
has not let it go yet): it ends that session itself and takes the slot back, rather than
joining under another slot and moving more targets than its own.

**Each check** (every *cadence*: a quarter of the lease, at most half the shortest poll
interval) reads the member set and proves this instance's own lock is held by its own session.
The proof's time is taken before the query is sent. Every poll starts only if the target is
owned in the current view **and** that view was proven less than one lease ago
(:meth:`AutoShard.may_poll`, the fence: the view and its proof are read at each poll start,
which is what a membership epoch read there would give without a query per poll). A check
that fails (PostgreSQL away, the session terminated, a timeout) ends the membership at once:
every target is let go, the connection is dropped so the lock goes too, ``/readyz`` says why,
and the next checks try to join again.

**Moves.** A target whose previous owner has left is started at once (a takeover); one whose
previous owner is still live (this instance joined or came back) only after one more check,
by when that owner has seen the change and stopped polling it — so a target is polled twice
for at most about a check's latency, and never for more than one interval while the cadence is
at most half of it. Started targets resume from their stored state (the debounced state and
the counts of failed or good polls in a row, read from the shared store), so a takeover sends
no false "down" or "recovered".
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from ioc import clock
from ioc.logs import fields
from ioc.sharding import MAX_SHARDS, owner_among

log = logging.getLogger("ioc.membership")

# The advisory lock of member slot s is SLOT_BASE + s. "ioc_sh" in the high bytes: the
# classid (high 32 bits) is "ioc_" like every ioc lock, the objid "sh" + the slot.
SLOT_BASE = int.from_bytes(b"ioc_sh\x00\x00", "big")
_CLASSID = SLOT_BASE >> 32
_OBJID = SLOT_BASE & 0xFFFF_FFFF

# Granted slot locks in this database: slot, server pid of the holding session, and seconds
# since that session last changed state (a member's checks keep it under a cadence), all by
# the server's clock.
_MEMBERS = f"""SELECT l.objid::bigint - {_OBJID} AS slot, l.pid,
       coalesce(extract(epoch FROM now() - a.state_change), 0)::float8 AS silent
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid = {_CLASSID}::oid
      AND l.objid BETWEEN {_OBJID}::oid AND {_OBJID + MAX_SHARDS - 1}::oid
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# What a check may meet on its session besides those: asyncpg's own client errors (a session
# left mid-protocol, "another operation is in progress"). Whatever it is, the membership is
# not proven, so it is lost rather than left standing on an old proof.
_CHECK_ERRORS = (*_DB_ERRORS, asyncpg.exceptions.InternalClientError)


def cadence_for(lease: float, shortest_interval: float) -> float:
    """How often a member checks: four times a lease, and at least twice an interval, so a
    change is seen well within both (never faster than 20 checks a second)."""
    bound = lease / 4
    if shortest_interval > 0:
        bound = min(bound, shortest_interval / 2)
    return min(max(bound, 0.05), 5.0)


def timeout_for(lease: float) -> float:
    """How long one check may take: a cadence plus this stays within half a lease, so a
    member gives up well before the server would let its session go."""
    return min(max(lease / 4, 0.1), 5.0)


@dataclass(frozen=True, slots=True)
class Change:
    """What one check changed: targets to start here, and targets to stop polling."""

    gained: frozenset[str] = frozenset()
    lost: frozenset[str] = frozenset()
    owners: dict[str, int | None] = field(default_factory=dict)  # new owner of each lost


class MembershipMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.member = Gauge(
            "ioc_shard_member",
            "With collection.shard auto: 1 while this instance holds a proven membership "
            "(it polls its share), 0 while it joins or has lost PostgreSQL.",
            registry=registry)
        self.members = Gauge(
            "ioc_shard_members",
            "With collection.shard auto: live instances seen in the member set at the last "
            "check (0 when this instance is not a member).", registry=registry)
        self.owned = Gauge(
            "ioc_shard_targets_owned",
            "With collection.shard auto: targets this instance owns and polls.",
            registry=registry)
        self.takeovers = Counter(
            "ioc_shard_takeovers",
            "With collection.shard auto: targets this instance took over from a member that "
            "left (died, lost PostgreSQL or stopped).", registry=registry)
        self.changes = Counter(
            "ioc_shard_ownership_changes",
            "With collection.shard auto: targets this instance started (gained) or stopped "
            "(released) polling because the member set changed.", ["change"],
            registry=registry)
        for change in ("gained", "released"):
            self.changes.labels(change=change)


Apply = Callable[[Change], Awaitable[None]]


class AutoShard:
    """This instance's member slot, the live members and the targets it owns.

    ``on_change`` applies each change (starts and stops polls); it runs from the
    membership's own task, one change at a time, after the view it follows is in place.
    """

    sharded = True

    def __init__(self, dsn: str, *, lease: float, shortest_interval: float,
                 targets: Callable[[], Collection[str]], metrics: MembershipMetrics,
                 shown_as: str = "PostgreSQL",
                 wall_clock: Callable[[], float] = clock.now) -> None:
        self._dsn = dsn  # secret: never logged
        self.lease = lease
        self.cadence = cadence_for(lease, shortest_interval)
        self.timeout = timeout_for(lease)
        self.targets = targets
        self.metrics = metrics
        self._shown_as = shown_as
        self._clock = wall_clock
        self.on_change: Apply | None = None
        self.slot: int | None = None
        self.members: tuple[int, ...] = ()
        self.owned: frozenset[str] = frozenset()
        self.proven_at: float | None = None
        self.epoch = 0  # counts the member sets this instance has seen
        self.status = "joining"
        self._pending: frozenset[str] = frozenset()  # owned, started at the next check
        self._conn: asyncpg.Connection | None = None
        self._previous: tuple[int, int] | None = None  # (slot, server pid) of a lost session
        self._task: asyncio.Task[None] | None = None
        self._halting = asyncio.Event()

    def __str__(self) -> str:
        return "auto" if self.slot is None else f"auto (slot {self.slot})"

    # -- what the rest of ioc asks ---------------------------------------------------------

    def owns(self, target: str) -> bool:
        """Whether this instance polls ``target`` now (started, not merely assigned)."""
        return target in self.owned and target not in self._pending

    def owner_of(self, target: str) -> int | None:
        """The slot of the member that polls ``target`` in this instance's view."""
        return owner_among(target, self.members) if self.members else None

    def may_poll(self, target: str, now: float) -> bool:
        """The fence at each poll start: owned, and the view proven within one lease."""
        return (self.proven_at is not None and now - self.proven_at < self.lease
                and self.owns(target))

    @property
    def ready(self) -> str:
        """``ok`` while a proven member, else why not (for ``/readyz``)."""
        if self.status == "member" and self.may_prove(self._clock()):
            return "ok"
        return self.status if self.status != "member" else "membership not proven"

    def may_prove(self, now: float) -> bool:
        return self.proven_at is not None and now - self.proven_at < self.lease

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Join now (alone, this instance owns everything at once), then check on."""
        await self.step()
        self._task = asyncio.create_task(self._run(), name="ioc-shard-membership")

    async def halt(self) -> None:
        """Stop checking (before the polls stop); the lock is kept until :meth:`close`.

        A check under way is let finish (each query has its timeout), never cancelled: a
        query cancelled midway leaves the session unusable for the next one."""
        task, self._task = self._task, None
        if task is not None:
            self._halting.set()
            await asyncio.gather(task, return_exceptions=True)
            self._halting.clear()

    async def close(self) -> None:
        """Leave the member set (after the polls stopped): the others take over at once."""
        await self.halt()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=self.timeout)
            except _DB_ERRORS:
                conn.terminate()
        if self.slot is not None:
            log.info("left the shard member set (stopping)", extra=fields(slot=self.slot))
        self._forget()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._halting.wait(), self.cadence)
                return
            except TimeoutError:
                pass
            await self.step()

    async def step(self) -> None:
        """One check: join if needed, read the member set, apply what changed."""
        try:
            await self._step()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not end the membership; the next check retries
            log.exception("shard membership check failed")

    async def _step(self) -> None:
        now = self._clock()  # the proof's time: before anything is asked
        conn = await self._connection()
        if conn is None:
            return
        try:
            if self.slot is None:
                await self._join(conn)
                if self.slot is None:
                    return
            rows = await conn.fetch(_MEMBERS, timeout=self.timeout)
            mine = conn.get_server_pid()
            if not any(int(r["slot"]) == self.slot and r["pid"] == mine for r in rows):
                await self._lose("this instance's member lock is no longer held")
                return
            silent = [r for r in rows if r["pid"] != mine and r["silent"] > self.lease]
            for row in silent:
                await self._end_silent(conn, int(row["slot"]), row["pid"], row["silent"])
        except _CHECK_ERRORS as exc:
            await self._lose(f"{type(exc).__name__}: {exc}"[:200])
            return
        gone = {int(r["slot"]) for r in silent}
        members = tuple(sorted(int(r["slot"]) for r in rows if int(r["slot"]) not in gone))
        self.proven_at = now
        if self.status != "member":
            log.info("this instance is a shard member", extra=fields(
                slot=self.slot, members=",".join(map(str, members)), store=self._shown_as))
            self.status = "member"
            self.metrics.member.set(1)
        await self._apply(members)

    async def _end_silent(self, conn: asyncpg.Connection, slot: int, pid: int,
                          silent: float) -> None:
        """A member whose session ran no check for longer than a lease — its process hung or
        stopped (SIGSTOP, a blocked loop) while its socket stays open, so neither it nor the
        server lets go — no longer counts: its own fence stopped its polls a lease after its
        last proof, and ending its session frees its slot (it rejoins if it wakes up)."""
        try:
            await conn.fetchval("SELECT pg_terminate_backend($1)", pid, timeout=self.timeout)
        except asyncpg.InsufficientPrivilegeError:
            # another role's session: it is left out of the members all the same, and
            # counted again once its checks run (if it wakes up)
            log.warning("a shard member silent for over a lease is left out; its session "
                        "cannot be ended by this role", extra=fields(slot=slot))
            return
        log.warning("ended the session of a shard member silent for over a lease",
                    extra=fields(slot=slot, silent_seconds=round(silent, 1)))

    async def _join(self, conn: asyncpg.Connection) -> None:
        taken = {int(r["slot"]): r["pid"]
                 for r in await conn.fetch(_MEMBERS, timeout=self.timeout)}
        previous, self._previous = self._previous, None
        if previous is not None and taken.get(previous[0]) == previous[1]:
            # This instance's own earlier session, cut off (a partition) but not yet let go
            # by the server: this instance stopped polling when it lost it, so end it and
            # take its slot back — otherwise the slot would change and more targets move.
            ended = await conn.fetchval("SELECT pg_terminate_backend($1, $2)", previous[1],
                                        max(1, round(self.timeout * 500)),
                                        timeout=self.timeout)
            if ended:
                del taken[previous[0]]
                log.info("ended this instance's earlier session to take its slot back",
                         extra=fields(slot=previous[0]))
        # its own slot first (its share comes back to it), else the lowest free one
        first = [previous[0]] if previous is not None else []
        for slot in [*first, *range(MAX_SHARDS)]:
            if slot in taken:
                continue
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", SLOT_BASE + slot,
                                   timeout=self.timeout):
                self.slot = slot
                return
            # another instance took it between the read and the try: the next free one

    async def _connection(self) -> asyncpg.Connection | None:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        if self._conn is not None:  # the session ended under this instance: rejoin next
            await self._lose("connection to PostgreSQL closed")
            return None
        try:
            self._conn = await asyncpg.connect(self._dsn, timeout=self.timeout,
                                               server_settings=self._server_settings())
        except _DB_ERRORS as exc:
            self._conn = None
            await self._lose(f"cannot connect: {type(exc).__name__}: {exc}"[:200])
            return None
        return self._conn

    def _server_settings(self) -> dict[str, str]:
        # The server lets a silent session go after about a lease: by then its instance has
        # stopped polling by itself (a failed check takes at most cadence + timeout ≤ lease/2).
        idle = max(1, math.ceil(self.lease) - 2)
        return {"application_name": "ioc shard member",
                "tcp_keepalives_idle": str(idle), "tcp_keepalives_interval": "1",
                "tcp_keepalives_count": "2",
                "tcp_user_timeout": str(max(1000, round(self.lease * 1000)))}

    # -- changes ---------------------------------------------------------------------------

    async def _apply(self, members: tuple[int, ...]) -> None:
        assert self.slot is not None
        before = self.members
        if members != before:
            self.epoch += 1
            log.info("shard members changed", extra=fields(
                slot=self.slot, members=",".join(map(str, members)), epoch=self.epoch))
        self.members = members
        self.metrics.members.set(len(members))
        targets = list(self.targets())
        owned = frozenset(t for t in targets if owner_among(t, members) == self.slot)
        started = self.owned - self._pending
        # Targets a live member polled until now wait one check, by when it has let them go.
        others = [m for m in members if m != self.slot]
        wait = set()
        took_over = 0
        for target in owned - self.owned:
            previous = owner_among(target, before) if before else (
                owner_among(target, others) if others else None)
            if previous is not None and previous != self.slot and previous in members:
                wait.add(target)
            elif previous is not None and previous != self.slot:
                took_over += 1
        gained = frozenset(t for t in owned if t not in started and t not in wait)
        lost = frozenset(started - owned)
        self.owned = owned
        self._pending = frozenset(wait)
        if not gained and not lost:
            self.metrics.owned.set(len(owned - self._pending))
            return
        if took_over:
            self.metrics.takeovers.inc(took_over)
            log.warning("took over the targets of a member that left", extra=fields(
                slot=self.slot, targets=took_over, members=len(members)))
        await self._changed(Change(gained, lost, {t: self.owner_of(t) for t in lost}))

    async def _lose(self, reason: str) -> None:
        """Membership cannot be proven: let every target go and drop the session."""
        lost = frozenset(self.owned - self._pending)
        was_member = self.status == "member"
        self.status = f"lost: {reason}"
        conn, self._conn = self._conn, None
        if conn is not None and self.slot is not None:
            self._previous = (self.slot, conn.get_server_pid())
        if conn is not None:
            conn.terminate()  # the server ends the session, releasing the lock if it had not
        self._forget()
        if was_member or lost:
            log.warning("shard membership lost; this instance polls nothing until it "
                        "rejoins", extra=fields(reason=reason, targets=len(lost)))
        if lost:
            await self._changed(Change(frozenset(), lost))

    def _forget(self) -> None:
        self.slot = None
        self.members = ()
        self.owned = frozenset()
        self._pending = frozenset()
        self.proven_at = None
        self.metrics.member.set(0)
        self.metrics.members.set(0)
        self.metrics.owned.set(0)

    async def _changed(self, change: Change) -> None:
        if change.gained:
            self.metrics.changes.labels(change="gained").inc(len(change.gained))
        if change.lost:
            self.metrics.changes.labels(change="released").inc(len(change.lost))
        self.metrics.owned.set(len(self.owned - self._pending))
        if self.on_change is not None:
            await self.on_change(change)
