"""The desk's text work: a winner promoted in the policy's own text (flow or block style, every
other line as it was), a rollback renumbered, and what an activation moves."""

from __future__ import annotations

import pytest

from leadflow.governance.desk import moves, promoted, renumbered
from rules.validate import load_policy_bytes
from rules.variants import ab_steps
from tests.support.policy import ab_policy_text

FLOW = "{variants: [welcome-guide, welcome-checklist], split: [50, 50]}"
STYLES = {
    "flow": FLOW,
    "flow over lines": "{variants: [welcome-guide, welcome-checklist],\n"
                       "                               split: [50, 50]}",
}


def _promote(text: str, variant: str) -> str:
    (ab,) = ab_steps(load_policy_bytes(text.encode(), "p.yaml").policy)
    out = promoted(text, ab.where, variant)
    assert ab_steps(load_policy_bytes(out.encode(), "p.yaml").policy) == []  # no test left
    return out


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_winner_replaces_its_test_and_nothing_else(style: str) -> None:
    text = ab_policy_text().replace(FLOW, STYLES[style])
    out = _promote(text, "welcome-checklist")
    before, after = text.splitlines(), out.splitlines()
    changed = [line for line in after if line not in before]
    assert changed == ["        - {after: 0d, send: welcome-checklist}"]
    assert len(before) - len(after) == STYLES[style].count("\n")


def test_a_winner_in_block_style() -> None:
    flow_step = "        - {after: 0d, send: " + FLOW + "}\n"
    block_step = ("        - after: 0d\n          send:\n"
                  "            variants: [welcome-guide, welcome-checklist]\n"
                  "            # half each\n            split: [50, 50]\n")
    text = ab_policy_text()
    assert flow_step in text
    out = _promote(text.replace(flow_step, block_step), "welcome-guide")
    assert "        - after: 0d\n          send: welcome-guide\n        - {after: 3d, send: case-study}" \
        in out


def test_renumbered_and_moves() -> None:
    text = "policy: p\nversion: 3   # the third\nx:\n  version: 9\n"
    assert renumbered(text, 7) == "policy: p\nversion: 7\nx:\n  version: 9\n"
    with pytest.raises(ValueError):
        renumbered("policy: p\n", 2)
    old = [{"state": "sales-ready"}, {"state": "nurturing"}, {"state": "converted"}, {"state": "scored"}]
    new = [{"state": "nurturing"}, {"state": "nurturing"}, {"state": "nurturing"}, {"state": "nurturing"}]
    assert moves(old, new, frozenset({"converted"})) == {
        "running": 3, "moving": 2, "moves": {"sales-ready -> nurturing": 1, "scored -> nurturing": 1}}
