"""Config loading: every bad-config fixture yields its exact error with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc.config_types import format_duration, parse_duration
from service.config import ConfigError, load_config, parse_config

DATA = Path(__file__).parent / "data" / "config"
ROOT = Path(__file__).parent.parent

# fixture file → (path, fragment of the message) for every issue expected, in any order
BAD_CONFIGS = {
    "unknown_key": [("storage.retension", "unknown key (allowed here: auto_migrate, batch_size")],
    "bad_duration": [("collectors[0].interval", "expected a duration such as 15s")],
    "unknown_type": [("collectors[0].type", "unknown: 'htpp' (known types: ")],
    "unknown_department": [("collectors[0].department", "unknown department 'SYT'")],
    "duplicate_name": [("collectors[1].name", "duplicate collector name 'a'")],
    "missing_env": [("storage.url", "IOC_TEST_SURELY_UNSET_PASSWORD is not set")],
    "bad_url": [("collectors[0].url", "expected an http:// or https:// URL")],
    "missing_key": [("collectors[0].url", "required key is missing")],
    "timeout_over_interval": [("collectors[0].timeout", "longer than the interval")],
    "timeout_after_a_broken_block": [("collectors[0].type", "unknown: 'htpp'"),
                                     ("collectors[1].timeout", "longer than the interval")],
    "bad_listen": [("service.listen", "expected HOST:PORT")],
    "bad_reference": [("simulator.token", "${simulator.nothing} refers to no string or number"),
                      ("service.title", "${simulator.enabled} refers to no string or number")],
    "bad_status": [("collectors[0].expected_status", "expected a status code or range")],
    "bad_yaml": [("", "invalid YAML: line")],
    "bad_storage_url": [("storage.url", "expected sqlite+aiosqlite:///PATH")],
    "rollups_outlived_by_samples": [
        ("storage", "rollups.retention_5m (30d) must not be shorter than retention (60d)")],
    "rollups_1h_shorter_than_5m": [
        ("storage.rollups", "retention_1h (90d) must not be shorter than retention_5m (180d)")],
    "bad_regex": [
        ("collectors[0].body_regex", "invalid perl operator: (?<="),
        ("collectors[1].expect", "invalid escape sequence: \\1"),
        ("events.syslog.patterns[0].match", "invalid perl operator: (?!"),
        ("alerts.inhibit_rules[0].source_matchers", "invalid perl operator: (?="),
    ],
    "three_mistakes": [
        ("collection.interval", "expected a duration"),
        ("collectors[0].intreval", "unknown key"),
        ("collectors[1].department", "unknown department 'NOPE'"),
    ],
}


def test_every_fixture_has_expectations() -> None:
    files = {p.name.removesuffix(".bad.yaml") for p in DATA.glob("*.bad.yaml")}
    assert files == set(BAD_CONFIGS)


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_reports_each_error(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / f"{name}.bad.yaml", env={})
    issues = info.value.issues
    expected = BAD_CONFIGS[name]
    assert len(issues) == len(expected), issues
    for path, fragment in expected:
        assert any(i.path == path and fragment in i.message for i in issues), (path, issues)


def test_errors_inside_a_collector_name_it() -> None:
    raw = {"departments": [{"code": "STP", "name": "Sở Tư pháp", "kind": "department"}],
           "collectors": [
               {"type": "http", "name": "stp-health", "department": "STP",
                "url": "http://127.0.0.1:9/"},
               {"type": "http", "name": "stttt-health", "department": "STTTT",
                "url": "http://127.0.0.1:9/", "interval": "soon"},
               {"type": "http", "department": "STP", "url": "http://127.0.0.1:9/"},
               {"type": "tcp", "name": "${IOC_TEST_NAME}", "department": "STP"},
               {"type": "http", "name": "x" * 100, "department": "STP", "url": "ftp://a"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={"IOC_TEST_NAME": "s3cret-name"})
    lines = str(info.value).splitlines()
    assert any(line.startswith("  - collectors[1].department (stttt-health): unknown "
                               "department 'STTTT'") for line in lines), lines
    assert any(line.startswith("  - collectors[1].interval (stttt-health): ")
               for line in lines), lines
    assert any(line.startswith("  - collectors[2].name: required key") for line in lines)
    assert any(line.startswith("  - collectors[3].host (***): ") for line in lines), lines
    assert any(line.startswith(f"  - collectors[4].url ({'x' * 61}...): ") for line in lines)
    assert "s3cret-name" not in str(info.value)
    issue = next(i for i in info.value.issues if i.path == "collectors[1].interval")
    assert issue.subject == "stttt-health"


def test_one_setting_moves_the_demo_simulator_and_every_url_that_polls_it() -> None:
    moved = load_config(ROOT / "config.yaml", env={"IOC_SIM_LISTEN": "127.0.0.1:18081"})
    default = load_config(ROOT / "config.yaml", env={})
    assert moved.simulator.listen == "127.0.0.1:18081"
    assert default.simulator.listen == "127.0.0.1:8081"
    for config, host in ((moved, "127.0.0.1:18081"), (default, "127.0.0.1:8081")):
        urls = [str(c.url) for c in config.collectors]  # type: ignore[attr-defined]
        assert len(urls) == 38 and all(u.startswith(f"http://{host}/") for u in urls), urls


def test_references_to_other_keys() -> None:
    raw = {"simulator": {"listen": "${SIM:-127.0.0.1:8081}"},
           "service": {"title": "$${simulator.listen} at ${simulator.listen}"},
           "departments": [{"code": "STP", "name": "Sở Tư pháp", "kind": "department"}],
           "collectors": [{"type": "http", "name": "a", "department": "STP",
                           "url": "http://${simulator.listen}/STP/health"}],
           "province": {"name": "${service.title}"}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={"SIM": "10.0.0.5:9000"})
    (issue,) = info.value.issues  # a chain is refused, whatever it would have given
    assert issue.path == "province.name" and "a reference of its own" in issue.message
    del raw["province"]
    config = parse_config(raw, env={"SIM": "10.0.0.5:9000"})
    assert config.service.title == "${simulator.listen} at 10.0.0.5:9000"
    url = config.collectors[0].url  # type: ignore[attr-defined]
    assert str(url) == "http://10.0.0.5:9000/STP/health"
    assert "10.0.0.5:9000" in config.secrets  # from the environment: masked in logs


def test_demo_config_is_valid() -> None:
    config = load_config(ROOT / "config.yaml", env={})
    assert config.simulator.enabled
    assert config.storage.url.startswith("sqlite+aiosqlite:///var/")
    assert len(config.collectors) >= 12
    assert {c.department for c in config.collectors} <= {d.code for d in config.departments}


def test_defaults_apply() -> None:
    config = parse_config({"departments": [{"code": "STP", "name": "Sở Tư pháp"}],
                           "collectors": [{"type": "http", "name": "a", "department": "STP",
                                           "url": "http://x/"}]}, env={})
    collector = config.collectors[0]
    assert config.interval_of(collector) == 30.0
    assert config.timeout_of(collector) == 10.0
    assert config.collection.max_concurrency == 256
    assert config.storage.retention == 30 * 86400
    assert config.service.listen == "127.0.0.1:8080"


def test_env_substitution_with_defaults_and_escape() -> None:
    raw = {"storage": {"url": "postgresql+asyncpg://ioc:${PW}@${HOST:-db}/ioc"},
           "service": {"title": "cost $$5 ${EMPTY:-fallback}"}}
    config = parse_config(raw, env={"PW": "s3cr:et#", "EMPTY": ""})
    assert config.storage.url == "postgresql+asyncpg://ioc:s3cr:et#@db/ioc"
    assert config.service.title == "cost $5 fallback"
    assert "s3cr:et#" in config.secrets


@pytest.mark.parametrize(("text", "seconds"), [
    ("15s", 15), ("5m", 300), ("1h", 3600), ("30d", 2592000), ("500ms", 0.5),
    ("1h30m", 5400), ("2w", 1209600), ("1.5s", 1.5),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "15", "5x", "m5", "1h 30m", "0s", 15, None, True])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (15, "15s"), (300, "5m"),
                                               (86400 * 30, "30d"), (90, "90s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("raw", [
    {"auth": {"tokens": [{"name": "ops", "token": "Tiny-Secret-9", "roles": ["viewer"]}]}},
    {"alerts": {"oncall": {"link_secret": "Tiny-Secret-9"}}},
    {"reports": {"link_secret": "Tiny-Secret-9"}},
])
def test_a_refused_secret_is_never_quoted_back(raw: dict[str, object]) -> None:
    """Written into the file (not from the environment): still not shown in the error."""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    assert "16 characters" in str(caught.value)
    assert "Tiny-Secret-9" not in str(caught.value)
