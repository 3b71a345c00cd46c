"""From a fault in the simulator to a person: the whole service, real receivers.

* a local webhook consumer gets the firing group within interval + for + evaluation interval
  + 1 s of the fault, then the resolved one;
* the real Alertmanager (Debian's prometheus-alertmanager, started here on a free port) shows
  the alert through its own API, then shows it resolved;
* ioc killed with SIGKILL while an alert fires and started again pages no one twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from collectors.simulator.app import start_simulator
from service.app import IocApp
from service.config import parse_config
from tests.conftest import SIM_TOKEN, demo_config, free_port, require_binary
from tests.helpers import Changes

pytestmark = pytest.mark.slow

INTERVAL, FOR, EVALUATION = 0.2, 1.0, 0.2
RULE = {"name": "TargetDown", "metric": "ioc_target_up", "aggregate": "last", "window": "1m",
        "op": "==", "threshold": 0, "for": "1s", "severity": "critical",
        "annotations": {"summary": "{{ labels.target }} ({{ department }}) không truy cập được"}}


def alerts_section(receivers: list[dict[str, Any]], **route: Any) -> dict[str, Any]:
    return {"alerts": {
        "evaluation_interval": "200ms", "default_rules": False, "rules": [RULE],
        "route": {"receiver": receivers[0]["name"], "group_by": ["alertname", "department"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h",
                  **route},
        "receivers": receivers,
        "outbox": {"initial_backoff": "200ms", "max_backoff": "1s"}}}


class Hook:
    """A webhook consumer: keeps every payload and wakes waiters."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self._changed = Changes()

    async def handle(self, request: web.Request) -> web.Response:
        self.payloads.append(await request.json())
        self.arrived.append(time.monotonic())
        self._changed.set()
        return web.Response(text="ok")

    def statuses(self) -> list[str]:
        return [p["status"] for p in self.payloads]

    async def until(self, predicate: Any, limit: float) -> None:
        await self._changed.until(lambda: predicate(self), limit)


@pytest.fixture
async def hook(aiohttp_server) -> AsyncIterator[tuple[Hook, str]]:
    consumer = Hook()
    app = web.Application()
    app.router.add_post("/hook", consumer.handle)
    server = await aiohttp_server(app)
    yield consumer, str(server.make_url("/hook"))


async def fault(sim: str, unit: str, kind: str | None) -> None:
    headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        if kind is None:
            async with session.delete(f"{sim}/_sim/faults/{unit}") as resp:
                assert resp.status == 200
        else:
            async with session.post(f"{sim}/_sim/faults",
                                    json={"unit": unit, "fault": kind}) as resp:
                assert resp.status == 200, await resp.text()


