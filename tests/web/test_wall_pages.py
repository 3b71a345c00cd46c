"""The wall's addresses on a running ioc: every one docs/wall.md names answers 200, and what
cannot be shown is a readable page in the screen's language (never JSON on a TV); the API's
errors stay JSON."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest

from alerts.model import Alert, AlertState
from ioc import clock
from ioc.model import make_labels
from service.app import IocApp
from tests.conftest import demo_config, free_port, polled_app
from web.wall import DEFAULT_VIEW

DOC = Path(__file__).parent.parent.parent / "docs" / "wall.md"
VIETNAMESE = re.compile(r"[ăâđêôơưàáạảãầấậẩẫằắặẳẵèéẹẻẽềếệểễìíịỉĩòóọỏõồốộổỗờớợởỡùúụủũừứựửữỳýỵỷỹ]",
                        re.IGNORECASE)


def doc_wall_urls(text: str) -> list[str]:
    """Every ``/wall…`` address in the doc, with its query; placeholders (``NAME``, ``…``)
    stand for the default view and a value the reader fills in, so they are left out."""
    found = []
    for match in re.finditer(r"/wall/[A-Za-z0-9_\-]+(?:\?[^\s`'\")<]*)?", text):
        parts = urlsplit(match.group(0))
        path = parts.path.replace("/NAME", f"/{DEFAULT_VIEW}")
        query = [(k, v) for k, v in parse_qsl(parts.query) if "…" not in v]
        found.append(path + (f"?{urlencode(query)}" if query else ""))
    return sorted(set(found))


def test_the_doc_names_wall_addresses() -> None:
    urls = doc_wall_urls(DOC.read_text(encoding="utf-8"))
    assert f"/wall/{DEFAULT_VIEW}" in urls
    assert f"/wall/{DEFAULT_VIEW}?rotate=30s&lang=vi" in urls


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[IocApp]:
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"])
    async with polled_app(config) as (started, _):
        yield started


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_every_address_in_the_doc_answers(app: IocApp) -> None:
    urls = ["/", *doc_wall_urls(DOC.read_text(encoding="utf-8"))]
    for url in urls:
        status, kind, body = await get(app.url + url)
        assert (url, status) == (url, 200)
        assert kind.startswith("text/html") and 'id="tiles"' in body


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/wall/khong-co", 404, "Không có màn hình giám sát ở địa chỉ này."),
    ("/wall/khong-co?lang=en", 404, "There is no wall screen at this address."),
    ("/?lang=fr", 400, "Địa chỉ có tham số không hợp lệ."),
    ("/?rotate=1s&lang=en", 400, "The address has an invalid parameter."),
    ("/wall/toan-tinh?theme=blue&lang=en", 400, "invalid theme"),
])
async def test_errors_are_pages_in_the_screens_language(app: IocApp, path: str, status: int,
                                                        words: str) -> None:
    code, kind, body = await get(app.url + path)
    assert code == status and kind.startswith("text/html")
    assert words in body and '"error"' not in body
    assert 'href="/static/wall.css"' in body  # the wall's large type
    if status == 404:
        assert f'href="/wall/{DEFAULT_VIEW}?lang=' in body  # where to go instead
    if "lang=en" in path:
        assert not VIETNAMESE.search(re.sub(r"<[^>]+>", "", body))


async def test_a_failure_is_a_page_that_reloads_itself(app: IocApp,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("secret-ish internals")

    monkeypatch.setattr(app.wall, "document", broken)
    code, kind, body = await get(app.url + "/?lang=en")
    assert code == 500 and kind.startswith("text/html")
    assert "The server failed to build the screen." in body
    assert "secret-ish internals" not in body  # the log has it, the screen does not
    assert '<meta http-equiv="refresh"' in body


async def test_the_api_keeps_answering_json(app: IocApp) -> None:
    code, kind, body = await get(app.url + "/api/v1/nope")
    assert code == 404 and kind.startswith("application/json") and '"error"' in body
    code, kind, body = await get(app.url + "/api/v1/events?limit=0")
    assert code == 400 and kind.startswith("application/json")


async def test_alert_rows_carry_their_text_in_the_language_asked(app: IocApp) -> None:
    now = clock.now()
    await app.dispatcher.update([Alert(
        labels=make_labels({"alertname": "TargetDown", "severity": "critical",
                            "department": "STP", "target": "stp-health"}),
        annotations=(("summary", "stp-health không truy cập được"),
                     ("summary_en", "stp-health is unreachable"), ("description", "mô tả")),
        state=AlertState.FIRING, value=0.0, active_at=now - 60, fired_at=now, last_eval=now)],
        now)
    async with aiohttp.ClientSession() as session:
        for lang, summary in (("en", "stp-health is unreachable"),
                              ("vi", "stp-health không truy cập được")):
            async with session.get(f"{app.url}/api/v1/alerts?lang={lang}") as resp:
                row = (await resp.json())["alerts"][0]
            assert row["text"] == {"title": "", "summary": summary, "description": "mô tả"}
            assert row["annotations"]["summary"] == "stp-health không truy cập được"
    code, kind, _ = await get(app.url + "/api/v1/alerts?lang=fr")
    assert code == 400 and kind.startswith("application/json")


async def test_the_earlier_name_of_the_one_view_still_answers(app: IocApp) -> None:
    """Screens set up with /wall/all before the view was named toan-tinh keep working."""
    status, _, body = await get(app.url + "/wall/all?lang=en")
    assert status == 200 and 'id="tiles"' in body


async def test_titles_follow_the_screens_language(tmp_path: Path) -> None:
    """service.title_en on English pages (wall, console, runbooks); a view's own titles
    first; without English titles, the Vietnamese one."""
    extra = {"service": {"listen": "127.0.0.1:0", "title": "Trung tâm Giám sát tỉnh",
                         "title_en": "Province Operations Centre"},
             "wall": {"views": [{"name": "chung"},
                                {"name": "noi-chinh", "title": "Nội chính",
                                 "title_en": "Internal affairs"},
                                {"name": "dvc", "title": "Dịch vụ công"}]}}
    config = demo_config(tmp_path, free_port(), codes=["STP"], extra=extra)
    async with polled_app(config) as (app, _):
        def heading(body: str) -> str:
            found = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.DOTALL)
            assert found, body[:300]
            return found.group(1).strip()

        expected = {"/wall/chung": "Trung tâm Giám sát tỉnh",
                    "/wall/chung?lang=en": "Province Operations Centre",
                    "/wall/noi-chinh?lang=en": "Internal affairs",
                    "/wall/noi-chinh": "Nội chính",
                    "/wall/dvc?lang=en": "Dịch vụ công"}
        for path, title in expected.items():
            status, _, body = await get(app.url + path)
            assert status == 200 and heading(body) == title, path
        _, _, console = await get(app.url + "/console?lang=en")
        assert "Province Operations Centre" in console
        assert "Trung tâm Giám sát tỉnh" not in console
        _, _, runbooks = await get(app.url + "/runbooks?lang=en")
        assert "Province Operations Centre" in runbooks
