"""How calm the demo's alerts are: config.yaml's rules over 15 minutes of its simulator.

Runs ``service.demo_timeline.run_demo`` (time passed in, no waiting) from several
start moments — a weekday morning, a night, a weekend, month ends — and prints, for each,
the alerts that fired, how many flapped (fired again after resolving) and the most active at
once; then how long an injected outage takes to fire TargetDown. The issue's target: at most
2 active and no flap over 15 minutes without faults.

    .venv/bin/python bench/calm_demo.py [config.yaml]
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.simulator.faults import FaultSpec
from service.config import load_config
from service.demo_timeline import Injected, run_demo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
STARTS = [datetime(2026, 12, d, h, m, tzinfo=TZ) for d, h, m in
          ((7, 9, 0), (8, 14, 30), (9, 2, 0), (12, 10, 0), (30, 16, 45), (31, 23, 50))]
SEEDS = (0, 1, 2)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "config.yaml"
    config = load_config(path, env={})
    print(f"load average before: {os.getloadavg()}")
    worst_active = worst_flaps = 0
    began = time.perf_counter()
    for seed in SEEDS:
        for moment in STARTS:
            run = run_demo(config, start=moment.timestamp(), seconds=900, seed=seed)
            worst_active = max(worst_active, run.max_active)
            worst_flaps = max(worst_flaps, run.flaps)
            fired = sorted({k[0] for k in run.fired})
            print(f"seed {seed} start {moment:%Y-%m-%d %H:%M}: max active {run.max_active}, "
                  f"flaps {run.flaps}, fired {fired}")
    down = run_demo(config, start=STARTS[0].timestamp(), seconds=600,
                    faults=[Injected(60.0, FaultSpec("STP", "down"))])
    after = down.first_fired.get(("TargetDown", "STP"))
    took = "never" if after is None else f"{after - 60.0:.0f} s"
    print(f"worst over {len(SEEDS) * len(STARTS)} runs: max active {worst_active}, "
          f"flaps {worst_flaps}; TargetDown after an outage: {took}")
    print(f"took {time.perf_counter() - began:.1f} s; load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
