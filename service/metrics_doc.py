"""docs/metrics.md, from the code: ``python -m service.metrics_doc > docs/metrics.md``.

The list is read from a real app's registry (built, not started, from a config that turns on
every optional part), so a family added anywhere in the code shows up here without anyone
remembering to write it down; a test regenerates the page and fails when it differs from the
committed one. Measured samples are exported from the cache at scrape time and have no
prometheus-client object to ask, so their labels come from ``SAMPLE_LABELS`` next to their
help texts; the integration test checks those against what a running ioc exports.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from ioc.indices import IndexExporter
from ioc.metrics import SAMPLE_LABELS, SAMPLE_METRICS, SampleExporter
from service.config import Config, parse_config

# The labels every collector may add to its samples with `labels:` in config.yaml.
COLLECTOR_LABELS_NOTE = "plus the collector's `labels:`"

HEADER = """\
# Metrics

Every metric family ioc exports on `/metrics`, in the Prometheus text format (or OpenMetrics
when the scraper asks for it with `Accept: application/openmetrics-text`). The page is
generated from the code — do not edit it by hand; run

```console
$ .venv/bin/python -m service.metrics_doc > docs/metrics.md
```

and `tests/integration/test_metrics_doc.py` fails when it is out of date. Names follow the
Prometheus conventions: base units in the name (`_seconds`, `_bytes`, `_ratio`), counters end
in `_total`, `_info` gauges are always 1 and carry their value in a label, and no label holds
an unbounded value (no error text, no query string, no time). `/metrics` can be protected
with a token or basic auth (see [`metrics`](configuration.md#metrics)).

The ready Grafana dashboard and the Prometheus rules built on these metrics are in `deploy/`
(see [deploy.md](deploy.md#prometheus-and-grafana)).

**Label changes.** `ioc_probe_failures_total` carries `department` (the failing target's
owner) besides `target` and `reason`, so failures can be summed or filtered by department
(the dashboard's failure panel follows its `$department` variable). Queries that aggregate
`by (target, reason)` are unaffected; a query or alert that compares whole label sets with
another family (`on (target)` without `ignoring`, or a recording rule's output labels) sees
the extra label. The series start again from zero under the new label set.
"""

SECTIONS = (
    ("measured", "Measured by collectors",
     "The latest value of every series in ioc's in-memory cache, exported at scrape time: a "
     "target removed from the config disappears from `/metrics` by itself. Every family also "
     "carries the `labels:` of the collector's config block. `department` is the owner of "
     "the target for probes, and the unit a count belongs to for statistics "
     '(`department=""` is the whole province; Prometheus stores such a series without a '
     '`department` label, and `{department=""}` still selects it).'),
    ("indices", "Published indices",
     "The province's yearly rankings from the `indices:` section, exported at scrape time "
     "(only when the section lists any)."),
    ("service", "ioc itself",
     "ioc's own health: polling, scheduling, the store writer, security-event ingestion, "
     "alert evaluation and delivery, the wall's live stream."),
)


@dataclass(frozen=True, order=True)
class Family:
    name: str          # as exposed: counters with _total
    type: str
    labels: tuple[str, ...]
    help: str
    section: str


def documentation_config(tmp: Path) -> Config:
    """A config that turns on every optional family (indices, syslog); nothing is opened."""
    raw: dict[str, Any] = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'ioc.db'}"},
        "departments": [{"code": "STTTT", "name": "Sở Thông tin và Truyền thông"}],
        "indices": [{"index": "PAR INDEX", "year": 2021, "rank": 27, "of": 63, "change": 1,
                     "score": 84.5}],
        "events": {"syslog": {"enabled": True, "udp": "127.0.0.1:0", "tcp": "127.0.0.1:0"}},
        "collectors": [{"type": "http", "name": "stttt-health", "department": "STTTT",
                        "url": "http://127.0.0.1:9/health"}],
    }
    return parse_config(raw, env={}, source="<metrics-doc>")


def _exposed_name(name: str, kind: str) -> str:
    return f"{name}_total" if kind == "counter" else name


def _wrapper_family(metric: MetricWrapperBase) -> Family:
    kind = str(metric._type)
    return Family(_exposed_name(str(metric._name), kind), kind,
                  tuple(metric._labelnames), str(metric._documentation), "service")


def _collected_families(collector: Any, section: str) -> Iterator[Family]:
    for family in collector.collect():
        labels: list[str] = []
        for sample in family.samples:
            labels.extend(k for k in sample.labels if k not in labels)
        yield Family(_exposed_name(family.name, family.type), family.type, tuple(labels),
                     family.documentation, section)


def registry_families(registry: CollectorRegistry) -> list[Family]:
    """Every family the registry can export, with its labels, help and section."""
    families: list[Family] = []
    collectors = list(registry._collector_to_names)  # no public listing in prometheus-client
    for collector in collectors:
        if isinstance(collector, SampleExporter):
            for name, help_text in SAMPLE_METRICS.items():
                families.append(Family(name, "gauge", SAMPLE_LABELS[name], help_text,
                                       "measured"))
        elif isinstance(collector, MetricWrapperBase):
            families.append(_wrapper_family(collector))
        elif isinstance(collector, IndexExporter):
            families.extend(_collected_families(collector, "indices"))
        else:
            families.extend(_collected_families(collector, "service"))
    return sorted(families)


def app_families() -> list[Family]:
    from service.app import IocApp

    with tempfile.TemporaryDirectory() as tmp:
        app = IocApp(documentation_config(Path(tmp)))
        return registry_families(app.registry)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(families: list[Family]) -> str:
    lines = [HEADER]
    for key, title, intro in SECTIONS:
        members = [f for f in families if f.section == key]
        if not members:
            continue
        lines += [f"## {title}", "", intro, "",
                  "| Metric | Type | Labels | Description |", "| --- | --- | --- | --- |"]
        for family in members:
            labels = ", ".join(f"`{label}`" for label in family.labels) or "—"
            if key == "measured":
                labels += f" ({COLLECTOR_LABELS_NOTE})"
            lines.append(f"| `{family.name}` | {family.type} | {labels} | "
                         f"{_cell(family.help)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(render(app_families()))


if __name__ == "__main__":
    main()
