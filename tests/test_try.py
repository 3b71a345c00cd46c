"""`ioc try`: one target polled now, against real local servers, with a readable trace.

Healthy and hostile pages, TLS with a chain, an OpenCPS-shaped statistics payload (a number
sent as text, a null, a unit no department has), a SIEM list; golden traces in Vietnamese
and English (durations, dates and ports normalised); the command's exit codes; secrets that
must not show.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from ioc.trace import Trace, UnknownTarget
from ioc.trace_text import render
from service.config import Config, parse_config
from service.try_command import exit_code, output, try_targets
from tests.collectors.test_hostile import (  # the probe tests' hostile servers
    dripping,
    gzip_bomb,
    not_http,
    raw_server,  # noqa: F401  (a fixture, used by name)
    silent,
)
from tests.collectors.test_mapping_rules import DEPARTMENT_MAP, MAPPING, PAYLOAD
from tests.conftest import free_port, write_yaml

GOLDEN = Path(__file__).parent / "data" / "try"
NOW = 1_800_000_000.0
SECRET = "s3cr3t-portal-token"
DEPARTMENTS = [{"code": c, "name": c} for c in ("STTTT", "STP", "SYT", "HTTT-TTHC", "SOC")]
PAGE = ("<html><head><title>Cổng Dịch vụ công tỉnh Hậu Giang</title></head>"
        "<body><h1>Dịch vụ công trực tuyến</h1></body></html>")


def utf8_json(value: Any) -> str:
    """JSON as a portal writes it: Vietnamese as UTF-8, not \\u escapes."""
    return json.dumps(value, ensure_ascii=False)


def normalise(text: str) -> str:
    """What changes from run to run: ports, timings, dates, days left."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"\d+\.\d{3} s\b", "N.NNN s", text)
    text = re.sub(r"(_seconds\{[^}]*\}) \S+", r"\1 N", text)
    text = re.sub(r"(?im)^(\s+(?:< )?date:) .*$", r"\1 DATE", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "DATE", text)
    return re.sub(r"-?\d+\.\d (days|ngày)", r"N \1", text)


