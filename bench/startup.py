"""Start-up to ready with N configured targets.

Writes a config with N http targets (pointing at the bundled simulator, run by the same
process), starts `ioc run` as a user would, and measures the time from process start to the
first 200 from /readyz, plus the time until every target has been polled once.

    .venv/bin/python bench/startup.py [--targets 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, targets: int, sim_port: int) -> Path:
    config = {
        "storage": {"url": f"sqlite+aiosqlite:///{directory / 'ioc.db'}"},
        "collection": {"interval": "30s", "timeout": "5s"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "latency_scale": 0.1},
        "logging": {"level": "warning"},
        "departments": [{"code": "STTTT", "name": "Sở Thông tin và Truyền thông"}],
        "collectors": [{"type": "http", "name": f"target-{i:05d}", "department": "STTTT",
                        "url": f"http://127.0.0.1:{sim_port}/STTTT/health"}
                       for i in range(targets)],
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


def one_run(targets: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        sim_port, web_port = free_port(), free_port()
        path = write_config(Path(tmp), targets, sim_port)
        base = f"http://127.0.0.1:{web_port}"
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "ioc", "run", "-c", str(path),
                                 "--listen", f"127.0.0.1:{web_port}"], cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ready = all_polled = None
            deadline = started + 120
            while time.monotonic() < deadline:
                if ready is None and get(base + "/readyz")[0] == 200:
                    ready = time.monotonic() - started
                if ready is not None:
                    status, body = get(base + "/api/v1/status")
                    if status == 200 and json.loads(body)["summary"]["unknown"] == 0:
                        all_polled = time.monotonic() - started
                        break
                time.sleep(0.02)
            if ready is None or all_polled is None:
                raise SystemExit("ioc did not become ready within 120 s")
            return ready, all_polled
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    readies, polled = [], []
    for _ in range(args.runs):
        ready, all_polled = one_run(args.targets)
        readies.append(ready)
        polled.append(all_polled)
    print(f"start-up with {args.targets} targets, {args.runs} runs")
    print(f"  process start -> /readyz 200:        median {statistics.median(readies):.2f} s"
          f"  (max {max(readies):.2f} s)")
    print(f"  process start -> every target polled: median {statistics.median(polled):.2f} s"
          "  (phases spread over the 30 s interval)")


if __name__ == "__main__":
    main()
