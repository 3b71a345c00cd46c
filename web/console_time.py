"""Dates and times typed in the console: ``dd/mm/yyyy HH:MM`` on a 24-hour clock, read in the
province's time zone whatever the browser's language.

A browser's ``<input type=datetime-local>`` shows its own locale's format (``12/05/2026,
10:00 PM`` in an English Chrome), so an operator in the operations room could not tell the
fifth of December from the twelfth of May. The console uses plain text fields with this one
pattern, and the server reads them here: the same rules for every browser, and an error that
says what was wrong (no such day, hour past 23, wrong shape) in the page's language.

``datetime`` does the calendar arithmetic (month lengths, leap years); only the shape is read
with a regular expression. A local time that does not exist (a clock jumping forward in a
zone with daylight saving; Asia/Ho_Chi_Minh has none since 1975) is refused rather than
silently moved.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from web.errors import ApiError
from web.i18n import catalogue

PATTERN = "dd/mm/yyyy HH:MM"
# The HTML pattern attribute of the console's fields (checked again here, server-side).
HTML_PATTERN = r"\s*\d{1,2}/\d{1,2}/\d{4}\s+\d{1,2}:\d{2}\s*"
_SHAPE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})\s*")
FIRST_YEAR, LAST_YEAR = 2000, 2100  # beyond: a typing slip, not a plan


class TimeInputError(ValueError):
    """A typed time that cannot be read; ``message(lang)`` says why in that language."""

    def __init__(self, key: str, **values: object) -> None:
        self.key = key
        self.values = values
        super().__init__(self.message("en"))

    def message(self, lang: str) -> str:
        words = catalogue(lang if lang in ("vi", "en") else "en")
        return words[self.key].format(**self.values)


def looks_local(value: object) -> bool:
    """Whether ``value`` is meant as a typed ``dd/mm/yyyy`` time (not unix seconds or ISO)."""
    return isinstance(value, str) and "/" in value


def parse_local(text: str, tz: ZoneInfo) -> float:
    """Unix seconds of ``dd/mm/yyyy HH:MM`` in ``tz``; TimeInputError says what is wrong."""
    shown = text.strip()[:40]
    found = _SHAPE.fullmatch(text)
    if found is None:
        raise TimeInputError("time_error_shape", value=shown, pattern=PATTERN)
    day, month, year, hour, minute = (int(g) for g in found.groups())
    if hour > 23 or minute > 59:
        raise TimeInputError("time_error_clock", value=shown)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise TimeInputError("time_error_year", value=shown, first=FIRST_YEAR, last=LAST_YEAR)
    try:
        local = datetime(year, month, day, hour, minute, tzinfo=tz)
    except ValueError:
        raise TimeInputError("time_error_date", value=shown) from None
    stamp = local.timestamp()
    # A time skipped by a clock change maps to another wall-clock time on the way back.
    back = datetime.fromtimestamp(stamp, tz)
    if (back.year, back.month, back.day, back.hour, back.minute) != (year, month, day, hour,
                                                                     minute):
        raise TimeInputError("time_error_gap", value=shown)
    return stamp


def format_local(ts: float, tz: ZoneInfo) -> str:
    """``ts`` as the console's fields show it: ``dd/mm/yyyy HH:MM`` in ``tz``."""
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%d/%m/%Y %H:%M")


def typed_field(value: object, name: str, tz: ZoneInfo, lang: str) -> float:
    """A typed ``dd/mm/yyyy HH:MM`` request field as unix seconds; ApiError 400 in ``lang``
    (the request's ``?lang=``, English by default) when it cannot be read."""
    try:
        return parse_local(str(value), tz)
    except TimeInputError as exc:
        raise ApiError(400, f"invalid {name}", exc.message(lang)) from None
