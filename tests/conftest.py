"""Fixtures for every folder of tests (helpers to import are in tests/support/), and the marker
each test gets from its folder: unit, workflows, service or e2e (registered in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.compile import CompiledPolicy
from tests.support import policy

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
