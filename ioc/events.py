"""Security events: the closed vocabularies, and turning untrusted input into ``Event`` values.

Every way an event enters ioc (the push API, a SIEM pull, syslog, ioc's own probes) ends in
the same ``ioc.model.Event``. Input from outside is checked here, once, by
:func:`validate_events`: it reports *every* problem of a batch with the item's index and field
so an integrator can fix a whole batch in one go, and it is all-or-nothing, so a batch with one
bad event stores none of them (the caller then never has to say which ones were kept).

Every time from outside is bounded by a :class:`TimeWindow` (``events.max_past``, 7 days, and
``events.max_future``, 5 minutes, around the receive time): a time from 9999 or 2200 would
otherwise pin itself as the newest event for ever, and a wrong clock must not decide what the
wall shows. The push API *rejects* such an event (its sender gets a 400 naming the field and can
fix its clock); syslog and a SIEM pull have no one to answer, so they *clamp* it to the
receive time and keep the time as sent in the ``sent_at`` label. Both are counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from ioc.model import Event

SEVERITIES = ("info", "low", "medium", "high", "critical")
CATEGORIES = ("defacement", "malware", "intrusion", "ddos", "auth_failure", "vulnerability",
              "availability", "other")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

Severity = Literal["info", "low", "medium", "high", "critical"]
Category = Literal["defacement", "malware", "intrusion", "ddos", "auth_failure",
                   "vulnerability", "availability", "other"]

MAX_BATCH = 1000               # events in one push
DEFAULT_MAX_PAST = 7 * 86400.0
DEFAULT_MAX_FUTURE = 300.0
MAX_LABELS = 32
EARLIEST = 946684800.0         # 2000-01-01: older "timestamps" are unit mistakes (ms, days)
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far before and after the receive time an event's own time may be."""

    max_past: float = DEFAULT_MAX_PAST
    max_future: float = DEFAULT_MAX_FUTURE
    clamp: bool = False  # out of the window: True moves it to the receive time, False refuses

    def side(self, occurred: float, now: float) -> str | None:
        """``past`` or ``future`` when ``occurred`` is outside the window, else None."""
        if occurred > now + self.max_future:
            return "future"
        if occurred < now - self.max_past:
            return "past"
        return None

    def problem(self, occurred: float, now: float, side: str) -> str:
        if side == "future":
            return (f"{occurred - now:.0f} s in the future (at most {self.max_future:.0f} s of "
                    "clock skew is accepted); check the sender's clock and time zone")
        return (f"{now - occurred:.0f} s in the past (at most {self.max_past:.0f} s, "
                "events.max_past); check the sender's clock and time zone")


def time_text(seconds: float) -> str:
    """An outside time as ISO 8601 UTC for the ``sent_at`` label, whatever its size."""
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return repr(seconds)


def bound_time(occurred: float, now: float, window: TimeWindow,
               out_of_window: Counter[str] | None = None) -> tuple[float, str | None]:
    """The time to keep, and the side it fell outside on (counted in ``out_of_window``)."""
    side = window.side(occurred, now) if math.isfinite(occurred) else "future"
    if side is None:
        return occurred, None
    if out_of_window is not None:
        out_of_window[side] += 1
    return (now if window.clamp else occurred), side


