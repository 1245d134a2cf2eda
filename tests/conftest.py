"""Fixtures for every folder of tests (helpers to import are in tests/support/), and the marker
each test gets from its folder: unit, workflows, service or e2e (registered in pyproject.toml)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rules.compile import CompiledPolicy
from tests.support import policy

if TYPE_CHECKING:
    from tests.support.temporal_harness import SharedDevServer

HERE = Path(__file__).resolve().parent
KINDS = ("unit", "workflows", "service", "e2e")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(item.path).resolve().relative_to(HERE).parts[0]
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{{{','.join(KINDS)}}}/")
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def default_policy() -> CompiledPolicy:
    return policy.default_policy()


@pytest.fixture(scope="session")
def shared_server() -> Iterator[SharedDevServer]:
    """The session's one Temporal dev server for tests that need none of their own, started at
    the first test that asks for it; each user takes a namespace and task queue on it (`space`)."""
    from tests.support.temporal_harness import SharedDevServer

    server = SharedDevServer()
    yield server
    server.close()
