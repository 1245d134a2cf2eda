"""The engine must never take the process down. Run in child processes: a crash fails a test
instead of killing the test runner."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

# Dirty the heap before each ruleset is registered, then delete sessions whose facts match no
# policy rule: the pattern that made durable-rules free() uninitialised pointers.
SCRIPT = """
import json, sys
import durable_rules_engine as raw
from rules import engine
use_engine = sys.argv[1] == "engine"
for n in range(40):
    churn = [bytearray(b"\\xab" * (64 * (i % 50 + 1))) for i in range(4000)]
    del churn
    definition = {"r": {"all": [{"m": {"$and": [{"k": "x"}, {"a": 1}]}}], "pri": 1}}
    if use_engine:
        handle = engine.register(f"safety-{n}", definition)
        for i in range(50):
            with engine.Session(handle) as s:
                assert s.match({"k": "x", "a": 0}) == []
        assert engine.leaked_sessions() == 0 and engine.live_sessions() == 0
    else:
        handle = raw.create_ruleset(f"raw-{n}", json.dumps(definition))
        for i in range(50):
            code, state = raw.assert_fact(handle, json.dumps({"k": "x", "a": 0, "sid": f"s{i}", "id": 1}))
            raw.delete_state(handle, f"s{i}")
print("survived")
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), mode],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_deleting_sessions_where_nothing_matched_does_not_crash():
    out = _run("engine")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "survived"


def test_control_the_raw_engine_crashes_on_the_same_pattern():
    # If this ever passes, durable-rules fixed the bug and the sentinel in rules/engine.py can go.
    out = _run("raw")
    assert out.returncode != 0
    assert "survived" not in out.stdout
