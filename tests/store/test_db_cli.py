"""`ioc db current` / `ioc db upgrade` and `storage.auto_migrate`, as an operator uses them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ioc import db_command
from ioc.store.migrate import BASELINE, VERSION_TABLE, alembic_config, head
from service.cli import main

ROOT = Path(__file__).parent.parent.parent


def ioc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioc", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def write_config(tmp_path: Path, url: str, **storage: object) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": url, **storage},
        "logging": {"level": "warning"},
    }), encoding="utf-8")
    return str(path)


@pytest.fixture
def db_url(store_url: str) -> str:
    if store_url.startswith("sqlite"):
        Path(store_url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    return store_url


async def set_revision(url: str, revision: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :r"),
                               {"r": revision})
    finally:
        await engine.dispose()


async def test_current_and_upgrade_report_and_exit_by_state(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def run(command_: Callable[[str], int]) -> tuple[int, str, str]:
        code = command_(db_url)  # asyncio.run inside, so on a thread of its own
        out, err = capsys.readouterr()
        return code, out, err

    shown = db_url.split("://", 1)[0]
    code, out, _ = await asyncio.to_thread(run, db_command.current)
    assert code == 3 and out.startswith(shown)
    assert f"no ioc schema (empty database) (behind head {head()}" in out

    await asyncio.to_thread(command.upgrade, alembic_config(db_url), BASELINE)
    code, out, _ = await asyncio.to_thread(run, db_command.current)
    assert code == 3
    assert f"{BASELINE} (behind head {head()}; run `ioc db upgrade`)" in out

    code, out, err = await asyncio.to_thread(run, db_command.upgrade)
    assert code == 0, err
    assert f"upgraded {BASELINE} -> {head()}" in out

    code, out, _ = await asyncio.to_thread(run, db_command.current)
    assert (code, out.strip().endswith(f": {head()} (head)")) == (0, True)
    code, out, _ = await asyncio.to_thread(run, db_command.upgrade)
    assert code == 0 and f"already at {head()} (head)" in out

    await set_revision(db_url, "0099_future")
    code, out, _ = await asyncio.to_thread(run, db_command.current)
    assert code == 4
    assert f"0099_future (ahead: newer than {head()}" in out
    code, _, err = await asyncio.to_thread(run, db_command.upgrade)
    assert code == 1
    assert "migrated by a newer ioc" in err


def test_the_ioc_command_runs_db_current_and_upgrade(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}")

    behind = ioc("db", "current", "-c", config)
    upgraded = ioc("db", "upgrade", "-c", config)
    current = ioc("db", "current", "-c", config)

    assert behind.returncode == 3, behind.stderr
    assert (upgraded.returncode, current.returncode) == (0, 0), upgraded.stderr
    assert f"-> {head()}" in upgraded.stdout
    assert current.stdout.strip().endswith(f"{head()} (head)")


def test_an_unreachable_database_exits_1_without_its_password(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql+asyncpg://ioc:s3cret@127.0.0.1:1/ioc")

    result = ioc("db", "current", "-c", config)

    assert result.returncode == 1
    assert "ioc db current: postgresql+asyncpg://ioc:***@127.0.0.1:1/ioc:" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///x.db", auto_migrate="sometimes")

    assert main(["db", "upgrade", "-c", config]) == 2  # before logging is set up: in-process
    assert "storage.auto_migrate" in capsys.readouterr().err


async def test_run_without_auto_migrate_refuses_a_database_behind(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), BASELINE)
    config = write_config(tmp_path, url, auto_migrate=False)

    result = await asyncio.to_thread(ioc, "run", "-c", config)

    assert result.returncode == 1
    assert "storage.auto_migrate is false: run `ioc db upgrade" in result.stderr
    assert f"at {BASELINE}, behind this ioc's schema {head()}" in result.stderr
    assert "running at" not in result.stdout