def parse_time(value: Any) -> float:
    """Unix seconds from a number or an ISO 8601 string with a time zone.

    Naive ISO strings are refused: "10:00" means a different moment in Hà Nội and in a UTC
    log shipper, and guessing would put events hours off on the wall screen.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {value!r}")
    if isinstance(value, (int, float)):  # a tuple: `int | float` builds a union per call
        try:
            seconds = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError(f"time {value!r:.40}… is too large; send unix seconds") from None
    elif isinstance(value, str):
        text = value.strip()
        seconds = _number_or_iso(text, value)
    else:
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite time, got {value!r}")
    if seconds < EARLIEST:
        raise ValueError(f"time {value!r} is before the year 2000; send unix seconds "
                         "(not milliseconds) or an ISO 8601 time")
    if seconds > 1e11:
        raise ValueError(f"time {value!r} is too large; send unix seconds, not milliseconds")
    return seconds


def _number_or_iso(text: str, value: Any) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"expected unix seconds or an ISO 8601 time such as "
                         f"2024-05-01T08:30:00+07:00, got {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"ISO 8601 time needs a time zone (Z or +07:00), got {value!r}")
    return moment.timestamp()


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _id_text(value: Any) -> Any:
    # Many systems number their events; an integer id is the same id as its decimal text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class EventInput(BaseModel):
    """The JSON contract of one pushed event (docs/events.md)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    source: str = Field(pattern=SOURCE_PATTERN, max_length=64)
    id: Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=200)]
    severity: Annotated[Severity, BeforeValidator(_lower)]
    category: Annotated[Category, BeforeValidator(_lower)] = "other"
    title: str = Field(min_length=1, max_length=500)
    message: str = Field("", max_length=10_000)
    department: str | None = Field(None, max_length=64)
    host: str | None = Field(None, max_length=255)
    occurred_at: Any = None
    labels: dict[str, Annotated[str, Field(max_length=500)]] = Field(default_factory=dict)


