"""Maintenance windows operators announce: the pure rules, the dispatcher muting notifications
for one (fake clock), and the JSON API on a running ioc — auth, validation, the merge with the
config's windows, the history, and a restart on SQLite that keeps them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from alerts.dispatcher import build_dispatcher
from alerts.maintenance import (
    MaintenanceConfig,
    OperatorWindow,
    maintenance_now,
    new_operator_window,
    parse_instant,
)
from ioc.metrics import DeliveryMetrics
from service.app import IocApp
from service.config import Config
from tests.alerts.delivery_helpers import T0, alert
from tests.alerts.test_alerts_api import OPERATOR, VIEWER, Client, check
from tests.alerts.test_delivery_e2e import Hook, alerts_section
from tests.conftest import demo_config, free_port

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DEPTS = {"STP", "CAT"}
WEEKLY = {"department": "CAT", "comment": "sao lưu định kỳ",
          "weekly": [{"days": ["sat"], "start": "22:00", "end": "02:00"}]}


def window(**overrides: Any) -> OperatorWindow:
    values: dict[str, Any] = {"department": "STP", "starts_at": T0, "ends_at": T0 + 3600,
                              "comment": "nâng cấp máy chủ", "created_by": "ca-truc",
                              "now": T0, "departments": DEPTS, **overrides}
    return new_operator_window("w1", **values)


@pytest.fixture
async def hook(aiohttp_server) -> AsyncIterator[tuple[Hook, str]]:
    """A local webhook consumer: where the on-call team's notifications arrive."""
    consumer = Hook()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", consumer.handle)
    server = await aiohttp_server(hook_app)
    yield consumer, str(server.make_url("/hook"))


# -- the pure rules --------------------------------------------------------------------------


def test_parse_instant_reads_numbers_and_iso_in_the_province_time() -> None:
    assert parse_instant(T0, HCM) == T0 and parse_instant(str(int(T0)), HCM) == T0
    local = parse_instant("2027-01-15T15:00", HCM)  # no offset: Vietnam time (UTC+7)
    assert local == T0 == parse_instant("2027-01-15T08:00:00Z", HCM)
    assert parse_instant("2027-01-15 15:00+07:00", HCM) == T0
    for bad in ("", "tomorrow", True, None, [], -5, 1e12, "nan"):
        with pytest.raises(ValueError):
            parse_instant(bad, HCM)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"department": "XYZ"}, "unknown department 'XYZ'; known: CAT, STP"),
    ({"ends_at": T0}, "end must be after start"),
    ({"starts_at": T0 - 7200, "ends_at": T0 - 60}, "already ended"),
    ({"ends_at": T0 + 31 * 86400}, "at most 30 days"),
    ({"comment": "  "}, "say what the work is"),
])
def test_new_window_refusals_say_what_to_change(overrides: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        window(**overrides)


def test_windows_merge_with_the_config_and_end_early() -> None:
    announced = window(starts_at=T0 + 60)
    assert announced.state(T0) == "pending" and announced.state(T0 + 60) == "active"
    config = [MaintenanceConfig.model_validate(
        {"department": "CAT", "ranges": [{"start": "2027-01-15 14:00",
                                          "end": "2027-01-15 16:00"}]})]
    assert maintenance_now(config, [announced], T0, HCM) == {"CAT": "bảo trì theo lịch"}
    assert maintenance_now(config, [announced], T0 + 60, HCM) == {
        "CAT": "bảo trì theo lịch", "STP": "nâng cấp máy chủ"}
    ended = announced.ended(by="truong-ca", now=T0 + 120)
    assert ended.ends_at == T0 + 120 and ended.ended_by == "truong-ca"
    assert maintenance_now([], [ended], T0 + 120, HCM) == {}
    never = announced.ended(by="truong-ca", now=T0)  # a pending one never begins
    assert never.starts_at == never.ends_at == T0 and never.state(T0) == "expired"


# -- the dispatcher, on a fake clock ---------------------------------------------------------


def _config(tmp_path: Path, hook_url: str, extra: dict[str, Any] | None = None) -> Config:
    section = alerts_section([{"name": "oncall", "webhook": [{"url": hook_url}]}])
    section["alerts"]["maintenance"] = [WEEKLY]
    return demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                       extra={**section, **(extra or {})})


async def test_dispatcher_mutes_an_announced_window_then_pages_when_it_ends(
        tmp_path: Path, hook: tuple[Hook, str]) -> None:
    consumer, url = hook
    config = _config(tmp_path, url)
    now = [T0]
    dispatcher = build_dispatcher(config, DeliveryMetrics(CollectorRegistry()), lambda: now[0])
    await dispatcher.start()
    try:
        announced = await dispatcher.add_maintenance(
            department="STP", starts_at=T0, ends_at=T0 + 3600, comment="nâng cấp máy chủ",
            created_by="ca-truc", now=T0)
        down = alert(department="STP", target="stp-health", at=T0 + 10)
        now[0] = T0 + 10
        await dispatcher.update([down], T0 + 10)
        await dispatcher.flush(T0 + 10)
        assert dispatcher.muted(T0 + 10)[down.fingerprint] == {"maintenance": "nâng cấp máy chủ"}
        assert await dispatcher.store.recent(limit=10) == []  # nobody paged

        now[0] = T0 + 20
        assert await dispatcher.end_maintenance(announced.id, by="truong-ca", now=T0 + 20)
        assert await dispatcher.end_maintenance(announced.id, by="truong-ca", now=T0 + 21) \
            is None
        now[0] = T0 + 30  # past group_interval: the group is due again, no longer muted
        await dispatcher.flush(T0 + 30)
        await consumer.until(lambda h: h.statuses() == ["firing"], limit=10)
        events = await dispatcher.store.history(start=T0 - 1, end=T0 + 60, limit=10)
        assert [(e["kind"], e["actor"]) for e in events if e["kind"].startswith("maint")] == [
            ("maintenance_ended", "truong-ca"), ("maintenance", "ca-truc")]
    finally:
        await dispatcher.stop()


