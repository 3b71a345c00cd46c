"""Persistent time-series storage: the Store contract, its SQL implementation and writer.

``open_store`` only builds the store so configuration errors (a bad URL) surface at startup
before anything connects; the caller awaits ``open()`` when it is ready to.
"""

from ioc.store.base import Store, StoreError
from ioc.store.migrate import MigrationRequiredError
from ioc.store.schema import SchemaVersionError
from ioc.store.sql import SqlStore

__all__ = ["MigrationRequiredError", "SchemaVersionError", "SqlStore", "Store", "StoreError",
           "open_store"]


def open_store(url: str, *, rollups: bool = True, auto_migrate: bool = True) -> SqlStore:
    """Construct (without connecting) the store for a database URL."""
    return SqlStore(url, rollups=rollups, auto_migrate=auto_migrate)