# Built once: a TypeAdapter compiles its validator, which is the expensive part.
_EVENT: TypeAdapter[EventInput] = TypeAdapter(EventInput)
_BATCH: TypeAdapter[list[EventInput]] = TypeAdapter(list[EventInput])


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int | None   # position in the batch; None for a single object
    field: str          # dotted path inside the event, "" for the event itself
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class EventBatchError(ValueError):
    """A batch was refused; ``errors`` names every problem, by item index and field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} problem(s) in the events")


def _field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        return f"{err['msg'].removeprefix('Input should be ')} expected, got {err['input']!r}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type"):
        msg += f", got {type(err['input']).__name__}"
    return msg


def validate_event(item: Any, *, index: int | None, now: float, window: TimeWindow,
                   departments: frozenset[str] | None = None,
                   out_of_window: Counter[str] | None = None
                   ) -> tuple[Event | None, list[FieldError]]:
    """One event from untrusted JSON, or every problem with it."""
    if not isinstance(item, dict):
        return None, [FieldError(index, "", f"expected a JSON object, got "
                                            f"{type(item).__name__}")]
    try:
        parsed = EventInput.model_validate(item)
    except ValidationError as exc:
        return None, [FieldError(index, _field_path(e["loc"]), _message(e))
                      for e in exc.errors(include_url=False)]
    return _to_event(parsed, index=index, now=now, window=window, departments=departments,
                     out_of_window=out_of_window)


def _to_event(parsed: EventInput, *, index: int | None, now: float, window: TimeWindow,
              departments: frozenset[str] | None, out_of_window: Counter[str] | None = None
              ) -> tuple[Event | None, list[FieldError]]:
    """The checks a schema cannot express (time, known departments), then the ``Event``."""
    errors: list[FieldError] = []
    occurred = now
    labels = parsed.labels
    if parsed.occurred_at is not None:
        try:
            sent = parse_time(parsed.occurred_at)
        except ValueError as exc:  # not a time at all (or before 2000, or milliseconds)
            errors.append(FieldError(index, "occurred_at", str(exc)))
        else:
            occurred, side = bound_time(sent, now, window, out_of_window)
            if side is not None and not window.clamp:
                errors.append(FieldError(index, "occurred_at", window.problem(sent, now, side)))
            elif side is not None:
                labels = {**labels, "sent_at": time_text(sent)}
    if departments is not None and parsed.department is not None \
            and parsed.department not in departments:
        errors.append(FieldError(index, "department",
                                 f"unknown department {parsed.department!r} "
                                 "(use a code from the departments of config.yaml)"))
    if len(parsed.labels) > MAX_LABELS:  # the sender's own; sent_at comes on top
        errors.append(FieldError(index, "labels", f"at most {MAX_LABELS} labels"))
    if errors:
        return None, errors
    # The schema already made every label a str; sorting is all make_labels would add.
    return Event(source=parsed.source, id=parsed.id, severity=parsed.severity,
                 category=parsed.category, title=parsed.title, occurred_at=occurred,
                 message=parsed.message, department=parsed.department or None,
                 host=parsed.host or None, labels=tuple(sorted(labels.items()))), []


def validate_events(payload: Any, *, now: float, window: TimeWindow,
                    departments: frozenset[str] | None = None,
                    max_batch: int = MAX_BATCH,
                    out_of_window: Counter[str] | None = None) -> list[Event]:
    """A pushed object or list of events, all valid, or EventBatchError naming each problem."""
    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list):
        raise EventBatchError([FieldError(None, "", "expected a JSON object (one event) or a "
                                                    f"list of events, got "
                                                    f"{type(payload).__name__}")])
    if not items:
        raise EventBatchError([FieldError(None, "", "the list of events is empty")])
    if len(items) > max_batch:
        raise EventBatchError([FieldError(None, "", f"{len(items)} events in one request; "
                                                    f"at most {max_batch}, split the batch")])
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        event, problems = validate_event(item, index=None if single else index, now=now,
                                         window=window, departments=departments,
                                         out_of_window=out_of_window)
        if event is not None:
            events.append(event)
        errors.extend(problems)
    if errors:
        raise EventBatchError(errors)
    return events


def validate_events_json(body: bytes, *, now: float, window: TimeWindow,
                         departments: frozenset[str] | None = None,
                         max_batch: int = MAX_BATCH) -> list[Event] | None:
    """A pushed body of valid events, parsed and checked in one pass; None if anything is off.

    This is the push API's hot path: pydantic-core decodes the JSON and validates every event
    in one call, about 2.5 times faster than ``json.loads`` followed by a model per event. It
    gives no error report: on ``None`` the caller runs :func:`validate_events` on the decoded
    body, which names every problem. Both paths accept exactly the same events.
    """
    first = body.lstrip()[:1]
    try:
        if first == b"{":
            items = [_EVENT.validate_json(body)]
        elif first == b"[":
            items = _BATCH.validate_json(body)
        else:
            return None
    except ValidationError:
        return None
    if not 1 <= len(items) <= max_batch:
        return None
    events: list[Event] = []
    for item in items:
        event, _ = _to_event(item, index=None, now=now, window=window,
                             departments=departments)
        if event is None:
            return None
        events.append(event)
    return events


def event_document(event: Event, received_at: float | None = None) -> dict[str, Any]:
    """The JSON form of an event, shared by the API and the live stream."""
    doc: dict[str, Any] = {
        "source": event.source, "id": event.id, "department": event.department,
        "severity": event.severity, "category": event.category, "title": event.title,
        "message": event.message, "host": event.host, "occurred_at": event.occurred_at,
        "labels": dict(event.labels),
    }
    if received_at is not None:
        doc["received_at"] = received_at
    return doc


def wazuh_severity(level: int) -> str:
    """Wazuh ``rule.level`` (0-15) → ioc severity; the table is in docs/events.md.

    The bands follow the Wazuh dashboard's own grouping (low up to 6, medium 7-11, high
    12-14, critical 15), with levels 0-3 (no threat, successful/authorised actions) as info.
    """
    if level >= 15:
        return "critical"
    if level >= 12:
        return "high"
    if level >= 7:
        return "medium"
    if level >= 4:
        return "low"
    return "info"


# Wazuh rule groups → category, first match wins; unknown groups give "other".
WAZUH_GROUP_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("authentication_failed", "auth_failure"),
    ("authentication_failures", "auth_failure"),
    ("invalid_login", "auth_failure"),
    ("virustotal", "malware"),
    ("rootcheck", "malware"),
    ("malware", "malware"),
    ("vulnerability-detector", "vulnerability"),
    ("vulnerability", "vulnerability"),
    ("dos", "ddos"),
    ("ddos", "ddos"),
    ("web_scan", "intrusion"),
    ("attack", "intrusion"),
    ("exploit_attempt", "intrusion"),
    ("ids", "intrusion"),
    ("suricata", "intrusion"),
)


def wazuh_category(groups: Iterable[str]) -> str:
    present = {g.lower() for g in groups}
    for group, category in WAZUH_GROUP_CATEGORIES:
        if group in present:
            return category
    return "other"
