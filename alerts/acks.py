"""Acknowledgements: "I am on it" — the alert stops repeating until it resolves or the ack
expires. New alerts in the same group and the resolution are still sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_ACK_SECONDS = 24 * 3600.0
MAX_ACK_SECONDS = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Ack:
    fingerprint: str
    by: str
    comment: str
    at: float
    expires_at: float

    def active(self, now: float) -> bool:
        return now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "by": self.by, "comment": self.comment,
                "at": self.at, "expires_at": self.expires_at}


def new_ack(fingerprint: str, *, by: str, comment: str, now: float,
            duration: float = DEFAULT_ACK_SECONDS) -> Ack:
    if not 0 < duration <= MAX_ACK_SECONDS:
        raise ValueError(f"an ack lasts between 1 s and {int(MAX_ACK_SECONDS)} s")
    return Ack(fingerprint, by, comment.strip(), now, now + duration)


def active_acks(acks: Iterable[Ack], now: float) -> dict[str, Ack]:
    return {a.fingerprint: a for a in acks if a.active(now)}


def acked(acks: Mapping[str, Ack], now: float) -> set[str]:
    return {fp for fp, a in acks.items() if a.active(now)}
