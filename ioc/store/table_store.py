"""The shared set-up of the small stores that sit beside the sample store.

Alert state, delivery, events, audit, announcement and maintenance each own a few tables on the
shared ``metadata``. They all connect, create their tables under the dialect's schema lock and
dispose of their engine the same way; this class does that once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ioc.store import dialects
from ioc.store.base import StoreError
from ioc.store.schema import metadata


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
            await self._create_tables(write)
        except BaseException as exc:  # cancelled too: never leave a half-opened engine behind
            await engine.dispose()
            if isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise
            raise StoreError(f"store {self.url_for_display}: cannot open {self.OPENING}: "
                             f"{type(exc).__name__}: {exc}") from exc
        self._engine, self._write = engine, write

    async def _create_tables(self, write: AsyncEngine) -> None:
        async with write.begin() as conn:
            await self._dialect.lock_schema(conn)
            await conn.run_sync(lambda sync: metadata.create_all(sync, tables=self.TABLES))

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
