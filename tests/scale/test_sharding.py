"""Target sharding: every target has exactly one owner, shares are even, growth moves little."""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ioc.sharding import Shard, assignment, owner, parse_shard
from service.app import IocApp
from service.cli import EXIT_BAD_CONFIG, main
from service.config import ConfigError, parse_config
from tests.conftest import demo_config, free_port

NAMES = [f"{unit}-{kind}" for unit in range(1000) for kind in ("health", "portal", "dns")]


def test_parse_shard() -> None:
    assert parse_shard("1/3") == Shard(1, 3)
    assert parse_shard(" 0 / 1 ") == Shard(0, 1)
    assert str(parse_shard("2/5")) == "2/5"
    for bad, message in [("3/3", "0 to 2"), ("1/0", "1 to 1024"), ("a/b", "INDEX/COUNT"),
                         ("1", "INDEX/COUNT"), ("-1/3", "INDEX/COUNT")]:
        with pytest.raises(ValueError, match=message):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_every_target_has_exactly_one_owner(count: int) -> None:
    shares = [Shard(index, count).select(NAMES) for index in range(count)]
    assert sorted(name for share in shares for name in share) == sorted(NAMES)
    # and the shares are even: within 10 % of 1/N each
    for share in shares:
        assert abs(len(share) - len(NAMES) / count) < 0.1 * len(NAMES) / count


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8])
def test_adding_an_instance_moves_only_its_share(count: int) -> None:
    before = assignment(NAMES, count)
    after = assignment(NAMES, count + 1)
    moved = [name for name in NAMES if before[name] != after[name]]
    # only targets the new instance wins move, and about 1/(N+1) of them
    assert all(after[name] == count for name in moved)
    assert abs(len(moved) / len(NAMES) - 1 / (count + 1)) < 0.03
    # `hash mod N` moves about N/(N+1) of them instead
    mod_moved = sum(1 for name in NAMES
                    if zlib.crc32(name.encode()) % count != zlib.crc32(name.encode()) % (count + 1))
    assert count == 1 or len(moved) < mod_moved / 2


def test_owner_is_stable_across_processes_and_versions() -> None:
    """Pinned values: a change of hash would silently reshuffle every running deployment."""
    assert {name: owner(name, 3) for name in
            ("stttt-health", "stp-health", "cat-health", "vithanh-health", "dvc-portal")} == {
        "stttt-health": 0, "stp-health": 0, "cat-health": 0, "vithanh-health": 1,
        "dvc-portal": 2}
    assert Counter(assignment(NAMES, 1).values()) == {0: len(NAMES)}


def test_collection_shard_is_validated_with_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"collection": {"shard": "3/3"}}, env={})
    (issue,) = err.value.issues
    assert issue.path == "collection.shard"
    assert "0 to 2" in issue.message
    assert parse_config({"collection": {"shard": "1/2"}}, env={}).collection.shard == "1/2"


def test_cli_refuses_a_bad_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  url: sqlite+aiosqlite:///" + str(tmp_path / "ioc.db") + "\n")
    assert main(["run", "-c", str(config), "--shard", "2/2"]) == EXIT_BAD_CONFIG
    assert "--shard: shard index must be 0 to 1" in capsys.readouterr().err


@pytest.mark.parametrize(("raw", "path", "fragment"), [
    ({"collection": {"shard": "auto"}}, "collection.shard", "auto needs a PostgreSQL store"),
    ({"collection": {"shard": "Auto", "shard_lease": "500ms"},
      "storage": {"url": "postgresql+asyncpg://ioc@db/ioc"}},
     "collection.shard_lease", "the lease must be 1s to 5m, got 0.5s"),
    ({"collection": {"shard": "automatic"}}, "collection.shard", "or auto, got 'automatic'"),
])
def test_auto_shard_is_checked_with_its_path(raw: dict[str, Any], path: str,
                                             fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    (issue,) = err.value.issues
    assert issue.path == path and fragment in issue.message, issue


def test_auto_shard_on_postgresql_is_accepted() -> None:
    config = parse_config({"collection": {"shard": " AUTO ", "shard_lease": "20s"},
                           "storage": {"url": "postgresql+asyncpg://ioc@db/ioc"}}, env={})
    assert (config.collection.shard, config.collection.shard_lease) == ("auto", 20.0)


def test_cli_refuses_auto_shard_on_sqlite(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  url: sqlite+aiosqlite:///" + str(tmp_path / "ioc.db") + "\n")
    assert main(["run", "-c", str(config), "--shard", "auto"]) == EXIT_BAD_CONFIG
    assert "--shard: auto needs a PostgreSQL store" in capsys.readouterr().err
    assert not (tmp_path / "ioc.db").exists()  # refused before anything was opened


def test_an_auto_instance_starts_with_every_target_shown_as_another_s(tmp_path: Path) -> None:
    app = IocApp(demo_config(tmp_path, free_port(), extra={
        "storage": {"url": "postgresql+asyncpg://ioc@127.0.0.1:1/ioc"},
        "collection": {"interval": "200ms", "timeout": "150ms", "shard": "auto"}}))
    # nothing is polled until the first check of the membership proves what is owned
    assert app.runners == {} and app.membership is not None
    assert all(state.remote and state.shard is None for state in app.board.targets.values())
    assert app.scheduler.anchored
    assert app.registry.get_sample_value("ioc_shard_member") == 0


@pytest.mark.parametrize("count", [2, 3])
def test_an_instance_builds_only_its_targets(tmp_path: Path, count: int) -> None:
    port = free_port()
    everyone = set(IocApp(demo_config(tmp_path, port)).runners)
    owned = []
    for index in range(count):
        app = IocApp(demo_config(tmp_path, port, extra={"collection": {
            "interval": "200ms", "timeout": "150ms", "shard": f"{index}/{count}"}}))
        assert str(app.shard) == f"{index}/{count}"
        assert set(app.runners) == set(app.board.targets)  # the board shows its own share
        assert app.registry.get_sample_value("ioc_targets") == len(app.runners)
        owned.append(set(app.runners))
    assert set().union(*owned) == everyone
    assert sum(len(share) for share in owned) == len(everyone)
