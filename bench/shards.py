"""Throughput with 1, 2 and 3 shards: ``ioc run --shard i/N`` processes on one PostgreSQL.

The bundled simulator (``ioc simulate``, its own process, answering at once) serves N http
targets; for each shard count a fresh database is created and N-way sharded ``ioc run``
processes poll every target at an interval short enough that one process cannot keep up. Each
run gets a warm-up, then a measured window:

* probes/s: polls completed in the window, from every shard's
  ``ioc_collector_duration_seconds_count``; beside it the polls *started* in the window, from
  the ``ioc_target_up`` samples stored in PostgreSQL (stamped with the poll's start, read after
  the shards stopped and flushed). The two differ by the polls in flight at the window's
  edges, which is a lot when a saturated process takes seconds per poll;
* lost: samples a writer dropped plus polls counted by the last scrape but not stored (0 means
  every poll of the run reached the database once);
* scheduler lag p50/p99: every shard's ``ioc_scheduler_lag_seconds`` histogram over the window,
  buckets summed across shards, interpolated within a bucket like ``histogram_quantile``;
* CPU per probe: utime+stime of the ioc processes from /proc over the window, divided by
  their probes; beside it, in % of one core, the simulator's CPU, that of the PostgreSQL
  backends serving the bench database, and everything else the machine did meanwhile (from
  /proc/stat: on a shared machine that is CPU the shards did not get).

On a machine with fewer cores than processes the shards, the simulator and PostgreSQL compete
for CPU: the figures then say how far sharding goes on that machine, not how it scales on
machines of their own.

    .venv/bin/python bench/shards.py [--targets 1000] [--interval 1] [--duration 30]
        [--warmup 10] [--shards 1,2,3]

PostgreSQL: ``IOC_BENCH_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test) is
only used to create the ``ioc_bench_shards`` database before each run and drop it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import yaml
from harness import CLK_TCK, cpu_seconds, free_port, get, loadavg, quantile, wait_http
from probe_vs_blackbox import PORTS, below, need, nginx_conf, target_urls
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from collectors.simulator import units

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "ioc_bench_shards"


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def server_cpu_seconds(pid: int) -> float:
    """CPU of the target server and its child processes (nginx's worker)."""
    total_ = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            with contextlib.suppress(OSError):  # a worker that just exited
                total_ += cpu_seconds(int(stat.parent.name))
    return total_


def postgres_cpu_seconds() -> float:
    """utime+stime of the PostgreSQL backends serving the bench database (by process title).

    The server's shared processes (WAL writer, checkpointer) are left out: on a shared
    machine they also work for everyone else's databases.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
                if title.startswith("postgres: ") and f" {DATABASE} " in title:
                    total += cpu_seconds(int(entry.name))
    return total


@contextlib.contextmanager
def started(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is always stopped (TERM, then KILL) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop([proc])


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM all at once (each flushes its samples), then wait; KILL what hangs."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def favour(sim: subprocess.Popen[bytes]) -> None:
    """Run the simulator ahead of the shards (nice -10) where allowed.

    It stands in for department systems on machines of their own. Left at equal priority on a
    loaded machine it gets a smaller CPU share with every shard added, and its late accept()
    shows up as connect timeouts that have nothing to do with ioc.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, sim.pid, -10)
    except PermissionError:
        print("note: not allowed to raise the simulator's priority (needs root); with many "
              "shards on few cores it may answer late", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# /metrics


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by sample name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(get(base + "/metrics", timeout=30).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in metrics.items() if sample == name)


def lag_buckets(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
                ) -> dict[float, float]:
    """Cumulative ``ioc_scheduler_lag_seconds`` bucket counts by upper bound."""
    return {float(dict(labels)["le"]): value for (sample, labels), value in metrics.items()
            if sample == "ioc_scheduler_lag_seconds_bucket"}


# --------------------------------------------------------------------------------------------
# PostgreSQL


def plain_url(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def recreate_database(server: str) -> None:
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


async def drop_database(server: str) -> None:
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    finally:
        await conn.close()


async def stored_polls(server: str, start: float, end: float) -> tuple[int, int]:
    """(ioc_target_up samples, distinct targets) stored with a timestamp in [start, end)."""
    conn = await asyncpg.connect(plain_url(server, DATABASE))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS samples, count(DISTINCT x.series_id) AS targets "
            "FROM ioc_samples x JOIN ioc_series s ON s.id = x.series_id "
            "WHERE s.metric = 'ioc_target_up' AND x.ts >= $1 AND x.ts < $2",
            round(start * 1000), round(end * 1000))
    finally:
        await conn.close()
    assert row is not None
    return int(row["samples"]), int(row["targets"])


# --------------------------------------------------------------------------------------------
# one run


@dataclass
class Result:
    shards: int
    window: float
    probes: float
    stored: int
    stored_targets: int
    lost: float
    failures: float
    expected: float
    lag_p50: float
    lag_p99: float
    ioc_cpu: float
    sim_cpu: float
    pg_cpu: float
    machine_busy: float
    load: str

    def row(self, targets: int) -> str:
        per_probe = self.ioc_cpu / self.probes * 1000 if self.probes else float("nan")
        return (f"| {self.shards} | {self.probes / self.window:,.0f} "
                f"({self.expected / self.window:,.0f}) | "
                f"{(self.probes - self.failures) / self.window:,.0f} | "
                f"{self.stored / self.window:,.0f} "
                f"({self.stored_targets:,}/{targets:,} targets) | {self.lost:.0f} | "
                f"{self.failures / max(self.probes, 1) * 100:.1f} % | "
                f"{self.lag_p50 * 1000:,.0f} ms | {self.lag_p99 * 1000:,.0f} ms | "
                f"{per_probe:.2f} ms | {self.ioc_cpu / self.window * 100:.0f} % | "
                f"{self.sim_cpu / self.window * 100:.0f} % | "
                f"{self.pg_cpu / self.window * 100:.0f} % | "
                f"{self.other_work() * 100:.0f} % | {self.load} |")

    def other_work(self) -> float:
        """Cores' worth of CPU the rest of the machine used during the window."""
        cores = os.cpu_count() or 1
        ours = (self.ioc_cpu + self.sim_cpu + self.pg_cpu) / self.window
        return max(0.0, self.machine_busy * cores - ours)


HEADER = ("| shards | probes/s done (offered) | successful/s | polls/s started, stored | lost | "
          "failed | lag p50 | lag p99 | ioc CPU per probe | ioc CPU (% of a core) | "
          "simulator CPU | PostgreSQL CPU | other work on the machine | load |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def write_config(directory: Path, args: argparse.Namespace, sim_port: int, db_url: str,
                 urls: list[str] | None = None) -> Path:
    codes = [u.code for u in units()]
    timeout = min(args.timeout, args.interval)
    config = {
        "storage": {"url": db_url},
        "collection": {"interval": f"{args.interval:g}s", "timeout": f"{timeout:g}s",
                       # every target is on the one simulator: let the global cap decide
                       "max_per_host": args.max_concurrency,
                       "max_concurrency": args.max_concurrency},
        "logging": {"level": "warning"},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in units()],
        "collectors": [{"type": "http", "name": f"target-{i:05d}",
                        "department": codes[i % len(codes)],
                        "url": urls[i] if urls else
                        f"http://127.0.0.1:{sim_port}/{codes[i % len(codes)]}/health"}
                       for i in range(args.targets)],
    }
    path = directory / "ioc.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def run(count: int, args: argparse.Namespace, server: str, sim: subprocess.Popen[bytes],
        sim_port: int, tmp: Path, urls: list[str] | None = None) -> Result:
    asyncio.run(recreate_database(server))
    db_url = make_url(plain_url(server, DATABASE)).set(
        drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    config = write_config(tmp, args, sim_port, db_url, urls)
    ports = [free_port() for _ in range(count)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp / f"ioc-{count}-{i}.log" for i in range(count)]
    try:
        for index in range(count):
            with logs[index].open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "ioc", "run", "-c", str(config), "--listen",
                     f"127.0.0.1:{ports[index]}", "--shard", f"{index}/{count}"],
                    cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
            # The first creates the schema; the others start together. /healthz, not
            # /readyz: the web server answers once start-up (store included) is done, while
            # /readyz's 2 s store ping times out in a process that is saturated on purpose.
            if index == 0:
                wait_http(bases[0] + "/healthz", procs[0], logs[0], limit=300, request_timeout=30)
        for base, proc, log in zip(bases, procs, logs, strict=True):
            wait_http(base + "/healthz", proc, log, limit=300, request_timeout=30)
        time.sleep(args.warmup)

        before = [scrape(base) for base in bases]
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        sim0, pg0, machine0 = (server_cpu_seconds(sim.pid), postgres_cpu_seconds(),
                               machine_cpu_seconds())
        t0 = time.time()
        time.sleep(args.duration)
        t1 = time.time()
        cpu1 = [cpu_seconds(p.pid) for p in procs]
        sim1, pg1, machine1 = (server_cpu_seconds(sim.pid), postgres_cpu_seconds(),
                               machine_cpu_seconds())
        load = loadavg()
        after = [scrape(base) for base in bases]
    finally:
        stop(procs)
    codes = [p.returncode for p in procs]
    if any(code != 0 for code in codes):
        print(f"warning: shard exit codes {codes}", file=sys.stderr)
    for log in logs:  # the store's and shutdown's warnings; lag and timeouts are in the table
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "logger=ioc.store" in line or "level=error" in line]
        if lines:
            print(f"--- {log.name}:", *lines[-20:], sep="\n", file=sys.stderr)

    probes = sum(total(a, "ioc_collector_duration_seconds_count")
                 - total(b, "ioc_collector_duration_seconds_count")
                 for a, b in zip(after, before, strict=True))
    failures = sum(total(a, "ioc_probe_failures_total") - total(b, "ioc_probe_failures_total")
                   for a, b in zip(after, before, strict=True))
    reasons: dict[str, float] = {}
    for a, b in zip(after, before, strict=True):
        for (name, labels), value in a.items():
            if name == "ioc_probe_failures_total":
                reason = dict(labels)["reason"]
                reasons[reason] = reasons.get(reason, 0.0) + value - b.get((name, labels), 0.0)
    if failures:
        print("  failed polls by reason:", ", ".join(
            f"{reason} {count:.0f}" for reason, count in sorted(reasons.items()) if count),
            flush=True)
    lag: dict[float, float] = {}
    for a, b in zip(after, before, strict=True):
        end, start = lag_buckets(a), lag_buckets(b)
        for bound, value in end.items():
            lag[bound] = lag.get(bound, 0.0) + value - start.get(bound, 0.0)
    counted = max(lag.values(), default=0.0)
    if counted:
        late = {bound: 1 - value / counted for bound, value in sorted(lag.items())}
        print(f"  on time (started within {0.1 * args.interval:g} s of its slot): "
              f"{below(lag, 0.1 * args.interval) / counted * 100:.2f} % of {counted:,.0f} polls; "
              "later than: " + ", ".join(f"{bound:g} s {share * 100:.2f} %"
                                         for bound, share in late.items()
                                         if bound != float("inf") and 0.05 <= bound <= 5),
              flush=True)
    stored, stored_targets = asyncio.run(stored_polls(server, t0, t1))
    # Nothing lost: every poll counted by the last scrape is stored (the shards flushed on
    # SIGTERM), and no writer dropped anything.
    stored_all, _ = asyncio.run(stored_polls(server, 0.0, time.time() + 3600))
    polls_all = sum(total(a, "ioc_collector_duration_seconds_count") for a in after)
    dropped = sum(total(a, "ioc_store_samples_dropped_total") for a in after)
    window = t1 - t0
    busy = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1e-9)
    return Result(count, window, probes, stored, stored_targets,
                  dropped + max(0.0, polls_all - stored_all), failures,
                  args.targets * window / args.interval, quantile(lag, 0.5), quantile(lag, 0.99),
                  sum(cpu1) - sum(cpu0), sim1 - sim0, pg1 - pg0, busy, load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=1.0, help="poll timeout (≤ interval)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=10.0, help="s after every shard is ready")
    parser.add_argument("--shards", default="1,2,3", help="shard counts to run, e.g. 1,2,3")
    parser.add_argument("--nginx", action="store_true",
                        help="serve the targets from a local nginx (Debian nginx-light, one "
                             "worker) instead of the simulator")
    parser.add_argument("--max-concurrency", type=int, default=256,
                        help="collection.max_concurrency (and max_per_host) per shard")
    args = parser.parse_args()
    counts = [int(c) for c in args.shards.split(",")]
    server = os.environ.get("IOC_BENCH_POSTGRES_URL", DEFAULT_PG)
    print(f"{args.targets} http targets every {args.interval:g} s "
          f"(offered {args.targets / args.interval:,.0f} probes/s), warm-up {args.warmup:g} s, "
          f"window {args.duration:g} s; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {loadavg()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="ioc-bench-shards-") as tmp_name:
        tmp = Path(tmp_name)
        sim_port = free_port()
        urls: list[str] | None = None
        if args.nginx:
            tmp.chmod(0o755)  # nginx's worker runs as an unprivileged user and reads www/ here
            ports = [free_port() for _ in range(PORTS)]
            urls = target_urls(ports, args.targets)
            server_cmd = [need("nginx"), "-c", str(nginx_conf(tmp, ports)), "-p", str(tmp)]
            ready = urls[0]
        else:
            server_cmd = [sys.executable, "-m", "ioc", "simulate", "--listen",
                          f"127.0.0.1:{sim_port}", "--latency-scale", "0"]
            ready = f"http://127.0.0.1:{sim_port}/_sim/units"
        try:
            with started(server_cmd, tmp / "simulator.log") as sim:
                wait_http(ready, sim, tmp / "simulator.log", limit=60, request_timeout=30)
                favour(sim)
                for count in counts:
                    result = run(count, args, server, sim, sim_port, tmp, urls)
                    results.append(result)
                    print(f"{count} shard(s): {result.probes / result.window:,.0f} probes/s, "
                          f"lag p99 {result.lag_p99 * 1000:,.0f} ms", flush=True)
        finally:
            asyncio.run(drop_database(server))
    print()
    print(HEADER)
    for result in results:
        print(result.row(args.targets))


if __name__ == "__main__":
    main()
