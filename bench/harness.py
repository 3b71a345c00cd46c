"""Pieces the process-level benchmarks share: ports, HTTP waits, /proc readings, quantiles.

The benchmarks that start real processes (ioc, the simulator, peers) measure them from the
outside the same way, so they read CPU time, load and histogram quantiles with one code.
Imported as ``harness`` (a script run as ``python bench/NAME.py`` has ``bench/`` on its path).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, limit: float = 60.0,
              request_timeout: float = 5.0) -> None:
    """Until ``url`` answers 2xx; a child that dies first is reported with its log's tail.

    ``request_timeout`` bounds each attempt: a saturated ioc answers its web server late.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode} before {url} "
                             f"answered:\n{tail}")
        with contextlib.suppress(OSError):
            get(url, timeout=request_timeout)
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {limit:g} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def quantile(buckets: dict[float, float], q: float) -> float:
    """``histogram_quantile``: linear interpolation within the bucket holding the rank."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return float("nan")
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-9)
        lower, below = bound, buckets[bound]
    return lower
