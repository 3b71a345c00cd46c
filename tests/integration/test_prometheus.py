"""Debian's real Prometheus scrapes a running ioc (simulator, portal statistics, TLS and DNS
checks, a pushed security event, one injected fault), with ioc's rules loaded, and:

- ``up{job="ioc"}`` is 1 through the bearer token of ``metrics:`` (the scrape is authorised);
- ``ioc_target_up``, ``ioc_dossier_ontime_ratio`` and ``ioc_probe_duration_seconds`` have the
  series the config implies;
- every PromQL expression of the Grafana dashboard parses and returns data, and every metric
  it names exists, so the dashboard cannot rot;
- the recording rules of deploy/prometheus/ioc-rules.yml evaluate to data on real metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from service.app import IocApp
from tests.collectors.test_dns import dns_server  # noqa: F401  (fixture)
from tests.conftest import SIM_TOKEN, PollWatcher, free_port, require_binary
from tests.integration.conftest import (
    METRICS_TOKEN,
    NEEDS_A_FAULT,
    observed_config,
    start_observed,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ioc-overview.json"
RULES = ROOT / "deploy" / "prometheus" / "ioc-rules.yml"

# What Grafana puts in place of its variables when it sends a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m",
                     "$department": ".*", "${department}": ".*"}
PROMQL_NAME = re.compile(r"\b(ioc_[a-z0-9_]+|up)\b(?!\s*\()")
FAULTY_UNIT = "STP"


@dataclass
class Prometheus:
    url: str
    session: aiohttp.ClientSession

    async def api(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), (expr, data)
        return data["result"] if data["resultType"] == "vector" else [{"value": data["result"]}]

    async def until(self, expr: str, what: str, limit: float = 30.0) -> list[dict[str, Any]]:
        """Poll a query until it returns data; an external process gives no event to await."""
        async with asyncio.timeout(limit):
            while True:
                result = await self.query(expr)
                if result:
                    return result
                await asyncio.sleep(0.25)
        raise AssertionError(what)  # pragma: no cover - timeout raises first


def grafana_expr(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


@pytest.fixture
async def observed(tmp_path: Path, dns_server: int,  # noqa: F811
                   tls_port: tuple[int, Path]) -> AsyncIterator[IocApp]:
    """ioc with every family populated, /metrics behind a token, and one unit failing."""
    config = observed_config(tmp_path, dns_port=dns_server, tls=tls_port, metrics_auth=True)
    app, watcher = await start_observed(config)
    try:
        await inject_fault(app, watcher)
        yield app
    finally:
        await app.stop(grace=1.0)


async def inject_fault(app: IocApp, watcher: PollWatcher) -> None:
    sim = f"http://{app.config.simulator.listen}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as s, \
            s.post(f"{sim}/_sim/faults", json={"unit": FAULTY_UNIT, "fault": "error",
                                                "status": 503}) as resp:
        assert resp.status == 200, await resp.text()
    mark = len(watcher.outcomes)
    target = f"{FAULTY_UNIT.lower()}-health"
    await watcher.until(lambda seen: any(o.target == target and not o.result.up
                                         for o in seen[mark:]))


@pytest.fixture
async def prometheus(tmp_path: Path, observed: IocApp) -> AsyncIterator[Prometheus]:
    binary = require_binary("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": "ioc",
            "authorization": {"credentials": METRICS_TOKEN},
            "static_configs": [{"targets": [observed.url.removeprefix("http://")]}],
        }],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config_file}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                while True:
                    assert proc.returncode is None, "prometheus exited at start"
                    try:
                        async with session.get(f"{url}/-/ready") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.2)
            yield Prometheus(url, session)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_prometheus_scrapes_ioc_and_runs_the_dashboard(prometheus: Prometheus,
                                                             observed: IocApp) -> None:
    prom = prometheus
    # two scrapes, both successful (a refused token would make up 0)
    await prom.until('count_over_time(up{job="ioc"}[1m]) >= 2', "two scrapes of ioc")
    up = await prom.query('up{job="ioc"}')
    assert [r["value"][1] for r in up] == ["1"], up

    targets = set(observed.runners)
    series = await prom.query('ioc_target_up{job="ioc"}')
    assert {r["metric"]["target"] for r in series} == targets
    down = {r["metric"]["target"] for r in series if r["value"][1] == "0"}
    assert down == {f"{FAULTY_UNIT.lower()}-health"}
    durations = await prom.query('ioc_probe_duration_seconds{job="ioc"}')
    assert {r["metric"]["target"] for r in durations} == targets
    assert all(r["metric"]["department"] and r["metric"]["kind"] for r in durations)

    ontime = await prom.query('ioc_dossier_ontime_ratio{job="ioc"}')
    # Prometheus drops empty labels: the province's series has no department label
    departments = {r["metric"].get("department", "") for r in ontime}
    assert "" in departments and len(departments) > 5, departments  # the province and units
    assert all(0 <= float(r["value"][1]) <= 1 for r in ontime)
    assert {r["metric"]["target"] for r in ontime} == {"dvc-dossiers"}

    # every name a dashboard or rule expression uses is a metric Prometheus has seen
    names = set(await prom.api("label/__name__/values"))
    problems: list[str] = []
    for title, expr in dashboard_targets():
        query = grafana_expr(expr)
        for name in PROMQL_NAME.findall(query):
            # a family that only appears with a fault must not leave its panel empty
            if name in NEEDS_A_FAULT and "or vector(0)" in query:
                continue
            if name not in names:
                problems.append(f"{title}: {name} is not a metric ioc exports")
        try:
            result = await prom.query(query)
        except AssertionError as exc:
            problems.append(f"{title}: {query} failed: {exc}")
            continue
        if not result:
            problems.append(f"{title}: {query} returned no data")
    assert not problems, "\n".join(problems)

    departments_var = await prom.api("label/department/values", **{"match[]": "ioc_target_up"})
    assert FAULTY_UNIT in departments_var
    assert not await recording_rules_without_data(prom)


async def recording_rules_without_data(prom: Prometheus) -> list[str]:
    """Names of the recording rules that evaluated to nothing on ioc's real metrics."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    (group,) = [g for g in rules["groups"] if g["name"] == "ioc-recording"]
    empty = []
    for rule in group["rules"]:
        try:  # rates need two scrapes inside one evaluation: give the rules a few rounds
            await prom.until(rule["record"], rule["record"], limit=15)
        except TimeoutError:
            empty.append(rule["record"])
    return empty
