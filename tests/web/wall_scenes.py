"""Scenes of the wall, each a real running ioc polling the bundled simulator: what the
Chromium fit test (tests/web/test_wall_fit.py) checks and the screenshots
(bench/screenshots.py) show.

- ``calm``: the demo's 35 departments, all up, with dossier figures and a day of history
  (the tiles' 24-hour strips and the dossier panel's 30-day on-time sparkline);
- ``critical-acked``: the same with one department down, its critical alert acknowledged;
- ``down35``: the province's longest official department names, every department down for
  a different reason and time (seconds to days), one department named with 10 KB of text.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from collectors.simulator import units
from ioc import clock
from ioc.model import Sample, make_labels
from service.app import IocApp
from tests.conftest import SIM_TOKEN, demo_config, free_port
from tests.helpers import Changes

SCENES = ("calm", "critical-acked", "down35")
OPERATOR = "operator-token-scenes-0123456789"

# The official long forms of the demo departments' names (shared/data/province-haugiang.yaml
# lists the short ones the demo uses); e.g. "UBND" spelled out, "tỉnh Hậu Giang" added.
LONG_NAMES = {
    "BQLKCN": "Ban Quản lý các khu công nghiệp tỉnh Hậu Giang",
    "DVC": "Trung tâm Phục vụ hành chính công tỉnh Hậu Giang",
    "HTTT-TTHC": "Hệ thống thông tin giải quyết thủ tục hành chính tỉnh Hậu Giang",
    "IOC": "Trung tâm giám sát, điều hành thông minh tỉnh Hậu Giang (IOC)",
    "SNNPTNT": "Sở Nông nghiệp và Phát triển nông thôn tỉnh Hậu Giang",
    "SLDTBXH": "Sở Lao động - Thương binh và Xã hội tỉnh Hậu Giang",
    "VP-UBND": "Văn phòng Ủy ban nhân dân tỉnh Hậu Giang",
}
HUGE_CODE = "SYT"
# 10 KB of UTF-8: a department name no screen can show whole.
HUGE_NAME = ("Sở Y tế tỉnh Hậu Giang — Trung tâm Kiểm soát bệnh tật, bệnh viện đa khoa "
             "và các trạm y tế xã, phường, thị trấn; ") * 80
HUGE_NAME = HUGE_NAME.encode()[:10240].decode(errors="ignore")

# The way each department of down35 fails (simulator faults), cycled.
FAULTS: tuple[dict[str, Any], ...] = (
    {"fault": "down"},                      # the connection drops: "Kết nối bị ngắt"
    {"fault": "error", "status": 503},      # "Trang báo lỗi (HTTP 503)"
    {"fault": "error", "status": 500},
    {"fault": "slow", "delay": 5},          # "Không phản hồi"
    {"fault": "error", "status": 404},
)
# How long ago each department of down35 began failing, cycled: the widest wordings.
OUTAGE_AGES = (5, 59 * 60 + 59, 3900, 23 * 3600 + 59 * 60, 12 * 86400 + 23 * 3600, 600)


def long_name(code: str, name: str) -> str:
    if code == HUGE_CODE:
        return HUGE_NAME
    if code in LONG_NAMES:
        return LONG_NAMES[code]
    return name.replace("UBND", "Ủy ban nhân dân")


def config_for(scene_name: str, tmp_path: Path) -> Any:
    extra: dict[str, Any] = {
        "service": {"listen": f"127.0.0.1:{free_port()}",
                    "title_en": "Hau Giang Intelligent Operations Centre"},  # as config.yaml
        "wall": {"heartbeat": "500ms", "offline_after": "3s",
                 "announcement": "Họp giao ban lúc 14:00 tại phòng họp số 2"},
        "auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]}]},
    }
    if scene_name == "down35":  # a title that needs its two lines at 1080p
        extra["service"]["title"] = ("Trung tâm Giám sát, điều hành thông minh tỉnh Hậu Giang — "
                                     "Màn hình điều hành của Ủy ban nhân dân tỉnh")
        extra["service"]["title_en"] = ("Hau Giang Intelligent Operations Centre — "
                                        "Operations screen of the Provincial People's Committee")
    if scene_name == "critical-acked":
        extra["alerts"] = {"evaluation_interval": "200ms", "default_rules": False, "rules": [
            {"name": "TargetDown", "metric": "ioc_target_up", "aggregate": "last",
             "window": "1m", "op": "==", "threshold": 0, "for": "1s", "severity": "critical",
             "annotations": {"summary": "{{ labels.target }} ({{ department }}) "
                                        "không truy cập được"}}]}
    config = demo_config(tmp_path, free_port(), interval="1s", extra=extra)
    if scene_name == "down35":
        departments = tuple(d.model_copy(update={"name": long_name(d.code, d.name)})
                            for d in config.departments)
        config = type(config)(**{**config.__dict__, "departments": departments})
    return config


async def fault(app: IocApp, unit: str, spec: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://{app.config.simulator.listen}/_sim/faults",
            headers={"Authorization": f"Bearer {SIM_TOKEN}"},
            json={"unit": unit, **spec}) as resp:
        assert resp.status == 200, await resp.text()


def demo_panels(app: IocApp, now: float) -> None:
    """What the backlog collector would have brought (it is built in another module)."""
    rows = [("STP", "in_progress", 412), ("STP", "in_progress_overdue", 3),
            ("SYT", "in_progress", 1388), ("SYT", "resolved_ontime", 920)]
    app.cache.add(
        [Sample("ioc_dossiers", make_labels(department=d, status=s), v, now) for d, s, v in rows]
        + [Sample("ioc_dossiers_received", make_labels(department="STP", channel="online"),
                  1800, now),
           Sample("ioc_dossier_ontime_ratio", make_labels(department=""), 0.991, now)]
        + [Sample("ioc_province_index_rank", make_labels(index=i, year=str(y)), r, now)
           for i, y, r in (("PAR INDEX", 2021, 27), ("PAR INDEX", 2020, 28), ("PCI", 2021, 38),
                           ("PCI", 2020, 39), ("SIPAS", 2021, 50), ("PAPI", 2021, 33))])


def history(app: IocApp, now: float) -> list[Sample]:
    """A day of polls (every 5 min, a few departments with a bad hour) and 30 days of the
    province's on-time rate, as the store would hold them."""
    samples: list[Sample] = []
    for i, (name, state) in enumerate(sorted(app.board.targets.items())):
        labels = make_labels(target=name, department=state.department, kind=state.kind)
        for step in range(1, 24 * 12):
            ts = now - step * 300
            hour = int((now - ts) // 3600)
            up = not (i % 7 == 3 and hour in (5, 6)) and not (i % 11 == 2 and step % 9 == 0)
            if i % 13 == 5 and hour > 20:
                continue  # not polled yet that far back: grey cells
            samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts))
    province = make_labels(department="")
    for day in range(30):
        rate = 0.985 - 0.01 * math.sin(day / 4) - (0.02 if day in (9, 10) else 0.0)
        for quarter in range(4):
            samples.append(Sample("ioc_dossier_ontime_ratio", province, rate,
                                  now - day * 86400 - quarter * 21600))
    return samples


