"""The status board's record of an outage's start, as the wall and console read it."""

from __future__ import annotations

from ioc.status import StatusBoard, TargetState, build_status


def _record(board: StatusBoard, up: bool, ts: float, state_up: bool | None = None) -> None:
    board.record("stp-web", up=up, ts=ts, latency=0.01, value=None,
                 reason=None if up else "timeout", error=None if up else "timed out",
                 state_up=state_up)


def test_failing_since_is_the_first_failed_poll_of_the_run_and_clears_on_success() -> None:
    board = StatusBoard()
    board.register(TargetState("stp-web", "STP", "http", 30.0))
    _record(board, True, 100.0)
    assert board.targets["stp-web"].failing_since is None
    # debounced state still up for the first two failures: the outage began at the first
    _record(board, False, 130.0, state_up=True)
    _record(board, False, 160.0, state_up=True)
    _record(board, False, 190.0, state_up=False)
    status = build_status(board, {"STP": "Sở Tư pháp"}, now=200.0, province={})
    (row,) = status["targets"]
    assert row["failing_since"] == 130.0
    assert row["up"] is False
    _record(board, True, 220.0)
    assert board.targets["stp-web"].failing_since is None
    _record(board, False, 250.0)
    assert board.targets["stp-web"].failing_since == 250.0


def test_first_poll_failing_starts_the_run_at_that_poll() -> None:
    board = StatusBoard()
    board.register(TargetState("stp-web", "STP", "http", 30.0))
    _record(board, False, 42.0)
    _record(board, False, 72.0)
    assert board.targets["stp-web"].failing_since == 42.0
