"""The /metrics body, written on the event loop a few milliseconds at a time.

At 10,000 targets a scrape exports ~120,000 series. prometheus-client's encoders build a
``Sample`` (a namedtuple and a dict) per series and format its labels anew on every scrape:
about 2 s of CPU in one call, which either stalls every poll for that long (on the loop) or, in a
worker thread, still holds the GIL for stretches of ~200 ms and slows the loop to about a fifth
meanwhile (the loop thread waits for the GIL after every ``epoll_wait``; bench/metrics_render.py).

So the body is written here instead, in slices of about ``SLICE_SECONDS`` with the loop running
in between (only prometheus-client's own metrics are collected in a worker thread: their
``collect()`` builds every child's sample in one call, and their locks make that safe):

- the measured samples (``SampleExporter``'s families, nearly all the series) are read straight
  from the cache: each series' ``name{labels} `` text is formatted once and kept, and a scrape
  appends only the value;
- every other family is formatted from its ``Sample`` objects the same way, except a family
  with what this writer does not handle (exemplars, timestamps, native histograms, names
  outside ``[a-zA-Z_][a-zA-Z0-9_]*``, the text format's ``_created``/``_gsum``/``_gcount``
  gauges): that family, and every family's header lines, come from prometheus-client's own
  encoder, so the bytes are the ones it writes (tests/test_exposition.py compares them).

The sample line is the same in the text format and in OpenMetrics for the names handled here:
``name{k="v",…} value`` with labels sorted by name, ``\\``, newline and ``"`` escaped in values,
and the value as ``floatToGoString`` writes it.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from ioc.metrics import CacheFamily
from ioc.model import Labels

SLICE_SECONDS = 0.002  # formatting between two turns of the loop, about
_CHECK_EVERY = 256  # series formatted between two looks at the clock
_VALUE_TEXTS = 20_000  # values whose text is kept (1, 200, sizes…; durations come and go)

_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_EOF = b"# EOF\n"
# Escapings under which a plain name is written as it is ("dots" and "values" rewrite even plain
# names: a scraper asking for them gets prometheus-client's own output).
_PLAIN_ESCAPINGS = (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8)
# Sample names the text format moves into gauges of their own at the end of the family.
_MOVED_SUFFIXES = ("_created", "_gsum", "_gcount")


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def label_text(labels: Iterable[tuple[str, str]], escaping: str | None = None) -> str:
    """``{k="v",…}`` of labels sorted by name, or '' for none (names as they are when
    ``escaping`` is None: only for plain names)."""
    pairs = [f'{k if escaping is None else openmetrics.escape_label_name(k, escaping)}'
             f'="{_escape(v)}"' for k, v in labels]
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Slicer:
    """Gives the loop a turn once a slice's time is used up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since = time.perf_counter()
        self.turns = 0

    def due(self) -> bool:
        return time.perf_counter() - self.since >= self.seconds

    async def turn(self) -> None:
        await asyncio.sleep(0)
        self.turns += 1
        self.since = time.perf_counter()


def _collect_each(collectors: list[MetricWrapperBase]) -> list[list[Metric]]:
    return [list(c.collect()) for c in collectors]


@dataclass
class _Kept:
    labels: list[Labels]
    prefixes: list[str]
    escaping: str | None  # what the texts were written for; None: any (plain names only)


class _ValueTexts(dict[float, str]):
    """floatToGoString of the values met: 1, 200, … (not 0: -0.0 is an equal key)."""

    def __missing__(self, value: float) -> str:
        text: str = floatToGoString(value)
        if value and value == value and len(self) < _VALUE_TEXTS:  # NaN: a key per object
            self[value] = text
        return text


class _NotPlain(Exception):
    """A sample this writer does not format: the family goes to prometheus-client."""


