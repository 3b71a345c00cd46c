"""The default rules' runbook links open ioc's own pages, Vietnamese first."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from alerts.config import default_external_url
from alerts.rules import absolute, compile_rules, default_rules_text, parse_rule_text
from alerts.runbooks import find_runbook, runbooks
from service.app import IocApp
from tests.conftest import demo_config, free_port


def _default_rules() -> list:
    rules, problems = parse_rule_text(default_rules_text(), "default_rules.yaml")
    assert not problems
    return rules


def test_every_default_rule_has_a_runbook_in_both_languages() -> None:
    names = {cfg.name for cfg, _ in _default_rules()}
    assert names <= set(runbooks())
    for cfg, _ in _default_rules():
        assert cfg.annotations["runbook_url"] == f"/runbooks/{cfg.name}"
    for runbook in runbooks().values():
        assert runbook.vi.title != runbook.en.title and runbook.vi.steps and runbook.en.steps


def test_relative_runbook_urls_become_absolute_with_the_external_url() -> None:
    rules = compile_rules(_default_rules(), external_url="https://ioc.haugiang.gov.vn/")
    rendered = dict(rules[0].render((("target", "stp-web"),), 0.0))
    assert rendered["runbook_url"] == f"https://ioc.haugiang.gov.vn/runbooks/{rules[0].name}"
    assert absolute("runbook_url", "https://wiki/x", "http://ioc/") == "https://wiki/x"
    assert absolute("runbook_url", "//evil/x", "http://ioc/") == "//evil/x"
    assert absolute("summary", "/runbooks/x", "http://ioc/") == "/runbooks/x"


@pytest.mark.parametrize(("host", "port", "url", "wildcard"), [
    ("127.0.0.1", 8080, "http://127.0.0.1:8080/", False),
    ("10.20.0.5", 9000, "http://10.20.0.5:9000/", False),
    ("0.0.0.0", 8080, "http://ioc-hg:8080/", True),
    ("::", 8080, "http://ioc-hg:8080/", True),
    ("", 8080, "http://ioc-hg:8080/", True),
    ("::1", 8080, "http://[::1]:8080/", False),
    ("ioc.local", 80, "http://ioc.local:80/", False),
])
def test_default_external_url_is_where_ioc_listens(host: str, port: int, url: str,
                                                   wildcard: bool) -> None:
    assert default_external_url(host, port, "ioc-hg") == (url, wildcard)


def test_listen_override_is_the_external_url_and_a_wildcard_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP"])
    app = IocApp(config, listen="127.0.0.1:18123")
    assert app.external_url == "http://127.0.0.1:18123/"
    assert app.dispatcher.settings.external_url == "http://127.0.0.1:18123/"
    down = next(r for r in app.alerts.rules if r.name == "TargetDown")
    assert dict(down.render((), 0.0))["runbook_url"] == \
        "http://127.0.0.1:18123/runbooks/TargetDown"
    caplog.set_level("WARNING", "ioc.app")
    wildcard = IocApp(config, listen="0.0.0.0:18124")
    assert "0.0.0.0" not in wildcard.external_url
    assert any("alerts.external_url is not set" in r.message for r in caplog.records)
    configured = IocApp(type(config)(**{**config.__dict__, "alerts": config.alerts.model_copy(
        update={"external_url": "https://ioc.haugiang.gov.vn/"})}), listen="0.0.0.0:18125")
    assert configured.external_url == "https://ioc.haugiang.gov.vn/"


async def test_runbook_pages_are_served_vietnamese_first(tmp_path: Path) -> None:
    app = IocApp(demo_config(tmp_path, free_port(), codes=["STP"]))
    await app.start()
    try:
        assert app.dispatcher.settings.external_url == app.url + "/"  # the bound port
        async with aiohttp.ClientSession() as session:
            async with session.get(app.url + "/runbooks/TargetDown") as resp:
                page = await resp.text()
                assert resp.status == 200 and '<html lang="vi">' in page
                assert "Hệ thống không truy cập được" in page
            async with session.get(app.url + "/runbooks/targetdown?lang=en") as resp:
                page = await resp.text()
                assert resp.status == 200 and "System unreachable" in page
            async with session.get(app.url + "/runbooks") as resp:
                page = await resp.text()
                assert all(f"/runbooks/{name}?lang=vi" in page for name in runbooks())
            async with session.get(app.url + "/runbooks/%3Cscript%3Ex") as resp:
                page = await resp.text()
                assert resp.status == 404 and "&lt;script&gt;x" in page
                assert "<script>x" not in page
            async with session.get(app.url + "/runbooks/TargetDown?lang=fr") as resp:
                assert resp.status == 400
    finally:
        await app.stop(grace=1.0)
    assert find_runbook("TARGETDOWN") is not None and find_runbook("nope") is None
