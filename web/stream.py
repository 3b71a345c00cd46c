"""The wall's live stream: Server-Sent Events with resume, heartbeat and a cap on clients.

Producers call ``EventStream.publish(kind, data)`` (synchronously, from the pipeline); each
event gets an id ``<epoch>.<seq>`` and goes into a bounded ring of recent events and into the
queue of every connected client. A client that reconnects with ``Last-Event-ID`` (or
``?since=``, which the page uses for its first connection) gets the events it missed from the
ring; if they are gone from the ring, or the id is from an earlier run of ioc, it gets one
``reset`` event and reloads the page, so a screen never shows a state it did not receive.

A client that cannot keep up (its queue fills) is disconnected rather than slowing the others;
it reconnects and resumes from the ring. Heartbeats carry the server's time so screens can
tell "quiet" from "cut off" and keep their clock right.

Clients are capped twice: ``wall.max_clients`` in all and ``wall.max_clients_per_address``
from one client address (the real one behind a trusted proxy, web/forwarded.py), so one
machine opening a hundred idle streams cannot take the slots of the room's screens.

Both the caps on clients and the cutting off of slow ones are counted, and each is logged once
when it starts and once when it stops (``ioc.overflow``): screens retrying every few seconds
against a full cap must not write a line per attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response
from prometheus_client import CollectorRegistry, Counter, Gauge

from ioc.overflow import OverflowLog
from web.errors import ApiError

log = logging.getLogger("ioc.stream")

CLIENT_QUEUE = 1000  # events waiting for one client before it is cut off
# Who reads each named stream, and the settings that cap them (metric help, refusals).
_AUDIENCE = {"wall": ("wall screens", "wall.max_clients", "wall.max_clients_per_address"),
             "console": ("console pages", "the console's cap in all",
                         "its cap per address")}


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    id: str
    kind: str
    data: str  # JSON text, encoded once for every client


class _Client:
    __slots__ = ("address", "closed", "queue")

    def __init__(self, address: str) -> None:
        self.queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(CLIENT_QUEUE)
        self.closed = False
        self.address = address

    def offer(self, event: StreamEvent | None) -> bool:
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            return False


class EventStream:
    """Recent events plus the connected clients; owned by one app."""

    def __init__(self, registry: CollectorRegistry, *, epoch: str, ring_size: int,
                 max_clients: int, heartbeat: float,
                 max_clients_per_address: int | None = None, name: str = "wall") -> None:
        """``name`` is whose stream this is: ``wall`` (the screens) or ``console`` (operators'
        sessions, ``web.console_feed``); it names the metric families and the log lines."""
        self.name = name
        self.epoch = epoch
        self.max_clients = max_clients
        self.max_per_address = max_clients_per_address or max_clients
        self._by_address: dict[str, int] = {}
        self.heartbeat = heartbeat
        self._ring: deque[StreamEvent] = deque(maxlen=ring_size)
        self._seq = 0
        self._clients: set[_Client] = set()
        self._refusing = OverflowLog(log, f"{name} stream client cap", full="reached",
                                     action="refusing", max_clients=max_clients,
                                     max_clients_per_address=self.max_per_address)
        self._cutting = OverflowLog(log, f"{name} stream client queue",
                                    action="cutting off slow clients",
                                    client_queue=CLIENT_QUEUE)
        who, caps, per_address = _AUDIENCE.get(name, (f"{name} clients", "the cap in all",
                                                       "the cap per address"))
        self._who, self._caps, self._per_address = who, caps, per_address
        self.clients_gauge = Gauge(f"ioc_{name}_stream_clients",
                                   f"{who.capitalize()} connected to the live stream.",
                                   registry=registry)
        self.events_total = Counter(f"ioc_{name}_stream_events_total",
                                    "Events published to the live stream, by kind.", ["kind"],
                                    registry=registry)
        self.rejected_total = Counter(
            f"ioc_{name}_stream_rejected_total",
            f"Stream connections refused because {caps} were connected, or "
            f"{per_address} from the client's address.",
            registry=registry)
        self.dropped_total = Counter(
            f"ioc_{name}_stream_dropped_total",
            "Stream clients cut off because they could not keep up.", registry=registry)

    @property
    def last_id(self) -> str:
        return f"{self.epoch}.{self._seq}"

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def restart(self, epoch: str) -> None:
        """Forget the ring and start a new epoch: an old Last-Event-ID then gets a reset.

        Used while no screen is connected, when deltas are not produced at all: a screen
        that comes back must reload rather than resume across the gap.
        """
        self.epoch = epoch
        self._ring.clear()

    def publish(self, kind: str, data: Any) -> StreamEvent:
        self._seq += 1
        event = StreamEvent(self._seq, f"{self.epoch}.{self._seq}", kind,
                            json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        self._ring.append(event)
        self.events_total.labels(kind=kind).inc()
        cut = 0
        for client in list(self._clients):
            if not client.offer(event):
                self._drop(client)
                cut += 1
        if cut:
            self._cutting.dropped(cut)
        else:
            self._cutting.ok()
        return event

    def _drop(self, client: _Client) -> None:
        self.dropped_total.inc()
        client.closed = True
        self._forget(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.offer(None)

    def missed_since(self, last_id: str | None) -> list[StreamEvent] | None:
        """Events after ``last_id``; None when they cannot all be given (reset needed)."""
        if not last_id:
            return []
        epoch, _, seq_text = last_id.partition(".")
        if epoch != self.epoch or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self._seq:
            return None
        if seq == self._seq:
            return []
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if seq + 1 < oldest:
            return None
        return [e for e in self._ring if e.seq > seq]

    def subscribe(self, address: str = "unknown") -> _Client:
        """A new client from ``address``; ApiError 503 when either cap is reached."""
        if len(self._clients) >= self.max_clients:
            self._refuse(address, f"at most {self.max_clients} {self._who} may be connected "
                                  f"({self._caps}); try again later")
        if self._by_address.get(address, 0) >= self.max_per_address:
            self._refuse(address, f"at most {self.max_per_address} stream connections from "
                                  f"one address ({self._per_address})")
        self._refusing.ok()
        client = _Client(address)
        self._clients.add(client)
        self._by_address[address] = self._by_address.get(address, 0) + 1
        self.clients_gauge.set(len(self._clients))
        return client

    def _refuse(self, address: str, detail: str) -> None:
        self.rejected_total.inc()
        self._refusing.dropped(1, client=address)
        raise ApiError(503, "too many stream clients", detail)

    def unsubscribe(self, client: _Client) -> None:
        self._forget(client)

    def _forget(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            left = self._by_address.get(client.address, 1) - 1
            if left > 0:
                self._by_address[client.address] = left
            else:
                self._by_address.pop(client.address, None)
        self.clients_gauge.set(len(self._clients))

    def close_all(self) -> None:
        """Ask every client's handler to finish (on shutdown)."""
        for client in list(self._clients):
            client.closed = True
            client.offer(None)


