"""A defaced page found by the uptime probe reaches the event store, the API and the metric."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from service.app import IocApp
from tests.conftest import SIM_TOKEN, PollWatcher, free_port
from tests.events.conftest import events_config
from tests.events.test_syslog import Arrivals


async def test_defacement_event_goes_through_the_event_path(tmp_path: Path) -> None:
    port = free_port()
    sim = f"http://127.0.0.1:{port}"
    app = IocApp(events_config(tmp_path, sim_port=port, collectors=[{
        "type": "http", "name": "stttt-home", "department": "STTTT", "url": f"{sim}/STTTT/"}]))
    watcher = PollWatcher()
    arrivals = Arrivals()
    app.pipeline.add_hook(watcher)
    app.events.subscribe(arrivals)
    await app.start()
    try:
        await watcher.until(lambda seen: any(o.result.up for o in seen))
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as session, \
                session.post(f"{sim}/_sim/faults",
                             json={"unit": "STTTT", "fault": "content"}) as resp:
            assert resp.status == 200
        await arrivals.until(1)
        mark = len(watcher.outcomes)
        await watcher.until(lambda seen: len(seen) >= mark + 2)  # still defaced, polled again
        await app.events.flush()
        async with aiohttp.ClientSession() as session, \
                session.get(app.url + "/api/v1/events?category=defacement") as resp:
            body = await resp.json()
    finally:
        await app.stop(grace=1.0)
    (event,) = body["events"]  # one defacement, one event, however often it is polled
    assert event["severity"] == "critical" and event["department"] == "STTTT"
    assert event["source"] == "ioc-probe"
    assert app.registry.get_sample_value("ioc_security_events_total", {
        "department": "STTTT", "source": "ioc-probe", "severity": "critical",
        "category": "defacement"}) == 1
