"""Side-by-side HTTP probing: ioc against Prometheus + blackbox_exporter on the same targets.

One local nginx (Debian ``nginx-light``) serves N small static pages spread over a few
loopback ports, with ``keepalive_timeout 0`` so every probe of either side opens a fresh
connection. Then, one after the other (never at the same time, so neither steals the other's
CPU during its window):

* the peer: ``prometheus`` scraping ``prometheus-blackbox-exporter`` once per target (the usual
  ``__param_target`` relabelling, ``http`` prober, keep-alive off) at the same interval;
* ioc: ``ioc run`` with N ``http`` collectors at that interval (its defaults: fresh connection,
  in-memory windows, storage in a temporary SQLite, default alert rules).

Each side gets a warm-up (every target probed at least once), then a measured window. CPU is
utime+stime from /proc/<pid>/stat (peer = prometheus + blackbox_exporter) over the window, so it
holds on a busy machine; wall-clock figures do not, so the load average is printed with them.

    .venv/bin/python bench/probe_vs_blackbox.py [--targets 1000] [--interval 1] [--duration 60]
        [--only ioc|peer] [--profile ioc-profile.txt]

Probes counted: ioc from ``ioc_collector_duration_seconds_count``; the peer from the raw
``probe_success`` samples Prometheus stored in the window (``probe_success[<window>]``).
Lag: ioc from its ``ioc_scheduler_lag_seconds`` histogram (p99 interpolated within the bucket,
like ``histogram_quantile``); the peer from the stored sample timestamps (Prometheus stamps a
scrape with its start time): per target, lateness of each scrape after the earliest phase seen
in the window, plus Prometheus's own ``prometheus_target_interval_length_seconds`` p99.
"On time" = started within 10 % of the interval of its slot; slots that never ran count as
late (expected = targets × window / interval).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from harness import cpu_seconds, free_port, get, loadavg, quantile, wait_http

PAGE = ("<!doctype html><html><head><meta charset=utf-8><title>Cổng thông tin điện tử</title>"
        "</head><body><h1>Sở Thông tin và Truyền thông</h1><p>Hệ thống hoạt động bình thường."
        "</p></body></html>\n")
PORTS = 8  # nginx listeners; the targets are spread over them (one "host" per port)
DEPARTMENTS = 35


def need(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None)
    if path is None:
        raise SystemExit(f"{binary} not found: apt-get install nginx-light prometheus "
                         "prometheus-blackbox-exporter")
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def started(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is always stopped (TERM, then KILL) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# nginx


def nginx_conf(directory: Path, ports: list[int]) -> Path:
    (directory / "www").mkdir()
    (directory / "www" / "page.html").write_text(PAGE, encoding="utf-8")
    listens = "\n".join(f"    listen 127.0.0.1:{port};" for port in ports)
    tmp = directory / "nginx-tmp"
    tmp.mkdir()
    conf = f"""
worker_processes 1;
daemon off;
pid {directory / 'nginx.pid'};
error_log {directory / 'nginx-error.log'} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp};
  keepalive_timeout 0;
  default_type text/html;
  server {{
{listens}
    root {directory / 'www'};
    location /t/ {{ try_files /page.html =404; }}
  }}
}}
"""
    path = directory / "nginx.conf"
    path.write_text(conf)
    return path


def target_urls(ports: list[int], count: int) -> list[str]:
    return [f"http://127.0.0.1:{ports[i % len(ports)]}/t/{i:05d}" for i in range(count)]


@contextlib.contextmanager
def nginx_targets(tmp: Path, count: int) -> Iterator[list[str]]:
    """``count`` target URLs served by one nginx running in ``tmp`` until the block ends."""
    tmp.chmod(0o755)  # nginx's worker runs as an unprivileged user and reads www/ here
    ports = [free_port() for _ in range(PORTS)]
    conf = nginx_conf(tmp, ports)
    urls = target_urls(ports, count)
    with started([need("nginx"), "-c", str(conf), "-p", str(tmp)], tmp, tmp / "nginx.log") as ngx:
        wait_http(urls[0], ngx, tmp / "nginx.log")
        yield urls


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Result:
    name: str
    probes: int
    window: float
    cpu: float
    rss: float
    lag_p99: float
    on_time: float
    expected: int
    load: str
    note: str = ""

    def line(self) -> str:
        per_probe = self.cpu / self.probes * 1000 if self.probes else float("nan")
        return (f"{self.name:<5} probes {self.probes:>7} ({self.probes / self.window:7.1f}/s, "
                f"expected {self.expected})  CPU {self.cpu:6.2f} s = {per_probe:.3f} ms/probe  "
                f"lag p99 {self.lag_p99 * 1000:7.1f} ms  on time {self.on_time * 100:6.2f} %  "
                f"RSS {self.rss:6.1f} MB  load {self.load}{self.note}")


def parse_prom_text(text: str) -> dict[str, float]:
    """``name{labels}`` → value for every sample line of a text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def histogram(metrics: dict[str, float], name: str) -> dict[float, float]:
    """Cumulative bucket counts of an unlabelled histogram, by upper bound."""
    buckets: dict[float, float] = {}
    for key, value in metrics.items():
        match = re.fullmatch(name + r'_bucket\{le="([^"]+)"\}', key)
        if match:
            buckets[float(match.group(1))] = value
    return buckets


