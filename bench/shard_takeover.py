"""Takeover with ``--shard auto``: three ``ioc run`` members, one killed and restarted 5 times.

Three members on one PostgreSQL database poll the simulator's health pages. Each round kills
the member of slot 1 with SIGKILL, waits until the two others poll its share, waits a few
intervals, starts it again and waits until its share is back. Afterwards the stored
``ioc_target_up`` polls (every member polls a target on the same epoch-anchored grid, so one
slot is one interval) give, per round:

* takeover: from the kill to the first stored poll of each of the killed member's targets;
  the round's figure is the slowest target (p50 and max over the rounds are printed);
* double-polled slots: polls of one target beyond the first in one slot of its grid (two
  members polling it at once), over the whole run;
* lost slots: interval slots with no poll, split into those inside a change's window (from
  an interval + the 200 ms flush before the kill — polls the killed member had not stored
  yet — to kill + lease + interval, and from a restart to its end + lease + interval)
  and those outside any (the goal: 0).

    .venv/bin/python bench/shard_takeover.py [--rounds 5] [--targets 30] [--interval 5]
        [--lease 10]

PostgreSQL: ``IOC_BENCH_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test) is
only used to create the ``ioc_bench_shard_takeover`` database and drop it at the end. The
machine's load average is printed with the figures: on a shared machine they are
conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from harness import free_port, loadavg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.simulator import start_simulator, units
from ioc.scheduler import anchored_start
from tests.scale.auto_shard import (
    coverage,
    first_poll_after,
    polled_here,
    share,
    stored_polls,
    target_name,
    write_auto_config,
)
from tests.scale.leader_processes import (
    Instance,
    poll,
    start_instance,
    stop_instances,
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "ioc_bench_shard_takeover"
SLOTS = [0, 1, 2]


async def owns(session: aiohttp.ClientSession, inst: Instance, slot: int,
               expected: set[str]) -> bool:
    got, polled = await polled_here(session, inst.url)
    return got == slot and polled == expected


async def run(args: argparse.Namespace, db_url: str, work: Path) -> None:
    codes = [u.code for u in units()][:args.targets]
    targets = [target_name(c) for c in codes]
    sim_port = free_port()
    sim = await start_simulator("127.0.0.1", sim_port, token=None, latency_scale=0)
    config = write_auto_config(work, db_url, sim_port, codes=codes, interval=args.interval,
                               lease=args.lease)
    limit = 3 * (args.lease + args.interval) + 30
    instances: list[Instance] = []
    rounds: list[dict[str, float]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(3):
                instances.append(await start_instance(config, work / f"m{index}.log",
                                                      shard="auto"))
            for slot, inst in enumerate(instances):
                await poll(lambda s=slot, i=inst: owns(session, i, s,
                                                       share(targets, s, SLOTS)), limit)
            start = time.time()
            await asyncio.sleep(2 * args.interval)
            for number in range(args.rounds):
                moment: dict[str, float] = {"kill": time.time()}
                instances[1].proc.kill()
                await instances[1].proc.wait()
                for slot in (0, 2):
                    await poll(lambda s=slot: owns(session, instances[s], s,
                                                   share(targets, s, [0, 2])), limit)
                moment["covered"] = time.time()
                await asyncio.sleep(2 * args.interval)
                moment["restart"] = time.time()
                instances[1] = await start_instance(config, work / f"m1-{number}.log",
                                                    shard="auto")
                for slot, inst in enumerate(instances):
                    await poll(lambda s=slot, i=inst: owns(session, i, s,
                                                           share(targets, s, SLOTS)), limit)
                moment["back"] = time.time()
                await asyncio.sleep(2 * args.interval)
                rounds.append(moment)
                print(f"round {number + 1}: covered {moment['covered'] - moment['kill']:.2f} s "
                      f"after the kill (status API), share back "
                      f"{moment['back'] - moment['restart']:.2f} s after the restart began "
                      f"(load {loadavg()})", flush=True)
            end = time.time()
    finally:
        await stop_instances(instances)
        await sim.cleanup()

    polls = await stored_polls(db_url, start, end)
    bound = args.lease + args.interval
    # what the killed member polled but had not stored (flush 200 ms) died with it
    unstored = 0.2 + args.interval
    windows = [(r["kill"] - unstored, r["kill"] + bound) for r in rounds] + \
              [(r["restart"], r["back"] + bound) for r in rounds]
    victims = share(targets, 1, SLOTS)
    takeovers = []
    for r in rounds:
        firsts = [first_poll_after([ts for ts, _ in polls[t]], r["kill"]) for t in victims]
        takeovers.append(max((f - r["kill"]) if f is not None else float("inf")
                             for f in firsts))
    double = lost_all = 0
    outside: list[tuple[float, str]] = []
    for target, rows in polls.items():
        stamps = [ts for ts, _ in rows]
        phase = anchored_start(target, args.interval, 0.0)
        cov = coverage(stamps, args.interval, windows, phase)
        double += cov.double
        outside += [(at, target) for at in cov.lost_at]
        lost_all += coverage(stamps, args.interval, [], phase).lost
    lost_outside = len(outside)
    slots = len(targets) * (end - start) / args.interval
    print(f"\n{len(targets)} targets every {args.interval:g} s, lease {args.lease:g} s, "
          f"3 members, {len(rounds)} kill -9/restart rounds, {len(victims)} targets moved "
          f"each time; about {slots:.0f} slots in {end - start:.0f} s")
    print(f"takeover (kill -> first stored poll of the slowest moved target): "
          f"p50 {statistics.median(takeovers):.2f} s, max {max(takeovers):.2f} s "
          f"(bound: lease + interval = {bound:g} s); rounds: "
          + ", ".join(f"{t:.2f}" for t in takeovers))
    print(f"double-polled slots: {double}")
    print(f"lost slots: {lost_all - lost_outside} inside the change windows, "
          f"{lost_outside} outside them"
          + "".join(f"\n  {target} at +{at - start:.2f} s" for at, target in sorted(outside)))
    print(f"load average at the end: {loadavg()}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--targets", type=int, default=30)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--lease", type=float, default=10.0)
    args = parser.parse_args()
    admin_url = os.environ.get("IOC_BENCH_POSTGRES_URL", DEFAULT_PG)
    print(f"load average at the start: {loadavg()}", flush=True)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    db_url = make_url(admin_url).set(drivername="postgresql+asyncpg", database=DATABASE)
    try:
        with tempfile.TemporaryDirectory(prefix="ioc-shard-takeover-") as work:
            await run(args, db_url.render_as_string(hide_password=False), Path(work))
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        finally:
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
