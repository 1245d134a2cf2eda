"""The desk's text work: a winner promoted in the policy's own text (flow or block style, every
other line as it was), a rollback renumbered, and what an activation moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.governance.desk import moves, promoted, renumbered
from rules.validate import load_policy_bytes
from rules.variants import ab_steps
from tests.support.policy import ab_policy_text
from tests.support.temporal_harness import ROOT

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


def test_the_test_promoted_is_the_one_named_where_several_share_a_line() -> None:
    """Two A/B steps written on one line, the second promoted; a comment after a block-style
    `send:` goes with its value."""
    steps = ("        - {after: 0d, send: " + FLOW + "}\n        - {after: 3d, send: case-study}\n"
             "        - {after: 7d, send: roi-calculator}\n        - {after: 14d, send: webinar-invite}\n")
    assert steps in ab_policy_text()
    one_line = ("      steps: [{after: 0d, send: " + FLOW + "}, "
                "{after: 3d, send: {variants: [case-study, roi-calculator], split: [70, 30]}}]\n")
    text = ab_policy_text().replace("      steps:\n" + steps, one_line)
    first, second = ab_steps(load_policy_bytes(text.encode(), "p.yaml").policy)
    out = promoted(text, second.where, "roi-calculator")
    assert ("      steps: [{after: 0d, send: " + FLOW + "}, {after: 3d, send: roi-calculator}]\n") in out
    assert [ab.name for ab in ab_steps(load_policy_bytes(out.encode(), "p.yaml").policy)] == [first.name]
    commented = ab_policy_text().replace("        - {after: 0d, send: " + FLOW + "}\n",
                                         "        - after: 0d\n          send:   # the welcome test\n"
                                         "            variants: [welcome-guide, welcome-checklist]\n"
                                         "            split: [50, 50]\n")
    assert "          send: welcome-guide\n        - {after: 3d" in _promote(commented, "welcome-guide")


def test_renumbered_and_moves() -> None:
    text = "policy: p\nversion: 3   # the third\nx:\n  version: 9\n"
    assert renumbered(text, 7) == "policy: p\nversion: 7   # the third\nx:\n  version: 9\n"
    assert renumbered(text.replace("\n", "\r\n"), 7) == renumbered(text, 7)  # as a browser sends it
    with pytest.raises(ValueError):
        renumbered("policy: p\n", 2)
    old = [{"state": "sales-ready"}, {"state": "nurturing"}, {"state": "converted"}, {"state": "scored"}]
    new = [{"state": "nurturing"}, {"state": "nurturing"}, {"state": "nurturing"}, {"state": "nurturing"}]
    assert moves(old, new, frozenset({"converted"})) == {
        "running": 3, "moving": 2, "moves": {"sales-ready -> nurturing": 1, "scored -> nurturing": 1}}


def test_going_back_to_a_version_that_ran_is_approved_anew_by_the_owners_of_now(tmp_path: Path) -> None:
    """v2 ran on two approvals, then v3: activating v2 again takes approvals given since it last
    ran, and from the owners of the version that runs (v3 drops one of them)."""
    from leadflow.db.database import Database
    from leadflow.governance.registry import Conflict, Registry
    from leadflow.operations import governance
    from tests.support.policy import policy_from

    v1 = (ROOT / "policies" / "lead-lifecycle.v1.yaml").read_text()
    v2 = v1.replace("version: 1\n", "version: 2\n", 1)
    v3 = v1.replace("version: 1\n", "version: 3\n", 1).replace(
        "marketing: [marketing-ops@example.com]", "marketing: [new-marketing@example.com]")
    ledger = Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}", ("k" * 40,))
    try:
        registry = Registry(ledger)
        registry.first_start("lead-lifecycle", [policy_from(v1, "v1.yaml")])
        for text, who in ((v2, ("marketing-ops@example.com", "sales-ops@example.com")),
                          (v3, ("marketing-ops@example.com", "sales-ops@example.com"))):
            compiled = policy_from(text, "p.yaml")
            registry.propose(compiled, "ops")
            for person in who:
                governance.approve(registry, "lead-lifecycle", compiled.version, person)
            governance.activate(registry, "lead-lifecycle", compiled.version, "ops", None)
        with pytest.raises(Conflict, match="no approval yet"):
            governance.activate(registry, "lead-lifecycle", 2, "ops", None)
        # the old marketing owner approves again, but is an owner no longer
        with pytest.raises(Exception, match="not an owner"):
            governance.approve(registry, "lead-lifecycle", 2, "marketing-ops@example.com")
        governance.approve(registry, "lead-lifecycle", 2, "new-marketing@example.com")
        governance.approve(registry, "lead-lifecycle", 2, "sales-ops@example.com")
        assert governance.activate(registry, "lead-lifecycle", 2, "ops", None)["active"] == 2
    finally:
        ledger.close()
