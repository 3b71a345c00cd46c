"""The real PostgreSQL, a fresh database per test, for the multi-process scale tests; and a
private PostgreSQL cluster for tests that stop and start the server."""

from collections.abc import Iterator

import pytest

from tests.scale.private_postgres import PrivatePostgres, private_postgres
from tests.store.conftest import postgres_url  # noqa: F401  (fixture)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running cluster of this test's own, removed at teardown even if the test fails."""
    with private_postgres() as cluster:
        yield cluster
