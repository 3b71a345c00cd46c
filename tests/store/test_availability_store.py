"""Availability read through rollups equals availability read from every raw poll."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from ioc.availability import segments_from_polls, tally
from ioc.model import Sample, make_labels
from ioc.store import SqlStore
from ioc.store.availability import HistoryStore
from ioc.store.rollups import Rollups

DAY = 86_400.0
T0 = 1_790_208_000.0  # a UTC midnight: 07:00 in Hà Nội


@pytest.fixture
async def history(store: SqlStore, store_url: str) -> AsyncIterator[HistoryStore]:
    opened = HistoryStore(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def histories_of(rng: random.Random) -> dict[str, list[tuple[float, bool]]]:
    """Five targets over a day at 30 s: steady, flapping, a restart gap, added at noon, and
    added at 16:03:13 (its first poll inside a 5 min bucket, read from there on)."""
    out: dict[str, list[tuple[float, bool]]] = {}
    for name in ("steady", "flappy", "gap", "late", "odd"):
        polls = []
        up = True
        for i in range(2880):
            ts = T0 + i * 30.0 + {"flappy": 7.0, "odd": 13.0}.get(name, 0.0)
            if name == "gap" and T0 + 5 * 3600 <= ts < T0 + 7 * 3600 + 45:
                continue
            if name == "late" and ts < T0 + 12 * 3600:
                continue
            if name == "odd" and ts < T0 + 16 * 3600 + 180:
                continue
            if name != "steady" and rng.random() < 0.01:
                up = not up
            polls.append((ts, up))
        out[name] = polls
    return out


async def test_rollups_answer_exactly_what_raw_polls_answer(store: SqlStore,
                                                            history: HistoryStore) -> None:
    polls = histories_of(random.Random(18))
    for name, seq in polls.items():
        labels = make_labels(target=name, department="STP", kind="http")
        await store.append([Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts)
                            for ts, up in seq])
    # roll up all but the newest 3 hours, which then come from raw polls
    await Rollups(store, raw_retention=30 * DAY, retention_5m=90 * DAY,
                  retention_1h=730 * DAY).run(T0 + 21 * 3600)
    now = T0 + DAY + 600
    for start, end in [(T0, T0 + DAY), (T0 + 3600 + 17, T0 + 20 * 3600 - 3),
                       (T0 - DAY, T0 + 2 * DAY)]:
        got = await history.histories(start, end, intervals=dict.fromkeys(polls, 30.0))
        assert set(got) == set(polls)
        for name, seq in polls.items():
            hist = got[name]
            assert hist.monitored_from == seq[0][0]
            want = tally(segments_from_polls(seq, 60.0), start, end, now=now,
                         monitored_from=seq[0][0])
            have = tally(hist.segments, start, end, now=now, monitored_from=hist.monitored_from)
            assert have == pytest.approx(want), (name, start, end)


async def test_a_department_filter_and_an_unknown_interval(store: SqlStore,
                                                           history: HistoryStore) -> None:
    for target, dept in (("a", "STP"), ("b", "SYT")):
        labels = make_labels(target=target, department=dept, kind="http")
        await store.append([Sample("ioc_target_up", labels, 1.0, T0 + i * 20.0)
                            for i in range(10)])
    got = await history.histories(T0, T0 + 3600, department="SYT")
    assert list(got) == ["b"] and got["b"].department == "SYT"
    assert got["b"].interval == 20.0  # guessed from the gap between its polls