async def serve(request: web.Request, stream: EventStream, now: Callable[[], float],
                on_idle: Callable[[], None] | None = None) -> web.StreamResponse:
    """Stream events to one client until it goes away or the server stops."""
    last_id = (request.headers.get("Last-Event-ID") or request.query.get("since") or "").strip()
    # Subscribe before reading the ring: nothing published in between is lost.
    client = stream.subscribe(request.remote or "unknown")
    try:
        missed = stream.missed_since(last_id)
        async with sse_response(request, ping_interval=max(stream.heartbeat * 3, 15.0),
                                headers={"Cache-Control": "no-store"}) as resp:
            try:
                await _pump(resp, stream, client, missed, now, on_idle)
            except (ConnectionResetError, TimeoutError):
                pass  # the client went away or stalled: nothing more to send
        return resp
    finally:
        stream.unsubscribe(client)


async def _pump(resp: Any, stream: EventStream, client: _Client,
                missed: list[StreamEvent] | None, now: Callable[[], float],
                on_idle: Callable[[], None] | None) -> None:
    if missed is None:
        await resp.send(json.dumps({"reason": "unknown or expired event id"}),
                        id=stream.last_id, event="reset")
        replayed = 0
    else:
        for old in missed:
            await resp.send(old.data, id=old.id, event=old.kind)
        replayed = missed[-1].seq if missed else 0
    await resp.send(json.dumps({"now": now(), "last_id": stream.last_id}),
                    event="heartbeat", retry=2000)
    while not client.closed:
        try:
            async with asyncio.timeout(stream.heartbeat):
                event = await client.queue.get()
        except TimeoutError:
            await resp.send(json.dumps({"now": now(), "last_id": stream.last_id}),
                            event="heartbeat")
            if on_idle is not None:
                on_idle()
            continue
        if event is None:
            break
        if event.seq <= replayed:
            continue  # already sent from the ring
        await resp.send(event.data, id=event.id, event=event.kind)
