"""Every metric family of a fully configured, running ioc: documented with the labels it
really carries, bounded labels, and `promtool check metrics` has nothing to say."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from collectors.http import url_label
from service.app import IocApp
from service.metrics_doc import app_families
from tests.conftest import require_binary
from tests.integration.conftest import NEEDS_A_FAULT


async def scrape(app: IocApp) -> str:
    async with aiohttp.ClientSession() as session, session.get(app.url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def exposed_families(text: str) -> dict[str, tuple[str, set[str]]]:
    """name as documented (counters with _total) → (type, label names)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        if not family.samples:
            continue
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le", "quantile"}
        out[name] = (family.type, labels)
    return out


async def test_every_exported_family_is_documented_with_its_labels(observed_app) -> None:
    documented = {f.name: f for f in app_families()}
    exposed = exposed_families(await scrape(observed_app))
    problems = []
    for name, (kind, labels) in sorted(exposed.items()):
        doc = documented.get(name)
        if doc is None:
            problems.append(f"{name} is exported but not in docs/metrics.md")
        elif doc.type != kind or set(doc.labels) != labels:
            problems.append(f"{name}: exported {kind} {sorted(labels)}, documented "
                            f"{doc.type} {sorted(doc.labels)}")
    # An unlabelled family always has its one sample; a labelled one appears with its first
    # child, which may need a fault or a config section this app does not have.
    missing = {name for name in set(documented) - set(exposed) - NEEDS_A_FAULT
               if not documented[name].labels}
    assert not missing, f"documented families without a sample here: {sorted(missing)}"
    assert not problems, "\n".join(problems)


async def test_full_exposition_passes_promtool(observed_app) -> None:
    text = await scrape(observed_app)
    promtool = require_binary("promtool")
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), timeout=30)
    assert proc.returncode == 0 and out.strip() == b"" and err.strip() == b"", out + err


async def test_label_values_stay_bounded(observed_app) -> None:
    """No label value looks like an error text, a query string or a time."""
    for family in text_string_to_metric_families(await scrape(observed_app)):
        for sample in family.samples:
            for key, value in sample.labels.items():
                assert "?" not in value and "#" not in value, (sample.name, key, value)
                assert len(value) <= 200, (sample.name, key)
                assert not value.replace(".", "").isdigit() or key in {"le", "year",
                                                                       "version", "quantile"}, \
                    (sample.name, key, value)


def test_url_label_drops_query_fragment_and_credentials() -> None:
    assert url_label("https://u:p@dvc.haugiang.gov.vn:8443/login?session=abc&t=1#x") == \
        "https://dvc.haugiang.gov.vn:8443/login"
    assert url_label("http://[::1]/a") == "http://[::1]/a"
    assert len(url_label("http://h/" + "a" * 1000)) == 200
