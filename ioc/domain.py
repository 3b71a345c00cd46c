"""The public-service counters ioc reports, and the rates computed from them.

Everything here is pure: the backlog and feedback collectors turn a payload into these
counters, and the formulas below follow the national service-quality index (QĐ 766/QĐ-TTg),
so the figure on the wall is the figure the province reports. docs/domain.md explains each
counter in Vietnamese and English.

Sources differ in how much they split a counter: one gives "resolved" and "resolved on time",
another early / on time / late. :func:`dossiers_from_fields` accepts either and checks that
the parts add up, so a payload whose counters make no sense is refused with the field named
instead of producing a rate above 100 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any


class CountError(ValueError):
    """Counters that contradict each other; ``field`` names the canonical counter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------
# Dossiers (hồ sơ thủ tục hành chính)

# Reception channels: trực tuyến, trực tiếp, dịch vụ bưu chính công ích (BCCI).
CHANNELS = ("online", "direct", "postal")


@dataclass(frozen=True, slots=True)
class DossierCounts:
    """One department's dossiers in the current reporting period.

    ``due_soon`` is None when the source does not give it; every other counter is known.
    """

    received_online: int = 0      # tiếp nhận trực tuyến
    received_direct: int = 0      # tiếp nhận trực tiếp
    received_postal: int = 0      # tiếp nhận qua BCCI
    carried_over: int = 0         # kỳ trước chuyển sang
    resolved_early: int = 0       # đã giải quyết trước hạn
    resolved_ontime: int = 0      # đã giải quyết đúng hạn
    resolved_late: int = 0        # đã giải quyết quá hạn
    in_progress_ontime: int = 0   # đang giải quyết trong hạn
    in_progress_overdue: int = 0  # đang giải quyết quá hạn
    waiting_supplement: int = 0   # chờ bổ sung
    paused: int = 0               # tạm dừng
    returned: int = 0             # trả lại (không đủ điều kiện)
    withdrawn: int = 0            # công dân rút hồ sơ
    due_soon: int | None = None   # sắp đến hạn (a part of in_progress_ontime)

    @property
    def received(self) -> int:
        return self.received_online + self.received_direct + self.received_postal

    @property
    def resolved(self) -> int:
        return self.resolved_early + self.resolved_ontime + self.resolved_late

    @property
    def in_progress(self) -> int:
        return self.in_progress_ontime + self.in_progress_overdue

    @property
    def handled(self) -> int:
        """Dossiers handled in the period: resolved plus still in progress (QĐ 766)."""
        return self.resolved + self.in_progress

    def __add__(self, other: DossierCounts) -> DossierCounts:
        values: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = None if mine is None and theirs is None \
                else (mine or 0) + (theirs or 0)
        return DossierCounts(**values)


# The statuses of ioc_dossiers{status}. The resolved_*, in_progress_*, waiting_supplement,
# paused, returned and withdrawn counts split the period's dossiers by where each stands now;
# carried_over (where they came from) and due_soon (a part of in_progress_ontime) overlap them,
# so a sum over every status means nothing.
DOSSIER_STATUSES = (
    "carried_over", "resolved_early", "resolved_ontime", "resolved_late",
    "in_progress_ontime", "in_progress_overdue", "due_soon", "waiting_supplement", "paused",
    "returned", "withdrawn",
)

# Canonical counter names a mapping may fill. ``resolved`` and ``in_progress`` are totals for
# sources that give a total and only some of its parts; the missing part is derived.
DOSSIER_FIELDS = (
    "received", *(f"received_{c}" for c in CHANNELS), "carried_over",
    "resolved", "resolved_early", "resolved_ontime", "resolved_late",
    "in_progress", "in_progress_ontime", "in_progress_overdue", "due_soon",
    "waiting_supplement", "paused", "returned", "withdrawn",
)


