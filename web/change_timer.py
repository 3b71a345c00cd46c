"""One loop timer at the next instant time alone changes the alerts shown.

A silence, ack or maintenance window starting or ending changes what ``AlertDesk.view``
returns without any event: the wall's feed and the console's feed each keep one timer at
``AlertDesk.next_change``, moved at every change of the alerts and called when it passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from web.context import WebContext


class ChangeTimer:
    def __init__(self, context: WebContext, on_due: Callable[[], None]) -> None:
        self.ctx = context
        self.on_due = on_due
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Move the timer to the next instant; none while nothing is scheduled, and none
        before the loop runs (nothing is shown yet)."""
        self.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        now = self.ctx.clock()
        due = self.ctx.alerts.next_change(now)
        if due is not None:
            self._handle = loop.call_later(max(0.0, due - now), self._fire)

    @property
    def handle(self) -> asyncio.TimerHandle | None:
        """The armed timer, if any."""
        return self._handle

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self.on_due()
