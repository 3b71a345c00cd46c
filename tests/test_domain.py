"""The public-service rate formulas (QĐ 766) and their edge cases."""

from __future__ import annotations

import pytest

from ioc.domain import (
    CountError,
    DossierCounts,
    FeedbackCounts,
    catalogue_levels,
    dossier_known,
    dossier_ontime_ratio,
    dossier_resolved_ontime_ratio,
    dossiers_from_fields,
    feedback_from_fields,
    feedback_known,
    feedback_ontime_ratio,
    feedback_resolved_ontime_ratio,
)


def test_ontime_ratio_counts_in_progress_within_deadline() -> None:
    counts = DossierCounts(resolved_early=50, resolved_ontime=40, resolved_late=2,
                           in_progress_ontime=6, in_progress_overdue=2,
                           waiting_supplement=9, paused=9, returned=9, withdrawn=9)
    # (50 + 40 + 6) / (50 + 40 + 2 + 6 + 2): waiting, paused, returned, withdrawn not handled
    assert dossier_ontime_ratio(counts) == pytest.approx(0.96)
    assert dossier_resolved_ontime_ratio(counts) == pytest.approx(90 / 92)


def test_rates_are_undefined_without_dossiers() -> None:
    assert dossier_ontime_ratio(DossierCounts()) is None
    assert dossier_resolved_ontime_ratio(DossierCounts()) is None
    only_waiting = DossierCounts(waiting_supplement=3, returned=1, received_online=4)
    assert dossier_ontime_ratio(only_waiting) is None


def test_only_in_progress_has_a_handled_rate_but_no_resolved_rate() -> None:
    counts = DossierCounts(in_progress_ontime=3, in_progress_overdue=1)
    assert dossier_ontime_ratio(counts) == pytest.approx(0.75)
    assert dossier_resolved_ontime_ratio(counts) is None


def test_all_late_is_zero_not_absent() -> None:
    counts = DossierCounts(resolved_late=4, in_progress_overdue=1)
    assert dossier_ontime_ratio(counts) == 0.0
    assert dossier_resolved_ontime_ratio(counts) == 0.0


def test_counts_add_up_for_the_province() -> None:
    total = DossierCounts(resolved_early=1, due_soon=None) + DossierCounts(resolved_early=2,
                                                                          due_soon=3)
    assert total.resolved_early == 3 and total.due_soon == 3
    assert (DossierCounts() + DossierCounts()).due_soon is None


def test_totals_derive_the_missing_part() -> None:
    counts = dossiers_from_fields({"resolved": 63, "resolved_ontime": 62,
                                   "in_progress": 15, "in_progress_ontime": 14,
                                   "received": 64, "received_online": 49})
    assert (counts.resolved_early, counts.resolved_ontime, counts.resolved_late) == (0, 62, 1)
    assert (counts.in_progress_ontime, counts.in_progress_overdue) == (14, 1)
    assert (counts.received_online, counts.received_direct, counts.received_postal) \
        == (49, 15, 0)


def test_totals_must_match_their_parts() -> None:
    with pytest.raises(CountError) as info:
        dossiers_from_fields({"resolved": 10, "resolved_early": 5, "resolved_ontime": 5,
                              "resolved_late": 1})
    assert info.value.field == "resolved"
    assert "= 11, but resolved = 10" in str(info.value)


def test_ontime_more_than_resolved_is_refused() -> None:
    with pytest.raises(CountError) as info:
        dossiers_from_fields({"resolved": 10, "resolved_ontime": 12})
    assert info.value.field == "resolved_late"
    assert "resolved_ontime (12) is more than resolved (10)" in str(info.value)


def test_due_soon_cannot_exceed_in_progress() -> None:
    with pytest.raises(CountError, match="due_soon"):
        dossiers_from_fields({"in_progress_ontime": 2, "due_soon": 3})


