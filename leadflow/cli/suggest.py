"""`leadflow policy suggest`: criteria learned from the paths that led to a sale, and a proposed
next version with its diff on the same history (leadflow.replay.suggest)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rules.compile import load_compiled
from rules.policytest import run_tests


def add_command(psub: Any, history: argparse.ArgumentParser) -> None:
    sg = psub.add_parser("suggest", parents=[history],
                         help="learn from the paths that led to a sale: findings, and a proposed next "
                              "version with its diff on the same history (activates nothing)")
    sg.add_argument("file", help="the policy file in force")
    sg.add_argument("--out", help="where to write the proposed version (default: "
                                  "<policy>.v<next>.suggested.yaml here)")
    sg.add_argument("--min-leads", type=int, default=30, help="leads a finding needs on each side to "
                                                              "count as sure (default 30)")
    sg.add_argument("--json", action="store_true", help="findings, changes and the diff as one JSON object")


def run(args: argparse.Namespace) -> int:
    from leadflow.cli.main import _history, _retention
    from leadflow.replay import suggest
    from leadflow.replay.diff import compare, table
    from leadflow.replay.simulate import Progress, simulate_many

    policy = load_compiled(args.file)
    leads, until = _history(args.events, args.until)
    progress = Progress(2 * sum(len(events) for events in leads.values()))
    results = simulate_many(args.file, leads, until, args.processes or None, progress,
                            retention=_retention())
    findings, figures = suggest.measure(leads, results, args.min_leads)
    proposal = suggest.propose(policy, findings, results, args.min_leads)
    out = Path(args.out or f"{policy.name}.v{proposal.version}.suggested.yaml")
    out.write_text(proposal.text, encoding="utf-8")
    failing = [r.name for r in run_tests(load_compiled(str(out))) if not r.ok]
    new = simulate_many(str(out), leads, until, args.processes or None, progress,
                        retention=_retention())
    report = compare(args.file, str(out), leads, results, new, until)
    if args.json:
        print(json.dumps({"summary": figures, "findings": [f.as_dict() for f in findings[:200]],
                          "changes": proposal.changes, "file": str(out), "failing_tests": failing,
                          "diff": report}))
        return 0
    print(suggest.table(figures, findings))
    print(f"\nproposed {out} (v{proposal.version}; activates nothing: `leadflow policy propose {out}`):")
    print("\n".join(f"  - {c}" for c in proposal.changes) or "  (no change: nothing sure enough to act on)")
    if failing:
        print(f"  its own tests that no longer hold (adjust them or the change): {', '.join(failing)}")
    print("\nits diff on the same history:\n" + table(report))
    return 0