async def settle(app: IocApp) -> None:
    """Every target polled again after the scene's faults and history: the tiles are final."""
    seen: set[str] = set()
    changes = Changes()

    def hook(outcome: Any) -> None:
        seen.add(outcome.target)
        changes.set()

    app.pipeline.add_hook(hook)
    await changes.until(lambda: seen >= set(app.runners), 15.0)


async def ack_critical(app: IocApp, unit: str) -> None:
    """Wait for the department's critical alert to fire, then acknowledge it as an operator."""
    changes = Changes()
    app.dispatcher.subscribe(changes.set)

    def firing() -> list[dict[str, Any]]:
        return [a for a in app.dispatcher.view(clock.now()) if a["state"] == "firing"]

    await changes.until(lambda: bool(firing()), 15.0)
    fingerprint = firing()[0]["fingerprint"]
    async with aiohttp.ClientSession() as session, session.post(
            f"{app.url}/api/v1/alerts/{fingerprint}/ack",
            headers={"Authorization": f"Bearer {OPERATOR}"},
            json={"comment": "Đang kiểm tra máy chủ"}) as resp:
        assert resp.status == 200, await resp.text()


@contextlib.asynccontextmanager
async def scene(scene_name: str, tmp_path: Path) -> AsyncIterator[IocApp]:
    """A started app showing ``scene_name``; stopped afterwards."""
    if scene_name not in SCENES:
        raise ValueError(f"unknown scene {scene_name!r}; scenes: {', '.join(SCENES)}")
    app = IocApp(config_for(scene_name, tmp_path))
    await app.start()
    try:
        now = clock.now()
        await app.store.append(history(app, now))
        demo_panels(app, now)
        if scene_name == "critical-acked":
            await fault(app, "STP", {"fault": "error", "status": 503})
        elif scene_name == "down35":
            for i, unit in enumerate(u.code for u in units()):
                await fault(app, unit, FAULTS[i % len(FAULTS)])
        await settle(app)
        if scene_name == "critical-acked":
            await ack_critical(app, "STP")
        elif scene_name == "down35":
            for i, target in enumerate(sorted(app.board.targets.values(), key=lambda t: t.name)):
                if target.failing_since is not None:  # as if each outage began long ago
                    target.failing_since = now - OUTAGE_AGES[i % len(OUTAGE_AGES)]
        await app.wall.state.refresh_soon(app.store, clock.now())
        yield app
    finally:
        await app.stop(grace=1.0)
