"""Moved to tests/support/pg.py. Kept only while chaos/run.py imports `from tests import pg`;
delete once it imports `from tests.support import pg`."""

from tests.support.pg import new_database  # noqa: F401
