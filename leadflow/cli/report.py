"""`leadflow report funnel`: the funnel from the live system and imported history (report.funnel);
`leadflow report ab-tests`: the figures of a policy's A/B tests of content (reports.variants)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    rp = sub.add_parser("report", help="reports from the live system")
    rsub = rp.add_subparsers(dest="action", required=True)
    fn = rsub.add_parser("funnel", help="conversion between states, time in each stage, won and lost, "
                                        "rejection reasons; per policy version, week or lead source")
    fn.add_argument("--since", help="leads captured at or after this ISO time")
    fn.add_argument("--until", help="leads captured before this ISO time")
    fn.add_argument("--by", choices=["version", "week", "source"], default="version",
                    help="group by the policy version that captured the lead (imported history: "
                         "`imported`), its capture week, or its lead source")
    fn.add_argument("--out", help="write funnel.html, its PNG charts and funnel.json into this folder")
    fn.add_argument("--json", action="store_true", help="the report as one JSON object")
    ab = rsub.add_parser("ab-tests", help="a policy's A/B tests of content: per variant the leads it went "
                                          "to, people's opens, clicks and moves to sales-ready; a verdict")
    ab.add_argument("--policy", default="lead-lifecycle", help="the policy's name (default: lead-lifecycle)")
    ab.add_argument("--version", type=int, help="its version in the shared database (default: the active)")
    ab.add_argument("--metric", choices=["sales_ready", "clicked", "opened"], default="sales_ready",
                    help="the rate the verdict compares (default: the move to sales-ready)")
    ab.add_argument("--json", action="store_true", help="the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.action == "ab-tests":
        return _ab_tests(args)
    from leadflow.cli.main import _when
    from leadflow.db.database import Database
    from leadflow.reports.funnel import funnel, load, table, write
    from leadflow.settings import Settings

    ledger = Database.of(Settings.from_env())
    try:
        figures = funnel(load(ledger, _when(args.since, "--since"), _when(args.until, "--until")), args.by)
    finally:
        ledger.close()
    if args.out:
        written = write(figures, Path(args.out))
        if not args.json:
            print(f"wrote {', '.join(str(p) for p in written)}\n")
    print(json.dumps(figures) if args.json else table(figures))
    return 0


def _ab_tests(args: argparse.Namespace) -> int:
    from leadflow.cli.errors import UserError
    from leadflow.db.database import Database
    from leadflow.reports.variants import NoAbTest, report, table
    from leadflow.settings import Settings

    ledger = Database.of(Settings.from_env())
    try:
        figures = report(ledger, args.policy, args.version, args.metric)
    except NoAbTest as err:
        raise UserError(str(err)) from None
    finally:
        ledger.close()
    print(json.dumps(figures) if args.json else table(figures))
    return 0
