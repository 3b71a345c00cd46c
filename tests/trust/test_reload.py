"""Hot reload through a running IocApp: targets added, removed and changed; a bad file refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from collectors.simulator import units
from ioc.model import make_labels
from service.app import IocApp
from service.config import load_config
from tests.conftest import SIM_TOKEN, PollWatcher, free_port, write_yaml

ADMIN = "admin-token-0123456789"


def raw_config(tmp_path: Path, sim_port: int, codes: list[str],
               intervals: dict[str, str] | None = None) -> dict[str, Any]:
    chosen = [u for u in units() if u.code in codes]
    return {
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
                    "flush_interval": "100ms"},
        "collection": {"interval": "200ms", "timeout": "150ms"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                      "token": SIM_TOKEN, "latency_scale": 0},
        "auth": {"tokens": [{"name": "admin-desk", "token": ADMIN, "roles": ["admin"]}]},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in units()
                        if u.code in ("STP", "CAT", "VITHANH")],
        "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                        "department": u.code,
                        "url": f"http://127.0.0.1:{sim_port}/{u.code}/health",
                        **({"interval": intervals[u.code]} if intervals and u.code in intervals
                           else {})}
                       for u in chosen],
    }


def failures(app: IocApp, target: str) -> set[str]:
    """The departments under which ``target`` has counted failed polls."""
    return {s.labels["department"] for family in app.metrics.failures.collect()
            for s in family.samples if s.name.endswith("_total")
            and s.labels["target"] == target and s.value > 0}


async def test_reload_adds_removes_and_changes_targets(tmp_path: Path) -> None:
    sim_port = free_port()
    path = tmp_path / "config.yaml"
    write_yaml(path, raw_config(tmp_path, sim_port, ["STP", "CAT"]))
    app = IocApp(load_config(path, env={}))
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: {"stp-health", "cat-health"} <= {o.target for o in seen})
        assert any(("target", "cat-health") in labels
                   for labels, _ in app.cache.series("ioc_target_up"))
        rule_states = list(app.alerts.evaluator.states)
        last_success = "ioc_collector_last_success_timestamp_seconds"
        await watcher.until(lambda seen: {"stp-health", "cat-health"} <= {
            o.target for o in seen if o.result.up})
        stp_success = app.board.targets["stp-health"].last_success
        assert app.registry.get_sample_value(last_success, {"target": "cat-health"})
        # CAT goes down: its failures are counted under its department, and leave with it
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as session, session.post(
                f"http://127.0.0.1:{sim_port}/_sim/faults",
                json={"unit": "CAT", "fault": "down"}) as resp:
            assert resp.status == 200
        await watcher.until(lambda seen: any(o.target == "cat-health" and not o.result.up
                                             for o in seen))
        assert failures(app, "cat-health") == {"CAT"}

        write_yaml(path, raw_config(tmp_path, sim_port, ["STP", "VITHANH"], {"STP": "300ms"}))
        result = await app.reload()
        # The removed target's last success leaves with it; the changed one (same labels)
        # keeps its own until its next poll.
        assert app.registry.get_sample_value(last_success, {"target": "cat-health"}) is None
        assert app.registry.get_sample_value(
            last_success, {"target": "stp-health"}) >= stp_success

        assert result.ok and not result.errors
        assert (result.added, result.removed, result.changed) == (
            ["vithanh-health"], ["cat-health"], ["stp-health"])
        assert set(app.runners) == {"stp-health", "vithanh-health"}
        assert app.scheduler.job_names() == {"stp-health", "vithanh-health"}
        assert app.runners["stp-health"].interval == 0.3
        assert set(app.board.targets) == {"stp-health", "vithanh-health"}
        assert not any(("target", "cat-health") in labels
                       for labels, _ in app.cache.series("ioc_target_up"))
        # unchanged rules keep their state objects (and so their pending/firing alerts)
        assert all(a is b for a, b in zip(app.alerts.evaluator.states, rule_states,
                                          strict=True))
        mark = len(watcher.outcomes)
        await watcher.until(lambda seen: {"stp-health", "vithanh-health"}
                            <= {o.target for o in seen[mark:]})
        assert "cat-health" not in {o.target for o in watcher.outcomes[mark:]}
        assert app.registry.get_sample_value("ioc_targets") == 2
        assert app.registry.get_sample_value("ioc_config_last_reload_successful") == 1
        async with aiohttp.ClientSession() as session, \
                session.get(app.url + "/metrics") as resp:
            text = await resp.text()
        assert 'target="cat-health"' not in text and 'target="vithanh-health"' in text
        assert failures(app, "cat-health") == set()
    finally:
        await app.stop(grace=1.0)


async def test_bad_config_is_refused_and_the_old_one_keeps_running(tmp_path: Path) -> None:
    sim_port = free_port()
    path = tmp_path / "config.yaml"
    good = raw_config(tmp_path, sim_port, ["STP"])
    write_yaml(path, good)
    app = IocApp(load_config(path, env={}))
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        bad = raw_config(tmp_path, sim_port, ["STP", "CAT"])
        bad["collection"]["interval"] = "fast"
        bad["storage"]["retension"] = "1d"
        write_yaml(path, bad)
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession() as session:
            async with session.post(app.url + "/-/reload", headers=headers) as resp:
                assert resp.status == 400
                body = await resp.json()
            async with session.get(app.url + "/metrics") as resp:
                metrics = await resp.text()
            async with session.get(app.url + "/-/reload", headers=headers) as resp:
                last = (await resp.json())["reload"]
        errors = body["detail"]["errors"]
        assert any(e.startswith("collection.interval:") for e in errors), errors
        assert any(e.startswith("storage.retension:") for e in errors), errors
        assert last["ok"] is False and last["errors"] == errors
        assert "ioc_config_last_reload_successful 0.0" in metrics
        assert set(app.runners) == {"stp-health"}
        assert app.config.collection.interval == 0.2
        mark = len(watcher.outcomes)
        await watcher.until(lambda seen: len(seen) > mark)  # still polling

        # fixed file: applied, the gauge is back to 1; a listen change needs a restart
        good["service"]["title"] = "Trung tâm mới"
        good["service"]["listen"] = "127.0.0.1:1"
        write_yaml(path, good)
        result = await app.reload()
        assert result.ok and result.restart_required == ["service"]
        assert app.config.service.listen == "127.0.0.1:0"  # what runs, not what the file says
        assert app.registry.get_sample_value("ioc_config_last_reload_successful") == 1
        assert app.registry.get_sample_value("ioc_config_restart_required") == 1
    finally:
        await app.stop(grace=1.0)


async def test_reload_swaps_tokens(tmp_path: Path) -> None:
    sim_port = free_port()
    path = tmp_path / "config.yaml"
    raw = raw_config(tmp_path, sim_port, ["STP"])
    write_yaml(path, raw)
    app = IocApp(load_config(path, env={}))
    await app.start()
    try:
        new_token = "new-admin-token-0123456789"
        raw["auth"]["tokens"] = [{"name": "new-admin", "token": new_token, "roles": ["admin"]}]
        write_yaml(path, raw)
        async with aiohttp.ClientSession() as session:
            async with session.post(app.url + "/-/reload",
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                assert resp.status == 200
            async with session.get(app.url + "/-/reload",
                                   headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                assert resp.status == 401  # the old token is gone
            async with session.get(app.url + "/-/reload",
                                   headers={"Authorization": f"Bearer {new_token}"}) as resp:
                assert resp.status == 200
    finally:
        await app.stop(grace=1.0)


async def test_reload_starts_only_this_shards_targets(tmp_path: Path) -> None:
    from ioc.sharding import parse_shard

    sim_port = free_port()
    path = tmp_path / "config.yaml"
    codes = [u.code for u in units()]
    raw = raw_config(tmp_path, sim_port, codes[:2])
    raw["departments"] = [{"code": u.code, "name": u.name, "kind": u.kind} for u in units()]
    raw["collection"]["shard"] = "1/2"
    write_yaml(path, raw)
    app = IocApp(load_config(path, env={}))
    await app.start()
    try:
        grown = raw_config(tmp_path, sim_port, codes)
        grown["departments"] = raw["departments"]
        grown["collection"]["shard"] = "1/2"
        write_yaml(path, grown)
        result = await app.reload()
        assert result.ok
        shard = parse_shard("1/2")
        every = {f"{code.lower()}-health" for code in codes}
        mine = {name for name in every if shard.owns(name)}
        assert 0 < len(mine) < len(every)
        assert set(app.runners) == mine
        assert app.scheduler.job_names() == mine
    finally:
        await app.stop(grace=1.0)


OPERATOR_A = "operator-a-token-0123456789"
OPERATOR_B = "operator-b-token-0123456789"
VIEWER_OLD = "viewer-old-token-0123456789"
VIEWER_NEW = "viewer-new-token-0123456789"


async def _console_session(base: str, token: str) -> tuple[aiohttp.ClientSession, str]:
    """A client signed in to the console with ``token``, and its page's CSRF token."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(base + "/console/login", data={"token": token},
                            headers={"Sec-Fetch-Site": "same-origin"},
                            allow_redirects=False) as resp:
        assert resp.status == 303
    async with session.get(base + "/console") as resp:
        page = await resp.text()
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert match is not None
    return session, match.group(1)


