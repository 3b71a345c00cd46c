"""The report as data: one dict that the API returns and every format renders.

HTML, PDF, XLSX and CSV are all drawn from :func:`build_report`'s result, so a number in the
PDF is the number in the API (the tests compare them). Everything is computed here from
inputs the caller read from the store; ``now`` is passed in.

Figures, and how each is counted (docs/reports.md):

* availability: :mod:`ioc.availability`, per target, then summed seconds per department and
  for the province;
* incidents: the unplanned incidents overlapping the period; *downtime* is the part of them
  inside the period (so months add up), *MTTR* the mean full duration of those that
  recovered, *longest* the longest full duration;
* dossiers and feedback: the portal's counters are gauges of its own current period, so the
  report takes the last value stored inside the report's period (docs/domain.md); rates are
  QĐ 766's (:mod:`ioc.domain`);
* security events: counted by severity, by the time they occurred;
* on-time rate by month: the last 12 months' counters (each month's last value, read by
  ``collect``), every department's added before dividing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ioc.availability import Period, Tally, tally
from ioc.domain import (
    DossierCounts,
    FeedbackCounts,
    dossier_ontime_ratio,
    feedback_ontime_ratio,
)
from ioc.incidents import Incident, Window, summary
from ioc.store.availability import TargetHistory

TOP_SYSTEMS = 10


def add_counts(counts: Iterable[DossierCounts]) -> DossierCounts:
    """Departments' counters added field by field (``due_soon`` where every one has it)."""
    total: dict[str, Any] = {}
    for one in counts:
        for name in DossierCounts.__dataclass_fields__:
            value = getattr(one, name)
            if name == "due_soon" and (value is None or total.get(name, 0) is None):
                total[name] = None
                continue
            total[name] = total.get(name, 0) + value
    return DossierCounts(**total)


def ontime_by_month(monthly: Mapping[str, Mapping[str, DossierCounts]],
                    department: str | None) -> list[dict[str, Any]]:
    """Per month (oldest first): dossiers received and resolved and the QĐ 766 on-time rate
    of the province (or of ``department``), counters added before dividing."""
    out: list[dict[str, Any]] = []
    for month, by_dept in monthly.items():
        chosen = [c for code, c in by_dept.items() if department is None or code == department]
        if not chosen:
            out.append({"month": month, "received": None, "resolved": None, "handled": None,
                        "ontime_rate": None})
            continue
        total = add_counts(chosen)
        out.append({"month": month, "received": total.received, "resolved": total.resolved,
                    "handled": total.handled, "ontime_rate": dossier_ontime_ratio(total)})
    return out


def _planned(windows: Sequence[Window], department: str) -> list[tuple[float, float]]:
    return [(w.starts_at, w.ends_at) for w in windows if w.department in ("*", department)]


