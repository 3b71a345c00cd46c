"""The http collector's conditions, samples and flap control, against real local servers."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from collectors.probe.conditions import DEFAULT_FORBIDDEN_KEYWORDS, forbidden_hits, word_pattern
from ioc.status import build_status
from service.config import ConfigError, parse_config
from tests.collectors.probe_support import (
    ProbeHarness,
    labels,
    samples_of,
    serve,
)

# ioc runs on uvloop; the probes are checked on asyncio's loop too (tests/conftest.py).
pytestmark = pytest.mark.both_loops

PAGE = """<!doctype html><html><head><title>Sở Tư pháp tỉnh Hậu Giang</title></head>
<body><h1>Cổng thông tin điện tử Sở Tư pháp</h1><p>Tra cứu hồ sơ</p></body></html>"""


def html_handler(page: str = PAGE, status: int = 200):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=page, status=status, content_type="text/html")
    return handler


async def test_up_check_exports_status_size_redirects_and_phases(probe: ProbeHarness,
                                                                 aiohttp_server) -> None:
    url = await serve(aiohttp_server, html_handler())
    outcome = await probe.runner({"type": "http", "url": url}).poll()
    assert outcome.result.up and outcome.result.value == 200
    base = labels()
    assert probe.value("ioc_probe_http_status_code", base) == 200
    assert probe.value("ioc_probe_http_content_length_bytes", base) == len(PAGE.encode())
    assert probe.value("ioc_probe_http_redirects", base) == 0
    phases = {dict(k)["phase"] for k in samples_of(outcome, "ioc_probe_phase_duration_seconds")}
    assert phases == {"connect", "processing", "transfer"}  # plain http: no tls; IP: no dns


async def test_dns_phase_when_a_name_is_resolved(probe: ProbeHarness, aiohttp_server) -> None:
    url = (await serve(aiohttp_server, html_handler())).replace("127.0.0.1", "localhost")
    outcome = await probe.runner({"type": "http", "url": url}).poll()
    assert outcome.result.up
    phases = {dict(k)["phase"] for k in samples_of(outcome, "ioc_probe_phase_duration_seconds")}
    assert "dns" in phases


async def test_method_headers_body_and_bearer_auth(probe: ProbeHarness, aiohttp_server) -> None:
    seen: dict[str, str] = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(method=request.method, body=await request.text(),
                    auth=request.headers.get("Authorization", ""),
                    extra=request.headers.get("X-Ioc", ""))
        return web.json_response({"ok": True})

    url = await serve(aiohttp_server, echo)
    config = parse_config({
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "collectors": [{"type": "http", "name": "x", "department": "STP", "url": url,
                        "method": "POST", "body": '{"ping": 1}', "headers": {"X-Ioc": "1"},
                        "bearer_token": "${DVC_TOKEN}"}]}, env={"DVC_TOKEN": "s3cret-token"})
    assert "s3cret" not in repr(config.collectors[0])
    outcome = await probe.runner({"type": "http", "url": url, "method": "POST",
                                  "body": '{"ping": 1}', "headers": {"X-Ioc": "1"},
                                  "bearer_token": "s3cret-token"}).poll()
    assert outcome.result.up
    assert seen == {"method": "POST", "body": '{"ping": 1}', "auth": "Bearer s3cret-token",
                    "extra": "1"}


async def test_basic_auth(probe: ProbeHarness, aiohttp_server) -> None:
    async def guarded(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Basic aW9jOnB3":
            return web.Response(status=401)
        return web.Response(text="ok")

    url = await serve(aiohttp_server, guarded)
    ok = await probe.runner({"type": "http", "url": url, "name": "a",
                             "basic_auth": {"username": "ioc", "password": "pw"}}).poll()
    denied = await probe.runner({"type": "http", "url": url, "name": "b"}).poll()
    assert ok.result.up
    assert denied.result.reason == "http_status" and "401" in (denied.result.error or "")


@pytest.mark.parametrize(("spec", "status", "up"), [
    ([200], 200, True), ([200], 204, False), (["200-299"], 204, True),
    ([301, "400-404"], 404, True), ([301, "400-404"], 500, False),
])
async def test_expected_status_lists_and_ranges(probe: ProbeHarness, aiohttp_server,
                                               spec, status, up) -> None:
    url = await serve(aiohttp_server, html_handler(status=status))
    outcome = await probe.runner({"type": "http", "url": url, "expected_status": spec,
                                  "max_redirects": 0}).poll()
    assert outcome.result.up is up
    assert outcome.result.reason == (None if up else "http_status")


@pytest.mark.parametrize(("conditions", "problem"), [
    ({"body_contains": ["Tra cứu hồ sơ", "Sở Tư pháp"]}, None),
    ({"body_contains": ["tra cứu"]}, "does not contain 'tra cứu'"),
    ({"body_contains": ["tra cứu"], "case_insensitive": True}, None),
    ({"body_not_contains": ["Lỗi hệ thống"]}, None),
    ({"body_not_contains": ["tra CỨU"], "case_insensitive": True}, "contains 'tra CỨU'"),
    ({"body_regex": r"Tra c\w+ hồ sơ"}, None),
    ({"body_regex": r"^\d+$"}, "does not match regex"),
    ({"expected_title": "Sở Tư pháp"}, None),
    ({"expected_title": "Sở Y tế"}, "page title is 'Sở Tư pháp tỉnh Hậu Giang'"),
])
async def test_content_conditions(probe: ProbeHarness, aiohttp_server, conditions,
                                  problem) -> None:
    url = await serve(aiohttp_server, html_handler())
    outcome = await probe.runner({"type": "http", "url": url, **conditions}).poll()
    if problem is None:
        assert outcome.result.up, outcome.result.error
    else:
        assert outcome.result.reason == "content"
        assert problem in (outcome.result.error or "")


@pytest.mark.parametrize(("expression", "up"), [
    ("status == 'ok'", True), ("status == 'degraded'", False),
    ("length(queues[?waiting > `100`]) == `0`", False), ("missing", False),
])
async def test_jmespath_condition(probe: ProbeHarness, aiohttp_server, expression, up) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "queues": [{"waiting": 120}]})

    url = await serve(aiohttp_server, health)
    outcome = await probe.runner({"type": "http", "url": url,
                                  "json_condition": expression}).poll()
    assert outcome.result.up is up
    if not up:
        assert outcome.result.reason == "content" and "json_condition" in outcome.result.error


async def test_json_condition_on_a_non_json_body_is_content(probe, aiohttp_server) -> None:
    url = await serve(aiohttp_server, html_handler())
    outcome = await probe.runner({"type": "http", "url": url,
                                  "json_condition": "status == 'ok'"}).poll()
    assert outcome.result.reason == "content" and "not JSON" in outcome.result.error


def test_bad_regex_and_jmespath_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"departments": [{"code": "STP", "name": "x"}], "collectors": [
            {"type": "http", "name": "a", "department": "STP", "url": "http://x/",
             "body_regex": "("},
            {"type": "http", "name": "b", "department": "STP", "url": "http://x/",
             "json_condition": "status =="}]}, env={})
    text = str(info.value)
    assert "collectors[0].body_regex" in text and "collectors[1].json_condition" in text


async def test_redirects_are_followed_and_final_url_recorded(probe, aiohttp_server) -> None:
    async def hops(request: web.Request) -> web.Response:
        if request.path == "/a":
            raise web.HTTPFound("/b")
        if request.path == "/b":
            raise web.HTTPMovedPermanently("/final")
        return web.Response(text="here")

    url = await serve(aiohttp_server, hops)
    outcome = await probe.runner({"type": "http", "url": url + "a"}).poll()
    assert outcome.result.up
    assert probe.value("ioc_probe_http_redirects", labels()) == 2
    (final,) = samples_of(outcome, "ioc_probe_http_final_url_info")
    assert dict(final)["url"] == url + "final"


async def test_max_latency_marks_degraded_but_up(probe: ProbeHarness, aiohttp_server) -> None:
    async def slowish(request: web.Request) -> web.Response:
        await asyncio.sleep(0.15)
        return web.Response(text="ok")

    url = await serve(aiohttp_server, slowish)
    outcome = await probe.runner({"type": "http", "url": url, "max_latency": "50ms"}).poll()
    assert outcome.result.up and outcome.result.degraded
    assert "over max_latency" in (outcome.result.error or "")
    row = build_status(probe.board, {}, now=outcome.ts, province={})["targets"][0]
    assert row["up"] is True and row["degraded"] is True and "max_latency" in row["last_error"]


async def test_defacement_keywords_fail_with_content_and_emit_one_event(
        probe: ProbeHarness, aiohttp_server) -> None:
    page = {"text": PAGE}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=page["text"], content_type="text/html")

    url = await serve(aiohttp_server, handler)
    runner = probe.runner({"type": "http", "url": url})
    clean = await runner.poll()
    assert clean.result.up and not clean.events
    page["text"] = PAGE.replace("Tra cứu hồ sơ",
                                "<div style='display:none'>Nhà cái uy tín, CÁ CƯỢC bóng đá, "
                                "nổ hũ đổi thưởng</div>")
    first = await runner.poll()
    again = await runner.poll()
    assert first.result.reason == "content"
    assert "nhà cái" in first.result.error and "cá cược" in first.result.error
    (event,) = first.events
    assert event.category == "defacement" and event.department == "STP"
    assert again.result.reason == "content" and again.events == ()  # once per new hit


def test_keywords_match_whole_words_only() -> None:
    pattern = word_pattern(DEFAULT_FORBIDDEN_KEYWORDS)
    assert forbidden_hits("alphabet, slothful, betting, tablet", pattern) == []
    assert forbidden_hits("Best BET in town; slot game", pattern) == ["bet", "slot"]
    assert forbidden_hits("Cá  cược trực tuyến", pattern) == ["cá cược"]


async def test_forbidden_keywords_are_configurable(probe: ProbeHarness, aiohttp_server) -> None:
    url = await serve(aiohttp_server, html_handler(PAGE.replace("hồ sơ", "hồ sơ slot")))
    default = await probe.runner({"type": "http", "url": url, "name": "a"}).poll()
    custom = await probe.runner({"type": "http", "url": url, "name": "b",
                                 "forbidden_keywords": ["kubet"]}).poll()
    assert default.result.reason == "content"
    assert custom.result.up


async def test_title_change_is_detected(probe: ProbeHarness, aiohttp_server) -> None:
    page = {"text": PAGE}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=page["text"], content_type="text/html")

    url = await serve(aiohttp_server, handler)
    runner = probe.runner({"type": "http", "url": url, "detect_title_change": True})
    assert (await runner.poll()).result.up
    page["text"] = PAGE.replace("Sở Tư pháp tỉnh Hậu Giang", "Hacked by someone")
    changed = await runner.poll()
    assert changed.result.reason == "content" and "title changed" in changed.result.error
    assert [e.category for e in changed.events] == ["defacement"]
    page["text"] = PAGE
    assert (await runner.poll()).result.up


async def test_simulator_content_fault_is_caught(probe: ProbeHarness) -> None:
    from collectors.simulator import start_simulator
    from tests.conftest import free_port

    port = free_port()
    sim = await start_simulator("127.0.0.1", port, token="t0ken-for-tests", latency_scale=0)
    try:
        base = f"http://127.0.0.1:{port}"
        async with probe.session.post(f"{base}/_sim/faults",
                                      headers={"Authorization": "Bearer t0ken-for-tests"},
                                      json={"unit": "STP", "fault": "content"}) as response:
            assert response.status == 200
        outcome = await probe.runner({"type": "http", "url": f"{base}/STP/"}).poll()
        assert outcome.result.reason == "content"
        assert [e.category for e in outcome.events] == ["defacement"]
    finally:
        await sim.cleanup()


async def test_keepalive_reuses_the_connection_and_default_does_not(
        probe: ProbeHarness, aiohttp_server) -> None:
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(text="ok")

    url = await serve(aiohttp_server, handler)
    fresh = probe.runner({"type": "http", "url": url, "name": "fresh"})
    for _ in range(3):
        assert (await fresh.poll()).result.up
    assert len(set(peers)) == 3
    peers.clear()
    kept = probe.runner({"type": "http", "url": url, "name": "kept", "keepalive": True})
    for _ in range(3):
        assert (await kept.poll()).result.up
    assert len(set(peers)) == 1


async def test_ip_family_ipv4_reaches_localhost(probe: ProbeHarness, aiohttp_server) -> None:
    url = (await serve(aiohttp_server, html_handler())).replace("127.0.0.1", "localhost")
    v4 = await probe.runner({"type": "http", "url": url, "name": "v4",
                             "ip_family": "ipv4"}).poll()
    assert v4.result.up


async def test_proxy_is_used(probe: ProbeHarness, aiohttp_server) -> None:
    asked: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        asked.append(str(request.url))
        return web.Response(text="via proxy")

    proxy_url = await serve(aiohttp_server, proxy)
    outcome = await probe.runner({"type": "http", "url": "http://dvc.haugiang.example/",
                                  "proxy": proxy_url}).poll()
    assert outcome.result.up
    assert asked == ["http://dvc.haugiang.example/"]


async def test_flap_control_debounces_down_and_up(probe: ProbeHarness, aiohttp_server,
                                                  caplog) -> None:
    statuses = iter([200, 500, 500, 200, 500, 500, 500, 200, 500, 200, 200])

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=next(statuses))

    url = await serve(aiohttp_server, handler)
    runner = probe.runner({"type": "http", "url": url, "failure_threshold": 3,
                           "recovery_threshold": 2})
    caplog.set_level("INFO", logger="ioc.collector")
    raw, state = [], []
    for _ in range(11):
        outcome = await runner.poll()
        raw.append(outcome.result.up)
        state.append(outcome.state_up)
    assert raw == [True, False, False, True, False, False, False, True, False, True, True]
    assert state == [True, True, True, True, True, True, False, False, False, False, True]
    messages = [r.getMessage() for r in caplog.records if r.name == "ioc.collector"]
    assert messages == ["target down", "target recovered"]
    assert probe.registry.get_sample_value(
        "ioc_probe_failures_total",
        {"target": "stp-web", "department": "STP", "reason": "http_status"}) == 6
    row = build_status(probe.board, {}, now=0, province={})["targets"][0]
    assert row["up"] is True and row["raw_up"] is True and row["consecutive_successes"] == 2
    assert probe.value("ioc_target_state_up", labels()) == 1


def test_failure_threshold_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"collectors\[0\].failure_threshold"):
        parse_config({"departments": [{"code": "STP", "name": "x"}], "collectors": [
            {"type": "http", "name": "a", "department": "STP", "url": "http://x/",
             "failure_threshold": 0}]}, env={})


async def test_status_api_shows_last_error_and_reason(probe: ProbeHarness,
                                                      aiohttp_server) -> None:
    url = await serve(aiohttp_server, html_handler(status=502))
    await probe.runner({"type": "http", "url": url}).poll()
    row = build_status(probe.board, {}, now=0, province={})["targets"][0]
    assert row["reason"] == "http_status" and "502" in row["last_error"]
    assert json.dumps(row)
