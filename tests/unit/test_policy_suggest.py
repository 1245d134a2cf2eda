"""`leadflow policy suggest` finds the pattern the generator planted (a webinar, then the pricing
page, is accepted by sales three times as often), proposes a next version that scores it, and
shows that version's diff on the same history; on a history without the pattern it finds none."""

from __future__ import annotations

import json

import pytest

from leadflow.cli.main import main
from leadflow.replay import generate
from rules.compile import load_compiled
from rules.policytest import run_tests
from tests.support.temporal_harness import ROOT

POLICY = str(ROOT / "policies" / "lead-lifecycle.v1.yaml")
PAIR = "webinar_attended -> page_view /pricing"


def suggest(tmp_path, capsys, log) -> dict:
    out = tmp_path / "suggested.yaml"
    code = main(["policy", "suggest", POLICY, "--events", str(log), "--out", str(out), "--json",
                 "--processes", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def write_history(path, leads=1500, days=60, seed=11) -> None:
    with open(path, "w", encoding="utf-8") as log:
        for line in generate.lines(leads, days, seed):
            log.write(line + "\n")


def test_suggest_finds_the_planted_path_to_a_sale_and_proposes_a_version_that_scores_it(tmp_path, capsys):
    log = tmp_path / "history.jsonl"
    write_history(log)
    answer = suggest(tmp_path, capsys, log)
    top = answer["findings"][0]
    assert top["feature"] == PAIR and top["sure"], answer["findings"][:3]
    assert 2.0 <= top["lift"] <= 4.5 and top["p"] < 1e-6 and top["leads"] >= 30
    low, high = top["rate_95"]
    assert low <= top["rate"] <= high
    summary = answer["summary"]
    outcomes = summary["outcomes"]
    assert summary["answered"] == outcomes["converted"] + outcomes["rejected"]
    # a generated history has no CRM outcomes: the leads sales answered are the ones to learn from
    assert summary["labelled"] == 0 and summary["known"] == summary["answered"]
    assert summary["won"] == outcomes["converted"] > 0
    assert set(summary["rejection_reasons"]) <= set(generate.REJECTIONS)

    # the proposal: the next version, a rule for the pair, its own tests still pass, nothing active
    proposed = load_compiled(answer["file"])
    assert proposed.version == 2 and answer["failing_tests"] == []
    assert all(r.ok for r in run_tests(proposed))
    rule = next(r for r in proposed.policy.scoring.engagement if r.id == "webinar-then-pricing-page")
    assert rule.signal == "intent" and rule.when["count.webinar_attended.90d"] == {"gte": 1}
    assert any("webinar-then-pricing-page" in c for c in answer["changes"])
    # its diff on the same history: more of those leads reach sales, none leaves it
    diff = answer["diff"]
    assert diff["changed"] > 0 and diff["handoffs_change"] > 0
    assert all(not move.startswith("sales-ready ->") or move.endswith("sales-ready")
               for move in diff["moves"])


def test_without_the_pattern_suggest_proposes_no_rule_for_it(tmp_path, capsys,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(generate, "ACCEPT_AFTER_WEBINAR_PRICING", generate.ACCEPT)
    log = tmp_path / "history.jsonl"
    write_history(log)
    answer = suggest(tmp_path, capsys, log)
    pair = next((f for f in answer["findings"] if f["feature"] == PAIR), None)
    assert pair is None or not pair["sure"] or pair["lift"] < 1.5, pair
    assert not any("then-pricing" in c for c in answer["changes"]), answer["changes"]
