"""Every route of the app asks for its role: the 401/403 matrix, throttling, the audit log.

The matrix walks ``app.router.routes()`` itself, so an endpoint added without a role check
(or without a line in ROUTE_ROLES saying what it needs) fails here.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from service.app import IocApp
from tests.trust.conftest import METRICS_TOKEN, TOKENS, bearer, closed_config

# What each route needs. "metrics" means the metrics: section's credentials.
ROUTE_ROLES: dict[tuple[str, str], str] = {
    ("GET", "/"): "viewer",
    ("GET", "/wall/{view}"): "viewer",
    ("GET", "/api/v1/stream"): "viewer",
    ("GET", "/api/v1/status"): "viewer",
    ("GET", "/api/v1/series"): "viewer",
    ("GET", "/api/v1/events"): "viewer",
    ("POST", "/api/v1/events"): "ingest",
    ("GET", "/api/v1/alerts"): "viewer",
    ("GET", "/api/v1/alerts/history"): "viewer",
    ("POST", "/api/v1/alerts/{fingerprint}/ack"): "operator",
    ("POST", "/api/v1/alerts/bulk"): "operator",
    ("POST", "/api/v1/silences/preview"): "viewer",
    ("GET", "/api/v1/silences"): "viewer",
    ("POST", "/api/v1/silences"): "operator",
    ("DELETE", "/api/v1/silences/{id}"): "operator",
    ("GET", "/api/v1/notifications"): "viewer",
    ("GET", "/api/v1/announcement"): "viewer",
    ("POST", "/api/v1/announcement"): "operator",
    ("DELETE", "/api/v1/announcement"): "operator",
    ("GET", "/api/v1/maintenance"): "viewer",
    ("POST", "/api/v1/maintenance"): "operator",
    ("DELETE", "/api/v1/maintenance/{id}"): "operator",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/oncall"): "viewer",
    ("GET", "/api/v1/oncall/roster"): "admin",
    ("PUT", "/api/v1/oncall/roster"): "admin",
    ("GET", "/-/reload"): "admin",
    ("POST", "/-/reload"): "admin",
    ("POST", "/api/v1/try/{name}"): "admin",
    ("GET", "/api/v1/incidents"): "viewer",
    ("POST", "/api/v1/incidents/{id}/notes"): "operator",
    ("PUT", "/api/v1/incidents/{id}/public-note"): "operator",
    ("POST", "/api/v1/incidents/{id}/public-note"): "operator",
    ("GET", "/api/v1/reports"): "viewer",
    ("GET", "/metrics"): "metrics",
}
# Open on purpose (docs/security.md says why): liveness and readiness for load balancers,
# the API's description, the page assets, the console's sign-in (its own checks), and the
# default rules' runbooks (fixed text, opened from notifications) and the on-call ack page
# (the signed, single-use link is the credential), a scheduled report's signed download link
# (the link is the credential), and the citizens' status page (public
# names only; a page with require_auth checks the viewer role itself).
PUBLIC: set[tuple[str, str]] = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/openapi.json"),
    ("GET", "/static"), ("GET", "/console"), ("POST", "/console/login"),
    ("POST", "/console/logout"), ("GET", "/runbooks"), ("GET", "/runbooks/{rule}"),
    ("GET", "/oncall/ack/{token}"), ("POST", "/oncall/ack/{token}"),
    ("GET", "/status"), ("GET", "/status/"), ("GET", "/status.json"), ("GET", "/status/{slug}"),
    ("GET", "/status/{slug}.json"), ("GET", "/status/badge/{service}.svg"),
    ("GET", "/reports/download"),
}
# Only for a console session: no token of any role opens them (the console's live stream; its
# incidents page shows the sign-in form instead, as /console does).
SESSION_ONLY: set[tuple[str, str]] = {("GET", "/console/stream"), ("GET", "/console/incidents")}
# A token that lacks each role.
LACKING = {"viewer": "ingest", "operator": "viewer", "ingest": "viewer", "admin": "operator"}
PATH_VALUES = {"{view}": "overview", "{fingerprint}": "0123abcd", "{id}": "no-such-silence",
               "{name}": "no-such-target"}


def routes_of(app: IocApp) -> set[tuple[str, str]]:
    web_app = app._web_runner.app  # type: ignore[union-attr]
    return {(r.method, r.resource.canonical) for r in web_app.router.routes()
            if r.resource is not None and r.method != "HEAD"}


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace(name, value)
    return path


async def call(app: IocApp, method: str, path: str,
               headers: dict[str, str] | None = None) -> int:
    body = None if method == "GET" else b"{}"
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession() as session, \
            session.request(method, app.url + concrete(path), data=body, headers=hdrs,
                            allow_redirects=False) as resp:
        return resp.status  # headers only: the stream is closed without reading it


async def test_every_route_declares_its_role(closed_app: IocApp) -> None:
    found = routes_of(closed_app)
    undeclared = found - set(ROUTE_ROLES) - PUBLIC - SESSION_ONLY
    assert not undeclared, f"routes without a declared role (add to ROUTE_ROLES): {undeclared}"
    assert set(ROUTE_ROLES) <= found, set(ROUTE_ROLES) - found


async def test_session_only_routes_open_for_no_token(closed_app: IocApp) -> None:
    for role in ("viewer", "operator", "admin", None):
        headers = bearer(role) if role else None
        assert await call(closed_app, "GET", "/console/stream", headers) == 401
        async with aiohttp.ClientSession(headers=headers) as session, \
                session.get(closed_app.url + "/console/incidents") as resp:
            page = await resp.text()
        assert 'name="token"' in page and 'class="incident' not in page


@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_ROLES))
async def test_401_without_token_403_without_role(closed_app: IocApp, method: str,
                                                  path: str) -> None:
    role = ROUTE_ROLES[(method, path)]
    assert await call(closed_app, method, path) == 401
    if role == "metrics":
        assert await call(closed_app, method, path, bearer("admin")) == 401
        ok = await call(closed_app, method, path,
                        {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok == 200
        return
    assert await call(closed_app, method, path, bearer(LACKING[role])) == 403
    assert await call(closed_app, method, path,
                      {"Authorization": "Bearer not-a-known-token-at-all"}) == 401
    allowed = await call(closed_app, method, path, bearer(role))
    assert allowed not in (401, 403, 429), allowed
    if role != "admin":
        assert await call(closed_app, method, path, bearer("admin")) not in (401, 403)


async def test_public_routes_answer_without_token(closed_app: IocApp) -> None:
    for path in ("/healthz", "/readyz", "/api/openapi.json", "/static/wall.css", "/console"):
        assert await call(closed_app, "GET", path) in (200, 404), path


async def test_failed_tokens_are_throttled_per_address(tmp_path: Path) -> None:
    app = IocApp(closed_config(tmp_path, max_failures=3, failure_window="1h"))
    await app.start()
    try:
        wrong = {"Authorization": "Bearer wrong-token-guess-0000"}
        statuses = [await call(app, "GET", "/api/v1/status", wrong) for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        async with aiohttp.ClientSession() as session, \
                session.get(app.url + "/api/v1/status", headers=bearer("viewer")) as resp:
            assert resp.status == 429  # credentials from this address wait, even good ones
            assert int(resp.headers["Retry-After"]) > 0
            assert (await resp.json())["error"] == "too many failed attempts"
        # anonymous requests still get their honest 401, not a 429
        assert await call(app, "GET", "/api/v1/status") == 401

        def failures(reason: str) -> float | None:
            return app.registry.get_sample_value("ioc_auth_failures_total",
                                                 {"reason": reason})
        assert failures("invalid") == 3
        assert failures("throttled") == 3
        assert failures("missing") == 1
    finally:
        await app.stop(grace=1.0)


async def test_console_sign_in_failures_count_too(tmp_path: Path) -> None:
    app = IocApp(closed_config(tmp_path, max_failures=2, failure_window="1h"))
    await app.start()
    try:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(3):
                async with session.post(app.url + "/console/login",
                                        data={"token": "guess-guess-guess-guess"},
                                        allow_redirects=False) as resp:
                    statuses.append(resp.status)
        assert statuses == [401, 401, 429]
    finally:
        await app.stop(grace=1.0)


async def test_every_write_is_audited_and_only_admins_read_it(closed_app: IocApp) -> None:
    app = closed_app
    url = app.url
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/v1/silences", headers=bearer("operator"), json={
                "matchers": ['department="STP"'], "comment": "bảo trì <b>", "duration": "1h",
        }) as resp:
            assert resp.status == 201
            silence_id = (await resp.json())["silence"]["id"]
        async with session.delete(url + f"/api/v1/silences/{silence_id}",
                                  headers=bearer("operator")) as resp:
            assert resp.status == 200
        async with session.post(url + "/api/v1/announcement", headers=bearer("viewer"),
                                json={"text": "x"}) as resp:
            assert resp.status == 403
        async with session.get(url + "/api/v1/audit", headers=bearer("operator")) as resp:
            assert resp.status == 403
        async with session.get(url + "/api/v1/audit", headers=bearer("admin")) as resp:
            assert resp.status == 200
            body = await resp.json()
    entries = [(e["actor"], e["method"], e["path"], e["target"], e["status"])
               for e in reversed(body["entries"])]
    assert entries == [
        ("operator-desk", "POST", "/api/v1/silences", None, 201),
        ("operator-desk", "DELETE", "/api/v1/silences/{id}", f"id={silence_id}", 200),
        ("viewer-desk", "POST", "/api/v1/announcement", None, 403),
    ]
    assert all(e["client"] == "127.0.0.1" and e["ts"] > 0 for e in body["entries"])
    assert TOKENS["operator"] not in str(body)
