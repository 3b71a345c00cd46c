"""Log lines: one per event, logfmt or JSON, and secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ioc.logs import fields, setup_logging
from service.config import parse_config


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logfmt_line_with_fields(restore_root_logger) -> None:
    out = io.StringIO()
    setup_logging("info", "logfmt", stream=out)
    logging.getLogger("ioc.collector").warning(
        "target down", extra=fields(target="stp-web", error="unexpected HTTP status 503"))
    line = out.getvalue().strip()
    assert "\n" not in line
    assert "level=warning logger=ioc.collector" in line
    assert 'msg="target down" target=stp-web error="unexpected HTTP status 503"' in line


def test_json_line(restore_root_logger) -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    logging.getLogger("ioc").info("ioc started", extra=fields(targets=36, url="http://x"))
    entry = json.loads(out.getvalue())
    assert entry["msg"] == "ioc started" and entry["targets"] == 36 and entry["level"] == "info"


def test_secrets_from_the_environment_are_masked(restore_root_logger) -> None:
    config = parse_config(
        {"storage": {"url": "postgresql+asyncpg://ioc:${IOC_DB_PASSWORD}@db/ioc"},
         "simulator": {"token": "${IOC_SIM_TOKEN}"}},
        env={"IOC_DB_PASSWORD": "hunter2-db", "IOC_SIM_TOKEN": "sim-secret-77"})
    out = io.StringIO()
    setup_logging("debug", "logfmt", config.secrets, stream=out)
    log = logging.getLogger("ioc.store")
    log.error("cannot connect to %s", config.storage.url)
    log.info("token", extra=fields(value=config.simulator.token.get_secret_value()))
    text = out.getvalue()
    assert "hunter2-db" not in text and "sim-secret-77" not in text
    assert text.count("***") == 2


def test_level_filters(restore_root_logger) -> None:
    out = io.StringIO()
    setup_logging("warning", "logfmt", stream=out)
    logging.getLogger("ioc").info("quiet")
    assert out.getvalue() == ""


@pytest.mark.parametrize(("level", "alembic_lines"), [("info", 0), ("debug", 1)])
def test_a_migration_logs_one_line_unless_debugging(restore_root_logger, tmp_path,
                                                    level: str, alembic_lines: int) -> None:
    from sqlalchemy import create_engine

    from ioc.store.migrate import ensure_schema

    out = io.StringIO()
    setup_logging(level, "logfmt", stream=out)
    engine = create_engine(f"sqlite:///{tmp_path / 'ioc.db'}")
    try:
        with engine.begin() as conn:
            ensure_schema(conn, where="test.db")
        with engine.begin() as conn:
            ensure_schema(conn, where="test.db")  # at head: nothing to say
    finally:
        engine.dispose()
    lines = out.getvalue().splitlines()
    ours = [line for line in lines if "logger=ioc.store" in line]
    assert len(ours) == 1 and "schema upgraded from no ioc schema" in ours[0], lines
    theirs = [line for line in lines if "logger=alembic" in line]
    assert (len(theirs) > 0) == bool(alembic_lines), lines
    if level == "info":
        assert len(lines) == 1, lines
