"""Fuzz the JSON API from its own OpenAPI document with schemathesis.

A real ioc (simulator, SQLite in a temporary directory) runs in a thread with its own event
loop for the whole module; schemathesis loads ``/api/openapi.json`` from it and sends every
operation generated valid and invalid inputs, once with an admin token (which holds every
role) and once anonymously. Each answer must not be a 5xx, must have a documented status and
content type, and must validate against the schema documented for that status. Requests carry
a timeout, so a hang fails too. The example budget is small and the generation derandomized,
so a run is repeatable and takes seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from service.app import IocApp
from tests.conftest import demo_config, free_port
from tests.trust.conftest import TOKENS

EXAMPLES = 10
TIMEOUT = 10.0
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]


class AppThread:
    """An IocApp served from a private event loop, so synchronous tests can call it."""

    def __init__(self, app: IocApp) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> IocApp:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(30)
        return self.app

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(grace=1.0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IocApp]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = demo_config(Path(tmp), free_port(), codes=["STP", "CAT"], extra={
        # anonymous requests read (the default wall); writes need a token
        "auth": {"anonymous": ["viewer"], "max_failures": 1000,
                 "tokens": [{"name": f"{role}-desk", "token": token, "roles": [role]}
                            for role, token in TOKENS.items()]},
    })
    with AppThread(IocApp(config)) as app:
        yield app


@pytest.fixture(scope="module")
def api_schema(live_app: IocApp) -> Any:
    return schemathesis.openapi.from_url(f"{live_app.url}/api/openapi.json", timeout=TIMEOUT)


def fuzz(schema: Any, mode: GenerationMode, headers: dict[str, str]) -> list[str]:
    """Run every operation's generated cases; the failures, one line per operation."""
    failures: list[str] = []
    sent: list[str] = []
    for result in schema.get_all_operations():
        failure = fuzz_operation(result.ok(), mode, headers, sent)
        if failure:
            failures.append(failure)
    operations = {result.ok().label for result in schema.get_all_operations()}
    if mode is GenerationMode.POSITIVE:
        assert set(sent) == operations, "every operation was called"
    return failures


def fuzz_operation(operation: Any, mode: GenerationMode, headers: dict[str, str],
                   sent: list[str]) -> str | None:
    """Generated cases of one operation; what went wrong, or None."""

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case: Any) -> None:
        sent.append(operation.label)
        case.call_and_validate(headers=headers, timeout=TIMEOUT, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # nothing invalid can be generated for it (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label
    except Exception as exc:  # every finding is reported, not only the first
        return f"{operation.label}: {exc}"
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_api_answers_as_documented(api_schema: Any, who: str, mode: GenerationMode) -> None:
    headers = {"Authorization": f"Bearer {TOKENS['admin']}"} if who == "admin" else {}
    failures = fuzz(api_schema, mode, headers)
    assert not failures, "\n\n".join(failures)