def below(buckets: dict[float, float], limit: float) -> float:
    """Observations ≤ ``limit``, interpolated linearly within its bucket."""
    lower, count_below = 0.0, 0.0
    for bound in sorted(buckets):
        if bound >= limit:
            if math.isinf(bound):
                return count_below
            share = (limit - lower) / (bound - lower)
            return count_below + share * (buckets[bound] - count_below)
        lower, count_below = bound, buckets[bound]
    return count_below


# --------------------------------------------------------------------------------------------
# the peer


def run_peer(tmp: Path, urls: list[str], args: argparse.Namespace) -> Result:
    interval = args.interval
    timeout = min(args.timeout, interval)
    bb_port, prom_port = free_port(), free_port()
    (tmp / "blackbox.yml").write_text(yaml.safe_dump({"modules": {"http_2xx": {
        "prober": "http", "timeout": go_duration(timeout),
        "http": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False,
                 "enable_http2": False},
    }}}))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": go_duration(interval),
                   "scrape_timeout": go_duration(timeout)},
        "scrape_configs": [{
            "job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
            "static_configs": [{"targets": urls}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{bb_port}"},
            ],
        }],
    }))
    (tmp / "prom-data").mkdir()
    bb_args = [need("prometheus-blackbox-exporter"), f"--config.file={tmp / 'blackbox.yml'}",
               f"--web.listen-address=127.0.0.1:{bb_port}", "--log.level=warn"]
    prom_args = [need("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp / 'prom-data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"]
    prom = f"http://127.0.0.1:{prom_port}"
    with started(bb_args, tmp, tmp / "blackbox.log") as bb, \
            started(prom_args, tmp, tmp / "prometheus.log") as prometheus:
        wait_http(f"http://127.0.0.1:{bb_port}/metrics", bb, tmp / "blackbox.log")
        wait_http(f"{prom}/-/ready", prometheus, tmp / "prometheus.log")
        time.sleep(args.warmup)
        pids = (bb.pid, prometheus.pid)
        cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.time()
        rss = sample_rss(pids, args.duration)
        cpu1, t1 = sum(cpu_seconds(p) for p in pids), time.time()
        load = loadavg()
        # let the last scrapes of the window land before asking for them
        time.sleep(min(timeout, interval) + 0.5)
        window = t1 - t0
        query = urllib.parse.urlencode({"query": f"probe_success[{go_duration(window)}]",
                                        "time": f"{t1:.3f}"})
        data = json.loads(get(f"{prom}/api/v1/query?{query}", timeout=120))["data"]["result"]
        stamps = [[float(ts) for ts, _ in series["values"]] for series in data]
        probes = sum(len(s) for s in stamps)
        late = scrape_lateness(stamps, interval)
        expected = round(len(urls) * window / interval)
        on_time = sum(1 for x in late if x <= 0.1 * interval) / max(expected, 1)
        query = urllib.parse.urlencode({"query": f"count_over_time(up[{go_duration(window)}])",
                                        "time": f"{t1:.3f}"})
        attempts = sum(float(r["value"][1]) for r in json.loads(
            get(f"{prom}/api/v1/query?{query}", timeout=120))["data"]["result"])
        own = parse_prom_text(get(f"{prom}/metrics").decode())
        p99_key = next((k for k in own if k.startswith("prometheus_target_interval_length_seconds{")
                        and 'quantile="0.99"' in k), None)
        note = f"\n      scrapes attempted (up samples) {attempts:.0f}, with probe_success {probes}"
        if p99_key is not None:
            note += (f"\n      prometheus_target_interval_length_seconds p99 "
                    f"{own[p99_key]:.3f} s for a {interval:g} s interval")
        return Result("peer", probes, window, cpu1 - cpu0, rss,
                      percentile(late, 0.99), min(on_time, 1.0), expected, load, note)


def go_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def scrape_lateness(stamps: list[list[float]], interval: float) -> list[float]:
    """Per target: how far each scrape started after the target's earliest phase in the window."""
    late: list[float] = []
    for series in stamps:
        if not series:
            continue
        first = series[0]
        offsets = [ts - first - round((ts - first) / interval) * interval for ts in series]
        base = min(offsets)
        late.extend(o - base for o in offsets)
    return late


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def sample_rss(pids: tuple[int, ...], duration: float) -> float:
    """Wait out the window, sampling the summed RSS once a second; the peak is returned."""
    end, peak = time.monotonic() + duration, 0.0
    while True:
        peak = max(peak, sum(rss_mb(p) for p in pids))
        left = end - time.monotonic()
        if left <= 0:
            return peak
        time.sleep(min(1.0, left))


# --------------------------------------------------------------------------------------------
# ioc


def run_ioc(tmp: Path, urls: list[str], args: argparse.Namespace) -> Result:
    interval = args.interval
    timeout = min(args.timeout, interval)
    web_port = free_port()
    config = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'ioc.db'}"},
        "collection": {"interval": f"{interval}s", "timeout": f"{timeout}s",
                       "max_per_host": args.max_per_host},
        "logging": {"level": "warning"},
        # the province's 35 departments and districts, targets spread evenly over them
        "departments": [{"code": f"DV{d:02d}", "name": f"Đơn vị {d}"}
                        for d in range(DEPARTMENTS)],
        "collectors": [{"type": "http", "name": f"target-{i:05d}",
                        "department": f"DV{i % DEPARTMENTS:02d}", "url": url}
                       for i, url in enumerate(urls)],
    }
    if args.store_flush is not None:
        config["storage"]["flush_interval"] = f"{args.store_flush}s"
    if args.store_batch is not None:
        config["storage"]["batch_size"] = args.store_batch
    path = tmp / "ioc.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    base = f"http://127.0.0.1:{web_port}"
    cmd = [sys.executable, "-m", "ioc", "run", "-c", str(path), "--listen", f"127.0.0.1:{web_port}"]
    with started(cmd, Path(__file__).resolve().parent.parent, tmp / "ioc.log") as ioc:
        launched = time.monotonic()
        wait_http(base + "/readyz", ioc, tmp / "ioc.log", limit=300)
        print(f"ioc ready {time.monotonic() - launched:.1f} s after launch", flush=True)
        time.sleep(args.warmup)
        before = parse_prom_text(get(base + "/metrics").decode())
        cpu0, t0 = cpu_seconds(ioc.pid), time.time()
        rss = sample_rss((ioc.pid,), args.duration)
        cpu1, t1 = cpu_seconds(ioc.pid), time.time()
        load = loadavg()
        after = parse_prom_text(get(base + "/metrics").decode())
        if args.profile:
            profile(ioc.pid, args)
    key = 'ioc_collector_duration_seconds_count{kind="http"}'
    probes = int(after.get(key, 0) - before.get(key, 0))
    lag0, lag1 = (histogram(m, "ioc_scheduler_lag_seconds") for m in (before, after))
    lag = {bound: lag1[bound] - lag0.get(bound, 0.0) for bound in lag1}
    window = t1 - t0
    expected = round(len(urls) * window / interval)
    on_time = below(lag, 0.1 * interval) / max(expected, 1)
    failures = sum(v for k, v in after.items() if k.startswith("ioc_probe_failures_total{"))
    note = f"\n      failed probes since start: {failures:.0f}" if failures else ""
    return Result("ioc", probes, window, cpu1 - cpu0, rss, quantile(lag, 0.99),
                  min(on_time, 1.0), expected, load, note)


