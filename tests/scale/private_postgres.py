"""A throwaway PostgreSQL cluster that a test may stop and start at will.

The machine's shared server serves every other test, so a test that restarts PostgreSQL under
a running ioc gets its own cluster from the Debian binaries: initdb into a temporary
directory, a free TCP port on loopback, the unix socket inside that directory, and durability
switched off where it costs no correctness the tests look at: fsync and full-page writes only
matter when the machine itself crashes, which a test never does. ``synchronous_commit`` stays
on: without it a commit is acknowledged before its WAL leaves shared memory, so ``pg_ctl stop
-m immediate`` (a server crash) would lose transactions ioc was told were committed.

initdb and the server refuse to run as root, and tests run as root under CI, so as root every
command runs as the ``postgres`` user (``runuser``) in a directory handed over to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import free_port

_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def find_pg_bin() -> Path:
    """Directory of initdb/pg_ctl: the newest Debian version, else the PATH; skip without."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    path = candidates[-1] if candidates else shutil.which("initdb")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb and pg_ctl are required under CI (apt-get install "
                        "postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    return Path(path).parent


def _postgres_user() -> tuple[int, int]:
    """uid and gid of ``postgres``, who runs the cluster when the tests run as root."""
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        message = "running as root needs the postgres user (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return owner.pw_uid, owner.pw_gid


class PrivatePostgres:
    """One cluster in ``root``; :meth:`stop` and :meth:`start` simulate a server restart."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self.data = root / "data"
        self.log = root / "server.log"
        self.as_postgres = os.geteuid() == 0

    @property
    def server_url(self) -> str:
        """libpq URL of the ``postgres`` maintenance database (for asyncpg)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL ioc takes as ``storage.url``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                                timeout=120, check=False)
        if check and result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} {args[1] if len(args) > 1 else ''} failed "
                               f"({result.returncode}): {result.stderr.strip()}\n{tail}")
        return result

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        settings = {**_SETTINGS, "port": str(self.port),
                    "unix_socket_directories": f"'{self.root}'"}
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends sessions and checkpoints; ``immediate`` is a crash, recovered at start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def kill(self) -> None:
        """Teardown: stop at once if a server is (still) running; never raises."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                      check=False)

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started cluster, stopped and deleted afterwards whatever happened in between."""
    bin_dir = find_pg_bin()
    root = Path(tempfile.mkdtemp(prefix="ioc-pg-"))
    cluster = PrivatePostgres(bin_dir, root, free_port())
    try:
        if cluster.as_postgres:
            os.chown(root, *_postgres_user())
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.kill()
        shutil.rmtree(root, ignore_errors=True)
