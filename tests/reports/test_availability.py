"""Availability against hand-computed cases (docs/reports.md walks through the same ones)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ioc.availability import Segment, Tally, merge, parse_period, segments_from_polls, tally

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_verdict_holds_until_the_next_poll_and_same_verdicts_merge() -> None:
    got = segments_from_polls([(0, True), (60, True), (120, False), (180, True)], hold=120)
    assert got == [Segment(0, 120, True), Segment(120, 180, False), Segment(180, 300, True)]


def test_a_gap_longer_than_hold_leaves_unknown_time() -> None:
    # polls at 0 and 1000, hold 120: [0,120) up, [120,1000) nobody looked, [1000,1120) up
    segs = segments_from_polls([(0, True), (1000, True)], hold=120)
    assert segs == [Segment(0, 120, True), Segment(1000, 1120, True)]
    got = tally(segs, 0, 1120, now=5000, monitored_from=0)
    assert got == Tally(up=240, unknown=880)
    assert got.availability == 1.0


def test_unordered_polls_are_refused() -> None:
    with pytest.raises(ValueError):
        segments_from_polls([(10, True), (10, False)], hold=60)


def test_month_boundary_in_asia_ho_chi_minh() -> None:
    """November 2026 in Hà Nội time starts at 2026-10-31 17:00 UTC.

    Polls every 60 s (hold 120 s): down at 16:59:30 UTC (still October locally), up again at
    17:00:30, whose verdict holds 120 s. November gets 30 s of that outage and 120 s up,
    October 60 s up and the other 30 s down; the rest of November nobody looked.
    """
    nov = parse_period("2026-11", VN)
    oct_ = parse_period("2026-10", VN)
    assert nov.start == utc(2026, 10, 31, 17) and nov.end == utc(2026, 11, 30, 17)
    assert oct_.end == nov.start and nov.days == 30
    t = utc(2026, 10, 31, 16, 58, 30)
    segs = segments_from_polls([(t, True), (t + 60, False), (t + 120, True)], hold=120)
    in_nov = tally(segs, nov.start, nov.end, now=nov.end, monitored_from=t)
    assert in_nov.down == 30 and in_nov.up == 120
    assert in_nov.unknown == nov.end - nov.start - 150
    in_oct = tally(segs, oct_.start, oct_.end, now=nov.end, monitored_from=t)
    assert in_oct.down == 30 and in_oct.up == 60
    assert in_oct.not_monitored == t - oct_.start


def test_a_target_added_mid_month_is_judged_from_its_first_poll() -> None:
    nov = parse_period("2026-11", VN)
    first = nov.start + 15 * 86_400  # 16 November, 00:00 local
    polls = [(first + i * 30.0, True) for i in range(15 * 2880)]  # 15 days every 30 s
    polls[100] = (polls[100][0], False)  # one failed poll: 30 s down
    got = tally(segments_from_polls(polls, hold=60), nov.start, nov.end, now=nov.end,
                monitored_from=first)
    assert got.not_monitored == 15 * 86_400
    assert got.down == 30 and got.unknown == 0
    assert got.up == 15 * 86_400 - 30
    assert got.availability == pytest.approx(1 - 30 / (15 * 86_400))


def test_a_restart_gap_is_unknown_never_up() -> None:
    """Up all day, ioc stopped 10:00–12:00 local; the last poll before holds 60 s (hold)."""
    day = parse_period("2026-11-20", VN)
    stop, back = day.start + 10 * 3600, day.start + 12 * 3600
    polls = [(day.start + i * 30.0, True) for i in range(2880)
             if not stop <= day.start + i * 30.0 < back]
    got = tally(segments_from_polls(polls, hold=60), day.start, day.end, now=day.end,
                monitored_from=day.start - 86_400)
    # the poll at 09:59:30 holds for 60 s, to 10:00:30: the rest of the stop is unknown
    assert got.unknown == 2 * 3600 - 30
    assert got.up == 22 * 3600 + 30
    assert got.availability == 1.0


def test_planned_time_is_shown_and_left_out_of_the_ratio() -> None:
    segs = [Segment(0, 100, True), Segment(100, 200, False), Segment(200, 400, True)]
    got = tally(segs, 0, 400, now=400, monitored_from=0, planned=[(150, 250), (240, 260)])
    assert got == Tally(up=100 + 140, down=50, planned=110)
    assert got.availability == pytest.approx(240 / 290)


def test_time_after_now_does_not_count() -> None:
    got = tally([Segment(0, 1000, True)], 0, 1000, now=400, monitored_from=0)
    assert got == Tally(up=400)
    assert tally([], 0, 1000, now=0, monitored_from=0) == Tally()


def test_never_polled_is_not_monitored_and_has_no_ratio() -> None:
    got = tally([], 0, 100, now=100, monitored_from=None)
    assert got == Tally(not_monitored=100)
    assert got.availability is None


def test_tallies_add_time_weighted() -> None:
    # a target up for a day and one down for an hour of a day: not the mean of the ratios
    total = Tally(up=86_400) + Tally(up=82_800, down=3_600)
    assert total.availability == pytest.approx(169_200 / 172_800)


def test_merge_joins_overlapping_and_touching_windows() -> None:
    assert merge([(5, 10), (0, 3), (3, 4), (9, 12), (20, 20)]) == [(0, 4), (5, 12)]


@pytest.mark.parametrize(("text", "start", "end", "days"), [
    ("2026-W48", (2026, 11, 22, 17), (2026, 11, 29, 17), 7),
    ("2026-12", (2026, 11, 30, 17), (2026, 12, 31, 17), 31),
    ("2027-02", (2027, 1, 31, 17), (2027, 2, 28, 17), 28),
    ("2026-11-01", (2026, 10, 31, 17), (2026, 11, 1, 17), 1),
])
def test_periods_in_local_time(text: str, start: tuple[int, ...], end: tuple[int, ...],
                               days: int) -> None:
    period = parse_period(text, VN)
    assert (period.start, period.end, period.days) == (utc(*start), utc(*end), days)
    assert len(period.day_bounds(VN)) == days


@pytest.mark.parametrize("text", ["2026-13", "2026-W54", "2026/11", "", "2026-11-31"])
def test_bad_periods_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="period"):
        parse_period(text, VN)
