"""Which event loop ioc runs on: uvloop where it is installed, asyncio's own otherwise.

A fresh-connection HTTP check costs about half the loop CPU on uvloop (0.33 ms against
0.61 ms on asyncio's loop, measured on the raw protocol), and a probe's CPU on the loop is
what limits how many targets one process polls. uvloop is not built for Windows, so ``auto``
falls back to asyncio's loop there (and wherever it is missing) and says so once.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ioc.logs import fields

log = logging.getLogger("ioc")

EventLoopSetting = Literal["auto", "uvloop", "asyncio"]
T = TypeVar("T")


@dataclass(frozen=True)
class LoopChoice:
    name: str  # "uvloop" or "asyncio": what the start-up log says
    factory: Callable[[], asyncio.AbstractEventLoop]
    note: str = ""  # why auto fell back, for one info line


def uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """``uvloop.new_event_loop``; ImportError (with uvloop's reason) when it cannot load."""
    module = importlib.import_module("uvloop")
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


def choose(setting: EventLoopSetting) -> LoopChoice:
    """The loop for a ``service.event_loop`` setting.

    ``uvloop`` asked for explicitly and missing is refused by config validation, before this
    runs; here it raises ImportError all the same.
    """
    if setting == "asyncio":
        return LoopChoice("asyncio", asyncio.new_event_loop)
    try:
        return LoopChoice("uvloop", uvloop_factory())
    except ImportError as exc:
        if setting == "uvloop":
            raise
        return LoopChoice("asyncio", asyncio.new_event_loop, f"uvloop not available ({exc})")


def run(main: Coroutine[Any, Any, T], choice: LoopChoice) -> T:
    """``asyncio.run(main)`` on the chosen loop (Python 3.11's asyncio.run takes no factory)."""
    if choice.note:
        log.info("running on asyncio's event loop", extra=fields(reason=choice.note))
    with asyncio.Runner(loop_factory=choice.factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio`` (the top package of the loop's class), for logs."""
    loop = loop or asyncio.get_running_loop()
    return type(loop).__module__.split(".", 1)[0]


LAG_TICK = 0.05  # seconds between two wake-ups of the lag monitor


async def watch_lag(observe: Callable[[float], None], tick: float = LAG_TICK) -> None:
    """Observe, every ``tick``, how late the loop woke this task: its lag (until cancelled).

    Everything ioc does shares one thread, so a callback that holds the loop (a parser fed
    a huge chunk, a regex over a large page) delays every check, the web server and the
    alert evaluation alike. A timer that is due while the loop is held runs late by what
    is left of the stall, so over time the longest lags seen are the longest stalls.
    Exported as ``ioc_event_loop_lag_seconds``; 20 wake-ups a second cost ~0.1 % of a core.
    """
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + tick
        await asyncio.sleep(tick)
        observe(max(0.0, loop.time() - due))