def config(*blocks: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    base = {"department": "STTTT", "timeout": "2s", "interval": "1m"}
    return parse_config({"storage": {"url": "sqlite+aiosqlite:///:memory:"},
                         "departments": DEPARTMENTS,
                         "collectors": [{**base, **b} for b in blocks]}, env=env or {})


async def one(cfg: Config, name: str) -> Trace:
    (trace,) = await try_targets(cfg, [name], now=lambda: NOW)
    return trace


@pytest.fixture
async def site(aiohttp_server: Callable[..., Any]) -> str:
    """A department's site with a healthy page and the hostile answers of the probe tests."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", headers={
            "Server": "test", "Set-Cookie": "SESSIONID=abc123; HttpOnly"})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="bảo trì", headers={"Server": "test"})

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 70_000, headers={"Server": "test"})

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def stalls(request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never answers; the try's timeout ends it
        raise AssertionError

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(PAYLOAD, headers={"Server": "test"}, dumps=utf8_json)

    async def garbled(request: web.Request) -> web.Response:
        return web.Response(text="<html>Bảo trì hệ thống</html>", content_type="text/html")

    app = web.Application()
    for path, handler in (("/", page), ("/broken", broken), ("/huge", huge),
                          ("/loop", loop), ("/stalls", stalls), ("/stats", stats),
                          ("/garbled", garbled)):
        app.router.add_get(path, handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


def http(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "name": name, "url": url, **extra}


async def test_healthy_page_golden_in_vietnamese_and_english(site: str) -> None:
    cfg = config(http("dvc-web", site, body_contains=["Dịch vụ công"],
                      expected_title="Hậu Giang", body_not_contains=["lỗi"]))
    trace = await one(cfg, "dvc-web")
    assert trace.up is True and exit_code([trace]) == 0
    assert [p for p, _ in trace.phases] == ["connect", "processing", "transfer"]
    for lang in ("vi", "en"):
        golden = (GOLDEN / f"http_healthy.{lang}.txt").read_text(encoding="utf-8")
        assert normalise(render(trace, lang)) == golden


async def test_backlog_golden_shows_every_field_and_the_samples(site: str) -> None:
    cfg = config({"type": "backlog", "name": "opencps", "department": "HTTT-TTHC",
                  "url": site + "stats", "department_map": DEPARTMENT_MAP,
                  "mapping": MAPPING})
    trace = await one(cfg, "opencps")
    assert trace.up is True
    for lang in ("vi", "en"):
        golden = (GOLDEN / f"backlog_opencps.{lang}.txt").read_text(encoding="utf-8")
        assert normalise(render(trace, lang)) == golden
    reads = {(f.scope, f.name): f for f in trace.fields}
    received = reads[("units[0] (STTTT)", "received")]
    assert (received.expression, received.raw, received.value) == \
        ('"Tiếp Nhận".TongSo', '"64"', "64")
    assert "text read as a number" in received.note
    postal = reads[("units[0] (STTTT)", "received_postal")]
    assert (postal.raw, postal.value) == ("null", None)
    assert "unknown, not published" in postal.note
    assert "unknown unit" in reads[("units[2] (000.00.31.H29)", "code")].note
    assert any("'000.00.31.H29'" in n and "counted in" in n for n in trace.notes)
    published = {(s.metric, s.labels.get("department"), s.labels.get("channel"))
                 for s in trace.samples}
    assert ("ioc_dossiers_received", "STTTT", "postal") not in published
    assert ("ioc_dossiers_received", "STP", "postal") in published


async def test_backlog_null_derived_when_the_mapping_says_so(site: str) -> None:
    cfg = config({"type": "backlog", "name": "opencps", "url": site + "stats",
                  "department_map": DEPARTMENT_MAP, "unknown_units": "exclude",
                  "mapping": {**MAPPING, "null_means": "derive"}})
    trace = await one(cfg, "opencps")
    postal = [s for s in trace.samples if s.metric == "ioc_dossiers_received"
              and s.labels == {"target": "opencps", "department": "STTTT", "channel": "postal"}]
    assert [s.value for s in postal] == [1.0]
    assert any("left out of" in n for n in trace.notes)
    assert "(null: derived from its total if mapped)" in render(trace, "en")
    assert "suy ra từ tổng" in render(trace, "vi")


async def test_a_bad_field_is_shown_with_every_other_field(site: str) -> None:
    mapping = {**MAPPING, "fields": {**MAPPING["fields"], "paused": "KhongCo"}}
    cfg = config({"type": "backlog", "name": "opencps", "url": site + "stats",
                  "department_map": DEPARTMENT_MAP, "mapping": mapping})
    trace = await one(cfg, "opencps")
    assert (trace.up, trace.reason) == (False, "bad_payload")
    assert trace.error == "units[0] (STTTT).paused ('KhongCo') is missing"
    missing = [f for f in trace.fields if f.name == "paused"]
    assert len(missing) == 3 and all(f.value is None for f in missing)
    assert len({f.scope for f in trace.fields if f.name == "withdrawn"}) == 3
    assert exit_code([trace]) == 1
    assert [s.metric for s in trace.samples] == ["ioc_target_up", "ioc_probe_duration_seconds"]


@pytest.mark.parametrize(("path", "extra", "reason", "says"), [
    ("broken", {}, "http_status", "unexpected HTTP status 503"),
    ("huge", {"max_body_bytes": 65536}, "too_large", "over max_body_bytes 65536"),
    ("loop", {"max_redirects": 3}, "redirect_loop", "gave up after 3 redirects"),
    ("stalls", {"timeout": "300ms"}, "timeout", "no complete answer within 0.3s"),
    ("", {"body_contains": ["Thủ tục"]}, "content", "body does not contain 'Thủ tục'"),
    ("", {"forbidden_keywords": ["Hậu Giang"]}, "content",
     "forbidden keywords on the page: hậu giang"),
])
async def test_hostile_targets_name_the_limit_or_failure(
        site: str, path: str, extra: dict[str, Any], reason: str, says: str) -> None:
    trace = await one(config(http("t", site + path, **extra)), "t")
    assert (trace.up, trace.reason) == (False, reason)
    assert says in (trace.error or "")
    text = render(trace, "en")
    assert "Result: DOWN" in text and f"reason {reason}: " in text and says in text
    assert "Kết quả: KHÔNG HOẠT ĐỘNG" in render(trace, "vi")


@pytest.mark.parametrize(("path", "extra", "reason", "says"), [
    ("stats", {"max_bytes": 1024}, "too_large", "response is larger than 1024 bytes"),
    ("garbled", {}, "bad_payload", "response is not JSON"),
    ("broken", {}, "http_status", "unexpected HTTP status 503"),
])
async def test_hostile_statistics_name_the_limit_or_failure(
        site: str, path: str, extra: dict[str, Any], reason: str, says: str) -> None:
    cfg = config({"type": "backlog", "name": "dvc", "url": site + path, **extra})
    trace = await one(cfg, "dvc")
    assert (trace.up, trace.reason) == (False, reason)
    assert says in (trace.error or "")
    assert trace.exchanges[0].url.endswith("/" + path)
    assert trace.payload is not None and len(trace.payload) <= 2001


async def test_tcp_target_is_tried_too() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = config({"type": "tcp", "name": "db", "host": "127.0.0.1", "port": port})
        trace = await one(cfg, "db")
    finally:
        server.close()
    assert trace.up is True and trace.url == f"127.0.0.1:{port}"
    assert render(trace, "en").startswith(f"Target db (tcp) — 127.0.0.1:{port}\nResult: UP")


@pytest.mark.parametrize(("handler", "reason", "says"), [
    (silent, "timeout", "no complete answer within 1s (in the processing phase)"),
    (dripping, "timeout", "no complete answer within 1s (in the transfer phase)"),
    (gzip_bomb, "too_large", "decompressed body is over max_body_bytes 1048576"),
    (not_http, "protocol_error", "not an HTTP response"),
])
async def test_raw_hostile_servers_are_named_in_the_trace(
        raw_server: Any, handler: Any, reason: str, says: str) -> None:  # noqa: F811
    url = await raw_server(handler)
    trace = await one(config(http("t", url, timeout="1s")), "t")
    assert (trace.up, trace.reason) == (False, reason)
    assert says in (trace.error or "")
    assert f"reason {reason}: " in render(trace, "en")


async def test_hostile_checks_each_say_why(site: str) -> None:
    cfg = config(http("t", site, body_contains=["Dịch vụ công", "Thủ tục"],
                      body_regex=r"<h1>\w+", json_condition="status == 'ok'"))
    trace = await one(cfg, "t")
    checks = {c.name: c for c in trace.checks}
    assert checks["HTTP status 200"].ok
    assert checks["body contains 'Dịch vụ công'"].ok
    assert checks["body contains 'Thủ tục'"].detail == "body does not contain 'Thủ tục'"
    assert checks["body matches '<h1>\\\\w+'"].ok
    assert not checks["json_condition \"status == 'ok'\""].ok
    assert "body is not JSON" in checks["json_condition \"status == 'ok'\""].detail
    # the verdict is the first unmet condition, as in a scheduled poll
    assert trace.error == "body does not contain 'Thủ tục'"


async def test_redirect_hops_are_each_shown(site: str) -> None:
    trace = await one(config(http("t", site + "loop", max_redirects=2)), "t")
    assert [e.status for e in trace.exchanges] == [302, 302, 302]


async def test_refused_port_is_connect_refused() -> None:
    trace = await one(config(http("t", f"http://127.0.0.1:{free_port()}/")), "t")
    assert (trace.up, trace.reason) == (False, "connect_refused")
    assert trace.exchanges == []


@pytest.fixture
def tls_site(aiohttp_server: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    ca = trustme.CA(organization_name="So TTTT Hau Giang test CA")
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def start() -> tuple[str, str]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        server = await aiohttp_server(app, ssl=context)
        return f"https://127.0.0.1:{server.port}/", str(ca_file)

    return start


async def test_tls_chain_and_expiry_are_shown(tls_site) -> None:
    url, ca_file = await tls_site()
    cfg = config(http("t", url, ca_file=ca_file, cert_min_days=1_000_000))
    trace = await one(cfg, "t")
    assert trace.tls is not None and trace.tls.version.startswith("TLS")
    assert len(trace.tls.chain) == 3  # leaf, intermediate, the trusted root
    assert "So TTTT Hau Giang test CA" in trace.tls.chain[-1].subject
    assert [p for p, _ in trace.phases][:2] == ["connect", "tls"]
    assert (trace.up, trace.reason) == (False, "tls")
    cert = {c.name: c for c in trace.checks}["certificate validity"]
    assert not cert.ok and "cert_min_days 1e+06" in cert.detail
    text = render(trace, "vi")
    assert "Chứng chỉ TLS" in text and "hết hạn" in text and "[KHÔNG ĐẠT] certificate" in text


async def test_secrets_never_show(site: str) -> None:
    cfg = config(http("t", site + f"?token={SECRET}&page=1", bearer_token="${PORTAL_TOKEN}",
                      headers={"X-Api-Key": "${PORTAL_TOKEN}"}),
                 env={"PORTAL_TOKEN": SECRET})
    trace = await one(cfg, "t")
    assert trace.up
    shown = render(trace, "en") + json.dumps(trace.to_dict(), ensure_ascii=False)
    assert SECRET not in shown and "abc123" not in shown
    assert "token=***&page=1" in trace.url
    headers = {name.lower(): value for name, value in trace.exchanges[0].headers}
    assert headers["set-cookie"] == "***"
    sent = {name.lower(): value for name, value in trace.exchanges[0].request_headers}
    assert sent["authorization"] == sent["x-api-key"] == "***"
    assert sent["user-agent"] == "ioc"


async def test_siem_items_are_shown_not_stored(aiohttp_server) -> None:
    items = [{"id": f"w-{i}", "timestamp": NOW - 60 * i, "severity": "high",
              "title": f"Đăng nhập sai {i}", "host": "portal", "category": "auth_failure"}
             for i in range(2)]
    items.append({"id": "w-bad", "timestamp": "hôm qua", "severity": "high", "title": "x"})
    async def alerts(request: web.Request) -> web.Response:
        return web.json_response({"data": items})

    app = web.Application()
    app.router.add_get("/alerts", alerts)
    server = await aiohttp_server(app)
    cfg = config({"type": "siem", "name": "soc", "department": "SOC", "shape": "json",
                  "url": str(server.make_url("/alerts")), "items": "data"})
    trace = await one(cfg, "soc")
    assert trace.up
    assert sorted(e["id"] for e in trace.events) == ["w-0", "w-1"]
    title = [f for f in trace.fields if f.scope == "item w-0" and f.name == "title"]
    assert title[0].expression == "title" and title[0].value == "Đăng nhập sai 0"
    assert '"data"' in (trace.payload or "")
    assert trace.notes == ["1 item(s) without a usable id, time or severity were skipped"]
    assert "Sự kiện sẽ ghi nhận" in render(trace, "vi")
    assert "bỏ qua 1 mục không có id" in render(trace, "vi")


async def test_unknown_names_are_refused_before_any_poll(site: str) -> None:
    cfg = config(http("b-web", site), http("a-web", site))
    with pytest.raises(UnknownTarget, match=r"no target named 'nope' in the config "
                                            r"\(targets: a-web, b-web\)"):
        await try_targets(cfg, ["a-web", "nope"])


async def test_json_output_holds_every_target(site: str) -> None:
    cfg = config(http("a", site), http("b", site + "broken"))
    traces = await try_targets(cfg, ["a", "b"], now=lambda: NOW)
    document = json.loads(output(traces, as_json=True, lang="en"))
    assert document["up"] is False and exit_code(traces) == 1
    assert [(t["target"], t["up"], t["reason"]) for t in document["targets"]] == \
        [("a", True, None), ("b", False, "http_status")]
    assert document["targets"][0]["phases"][0]["phase"] == "connect"


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_command_exit_codes_and_nothing_stored(site: str, tmp_path: Path) -> None:
    database = tmp_path / "ioc.db"
    raw = {"storage": {"url": f"sqlite+aiosqlite:///{database}"},
           "departments": DEPARTMENTS,
           "collectors": [{"type": "http", "name": "up-web", "department": "STTTT",
                           "url": site},
                          {"type": "http", "name": "down-web", "department": "STTTT",
                           "url": site + "broken"}]}
    path = tmp_path / "config.yaml"
    write_yaml(path, raw)
    code, out, _ = await run_cli("try", "-c", str(path), "up-web")
    assert code == 0 and out.startswith("Mục tiêu up-web (http)")
    code, out, _ = await run_cli("try", "-c", str(path), "up-web", "down-web", "--lang", "en")
    assert code == 1 and "Result: UP" in out and "Result: DOWN" in out
    code, out, _ = await run_cli("try", "-c", str(path), "down-web", "--json")
    assert code == 1 and json.loads(out)["targets"][0]["reason"] == "http_status"
    code, out, err = await run_cli("try", "-c", str(path), "up-wbe")
    assert (code, out) == (2, "")
    assert "no target named 'up-wbe' in the config (targets: down-web, up-web)" in err
    raw["collectors"][0]["timeout"] = "soon"
    write_yaml(path, raw)
    code, _, err = await run_cli("try", "-c", str(path), "up-web")
    assert code == 2 and "collectors[0].timeout" in err
    assert not database.exists()


async def test_the_trace_stays_bounded_whatever_the_target_sends(aiohttp_server) -> None:
    many = [{"id": f"e-{i}", "timestamp": NOW - i, "severity": "low", "title": f"t{i}"}
            for i in range(150)]

    async def noisy(request: web.Request) -> web.Response:
        headers = {f"X-Noise-{i}": "x" * 1000 for i in range(80)}
        return web.json_response({"data": many}, headers=headers)

    app = web.Application()
    app.router.add_get("/alerts", noisy)
    server = await aiohttp_server(app)
    cfg = config({"type": "siem", "name": "soc", "department": "SOC", "shape": "json",
                  "url": str(server.make_url("/alerts")), "items": "data",
                  "page_size": 1000})
    trace = await one(cfg, "soc")
    assert trace.up
    answer = trace.exchanges[0].headers
    assert len(answer) == 51 and answer[-1] == ("…", "more headers not shown")
    assert all(len(value) <= 301 for _, value in answer)
    assert (len(trace.events), trace.events_left_out) == (100, 50)
    assert len({f.scope for f in trace.fields}) == 50 and trace.fields_left_out > 0
    assert len(trace.payload or "") <= 2001
    assert "… and 50 more not shown" in render(trace, "en")