def profile(pid: int, args: argparse.Namespace) -> None:
    """py-spy over a second window (after the measured one, so it does not inflate it)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("py-spy not installed in the venv: skipping the profile", file=sys.stderr)
        return
    raw = Path(args.profile)
    subprocess.run([str(spy), "record", "--pid", str(pid), "--duration", str(args.profile_seconds),
                    "--format", "raw", "--rate", "200", "--nonblocking", "--output", str(raw)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=args.profile_seconds + 60)
    print(summarise_profile(raw))


def summarise_profile(raw: Path, top: int = 25) -> str:
    """Inclusive and own share of samples per function (py-spy leaves idle samples out)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"py-spy: {total} busy samples; inclusive %, own %, function"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}  {100 * own[frame] / total:5.1f}  {frame}")
    lines.append("  top own time:")
    for frame, count in own.most_common(15):
        lines.append(f"  {100 * count / total:5.1f}  {frame}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds (1)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds, ≤ interval (5)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (60)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before measuring (default: interval + 10)")
    parser.add_argument("--only", choices=("ioc", "peer"), help="run one side only")
    parser.add_argument("--max-per-host", type=int, default=64,
                        help="ioc collection.max_per_host (targets share 8 nginx ports)")
    parser.add_argument("--store-flush", type=float,
                        help="ioc's storage.flush_interval in seconds (default: ioc's)")
    parser.add_argument("--store-batch", type=int,
                        help="ioc's storage.batch_size (default: ioc's)")
    parser.add_argument("--profile", help="write a py-spy profile of ioc here (raw format)")
    parser.add_argument("--profile-seconds", type=int, default=30)
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = args.interval + 10
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as name:
        tmp = Path(name)
        print(f"{args.targets} targets on {PORTS} nginx ports, interval {args.interval:g} s, "
              f"window {args.duration:g} s after {args.warmup:g} s warm-up, sides one after "
              f"the other; {os.cpu_count()} CPUs, load before {loadavg()}", flush=True)
        with nginx_targets(tmp, args.targets) as urls:
            results = []
            if args.only != "ioc":
                results.append(run_peer(tmp, urls, args))
                print(results[-1].line(), flush=True)
            if args.only != "peer":
                results.append(run_ioc(tmp, urls, args))
                print(results[-1].line(), flush=True)
        if len(results) == 2:
            peer, ioc = results
            ratio = (ioc.cpu / ioc.probes) / (peer.cpu / peer.probes)
            print(f"CPU per probe ioc/peer: {ratio:.2f} (goal ≤ 0.40)")


if __name__ == "__main__":
    main()
