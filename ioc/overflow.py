"""Say once that a bounded queue has started dropping, and once that it has stopped.

Every bounded queue in ioc counts what it drops in a metric; the log gets two lines per
episode, not one per dropped item, so a flood cannot flood the log as well. Caps that refuse
rather than drop (stream clients, API requests in flight) use the same two lines with
``full="reached"`` and ``action="refusing"``.
"""

from __future__ import annotations

import logging
from typing import Any


class OverflowLog:
    def __init__(self, log: logging.Logger, what: str, *, full: str = "is full",
                 action: str = "dropping", **context: Any) -> None:
        self.log = log
        self.what = what
        self.full = full
        self.action = action
        self.context = context
        self.active = False
        self.dropped_in_episode = 0

    def dropped(self, count: int, **detail: Any) -> None:
        """Record ``count`` items dropped; logs a warning only when an episode starts."""
        if count <= 0:
            return
        self.dropped_in_episode += count
        if not self.active:
            self.active = True
            self.log.warning(f"{self.what} {self.full}: {self.action} (counted in metrics)",
                             extra={"fields": {**self.context, **detail}})

    def ok(self) -> None:
        """The queue accepted everything again; logs once when an episode ends."""
        if self.active:
            self.active = False
            self.log.warning(f"{self.what} no longer {self.action}",
                             extra={"fields": {**self.context,
                                               "dropped": self.dropped_in_episode}})
            self.dropped_in_episode = 0


class EpisodeLog:
    """Say once that malformed input is arriving, not once per request or line.

    Malformed input has no natural end the way a full queue does, so an episode ends after
    ``quiet`` seconds without any: the next one starts a new episode and is logged again,
    with how many the previous episode held. Every item is counted in a metric besides.
    Time is passed in (monotonic seconds).
    """

    def __init__(self, log: logging.Logger, what: str, *, quiet: float = 60.0) -> None:
        self.log = log
        self.what = what
        self.quiet = quiet
        self._last: float | None = None
        self._count = 0

    def hit(self, now: float, **detail: Any) -> bool:
        """Record one malformed item; True (and a log line) when it starts an episode."""
        starts = self._last is None or now - self._last >= self.quiet
        self._last = now
        if not starts:
            self._count += 1
            return False
        previous, self._count = self._count, 1
        self.log.warning(f"{self.what} (counted in metrics; logged again after "
                         f"{self.quiet:.0f} s without any)",
                         extra={"fields": {**detail, "previous_episode": previous}})
        return True
