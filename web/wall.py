"""What the wall screen shows, as plain data: one function's result feeds page and stream.

``wall_document`` takes the status document (``build_status``, the same value
``GET /api/v1/status`` returns) and the latest-value cache, and derives the department tiles,
the overall health and each data panel. Panels read their metrics from the cache by name, so a
panel lights up as soon as some collector produces its data and shows an empty state before.
Everything here is pure and takes ``now``; only ``WallState.refresh`` touches the store, to
fetch the 24-hour availability and the 30-day trends, which are kept for a minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alerts.rules import localized
from ioc.cache import SeriesCache
from ioc.config import WALL_PANELS
from ioc.model import Event
from web.causes import cause_of
from web.i18n import LANGS

if TYPE_CHECKING:
    from ioc.config import WallConfig
    from web.context import SampleReader

log = logging.getLogger("ioc.wall")

# The data panels on the side of the tiles and the metrics each is drawn from.
PANEL_METRICS: dict[str, tuple[str, ...]] = {
    "backlog": ("ioc_dossiers", "ioc_dossiers_received", "ioc_dossier_ontime_ratio",
                "ioc_dossiers_period_start_timestamp_seconds"),
    "feedback": ("ioc_feedback_reports", "ioc_feedback_ontime_ratio"),
    "security": ("ioc_security_events_total",),
    "alerts": (),  # from alert delivery (WallState.alerts), not from the cache
    "indices": ("ioc_province_index_rank",),
}
SIDE_PANELS = tuple(PANEL_METRICS)
STATE_ORDER = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}
SEVERITY_ORDER = ("critical", "high", "warning", "medium", "low", "info")
INDEX_ORDER = ("PAR INDEX", "PCI", "SIPAS", "PAPI")
OVERDUE_STATUSES = frozenset({"overdue", "in_progress_overdue"})
TREND_DAYS = 30
REFRESH_EVERY = 60.0  # seconds between store reads for availability and trends
STRIP_HOURS = 24  # hourly availability cells on each tile
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class WallView:
    name: str
    title: str
    panels: tuple[str, ...]
    departments: tuple[str, ...]  # empty: every department
    title_en: str = ""            # the English wall's title; empty: title

    def shows(self, panel: str) -> bool:
        return panel in self.panels


DEFAULT_VIEW = "toan-tinh"  # the whole province: the one view when none is configured
LEGACY_DEFAULT_VIEW = "all"  # its earlier name, still answered for screens set up with it


def views_from_config(cfg: WallConfig) -> list[WallView]:
    """The configured views, or one view named ``toan-tinh`` with every panel."""
    if not cfg.views:
        return [WallView(DEFAULT_VIEW, "", WALL_PANELS, ())]
    return [WallView(v.name, v.title, tuple(v.panels), tuple(v.departments), v.title_en)
            for v in cfg.views]


def duty_line(teams: Sequence[Mapping[str, Any]]) -> str:
    """"Trần Thị Bình (vanhanh) · Lê Cường (mang)": today's duty officers, from the rows
    ``GET /api/v1/oncall`` returns; the team is named only when there are several."""
    named = [(t["team"], t["now"]["name"]) for t in teams if t.get("now")]
    if len(named) == 1:
        return named[0][1]
    return " · ".join(f"{name} ({team})" for team, name in named)


def grid_shape(count: int) -> tuple[int, int]:
    """Columns and rows for ``count`` tiles on a landscape screen, tiles a little wider than
    tall; the page scales everything with the screen height so this holds at any size."""
    if count <= 0:
        return 1, 1
    cols = max(1, math.ceil(math.sqrt(count * 1.1)))
    return cols, math.ceil(count / cols)


# --------------------------------------------------------------------------------------------
# Department tiles


def department_tile(code: str, name: str, rows: Sequence[Mapping[str, Any]],
                    availability: Mapping[str, float],
                    strip: Sequence[float | None] | None = None) -> dict[str, Any]:
    """One department's tile from its targets' status rows (``build_status`` rows).

    A failing tile says since when (the earliest ``failing_since`` of its failing targets:
    the first failed poll of the outage, not when the debounced state followed) and why,
    in plain words (``web.causes``); ``strip`` is its 24 hourly availability cells.
    """
    known = [r for r in rows if r["up"] is not None]
    down = [r for r in known if r["up"] is False]
    up = len(known) - len(down)
    if not known:
        state = "unknown"
    elif len(down) == len(rows):
        state = "down"
    elif down:
        state = "degraded"
    elif len(known) < len(rows):
        state = "unknown"
    else:
        state = "up"
    latencies = [r["latency_seconds"] for r in known
                 if r["up"] and r["latency_seconds"] is not None]
    ratios = [availability[r["name"]] for r in rows if r["name"] in availability]
    checks = [r["last_check"] for r in rows if r["last_check"] is not None]
    # the target failing longest speaks for the tile: its start is the outage's start
    failing = min(down, key=_failing_order) if down else None
    cause = cause_of(failing["reason"], failing.get("last_error"),
                     failing.get("last_value")) if failing else None
    return {
        "code": code,
        "name": name,
        "state": state,
        "up": up,
        "down": len(down),
        "total": len(rows),
        # rounded so that a tile changes (and is streamed) when it changes visibly
        "latency_ms": round(sum(latencies) / len(latencies) * 1000) if latencies else None,
        "availability": sum(ratios) / len(ratios) if ratios else None,
        "strip": list(strip) if strip else [None] * STRIP_HOURS,
        "last_check": max(checks) if checks else None,
        "stale": bool(rows) and all(r["stale"] for r in rows),
        "reason": failing["reason"] if failing else None,
        "cause": cause.key if cause else None,
        "cause_status": cause.status if cause else None,
        "since": _finite(failing.get("failing_since")) if failing else None,
        "failing_target": failing["name"] if failing else None,
        # with shards: the instances (shard index or auto member slot) polling its targets
        "pollers": sorted({r["shard"] for r in rows if r.get("shard") is not None}),
        # the failing target's own words (all causes of a certificate failure, the limit a
        # hostile answer crossed), shown when the reason is pointed at
        "failing_error": failing.get("last_error") if failing else None,
    }


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _failing_order(row: Mapping[str, Any]) -> tuple[float, str]:
    since = _finite(row.get("failing_since"))
    return (since if since is not None else math.inf), str(row["name"])


def tile_sort_key(tile: Mapping[str, Any]) -> tuple[int, str]:
    return STATE_ORDER[tile["state"]], str(tile["name"]).casefold()


def department_tiles(status: Mapping[str, Any], departments: Mapping[str, str],
                     view: WallView, availability: Mapping[str, float],
                     strips: Mapping[str, Sequence[float | None]] | None = None
                     ) -> list[dict[str, Any]]:
    """A tile per department of the view, failing ones first.

    ``departments`` maps code to name (config order); a department with no target still gets
    a tile (state unknown) so the screen shows it is not watched yet.
    """
    rows_by_dept: dict[str, list[Mapping[str, Any]]] = {}
    for row in status["targets"]:
        rows_by_dept.setdefault(row["department"], []).append(row)
    codes = list(view.departments) if view.departments else list(departments)
    for code in rows_by_dept:
        if code not in departments and not view.departments:
            codes.append(code)
    strips = strips or {}
    tiles = [department_tile(code, departments.get(code, code), rows_by_dept.get(code, []),
                             availability, strips.get(code)) for code in codes]
    tiles.sort(key=tile_sort_key)
    return tiles


def health_counts(tiles: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"up": 0, "degraded": 0, "down": 0, "unknown": 0}
    for tile in tiles:
        counts[tile["state"]] += 1
    counts["total"] = sum(counts.values())
    return counts


# --------------------------------------------------------------------------------------------
# Data panels (read from the cache by metric name)


@dataclass(slots=True)
class _Latest:
    labels: dict[str, str]
    ts: float
    value: float


def _latest(cache: SeriesCache, metric: str) -> list[_Latest]:
    out = []
    for labels, window in cache.series(metric):
        latest = window.latest
        if latest is not None and math.isfinite(latest[1]):
            out.append(_Latest(dict(labels), latest[0], latest[1]))
    return out


def _province_or_mean(rows: list[_Latest]) -> float | None:
    """The province-wide series (``department=""``) if there is one, else the mean."""
    province = [r.value for r in rows if r.labels.get("department", "") == ""]
    if province:
        return province[0]
    return sum(r.value for r in rows) / len(rows) if rows else None


def _counts_panel(counts: list[_Latest], ratios: list[_Latest],
                  received: list[_Latest] | None, trend: list[tuple[float, float]],
                  now: float, stale_after: float, trend_of: str,
                  period: list[_Latest] | None = None) -> dict[str, Any] | None:
    if not counts and not ratios and not received:
        return None
    by_status: dict[str, float] = {}
    for row in counts:
        if row.labels.get("department", "x") == "":
            continue  # a province-wide row would count every department twice
        status = row.labels.get("status", "")
        by_status[status] = by_status.get(status, 0.0) + row.value
    received_rows = [r for r in received or [] if r.labels.get("department", "x") != ""]
    updated = max(r.ts for r in (*counts, *ratios, *(received or [])))
    return {
        "received": (sum(r.value for r in received_rows) if received_rows
                     else by_status.get("received")),
        "in_progress": sum(v for s, v in by_status.items() if s.startswith("in_progress"))
        if by_status else None,
        "overdue": sum(v for s, v in by_status.items() if s in OVERDUE_STATUSES)
        if by_status else None,
        "ontime": _province_or_mean(ratios),
        "trend": trend,
        "trend_of": trend_of,  # "ontime": the on-time rate (0..1), "received": a daily count
        # the start of the portal's reporting period when it says it (the month "received"
        # counts); None: the current month, in the province's time zone, is shown
        "period": max((r.value for r in period or []), default=None),
        "updated": updated,
        "stale": now - updated > stale_after,
    }


def backlog_panel(cache: SeriesCache, trend: list[tuple[float, float]], now: float,
                  stale_after: float) -> dict[str, Any] | None:
    return _counts_panel(_latest(cache, "ioc_dossiers"), _latest(cache, "ioc_dossier_ontime_ratio"),
                         _latest(cache, "ioc_dossiers_received"), trend, now, stale_after,
                         "ontime", _latest(cache, "ioc_dossiers_period_start_timestamp_seconds"))


def feedback_panel(cache: SeriesCache, trend: list[tuple[float, float]], now: float,
                   stale_after: float) -> dict[str, Any] | None:
    return _counts_panel(_latest(cache, "ioc_feedback_reports"),
                         _latest(cache, "ioc_feedback_ontime_ratio"), None, trend, now,
                         stale_after, "received")


def _severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


SECURITY_SHOWN = 4  # latest high and critical events listed on the wall
SECURITY_LISTED = ("critical", "high")


def security_row(event: Event, department_name: str | None) -> dict[str, Any]:
    """One event as the security panel lists it (texts are escaped by the template)."""
    return {
        "source": event.source, "id": event.id, "severity": event.severity,
        "category": event.category, "title": event.title, "host": event.host or "",
        "department": event.department or "",
        "department_name": department_name or event.department or "",
        "occurred_at": event.occurred_at,
    }


def latest_security(rows: Sequence[Mapping[str, Any]], events: Iterable[Event],
                    departments: Mapping[str, str],
                    shown: int = SECURITY_SHOWN) -> list[dict[str, Any]]:
    """``rows`` with the high and critical ones of ``events`` added: newest first, each once.

    The list starts from the store when a page is first rendered and is kept current from
    the event sink after that; an event seen by both is listed once.
    """
    merged: dict[tuple[str, str], dict[str, Any]] = {
        (r["source"], r["id"]): dict(r) for r in rows}
    for event in events:
        if event.severity in SECURITY_LISTED:
            merged[(event.source, event.id)] = security_row(
                event, departments.get(event.department or ""))
    return sorted(merged.values(),
                  key=lambda r: (-r["occurred_at"], r["source"], r["id"]))[:shown]


def security_panel(cache: SeriesCache, now: float, stale_after: float,
                   latest: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any] | None:
    """Events by severity over what the in-memory window holds (its span is shown), and the
    latest high and critical events."""
    by_severity: dict[str, float] = {}
    earliest = now
    updated = max((r["occurred_at"] for r in latest), default=0.0)
    seen = False
    for labels, window in cache.series("ioc_security_events_total"):
        points = window.points
        if not points:
            continue
        seen = True
        first, last = points[0], points[-1]
        increase = last[1] - first[1] if last[1] >= first[1] else last[1]  # counter reset
        severity = dict(labels).get("severity", "")
        by_severity[severity] = by_severity.get(severity, 0.0) + increase
        earliest = min(earliest, first[0])
        updated = max(updated, last[0])
    if not seen and not latest:
        return None
    span = min(cache.window_seconds, max(60.0, now - earliest))
    return {
        "by_severity": sorted(by_severity.items(), key=lambda kv: _severity_rank(kv[0])),
        "span": round(span / 60) * 60,
        "latest": list(latest),
        "updated": updated,
        "stale": now - updated > stale_after,
    }


ALERT_LINES_MAX = 16  # lines the panel could ever hold at 24 px text; plans go up to this
ALERTS_SHOWN = 4  # lines shown before the page has measured its panel (no script: stays)
GROUP_NAMES = 8  # departments named on a rule's line (one line, cut with an ellipsis)
FLASH_SECONDS = 60.0  # a newly fired critical alert flashes its line and its tile this long


def alert_since(alert: Mapping[str, Any], failing_since: Mapping[str, float]) -> float:
    """When what the alert is about began: the outage's first failed poll for an alert about
    a target that is failing (``failing_since``), else when the condition began to hold.

    An outage that began after the alert did (the target recovered for a poll and failed
    again while the alert kept firing) is not its start: the alert's own beginning is.
    """
    active = alert["active_at"] if alert["active_at"] is not None else alert["fired_at"]
    failing = failing_since.get(alert["labels"].get("target", ""))
    if failing is not None and (active is None or failing <= active):
        return failing
    return active if active is not None else 0.0


def _alert_row(alert: Mapping[str, Any],
               failing_since: Mapping[str, float] | None = None) -> dict[str, Any]:
    labels = alert["labels"]
    annotations = alert["annotations"]
    muted = alert["muted"]
    ack = alert["ack"]
    department = labels.get("department", "")
    department_name = alert["department_name"] or department
    severity = labels.get("severity", "")
    alertname = labels.get("alertname", "")
    summary = {lang: localized(annotations, "summary", lang) for lang in LANGS}
    fired = alert["fired_at"]
    row = {
        "kind": "alert",
        "fingerprint": alert["fingerprint"],
        "severity": severity,
        "alertname": alertname,
        "department": department,
        "department_name": department_name,
        "target": labels.get("target", ""),
        "title": {lang: localized(annotations, "title", lang) or alertname for lang in LANGS},
        "summary": summary,
        # the department, when the summary does not name it already
        "where": {lang: department_name if department_name not in text else ""
                  for lang, text in summary.items()},
        "since": alert_since(alert, failing_since or {}),
        # a critical alert flashes (and may sound) until then; None: it does not
        "fresh_until": fired + FLASH_SECONDS if severity == "critical" and fired else None,
        "acked_by": ack["by"] if ack else None,
        "acked_at": ack.get("at") if ack else None,
        "silenced": bool(muted.get("silenced_by")),
        "maintenance": bool(muted.get("maintenance")),
        "inhibited": bool(muted.get("inhibited_by")),
    }
    row["handled"] = bool(row["acked_by"] or row["silenced"] or row["maintenance"]
                          or row["inhibited"])
    return row


def alert_sort_key(row: Mapping[str, Any]) -> tuple[int, int, float]:
    """By severity first (a critical someone took in hand stays above every warning), then
    unhandled before handled (acked, silenced, in maintenance, inhibited), newest outage first.
    """
    return _severity_rank(row["severity"]), int(row["handled"]), -row["since"]


def alert_group(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One line for the critical alerts of one rule: "Mất kết nối — 35 hệ thống"."""
    first = members[0]
    names = list(dict.fromkeys(m["department_name"] for m in members if m["department_name"]))
    fresh = [m["fresh_until"] for m in members if m["fresh_until"] is not None]
    return {
        "kind": "group",
        "fingerprint": "group:" + first["alertname"],
        "severity": first["severity"],
        "alertname": first["alertname"],
        "title": first["title"],
        "count": len(members),
        "systems": all(m["target"] for m in members),  # counted as systems, else as alerts
        "departments": names[:GROUP_NAMES],
        "handled": sum(1 for m in members if m["handled"]),
        "since": min(m["since"] for m in members),
        "fresh_until": max(fresh) if fresh else None,
    }


