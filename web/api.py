"""JSON API handlers. Parsing of query parameters is done in small pure functions."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ioc.status import build_status
from web.context import WebContext
from web.errors import ApiError
from web.keys import AUTH, CONTEXT
from web.streaming import send_json

MAX_POINTS = 11_000  # per series, like Prometheus's query_range limit
RESERVED_PARAMS = {"metric", "start", "end", "step"}
MAX_TIME = 1e11  # unix seconds (year 5138): beyond it milliseconds leave the database's int64


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    metric: str
    matchers: dict[str, str]
    start: float
    end: float
    step: float


def _number(params: Mapping[str, str], name: str, default: float) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}",
                       f"expected unix seconds or a number, got {raw!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_TIME:
        raise ApiError(400, f"invalid {name}",
                       f"expected a finite number of at most {MAX_TIME:g}, got {raw!r}")
    return value


def parse_series_query(params: Mapping[str, str], now: float) -> SeriesQuery:
    metric = params.get("metric", "")
    if not metric:
        raise ApiError(400, "missing metric", "add ?metric=NAME, e.g. metric=ioc_target_up")
    end = _number(params, "end", now)
    start = _number(params, "start", end - 3600)
    if start > end:
        raise ApiError(400, "invalid range", f"start ({start:g}) is after end ({end:g})")
    default_step = max(1.0, (end - start) / 250)
    step = _number(params, "step", default_step)
    if step <= 0:
        raise ApiError(400, "invalid step", "step must be greater than zero")
    if (end - start) / step > MAX_POINTS:
        raise ApiError(400, "too many points",
                       f"(end - start) / step must be at most {MAX_POINTS}; raise step")
    matchers = {k: v for k, v in params.items() if k not in RESERVED_PARAMS}
    return SeriesQuery(metric, matchers, start, end, step)


def status_document(context: WebContext, now: float) -> dict[str, Any]:
    cfg = context.config()
    return build_status(context.board, context.department_names, now=now, province={
        "code": cfg.province.code, "name": cfg.province.name, "title": cfg.service.title})


async def status(request: web.Request) -> web.StreamResponse:
    request.app[AUTH].require(request, "viewer")
    context = request.app[CONTEXT]
    # At 10,000 targets this is megabytes: written in slices a slow client must read.
    return await send_json(request, status_document(context, context.clock()), _dumps)


async def series(request: web.Request) -> web.StreamResponse:
    request.app[AUTH].require(request, "viewer")
    context = request.app[CONTEXT]
    query = parse_series_query(request.query, context.clock())
    result = await context.samples.query_range(query.metric, query.matchers, query.start,
                                               query.end, query.step)
    return await send_json(request, {
        "metric": query.metric,
        "start": query.start, "end": query.end, "step": query.step,
        "series": [{"labels": dict(s.labels), "points": [[t, v] for t, v in s.points]}
                   for s in result],
    }, _dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
