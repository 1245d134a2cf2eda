"""Moved to tests/support/wire.py. Kept only while chaos/run.py imports from `tests.wire`;
delete once it imports `from tests.support.wire import Receiver, SmtpCatcher`."""

from tests.support.wire import Receiver, SmtpCatcher  # noqa: F401
