"""The sample cache keeps windows for what the loaded rules read, and follows them on reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerts.evaluate import SeriesIndex, evaluate_rule
from alerts.rules import RuleConfig, compile_rule, read_ranges
from ioc import clock
from ioc.cache import HISTORY_MARGIN, LatestPoint
from service.app import IocApp
from service.config import load_config
from tests.conftest import PollWatcher, demo_raw, free_port, write_yaml

STATUS = "ioc_probe_http_status_code"
STATUS_RULE = {"name": "StatusSeen", "metric": STATUS, "aggregate": "count", "window": "10m",
               "op": ">=", "threshold": 1, "severity": "info"}


def raw_config(tmp_path: Path, sim_port: int, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return demo_raw(tmp_path, sim_port, codes=["STP"], extra={"alerts": {"rules": rules}})


def test_read_ranges_takes_each_metrics_longest_window_or_absent_duration() -> None:
    rules = [compile_rule(RuleConfig.model_validate(r)) for r in (
        {"name": "A", "metric": "up", "aggregate": "last", "window": "5m", "op": "==",
         "threshold": 0},
        {"name": "B", "metric": "up", "absent": "10m"},
        {"name": "C", "metric": "lat", "aggregate": "avg", "window": "2m", "op": ">",
         "threshold": 1},
        {"name": "D", "metric": "lat", "absent": "1m"},
    )]
    assert read_ranges(rules) == {"up": 600.0, "lat": 120.0}


async def test_a_rule_added_at_reload_gets_a_window_from_then_on(tmp_path: Path) -> None:
    sim_port = free_port()
    path = tmp_path / "config.yaml"
    write_yaml(path, raw_config(tmp_path, sim_port, []))
    app = IocApp(load_config(path, env={}))
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 3)
        # The default rules read ioc_target_up; no rule reads the status code: latest only.
        assert len(app.cache.window("ioc_target_up", _labels(app))) >= 3
        (_, status), = app.cache.series(STATUS)
        assert isinstance(status, LatestPoint)
        latest = status.latest

        write_yaml(path, raw_config(tmp_path, sim_port, [STATUS_RULE]))
        result = await app.reload()
        assert result.ok and result.rules["added"] == 1
        history = app.cache.history()
        assert history is not None and history[STATUS] == 600 + HISTORY_MARGIN
        # The window starts from the latest point (the earlier ones were never kept) ...
        assert app.cache.window(STATUS, _labels(app)) == [latest]
        rule = next(r for r in app.alerts.rules if r.name == "StatusSeen")
        now = clock.now()
        (found,) = evaluate_rule(rule, SeriesIndex(*app.alerts.caches), now, now)
        assert found.value == 1.0
        # ... and fills from then on.
        mark = len(watcher.outcomes)
        await watcher.until(lambda seen: len(seen) >= mark + 2)
        assert len(app.cache.window(STATUS, _labels(app))) >= 3
        now = clock.now()
        (found,) = evaluate_rule(rule, SeriesIndex(*app.alerts.caches), now, now)
        assert found.value is not None and found.value >= 3

        # The rule removed again: back to the latest point alone.
        write_yaml(path, raw_config(tmp_path, sim_port, []))
        assert (await app.reload()).ok
        (_, status), = app.cache.series(STATUS)
        assert isinstance(status, LatestPoint)
        assert STATUS not in (app.cache.history() or {})
    finally:
        await app.stop(grace=1.0)


def _labels(app: IocApp) -> Any:
    (labels, _), = app.cache.series("ioc_target_up")
    return labels
