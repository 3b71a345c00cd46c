"""The one place that reads the real time.

Logic takes ``now`` as an argument; only the service's outer loop calls these.
"""

import time


def now() -> float:
    """Wall-clock unix seconds, for timestamps that are stored and shown."""
    return time.time()


def monotonic() -> float:
    """Monotonic seconds, for measuring durations."""
    return time.monotonic()