@dataclass(frozen=True, slots=True)
class AlertFold:
    """What the panel shows when ``capacity`` lines fit: ``lines`` of the ``mode`` list
    (``full``: one line per alert; ``grouped``: critical alerts of one rule on one line), and
    the alerts left out, counted by severity (the "và N cảnh báo khác" line)."""

    mode: str
    lines: list[dict[str, Any]]
    hidden: tuple[tuple[str, int], ...]

    @property
    def hidden_total(self) -> int:
        return sum(n for _, n in self.hidden)


def alert_lines(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                         list[dict[str, Any]]]:
    """The two lists a panel folds: every alert, and criticals of a rule collapsed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["severity"] == "critical":
            groups.setdefault(row["alertname"], []).append(row)
    grouped = [members[0] if len(members) == 1 else alert_group(members)
               for members in groups.values()]
    grouped += [r for r in rows if r["severity"] != "critical"]
    return list(rows), grouped


def _hidden(lines: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line["severity"]] = counts.get(line["severity"], 0) + line.get("count", 1)
    return tuple(sorted(counts.items(), key=lambda kv: _severity_rank(kv[0])))


def fold_alerts(rows: Sequence[dict[str, Any]], capacity: int,
                lines: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
                ) -> AlertFold:
    """The lines shown when ``capacity`` lines fit (the "more" line counts as one).

    Warnings and info fold before any critical does; when the criticals alone do not fit,
    the criticals of each rule collapse into one line that says how many; only when even
    those do not fit are lines left out, and the "more" line says what they hold.
    ``lines`` is :func:`alert_lines` of ``rows`` when the caller has it already.
    """
    capacity = max(1, capacity)
    full, grouped = lines if lines is not None else alert_lines(rows)
    if len(full) <= capacity:
        return AlertFold("full", full, ())
    critical = sum(1 for r in full if r["severity"] == "critical")
    if critical <= capacity - 1:
        return AlertFold("full", full[:capacity - 1], _hidden(full[capacity - 1:]))
    if len(grouped) <= capacity:
        return AlertFold("grouped", grouped, ())
    return AlertFold("grouped", grouped[:capacity - 1], _hidden(grouped[capacity - 1:]))


def alert_plans(rows: Sequence[dict[str, Any]], lines_max: int = ALERT_LINES_MAX,
                lines: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
                ) -> tuple[list[dict[str, Any]], list[tuple[tuple[str, int], ...]]]:
    """A plan per capacity from ``lines_max`` down to 1 (repeats dropped): the page shows the
    first whose lines fit its panel. Each plan names its list, how many of its lines show,
    and which "more" line (an index into the second value, or None). ``lines`` as for
    :func:`fold_alerts`."""
    plans: list[dict[str, Any]] = []
    mores: list[tuple[tuple[str, int], ...]] = []
    lines = lines if lines is not None else alert_lines(rows)
    for capacity in range(lines_max, 0, -1):
        fold = fold_alerts(rows, capacity, lines)
        more = None
        if fold.hidden:
            if fold.hidden not in mores:
                mores.append(fold.hidden)
            more = mores.index(fold.hidden)
        plan = {"mode": fold.mode, "n": len(fold.lines), "more": more}
        if not plans or plans[-1] != plan:
            plans.append(plan)
    return plans, mores


def fresh_criticals(rows: Sequence[Mapping[str, Any]], now: float) -> list[list[Any]]:
    """``[fingerprint, department, flash until]`` of the newest critical that fired within
    ``FLASH_SECONDS`` in each department: what the page flashes (and sounds once for). One
    per department, so a province-wide outage does not put thousands in every delta."""
    newest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        until = row["fresh_until"]
        if until is None or until <= now:
            continue
        seen = newest.get(row["department"])
        if seen is None or until > seen["fresh_until"]:
            newest[row["department"]] = row
    return [[r["fingerprint"], code, r["fresh_until"]] for code, r in sorted(newest.items())]


def alert_rows(alerts: Sequence[Mapping[str, Any]],
               failing_since: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The firing alerts as the panel's rows, in the panel's order (``alert_sort_key``)."""
    return sorted((_alert_row(a, failing_since) for a in alerts if a["state"] == "firing"),
                  key=alert_sort_key)


