"""The engine must never take the process down. Each case runs in a child process: a crash or a
hang fails a test instead of the test runner. The controls show the raw engine still has the
flaw our path avoids; if one ever passes, durable-rules fixed it and the guard can go."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.policy import ROOT

# Dirty the heap, register many rulesets, and match facts that hit some rules and none: our
# path keeps one session per ruleset and retracts every fact, and memory stays flat.
OURS = """
import resource
from rules import engine
definition = {"r": {"all": [{"m": {"$and": [{"k": "x"}, {"a": 1}]}}], "pri": 1},
              "q": {"all": [{"m": {"$and": [{"k": "x"}, {"$gte": {"b": 5}}]}}], "pri": 2}}
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for n in range(40):
    churn = [bytearray(b"\\xab" * (64 * (i % 50 + 1))) for i in range(4000)]
    del churn
    handle = engine.register(f"safety-{n}", definition)
    for i in range(50):
        assert engine.match(handle, engine.encode({"k": "x", "a": 0, "b": 1})) == []
        assert engine.match(handle, engine.encode({"k": "x", "a": 1, "b": 9})) == ["r", "q"]
    assert engine.held_facts(f"safety-{n}") == []
before = rss()
for i in range(60000):
    engine.match(handle, engine.encode({"k": "x", "a": i % 2, "b": i % 10, "pad": "p" * (i % 300)}))
grew = rss() - before
assert engine.abandoned_sessions() == 0
assert grew < 10, f"RSS grew {grew:.1f} MB over 60,000 facts"
print("survived")
"""

# A session in which no rule ever matched, deleted: durable-rules frees uninitialised pointers.
RAW_DELETE = """
import json
import durable_rules_engine as raw
for n in range(40):
    churn = [bytearray(b"\\xab" * (64 * (i % 50 + 1))) for i in range(4000)]
    del churn
    definition = {"r": {"all": [{"m": {"$and": [{"k": "x"}, {"a": 1}]}}], "pri": 1}}
    handle = raw.create_ruleset(f"raw-{n}", json.dumps(definition))
    for i in range(50):
        code, state = raw.assert_fact(handle, json.dumps({"k": "x", "a": 0, "sid": f"s{i}", "id": 1}))
        raw.delete_state(handle, f"s{i}")
print("survived")
"""

# 600 rules that test one field straight under one node: the node's 512-slot child table fills
# and durable-rules never returns (the hang policy validation used to let through).
RAW_HANG = """
import json
import durable_rules_engine as raw
definition = {f"r{i}": {"all": [{"m": {"$and": [{"k": "x"}, {"v": i}]}}], "pri": 1} for i in range(600)}
raw.create_ruleset("wide", json.dumps(definition))
print("returned")
"""


def _run(script: str, timeout: float = 120) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                              text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_our_engine_path_survives_heap_churn_and_keeps_memory_flat():
    out = _run(OURS)
    assert out is not None and out.returncode == 0, out and out.stderr[-2000:]
    assert out.stdout.strip() == "survived"


def test_control_the_raw_engine_crashes_deleting_a_session_where_nothing_matched():
    out = _run(RAW_DELETE)
    assert out is not None and out.returncode != 0
    assert "survived" not in out.stdout


def test_control_the_raw_engine_hangs_on_a_node_with_600_children():
    assert _run(RAW_HANG, timeout=15) is None
