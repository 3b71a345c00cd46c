"""PostgreSQL restarted under load: ioc keeps polling, buffers, and stores every sample once.

A real ioc (in process, so every published sample can be compared with what is stored) polls
the bundled simulator every 250 ms with its store on a private PostgreSQL cluster, which the
test stops (``pg_ctl stop -m fast``, and ``-m immediate``: a crash and recovery) for a dozen
polls per target and starts again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from ioc.model import canonical_labels
from ioc.pipeline import PollOutcome
from service.app import IocApp
from tests.conftest import PollWatcher, demo_config, free_port
from tests.scale.private_postgres import PrivatePostgres

pytestmark = [pytest.mark.slow]

INTERVAL = 0.25
DOWN_POLLS = 12  # polls of every target while the server is down
CODES = ["STTTT", "STP", "CAT", "VITHANH"]
LIMIT = 90.0  # generous: a loaded 2-core machine, backoff up to a few seconds

Key = tuple[str, str, int]  # metric, canonical labels, ts in ms: a stored sample's identity


def published(outcomes: Iterable[PollOutcome]) -> list[Key]:
    """Every sample the pipeline handed to the writer, in submission order."""
    keys = []
    for outcome in outcomes:
        for sample in outcome.samples:
            assert sample.value == sample.value, sample  # the healthy simulator gives no NaN
            keys.append((sample.metric, canonical_labels(tuple(sorted(sample.labels))),
                         round(sample.ts * 1000)))
    return keys


async def stored(db_url: str) -> list[Key]:
    """Every stored sample, read through the parent tables whatever their partitioning."""
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    try:
        rows = await conn.fetch(
            "SELECT s.metric, s.labels, x.ts FROM ioc_samples x "
            "JOIN ioc_series s ON s.id = x.series_id")
    finally:
        await conn.close()
    return [(row["metric"], row["labels"], row["ts"]) for row in rows]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (a database or metrics read; there is no event to await) until true."""
    try:
        async with asyncio.timeout(LIMIT):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"not within {LIMIT:g} s: {what}")


class Probe:
    """The running service as an operator sees it: its HTTP endpoints and its own metrics."""

    def __init__(self, app: IocApp, http: aiohttp.ClientSession) -> None:
        self.app = app
        self.http = http

    def metric(self, name: str) -> float:
        return self.app.registry.get_sample_value(name) or 0.0

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.app.url + path) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def polls(self) -> float:
        """Completed polls as /metrics reports them (every target here is an http check)."""
        status, text = await self.get("/metrics")
        assert status == 200
        for family in text_string_to_metric_families(text):
            if family.name == "ioc_collector_duration_seconds":
                return sum(s.value for s in family.samples if s.name.endswith("_count"))
        return 0.0


def polls_per_target(outcomes: Iterable[PollOutcome]) -> Counter[str]:
    return Counter(outcome.target for outcome in outcomes)


async def start_service(tmp_path: Path, db_url: str, **storage: Any
                        ) -> tuple[IocApp, PollWatcher]:
    config = demo_config(tmp_path, free_port(), codes=CODES, interval=f"{INTERVAL * 1000:g}ms",
                         extra={"storage": {"url": db_url, "flush_interval": "100ms",
                                            **storage}})
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    return app, watcher


