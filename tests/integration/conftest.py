"""A running ioc that exports every metric family with data: the simulator's units and
portal, a TCP check over TLS, a DNS check, pushed security events, indices and syslog.

Used by the real-Prometheus test and the metrics review, so both look at what a production
install would expose rather than at the foundation's few families.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from service.app import IocApp
from service.config import Config
from tests.collectors.test_dns import dns_server  # noqa: F401  (fixture)
from tests.conftest import PollWatcher, demo_config, free_port

# Families that need an event these tests do not cause (a rule raising, a notification);
# registered, documented, and exported once they have a sample.
NEEDS_A_FAULT = frozenset({"ioc_alert_rule_evaluation_failures_total", "ioc_alerts",
                           "ioc_notifications_total", "ioc_probe_failures_total",
                           "ioc_oncall_escalation_steps_total"})  # series per policy

INGEST_TOKEN = "ingest-token-for-metrics-0001"
METRICS_TOKEN = "metrics-scrape-token-0001"
UNITS = ["STTTT", "STP", "CAT", "VITHANH", "DVC", "HTTT-TTHC", "APP"]


@pytest.fixture
async def tls_port(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A TLS server certified by a throwaway CA; yields its port and the CA file."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ioc\r\n")
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, ca_file
    finally:
        server.close()
        await server.wait_closed()


def observed_config(tmp_path: Path, *, dns_port: int, tls: tuple[int, Path],
                    metrics_auth: bool = False) -> Config:
    sim = free_port()
    sim_url = f"http://127.0.0.1:{sim}"
    collectors: list[dict[str, Any]] = [
        {"type": "http", "name": f"{code.lower()}-health", "department": code,
         "url": f"{sim_url}/{code}/health"} for code in UNITS]
    collectors += [
        # /DVC redirects to /DVC/: the final URL label has something to say
        {"type": "http", "name": "dvc-portal", "department": "DVC", "url": f"{sim_url}/DVC"},
        {"type": "backlog", "name": "dvc-dossiers", "department": "HTTT-TTHC",
         "url": f"{sim_url}/_portal/v1/dossiers"},
        {"type": "feedback", "name": "app-feedback", "department": "APP",
         "url": f"{sim_url}/_portal/v1/feedback"},
        {"type": "tcp", "name": "mail-tls", "department": "STTTT", "host": "127.0.0.1",
         "port": tls[0], "tls": True, "ca_file": str(tls[1]), "server_name": "localhost"},
        {"type": "dns", "name": "dvc-dns", "department": "DVC",
         "server": f"127.0.0.1:{dns_port}", "query": "dichvucong.haugiang.gov.vn",
         "record_type": "A"},
    ]
    extra: dict[str, Any] = {
        "collectors": collectors,
        "collection": {"interval": "500ms", "timeout": "400ms"},
        "auth": {"tokens": [{"name": "siem-bridge", "token": INGEST_TOKEN,
                             "roles": ["ingest"]}]},
        "indices": [{"index": "PAR INDEX", "year": 2021, "rank": 27, "of": 63, "change": 1,
                     "score": 84.5}],
        "events": {"syslog": {"enabled": True, "udp": f"127.0.0.1:{free_port()}",
                              "tcp": f"127.0.0.1:{free_port()}"}},
    }
    if metrics_auth:
        extra["metrics"] = {"bearer_token": METRICS_TOKEN}
    return demo_config(tmp_path, sim, codes=UNITS, extra=extra)


async def push_event(app: IocApp) -> None:
    event = {"source": "stp-waf", "id": "evt-1", "severity": "critical",
             "category": "intrusion", "title": "Tấn công SQL injection bị chặn",
             "department": "STP", "occurred_at": time.time() - 5}
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    async with aiohttp.ClientSession() as session, session.post(
            app.url + "/api/v1/events", json=[event], headers=headers) as resp:
        assert resp.status == 202, await resp.text()


async def start_observed(config: Config) -> tuple[IocApp, PollWatcher]:
    """Start ioc, wait until every target answered once and one security event is stored."""
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    stored = asyncio.Event()
    app.events.subscribe(lambda events: stored.set())
    await app.start()
    try:
        targets = set(app.runners)
        await watcher.until(lambda seen: targets <= {o.target for o in seen if o.result.up},
                            limit=20)
        await push_event(app)
        async with asyncio.timeout(10):
            await stored.wait()
    except BaseException:
        await app.stop(grace=1.0)
        raise
    return app, watcher


@pytest.fixture
async def observed_app(tmp_path: Path, dns_server: int,  # noqa: F811
                       tls_port: tuple[int, Path]) -> AsyncIterator[IocApp]:
    app, _ = await start_observed(observed_config(tmp_path, dns_port=dns_server, tls=tls_port))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)