async def _wall_screen(base: str, token: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(f"{base}/?token={token}", allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
    return session


async def test_reload_revokes_sessions_and_wall_cookies_and_admits_new_tokens(
        tmp_path: Path) -> None:
    """Removing or changing a token ends what it opened; a token added works at once."""
    path = tmp_path / "config.yaml"
    raw = raw_config(tmp_path, free_port(), ["STP"])
    admin = {"name": "admin-desk", "token": ADMIN, "roles": ["admin"]}
    raw["auth"] = {"anonymous": [], "tokens": [
        admin,
        {"name": "ca-a", "token": OPERATOR_A, "roles": ["operator"]},
        {"name": "ca-b", "token": OPERATOR_B, "roles": ["operator"]},
        {"name": "tv-cu", "token": VIEWER_OLD, "roles": ["viewer"]},
        {"name": "tv-giu", "token": VIEWER_NEW + "-kept", "roles": ["viewer"]}]}
    write_yaml(path, raw)
    app = IocApp(load_config(path, env={}))
    await app.start()
    base = app.url
    silence = {"matchers": ['alertname="TargetDown"'], "duration": "1h", "comment": "x"}
    removed, removed_csrf = await _console_session(base, OPERATOR_A)
    changed, changed_csrf = await _console_session(base, OPERATOR_B)
    kept = await _wall_screen(base, VIEWER_NEW + "-kept")
    old_tv = await _wall_screen(base, VIEWER_OLD)
    new_tv = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        for client in (old_tv, kept):
            async with client.get(base + "/") as resp:
                assert resp.status == 200
        async with removed.post(base + "/api/v1/silences", json=silence,
                                headers={"X-CSRF-Token": removed_csrf}) as resp:
            assert resp.status in (200, 201), await resp.text()
        async with new_tv.get(f"{base}/?token={VIEWER_NEW}", allow_redirects=False) as resp:
            assert resp.status == 401  # not configured yet

        # ca-a removed, ca-b's value changed, tv-cu demoted to ingest, a new viewer added
        raw["auth"]["tokens"] = [
            admin,
            {"name": "ca-b", "token": OPERATOR_B + "-new", "roles": ["operator"]},
            {"name": "tv-cu", "token": VIEWER_OLD, "roles": ["ingest"]},
            {"name": "tv-giu", "token": VIEWER_NEW + "-kept", "roles": ["viewer"]},
            {"name": "tv-moi", "token": VIEWER_NEW, "roles": ["viewer"]}]
        write_yaml(path, raw)
        async with removed.post(base + "/-/reload",
                                headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            assert resp.status == 200 and (await resp.json())["reload"]["ok"]

        for client, csrf in ((removed, removed_csrf), (changed, changed_csrf)):
            async with client.post(base + "/api/v1/silences", json=silence,
                                   headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 401
            async with client.get(base + "/console") as resp:
                assert 'name="token"' in await resp.text()  # the sign-in form again
        async with old_tv.get(base + "/") as resp:
            assert resp.status == 401
        async with old_tv.get(base + "/api/v1/stream") as resp:
            assert resp.status == 401
        async with kept.get(base + "/") as resp:
            assert resp.status == 200
        # the token added by the reload works everywhere at once
        async with new_tv.get(f"{base}/?token={VIEWER_NEW}", allow_redirects=False) as resp:
            assert resp.status == 303
        for route in ("/", "/api/v1/status", "/api/v1/stream"):
            async with new_tv.get(base + route) as resp:
                assert resp.status == 200, route
        async with new_tv.get(base + "/api/v1/status",
                              headers={"Authorization": f"Bearer {VIEWER_NEW}"}) as resp:
            assert resp.status == 200
        again, _ = await _console_session(base, OPERATOR_B + "-new")
        await again.close()
        async with removed.get(base + "/healthz") as resp:
            assert resp.status == 200  # the service is up throughout
    finally:
        for client in (removed, changed, kept, old_tv, new_tv):
            await client.close()
        await app.stop(grace=1.0)


async def test_a_renamed_department_reaches_every_reader_at_once(tmp_path: Path) -> None:
    """The app keeps one mapping of department names: a reload's rename is what the status
    API, the wall, delivery (notifications, the maintenance API) and the rules read next."""
    raw = raw_config(tmp_path, free_port(), ["STP"])
    app = IocApp(load_config(_written(tmp_path, raw), env={}))
    renamed = {**raw, "departments": [
        {**d, "name": "Sở Tư pháp tỉnh Hậu Giang"} if d["code"] == "STP" else d
        for d in raw["departments"]]}
    result = await app.reload(load_config(_written(tmp_path, renamed), env={}))
    assert result.ok and result.rules, result
    expected = "Sở Tư pháp tỉnh Hậu Giang"
    assert app.department_names["STP"] == expected
    assert app.web.department_names["STP"] == expected
    assert app.wall.departments["STP"] == expected
    assert (app.dispatcher.settings.department_names or {})["STP"] == expected
    assert app.config.department_name("STP") == expected
    # an alert rule's summary names the department as it is called now
    rule = next(r for r in app.alerts.rules if r.name == "TargetDown")
    annotations = dict(rule.render(make_labels(target="stp-health", department="STP"), 0.0))
    assert expected in annotations["summary"]


def _written(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    write_yaml(path, raw)
    return path
