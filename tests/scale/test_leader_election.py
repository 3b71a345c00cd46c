"""The alert leader lock on the real PostgreSQL: one leader at a time, a prompt step-down when
its session is terminated, a takeover by the other candidate, and fences that tell them apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine

from ioc.leader import LeaderElection, LeaderMetrics, LockFence, election_dsn
from ioc.store.base import NotLeaderError
from tests.helpers import Changes

pytestmark = pytest.mark.postgres

CADENCE = 0.1
LIMIT = 15.0  # generous: awaited events on a loaded 2-core machine


@dataclass
class Candidate:
    """One instance's election with its transitions recorded and awaitable."""

    name: str
    dsn: str
    log: list[str] = field(default_factory=list)
    changed: Changes = field(default_factory=Changes)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    election: LeaderElection | None = None

    def __post_init__(self) -> None:
        self.election = LeaderElection(
            self.dsn, cadence=CADENCE, metrics=LeaderMetrics(self.registry),
            on_acquire=self.acquired, on_release=self.released, name=f"test {self.name}")

    async def acquired(self, fence: LockFence) -> None:
        self.log.append("acquired")
        self.changed.set()

    async def released(self, lost: bool) -> None:
        self.log.append("lost" if lost else "released")
        self.changed.set()

    @property
    def leads(self) -> bool:
        assert self.election is not None
        return self.election.is_leader

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        assert value is not None
        return value

    async def until(self, predicate: object, limit: float = LIMIT) -> None:
        await self.changed.until(lambda: bool(predicate()), limit)


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[Candidate, Candidate]]:
    dsn = election_dsn(postgres_url)
    first, second = Candidate("a", dsn), Candidate("b", dsn)
    assert first.election is not None and second.election is not None
    await first.election.start()
    await second.election.start()
    try:
        yield first, second
    finally:
        await first.election.stop()
        await second.election.stop()


async def fence_holds(postgres_url: str, fence: LockFence) -> bool:
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            try:
                await fence.verify(conn)
            except NotLeaderError:
                return False
            return True
    finally:
        await engine.dispose()


async def test_one_leader_then_takeover_when_its_session_is_terminated(
        postgres_url: str, pair: tuple[Candidate, Candidate]) -> None:
    first, second = pair
    # The first to try leads from its start; the other keeps trying and stays a follower.
    assert first.leads and first.log == ["acquired"]
    assert not second.leads and second.log == []
    assert first.metric("ioc_alert_leader") == 1 and second.metric("ioc_alert_leader") == 0
    assert first.election is not None and first.election.fence is not None
    old_fence = first.election.fence
    assert await fence_holds(postgres_url, old_fence)

    admin = await asyncpg.connect(election_dsn(postgres_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_fence.pid)
    finally:
        await admin.close()

    await first.until(lambda: first.log[-1:] == ["lost"])
    await second.until(lambda: second.leads)
    assert first.log == ["acquired", "lost"] and not first.leads
    assert second.log == ["acquired"]
    assert first.metric("ioc_alert_leader_transitions_total", transition="lost") == 1
    assert first.metric("ioc_alert_leader") == 0 and second.metric("ioc_alert_leader") == 1
    # The deposed leader's fence no longer proves anything; the new leader's does.
    assert not await fence_holds(postgres_url, old_fence)
    assert second.election is not None and second.election.fence is not None
    assert await fence_holds(postgres_url, second.election.fence)
    # The deposed one is a candidate again, not a second leader.
    await asyncio.sleep(5 * CADENCE)  # several rounds in which it tries and must fail
    assert not first.leads and first.log == ["acquired", "lost"]


async def test_a_clean_stop_releases_the_lock_at_once(
        pair: tuple[Candidate, Candidate]) -> None:
    first, second = pair
    assert first.election is not None
    await first.election.stop()
    assert first.log == ["acquired", "released"]
    assert first.metric("ioc_alert_leader_transitions_total", transition="released") == 1
    await second.until(lambda: second.leads)


async def test_a_failed_start_gives_the_lock_back(postgres_url: str) -> None:
    dsn = election_dsn(postgres_url)
    calls: list[str] = []

    async def broken(fence: LockFence) -> None:
        calls.append("acquire")
        raise RuntimeError("state could not be loaded")

    async def released(lost: bool) -> None:
        calls.append(f"release lost={lost}")

    failing = LeaderElection(dsn, cadence=60, metrics=LeaderMetrics(CollectorRegistry()),
                             on_acquire=broken, on_release=released)
    other = Candidate("b", dsn)
    assert other.election is not None
    await failing.start()
    try:
        assert calls == ["acquire", "release lost=True"] and not failing.is_leader
        await other.election.start()
        assert other.leads  # the lock was free at once, not after a timeout
    finally:
        await other.election.stop()
        await failing.stop()


async def test_the_dsn_keeps_the_password_for_the_connection_only() -> None:
    url = "postgresql+asyncpg://ioc:s3cret-pw@db.example:5433/ioc"
    assert election_dsn(url) == "postgresql://ioc:s3cret-pw@db.example:5433/ioc"
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        election_dsn("sqlite+aiosqlite:///var/ioc.db")
