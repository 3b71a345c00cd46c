"""The shared set-up of the small stores that sit beside the sample store.

Alert state, delivery, events, audit, announcement and maintenance each own a few tables on the
shared ``metadata``. They all connect, bring the schema to this ioc's newest migration under the
dialect's schema lock (:mod:`ioc.store.migrate`; usually the sample store, which opens first and
obeys ``storage.auto_migrate``, has done it already) and dispose of their engine the same way;
this class does that once. Their ``TABLES`` are checked after the upgrade, so a table added to
the models without a migration fails at open with its name, not at its first query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ioc.store import dialects, migrate
from ioc.store.base import StoreError
from ioc.store.schema import SchemaVersionError


class TableStore:
    TABLES: ClassVar[Sequence[Table]]
    NAME: ClassVar[str]       # "audit log": in "audit log <url> is not open"
    OPENING: ClassVar[str]    # "the audit log": in "cannot open the audit log: …"

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        self._url = make_url(url)
        self.url_for_display = self._url.render_as_string(hide_password=True)
        self._dialect = dialects.for_url(self._url, busy_timeout=busy_timeout)
        self._insert: Any = sqlite.insert if self._dialect.name == "sqlite" else postgresql.insert
        self._engine: AsyncEngine | None = None
        self._write: AsyncEngine | None = None

    async def open(self) -> None:
        if self._engine is not None:
            return
        engine = self._dialect.create_engine(self._url)
        write = engine.execution_options(**{dialects.WRITE_OPTION: True})
        try:
            await self._prepare_schema(write)
        except BaseException as exc:  # cancelled too: never leave a half-opened engine behind
            await engine.dispose()
            if isinstance(exc, StoreError | SchemaVersionError | migrate.MigrationRequiredError
                          ) or not isinstance(exc, Exception):
                raise
            raise StoreError(f"store {self.url_for_display}: cannot open {self.OPENING}: "
                             f"{type(exc).__name__}: {exc}") from exc
        self._engine, self._write = engine, write

    async def _prepare_schema(self, write: AsyncEngine) -> None:
        async with write.begin() as conn:
            await self._dialect.lock_schema(conn)
            await conn.run_sync(self._migrate)

    def _migrate(self, conn: Connection) -> None:
        migrate.ensure_schema(conn, where=self.url_for_display)
        missing = migrate.missing_tables(conn, self.TABLES)
        if missing:
            raise RuntimeError(f"{self.OPENING} need tables {', '.join(missing)} that no "
                               "migration creates: add a revision (ioc/store/migrations)")

    async def close(self) -> None:
        engine, self._engine, self._write = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    def _reader(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreError(f"{self.NAME} {self.url_for_display} is not open")
        return self._engine

    def _writer(self) -> AsyncEngine:
        if self._write is None:
            raise StoreError(f"{self.NAME} {self.url_for_display} is not open")
        return self._write