async def test_webhook_gets_firing_then_resolved_in_time(tmp_path: Path, hook) -> None:
    consumer, url = hook
    sim_port = free_port()
    raw = alerts_section([{"name": "oncall", "webhook": [{"url": url}]}])
    config = demo_config(tmp_path, sim_port, codes=["STP", "CAT"], extra=raw)
    app = IocApp(config)
    await app.start()
    try:
        sim = f"http://127.0.0.1:{sim_port}"
        injected = time.monotonic()
        await fault(sim, "STP", "down")
        budget = INTERVAL + FOR + EVALUATION + 1.0
        await consumer.until(lambda h: "firing" in h.statuses(), limit=budget + 5)
        latency = consumer.arrived[0] - injected
        print(f"firing group {latency:.2f} s after the fault (budget {budget:.2f} s)")
        assert latency <= budget + config.collection.timeout, (
            f"firing group after {latency:.2f} s, budget {budget:.2f} s")
        first = consumer.payloads[0]
        assert first["version"] == "4" and first["receiver"] == "oncall"
        assert first["groupLabels"] == {"alertname": "TargetDown", "department": "STP"}
        (alert,) = first["alerts"]
        assert alert["labels"]["target"] == "stp-health"
        assert alert["annotations"]["summary"].startswith("stp-health (Sở Tư pháp)")

        await fault(sim, "STP", None)
        await consumer.until(lambda h: "resolved" in h.statuses(), limit=10)
        assert consumer.statuses() == ["firing", "resolved"]
        assert consumer.payloads[1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

        async def sent() -> list[dict[str, Any]]:
            # The consumer may answer before ioc has recorded the delivery.
            async with aiohttp.ClientSession() as session, session.get(
                    app.url + "/api/v1/notifications?state=sent") as resp:
                rows = (await resp.json())["notifications"]
            return rows if len(rows) == 2 else []

        assert [n["status"] for n in await poll_until(sent, 10)] == ["resolved", "firing"]
        async with aiohttp.ClientSession() as session, session.get(
                app.url + "/api/v1/alerts/history") as resp:
            kinds = [e["kind"] for e in (await resp.json())["events"]]
        assert kinds[:2] == ["resolved", "firing"]
    finally:
        await app.stop(grace=1.0)


# -- the real Alertmanager -----------------------------------------------------------------


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[str]:
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump({"route": {"receiver": "null"},
                                      "receivers": [{"name": "null"}]}))
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            while True:
                try:
                    async with session.get(url + "/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)  # the process gives no event to await
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def am_alerts(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, \
            session.get(url + "/api/v2/alerts") as resp:
        assert resp.status == 200
        return [a for a in await resp.json() if a["labels"].get("alertname") == "TargetDown"]


async def poll_until(check: Any, limit: float) -> Any:
    """Alertmanager has no push to await: ask it until the answer is what we expect."""
    async with asyncio.timeout(limit):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.2)


async def test_real_alertmanager_shows_the_alert_then_resolved(tmp_path: Path,
                                                               alertmanager: str) -> None:
    sim_port = free_port()
    raw = alerts_section([{"name": "ioc-alertmanager",
                           "alertmanager": [{"urls": [alertmanager], "resend_interval": "1s"}]}])
    app = IocApp(demo_config(tmp_path, sim_port, codes=["STP"], extra=raw))
    await app.start()
    try:
        sim = f"http://127.0.0.1:{sim_port}"
        await fault(sim, "STP", "down")

        async def active() -> list[dict[str, Any]]:
            return [a for a in await am_alerts(alertmanager) if a["status"]["state"] == "active"]

        (shown,) = await poll_until(active, 20)
        assert shown["labels"]["target"] == "stp-health"
        assert shown["labels"]["severity"] == "critical"
        assert "không truy cập được" in shown["annotations"]["summary"]

        await fault(sim, "STP", None)

        async def resolved() -> bool:
            # Alertmanager lists an alert until its endsAt has passed; ioc sets endsAt to the
            # moment it resolved, so it leaves the list of current alerts at once.
            return not await am_alerts(alertmanager)

        assert await poll_until(resolved, 20)
    finally:
        await app.stop(grace=1.0)


# -- kill -9 and restart ---------------------------------------------------------------------


async def test_restart_after_kill_pages_no_one_twice(tmp_path: Path, hook) -> None:
    consumer, url = hook
    sim_port = free_port()
    sim_runner = await start_simulator("127.0.0.1", sim_port, token=SIM_TOKEN, latency_scale=0)
    ioc_port = free_port()
    raw: dict[str, Any] = {
        "service": {"listen": f"127.0.0.1:{ioc_port}"},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
                    "flush_interval": "100ms"},
        "collection": {"interval": "200ms", "timeout": "150ms"},
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "collectors": [{"type": "http", "name": "stp-health", "department": "STP",
                        "url": f"http://127.0.0.1:{sim_port}/STP/health"}],
        **alerts_section([{"name": "oncall", "webhook": [{"url": url}]}]),
    }
    parse_config(raw, env={})  # fail here, not in the child, on a bad config
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ioc = [sys.executable, "-m", "ioc", "run", "-c", str(config_file)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    log_file = (tmp_path / "ioc.log").open("ab")

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *ioc, env=env, stdout=log_file, stderr=log_file)

    async def ioc_firing() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{ioc_port}/api/v1/alerts?state=firing") as resp:
                return resp.status == 200 and bool((await resp.json())["alerts"])
        except aiohttp.ClientError:
            return False

    async def ioc_sent() -> bool:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{ioc_port}/api/v1/notifications?state=sent") as resp:
            return bool((await resp.json())["notifications"])

    proc = await spawn()
    try:
        await fault(f"http://127.0.0.1:{sim_port}", "STP", "down")
        await consumer.until(lambda h: "firing" in h.statuses(), limit=20)
        # Kill once the delivery is recorded as sent. (Killed between the send and that
        # record, ioc sends it again after the restart with the same dedupKey: delivery is
        # at-least-once; tests/alerts/test_outbox.py covers that case.)
        await poll_until(ioc_sent, 20)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

        proc = await spawn()
        # The restarted ioc has loaded the alert state and the notification log, evaluated
        # and flushed the group (group_wait 0s, group_interval 1s) at least twice.
        await poll_until(ioc_firing, 20)
        await asyncio.sleep(2.5)  # two group intervals in which a re-page would happen
        assert consumer.statuses() == ["firing"], "paged again after the restart"

        await fault(f"http://127.0.0.1:{sim_port}", "STP", None)
        await consumer.until(lambda h: "resolved" in h.statuses(), limit=20)
        assert consumer.statuses() == ["firing", "resolved"]
    except BaseException:
        async with aiohttp.ClientSession() as session:
            for path in ("/api/v1/alerts", "/api/v1/alerts/history", "/api/v1/notifications"):
                async with session.get(f"http://127.0.0.1:{ioc_port}{path}") as resp:
                    print(path, await resp.text())
        log_file.flush()
        print((tmp_path / "ioc.log").read_text(errors="replace")[-5000:])  # shown on failure
        raise
    finally:
        log_file.close()
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await sim_runner.cleanup()
