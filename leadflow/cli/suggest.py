"""`leadflow policy suggest`: criteria learned from the paths that led to a sale, a proposed next
version with its diff on the same history (leadflow.replay.suggest), and how the current and the
proposed version pick the won leads among leads held out of the learning
(leadflow.replay.holdout). The history is a log (`--events`) or, without one, the archive."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from leadflow.cli.errors import UserError
from rules.compile import load_compiled
from rules.policytest import run_tests


def add_command(psub: Any, history: argparse.ArgumentParser) -> None:
    # suggest reads the archive when no log is named: its own --events (optional), not `history`'s
    del history
    sg = psub.add_parser("suggest",
                         help="learn from the paths that led to a sale: findings, and a proposed next "
                              "version with its diff on the same history and its figures on held-out "
                              "leads (activates nothing)")
    sg.add_argument("file", help="the policy file in force")
    sg.add_argument("--events", help="JSON Lines from `events export` or `generate`, or plain events that "
                                     "name their lead by email or external_id, each with its `at` "
                                     "(default: the event archive, live and imported history)")
    sg.add_argument("--until", help="let virtual time run to this ISO time (default: the history's last "
                                    "event)")
    sg.add_argument("--processes", type=int, default=0, help="processes to spread leads over "
                                                             "(default: every core)")
    sg.add_argument("--out", help="where to write the proposed version (default: "
                                  "<policy>.v<next>.suggested.yaml here)")
    sg.add_argument("--min-leads", type=int, default=30, help="leads a finding needs on each side to "
                                                              "count as sure (default 30)")
    sg.add_argument("--holdout", type=_fraction, default=0.3, metavar="FRACTION",
                    help="the share of leads to learn nothing from and measure the current and proposed "
                         "versions on (default 0.3; 0: no hold-out)")
    sg.add_argument("--seed", type=int, default=1, help="which leads are held out (default 1): the same "
                                                        "seed holds out the same leads")
    sg.add_argument("--json", action="store_true",
                    help="findings, changes, the diff and the hold-out figures as one JSON object")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value == 0 or 0 < value < 1):  # NaN fails both
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1) (e.g. 0.3), nor 0 for no "
                                         "hold-out: some leads must be left to learn from")
    return value


def _archive(until: str | None) -> tuple[dict[str, list[dict[str, Any]]], Any]:
    """The archive's events by lead, read as a log is (leadflow.replay.simulate.group)."""
    from sqlalchemy.exc import SQLAlchemyError

    from leadflow.cli.main import _when
    from leadflow.db.database import Database
    from leadflow.replay.simulate import archived
    from leadflow.settings import Settings

    try:
        ledger = Database.of(Settings.from_env())
        try:
            leads, last = archived(ledger)
        finally:
            ledger.close()
    except SQLAlchemyError as err:  # the URL may hold a password: the driver's words only
        raise UserError(f"the event archive (LEADFLOW_DATABASE_URL) cannot be read: "
                        f"{getattr(err, 'orig', None) or err}") from None
    return leads, _when(until, "--until") or last


def run(args: argparse.Namespace) -> int:
    from leadflow.cli.main import _history, _retention
    from leadflow.replay import holdout, suggest
    from leadflow.replay.diff import compare, table
    from leadflow.replay.simulate import Progress, simulate_many

    policy = load_compiled(args.file)
    leads, until = _history(args.events, args.until) if args.events else _archive(args.until)
    progress = Progress(2 * sum(len(events) for events in leads.values()))
    results = simulate_many(args.file, leads, until, args.processes or None, progress,
                            retention=_retention())
    learn, held = holdout.split(leads, args.holdout, args.seed)
    learning = [r for r in results if r["lead_id"] in learn]
    findings, figures = suggest.measure(leads, learning, args.min_leads)
    proposal = suggest.propose(policy, findings, learning, args.min_leads)
    out = Path(args.out or f"{policy.name}.v{proposal.version}.suggested.yaml")
    out.write_text(proposal.text, encoding="utf-8")
    failing = [r.name for r in run_tests(load_compiled(str(out))) if not r.ok]
    new = simulate_many(str(out), leads, until, args.processes or None, progress,
                        retention=_retention())
    report = compare(args.file, str(out), leads, results, new, until)
    profile = policy.policy.profile
    measured = holdout.measure(leads, results, new, held, args.holdout, args.seed,
                               None if profile is None else set(profile))
    if args.json:
        print(json.dumps({"summary": figures, "findings": [f.as_dict() for f in findings[:200]],
                          "changes": proposal.changes, "file": str(out), "failing_tests": failing,
                          "diff": report, "holdout": measured.as_dict()}))
        return 0
    print(suggest.table(figures, findings))
    print(f"\nproposed {out} (v{proposal.version}; activates nothing: `leadflow policy propose {out}`):")
    print("\n".join(f"  - {c}" for c in proposal.changes) or "  (no change: nothing sure enough to act on)")
    if failing:
        print(f"  its own tests that no longer hold (adjust them or the change): {', '.join(failing)}")
    names = f"current (v{policy.policy.version})", f"proposed (v{proposal.version})"
    print("\n" + holdout.table(measured, *names))
    print("\nits diff on the whole history:\n" + table(report))
    return 0
