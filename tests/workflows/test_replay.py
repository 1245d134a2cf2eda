"""Histories recorded from earlier versions of the workflows must replay on today's code.
A change that makes LeadWorkflow or HandoffWorkflow non-deterministic fails here, in CI.
tests/workflows/histories/outbox-era/ holds runs from before deliveries were real (a local
`deliver` activity where a delivery activity starts now): workflow.patched("real-delivery") keeps
them replaying. Record today's afresh (after an intended change, versioned with workflow.patched,
moving the old ones to a folder of their own as above) with:
    rm tests/workflows/histories/*.json
    LEADFLOW_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/workflows/test_lead_workflow.py \
        -k 'not ten_thousand'
"""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.client import WorkflowHistory

from tests.support.temporal_harness import HISTORIES, replayer

FILES = sorted(HISTORIES.rglob("*.json"))


def test_histories_were_recorded():
    assert len(list(HISTORIES.glob("*.json"))) >= 6, "run the workflow tests with LEADFLOW_RECORD_HISTORIES=1"
    assert len(list(HISTORIES.glob("outbox-era/*.json"))) >= 6


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HISTORIES).with_suffix("")) for p in FILES])
def test_recorded_history_replays(path):
    record = json.loads(path.read_text())
    history = WorkflowHistory.from_json(record["workflow_id"], record["history"])
    result = asyncio.run(replayer().replay_workflow(history, raise_on_replay_failure=False))
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
