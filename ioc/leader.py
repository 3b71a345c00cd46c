"""Which ioc instance is the alert leader: a PostgreSQL advisory lock on a dedicated connection.

Several instances share one config and one PostgreSQL database (docs/scaling.md). If each
evaluated the rules, on-call staff would be paged once per instance, so exactly one of them —
the alert leader — evaluates and sends; the others serve their wall and APIs from the shared
tables. The leader is whichever instance holds a session-level advisory lock: PostgreSQL is
the arbiter, so there is no cluster protocol of ioc's own to get wrong.

* The lock lives on a connection of its own, outside SQLAlchemy's pools: a pooled connection
  is handed to other work and recycled, and the lock must live exactly as long as the session
  that proves leadership.
* A candidate tries ``pg_try_advisory_lock`` every *cadence* (a quarter of the evaluation
  interval), so once the server ends the leader's session — its process killed, its connection
  cut — another instance leads within one cadence.
* The leader checks on the same cadence, with a short timeout, that its own session still
  holds the lock (in ``pg_locks``, not merely "the socket is open"). When it cannot prove
  that, it steps down at once and drops the connection, so the server ends the session and
  releases the lock if it had not already. It then sits out a few rounds before competing
  again, so that a candidate whose connection is healthy takes over first.
* The session asks the server for TCP keepalives and a user timeout a few seconds longer than
  the leader's own check, so a leader whose machine vanishes without closing its socket is let
  go in seconds instead of the operating system's default two hours, and never before that
  leader has stopped by itself.
* :class:`LockFence` lets the leader's other connections prove leadership inside their own
  transactions: the writes that must not happen twice (alert state, outbox, notification log)
  check that the lock is still held by the leader's session before they commit.

Advisory locks belong to one database, so deployments sharing a server never see each other's.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from ioc.logs import fields
from ioc.store.base import NotLeaderError
from ioc.tasks import cancel_and_wait

log = logging.getLogger("ioc.leader")

# The advisory lock key of the alert leader: "ioc_alrt" as a 64-bit number. Fixed, so every
# version of ioc sharing a database competes for the same lock.
ALERT_LEADER_KEY = int.from_bytes(b"ioc_alrt", "big")

TRANSITIONS = ("acquired", "lost", "released")
REST_ROUNDS = 3  # rounds a deposed leader waits before competing again

# Is the lock `key` held by the session `pid`? In pg_locks a bigint advisory key is split into
# classid (high 32 bits) and objid (low 32 bits), with objsubid 1.
_HELD = """SELECT EXISTS (SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND classid = {classid}::oid AND objid = {objid}::oid AND pid = {pid}
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"""


def election_dsn(url: str) -> str:
    """The asyncpg DSN of a ``postgresql+asyncpg://`` storage URL (secret: never log it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"leader election needs PostgreSQL, not {parsed.get_backend_name()}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def cadence_for(evaluation_interval: float) -> float:
    """How often candidates try the lock and the leader checks it: takeover well within two
    evaluation intervals, without hammering the server when the interval is short."""
    return min(max(evaluation_interval / 4, 0.05), 5.0)


def _split(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class LockFence:
    """The leader's session (by server pid) and its lock, checkable from any connection."""

    pid: int
    key: int = ALERT_LEADER_KEY

    async def verify(self, conn: AsyncConnection) -> None:
        classid, objid = _split(self.key)
        held = (await conn.execute(text(_HELD.format(
            classid=classid, objid=objid, pid=int(self.pid))))).scalar()
        if not held:
            raise NotLeaderError("this instance no longer holds the alert leader lock")


class LeaderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge(
            "ioc_alert_leader",
            "1 while this instance is the alert leader (evaluates rules and sends "
            "notifications), else 0.", registry=registry)
        self.transitions = Counter(
            "ioc_alert_leader_transitions",
            "Changes of this instance's alert leadership: acquired, lost (connection or "
            "check failed) and released (clean shutdown).", ["transition"], registry=registry)
        for transition in TRANSITIONS:
            self.transitions.labels(transition=transition)

    def changed(self, transition: str, leading: bool) -> None:
        self.transitions.labels(transition=transition).inc()
        self.leader.set(1 if leading else 0)


Acquire = Callable[[LockFence], Awaitable[None]]
Release = Callable[[bool], Awaitable[None]]  # argument: lost (True) or clean shutdown (False)


class LeaderElection:
    """Competes for the alert leader lock and runs the callbacks on each transition.

    ``on_acquire(fence)`` starts the leader's work; ``on_release(lost)`` stops it — with
    ``lost=True`` when leadership was lost (nothing may be written any more), ``False`` at a
    clean shutdown while the lock is still held (state may be saved; the lock is released
    right after). Callbacks run one at a time, from the election's own task or ``stop()``.
    """

    def __init__(self, dsn: str, *, cadence: float, metrics: LeaderMetrics,
                 on_acquire: Acquire, on_release: Release, shown_as: str = "PostgreSQL",
                 key: int = ALERT_LEADER_KEY, name: str = "alert leader") -> None:
        self._dsn = dsn
        self.cadence = cadence
        # Long enough for a loaded server to answer, short enough to step down promptly.
        self.timeout = min(max(cadence, 1.0), 5.0)
        self.metrics = metrics
        self._on_acquire = on_acquire
        self._on_release = on_release
        self._shown_as = shown_as  # the database for log lines, password masked
        self.key = key
        self.name = name
        self.fence: LockFence | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._unreachable = False
        self._rest = 0

    @property
    def is_leader(self) -> bool:
        return self.fence is not None

    def _server_settings(self) -> dict[str, str]:
        # The server lets the session go once it has been silent for longer than the leader
        # takes to give up by itself (a failed check: cadence + timeout).
        idle = math.ceil(self.cadence + self.timeout) + 1
        return {"application_name": f"ioc {self.name}",
                "tcp_keepalives_idle": str(idle), "tcp_keepalives_interval": "1",
                "tcp_keepalives_count": "2", "tcp_user_timeout": str((idle + 2) * 1000)}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Make the first attempt now (a lone instance leads from its start), then keep on."""
        await self._step()
        task_name = "ioc-" + self.name.replace(" ", "-") + "-election"
        self._task = asyncio.create_task(self._run(), name=task_name)

    async def stop(self) -> None:
        """Stop competing; a leader winds its work down, then releases the lock at once."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.fence is not None:
            try:
                await self._on_release(False)
            finally:
                self.fence = None
                if self._conn is not None and not self._conn.is_closed():
                    try:
                        await self._conn.execute("SELECT pg_advisory_unlock($1)", self.key,
                                                 timeout=self.timeout)
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                            TimeoutError):
                        pass  # closing the session below releases it anyway
                self.metrics.changed("released", leading=False)
                log.info(f"gave up {self.name}ship (stopping)")
        await self._close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cadence)
            await self._step()

    async def _step(self) -> None:
        try:
            if self._rest > 0:
                self._rest -= 1
            elif self.fence is None:
                await self._try()
            else:
                await self._check()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not end the election; the next step retries
            log.exception(f"{self.name} election step failed")

    # -- candidate -------------------------------------------------------------------------

    async def _try(self) -> None:
        conn = await self._connection()
        if conn is None:
            return
        try:
            acquired = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key,
                                           timeout=self.timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            self._unreachable_now(exc)
            self._drop()
            return
        self._reachable_again()
        if not acquired:
            return  # another instance leads
        fence = LockFence(conn.get_server_pid(), self.key)
        self.fence = fence
        self.metrics.changed("acquired", leading=True)
        log.info(f"this instance is now the {self.name}", extra=fields(
            store=self._shown_as, session_pid=fence.pid))
        try:
            await self._on_acquire(fence)
        except Exception as exc:
            log.exception(f"could not start as {self.name}; giving the lock up")
            await self._lose(f"start failed: {type(exc).__name__}")

    async def _connection(self) -> asyncpg.Connection | None:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        try:
            self._conn = await asyncpg.connect(self._dsn, timeout=self.timeout,
                                               server_settings=self._server_settings())
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            self._conn = None
            self._unreachable_now(exc)
            return None
        return self._conn

    # -- leader ----------------------------------------------------------------------------

    async def _check(self) -> None:
        conn = self._conn
        reason = ""
        if conn is None or conn.is_closed():
            reason = "connection closed"
        else:
            classid, objid = _split(self.key)
            try:
                held = await conn.fetchval(
                    _HELD.format(classid=classid, objid=objid, pid="pg_backend_pid()"),
                    timeout=self.timeout)
                if not held:
                    reason = "lock no longer held"
            except TimeoutError:
                reason = f"no answer within {self.timeout:g}s"
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                reason = _describe(exc)
        if reason:
            await self._lose(reason)

    async def _lose(self, reason: str) -> None:
        """Stop leading at once: no more writes (the fence is gone), then wind down."""
        self.fence = None
        self._drop()
        self._rest = REST_ROUNDS
        self.metrics.changed("lost", leading=False)
        log.warning(f"lost {self.name}ship; stopping evaluation and sending",
                    extra=fields(reason=reason))
        await self._on_release(True)

    # -- the connection --------------------------------------------------------------------

    def _drop(self) -> None:
        """Abandon the connection without waiting: the server ends the session (and the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=self.timeout)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                conn.terminate()

    def _unreachable_now(self, exc: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.warning(f"{self.name} election cannot reach the database; retrying",
                        extra=fields(store=self._shown_as, error=_describe(exc)))

    def _reachable_again(self) -> None:
        if self._unreachable:
            self._unreachable = False
            log.info(f"{self.name} election reaches the database again",
                     extra=fields(store=self._shown_as))


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

