"""Which targets one ioc instance polls when several share a config: rendezvous hashing.

N instances run with the same config.yaml and the same PostgreSQL, each started with
``--shard i/N`` (or ``collection.shard: i/N``), i from 0 to N-1 as in Prometheus' ``hashmod``.
Instance i polls a target when i scores highest for it among 0…N-1, the score being a hash of
(shard, target name). Every instance computes the same owner for every target without talking to
the others, so there is no cluster protocol to run or to fail.

Rendezvous (highest-random-weight) hashing rather than ``hash(name) mod N``: going from N to
N+1 instances moves only the targets the new instance wins, about 1/(N+1) of them, while
``mod N`` reshuffles almost all of them (and with them their in-memory windows and alert
state). The hash is BLAKE2b of UTF-8 bytes, never Python's salted ``hash()``, so every process
on every machine agrees.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 1024
AUTO = "auto"  # --shard auto: owners among the live members (ioc.membership)


class Ownership(Protocol):
    """Which targets this instance polls: a static :class:`Shard` or, with ``--shard auto``,
    ``ioc.membership.AutoShard`` (changes while members come and go)."""

    @property
    def sharded(self) -> bool: ...

    def owns(self, target: str) -> bool: ...

    def owner_of(self, target: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Shard:
    """Instance ``index`` of ``count`` (0 ≤ index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be 1 to {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be 0 to {self.count - 1} "
                             f"(shards count from 0, as in Prometheus hashmod), got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def sharded(self) -> bool:
        """Whether other instances poll part of the targets (their state is read back)."""
        return self.count > 1

    def owns(self, target: str) -> bool:
        return self.count == 1 or owner(target, self.count) == self.index

    def owner_of(self, target: str) -> int | None:
        """The index of the instance that polls ``target``."""
        return owner(target, self.count)

    def select(self, targets: Iterable[str]) -> list[str]:
        """The targets this instance polls, in their given order."""
        return [t for t in targets if self.owns(t)]


def check_shard(text: str) -> str:
    """The canonical text of ``--shard``/``collection.shard``: ``auto`` or ``i/N``."""
    if text.strip().lower() == AUTO:
        return AUTO
    return str(parse_shard(text))


def auto_shard_issue(shard: str, storage_url: str) -> str | None:
    """Why ``shard`` cannot run on this store, or None: ``auto`` keeps its member set in
    PostgreSQL, and SQLite instances share nothing to keep it in."""
    if shard != AUTO or storage_url.startswith("postgresql+asyncpg://"):
        return None
    return ("auto needs a PostgreSQL store (storage.url postgresql+asyncpg://…): the live "
            "instances are found there; with SQLite run one instance, or INDEX/COUNT")


def parse_shard(text: str) -> Shard:
    """``"1/3"`` → Shard(1, 3); ValueError with the expected form otherwise."""
    match = SHARD_PATTERN.match(text)
    if match is None:
        raise ValueError(f"expected INDEX/COUNT such as 0/3 (indices 0 to COUNT-1) or auto, "
                         f"got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def score(target: str, index: int) -> int:
    """The weight of shard ``index`` for ``target``: 64 stable pseudo-random bits."""
    digest = hashlib.blake2b(f"{index}\x00{target}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(target: str, count: int) -> int:
    """The shard among ``count`` that polls ``target``: the highest score wins."""
    return max(range(count), key=lambda index: score(target, index))


def owner_among(target: str, members: Iterable[int]) -> int:
    """The member (by slot) among the live ``members`` that polls ``target`` with
    ``--shard auto`` (ioc.membership). Members 0…N-1 give exactly the owners of static
    ``i/N``, and a member leaving moves only the targets it won."""
    return max(members, key=lambda index: score(target, index))


def assignment(targets: Iterable[str], count: int) -> dict[str, int]:
    """Owner of every target (for ``ioc check`` summaries, docs and tests)."""
    return {target: owner(target, count) for target in targets}
