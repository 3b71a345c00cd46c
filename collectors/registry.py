"""From the ``type:`` of a config block to the collector class that handles it.

Adding a collector type is one module and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping

from collectors.backlog import BacklogCollector
from collectors.dns import DnsCollector
from collectors.feedback import FeedbackCollector
from collectors.http import HttpCollector
from collectors.siem import SiemCollector
from collectors.tcp import TcpCollector
from ioc.collector import Collector

COLLECTOR_TYPES: Mapping[str, type[Collector]] = {
    HttpCollector.kind: HttpCollector,
    TcpCollector.kind: TcpCollector,
    DnsCollector.kind: DnsCollector,
    BacklogCollector.kind: BacklogCollector,
    FeedbackCollector.kind: FeedbackCollector,
    SiemCollector.kind: SiemCollector,
}


def build_collector(config: object) -> Collector:
    """Instantiate the collector for an already validated config block."""
    kind = getattr(config, "type", None)
    cls = COLLECTOR_TYPES.get(str(kind))
    if cls is None:
        raise KeyError(f"unknown collector type {kind!r}")
    # the Collector protocol fixes no constructor; every registered class takes its block
    return cls(config)  # type: ignore[call-arg]
