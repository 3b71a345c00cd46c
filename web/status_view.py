"""The public status document: one dict for the page, its JSON twin and the badges.

Built from what is configured (``status_pages:``) and nothing else: each service's state
comes from its targets' debounced states, its daily bars from the targets' availability
(:mod:`ioc.availability`'s tallies, added before dividing), its incidents from the ledger
with the operator's public note. Target names, departments, URLs, failure reasons, error
texts and internal notes are read to compute the document but never copied into it: every
string in it is either configured public wording, an operator's public note, or one of the
fixed words below. Pure: ``now`` and every input are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ioc.availability import Tally
from ioc.status import TargetState
from ioc.status_page_config import StatusPageConfig, StatusServiceConfig
from ioc.store.incidents import PublicIncident
from web.status_windows import PlannedWindow

# Worst first: the banner takes the worst state of any service.
STATES = ("major", "partial", "maintenance", "unknown", "operational")
DAY_LEVELS = ("ok", "minor", "major", "maintenance", "none")
OK_FROM = 0.999      # a day at or above this is green
MINOR_FROM = 0.99    # at or above this amber, below it red
UPCOMING_DAYS = 14   # planned work shown this far ahead

WORDS: dict[str, dict[str, str]] = {
    "vi": {
        "state.operational": "Hoạt động bình thường",
        "state.partial": "Gián đoạn một phần",
        "state.major": "Gián đoạn",
        "state.maintenance": "Đang bảo trì",
        "state.unknown": "Chưa có dữ liệu",
        "banner.operational": "Tất cả dịch vụ đang hoạt động bình thường",
        "banner.partial": "Một số dịch vụ đang gián đoạn một phần",
        "banner.major": "Một số dịch vụ đang gián đoạn",
        "banner.maintenance": "Đang bảo trì theo kế hoạch",
        "banner.unknown": "Chưa có đủ dữ liệu",
        "day.none": "không có dữ liệu",
        "day.maintenance": "bảo trì theo kế hoạch",
        "maintenance.generic": "Bảo trì theo kế hoạch",
        "incident.generic": "Dịch vụ bị gián đoạn. Chúng tôi đang khắc phục.",
        "incident.resolved": "Dịch vụ đã hoạt động trở lại.",
        "ui.updated": "Cập nhật lúc",
        "ui.lang": "Ngôn ngữ",
        "ui.services": "Trạng thái dịch vụ",
        "ui.incidents": "Sự cố gần đây",
        "ui.open_incidents": "Sự cố đang diễn ra",
        "ui.no_incidents": "Không có sự cố nào trong {days} ngày qua.",
        "ui.maintenance": "Bảo trì theo kế hoạch",
        "ui.ongoing": "Đang diễn ra",
        "ui.resolved": "Đã khắc phục",
        "ui.upcoming": "Sắp diễn ra",
        "ui.since": "Từ",
        "ui.until": "đến",
        "ui.lasted": "kéo dài",
        "ui.affected": "Dịch vụ",
        "ui.days_ago": "{days} ngày trước",
        "ui.today": "Hôm nay",
        "ui.uptime": "{ratio} thời gian hoạt động",
        "ui.bars": "Mức sẵn sàng từng ngày trong {days} ngày qua của {name}",
        "ui.legend": "Chú giải",
        "ui.legend.ok": "Hoạt động tốt (từ 99,9 %)",
        "ui.legend.minor": "Gián đoạn ngắn (99 – 99,9 %)",
        "ui.legend.major": "Gián đoạn (dưới 99 %)",
        "ui.legend.maintenance": "Bảo trì theo kế hoạch",
        "ui.legend.none": "Không có dữ liệu",
        "ui.json": "Dữ liệu dạng JSON",
        "ui.footer": "Trang này tự làm mới khi tải lại; số liệu được cập nhật vài giây một lần.",
        "ui.not_found": "Không tìm thấy trang trạng thái này.",
        "ui.private": "Trang trạng thái này chỉ dành cho cán bộ đã đăng nhập: "
                      "đăng nhập tại /console rồi mở lại trang.",
        "ui.home": "Về trang trạng thái chính",
        "ui.too_many": "Quá nhiều yêu cầu. Vui lòng thử lại sau {seconds} giây.",
        "ui.unavailable": "Trang trạng thái tạm thời chưa sẵn sàng. Vui lòng thử lại sau.",
        "unit.minutes": "{n} phút",
        "unit.hours": "{h} giờ {m} phút",
        "unit.whole_hours": "{h} giờ",
        "unit.days": "{d} ngày {h} giờ",
    },
    "en": {
        "state.operational": "Operational",
        "state.partial": "Partial disruption",
        "state.major": "Disrupted",
        "state.maintenance": "Under maintenance",
        "state.unknown": "No data yet",
        "banner.operational": "All services are operating normally",
        "banner.partial": "Some services are partially disrupted",
        "banner.major": "Some services are disrupted",
        "banner.maintenance": "Planned maintenance in progress",
        "banner.unknown": "Not enough data yet",
        "day.none": "no data",
        "day.maintenance": "planned maintenance",
        "maintenance.generic": "Planned maintenance",
        "incident.generic": "The service is disrupted. We are working on it.",
        "incident.resolved": "The service is working again.",
        "ui.updated": "Updated at",
        "ui.lang": "Language",
        "ui.services": "Service status",
        "ui.incidents": "Recent incidents",
        "ui.open_incidents": "Ongoing incidents",
        "ui.no_incidents": "No incidents in the past {days} days.",
        "ui.maintenance": "Planned maintenance",
        "ui.ongoing": "Ongoing",
        "ui.resolved": "Resolved",
        "ui.upcoming": "Upcoming",
        "ui.since": "From",
        "ui.until": "to",
        "ui.lasted": "lasted",
        "ui.affected": "Service",
        "ui.days_ago": "{days} days ago",
        "ui.today": "Today",
        "ui.uptime": "{ratio} uptime",
        "ui.bars": "Daily availability over the past {days} days of {name}",
        "ui.legend": "Legend",
        "ui.legend.ok": "Operational (99.9% or more)",
        "ui.legend.minor": "Short disruption (99–99.9%)",
        "ui.legend.major": "Disruption (under 99%)",
        "ui.legend.maintenance": "Planned maintenance",
        "ui.legend.none": "No data",
        "ui.json": "Data as JSON",
        "ui.footer": "Reload the page for fresh figures; they are updated every few seconds.",
        "ui.not_found": "There is no such status page.",
        "ui.private": "This status page is for signed-in staff only: sign in at /console, "
                      "then open the page again.",
        "ui.home": "Back to the main status page",
        "ui.too_many": "Too many requests. Please try again in {seconds} seconds.",
        "ui.unavailable": "The status page is not available yet. Please try again shortly.",
        "unit.minutes": "{n} min",
        "unit.hours": "{h} h {m} min",
        "unit.whole_hours": "{h} h",
        "unit.days": "{d} d {h} h",
    },
}


def word(lang: str, key: str, **values: object) -> str:
    text = WORDS["en" if lang == "en" else "vi"][key]
    return text.format(**values) if values else text


def duration_text(seconds: float, lang: str) -> str:
    """A public duration: minutes, hours and minutes, or days and hours."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return word(lang, "unit.minutes", n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return word(lang, "unit.hours" if minutes else "unit.whole_hours", h=hours, m=minutes)
    days, hours = divmod(hours, 24)
    return word(lang, "unit.days", d=days, h=hours)