async def outage(pg: PrivatePostgres, mode: str, probe: Probe, watcher: PollWatcher,
                 until: Callable[[], bool] = lambda: True) -> int:
    """Stop the server, check ioc keeps polling and says so, start it again.

    Returns how many outcomes had been published when the server came back.
    """
    targets = set(probe.app.runners)
    await asyncio.to_thread(pg.stop, mode)
    # Read /metrics first: every poll it counts is also among the outcomes seen so far.
    polls_at_stop = await probe.polls()
    down_at = len(watcher.outcomes)
    errors_at_stop = probe.metric("ioc_store_write_errors_total")

    def polled_while_down(seen: list[PollOutcome]) -> bool:
        per_target = polls_per_target(seen[down_at:])
        return all(per_target[t] >= DOWN_POLLS for t in targets) and until()

    await watcher.until(polled_while_down, limit=LIMIT)
    # The writer has tried and failed (it retries the same batch with backoff) ...
    await eventually(
        lambda: _true(probe.metric("ioc_store_write_errors_total") > errors_at_stop),
        "the writer notices the database is away")
    # ... while polling went on, the samples wait in memory, and the service says what is wrong.
    assert await probe.polls() >= polls_at_stop + DOWN_POLLS * len(targets)
    assert probe.metric("ioc_store_write_queue_samples") > 0
    assert await probe.get("/healthz") == (200, {"status": "ok"})
    status, ready = await probe.get("/readyz")
    assert status == 503
    assert ready["checks"]["store"].startswith("unreachable"), ready
    assert ready["checks"]["scheduler"] == "ok"

    up_at = len(watcher.outcomes)
    await asyncio.to_thread(pg.start)
    return up_at


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_postgresql_restart_under_load_loses_and_repeats_no_sample(
        tmp_path: Path, private_pg: PrivatePostgres, mode: str) -> None:
    db_url = await private_pg.create_database("ioc")
    app, watcher = await start_service(tmp_path, db_url)
    try:
        async with aiohttp.ClientSession() as http:
            probe = Probe(app, http)
            targets = set(app.runners)
            await watcher.until(lambda seen: all(polls_per_target(seen)[t] >= 3
                                                 for t in targets), limit=LIMIT)
            first = set(published(watcher.outcomes[:len(targets)]))

            async def first_polls_stored() -> bool:
                return first <= set(await stored(db_url))

            await eventually(first_polls_stored, "the first polls are stored")

            up_at = await outage(private_pg, mode, probe, watcher)

            # Caught up: everything collected while the server was down is in the database.
            wanted = set(published(watcher.outcomes[:up_at]))

            async def caught_up() -> bool:
                return wanted <= set(await stored(db_url))

            await eventually(caught_up, "the buffered samples are written after the restart")
            assert (await probe.get("/readyz"))[0] == 200
    finally:
        await app.stop(grace=1.0)

    sent = published(watcher.outcomes)
    kept = await stored(db_url)
    assert len(set(sent)) == len(sent)
    assert len(set(kept)) == len(kept)  # nothing stored twice (the primary key's promise)
    assert set(kept) == set(sent)  # and nothing missing: every poll of every target
    stored_polls = Counter(labels for metric, labels, _ in kept if metric == "ioc_target_up")
    assert sorted(stored_polls.values()) == sorted(polls_per_target(watcher.outcomes).values())
    assert app.registry.get_sample_value("ioc_store_samples_written_total") == len(sent)
    assert app.registry.get_sample_value("ioc_store_samples_dropped_total") == 0
    assert (app.registry.get_sample_value("ioc_store_write_errors_total") or 0) >= 1


async def test_an_outage_longer_than_the_buffer_drops_the_oldest_and_keeps_the_rest(
        tmp_path: Path, private_pg: PrivatePostgres) -> None:
    db_url = await private_pg.create_database("ioc")
    # The smallest queue the config allows; four targets fill it in a few seconds. The batch
    # being written counts against the bound, so small batches (at most 4 x 50 samples per
    # transaction) leave room for new polls while the backlog is written after the restart;
    # with batches near the bound, catching up would overflow it a second time.
    app, watcher = await start_service(tmp_path, db_url, queue_limit=1000, batch_size=50)
    try:
        async with aiohttp.ClientSession() as http:
            probe = Probe(app, http)
            targets = set(app.runners)
            await watcher.until(lambda seen: targets <= {o.target for o in seen}, limit=LIMIT)
            first = set(published(watcher.outcomes[:len(targets)]))

            async def first_polls_stored() -> bool:
                return first <= set(await stored(db_url))

            await eventually(first_polls_stored, "the first polls are stored")
            await outage(private_pg, "fast", probe, watcher,
                         until=lambda: probe.metric("ioc_store_samples_dropped_total") >= 200)
            # Until its backoff ends the writer still drops the oldest of what waits, so no
            # particular sample is sure to survive: wait for writing to resume and catch up.
            written_at_restart = probe.metric("ioc_store_samples_written_total")
            await eventually(
                lambda: _true(probe.metric("ioc_store_samples_written_total")
                              > written_at_restart
                              and probe.metric("ioc_store_write_queue_samples") < 500),
                "the writer catches up after the restart")
    finally:
        await app.stop(grace=1.0)

    sent = published(watcher.outcomes)
    kept = set(await stored(db_url))
    dropped = app.registry.get_sample_value("ioc_store_samples_dropped_total")
    missing = [i for i, key in enumerate(sent) if key not in kept]
    assert dropped is not None and dropped >= 200
    assert len(missing) == dropped  # every sample is either stored or counted as dropped
    # One run of consecutive samples went: the oldest waiting ones (the batch being retried
    # stays), while everything collected later, through to the end, is stored.
    assert missing == list(range(missing[0], missing[-1] + 1))
    assert kept == set(sent) - {sent[i] for i in missing}
    assert app.registry.get_sample_value("ioc_store_samples_written_total") == len(kept)
