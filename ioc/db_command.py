"""``ioc db upgrade`` and ``ioc db current``: the database schema, for operators and scripts.

With ``storage.auto_migrate: false`` the service never changes the schema; these commands are
then how a deployment applies migrations (``ioc db upgrade``) and checks that it has to
(``ioc db current``, whose exit code tells a script whether the database is behind or ahead).
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy.engine import make_url

from ioc.store.migrate import SchemaState, database_state, upgrade_database
from ioc.store.schema import SchemaVersionError

EXIT_HEAD = 0
EXIT_FAILED = 1     # the database could not be reached or upgraded
EXIT_BEHIND = 3     # pending migrations (also an empty or pre-migration database)
EXIT_AHEAD = 4      # migrated by a newer ioc


def current(url: str) -> int:
    where = make_url(url).render_as_string(hide_password=True)
    try:
        state = asyncio.run(database_state(url))
    except Exception as exc:  # any driver error: say it and exit non-zero, no traceback
        return _failed("current", where, exc)
    print(f"{where}: {_current_line(state)}")
    return {"head": EXIT_HEAD, "ahead": EXIT_AHEAD}.get(state.status, EXIT_BEHIND)


def _current_line(state: SchemaState) -> str:
    if state.status == "head":
        return f"{state.describe()} (head)"
    if state.status == "ahead":
        return (f"{state.describe()} (ahead: newer than {state.head}, the newest this ioc "
                "knows; upgrade ioc)")
    return f"{state.describe()} (behind head {state.head}; run `ioc db upgrade`)"


def upgrade(url: str) -> int:
    where = make_url(url).render_as_string(hide_password=True)
    try:
        before = asyncio.run(upgrade_database(url, where))
    except SchemaVersionError as exc:
        print(f"ioc db upgrade: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        return _failed("upgrade", where, exc)
    if before.status == "head":
        print(f"{where}: already at {before.head} (head)")
    else:
        print(f"{where}: upgraded {before.describe()} -> {before.head}")
    return EXIT_HEAD


def _failed(command: str, where: str, exc: BaseException) -> int:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"ioc db {command}: {where}: {type(exc).__name__}: {message}", file=sys.stderr)
    return EXIT_FAILED