def alerts_panel(alerts: Sequence[Mapping[str, Any]], updated: float | None, now: float,
                 stale_after: float, failing_since: Mapping[str, float] | None = None,
                 lines_max: int = ALERT_LINES_MAX,
                 shown: int = ALERTS_SHOWN) -> dict[str, Any] | None:
    """Firing alerts as the wall lists them, from the rows ``GET /api/v1/alerts`` returns.

    ``failing_since`` maps a target to the first failed poll of its current outage (status
    rows). The page measures how many lines fit and applies the first plan that fits; the
    server renders the plan for ``shown`` lines, so a page without its script is sensible.
    None (the panel hides) when nothing fires.
    """
    rows = alert_rows(alerts, failing_since)
    if not rows:
        return None
    by_severity: dict[str, int] = {}
    for row in rows:
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + 1
    full, grouped = lines = alert_lines(rows)
    plans, mores = alert_plans(rows, lines_max, lines)
    used = {mode: max((p["n"] for p in plans if p["mode"] == mode), default=0)
            for mode in ("full", "grouped")}
    first = fold_alerts(rows, min(shown, lines_max), lines)
    when = updated if updated is not None else now
    return {
        "lists": {"full": full[:used["full"]], "grouped": grouped[:used["grouped"]]},
        "plans": plans,
        "mores": mores,
        "initial": {"mode": first.mode, "n": len(first.lines),
                    "more": mores.index(first.hidden) if first.hidden in mores else None},
        "fresh": fresh_criticals(rows, now),
        "firing": len(rows),
        "by_severity": sorted(by_severity.items(), key=lambda kv: _severity_rank(kv[0])),
        "updated": when,
        "stale": now - when > stale_after,
    }