def test_unknown_counter_is_refused() -> None:
    with pytest.raises(CountError, match="not a dossier counter"):
        dossiers_from_fields({"resolved_soon": 1})


def test_known_counters_follow_totals() -> None:
    known = dossier_known(["resolved", "received_online"])
    assert known == {"resolved_early", "resolved_ontime", "resolved_late", "received_online"}
    assert feedback_known(["in_progress_total", "received"]) == {
        "in_progress", "overdue", "received"}


def test_feedback_rates() -> None:
    counts = feedback_from_fields({"received": 45, "in_progress_total": 5, "overdue": 1,
                                   "resolved": 48, "resolved_late": 1})
    assert counts == FeedbackCounts(received=45, in_progress=4, overdue=1,
                                    resolved_ontime=47, resolved_late=1)
    assert feedback_ontime_ratio(counts) == pytest.approx(51 / 53)
    assert feedback_resolved_ontime_ratio(counts) == pytest.approx(47 / 48)
    assert feedback_ontime_ratio(FeedbackCounts(received=3)) is None
    assert feedback_resolved_ontime_ratio(FeedbackCounts(in_progress=3)) is None


def test_catalogue_levels() -> None:
    assert catalogue_levels({"total": 1812, "full": 1204, "partial": 431}) == {
        "full": 1204, "partial": 431, "none": 177}
    with pytest.raises(CountError, match="more than the total"):
        catalogue_levels({"total": 100, "full": 80, "partial": 30})
    with pytest.raises(CountError, match="partial"):
        catalogue_levels({"total": 100, "full": 80})


# --- null_means: unknown (docs/domain.md, "Null and missing counters") -------------------------

def test_an_unknown_part_stops_derivation_of_its_total() -> None:
    given = {"received": 64, "received_online": 49, "received_direct": 14}
    unknown = frozenset({"received_postal"})
    counts = dossiers_from_fields(given, unknown)
    known = dossier_known(given, unknown)
    assert {"received_online", "received_direct"} <= known
    assert "received_postal" not in known and "received" not in known
    assert (counts.received_online, counts.received_direct) == (49, 14)
    # derive: the same payload gives the remainder to the missing part
    assert dossiers_from_fields(given).received_postal == 1
    assert "received_postal" in dossier_known(given)


def test_an_unknown_part_leaves_the_other_unmapped_parts_unknown_too() -> None:
    given = {"resolved": 10, "resolved_ontime": 6}  # early unmapped, late null
    unknown = frozenset({"resolved_late"})
    assert dossier_known(given, unknown) == frozenset({"resolved_ontime"})
    assert dossiers_from_fields(given, unknown).resolved_early == 0
    assert dossier_known(given) >= {"resolved_early", "resolved_ontime", "resolved_late"}
    assert dossiers_from_fields(given).resolved_late == 4


def test_given_parts_must_still_fit_in_the_total_when_one_is_unknown() -> None:
    with pytest.raises(CountError, match=r"received_online \+ received_direct \(75\) is more "
                                         r"than received \(64\)"):
        dossiers_from_fields({"received": 64, "received_online": 60, "received_direct": 15},
                             frozenset({"received_postal"}))
    with pytest.raises(CountError, match="more than resolved"):
        feedback_from_fields({"resolved": 3, "resolved_ontime": 4},
                             frozenset({"resolved_late"}))


def test_due_soon_is_not_judged_against_an_unknown_in_progress_ontime() -> None:
    counts = dossiers_from_fields({"in_progress": 9, "in_progress_overdue": 1, "due_soon": 3},
                                  frozenset({"in_progress_ontime"}))
    assert counts.due_soon == 3


def test_feedback_unknown_overdue_keeps_in_progress_unknown() -> None:
    assert feedback_known({"in_progress_total": 5, "received": 2},
                          frozenset({"overdue"})) == frozenset({"received"})
    assert feedback_known({"in_progress_total": 5}) == frozenset({"in_progress", "overdue"})
