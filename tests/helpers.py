"""Small real parts shared by tests (no mocks of what they stand for)."""

from __future__ import annotations

from collections.abc import Sequence

from ioc.model import Sample


class ListSink:
    """A sample sink that keeps what it is given (stands in for the store writer)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def submit(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)