def _split_total(values: Mapping[str, int], total_key: str, parts: tuple[str, ...],
                 derive: str, unknown: frozenset[str] = frozenset()) -> dict[str, int]:
    """Fill ``parts`` from ``values``; with a total given, derive the part that is missing.

    With one part missing, it is the total minus the others. With several missing, ``derive``
    (or else the last missing part) takes the remainder and the others are 0: a source that
    does not separate "early" from "on time" reports both as on time. Without a total,
    missing parts are 0.

    A part in ``unknown`` (the source sent null for it and the mapping says ``null_means:
    unknown``) stops the derivation: the remainder is then the unknown part plus any unmapped
    ones, which cannot be told apart, so the missing parts stay 0 here and
    :func:`dossier_known` leaves them out. The given parts must still fit in the total.
    """
    out = {p: values[p] for p in parts if p in values}
    total = values.get(total_key)
    if total is None:
        return {p: out.get(p, 0) for p in parts}
    given = sum(out.values())
    missing = [p for p in parts if p not in out]
    if unknown.intersection(parts):
        if given > total:
            others = " + ".join(p for p in parts if p in out)
            raise CountError(total_key, f"{others} ({given}) is more than {total_key} "
                                        f"({total})")
        return {p: out.get(p, 0) for p in parts}
    if not missing:
        if given != total:
            listed = " + ".join(parts)
            raise CountError(total_key, f"{listed} = {given}, but {total_key} = {total}")
        return out
    target = derive if derive in missing else missing[-1]
    if given > total:
        others = " + ".join(p for p in parts if p in out)
        raise CountError(target, f"{others} ({given}) is more than {total_key} ({total})")
    result = {p: out.get(p, 0) for p in parts}
    result[target] = total - given
    return result


def dossiers_from_fields(values: Mapping[str, int],
                         unknown: frozenset[str] = frozenset()) -> DossierCounts:
    """Build counts from canonical fields (see DOSSIER_FIELDS); raise CountError if they clash.

    ``unknown`` names counters the source sent as null that must stay unknown (docs/domain.md,
    "Null and missing counters"): no part of their total is derived.
    """
    strange = sorted(set(values) - set(DOSSIER_FIELDS))
    if strange:
        raise CountError(strange[0], "not a dossier counter")
    received = _split_total(values, "received",
                            ("received_online", "received_direct", "received_postal"),
                            derive="received_direct", unknown=unknown)
    resolved = _split_total(values, "resolved",
                            ("resolved_early", "resolved_ontime", "resolved_late"),
                            derive="resolved_late", unknown=unknown)
    progress = _split_total(values, "in_progress",
                            ("in_progress_ontime", "in_progress_overdue"),
                            derive="in_progress_ontime", unknown=unknown)
    due_soon = values.get("due_soon")
    if due_soon is not None and due_soon > progress["in_progress_ontime"] \
            and "in_progress_ontime" in dossier_known(values, unknown):
        raise CountError("due_soon", f"{due_soon} due soon, but only "
                         f"{progress['in_progress_ontime']} in progress within deadline")
    simple = {k: values.get(k, 0) for k in (
        "carried_over", "waiting_supplement", "paused", "returned", "withdrawn")}
    return DossierCounts(**simple, **received, **resolved, **progress, due_soon=due_soon)


# A total and the parts it stands for: given the total, every part is known (derived or 0).
_DOSSIER_TOTALS = {
    "received": tuple(f"received_{c}" for c in CHANNELS),
    "resolved": ("resolved_early", "resolved_ontime", "resolved_late"),
    "in_progress": ("in_progress_ontime", "in_progress_overdue"),
}
_FEEDBACK_TOTALS = {
    "resolved": ("resolved_ontime", "resolved_late"),
    "in_progress_total": ("in_progress", "overdue"),
}


def _known(given: Iterable[str], totals: Mapping[str, tuple[str, ...]],
           unknown: frozenset[str]) -> frozenset[str]:
    known = set(given)
    for total, parts in totals.items():
        if total in known:
            known.discard(total)
            if not unknown.intersection(parts):
                known.update(parts)
    return frozenset(known)


def dossier_known(given: Iterable[str], unknown: frozenset[str] = frozenset()
                  ) -> frozenset[str]:
    """The counters a source really reports, given the canonical fields it filled.

    Counters it does not report are 0 in DossierCounts but must not be published as 0: a
    portal that gives no postal figure has not received zero postal dossiers. A total makes
    its unmapped parts known (derived), unless one of its parts is in ``unknown``.
    """
    return _known(given, _DOSSIER_TOTALS, unknown)


def feedback_known(given: Iterable[str], unknown: frozenset[str] = frozenset()
                   ) -> frozenset[str]:
    return _known(given, _FEEDBACK_TOTALS, unknown)


# What each rate needs to be known before it means anything.
DOSSIER_RATIO_NEEDS = frozenset((*_DOSSIER_TOTALS["resolved"], *_DOSSIER_TOTALS["in_progress"]))
DOSSIER_RESOLVED_RATIO_NEEDS = frozenset(_DOSSIER_TOTALS["resolved"])
FEEDBACK_RATIO_NEEDS = frozenset(("in_progress", "overdue", "resolved_ontime", "resolved_late"))
FEEDBACK_RESOLVED_RATIO_NEEDS = frozenset(("resolved_ontime", "resolved_late"))


