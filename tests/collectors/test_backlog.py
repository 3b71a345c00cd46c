"""The backlog collector: ioc's own contract and two foreign shapes from real local servers,
auth and POST bodies, and bad payloads refused with the field named and nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collectors.backlog import NATIVE_MAPPING, BacklogCollector, BacklogConfig, parse_backlog
from collectors.mapping import CompiledMapping
from ioc.cache import SeriesCache
from ioc.collector import CollectorFailure
from ioc.metrics import ServiceMetrics
from ioc.model import Sample, make_labels
from ioc.pipeline import Pipeline
from ioc.poll_limits import PollLimits
from ioc.runner import PollRunner
from ioc.status import StatusBoard, TargetState
from service.config import ConfigError, parse_config
from tests.helpers import ListSink, trickling

DATA = Path(__file__).parent.parent / "data" / "backlog"
NOW = 1_750_215_600.0

OPENCPS_MAPPING: dict[str, Any] = {
    "units": "data",
    "code": "govAgencyCode",
    "fields": {
        "carried_over": "remainingCount", "received": "receivedCount",
        "received_online": "onlineCount", "received_direct": "onegateCount",
        "received_postal": "fromViaPostalCount", "resolved": "releaseCount",
        "resolved_early": "betimesCount", "resolved_ontime": "ontimeCount",
        "resolved_late": "overtimeCount", "in_progress": "processingCount",
        "in_progress_ontime": "undueCount", "in_progress_overdue": "overdueCount",
        "waiting_supplement": "waitingCount", "paused": "pausingCount",
        "returned": "deniedCount", "withdrawn": "cancelledCount",
    },
}
NATIONAL_MAPPING: dict[str, Any] = {
    "units": "result.donVi",
    "code": "maDonVi",
    "fields": {
        "received": "chiSo[?ma=='TIEP_NHAN_TRUC_TUYEN'].denominator | [0]",
        "received_online": "chiSo[?ma=='TIEP_NHAN_TRUC_TUYEN'].numerator | [0]",
        "resolved": "chiSo[?ma=='GIAI_QUYET_DUNG_HAN'].denominator | [0]",
        "resolved_ontime": "chiSo[?ma=='GIAI_QUYET_DUNG_HAN'].numerator | [0]",
        "in_progress": "chiSo[?ma=='DANG_XU_LY_TRONG_HAN'].denominator | [0]",
        "in_progress_ontime": "chiSo[?ma=='DANG_XU_LY_TRONG_HAN'].numerator | [0]",
    },
}
DEPARTMENT_MAP = {"000.00.15.H29": "STTTT", "000.00.09.H29": "STP"}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def values(samples: list[Sample] | tuple[Sample, ...]) -> dict[tuple[str, str, str], float]:
    """(metric, department, status/channel/level) → value."""
    out = {}
    for s in samples:
        labels = dict(s.labels)
        detail = labels.get("status") or labels.get("channel") or labels.get("level") or ""
        out[(s.metric, labels.get("department", "-"), detail)] = s.value
    return out


def config(url: str, **extra: Any) -> BacklogConfig:
    return BacklogConfig.model_validate(
        {"type": "backlog", "name": "dvc-backlog", "department": "HTTT-TTHC", "url": url,
         **extra})


# --- the native contract, parsed from a saved payload ------------------------------------------

def test_native_contract() -> None:
    samples = parse_backlog(load("native_dossiers.json"), CompiledMapping(NATIVE_MAPPING, {}),
                            make_labels(target="dvc-backlog"), NOW)
    got = values(samples)
    assert got[("ioc_dossiers", "STTTT", "resolved_early")] == 51
    assert got[("ioc_dossiers", "STTTT", "carried_over")] == 14
    assert got[("ioc_dossiers", "STTTT", "due_soon")] == 2
    assert got[("ioc_dossiers", "STP", "waiting_supplement")] == 5
    assert ("ioc_dossiers", "STP", "due_soon") not in got  # optional, not given
    assert got[("ioc_dossiers_received", "STTTT", "postal")] == 1
    assert got[("ioc_dossier_ontime_ratio", "STTTT", "")] == pytest.approx(76 / 78)
    assert got[("ioc_dossier_resolved_ontime_ratio", "STTTT", "")] == pytest.approx(62 / 63)
    # province-wide: (51+11+14 + 200+48+55) / (78 + 305)
    assert got[("ioc_dossier_ontime_ratio", "", "")] == pytest.approx(379 / 383)
    # Thanh tra handled nothing: its rates are absent, its counters are there
    assert ("ioc_dossier_ontime_ratio", "TTR", "") not in got
    assert ("ioc_dossier_resolved_ontime_ratio", "TTR", "") not in got
    assert got[("ioc_dossiers", "TTR", "resolved_ontime")] == 0
    assert got[("ioc_online_procedures", "", "full")] == 1204
    assert got[("ioc_online_procedures", "", "none")] == 177
    for sample in samples:
        labels = dict(sample.labels)
        assert labels["target"] == "dvc-backlog" and "department" in labels
        assert sample.ts == NOW


# --- real servers ---------------------------------------------------------------------------------

Handler = Callable[[web.Request], Any]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def serve(aiohttp_server: Any, handler: Handler) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/stats"))


def json_payload(payload: Any) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(payload)
    return handler


async def test_native_contract_from_a_server_with_bearer_token(aiohttp_server: Any,
                                                               session: Any) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer s3cret-token":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response(load("native_dossiers.json"))

    url = await serve(aiohttp_server, handler)
    result = await BacklogCollector(config(url, bearer_token="s3cret-token")).collect(
        session, NOW)
    assert result.up and result.value == 3
    assert values(result.samples)[("ioc_dossiers", "STP", "resolved_late")] == 2
    assert seen == ["Bearer s3cret-token"]
    with pytest.raises(CollectorFailure) as info:
        await BacklogCollector(config(url)).collect(session, NOW)
    assert info.value.reason == "http_status"


async def test_opencps_shape_by_config_alone(aiohttp_server: Any, session: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["X-Api-Key"] == "key-123"
        return web.json_response(load("opencps_statistics.json"))

    url = await serve(aiohttp_server, handler)
    cfg = config(url, mapping=OPENCPS_MAPPING, department_map=DEPARTMENT_MAP,
                 headers={"X-Api-Key": "key-123"})
    foreign = values((await BacklogCollector(cfg).collect(session, NOW)).samples)
    native = values(parse_backlog(load("native_dossiers.json"),
                                  CompiledMapping(NATIVE_MAPPING, {}), (), NOW))
    # the same province in two shapes gives the same series (bar due_soon, which OpenCPS
    # does not give, and units absent from the OpenCPS payload)
    for key, value in foreign.items():
        if key[1] in ("STTTT", "STP"):
            assert native[key] == value, key
    assert ("ioc_dossiers", "STTTT", "due_soon") not in foreign
    assert foreign[("ioc_dossier_ontime_ratio", "", "")] == pytest.approx(379 / 383)
    assert not any(key[0] == "ioc_online_procedures" for key in foreign)


async def test_national_evaluation_shape_with_basic_auth_and_post_body(
        aiohttp_server: Any, session: Any) -> None:
    bodies: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(b"ioc:p@ss:word").decode()
        if request.method != "POST" or request.headers.get("Authorization") != expected:
            return web.json_response({"error_code": "401"}, status=401)
        bodies.append(await request.json())
        return web.json_response(load("national_evaluation.json"))

    url = await serve(aiohttp_server, handler)
    cfg = config(url, method="POST", body={"tuNgay": "01/06/2025", "maTinh": "93"},
                 basic_auth={"username": "ioc", "password": "p@ss:word"},
                 mapping=NATIONAL_MAPPING, department_map=DEPARTMENT_MAP)
    got = values((await BacklogCollector(cfg).collect(session, NOW)).samples)
    assert bodies == [{"tuNgay": "01/06/2025", "maTinh": "93"}]
    assert got[("ioc_dossier_ontime_ratio", "STTTT", "")] == pytest.approx(76 / 78)
    assert got[("ioc_dossier_resolved_ontime_ratio", "STP", "")] == pytest.approx(248 / 250)
    assert got[("ioc_dossiers", "STTTT", "in_progress_overdue")] == 1
    assert got[("ioc_dossiers_received", "STTTT", "online")] == 49
    assert got[("ioc_dossiers_received", "STTTT", "direct")] == 15  # direct + postal
    assert ("ioc_dossiers", "STTTT", "carried_over") not in got     # not given: not 0
    assert ("ioc_dossiers", "STTTT", "waiting_supplement") not in got


# --- bad payloads ---------------------------------------------------------------------------------

def native_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    payload = load("native_dossiers.json")
    change(payload)
    return payload


BAD = [
    pytest.param(b"<html>502 Bad Gateway</html>", "response is not JSON", id="not-json"),
    pytest.param(native_with(lambda p: p["units"][1]["resolved"].pop("late")),
                 "units[1] (STP).resolved_late ('resolved.late') is missing", id="missing"),
    pytest.param(native_with(lambda p: p["units"][0].update(paused=-1)),
                 "units[0] (STTTT).paused ('paused') is -1, a count cannot be negative",
                 id="negative"),
    pytest.param(native_with(lambda p: p["units"][0]["received"].update(online="nhiều")),
                 "units[0] (STTTT).received_online ('received.online') is 'nhiều', "
                 "expected a count", id="non-numeric"),
    pytest.param(native_with(lambda p: p["units"][0]["received"].update(online=1.5)),
                 "is 1.5, expected a whole number", id="fraction"),
    pytest.param(native_with(lambda p: p["units"][0]["in_progress"].update(due_soon=99)),
                 "units[0] (STTTT).due_soon ('in_progress.due_soon'): 99 due soon, but only "
                 "14 in progress within deadline", id="due-soon-too-many"),
    pytest.param(native_with(lambda p: p["procedures"].update(full_online=5000)),
                 "province.total: full (5000) + partial (431) online procedures is more than "
                 "the total (1812)", id="catalogue"),
    pytest.param(native_with(lambda p: p.update(units={"STTTT": {}})),
                 "units ('units') selected dict, expected a list", id="units-not-a-list"),
    pytest.param(native_with(lambda p: p["units"][2].update(code="STP")),
                 "units[2]: department 'STP' appears twice (also units[1])", id="duplicate"),
    pytest.param(native_with(lambda p: p["units"][0].update(code="\n")),
                 "units[0]: the unit code '\\n' is empty", id="bad-code"),
]


@pytest.mark.parametrize(("payload", "message"), BAD)
async def test_bad_payload_fails_with_the_field_named(aiohttp_server: Any, session: Any,
                                                      payload: Any, message: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        if isinstance(payload, bytes):
            return web.Response(body=payload, content_type="text/html")
        return web.json_response(payload)

    url = await serve(aiohttp_server, handler)
    with pytest.raises(CollectorFailure) as info:
        await BacklogCollector(config(url)).collect(session, NOW)
    assert info.value.reason == "bad_payload"
    assert message in str(info.value)


async def test_ontime_more_than_resolved_in_a_foreign_shape(aiohttp_server: Any,
                                                            session: Any) -> None:
    payload = load("opencps_statistics.json")
    payload["data"][0].update(releaseCount=60)  # 51 + 11 + 1 parts, 60 total
    url = await serve(aiohttp_server, json_payload(payload))
    cfg = config(url, mapping=OPENCPS_MAPPING, department_map=DEPARTMENT_MAP)
    with pytest.raises(CollectorFailure) as info:
        await BacklogCollector(cfg).collect(session, NOW)
    assert info.value.reason == "bad_payload"
    assert str(info.value) == (
        "units[0] (STTTT).resolved ('releaseCount'): resolved_early + resolved_ontime + "
        "resolved_late = 63, but resolved = 60")


async def test_response_over_the_limit_is_too_large(aiohttp_server: Any, session: Any) -> None:
    url = await serve(aiohttp_server, json_payload({"units": [], "pad": "x" * 5000}))
    with pytest.raises(CollectorFailure) as info:
        await BacklogCollector(config(url, max_bytes=1024)).collect(session, NOW)
    assert info.value.reason == "too_large"


async def test_bad_payload_stores_nothing_and_a_smaller_period_is_not_an_error(
        aiohttp_server: Any, session: Any) -> None:
    """Through the real runner and pipeline: a bad poll adds only the target's own health
    samples; counters falling at a new period are simply the new values."""
    payloads = [load("native_dossiers.json"),
                native_with(lambda p: p["units"][0].update(returned="n/a")),
                native_with(lambda p: [u.update(carried_over=0) for u in p["units"]])]
    payloads[2]["units"][0]["resolved"].update(early=0, on_time=0, late=0)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(payloads.pop(0))

    url = await serve(aiohttp_server, handler)
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, "test")
    cache, sink, board = SeriesCache(3600, 100), ListSink(), StatusBoard()
    board.register(TargetState("dvc-backlog", "HTTT-TTHC", "backlog", 60.0))
    runner = PollRunner(BacklogCollector(config(url)), interval=60.0, timeout=5.0,
                        limits=PollLimits(4, 4), pipeline=Pipeline(cache, board, sink, metrics),
                        metrics=metrics, session=lambda: session)
    first = await runner.poll()
    assert first.result.up
    stored = len(sink.samples)
    bad = await runner.poll()
    assert not bad.result.up and bad.result.reason == "bad_payload"
    assert "units[0] (STTTT).returned ('returned') is 'n/a'" in (bad.result.error or "")
    new = sink.samples[stored:]
    assert not any(s.metric.startswith(("ioc_dossier", "ioc_online")) for s in new)
    assert board.targets["dvc-backlog"].up is False
    third = await runner.poll()
    assert third.result.up
    latest = cache.latest("ioc_dossiers", make_labels(target="dvc-backlog", department="STTTT",
                                                      status="resolved_early"))
    assert latest is not None and latest[1] == 0.0


# --- config ---------------------------------------------------------------------------------------

def test_config_errors_name_the_key() -> None:
    base = {"type": "backlog", "name": "dvc", "department": "DVC",
            "url": "http://127.0.0.1:1/"}
    raw = {"departments": [{"code": "DVC", "name": "Cổng Dịch vụ công tỉnh"}],
           "collectors": [
               {**base, "mapping": {"units": "data[", "code": "c", "fields": {"paused": "p"}}},
               {**base, "name": "b", "mapping": {"units": "data", "code": "c",
                                                 "fields": {"pausd": "p"}}},
               {**base, "name": "c", "bearer_token": "t", "basic_auth": {
                   "username": "u", "password": "p"}},
               {**base, "name": "d", "body": {"x": 1}},
           ]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    text = str(info.value)
    assert "collectors[0].mapping.units (dvc): invalid JMESPath expression 'data['" in text
    assert "collectors[1].mapping.fields.pausd (b): unknown counter 'pausd'" in text
    assert "set bearer_token or basic_auth, not both" in text
    assert "body is sent only with method: POST" in text
    assert "p@ss" not in repr(config("http://x/", basic_auth={"username": "u",
                                                               "password": "p@ss"}))


async def test_a_payload_sent_in_many_small_writes_is_read_whole(aiohttp_server: Any,
                                                                 session: Any) -> None:
    """A portal answering 1 MB of JSON in small pieces: read to its end, not one network read."""
    payload = load("native_dossiers.json")
    payload["pad"] = "x" * 1_000_000
    url = await serve(aiohttp_server, trickling(json.dumps(payload).encode(), 1400))
    result = await BacklogCollector(config(url)).collect(session, NOW)
    assert result.up and result.value == 3