def build_report(*, period: Period, day_bounds: Sequence[tuple[Any, float, float]],
                 now: float, province: str, departments: Mapping[str, str],
                 histories: Mapping[str, TargetHistory], incidents: Sequence[Incident],
                 windows: Sequence[Window] = (),
                 dossiers: Mapping[str, DossierCounts] | None = None,
                 feedback: Mapping[str, FeedbackCounts] | None = None,
                 security: Mapping[str, Mapping[str, int]] | None = None,
                 department: str | None = None,
                 monthly_dossiers: Mapping[str, Mapping[str, DossierCounts]] | None = None
                 ) -> dict[str, Any]:
    dossiers = dossiers or {}
    feedback = feedback or {}
    security = security or {}
    per_target: dict[str, Tally] = {}
    per_day: list[Tally] = [Tally() for _ in day_bounds]
    for name, hist in histories.items():
        planned = _planned(windows, hist.department)
        per_target[name] = tally(hist.segments, period.start, period.end, now=now,
                                 monitored_from=hist.monitored_from, planned=planned)
        for i, (_, a, b) in enumerate(day_bounds):
            per_day[i] += tally(hist.segments, a, b, now=now,
                                monitored_from=hist.monitored_from, planned=planned)
    inside = [i for i in incidents if i.started_at < period.end
              and (i.ended_at is None or i.ended_at > period.start)]

    def clipped(i: Incident) -> float:
        end = min(period.end, now) if i.ended_at is None else min(i.ended_at, period.end)
        return max(0.0, end - max(i.started_at, period.start))

    by_dept_inc: dict[str, list[Incident]] = defaultdict(list)
    for inc in inside:
        by_dept_inc[inc.department].append(inc)
    codes = sorted({h.department for h in histories.values()} | set(by_dept_inc)
                   | set(dossiers) | set(feedback) | set(security))
    if department is not None:
        codes = [c for c in codes if c == department]
    dept_rows = []
    province_tally = Tally()
    for code in codes:
        t = Tally()
        systems = 0
        for name, hist in histories.items():
            if hist.department == code:
                t += per_target[name]
                systems += 1
        province_tally += t
        incs = by_dept_inc.get(code, [])
        unplanned = [i for i in incs if not i.planned]
        d = dossiers.get(code)
        f = feedback.get(code)
        dept_rows.append({
            "code": code, "name": departments.get(code, code), "systems": systems,
            **t.to_dict(),
            "incidents": len(unplanned), "planned_incidents": len(incs) - len(unplanned),
            "downtime_seconds": sum(clipped(i) for i in unplanned),
            "dossiers": None if d is None else {
                "received": d.received, "resolved": d.resolved,
                "ontime_rate": dossier_ontime_ratio(d)},
            "feedback": None if f is None else {
                "received": f.received, "resolved": f.resolved,
                "ontime_rate": feedback_ontime_ratio(f)},
            "security": dict(sorted(security.get(code, {}).items())),
        })
    chosen = [i for i in inside if department is None or i.department == department]
    figures = summary(chosen, now)
    longest = max((i for i in chosen if not i.planned), key=lambda i: i.duration(now),
                  default=None)
    targets: list[dict[str, Any]] = sorted(
        ({"target": name, "department": hist.department, **per_target[name].to_dict(),
          "incidents": sum(1 for i in chosen if i.target == name and not i.planned),
          "downtime_seconds": sum(clipped(i) for i in chosen
                                  if i.target == name and not i.planned)}
         for name, hist in histories.items()
         if department is None or hist.department == department),
        key=lambda row: (-row["downtime_seconds"], row["target"]))
    return {
        "period": period.label, "kind": period.kind, "start": period.start,
        "end": period.end, "generated_at": now, "province": province,
        "department": department,
        "summary": {
            "systems": len(targets), **province_tally.to_dict(),
            "incidents": figures["incidents"], "planned_incidents": figures["planned"],
            "open_incidents": figures["open"],
            "downtime_seconds": sum(clipped(i) for i in chosen if not i.planned),
            "mttr_seconds": figures["mttr_seconds"],
            "longest": None if longest is None else {
                "target": longest.target, "department": longest.department,
                "seconds": longest.duration(now)},
        },
        "departments": dept_rows,
        "top_downtime": [row for row in targets if row["downtime_seconds"] > 0][:TOP_SYSTEMS],
        "targets": targets,
        "daily": [{"day": day.isoformat(), "availability": t.availability,
                   "unknown_seconds": t.unknown}
                  for (day, _, _), t in zip(day_bounds, per_day, strict=True)],
        "ontime_by_month": ontime_by_month(monthly_dossiers or {}, department),
        "incidents": [{
            "target": i.target, "department": i.department,
            "department_name": departments.get(i.department, i.department),
            "started_at": i.started_at, "ended_at": i.ended_at,
            "duration_seconds": i.duration(now), "in_period_seconds": clipped(i),
            "causes": dict(i.causes), "planned": i.planned} for i in chosen],
    }
