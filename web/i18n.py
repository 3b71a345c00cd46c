"""The wall's words and number formats in Vietnamese (the default) and English.

Words live in ``web/locales/{lang}.json``, one flat catalogue per language with the same keys
(a test keeps them complete). Numbers are formatted by Babel so ``vi`` gets ``1.800`` and
``99,1 %`` and ``en`` gets ``1,800`` and ``99.1%``; dates and times are always the
province's ``dd/mm/yyyy`` and 24-hour clock, whatever the language.

Every format here is total: the database may hold anything a sender or an older version wrote
(a time in 9999, NaN, infinity, a negative count, a 40-digit integer, None), and one such row
must not turn the wall into a 500 for every screen. What cannot be shown is shown as "—".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal, format_percent

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
# Babel locales per language; "vi" formats 1800 as "1.800" and 0.991 as "99,1 %".
_PERCENT = {"vi": "#,##0.0 %", "en": "#,##0.0%"}


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The words of one language (read once per process; the files ship with the package)."""
    if lang not in LANGS:
        raise KeyError(lang)
    text = resources.files("web").joinpath("locales", f"{lang}.json").read_text("utf-8")
    data = json.loads(text)
    return {str(k): str(v) for k, v in data.items()}


UNKNOWN = "—"
MAX_SHOWN = 10 ** 15  # larger magnitudes are corrupt rows (and past Babel's precision)


def finite(value: object) -> float | None:
    """``value`` as a finite float, or None for anything else (None, NaN, inf, text, huge)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def moment(ts: object, timezone: str) -> datetime | None:
    """The local time of unix seconds ``ts``, or None when it is no representable time."""
    seconds = finite(ts)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, ZoneInfo(timezone))
    except (OverflowError, OSError, ValueError):  # before year 1 or after 9999
        return None


def format_time(ts: object, timezone: str, pattern: str) -> str:
    """``strftime(pattern)`` of ``ts`` in ``timezone``; "—" when it is no time."""
    local = moment(ts, timezone)
    return local.strftime(pattern) if local is not None else UNKNOWN


def pick_lang(requested: str | None) -> str:
    """The language asked for with ``?lang=``, or Vietnamese."""
    return requested if requested in LANGS else DEFAULT_LANG


@dataclass(frozen=True, slots=True)
class Translator:
    """Words and formats of one language, handed to templates as ``t``."""

    lang: str
    timezone: str = "Asia/Ho_Chi_Minh"

    def __call__(self, key: str, **values: object) -> str:
        text = catalogue(self.lang)[key]
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in catalogue(self.lang)

    def number(self, value: object, decimals: int = 0) -> str:
        number: float | None = (value if isinstance(value, int) and not isinstance(value, bool)
                                else finite(value))
        if number is None or abs(number) >= MAX_SHOWN:
            return UNKNOWN  # beyond any real count: a corrupt row, not a number to show
        pattern = "#,##0" + ("." + "#" * decimals if decimals else "")
        try:
            return str(format_decimal(number, format=pattern, locale=self.lang))
        except (ArithmeticError, ValueError):
            return UNKNOWN

    def percent(self, ratio: object) -> str:
        """A 0–1 ratio as a percentage with one decimal: ``99,1 %`` in Vietnamese."""
        number = finite(ratio)
        if number is None or abs(number) >= MAX_SHOWN:
            return UNKNOWN
        try:
            return str(format_percent(number, _PERCENT[self.lang], locale=self.lang))
        except (ArithmeticError, ValueError):
            return UNKNOWN

    def clock(self, ts: object) -> str:
        return format_time(ts, self.timezone, "%H:%M:%S")

    def hhmm(self, ts: object) -> str:
        return format_time(ts, self.timezone, "%H:%M")

    def date(self, ts: object) -> str:
        return format_time(ts, self.timezone, "%d/%m/%Y")

    def age(self, seconds: object) -> str:
        """How long ago, in the largest whole unit: ``5 phút trước``."""
        value = finite(seconds)
        if value is None or value >= MAX_SHOWN:
            return UNKNOWN
        value = max(0.0, value)
        if value < 60:
            return self("age_seconds", n=int(value))
        if value < 3600:
            return self("age_minutes", n=int(value // 60))
        if value < 86400:
            return self("age_hours", n=int(value // 3600))
        return self("age_days", n=int(value // 86400))

    def duration(self, seconds: object) -> str:
        """How long something has lasted: ``45 giây``, ``12 phút``, ``1 giờ 05 phút``, then
        ``2 ngày 3 giờ``. wall.js words a ticking duration the same way (``durationText``)."""
        value = finite(seconds)
        if value is None or value >= MAX_SHOWN:
            return UNKNOWN
        s = int(max(0.0, value))
        if s < 60:
            return self("dur_seconds", n=s)
        if s < 3600:
            return self("dur_minutes", n=s // 60)
        if s < 86400:
            return self("dur_hours", h=s // 3600, m=f"{s % 3600 // 60:02d}")
        return self("dur_days", d=s // 86400, h=s % 86400 // 3600)

    def since(self, ts: object, now: object) -> str:
        """The local time something began, ``09:18``; with its day (``23:50 05/12``) when
        that is not today in the province's time zone."""
        start, today = moment(ts, self.timezone), moment(now, self.timezone)
        if start is None:
            return UNKNOWN
        if today is not None and start.date() == today.date():
            return start.strftime("%H:%M")
        if today is not None and start.year == today.year:
            return start.strftime("%H:%M %d/%m")
        return start.strftime("%H:%M %d/%m/%Y")

    def month(self, ts: object) -> str:
        """The province's calendar month of ``ts``: ``12/2026``."""
        return format_time(ts, self.timezone, "%m/%Y")

    def span(self, seconds: object) -> str:
        value = finite(seconds)
        if value is None or abs(value) >= MAX_SHOWN:
            return UNKNOWN
        if value < 3600 or value % 3600:
            return self("span_minutes", n=self.number(value / 60))
        return self("span_hours", n=self.number(value / 3600))
