"""Alembic's entry point for ioc's migrations.

ioc runs its migrations on a connection it has already opened and locked
(``dialects.lock_schema``): :mod:`ioc.store.migrate` hands that synchronous connection over in
``config.attributes["connection"]`` from inside ``AsyncConnection.run_sync``, and every revision
runs in the caller's transaction, so a failed upgrade leaves the database as it was (PostgreSQL
and SQLite both roll back DDL). Without a connection — a developer calling
``alembic.command.revision(..., autogenerate=True)`` with ``sqlalchemy.url`` set — this module
opens the async engine itself and goes through ``run_sync`` the same way.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ioc.store.migrate import VERSION_TABLE, include_name, target_metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    # 0002 reads the samples to decide which day partitions to create; SQL scripts cannot.
    raise RuntimeError("ioc's migrations need a live database: offline (--sql) mode is not "
                       "supported")

_connection = config.attributes.get("connection")
if _connection is not None:
    run_on(_connection)
else:
    _url = config.get_main_option("sqlalchemy.url")
    if not _url:
        raise RuntimeError("no database: pass a connection in config.attributes['connection'] "
                           "or set sqlalchemy.url")
    asyncio.run(run_on_url(_url))