def indices_panel(cache: SeriesCache, now: float, stale_after: float) -> dict[str, Any] | None:
    """Each index's latest year, rank and places gained since the year before."""
    ranks: dict[str, dict[int, float]] = {}
    updated = 0.0
    for row in _latest(cache, "ioc_province_index_rank"):
        try:
            year = int(row.labels.get("year", ""))
        except ValueError:
            continue
        ranks.setdefault(row.labels.get("index", "?"), {})[year] = row.value
        updated = max(updated, row.ts)
    if not ranks:
        return None
    items = []
    for index, years in ranks.items():
        year = max(years)
        before = years.get(year - 1)
        items.append({"index": index, "year": year, "rank": int(years[year]),
                      "change": None if before is None else int(before - years[year])})
    items.sort(key=lambda i: (INDEX_ORDER.index(i["index"]) if i["index"] in INDEX_ORDER
                              else len(INDEX_ORDER), i["index"]))
    return {"items": items, "updated": updated, "stale": now - updated > stale_after}


# --------------------------------------------------------------------------------------------
# Store-backed figures, refreshed at most once a minute


@dataclass
class WallState:
    """The wall's slow-moving figures, the firing alerts and the announcement; one per app."""

    announcement: str = ""
    duty: str = ""  # who is on duty now, per team (alerts.oncall), under the clock
    alerts: list[dict[str, Any]] = field(default_factory=list)  # GET /api/v1/alerts rows
    alerts_updated: float | None = None  # the alert engine's last evaluation
    availability: dict[str, float] = field(default_factory=dict)  # target -> 0..1 over 24 h
    strips: dict[str, list[float | None]] = field(default_factory=dict)  # department -> 24 h
    security: list[dict[str, Any]] = field(default_factory=list)  # latest_security rows
    trends: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    refreshed_at: float | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def due(self, now: float) -> bool:
        return self.refreshed_at is None or now - self.refreshed_at >= REFRESH_EVERY

    def refresh_soon(self, store: SampleReader, now: float) -> asyncio.Task[None]:
        """Start one refresh unless one is running; callers may await it with a deadline."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresh(store, now), name="ioc-wall-refresh")
        return self._task

    async def _refresh(self, store: SampleReader, now: float) -> None:
        try:
            hourly = await availability_24h(store, now)
            self.availability, self.strips = hourly.targets, hourly.departments
            self.trends = {
                "backlog": await ontime_trend(store, now),
                "feedback": await daily_trend(store, "ioc_feedback_reports",
                                              {"status": "received"}, now),
            }
        except Exception as exc:  # the wall keeps showing live data without these
            log.warning("wall figures not refreshed", extra={"fields": {"error": repr(exc)}})
        finally:
            self.refreshed_at = now

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass(frozen=True, slots=True)
class Hourly:
    """The last 24 hours of ``ioc_target_up``, hour by hour, read in one query."""

    first: float  # start of the oldest hour (unix seconds, on the hour)
    targets: dict[str, float]  # target -> share of successful polls (hourly means averaged)
    departments: dict[str, list[float | None]]  # department -> 24 cells, None: no data


def strip_start(now: float) -> float:
    """Start of the oldest of the 24 hourly cells; the newest is the hour ``now`` is in."""
    return math.floor(now / HOUR) * HOUR - (STRIP_HOURS - 1) * HOUR


async def availability_24h(store: SampleReader, now: float) -> Hourly:
    """Per target and per department, the hourly availability of the last 24 hours.

    One range query for every target (hourly steps, so the store answers whole hours from
    its 1 h rollups and only the current hour from raw polls); a department's cell is the
    mean of its targets' hourly means, and an hour none of them was polled in has no value.
    """
    first = strip_start(now)
    series = await store.query_range("ioc_target_up", {}, first, now, HOUR)
    targets: dict[str, float] = {}
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for s in series:
        labels = dict(s.labels)
        target = labels.get("target")
        if target and s.points:
            targets[target] = sum(v for _, v in s.points) / len(s.points)
        department = labels.get("department")
        if department is None:
            continue
        dept_sums = sums.setdefault(department, [0.0] * STRIP_HOURS)
        dept_counts = counts.setdefault(department, [0] * STRIP_HOURS)
        for ts, value in s.points:
            cell = round((ts - first) / HOUR)
            if 0 <= cell < STRIP_HOURS and math.isfinite(value):
                dept_sums[cell] += value
                dept_counts[cell] += 1
    departments = {
        code: [round(total / n, 4) if n else None
               for total, n in zip(sums[code], per_cell, strict=True)]
        for code, per_cell in counts.items()}
    return Hourly(first, targets, departments)


async def daily_trend(store: SampleReader, metric: str, matchers: dict[str, str],
                      now: float) -> list[tuple[float, float]]:
    """Daily points of a metric summed over its series, oldest first, for a sparkline."""
    series = await store.query_range(metric, matchers, now - TREND_DAYS * 86400, now, 86400)
    totals: dict[float, float] = {}
    for s in series:
        if dict(s.labels).get("department", "x") == "":
            continue
        for ts, value in s.points:
            totals[ts] = totals.get(ts, 0.0) + value
    return sorted(totals.items())


async def ontime_trend(store: SampleReader, now: float) -> list[tuple[float, float]]:
    """The province's dossier on-time rate day by day over the last 30 days (the daily mean
    of ``ioc_dossier_ontime_ratio{department=""}``; the mean of the departments' rates on a
    day the province-wide series is missing), oldest first."""
    series = await store.query_range("ioc_dossier_ontime_ratio", {}, now - TREND_DAYS * 86400,
                                     now, 86400)
    province: dict[float, float] = {}
    departments: dict[float, list[float]] = {}
    for s in series:
        is_province = dict(s.labels).get("department", "x") == ""
        for ts, value in s.points:
            if not math.isfinite(value):
                continue
            if is_province:
                province[ts] = value
            else:
                departments.setdefault(ts, []).append(value)
    days = sorted(province.keys() | departments.keys())
    return [(day, province[day] if day in province
             else sum(departments[day]) / len(departments[day])) for day in days]


def sparkline(points: Sequence[tuple[float, float]], width: int = 100,
              height: int = 24, min_span: float = 0.0) -> str:
    """SVG polyline ``points`` for a trend (empty below two points). The vertical scale spans
    the values, at least ``min_span`` (a rate moving 0.2 points must not fill the height)."""
    if len(points) < 2:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if high - low < min_span:
        middle = (high + low) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    span_t = (t1 - t0) or 1.0
    span_v = (high - low) or 1.0
    return " ".join(f"{(t - t0) / span_t * width:.1f},{height - (v - low) / span_v * height:.1f}"
                    for t, v in points)


# --------------------------------------------------------------------------------------------
# The document behind the page


def failing_since(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Target -> the first failed poll of its current outage, from status rows."""
    return {r["name"]: r["failing_since"] for r in rows if r.get("failing_since") is not None}