class Exposition:
    """Writes a registry's exposition; keeps each measured series' label text between scrapes."""

    def __init__(self, slice_seconds: float = SLICE_SECONDS) -> None:
        self.slice_seconds = slice_seconds
        self._kept: dict[str, _Kept] = {}  # metric → its series' 'metric{labels} ' texts
        self._escaped: set[str] = set()  # metrics with a label name that needs escaping
        self._texts = _ValueTexts()
        self._plain_names: set[str] = set()
        self._plain_keys: set[tuple[str, ...]] = set()
        self._plain_label_names: set[str] = set()
        self.last_turns = 0  # loop turns the last render gave (for tests and the benchmark)

    async def render(self, registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
        """The body and Content-Type answering a scrape with this Accept header."""
        encoder, content_type = choose_encoder(accept)
        options = encoder.keywords if isinstance(encoder, functools.partial) else {}
        escaping = options.get("escaping", openmetrics.UNDERSCORES)
        if escaping not in _PLAIN_ESCAPINGS or registry.get_target_info() is not None:
            # Not met in ioc (a scraper asking for escaped names; target_info): what
            # prometheus-client writes, in a thread as it is one long call.
            return await asyncio.to_thread(encoder, registry), content_type
        is_openmetrics = content_type.startswith("application/openmetrics-text")

        def encode(metric: Metric) -> bytes:
            text = encoder(_One(metric))
            return text[:-len(_EOF)] if is_openmetrics else text

        def header(metric: Metric) -> bytes:
            return encode(Metric(metric.name, metric.documentation, metric.type, metric.unit))

        collectors = list(registry._collector_to_names)  # no public listing in prometheus-client
        # prometheus-client's own metrics build every child's Sample in one call (~60 ms for
        # a last-success gauge of 10,000 targets): that happens in a thread, which their locks
        # allow. ioc's collectors read loop-owned state, so they run here.
        wrappers = [c for c in collectors if isinstance(c, MetricWrapperBase)]
        collected = dict(zip(map(id, wrappers),
                             await asyncio.to_thread(_collect_each, wrappers), strict=True))
        chunks: list[bytes] = []
        slicer = _Slicer(self.slice_seconds)
        for collector in collectors:
            metrics = collected.get(id(collector))
            for metric in collector.collect() if metrics is None else metrics:
                if isinstance(metric, CacheFamily) and _PLAIN_NAME.fullmatch(metric.name):
                    await self._cache_family(metric, header, chunks, slicer, escaping)
                else:
                    try:
                        body = await self._family(metric, is_openmetrics, slicer)
                    except _NotPlain:
                        chunks.append(encode(metric))
                    else:
                        chunks.append(header(metric))
                        chunks.extend(body)
                if slicer.due():
                    await slicer.turn()
        if is_openmetrics:
            chunks.append(_EOF)
        self.last_turns = slicer.turns
        return b"".join(chunks), content_type

    async def _family(self, metric: Metric, is_openmetrics: bool,
                      slicer: _Slicer) -> list[bytes]:
        body: list[bytes] = []
        lines: list[str] = []
        moved = () if is_openmetrics else tuple(metric.name + s for s in _MOVED_SUFFIXES)
        for i, sample in enumerate(metric.samples, 1):
            name = sample.name
            if name not in self._plain_names:
                if not _PLAIN_NAME.fullmatch(name):
                    raise _NotPlain
                self._plain_names.add(name)
            keys = tuple(sample.labels)
            if keys not in self._plain_keys:
                if not all(_PLAIN_NAME.fullmatch(k) for k in keys):
                    raise _NotPlain
                self._plain_keys.add(keys)
            if (sample.value is None or sample.timestamp is not None or sample.exemplar
                    or getattr(sample, "native_histogram", None) is not None or name in moved):
                raise _NotPlain
            lines.append(f"{name}{label_text(sorted(sample.labels.items()))} "
                         f"{floatToGoString(sample.value)}\n")
            if not i % _CHECK_EVERY and slicer.due():
                body.append("".join(lines).encode())
                lines = []
                await slicer.turn()
        body.append("".join(lines).encode())
        return body

    async def _cache_family(self, family: CacheFamily, header: Callable[[Metric], bytes],
                            chunks: list[bytes], slicer: _Slicer, escaping: str) -> None:
        labels, windows = family.labels, family.windows
        if not any(window.latest is not None for window in windows):
            return  # as SampleExporter.collect(): no family without a sample
        chunks.append(header(family))
        prefixes = await self._prefix_list(family.name, labels, escaping, slicer)
        texts = self._texts
        if len(texts) >= _VALUE_TEXTS:
            texts.clear()
        parts: list[str] = []
        for start in range(0, len(windows), _CHECK_EVERY):
            end = start + _CHECK_EVERY
            latest = [window.latest for window in windows[start:end]]
            parts.append("".join([f"{prefix}{texts[point[1]]}\n"
                                  for prefix, point in zip(prefixes[start:end], latest,
                                                           strict=True)
                                  if point is not None]))
            if slicer.due():
                chunks.append("".join(parts).encode())
                parts = []
                await slicer.turn()
        chunks.append("".join(parts).encode())

    async def _prefix_list(self, name: str, labels: list[Labels], escaping: str,
                           slicer: _Slicer) -> list[str]:
        """Each series' ``name{labels} `` in the order of ``labels``.

        Kept from the last scrape as a list in the cache's order, which stays the same while
        no series goes away (new ones come last): a scrape then looks nothing up by label set,
        as hashing a label set (a tuple of tuples) costs about as much as writing its line.
        New texts (10,000 at the first scrape) are written in slices like the lines.
        """
        kept = self._kept.get(name)
        if kept is not None and kept.escaping not in (None, escaping):
            kept = None  # label names outside [a-zA-Z_]…, written for another escaping
        if kept is not None and kept.labels == labels:
            return kept.prefixes
        old: dict[Labels, str] = {}
        if kept is not None and labels[:len(kept.labels)] == kept.labels:  # new series last
            prefixes, todo = list(kept.prefixes), labels[len(kept.labels):]
        else:  # series went away: what is still there is reused
            if kept is not None:
                old = dict(zip(kept.labels, kept.prefixes, strict=True))
            prefixes, todo = [], labels
        for start in range(0, len(todo), _CHECK_EVERY):
            prefixes += [old.get(lb) or self._prefix(name, lb, escaping)
                         for lb in todo[start:start + _CHECK_EVERY]]
            if slicer.due():
                await slicer.turn()
        self._kept[name] = _Kept(labels, prefixes,
                                 escaping if name in self._escaped else None)
        return prefixes

    def _prefix(self, name: str, labels: Labels, escaping: str) -> str:
        plain = self._plain_label_names
        for key, _ in labels:
            if key not in plain:
                if not _PLAIN_NAME.fullmatch(key):
                    self._escaped.add(name)
                    return f"{name}{label_text(sorted(labels), escaping)} "
                plain.add(key)
        return f"{name}{label_text(sorted(labels))} "
