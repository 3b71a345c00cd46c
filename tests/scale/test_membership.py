"""``--shard auto``'s member set on the real PostgreSQL, one check at a time: slots, the owners
among the live members, takeover of a member that left, the one-check wait of a handback, the
fence, and a member whose session is terminated letting everything go and rejoining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ioc.leader import election_dsn
from ioc.membership import (
    SLOT_BASE,
    AutoShard,
    Change,
    MembershipMetrics,
    cadence_for,
    timeout_for,
)
from ioc.sharding import Shard, owner_among

pytestmark = pytest.mark.postgres

TARGETS = [f"target-{i:02d}" for i in range(40)]
LEASE = 4.0


class Member:
    """One instance's membership, its applied changes recorded, its clock in the test's hand."""

    def __init__(self, dsn: str, targets: Callable[[], list[str]] = lambda: TARGETS) -> None:
        self.now = 1_000.0
        self.registry = CollectorRegistry()
        self.shard = AutoShard(dsn, lease=LEASE, shortest_interval=1.0, targets=targets,
                               metrics=MembershipMetrics(self.registry),
                               wall_clock=lambda: self.now)
        self.shard.on_change = self.apply
        self.changes: list[Change] = []
        self.polling: set[str] = set()  # what service.app would have running

    async def apply(self, change: Change) -> None:
        assert not (change.gained & self.polling), "started twice"
        assert change.lost <= self.polling, "stopped what was not running"
        self.changes.append(change)
        self.polling = (self.polling - change.lost) | change.gained

    async def step(self, advance: float = 0.5) -> None:
        self.now += advance
        await self.shard.step()

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value


@pytest.fixture
async def dsn(postgres_url: str) -> str:
    return election_dsn(postgres_url)


@pytest.fixture
async def members(dsn: str) -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        await member.shard.close()


def share(slot: int, live: list[int]) -> set[str]:
    return {t for t in TARGETS if owner_among(t, live) == slot}


async def test_members_take_slots_and_split_the_targets_like_static_shards(
        dsn: str, members: list[Member]) -> None:
    a = Member(dsn)
    members.append(a)
    await a.step()
    assert a.shard.slot == 0 and a.shard.members == (0,)
    assert a.polling == set(TARGETS)  # alone: everything at once
    assert a.shard.ready == "ok"

    b, c = Member(dsn), Member(dsn)
    members += [b, c]
    await b.step()
    await c.step()
    assert (b.shard.slot, c.shard.slot) == (1, 2)
    # A newcomer waits one check for what a live member polls until that member lets go.
    assert b.polling == set() and c.polling == set()
    assert not b.shard.may_poll(next(iter(share(1, [0, 1, 2]))), b.now)
    await a.step()
    assert a.polling == share(0, [0, 1, 2])
    await b.step()
    await c.step()
    for member, index in ((a, 0), (b, 1), (c, 2)):
        # the same split as static --shard i/3, so moving between the two moves nothing
        assert member.polling == set(Shard(index, 3).select(TARGETS))
        assert member.shard.members == (0, 1, 2)
        assert member.metric("ioc_shard_members") == 3
        assert member.metric("ioc_shard_targets_owned") == len(member.polling)
    assert a.metric("ioc_shard_takeovers_total") == 0
    assert a.metric("ioc_shard_ownership_changes_total", change="released") == \
        len(TARGETS) - len(a.polling)


async def test_survivors_take_over_at_once_and_the_returning_member_gets_its_share_back(
        dsn: str, members: list[Member]) -> None:
    a, b, c = Member(dsn), Member(dsn), Member(dsn)
    members += [a, b, c]
    for _ in range(2):
        for member in (a, b, c):
            await member.step()
    before = {m.shard.slot: set(m.polling) for m in (a, b, c)}

    # b dies: its session ends with its process, and its lock with it
    conn = b.shard._conn
    assert conn is not None
    conn.terminate()
    await a.step()
    await c.step()
    assert a.shard.members == c.shard.members == (0, 2)
    assert a.polling | c.polling == set(TARGETS)
    assert not a.polling & c.polling
    # only b's targets moved: each survivor kept all it had
    assert before[0] <= a.polling and before[2] <= c.polling
    taken = a.metric("ioc_shard_takeovers_total") + c.metric("ioc_shard_takeovers_total")
    assert taken == len(before[1])

    # b comes back: it takes slot 1 again, and only its old share moves back to it
    returned = Member(dsn)
    members.append(returned)
    await returned.step()
    assert returned.shard.slot == 1 and returned.polling == set()
    await a.step()
    await c.step()
    assert a.polling == before[0] and c.polling == before[2]  # let go, not yet taken
    await returned.step()
    assert returned.polling == before[1]
    assert a.metric("ioc_shard_takeovers_total") + c.metric("ioc_shard_takeovers_total") \
        == taken  # a handback is no takeover


async def test_a_terminated_member_lets_everything_go_and_rejoins(
        dsn: str, members: list[Member]) -> None:
    a, b = Member(dsn), Member(dsn)
    members += [a, b]
    for _ in range(2):
        await a.step()
        await b.step()
    mine = set(a.polling)
    assert mine and a.shard.ready == "ok"

    conn = a.shard._conn
    assert conn is not None
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
    finally:
        await admin.close()
    await a.step()
    assert a.polling == set()  # everything let go, not one target kept
    assert a.changes[-1].lost == frozenset(mine)
    assert a.shard.ready.startswith("lost: ")
    assert not any(a.shard.may_poll(t, a.now) for t in TARGETS)
    assert a.metric("ioc_shard_member") == 0
    await b.step()
    assert b.polling == set(TARGETS)  # the survivor covers

    await a.step()  # PostgreSQL answers again: it rejoins, takes a slot, waits one check
    assert a.shard.slot is not None and a.shard.ready == "ok" and a.polling == set()
    await b.step()
    await a.step()
    assert a.polling | b.polling == set(TARGETS) and not a.polling & b.polling
    assert a.polling == share(a.shard.slot, [0, 1])


async def test_a_member_back_from_a_partition_ends_its_stale_session_and_keeps_its_slot(
        dsn: str, members: list[Member]) -> None:
    a, b, c = Member(dsn), Member(dsn), Member(dsn)
    members += [a, b, c]
    for _ in range(2):
        for member in (a, b, c):
            await member.step()
    assert b.shard.slot == 1
    # b's session as the server sees it after a partition: still there, holding slot 1,
    # while b itself gave up on it (a failed check)
    stale = await asyncpg.connect(dsn)
    try:
        await b.shard.close()
        assert await stale.fetchval("SELECT pg_try_advisory_lock($1)", SLOT_BASE + 1)
        b.shard._previous = (1, stale.get_server_pid())
        await b.step()
        assert b.shard.slot == 1  # not slot 3: its share, not another, comes back to it
        assert stale.is_closed() or not await _alive(dsn, stale.get_server_pid())
    finally:
        stale.terminate()
    await a.step()
    await c.step()
    await b.step()
    assert b.polling == share(1, [0, 1, 2])


async def _alive(dsn: str, pid: int) -> bool:
    admin = await asyncpg.connect(dsn)
    try:
        return bool(await admin.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid))
    finally:
        await admin.close()


async def test_a_member_whose_checks_stop_is_left_out_after_a_lease(
        dsn: str, members: list[Member]) -> None:
    a = Member(dsn)
    members.append(a)
    short = 0.5
    a.shard.lease = short
    await a.step()
    # a member that took slot 1 and then hung (SIGSTOP, a blocked loop): its socket stays
    # open, so neither it nor the server lets go of its lock
    hung = await asyncpg.connect(dsn)
    try:
        assert await hung.fetchval("SELECT pg_try_advisory_lock($1)", SLOT_BASE + 1)
        await a.step()
        assert a.shard.members == (0, 1) and a.polling == share(0, [0, 1])
        # what is tested is time passing on the server's clock, with no check from slot 1
        await asyncio.sleep(short * 2)
        await a.step()
        assert a.shard.members == (0,) and a.polling == set(TARGETS)  # taken over
        assert a.metric("ioc_shard_takeovers_total") == len(share(1, [0, 1]))
        assert not await _alive(dsn, hung.get_server_pid())  # its lock freed with its session
    finally:
        hung.terminate()


async def test_the_fence_closes_when_the_view_is_older_than_a_lease(
        dsn: str, members: list[Member]) -> None:
    a = Member(dsn)
    members.append(a)
    await a.step()
    target = TARGETS[0]
    assert a.shard.may_poll(target, a.now + LEASE - 0.1)
    # no check proved the membership for a lease (a blocked loop, a hung check): no polls
    assert not a.shard.may_poll(target, a.now + LEASE)
    assert a.shard.may_poll(target, a.now)


async def test_a_database_that_cannot_be_reached_is_reported_and_polls_nothing(
        members: list[Member]) -> None:
    # a port nobody listens on: the connection is refused
    a = Member("postgresql://postgres@127.0.0.1:1/none")
    members.append(a)
    await a.step()
    assert a.shard.slot is None and a.polling == set()
    assert a.shard.ready.startswith("lost: cannot connect")
    assert "postgres@" not in a.shard.ready  # says why, never the address with its user


async def test_targets_added_and_removed_move_with_the_config(
        dsn: str, members: list[Member]) -> None:
    names = list(TARGETS)
    a = Member(dsn, targets=lambda: names)
    members.append(a)
    await a.step()
    names.append("new-target")
    names.remove(TARGETS[0])
    await a.step()
    assert a.polling == set(names)
    assert a.changes[-1].gained == {"new-target"} and a.changes[-1].lost == {TARGETS[0]}


def test_checks_stay_within_the_lease_and_the_interval() -> None:
    assert cadence_for(10.0, 5.0) == 2.5
    assert cadence_for(10.0, 0.5) == 0.25  # at most half an interval: double polls < one
    assert cadence_for(300.0, 600.0) == 5.0
    for lease in (1.0, 2.0, 10.0, 60.0, 300.0):
        # a failed check ends the membership well before the server lets the session go
        assert cadence_for(lease, 3600.0) + timeout_for(lease) <= lease / 2
