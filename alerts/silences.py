"""Silences: an operator mutes alerts matching some labels for a time, and says why.

A silence is data (created through the API, kept in the store), not config. It mutes from
``starts_at`` to ``ends_at``; deleting it ends it at once (``ends_at`` becomes now) so the
history still shows who muted what and for how long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.matchers import Matcher, matches_all, parse_matchers

MAX_SILENCE_SECONDS = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "matchers": [str(m) for m in self.matchers],
                "starts_at": self.starts_at, "ends_at": self.ends_at,
                "created_by": self.created_by, "comment": self.comment,
                "created_at": self.created_at, "state": self.state(now)}


def new_silence(silence_id: str, matchers: Iterable[str], *, starts_at: float,
                ends_at: float, created_by: str, comment: str, now: float) -> Silence:
    """Validate an operator's silence; ValueError says what is wrong."""
    texts = list(matchers)
    if not texts:
        raise ValueError("a silence needs at least one matcher")
    parsed = parse_matchers(texts)
    if all(m.matches({}) for m in parsed):
        raise ValueError("these matchers match every alert; name at least one label value")
    if not comment.strip():
        raise ValueError("say why in comment (the on-call team reads it)")
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    if ends_at <= now:
        raise ValueError("ends_at is in the past")
    if ends_at - starts_at > MAX_SILENCE_SECONDS:
        raise ValueError("a silence may last at most 366 days")
    return Silence(silence_id, parsed, starts_at, ends_at, created_by, comment.strip(), now)


def silenced_by(silences: Iterable[Silence], labels: Mapping[str, str],
                now: float) -> list[str]:
    return [s.id for s in silences if s.mutes(labels, now)]
