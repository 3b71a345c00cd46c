"""The wall's words and number formats in Vietnamese (the default) and English.

Words live in ``web/locales/{lang}.json``, one flat catalogue per language with the same keys
(a test keeps them complete). Numbers are formatted by Babel so ``vi`` gets ``1.800`` and
``99,1 %`` and ``en`` gets ``1,800`` and ``99.1%``; dates and times are always the
province's ``dd/mm/yyyy`` and 24-hour clock, whatever the language.
"""

from __future__ import annotations

import json
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

    def number(self, value: float | None, decimals: int = 0) -> str:
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "#" * decimals if decimals else "")
        return str(format_decimal(value, format=pattern, locale=self.lang))

    def percent(self, ratio: float | None) -> str:
        """A 0–1 ratio as a percentage with one decimal: ``99,1 %`` in Vietnamese."""
        if ratio is None:
            return "—"
        return str(format_percent(ratio, _PERCENT[self.lang], locale=self.lang))

    def clock(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return datetime.fromtimestamp(ts, ZoneInfo(self.timezone)).strftime("%H:%M:%S")

    def hhmm(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, ZoneInfo(self.timezone)).strftime("%H:%M")

    def date(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, ZoneInfo(self.timezone)).strftime("%d/%m/%Y")

    def age(self, seconds: float) -> str:
        """How long ago, in the largest whole unit: ``5 phút trước``."""
        seconds = max(0.0, seconds)
        if seconds < 60:
            return self("age_seconds", n=int(seconds))
        if seconds < 3600:
            return self("age_minutes", n=int(seconds // 60))
        if seconds < 86400:
            return self("age_hours", n=int(seconds // 3600))
        return self("age_days", n=int(seconds // 86400))

    def span(self, seconds: float) -> str:
        if seconds < 3600 or seconds % 3600:
            return self("span_minutes", n=self.number(seconds / 60))
        return self("span_hours", n=self.number(seconds / 3600))
