"""The store fixtures (a SQLite file and a fresh PostgreSQL database) for alerting tests."""

from tests.store.conftest import postgres_url, store_url

__all__ = ["postgres_url", "store_url"]
