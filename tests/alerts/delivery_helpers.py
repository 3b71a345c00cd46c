"""Building blocks for the delivery tests: alerts as the engine would hand them over."""

from __future__ import annotations

from alerts.messages import Notification, NotifiedAlert
from alerts.model import Alert, AlertState


def alert(name: str = "TargetDown", *, state: AlertState = AlertState.FIRING,
          at: float = 1000.0, value: float | None = 0.0, resolved_at: float | None = None,
          summary: str = "", **labels: str) -> Alert:
    labels = {"alertname": name, "severity": "critical", **labels}
    annotations = (("summary", summary or f"{name} {labels.get('target', '')}".strip()),)
    return Alert(labels=tuple(sorted(labels.items())), annotations=annotations, state=state,
                 value=value, active_at=at, fired_at=at,
                 resolved_at=resolved_at if state is AlertState.RESOLVED else None,
                 last_eval=at)


def resolved(firing: Alert, at: float) -> Alert:
    return Alert(labels=firing.labels, annotations=firing.annotations,
                 state=AlertState.RESOLVED, value=1.0, active_at=firing.active_at,
                 fired_at=firing.fired_at, resolved_at=at, last_eval=at)


def sample_notification(status: str = "firing", *, receiver: str = "oncall",
                        key: str = "n-1") -> Notification:
    """Two alerts of Sở Tư pháp, one firing since 12 minutes and one just resolved."""
    firing = NotifiedAlert(
        fingerprint="f1", status="firing" if status == "firing" else "resolved",
        labels={"alertname": "TargetDown", "severity": "critical", "department": "STP",
                "target": "stp-dvc"},
        annotations={"summary": "Cổng dịch vụ công Sở Tư pháp không truy cập được",
                     "description": "Kiểm tra <máy chủ> & đường truyền",
                     "runbook_url": "https://wiki.haugiang.gov.vn/runbook/target-down"},
        starts_at=T0 - 720, ends_at=None if status == "firing" else T0, value=0.0,
        department_name="Sở Tư pháp")
    other = NotifiedAlert(
        fingerprint="f2", status="resolved",
        labels={"alertname": "SlowResponse", "severity": "warning", "department": "STP",
                "target": "stp-web"},
        annotations={"summary": "Trang web phản hồi chậm"},
        starts_at=T0 - 3600, ends_at=T0 - 60, value=2.75, department_name="Sở Tư pháp")
    return Notification(receiver=receiver, group_key='{}:{department="STP"}', status=status,
                        group_labels={"department": "STP"}, alerts=(firing, other),
                        created_at=T0, dedup_key=key,
                        external_url="http://ioc.haugiang.gov.vn/")


T0 = 1_800_000_000.0  # 2027-01-15 15:00 in Hậu Giang
