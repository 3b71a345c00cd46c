"""Incidents from polls: start at the first failed poll, end at the first good one after."""

from __future__ import annotations

from collections import Counter

import pytest

from ioc.incidents import Poll, Window, derive, incident_id, reason_code, reason_from_code, summary
from ioc.model import FAILURE_REASONS


def polls(spec: str, reasons: str = "", step: float = 30.0, t0: float = 1_000.0) -> list[Poll]:
    """'uuddu' → polls every ``step`` s; reasons per failed poll in order (t=timeout, d=dns)."""
    names = {"t": "timeout", "d": "dns", "h": "http_status"}
    it = iter(reasons)
    return [Poll(t0 + i * step, c == "u", None if c == "u" else names[next(it, "t")])
            for i, c in enumerate(spec)]


def test_one_outage_is_one_incident_from_first_failure_to_first_success() -> None:
    found = derive("portal", "STP", polls("uudddu", "tdt"))
    assert len(found) == 1
    (inc,) = found
    assert (inc.started_at, inc.ended_at, inc.last_failed_at) == (1060.0, 1150.0, 1120.0)
    assert inc.failed_polls == 3
    assert inc.causes == Counter({"timeout": 2, "dns": 1})
    assert inc.duration(now=99_999) == 90.0
    assert not inc.planned


def test_two_outages_are_two_incidents_and_a_trailing_one_is_open() -> None:
    found = derive("portal", "STP", polls("duudd", "thh"))
    assert [(i.started_at, i.ended_at) for i in found] == [(1000.0, 1030.0), (1090.0, None)]
    assert found[1].duration(now=1200.0) == 110.0
    assert found[1].causes == Counter({"http_status": 2})


def test_all_good_polls_make_no_incident() -> None:
    assert derive("portal", "STP", polls("uuuu")) == []
    assert derive("portal", "STP", []) == []


def test_out_of_order_polls_are_refused() -> None:
    with pytest.raises(ValueError, match="not in time order"):
        derive("portal", "STP", [Poll(10.0, True), Poll(5.0, False)])


def test_planned_when_the_start_is_inside_a_window_of_the_department_or_of_all() -> None:
    seq = polls("udu")
    assert derive("a", "STP", seq, [Window("STP", 1000.0, 1031.0)])[0].planned
    assert derive("a", "STP", seq, [Window("*", 1030.0, 1031.0)])[0].planned
    assert not derive("a", "STP", seq, [Window("SYT", 0.0, 9e9)])[0].planned
    assert not derive("a", "STP", seq, [Window("STP", 1000.0, 1030.0)])[0].planned  # ends before


def test_ids_are_stable_and_distinct() -> None:
    assert incident_id("a", 1.0) == incident_id("a", 1.0000001)
    assert incident_id("a", 1.0) != incident_id("a", 1.001)
    assert incident_id("a", 1.0) != incident_id("b", 1.0)


@pytest.mark.parametrize("reason", [*FAILURE_REASONS, None, "made_up"])
def test_reason_codes_round_trip_and_unknown_ones_read_as_error(reason: str | None) -> None:
    expected = reason if reason in FAILURE_REASONS else "error"
    assert reason_from_code(reason_code(reason)) == expected


def test_reason_from_a_value_no_ioc_writes_is_error() -> None:
    assert reason_from_code(None) == "error"
    assert reason_from_code(2.5) == "error"
    assert reason_from_code(-1.0) == "error"
    assert reason_from_code(999.0) == "error"


def test_summary_counts_unplanned_only_and_mttr_over_closed_ones() -> None:
    found = derive("a", "STP", polls("uddduduuddd"))  # 90 s, 30 s, then open since t=1240
    planned = derive("b", "STP", polls("udu"), [Window("*", 0, 9e9)])
    got = summary(found + planned, now=1400.0)
    assert got == {"incidents": 3, "planned": 1, "open": 1,
                   "downtime_seconds": 90.0 + 30.0 + 160.0, "mttr_seconds": 60.0,
                   "longest_seconds": 160.0}
    assert summary([], now=0)["mttr_seconds"] is None