# -- the API on a running ioc ----------------------------------------------------------------

TOKENS = {"auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
                              {"name": "wall", "token": VIEWER, "roles": ["viewer"]}],
                   "anonymous": []}}


async def test_api_auth_validation_merge_history_and_restart(
        tmp_path: Path, hook: tuple[Hook, str]) -> None:
    config = _config(tmp_path, hook[1], TOKENS)
    app = IocApp(config)
    await app.start()
    try:
        made, ended_id = await _exercise(app, Client(app.url))
    finally:
        await app.stop(grace=1.0)
    # Start again on the same SQLite file: the announced windows are still there.
    again = IocApp(config)
    await again.start()
    try:
        status, listed = await Client(again.url).call("GET", "/api/v1/maintenance", VIEWER)
        assert status == 200
        api = {w["id"]: w for w in listed["windows"] if w["source"] == "api"}
        assert api[made["id"]]["comment"] == "chuyển máy chủ"
        assert api[made["id"]]["state"] == "pending"
        assert api[ended_id]["ended_by"] == "ca-truc" and api[ended_id]["state"] == "expired"
    finally:
        await again.stop(grace=1.0)


async def _exercise(app: IocApp, client: Client) -> tuple[dict[str, Any], str]:
    path = "/api/v1/maintenance"
    new = {"department": "STP", "start": "2099-01-01T22:00", "end": "2099-01-02T02:00",
           "comment": "chuyển máy chủ"}
    assert (await client.call("GET", path))[0] == 401
    assert (await client.call("POST", path, body=new))[0] == 401
    assert (await client.call("POST", path, VIEWER, new))[0] == 403
    assert (await client.call("DELETE", path + "/x", VIEWER))[0] == 403

    for body, error in [
            ({**new, "department": "XYZ"}, "invalid window"),
            ({**new, "department": 3}, "invalid department"),
            ({**new, "end": "mai"}, "invalid end"),
            ({k: v for k, v in new.items() if k != "end"}, "missing end"),
            ({**new, "end": "2099-03-01T00:00"}, "invalid window"),
            ({**new, "comment": ""}, "invalid window"),
            ({**new, "comment": "x" * 1001}, "invalid comment")]:
        status, answer = await client.call("POST", path, OPERATOR, body)
        assert (status, answer["error"]) == (400, error), body
        check(path, "post", 400, answer)
    status, answer = await client.call("POST", path, OPERATOR, ["not", "an", "object"])
    assert status == 400
    status, _ = await client.call("POST", path, OPERATOR, {**new, "comment": "x" * 20_000})
    assert status == 413

    status, created = await client.call("POST", path, OPERATOR, new)
    assert status == 201
    check(path, "post", 201, created)
    made = created["window"]
    assert made["source"] == "api" and made["created_by"] == "ca-truc"
    assert made["state"] == "pending" and made["department_name"] == "Sở Tư pháp"
    assert made["starts_at"] == parse_instant("2099-01-01T15:00Z", HCM)
    now_window = {"department": "STP", "end": "2099-01-01T00:00", "comment": "khẩn"}
    status, urgent = await client.call("POST", path, OPERATOR, now_window)
    assert status == 400 and "at most 30 days" in urgent["detail"]

    status, listed = await client.call("GET", path, VIEWER)
    assert status == 200
    check(path, "get", 200, listed)
    by_source = {w["source"]: w for w in listed["windows"]}
    assert by_source["config"]["department"] == "CAT" and by_source["config"]["read_only"]
    assert by_source["config"]["weekly"][0]["days"] == ["sat"]
    assert by_source["api"]["id"] == made["id"]
    status, refused = await client.call("DELETE", path + "/config-0", OPERATOR)
    assert status == 409 and "configuration" in refused["detail"]

    # A window opening now mutes the department at once, as the alert view shows.
    status, active = await client.call("POST", path, OPERATOR, {
        "department": "STP", "end": app.dispatcher.clock() + 3600, "comment": "khẩn cấp"})
    assert status == 201 and active["window"]["state"] == "active"
    assert app.dispatcher.maintenance_now(app.dispatcher.clock())["STP"] == "khẩn cấp"
    status, ended = await client.call("DELETE", f"{path}/{active['window']['id']}", OPERATOR)
    assert status == 200 and ended["window"]["state"] == "expired"
    check(f"{path}/{{id}}", "delete", 200, ended)
    assert "STP" not in app.dispatcher.maintenance_now(app.dispatcher.clock())
    status, gone = await client.call("DELETE", f"{path}/{active['window']['id']}", OPERATOR)
    assert (status, gone["error"]) == (404, "no such open window")

    status, history = await client.call("GET", "/api/v1/alerts/history", VIEWER)
    kinds = [(e["kind"], e["actor"], e["detail"]["comment"]) for e in history["events"]
             if e["kind"].startswith("maintenance")]
    assert kinds == [("maintenance_ended", "ca-truc", "khẩn cấp"),
                     ("maintenance", "ca-truc", "khẩn cấp"),
                     ("maintenance", "ca-truc", "chuyển máy chủ")]
    return made, active["window"]["id"]