def dossier_ontime_ratio(counts: DossierCounts) -> float | None:
    """QĐ 766: (resolved early + resolved on time + in progress within deadline) ÷ handled.

    None when nothing was handled: the rate is undefined then, and a made-up 0 or 1 would
    either raise a false alarm or hide an outage of the source.
    """
    handled = counts.handled
    if handled == 0:
        return None
    return (counts.resolved_early + counts.resolved_ontime + counts.in_progress_ontime) / handled


def dossier_resolved_ontime_ratio(counts: DossierCounts) -> float | None:
    """(resolved early + resolved on time) ÷ resolved; None when nothing was resolved."""
    resolved = counts.resolved
    if resolved == 0:
        return None
    return (counts.resolved_early + counts.resolved_ontime) / resolved


# --------------------------------------------------------------------------------------------
# Citizens' feedback reports (phản ánh, kiến nghị)


@dataclass(frozen=True, slots=True)
class FeedbackCounts:
    received: int = 0          # tiếp nhận trong kỳ
    in_progress: int = 0       # đang xử lý trong hạn
    overdue: int = 0           # đang xử lý quá hạn
    resolved_ontime: int = 0   # đã xử lý đúng hạn
    resolved_late: int = 0     # đã xử lý quá hạn

    @property
    def resolved(self) -> int:
        return self.resolved_ontime + self.resolved_late

    @property
    def handled(self) -> int:
        return self.resolved + self.in_progress + self.overdue

    def __add__(self, other: FeedbackCounts) -> FeedbackCounts:
        return FeedbackCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                                 for f in fields(self)})


FEEDBACK_STATUSES = ("received", "in_progress", "overdue", "resolved_ontime", "resolved_late")
FEEDBACK_FIELDS = (*FEEDBACK_STATUSES, "resolved", "in_progress_total")


def feedback_from_fields(values: Mapping[str, int],
                         unknown: frozenset[str] = frozenset()) -> FeedbackCounts:
    """Build counts from canonical fields (see FEEDBACK_FIELDS); raise CountError if they clash.

    ``in_progress_total`` is the whole of in progress and overdue, for sources giving only
    that and the overdue count. ``unknown`` as for :func:`dossiers_from_fields`.
    """
    strange = sorted(set(values) - set(FEEDBACK_FIELDS))
    if strange:
        raise CountError(strange[0], "not a feedback counter")
    resolved = _split_total(values, "resolved", ("resolved_ontime", "resolved_late"),
                            derive="resolved_late", unknown=unknown)
    progress = _split_total(values, "in_progress_total", ("in_progress", "overdue"),
                            derive="in_progress", unknown=unknown)
    return FeedbackCounts(received=values.get("received", 0), **resolved, **progress)


def feedback_ontime_ratio(counts: FeedbackCounts) -> float | None:
    """(resolved on time + in progress within deadline) ÷ handled; None when none handled."""
    handled = counts.handled
    if handled == 0:
        return None
    return (counts.resolved_ontime + counts.in_progress) / handled


def feedback_resolved_ontime_ratio(counts: FeedbackCounts) -> float | None:
    resolved = counts.resolved
    if resolved == 0:
        return None
    return counts.resolved_ontime / resolved


# --------------------------------------------------------------------------------------------
# Online-service catalogue (dịch vụ công trực tuyến)

# ioc_online_procedures{level}: toàn trình (full), một phần (partial), and the rest (none), so
# that summing over levels gives the procedures offered.
ONLINE_LEVELS = ("full", "partial", "none")
CATALOGUE_FIELDS = ("total", "full", "partial")


def catalogue_levels(values: Mapping[str, int]) -> dict[str, int]:
    """From total / full / partial to the three disjoint levels; raise CountError on a clash."""
    missing = [k for k in CATALOGUE_FIELDS if k not in values]
    if missing:
        raise CountError(missing[0], "required for the procedure catalogue")
    total, full, partial = values["total"], values["full"], values["partial"]
    if full + partial > total:
        raise CountError("total", f"full ({full}) + partial ({partial}) online procedures "
                                  f"is more than the total ({total})")
    return {"full": full, "partial": partial, "none": total - full - partial}
