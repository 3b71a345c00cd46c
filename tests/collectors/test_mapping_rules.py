"""Portal mappings that cannot silently go wrong: the null rule, unknown unit codes, and
`ioc check` listing every mapping error at once. Real payloads served by a local server."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.backlog import BacklogCollector
from collectors.feedback import FeedbackCollector
from ioc.model import Sample
from service.app import IocApp
from service.config import ConfigError, parse_config

DATA = Path(__file__).parent.parent / "data" / "backlog"
PAYLOAD = json.loads((DATA / "opencps_vi.json").read_text(encoding="utf-8"))
DEPARTMENTS = [{"code": c, "name": c} for c in ("HTTT-TTHC", "STTTT", "STP", "SYT", "APP")]
DEPARTMENT_MAP = {"000.00.15.H29": "STTTT", "000.00.09.H29": "STP",
                  "000.00.13.H29": "SYT"}  # a typo: the payload's Sở Y tế is 000.00.31.H29
MAPPING: dict[str, Any] = {
    "units": "DanhSach",
    "code": "MaDonVi",
    "fields": {
        "received": '"Tiếp Nhận".TongSo',
        "received_online": '"Tiếp Nhận".TrucTuyen',
        "received_direct": '"Tiếp Nhận".TrucTiep',
        "received_postal": '"Tiếp Nhận".BuuChinh',
        "carried_over": "KyTruoc",
        "resolved": '"Đã Giải Quyết".TongSo',
        "resolved_early": '"Đã Giải Quyết".TruocHan',
        "resolved_ontime": '"Đã Giải Quyết".DungHan',
        "resolved_late": '"Đã Giải Quyết".QuaHan',
        "in_progress": '"Đang Giải Quyết".TongSo',
        "in_progress_ontime": '"Đang Giải Quyết".TrongHan',
        "in_progress_overdue": '"Đang Giải Quyết".QuaHan',
        "due_soon": '"Đang Giải Quyết".SapDenHan',
        "waiting_supplement": "ChoBoSung",
        "paused": "TamDung",
        "returned": "TraLai",
        "withdrawn": "RutHoSo",
    },
    "optional": ["received_postal", "due_soon"],
    "province": {"total": "TongHop.ThuTuc.TongSo", "full": "TongHop.ThuTuc.ToanTrinh",
                 "partial": "TongHop.ThuTuc.MotPhan"},
}


def raw_config(url: str, **block: Any) -> dict[str, Any]:
    return {
        "storage": {"url": "sqlite+aiosqlite:///:memory:"},
        "departments": DEPARTMENTS,
        "collectors": [{"type": "backlog", "name": "opencps", "department": "HTTT-TTHC",
                        "url": url, "department_map": DEPARTMENT_MAP,
                        "mapping": MAPPING, **block}],
    }


def backlog(url: str, **block: Any) -> BacklogCollector:
    config = parse_config(raw_config(url, **block), env={})
    collector = BacklogCollector(config.collectors[0])  # type: ignore[arg-type]
    collector.bind_units(frozenset(d.code for d in config.departments))
    return collector


@pytest.fixture
async def portal(aiohttp_server: Callable[..., Any]) -> Callable[[Any], Any]:
    """Serve a payload (changed per test) at /stats; returns a setter giving the URL."""
    state: dict[str, Any] = {"payload": PAYLOAD}

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state["payload"])

    app = web.Application()
    app.router.add_get("/stats", stats)
    server = await aiohttp_server(app)

    def serve(payload: Any) -> str:
        state["payload"] = payload
        return str(server.make_url("/stats"))

    return serve


async def poll(collector: BacklogCollector | FeedbackCollector) -> list[Sample]:
    async with aiohttp.ClientSession() as session:
        result = await collector.collect(session, 1_000.0)
    return list(result.samples)


def value(samples: list[Sample], metric: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.metric == metric
             and all(dict(s.labels).get(k) == v for k, v in labels.items())]
    assert len(found) <= 1
    return found[0] if found else None


async def test_string_numbers_and_quoted_vietnamese_keys_are_read(portal) -> None:
    samples = await poll(backlog(portal(PAYLOAD)))
    # "Tiếp Nhận".TongSo is the string "64"; TongHop.ThuTuc.TongSo the string "1812"
    assert value(samples, "ioc_dossiers_received", department="STTTT", channel="online") == 49
    assert value(samples, "ioc_online_procedures", level="none") == 1812 - 1204 - 431
    assert value(samples, "ioc_dossier_ontime_ratio", department="STTTT") == (51 + 11 + 14) / 78


async def test_null_means_unknown_is_the_default_and_never_published(portal) -> None:
    samples = await poll(backlog(portal(PAYLOAD)))
    # STTTT's postal count is null: unknown, so neither published nor derived (64 - 63 = 1)
    assert value(samples, "ioc_dossiers_received", department="STTTT", channel="postal") is None
    assert value(samples, "ioc_dossiers_received", department="STTTT", channel="direct") == 14
    assert value(samples, "ioc_dossiers_received", department="STP", channel="postal") == 7


async def test_null_means_derive_takes_total_minus_the_other_parts(portal) -> None:
    mapping = {**MAPPING, "null_means": "derive"}
    samples = await poll(backlog(portal(PAYLOAD), mapping=mapping))
    assert value(samples, "ioc_dossiers_received", department="STTTT", channel="postal") == 1


async def test_unknown_part_of_a_ratio_keeps_the_unit_out_of_every_ratio(portal) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["DanhSach"][0]["Đã Giải Quyết"]["QuaHan"] = None
    mapping = {**MAPPING, "optional": [*MAPPING["optional"], "resolved_late"]}
    samples = await poll(backlog(portal(payload), mapping=mapping))
    assert value(samples, "ioc_dossiers", department="STTTT", status="resolved_late") is None
    assert value(samples, "ioc_dossiers", department="STTTT", status="resolved_early") == 51
    assert value(samples, "ioc_dossier_ontime_ratio", department="STTTT") is None
    assert value(samples, "ioc_dossier_resolved_ontime_ratio", department="STTTT") is None
    # the province's rate is over the units whose rate is known (STP and the unknown unit)
    assert value(samples, "ioc_dossier_ontime_ratio", department="") == \
        (62 + 9 + 90 + 2 + 3 + 5) / (72 + 91 + 10 + 15)

    derived = await poll(backlog(portal(payload), mapping={**mapping, "null_means": "derive"}))
    assert value(derived, "ioc_dossiers", department="STTTT", status="resolved_late") == 1
    assert value(derived, "ioc_dossier_ontime_ratio", department="STTTT") == (51 + 11 + 14) / 78


async def test_unknown_null_still_checks_the_given_parts_against_the_total(portal) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["DanhSach"][0]["Tiếp Nhận"]["TrucTuyen"] = 60  # 60 + 14 > 64
    with pytest.raises(Exception, match=r"units\[0\] \(STTTT\)\.received.*74.*more than"):
        await poll(backlog(portal(payload)))


async def test_a_required_null_still_fails_the_poll(portal) -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["DanhSach"][1]["KyTruoc"] = None
    with pytest.raises(Exception, match=r"units\[1\] \(STP\)\.carried_over \('KyTruoc'\) "
                                        "is missing"):
        await poll(backlog(portal(payload)))


async def test_unknown_unit_is_published_warned_once_and_counted(portal, caplog) -> None:
    counted: list[int] = []
    collector = backlog(portal(PAYLOAD))
    collector.unknown_units.count = counted.append
    with caplog.at_level(logging.WARNING, logger="ioc.collector"):
        first = await poll(collector)
        await poll(collector)
    warnings = [r for r in caplog.records if "not a department" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].fields["code"] == "000.00.31.H29"  # type: ignore[attr-defined]
    assert counted == [1, 1]
    # include (the default): published under its raw code and counted in the province
    assert value(first, "ioc_dossiers", department="000.00.31.H29", status="paused") == 0
    assert value(first, "ioc_dossier_ontime_ratio", department="") == \
        (62 + 71 + 5 + 104 + 5) / (78 + 163 + 25)


async def test_unknown_units_exclude_keeps_them_out_of_the_province(portal) -> None:
    samples = await poll(backlog(portal(PAYLOAD), unknown_units="exclude"))
    assert value(samples, "ioc_dossier_ontime_ratio", department="000.00.31.H29") == 10 / 25
    assert value(samples, "ioc_dossier_ontime_ratio", department="") == (62 + 71 + 104) / 241
    assert value(samples, "ioc_dossier_resolved_ontime_ratio", department="") == 133 / 135


async def test_a_unit_listed_under_departments_is_no_unknown_unit(portal) -> None:
    mapping = {**DEPARTMENT_MAP, "000.00.31.H29": "SYT"}
    counted: list[int] = []
    collector = backlog(portal(PAYLOAD), department_map=mapping, unknown_units="exclude")
    collector.unknown_units.count = counted.append
    samples = await poll(collector)
    assert counted == []
    assert value(samples, "ioc_dossier_ontime_ratio", department="") == \
        (62 + 71 + 5 + 104 + 5) / (78 + 163 + 25)


async def test_feedback_unknown_units_are_excluded_too(portal) -> None:
    payload = {"units": [
        {"code": "STP", "received": 5, "in_progress": 1, "overdue": 0,
         "resolved": {"on_time": 3, "late": 1}},
        {"code": "SOMEWHERE", "received": 5, "in_progress": 0, "overdue": 4,
         "resolved": {"on_time": 0, "late": 1}}]}
    raw = {"storage": {"url": "sqlite+aiosqlite:///:memory:"}, "departments": DEPARTMENTS,
           "collectors": [{"type": "feedback", "name": "app", "department": "APP",
                           "url": portal(payload), "unknown_units": "exclude"}]}
    config = parse_config(raw, env={})
    collector = FeedbackCollector(config.collectors[0])  # type: ignore[arg-type]
    counted: list[int] = []
    collector.bind_units(frozenset(d.code for d in config.departments), counted.append)
    samples = await poll(collector)
    assert counted == [1]
    assert value(samples, "ioc_feedback_ontime_ratio", department="") == 4 / 5
    assert value(samples, "ioc_feedback_reports", department="SOMEWHERE",
                 status="overdue") == 4


async def test_the_app_counts_unknown_units_on_metrics(portal, tmp_path: Path) -> None:
    raw = raw_config(portal(PAYLOAD))
    raw["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"}
    app = IocApp(parse_config(raw, env={}))
    runner = app.runners["opencps"]
    async with aiohttp.ClientSession() as session:
        runner.session = lambda: session
        await runner.poll()
        await runner.poll()
    assert app.registry.get_sample_value("ioc_backlog_unknown_units_total",
                                         {"collector": "opencps"}) == 2


def test_ioc_check_reports_every_mapping_error_at_once() -> None:
    mapping = {**MAPPING, "fields": {**MAPPING["fields"], "recieved": "a", "pausd": "b"},
               "optional": ["received_postal", "nothing"],
               "province": {**MAPPING["province"], "totl": "x"}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config("http://127.0.0.1:1/", mapping=mapping), env={})
    issues = [str(i) for i in info.value.issues]
    assert [i.split(": ")[0] for i in issues] == [
        "collectors[0].mapping.fields.recieved (opencps)",
        "collectors[0].mapping.fields.pausd (opencps)",
        "collectors[0].mapping.optional[1] (opencps)",
        "collectors[0].mapping.province.totl (opencps)"]
    assert "unknown counter 'recieved' (known: received," in issues[0]


@pytest.mark.parametrize(("key", "bad"), [("null_means", "zero"),
                                          ("unknown_units", "drop")])
def test_the_two_rules_accept_only_their_words(key: str, bad: str) -> None:
    block: dict[str, Any] = {"mapping": {**MAPPING, key: bad}} if key == "null_means" \
        else {key: bad}
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config("http://127.0.0.1:1/", **block), env={})
    (issue,) = info.value.issues
    assert key in issue.path and bad in issue.message


def test_unquoted_vietnamese_keys_are_a_config_error_with_the_quoting_hint() -> None:
    mapping = {**MAPPING, "units": "DanhSach[",
               "fields": {**MAPPING["fields"], "received": "Tiếp Nhận.TongSo",
                          "pausd": "TamDung"}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config("http://127.0.0.1:1/", mapping=mapping), env={})
    issues = {i.path: i.message for i in info.value.issues}
    assert list(issues) == ["collectors[0].mapping.units",
                            "collectors[0].mapping.fields.received",
                            "collectors[0].mapping.fields.pausd"]
    received = issues["collectors[0].mapping.fields.received"]
    assert received.startswith("invalid JMESPath expression 'Tiếp Nhận.TongSo': ")
    assert "must be in double quotes, e.g. '\"Tiếp Nhận\".TongSo'" in received
    assert "\n" not in received
    assert "Incomplete expression" in issues["collectors[0].mapping.units"]
