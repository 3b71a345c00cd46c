"""Fixtures of the probe tests (the harness lives in probe_support so modules can import it)."""

from tests.collectors.probe_support import probe

__all__ = ["probe"]