def service_targets(service: StatusServiceConfig, departments: Mapping[str, str]) -> list[str]:
    """The targets making up a service: those named, and every target of each department
    named (``departments``: target name → department code)."""
    wanted = set(service.departments)
    named = list(dict.fromkeys(service.targets))
    return named + sorted(t for t, d in departments.items() if d in wanted and t not in named)


def service_state(states: Sequence[TargetState], in_maintenance: bool) -> str:
    """operational, partial, major, maintenance or unknown, from the targets' states."""
    known = [s for s in states if s.up is not None]
    if not known:
        return "maintenance" if in_maintenance else "unknown"
    down = sum(1 for s in known if s.up is False)
    if down and in_maintenance:
        return "maintenance"
    if down == len(known):
        return "major"
    if down or any(s.degraded for s in known):
        return "partial"
    return "operational"


def day_level(tally: Tally | None) -> str:
    if tally is None:
        return "none"
    ratio = tally.availability
    if ratio is None:
        return "maintenance" if tally.planned > 0 else "none"
    if ratio >= OK_FROM:
        return "maintenance" if tally.planned > 0 else "ok"
    return "minor" if ratio >= MINOR_FROM else "major"


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything the document is built from, read by ``web.status_cache``."""

    now: float
    tz: ZoneInfo
    targets: Mapping[str, str]                  # target name → department (config in force)
    states: Mapping[str, TargetState]           # the status board
    days: Sequence[date]                        # oldest first, the bars' days
    tallies: Mapping[str, Sequence[Tally]] | None   # target → one tally per day; None: not read
    incidents: Sequence[PublicIncident]
    windows: Sequence[PlannedWindow]
    # What only the availability history decides (a service's bars), kept from one snapshot
    # to the next until the history is read again: a new dict then.
    memo: dict[Any, Any] = field(default_factory=dict)
    history_version: int = 0   # which read of the history ``tallies`` and ``memo`` are of


def _percent(ratio: float | None, lang: str) -> str | None:
    if ratio is None:
        return None
    text = f"{ratio * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text.replace('.', ',')} %" if lang != "en" else f"{text}%"


def _days(targets: Sequence[str], lang: str, inputs: Inputs, count: int
          ) -> tuple[list[dict[str, Any]], Tally]:
    """A service's last ``count`` daily bars and their total: its targets' seconds added,
    then divided."""
    day_count = len(inputs.days)
    days, total = [], Tally()
    for i, day in enumerate(inputs.days):
        if i < day_count - count:
            continue
        tally: Tally | None = None
        if inputs.tallies is not None:
            per = [inputs.tallies[t][i] for t in targets if t in inputs.tallies
                   and len(inputs.tallies[t]) == day_count]
            if per:
                tally = sum(per, Tally())
                total = total + tally
        level = day_level(tally)
        ratio = None if tally is None else tally.availability
        label = day.strftime("%d/%m/%Y") + ": " + (
            word(lang, "day.none") if level == "none" and ratio is None
            else word(lang, "day.maintenance") if ratio is None
            else (_percent(ratio, lang) or "") + (
                f" ({word(lang, 'day.maintenance')})" if level == "maintenance" else ""))
        days.append({"date": day.isoformat(), "availability": ratio, "level": level,
                     "label": label})
    return days, total


def _merged(incidents: Sequence[PublicIncident], lang: str) -> list[dict[str, Any]]:
    """Overlapping outages of a service's targets as one public incident, with the public
    notes in ``lang`` (English falls back to the Vietnamese note)."""
    out: list[dict[str, Any]] = []
    for inc in sorted(incidents, key=lambda i: i.started_at):
        end = float("inf") if inc.ended_at is None else inc.ended_at
        if out and inc.started_at <= out[-1]["_end"]:
            cur = out[-1]
            cur["_end"] = max(cur["_end"], end)
        else:
            cur = {"started_at": inc.started_at, "_end": end, "_notes": []}
            out.append(cur)
        note = (inc.public_note_en if lang == "en" else None) or inc.public_note
        if note:
            cur["_notes"].append((inc.public_note_at or 0.0, note))
    return out


def build_document(page: StatusPageConfig, lang: str, inputs: Inputs) -> dict[str, Any]:
    """The public document of one page in one language (see docs/status-page.md)."""
    now = inputs.now
    horizon_past = now - page.incident_days * 86400
    horizon_ahead = now + UPCOMING_DAYS * 86400
    groups: list[dict[str, Any]] = []
    incidents: list[dict[str, Any]] = []
    maintenance: dict[tuple[float, float, str | None], dict[str, Any]] = {}
    worst = len(STATES) - 1
    for group in page.groups:
        services = []
        for service in group.services:
            targets = service_targets(service, inputs.targets)
            depts = {inputs.targets.get(t, "") for t in targets} | set(service.departments)
            name = service.name.pick(lang)
            active = [w for w in inputs.windows
                      if w.starts_at <= now < w.ends_at and w.covers(depts)]
            state = service_state([inputs.states[t] for t in targets if t in inputs.states],
                                  bool(active))
            worst = min(worst, STATES.index(state))
            memo_key = ("days", service.slug, lang, tuple(targets), tuple(inputs.days),
                        page.history_days)
            held = inputs.memo.get(memo_key)
            if held is None:
                held = inputs.memo[memo_key] = _days(targets, lang, inputs, page.history_days)
            days, total = held
            services.append({"slug": service.slug, "name": name, "state": state,
                             "state_label": word(lang, f"state.{state}"),
                             "availability": total.availability,
                             "availability_label": _percent(total.availability, lang),
                             "days": days})
            mine = [i for i in inputs.incidents if i.target in targets and not i.planned]
            for merged in _merged(mine, lang):
                end = merged["_end"]
                is_open = end == float("inf")
                if not is_open and end < horizon_past:
                    continue
                notes = [text for _, text in sorted(merged["_notes"])]
                duration = (now if is_open else end) - merged["started_at"]
                if not is_open and not notes and duration < page.min_incident:
                    continue
                incidents.append({
                    "service": service.slug, "service_name": name,
                    "started_at": merged["started_at"],
                    "ended_at": None if is_open else end, "open": is_open,
                    "duration_seconds": None if is_open else round(duration),
                    "notes": list(dict.fromkeys(notes)),
                    "summary": word(lang, "incident.generic" if is_open
                                    else "incident.resolved")})
            for w in inputs.windows:
                if w.ends_at > now and w.starts_at < horizon_ahead and w.covers(depts):
                    note = (w.note_en if lang == "en" else None) or w.note
                    entry = maintenance.setdefault((w.starts_at, w.ends_at, note), {
                        "starts_at": w.starts_at, "ends_at": w.ends_at,
                        "active": w.starts_at <= now,
                        "note": note or word(lang, "maintenance.generic"),
                        "services": []})
                    if name not in entry["services"]:
                        entry["services"].append(name)
        groups.append({"name": group.name.pick(lang), "services": services})
    overall = STATES[worst]
    shown_days = inputs.days[-page.history_days:]
    incidents.sort(key=lambda i: (not i["open"], -i["started_at"]))
    return {
        "page": {"slug": page.slug, "title": page.title.pick(lang),
                 "description": None if page.description is None
                 else page.description.pick(lang)},
        "lang": lang,
        "overall": {"state": overall, "label": word(lang, f"banner.{overall}")},
        "history_days": len(shown_days),
        "incident_days": page.incident_days,
        "first_day": shown_days[0].isoformat() if shown_days else None,
        "groups": groups,
        "incidents": incidents,
        "maintenance": sorted(maintenance.values(), key=lambda m: m["starts_at"]),
    }


def bar_days(now: float, tz: ZoneInfo, count: int) -> list[tuple[date, float, float]]:
    """The last ``count`` local days up to today, with their bounds (unix seconds)."""
    today = datetime.fromtimestamp(now, tz).date()
    out = []
    for back in range(count - 1, -1, -1):
        day = today - timedelta(days=back)
        start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        after = day + timedelta(days=1)
        out.append((day, start, datetime(after.year, after.month, after.day,
                                         tzinfo=tz).timestamp()))
    return out
