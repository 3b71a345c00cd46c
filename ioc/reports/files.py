"""A period's report built once for every channel that sends it.

A scheduled report goes to several channels (an e-mail with files, a Telegram summary, a
webhook), each its own outbox row sent on its own. Reading a month of 1,000 targets and
laying out its PDF takes seconds, so :class:`ReportFiles` builds each (period, language,
department) once — concurrent asks wait for the same build — and keeps the last few for a
while: the channels of one run, a retry soon after, and the taps on its signed download
links (one format of the several built) reuse it. Files are built when a
channel sends, not when the run is queued, so the outbox rows stay small (a few hundred
bytes of JSON) and a report queued while the store was busy is built from what is stored
when it goes out.

Rendering (WeasyPrint, openpyxl) is synchronous CPU work: it runs in a worker thread so the
loop keeps polling (it still shares the GIL; docs/reports.md has the figures).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ioc.reports.collect import ReportConfig, collect
from ioc.reports.render import render


@dataclass(frozen=True, slots=True)
class ReportRequest:
    period: str
    formats: tuple[str, ...]
    lang: str = "vi"
    department: str | None = None


@dataclass(frozen=True, slots=True)
class BuiltReport:
    data: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    built_at: float = 0.0


def render_files(data: dict[str, Any], formats: tuple[str, ...], *, lang: str, tz: ZoneInfo,
                 departments: dict[str, str]) -> dict[str, bytes]:
    return {fmt: render(data, fmt, lang=lang, tz=tz, departments=departments)
            for fmt in formats}


class ReportFiles:
    def __init__(self, config: Callable[[], ReportConfig], clock: Callable[[], float], *,
                 keep: int = 4, keep_for: float = 3600.0) -> None:
        self.config = config
        self.clock = clock
        self.keep = keep
        self.keep_for = keep_for
        self._built: OrderedDict[ReportRequest, BuiltReport] = OrderedDict()
        self._locks: dict[ReportRequest, asyncio.Lock] = {}
        self.builds = 0  # how many times a report was built (the tests read it)

    async def get(self, request: ReportRequest) -> BuiltReport:
        """The report's data and files (ValueError on a bad period, StoreError)."""
        lock = self._locks.setdefault(request, asyncio.Lock())
        async with lock:
            now = self.clock()
            found = self._kept(request, now)
            if found is not None:
                return found
            built = await self._build(request, now)
            self._built[request] = built
            while len(self._built) > self.keep:
                old, _ = self._built.popitem(last=False)
                self._locks.pop(old, None)
            return built

    def _kept(self, request: ReportRequest, now: float) -> BuiltReport | None:
        """A fresh build of this request, or of the same report in more formats (a download
        link asks for one format of what a scheduled run built in several)."""
        for kept, built in reversed(self._built.items()):
            if (now - built.built_at <= self.keep_for and kept.period == request.period
                    and kept.lang == request.lang and kept.department == request.department
                    and set(request.formats) <= set(kept.formats)):
                self._built.move_to_end(kept)
                return built
        return None

    async def _build(self, request: ReportRequest, now: float) -> BuiltReport:
        config = self.config()
        data = await collect(config, request.period, now=now, department=request.department)
        files = await asyncio.to_thread(
            render_files, data, request.formats, lang=request.lang,
            tz=ZoneInfo(config.province.timezone),
            departments={d.code: d.name for d in config.departments})
        self.builds += 1
        return BuiltReport(data, files, now)