def side_panels(cache: SeriesCache, state: WallState, now: float,
                stale_after: float, events_cache: SeriesCache | None = None,
                failing: Mapping[str, float] | None = None
                ) -> dict[str, dict[str, Any] | None]:
    """``events_cache`` holds the security-event counts (alerts.event_counts); events are not
    samples and never reach the sample cache. ``failing`` is :func:`failing_since` of the
    status rows: an alert about a failing target says since when its outage began."""
    return {
        "backlog": backlog_panel(cache, state.trends.get("backlog", []), now, stale_after),
        "feedback": feedback_panel(cache, state.trends.get("feedback", []), now, stale_after),
        "security": security_panel(events_cache or cache, now, stale_after, state.security),
        "alerts": alerts_panel(state.alerts, state.alerts_updated, now, stale_after, failing),
        "indices": indices_panel(cache, now, stale_after),
    }


def wall_document(status: Mapping[str, Any], *, view: WallView,
                  departments: Mapping[str, str], cache: SeriesCache, state: WallState,
                  stale_after: float, now: float,
                  events_cache: SeriesCache | None = None) -> dict[str, Any]:
    """Everything one view of the wall shows, derived from the status document."""
    tiles = department_tiles(status, departments, view, state.availability, state.strips)
    panels = side_panels(cache, state, now, stale_after, events_cache,
                         failing_since(status["targets"]))
    checks = [t["last_check"] for t in tiles if t["last_check"] is not None]
    return {
        "generated_at": now,
        "province": status["province"],
        "view": view,
        "health": health_counts(tiles),
        "departments": tiles,
        "departments_updated": max(checks) if checks else None,
        "panels": {name: panels[name] for name in SIDE_PANELS if view.shows(name)},
        "announcement": state.announcement if view.shows("announcement") else "",
        "duty": state.duty if view.shows("clock") else "",
    }
