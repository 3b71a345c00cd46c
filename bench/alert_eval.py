"""One evaluation cycle of 10,000 alert rules over 5,000 series (goal: < 100 ms).

2,500 targets report ``ioc_target_up`` and ``ioc_probe_duration_seconds`` every 30 s (5,000
series, 10-20 points each in the window); each target has four rules (down, slow on average,
slow at peak, flapping by count), 5 % of targets are down and 5 % slow, so a few hundred alerts
pend and fire. Each cycle adds the next poll's samples and evaluates at ``now`` with the
engine's own Evaluator (index, aggregation, state machine, annotations), as the service does.

    .venv/bin/python bench/alert_eval.py [--targets 2500] [--cycles 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.engine import Evaluator
from alerts.rules import RuleConfig, compile_rules
from ioc.cache import SeriesCache
from ioc.model import Sample, make_labels

DEPARTMENTS = ["STP", "STTTT", "SNV", "STC", "SCT", "SYT", "SGDDT", "CAT", "VITHANH", "NGABAY"]


def rules_for(target: str) -> list[dict[str, object]]:
    match = [f'target="{target}"']
    summary = {"summary": "{{ labels.target }} ({{ department }}): {{ value }}"}
    return [
        {"name": "TargetDown", "metric": "ioc_target_up", "matchers": match, "op": "==",
         "threshold": 0, "for": "1m", "severity": "critical", "annotations": summary},
        {"name": "TargetSlow", "metric": "ioc_probe_duration_seconds", "matchers": match,
         "aggregate": "avg", "window": "5m", "op": ">", "threshold": 3, "for": "2m",
         "annotations": summary},
        {"name": "TargetPeak", "metric": "ioc_probe_duration_seconds", "matchers": match,
         "aggregate": "max", "window": "10m", "op": ">", "threshold": 8, "severity": "info",
         "annotations": summary},
        {"name": "TargetFlapping", "metric": "ioc_target_up", "matchers": match,
         "aggregate": "min", "window": "10m", "op": "<", "threshold": 1, "labels": {"x": "1"},
         "annotations": summary},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=2500)
    parser.add_argument("--cycles", type=int, default=40)
    args = parser.parse_args()

    targets = [(f"t{i:05d}", DEPARTMENTS[i % len(DEPARTMENTS)]) for i in range(args.targets)]
    configs = [(RuleConfig.model_validate(r), "bench") for t, _ in targets for r in rules_for(t)]
    evaluator = Evaluator(compile_rules(configs, {d: f"Sở {d}" for d in DEPARTMENTS}))
    cache = SeriesCache(3600, 720)
    labels = {t: make_labels(target=t, department=d, kind="http") for t, d in targets}

    def poll(ts: float) -> None:
        samples = []
        for i, (target, _) in enumerate(targets):
            down = i % 20 == 0
            slow = i % 20 == 1
            samples.append(Sample("ioc_target_up", labels[target], 0.0 if down else 1.0, ts))
            samples.append(Sample("ioc_probe_duration_seconds", labels[target],
                                  9.0 if slow else 0.05 + (i % 7) / 100, ts))
        cache.add(samples)

    now = 0.0
    for _ in range(20):  # ten minutes of history before the first measured cycle
        poll(now)
        now += 30
    timings: list[float] = []
    cpu_timings: list[float] = []
    cycle = None
    for n in range(args.cycles):
        if n % 2 == 0:
            poll(now)
        started, cpu = time.perf_counter(), time.process_time()
        cycle = evaluator.evaluate([cache], now, data_since=0.0)
        timings.append((time.perf_counter() - started) * 1000)
        cpu_timings.append((time.process_time() - cpu) * 1000)
        now += 15
    assert cycle is not None
    timings.sort()
    p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
    print(f"rules: {len(evaluator.rules)}  series: {len(cache)}  cycles: {len(timings)}")
    print(f"firing: {len(cycle.firing())}  pending: {cycle.pending}")
    print(f"cycle ms: median {statistics.median(timings):.1f}  p95 {p95:.1f}  "
          f"max {timings[-1]:.1f}  (goal < 100)")
    print(f"cycle CPU ms: median {statistics.median(cpu_timings):.1f}  "
          f"min {min(cpu_timings):.1f}  (wall time above includes waiting for a shared CPU)")


if __name__ == "__main__":
    main()
