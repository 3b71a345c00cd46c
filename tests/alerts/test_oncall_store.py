"""The on-call tables on SQLite and PostgreSQL: a step is queued only by the leader, only once,
and never after an ack; a link's nonce is used once, together with its ack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from ioc.store.alert_delivery import HistoryEvent, NewNotification
from ioc.store.base import NotLeaderError
from ioc.store.oncall import EscalationRow, LinkUsedError, OncallStore, StepWrite

T0 = 1_800_000_000.0


class Deposed:
    """A fence whose lock is gone (as ioc.leader.LockFence says after losing the lead)."""

    async def verify(self, conn: AsyncConnection) -> None:
        raise NotLeaderError("not the alert leader")


class Held:
    async def verify(self, conn: AsyncConnection) -> None:
        return None


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[OncallStore]:
    opened = OncallStore(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def step(row: EscalationRow, sent: int) -> StepWrite:
    key = f"esc:{row.id}:{sent - 1}:oncall/an/telegram"
    return StepWrite(row, sent, [NewNotification(key, "oncall/an/telegram", "oncall/an",
                                                 f"escalation:{row.id}", "firing",
                                                 {"alerts": []}, T0)],
                     [HistoryEvent(f"escalation:{row.id}:{sent - 1}", T0, "escalation",
                                   row.fingerprint, "ioc", {"step": sent})])


async def test_steps_are_fenced_counted_once_and_stopped_by_an_ack(store: OncallStore) -> None:
    row = EscalationRow("fp1:1", "fp1", "critical", "vanhanh", "critical", T0, 0, "active")
    await store.start_escalations([row], T0, fence=Held())
    await store.start_escalations([row], T0, fence=Held())  # the same firing: kept as is
    with pytest.raises(NotLeaderError):
        await store.start_escalations([EscalationRow("fp2:1", "fp2", "critical", "vanhanh",
                                                     "critical", T0, 0, "active")], T0,
                                      fence=Deposed())
    assert [r.id for r in await store.load_escalations()] == ["fp1:1"]

    with pytest.raises(NotLeaderError):
        await store.advance([step(row, 1)], now=T0, fence=Deposed())
    assert await store.pending_count() == 0

    assert await store.advance([step(row, 1)], now=T0, fence=Held()) == ["fp1:1"]
    # Another leader working from the same stale row (sent 0) queues nothing.
    assert await store.advance([step(row, 1)], now=T0 + 1, fence=Held()) == []
    assert await store.pending_count() == 1
    (stored,) = await store.load_escalations()
    assert stored.sent == 1

    await store.put_ack({"fingerprint": "fp1", "by": "Phạm Văn Dũng (dung)", "comment": "",
                         "at": T0 + 5, "expires_at": T0 + 86400},
                        HistoryEvent("ack:fp1:x", T0 + 5, "ack", "fp1", "dung", {}),
                        nonce=("nonce-1", "dung"))
    assert await store.advance([step(stored, 2)], now=T0 + 600, fence=Held()) == []
    assert await store.pending_count() == 1
    await store.end_escalation("fp1:1", state="acked", by="dung", now=T0 + 600, fence=Held())
    assert await store.load_escalations() == []


async def test_a_link_nonce_is_used_once_with_its_ack(store: OncallStore) -> None:
    ack = {"fingerprint": "fp9", "by": "An", "comment": "", "at": T0, "expires_at": T0 + 60}
    event = HistoryEvent("ack:fp9:1", T0, "ack", "fp9", "An", {"channel": "email"})
    assert not await store.link_used("n-1")
    await store.put_ack(ack, event, nonce=("n-1", "an"))
    assert await store.link_used("n-1")
    with pytest.raises(LinkUsedError):
        await store.put_ack({**ack, "at": T0 + 1},
                            HistoryEvent("ack:fp9:2", T0 + 1, "ack", "fp9", "An", {}),
                            nonce=("n-1", "an"))
    (kept,) = await store.load_acks()
    assert kept["at"] == T0  # the refused second use changed nothing
    events = await store.history(start=T0 - 1, end=T0 + 10, limit=10)
    assert [(e["ts"], e["kind"]) for e in events] == [(T0, "ack")]  # one ack recorded


async def test_the_roster_seed_is_written_once_per_config(store: OncallStore) -> None:
    assert await store.load_roster() is None
    assert await store.seed_roster({"people": []}, "seed-a", T0)
    assert not await store.seed_roster({"people": []}, "seed-a", T0 + 1)
    await store.put_roster({"people": [{"id": "an"}]}, by="quan-tri", now=T0 + 2,
                           event=HistoryEvent("roster:1", T0 + 2, "roster", None,
                                              "quan-tri", {}))
    stored = await store.load_roster()
    assert stored is not None and stored.updated_by == "quan-tri"
    assert stored.document == {"people": [{"id": "an"}]} and stored.seed == "seed-a"
    assert await store.seed_roster({"people": []}, "seed-b", T0 + 3)  # config changed
    stored = await store.load_roster()
    assert stored is not None and stored.document == {"people": []}
