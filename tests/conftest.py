"""Fixtures for every folder of tests (helpers to import are in tests/support/)."""

from __future__ import annotations

import pytest

from rules.compile import CompiledPolicy
from tests.support import policy


@pytest.fixture(scope="session")
def default_policy() -> CompiledPolicy:
    return policy.default_policy()
