"""The province-indices panel of a running ioc shows the demo config's `indices:` (fed into
the cache on every instance), with the rank changes; /metrics keeps them as configured."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml

from ioc.cache import SeriesCache
from ioc.indices import REFRESH_SECONDS, IndexConfig, IndexFeed
from ioc.model import CollectResult
from ioc.pipeline import PollOutcome
from service.app import IocApp
from tests.conftest import PollWatcher, demo_config, free_port

ROOT = Path(__file__).resolve().parents[2]


def demo_indices() -> list[dict[str, object]]:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return list(raw["indices"])


async def fetch(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_the_wall_shows_the_configured_indices(tmp_path: Path) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP"],
                         extra={"indices": demo_indices()})
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        page = await fetch(app.url + "/")
        english = await fetch(app.url + "/?lang=en")
        metrics = await fetch(app.url + "/metrics")
    finally:
        await app.stop(grace=1.0)
    for index, rank, change in (("PAR INDEX", 27, "▲ tăng 1 bậc"), ("PCI", 38, "▲ tăng 1 bậc"),
                                ("SIPAS", 50, "▲ tăng 2 bậc"), ("PAPI", 33, "Năm 2021")):
        item = page[page.index(f">{index}<"):][:300]
        assert f"Hạng {rank}<" in item and change in item, item
    assert "Rank 27<" in english and "▲ up 2" in english
    assert 'ioc_province_index_rank{index="SIPAS",year="2021"} 50.0' in metrics
    assert 'year="2020"' not in metrics      # the year before stays the wall's
    assert metrics.count("# TYPE ioc_province_index_rank gauge") == 1


def outcome(ts: float) -> PollOutcome:
    return PollOutcome("stp-health", "http", ts, 0.01, CollectResult(up=True), ())


def test_the_feed_restamps_the_values_from_the_polls_time() -> None:
    cache = SeriesCache(60.0, 10)
    entries = [IndexConfig(index="PCI", year=2021, rank=38, change=-3),
               IndexConfig(index="PAPI", year=2021, rank=33, change=1),
               IndexConfig(index="PAPI", year=2020, rank=30)]
    feed = IndexFeed(cache, entries, 1000.0)
    ranks = {(dict(k)["index"], dict(k)["year"]): w.latest
             for k, w in cache.series("ioc_province_index_rank")}
    # PCI lost 3 places: it was 35th; PAPI's 2020 is listed, so it is not derived
    assert ranks == {("PCI", "2021"): (1000.0, 38.0), ("PCI", "2020"): (1000.0, 35.0),
                     ("PAPI", "2021"): (1000.0, 33.0), ("PAPI", "2020"): (1000.0, 30.0)}
    feed(outcome(1000.0 + REFRESH_SECONDS - 1))
    assert {w.latest[0] for _, w in cache.series("ioc_province_index_rank")} == {1000.0}
    feed(outcome(1000.0 + REFRESH_SECONDS))
    assert {w.latest[0] for _, w in cache.series("ioc_province_index_rank")} == {
        1000.0 + REFRESH_SECONDS}


def test_no_indices_no_series() -> None:
    cache = SeriesCache(60.0, 10)
    IndexFeed(cache, [], 1000.0)(outcome(5000.0))
    assert list(cache.metrics()) == []
