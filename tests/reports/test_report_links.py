"""Signed report download links: a scheduled report's message links to files that open
without a token, only as signed, only until they expire, and never with the secret shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from ioc.reports.links import LinkError, SignedFile, link_key, signed_links, signed_url, verify
from service.app import IocApp
from service.config import ConfigError, parse_config
from tests.conftest import demo_config, demo_raw, free_port
from tests.reports.test_schedule_delivery import (
    BEFORE,
    FIRE,
    Hook,
    hook,  # noqa: F401  (fixture)
    seed_november,
    watched_app,
)

SECRET = "s3cret-report-link-0123456789abcdef"
KEY = link_key(SECRET)
NOW = 1_796_000_000.0
FILE = SignedFile("2026-11", "pdf", "vi", "STP", int(NOW + 3600))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_a_signed_link_names_exactly_its_file() -> None:
    url = signed_url("https://ioc.haugiang.gov.vn/", KEY, FILE)
    assert url.startswith("https://ioc.haugiang.gov.vn/reports/download?period=2026-11&")
    assert verify(KEY, query_of(url), NOW) == FILE
    assert SECRET not in url


@pytest.mark.parametrize("change", [
    {"period": "2026-10"}, {"format": "xlsx"}, {"lang": "en"}, {"department": "SYT"},
    {"department": ""}, {"expires": str(FILE.expires + 86400)},
    {"sig": "0" * 64}, {"sig": ""}, {"sig": "đ" * 64},
])
def test_any_change_breaks_the_signature(change: dict[str, str]) -> None:
    query = query_of(signed_url("https://x/", KEY, FILE)) | change
    with pytest.raises(LinkError) as caught:
        verify(KEY, query, NOW)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("change", [
    {"expires": "soon"}, {"expires": ""}, {"period": ""}, {"format": "exe"}, {"lang": "fr"},
])
def test_a_malformed_link_says_so(change: dict[str, str]) -> None:
    query = query_of(signed_url("https://x/", KEY, FILE)) | change
    with pytest.raises(LinkError) as caught:
        verify(KEY, query, NOW)
    assert caught.value.reason == "malformed"


def test_another_secret_and_expiry_are_refused() -> None:
    query = query_of(signed_url("https://x/", KEY, FILE))
    with pytest.raises(LinkError, match="another key"):
        verify(link_key(SECRET + "x"), query, NOW)
    with pytest.raises(LinkError) as caught:
        verify(KEY, query, FILE.expires)
    assert caught.value.reason == "expired"
    assert link_key(SECRET) != SECRET.encode()  # derived, not the secret itself


def test_links_of_a_spec_follow_its_formats_and_ttl() -> None:
    spec = {"period": "2026-W48", "formats": ["pdf", "xlsx"], "lang": "en",
            "department": None, "download_url": "https://ioc.haugiang.gov.vn"}
    found = signed_links(spec, KEY, now=NOW, ttl=7 * 86400)
    assert sorted(found) == ["pdf", "xlsx"]
    assert verify(KEY, query_of(found["xlsx"]), NOW + 7 * 86400 - 1) == SignedFile(
        "2026-W48", "xlsx", "en", None, int(NOW + 7 * 86400))
    assert signed_links({**spec, "download_url": ""}, KEY, now=NOW, ttl=60) == {}


@pytest.mark.parametrize("reports, problem", [
    ({"link_secret": "short"}, "reports.link_secret: at least 16 characters"),
    ({"link_secret": SECRET, "link_ttl": "10m"}, "reports.link_ttl"),
    ({"link_secret": SECRET, "link_ttl": "400d"}, "reports.link_ttl"),
])
def test_config_mistakes_name_their_path_and_never_echo_the_secret(
        tmp_path: Path, reports: dict[str, Any], problem: str) -> None:
    raw = demo_raw(tmp_path, free_port(), codes=["STP"], extra={"reports": reports})
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    assert problem in str(caught.value)
    assert "short" not in str(caught.value).replace("at least", "")


async def test_the_message_links_open_the_file_without_a_token(
        tmp_path: Path, hook: tuple[Hook, str]) -> None:  # noqa: F811
    receiver, hook_url = hook
    extra = {
        "alerts": {"outbox": {"max_age": "3650d"},
                   "receivers": [{"name": "lanh-dao", "webhook": [{"url": hook_url}]}]},
        "reports": {"public_url": "https://ioc.haugiang.gov.vn/", "link_secret": SECRET,
                    "schedules": [{"name": "thang", "cron": "30 7 1 * *",
                                   "period": "previous_month", "receivers": ["lanh-dao"],
                                   "formats": ["pdf", "xlsx"]}]},
    }
    config = demo_config(tmp_path, free_port(), codes=["STP"], interval="500ms", extra=extra)
    await seed_november(config.storage.url)
    now = [BEFORE]
    app, sent = watched_app(config, now)
    await app.start()
    try:
        now[0] = FIRE + 5
        app.report_schedule.wake()
        await sent.changed.until(lambda: len(sent.ids) == 1, limit=120)
        post, = receiver.posts
        assert SECRET not in json.dumps(post)
        links = post["links"]
        assert sorted(links) == ["pdf", "xlsx"]
        assert all(u.startswith("https://ioc.haugiang.gov.vn/reports/download?") for u in
                   links.values())
        assert links["pdf"] in post["text"]  # the chat text carries the same links

        async with aiohttp.ClientSession() as session:
            async def get(link: str) -> tuple[int, str, bytes, dict[str, str]]:
                parts = urlsplit(link)
                async with session.get(f"{app.url}{parts.path}?{parts.query}") as resp:
                    return resp.status, resp.content_type, await resp.read(), \
                        dict(resp.headers)

            status, kind, body, headers = await get(links["pdf"])
            assert (status, kind) == (200, "application/pdf") and body.startswith(b"%PDF")
            assert 'filename="bao-cao-2026-11.pdf"' in headers["Content-Disposition"]
            status, kind, body, _ = await get(links["xlsx"])
            assert status == 200 and body[:2] == b"PK"
            assert app.report_files.builds == 1, "the taps get the files the run built"
            assert (await get(links["pdf"]))[0] == 200
            assert app.report_files.builds == 1

            other_month = links["pdf"].replace("period=2026-11", "period=2026-10")
            status, kind, body, _ = await get(other_month)
            assert (status, kind) == (403, "text/html")
            assert "Liên kết tải báo cáo không hợp lệ" in body.decode()
            status, _, body, _ = await get(links["pdf"].replace("expires=", "expires=x"))
            assert status == 400 and SECRET not in body.decode()
            refused = app.registry.get_sample_value(
                "ioc_http_requests_rejected_total", {"reason": "report_link_refused"})
            assert refused == 2  # the altered and the malformed link
            async with session.get(f"{app.url}/reports/download") as resp:
                assert resp.status == 400
    finally:
        await app.stop(grace=1.0)


async def test_without_a_secret_downloads_are_off(
        tmp_path: Path) -> None:
    app = IocApp(demo_config(tmp_path, free_port(), codes=["STP"]))
    await app.start()
    try:
        query = query_of(signed_url("https://x/", KEY, FILE))
        async with aiohttp.ClientSession() as session, session.get(
                f"{app.url}/reports/download", params=query) as resp:
            assert resp.status == 404
            assert "không được bật" in await resp.text()
    finally:
        await app.stop(grace=1.0)
