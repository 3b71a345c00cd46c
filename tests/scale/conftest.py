"""The real PostgreSQL, a fresh database per test, for the multi-process scale tests."""

from tests.store.conftest import postgres_url  # noqa: F401  (fixture)
