"""The simulator, exercised through a real aiohttp client, as ioc's collectors will see it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from collectors.simulator import (
    STATE,
    Unit,
    base_latency,
    create_simulator_app,
    start_simulator,
    units,
)
from collectors.simulator.app import SPAM_TITLE, unit_page
from collectors.simulator.faults import FaultBoard, FaultSpecError, parse_fault

TOKEN = "test-token-ăâ"  # non-ASCII on purpose: compare_digest must work on bytes
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(create_simulator_app(token=TOKEN, latency_scale=0, seed=1))


async def inject(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    resp = await client.post("/_sim/faults", json=body, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --- reference data ------------------------------------------------------------------------------

def test_units_are_the_real_province() -> None:
    all_units = units()
    by_kind = {kind: [u for u in all_units if u.kind == kind]
               for kind in ("department", "district", "shared")}
    assert (len(by_kind["department"]), len(by_kind["district"]), len(by_kind["shared"])) \
        == (20, 8, 7)
    names = {u.name for u in all_units}
    for expected in ("Sở Thông tin và Truyền thông", "Sở Tư pháp", "Công an tỉnh",
                     "UBND thành phố Vị Thanh"):
        assert expected in names
    assert len({u.code for u in all_units}) == len(all_units)


def test_base_latency_is_stable_and_in_range() -> None:
    for unit in units():
        assert 0.020 <= base_latency(unit.code) <= 0.180
        assert base_latency(unit.code) == base_latency(unit.code)
    assert len({round(base_latency(u.code), 6) for u in units()}) > 10


def test_unit_page_escapes_names() -> None:
    html = unit_page(Unit("X", '<script>alert("x")</script> & Co', "department"), "Tỉnh <b>")
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&amp; Co" in html


# --- pages and health ----------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["STTTT", "STP", "CAT", "VITHANH", "HTTT-TTHC"])
async def test_page_and_health(client: TestClient[Any, Any], code: str) -> None:
    name = {u.code: u.name for u in units()}[code]
    resp = await client.get(f"/{code}/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert '<html lang="vi">' in html
    assert f"<title>{name} — Tỉnh Hậu Giang</title>" in html
    assert f"<h1>{name}</h1>" in html and "<p>" in html

    before = int(time.time())
    resp = await client.get(f"/{code}/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["unit"] == code and body["name"] == name
    assert before - 1 <= body["time"] <= time.time() + 1


async def test_index_and_units_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 200 and '<a href="/STTTT/">Sở Thông tin và Truyền thông</a>' in html
    listed = await (await client.get("/_sim/units")).json()
    assert len(listed) == len(units())
    assert {"code": "CAT", "name": "Công an tỉnh", "kind": "department", "path": "/CAT/"} in listed
    assert sum(1 for u in listed if u["kind"] == "department") >= 12


async def test_unknown_unit_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/NOPE/")).status == 404
    assert (await client.get("/NOPE/health")).status == 404
    resp = await client.get("/STTTT", allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == "/STTTT/"


async def test_latency_is_applied(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_simulator_app(latency_scale=0.5, seed=3))
    started = time.perf_counter()
    assert (await client.get("/STTTT/health")).status == 200
    assert time.perf_counter() - started >= 0.5 * base_latency("STTTT")


# --- faults --------------------------------------------------------------------------------------

async def test_down_drops_the_connection(client: TestClient[Any, Any]) -> None:
    await inject(client, unit="STTTT", fault="down")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.get("/STTTT/health")
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.get("/STTTT/")
    assert (await client.get("/STP/health")).status == 200  # other units unaffected


async def test_slow_adds_delay(client: TestClient[Any, Any]) -> None:
    await inject(client, unit="STP", fault="slow", delay=0.3)
    started = time.perf_counter()
    resp = await client.get("/STP/health")
    assert resp.status == 200
    assert time.perf_counter() - started >= 0.3


async def test_error_status(client: TestClient[Any, Any]) -> None:
    await inject(client, unit="CAT", fault="error")
    resp = await client.get("/CAT/")
    assert resp.status == 503 and len(await resp.text()) < 100
    await inject(client, unit="CAT", fault="error", status=500)
    assert (await client.get("/CAT/health")).status == 500


async def test_flapping_alternates(client: TestClient[Any, Any]) -> None:
    await inject(client, unit="SYT", fault="flapping")
    statuses = [(await client.get("/SYT/health")).status for _ in range(6)]
    assert statuses == [200, 503] * 3
    await inject(client, unit="SYT", fault="flapping", period=2)
    statuses = [(await client.get("/SYT/health")).status for _ in range(6)]
    assert statuses == [200, 200, 503, 503, 200, 200]


async def test_content_fault_serves_spam(client: TestClient[Any, Any]) -> None:
    await inject(client, unit="VITHANH", fault="content")
    html = await (await client.get("/VITHANH/")).text()
    assert "Nhà cái uy tín" in html and "casino" in html
    assert f"<title>{SPAM_TITLE}</title>" in html
    assert "<title>UBND thành phố Vị Thanh" not in html
    health = await (await client.get("/VITHANH/health")).json()
    assert health["status"] == "degraded"


async def test_listing_and_clearing_restore(client: TestClient[Any, Any]) -> None:
    await inject(client, unit="STTTT", fault="error", status=502)
    await inject(client, unit="STP", fault="slow", delay=5, until=60)
    listed = await (await client.get("/_sim/faults")).json()
    assert [(f["unit"], f["fault"]) for f in listed] == [("STP", "slow"), ("STTTT", "error")]
    assert listed[0]["delay"] == 5 and 0 < listed[0]["expires_in"] <= 60

    resp = await client.delete("/_sim/faults/STTTT", headers=AUTH)
    assert resp.status == 200 and (await resp.json()) == {"cleared": 1}
    assert (await client.get("/STTTT/health")).status == 200

    resp = await client.delete("/_sim/faults", headers=AUTH)
    assert (await resp.json()) == {"cleared": 1}
    assert await (await client.get("/_sim/faults")).json() == []
    assert (await client.delete("/_sim/faults/NOPE", headers=AUTH)).status == 404


def test_until_expires_without_sleeping() -> None:
    board = FaultBoard()
    board.set(parse_fault({"unit": "STP", "fault": "down", "until": 2}, {"STP"}), now=100.0)
    assert board.effect("STP", now=101.0).disconnect
    assert not board.effect("STP", now=102.0).disconnect
    assert board.active(now=102.0) == []


# --- security and input validation ---------------------------------------------------------------

async def test_disabled_without_token(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_simulator_app(token=None, latency_scale=0))
    for method, path in (("POST", "/_sim/faults"), ("DELETE", "/_sim/faults"),
                         ("DELETE", "/_sim/faults/STTTT")):
        resp = await client.request(method, path, json={"unit": "STTTT", "fault": "down"},
                                    headers=AUTH)
        assert resp.status == 403
        body = await resp.json()
        assert body["error"] == "fault injection disabled" and "IOC_SIM_TOKEN" in body["detail"]
    assert (await client.get("/STTTT/health")).status == 200
    assert client.app is not None and client.app[STATE].faults.active(0.0) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}, {"Authorization": "Bearer "}])
async def test_wrong_token_is_401(client: TestClient[Any, Any], headers: dict[str, str]) -> None:
    resp = await client.post("/_sim/faults", json={"unit": "STTTT", "fault": "down"},
                             headers=headers)
    assert resp.status == 401 and "error" in await resp.json()
    assert (await client.delete("/_sim/faults", headers=headers)).status == 401
    assert (await client.get("/STTTT/health")).status == 200


def test_token_is_not_in_repr() -> None:
    app = create_simulator_app(token="s3cret-token")
    assert "s3cret-token" not in repr(app[STATE])


@pytest.mark.parametrize(("body", "error", "detail_word"), [
    (b"{not json", "invalid JSON", "JSON"),
    (b"[1, 2]", "invalid fault", "object"),
    (b'{"fault": "down"}', "invalid fault", "unit"),
    (b'{"unit": "NOPE", "fault": "down"}', "unknown unit", "NOPE"),
    (b'{"unit": "STTTT", "fault": "explode"}', "unknown fault", "flapping"),
    (b'{"unit": "STTTT", "fault": "slow", "delay": "10"}', "invalid option", "delay"),
    (b'{"unit": "STTTT", "fault": "slow", "delay": true}', "invalid option", "delay"),
    (b'{"unit": "STTTT", "fault": "slow", "delay": -1}', "invalid option", "delay"),
    (b'{"unit": "STTTT", "fault": "error", "status": 200}', "invalid option", "status"),
    (b'{"unit": "STTTT", "fault": "flapping", "period": 0.5}', "invalid option", "period"),
    (b'{"unit": "STTTT", "fault": "down", "dealy": 1}', "invalid option", "dealy"),
    (b'{"unit": "STTTT", "fault": "down", "until": "soon"}', "invalid option", "until"),
    (b"\xff\xfe", "invalid JSON", "JSON"),
])
async def test_bad_bodies_are_400(client: TestClient[Any, Any], body: bytes, error: str,
                                  detail_word: str) -> None:
    resp = await client.post("/_sim/faults", data=body,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 400
    payload = await resp.json()
    assert payload["error"] == error and detail_word in payload["detail"]
    assert "Traceback" not in payload["detail"]


async def test_oversized_body_is_413(client: TestClient[Any, Any]) -> None:
    big = b'{"unit": "STTTT", "fault": "down", "x": "' + b"a" * (70 * 1024) + b'"}'
    resp = await client.post("/_sim/faults", data=big,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 413 and (await resp.json())["error"] == "body too large"

    async def chunks() -> Any:  # no Content-Length: the limit must hold while reading
        for _ in range(70):
            yield b"a" * 1024

    resp = await client.post("/_sim/faults", data=chunks(), headers=AUTH)
    assert resp.status == 413


async def test_sim_errors_are_json(client: TestClient[Any, Any]) -> None:
    resp = await client.put("/_sim/faults", headers=AUTH)
    assert resp.status == 405 and "error" in await resp.json()
    resp = await client.get("/_sim/nothing")
    assert resp.status == 404 and "error" in await resp.json()


def test_parse_fault_defaults() -> None:
    spec = parse_fault({"unit": "STP", "fault": "slow"}, {"STP"})
    assert spec.delay == 10 and spec.options() == {"delay": 10}
    assert parse_fault({"unit": "STP", "fault": "error"}, {"STP"}).status == 503
    assert parse_fault({"unit": "STP", "fault": "flapping"}, {"STP"}).period == 1
    with pytest.raises(FaultSpecError):
        parse_fault({"unit": "STP", "fault": "down", "until": 0}, {"STP"})


async def test_start_simulator_serves_on_a_real_port() -> None:
    runner = await start_simulator("127.0.0.1", 0, latency_scale=0)
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://{host}:{port}/SYT/health") as resp:
            assert resp.status == 200 and (await resp.json())["unit"] == "SYT"
    finally:
        await runner.cleanup()
