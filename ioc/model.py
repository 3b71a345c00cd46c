"""The few value types that flow through every part of ioc.

They are deliberately plain frozen dataclasses: collectors build them, the pipeline fans them
out, and the store, the cache, the metrics exporter and (later) the alert engine read them
without knowing where they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

# Labels are a tuple of (name, value) pairs sorted by name: hashable, so they can key dicts and
# identify a series, and canonical, so two equal label sets always compare equal.
Labels = tuple[tuple[str, str], ...]

# Distinct (name, value) pairs make_labels hands out, each as one shared tuple. At 10,000
# targets every target's pairs recur in ~8 label sets (the collector's and the runner's base
# labels, five phases, the final URL, the TLS version): sharing them is ~27 MB less held, for
# ~20,000 pairs in the table. The table is bounded because some label values are not ioc's to
# choose (a syslog sender's app name): once full it stops taking pairs, the newcomers are then
# merely not shared (labels compare by value, never by identity). A full table holds ~180 B a
# pair (its slot, the pair, the value text): ~36 MB at the limit, 10 times what 10,000
# targets use (1,000,000 pairs would be ~180 MB, more than half the memory ioc aims to stay in).
PAIR_LIMIT = 200_000
_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}


def make_labels(mapping: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                **extra: str) -> Labels:
    """Build canonical labels from a mapping and/or keyword arguments.

    The pairs of the result are shared with every other label set holding the same pair (see
    ``PAIR_LIMIT``); the outer tuple is new each time, as keeping a table of whole label sets
    would cost more than it saves (a slot per set against a tuple per repeated set).
    """
    items: dict[str, str] = {}
    if mapping is not None:
        pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
        for key, value in pairs:
            items[str(key)] = str(value)
    for key, value in extra.items():
        items[key] = str(value)
    ordered = sorted(items.items())
    found = tuple(map(_PAIRS.get, ordered))
    if None not in found:  # every pair seen before: the usual case after start-up
        return cast(Labels, found)
    return tuple([_share(pair) for pair in ordered])


def _share(pair: tuple[str, str]) -> tuple[str, str]:
    found = _PAIRS.get(pair)
    if found is None:
        found = pair
        if len(_PAIRS) < PAIR_LIMIT:
            _PAIRS[pair] = pair
    return found


def labels_dict(labels: Labels) -> dict[str, str]:
    return dict(labels)


def canonical_labels(labels: Labels) -> str:
    """A stable text form of a label set, used as the store's series key.

    Values are escaped the way the Prometheus text format escapes them so that a label value
    containing a comma or quote cannot collide with another label set.
    """
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels)


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured value of one series at one moment (unix seconds)."""

    metric: str
    labels: Labels
    value: float
    ts: float

    @property
    def series_key(self) -> tuple[str, Labels]:
        return (self.metric, self.labels)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at a moment (a security event, a defacement, …).

    Events are not time series: they carry text and are counted, listed and alerted on.
    The security-events work extends the set of fields; collectors already return them.
    """

    source: str
    id: str
    severity: str
    category: str
    title: str
    occurred_at: float
    message: str = ""
    department: str | None = None
    host: str | None = None
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Series:
    """A query result: one series and its points, oldest first."""

    metric: str
    labels: Labels
    points: list[tuple[float, float]] = field(default_factory=list)


# Why a poll failed, as a small closed set so it can be a metric label and a wall-screen word.
FAILURE_REASONS = (
    "timeout",          # the whole poll exceeded its timeout
    "dns",              # the name did not resolve
    "connect_refused",  # nothing listens on the port
    "connect_timeout",  # the TCP connection could not be set up in time
    "tls",              # certificate or handshake problem
    "http_status",      # a response arrived with an unexpected status
    "content",          # the body did not satisfy a content condition
    "too_large",        # the response exceeded the size the collector accepts
    "protocol_error",   # the peer closed the connection or did not speak the protocol
    "redirect_loop",    # too many redirects
    "invalid_response", # the response arrived but could not be parsed
    "bad_payload",      # a statistics payload is not JSON, misses a field or makes no sense
    "error",            # anything else (a bug in a collector, an unexpected exception)
)


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What one poll of one target produced.

    ``up`` is the collector's verdict on the target; ``reason`` and ``error`` say why it is
    down. ``samples`` are the measurements (the runner adds ``ioc_target_up`` and
    ``ioc_probe_duration_seconds`` itself so every collector reports them the same way).
    """

    up: bool
    samples: tuple[Sample, ...] = ()
    events: tuple[Event, ...] = ()
    reason: str | None = None
    error: str | None = None
    value: float | None = None  # the headline value for the status API (e.g. HTTP status)
    degraded: bool = False      # up, but worse than wanted (e.g. over max_latency); see error
    # What the check did, one line per step in order (for a person reading one poll, such as
    # the dns collector's "10.0.0.53 udp: answer truncated (TC); asking again over tcp");
    # neither stored nor exported.
    trace: tuple[str, ...] = ()
