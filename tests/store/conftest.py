"""Stores on real databases: a SQLite file per test, and a fresh PostgreSQL database per test.

The PostgreSQL server comes from ``IOC_TEST_POSTGRES_URL``; each test gets its own
``ioc_test_<hex>`` database, dropped afterwards, so parallel or interrupted runs never see
each other's data. Without the variable the PostgreSQL cases skip, except under CI where a
silently skipped backend would hide regressions.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from ioc.store import SqlStore

POSTGRES_ENV = "IOC_TEST_POSTGRES_URL"


def _server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} must be set under CI")
        pytest.skip(f"{POSTGRES_ENV} not set (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)")
    return url


async def _admin(server_url: str) -> asyncpg.Connection:
    plain = make_url(server_url).set(drivername="postgresql")
    return await asyncpg.connect(plain.render_as_string(hide_password=False))


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """URL of a brand-new, empty PostgreSQL database that is dropped after the test."""
    server_url = _server_url()
    name = f"ioc_test_{uuid.uuid4().hex[:16]}"
    admin = await _admin(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await _admin(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database on each backend."""
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: opening must create it.
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'ioc.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """An opened store on each backend."""
    opened = SqlStore(store_url, prune_batch_size=7)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
