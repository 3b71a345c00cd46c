"""Bringing a database's schema to the one this ioc expects, with Alembic migrations.

Every store runs :func:`ensure_schema` when it opens, inside its write transaction and under
``dialects.lock_schema``, so two ioc processes starting on an empty database apply the
migrations once, one after the other. The revisions live in ``ioc/store/migrations/versions``;
the database's revision in ``ioc_alembic_version`` (an ioc-prefixed name, so another
Alembic-managed application may share the database).

A database from before migrations has ``ioc_schema_version`` = 1 and no revision; upgrading it
starts at ``0001_baseline``, which adopts its tables and adds the ones it lacks. A database at a
revision this ioc does not know was migrated by a newer ioc and is refused
(:class:`SchemaVersionError`); so is one that is behind when the operator turned automatic
migration off (:class:`MigrationRequiredError`: ``ioc db upgrade`` is then the way).
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import make_url

from ioc.store import dialects, partitions
from ioc.store.schema import SchemaVersionError, metadata, schema_version

log = logging.getLogger("ioc.store")

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "ioc_alembic_version"
BASELINE = "0001_baseline"
PRE_MIGRATION_VERSION = 1  # what ioc_schema_version held before migrations

Status = Literal["empty", "legacy", "behind", "head", "ahead"]


class MigrationRequiredError(RuntimeError):
    """The database is behind this ioc and ``storage.auto_migrate`` is false.

    Not a ``StoreError``: waiting does not help, an operator has to run ``ioc db upgrade``.
    """


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this ioc's newest revision (``head``)."""

    status: Status
    head: str
    current: str | None = None          # the revision in ioc_alembic_version
    legacy_version: int | None = None   # ioc_schema_version of a database without revision

    def describe(self) -> str:
        if self.current is not None:
            return self.current
        if self.status == "empty":
            return "no ioc schema (empty database)"
        note = " (created before migrations)" if self.status == "legacy" else ""
        return f"schema version {self.legacy_version} without a migration record{note}"


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for ioc's migrations, built in code: no alembic.ini ships.

    ``url`` is only for developers drafting a revision (see versions/README.md); ioc itself
    passes an open connection through ``config.attributes["connection"]``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s")  # versions/0003_rollups.py
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """The revisions shipped with this ioc; they never change while it runs."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    found = script_directory().get_current_head()
    if found is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return found


def target_metadata() -> MetaData:
    """The models every revision together must produce: ``metadata`` with all its tables.

    Side stores define their tables in their own modules; importing every module of
    ``ioc.store`` registers them, so a new store module cannot be forgotten here.
    """
    import ioc.store

    for module in pkgutil.iter_modules(ioc.store.__path__):
        if module.name != "migrations":
            importlib.import_module(f"ioc.store.{module.name}")
    return metadata


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Which reflected objects schema comparison looks at: ioc's tables, not its partitions.

    Day partitions are data, not schema; tables without the ``ioc_`` prefix belong to other
    applications sharing the database.
    """
    if type_ != "table" or name is None:
        return True
    return (name.startswith("ioc_") and name != VERSION_TABLE
            and not partitions.is_partition_name(name))


def read_state(conn: Connection) -> SchemaState:
    """Where the database on ``conn`` stands; reads only."""
    newest = head()
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        # Read directly: a MigrationContext would log two lines at every store's open.
        heads = tuple(sorted(conn.execute(
            text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()))
        if heads:
            current = ",".join(heads)
            if heads == (newest,):
                return SchemaState("head", newest, current)
            return SchemaState("behind" if all(map(_known, heads)) else "ahead", newest, current)
    if schema_version.name in tables:
        found = conn.execute(select(func.max(schema_version.c.version))).scalar()
        version = PRE_MIGRATION_VERSION if found is None else int(found)
        status: Status = "legacy" if version <= PRE_MIGRATION_VERSION else "ahead"
        return SchemaState(status, newest, legacy_version=version)
    return SchemaState("empty", newest)


def _known(revision: str) -> bool:
    try:
        script_directory().get_revision(revision)
    except CommandError:
        return False
    return True


def ensure_schema(conn: Connection, *, where: str, auto_migrate: bool = True) -> SchemaState:
    """Upgrade the database on ``conn`` to head, or refuse it; return the state it was in.

    The caller holds the schema lock and the transaction; ``where`` (the URL with its password
    masked) names the database in messages.
    """
    before = read_state(conn)
    if before.status == "head":
        return before
    refuse_if_ahead(before, where)
    if not auto_migrate:
        raise MigrationRequiredError(
            f"database {where} is at {before.describe()}, behind this ioc's schema "
            f"{before.head}, and storage.auto_migrate is false: run `ioc db upgrade -c "
            "<config file>` first")
    upgrade(conn)
    log.info("store %s: schema upgraded from %s to %s", where, before.describe(), before.head)
    return before


def refuse_if_ahead(state: SchemaState, where: str) -> None:
    if state.status == "ahead":
        raise SchemaVersionError(
            f"database {where} is at {state.describe()}, newer than schema {state.head} "
            "that this ioc knows: it was migrated by a newer ioc; upgrade ioc or use "
            "another database")


def upgrade(conn: Connection) -> None:
    """Apply every pending revision on ``conn``, inside its transaction (see env.py)."""
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def missing_tables(conn: Connection, tables: Iterable[Table]) -> list[str]:
    """Tables a store uses that no revision created: a model changed without a migration."""
    present = set(inspect(conn).get_table_names())
    return sorted(table.name for table in tables if table.name not in present)


# -- for ``ioc db`` ------------------------------------------------------------------------


async def database_state(url: str) -> SchemaState:
    """Where the database at ``url`` stands (reads only, no lock)."""
    parsed = make_url(url)
    engine = dialects.for_url(parsed, busy_timeout=5.0).create_engine(parsed)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read_state)
    finally:
        await engine.dispose()


async def upgrade_database(url: str, where: str) -> SchemaState:
    """Upgrade the database at ``url`` to head under the schema lock; return where it was."""
    parsed = make_url(url)
    dialect = dialects.for_url(parsed, busy_timeout=5.0)
    engine = dialect.create_engine(parsed)
    try:
        write = engine.execution_options(**{dialects.WRITE_OPTION: True})
        async with write.begin() as conn:
            await dialect.lock_schema(conn)
            return await conn.run_sync(lambda sync: ensure_schema(sync, where=where))
    finally:
        await engine.dispose()

