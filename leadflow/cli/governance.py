"""`leadflow policy propose|approve|activate|shadow|log`: who agreed to which version, kept in
the shared database (LEADFLOW_DATABASE_URL, else the embedded SQLite under .leadflow/)."""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leadflow.cli.errors import UserError
from leadflow.governance.checks import ProposalRefused
from leadflow.governance.registry import GovernanceError, Registry
from leadflow.operations import governance
from leadflow.settings import Settings


def add_commands(psub: Any) -> None:
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--as", dest="who",
                     help="who you are (an e-mail; default: LEADFLOW_USER, else your login)")
    who.add_argument("--json", action="store_true", help="the answer as one JSON object")
    pr = psub.add_parser("propose", parents=[who], help="keep a policy file as a proposed version: refused "
                                                        "unless it validates and its own tests pass")
    pr.add_argument("file")
    ap = psub.add_parser("approve", parents=[who],
                         help="approve a proposed version as an owner of the version that runs now")
    ap.add_argument("name")
    ap.add_argument("version", type=int)
    ac = psub.add_parser("activate", parents=[who], help="make an approved version the one every worker "
                                                         "evaluates (one marketing and one sales approval)")
    ac.add_argument("name")
    ac.add_argument("version", type=int)
    ac.add_argument("--rollout", choices=["move", "pin"],
                    help="running leads: move to this version at their next event, or stay pinned to "
                         "theirs (default: the file's rollout.running_leads)")
    sh = psub.add_parser("shadow", parents=[who], help="run a proposed version in shadow beside the "
                                                       "active one (its Decisions kept, never acted on)")
    sh.add_argument("name")
    sh.add_argument("version", type=int, nargs="?")
    sh.add_argument("--stop", action="store_true", help="end the shadow run")
    sr = psub.add_parser("shadow-report", help="the shadow version's Decisions on live events beside the "
                                                "active version's, compared as `policy diff` compares")
    sr.add_argument("name", nargs="?", help="the policy (default: LEADFLOW_POLICY, lead-lifecycle)")
    sr.add_argument("--version", type=int, help="the shadowed version (default: the one in shadow now, "
                                                "else the last one shadowed)")
    sr.add_argument("--report", help="write an HTML page with charts here")
    sr.add_argument("--json", action="store_true", help="the comparison as one JSON object")
    lg = psub.add_parser("log", help="proposals, approvals, activations and shadow runs, newest first")
    lg.add_argument("name", nargs="?")
    lg.add_argument("--limit", type=int, default=200)
    lg.add_argument("--json", action="store_true", help="one JSON object a line")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from leadflow.db.database import Database

    ledger = Database.of(settings)
    try:
        registry = Registry(ledger)
        if args.action == "log":
            return _log(registry, args)
        if args.action == "shadow-report":
            return _shadow_report(registry, args, settings)
        who = args.who or settings.user or getpass.getuser()
        try:
            answer = _act(registry, args, who, settings)
        except ProposalRefused as err:
            raise UserError(f"refused: {args.file} cannot be proposed:\n  "
                            + "\n  ".join(err.problems)) from None
        except GovernanceError as err:
            raise UserError(f"refused: {err}") from None
    finally:
        ledger.close()
    print(json.dumps(answer) if args.json else _said(args.action, answer))
    return 0


def _act(registry: Registry, args: argparse.Namespace, who: str, settings: Settings) -> dict[str, Any]:
    if args.action == "propose":
        try:
            raw = Path(args.file).read_bytes()
        except OSError as err:
            raise UserError(f"{args.file}: {err.strerror}") from None
        return governance.propose(registry, raw, args.file, settings.content_dir, who)
    if args.action == "approve":
        if not args.who:
            raise UserError("approve needs --as EMAIL: an owner of the version that runs now")
        # whoever holds the database may say who they are; the log keeps who ran it beside
        return governance.approve(registry, args.name, args.version, args.who,
                                  f"--as on the database (CLI); operating-system user {getpass.getuser()}")
    if args.action == "activate":
        return governance.activate(registry, args.name, args.version, who, args.rollout)
    if args.stop == (args.version is not None):
        raise UserError("shadow NAME VERSION starts a shadow run; shadow NAME --stop ends it")
    return governance.shadow(registry, args.name, None if args.stop else args.version, who)


def _said(action: str, a: dict[str, Any]) -> str:
    if action == "propose":
        head = "proposed" if a["new"] else "already proposed (same content)"
        return (f"{head}: {a['policy']} v{a['version']} (sha256 {a['sha256'][:12]}) from {a['file']}\n"
                f"{_approvals(a['approvals'])}\n"
                f"owners who may approve: marketing {', '.join(a['owners']['marketing'])}; "
                f"sales {', '.join(a['owners']['sales'])}")
    if action == "approve":
        nxt = ("both teams approved: `leadflow policy activate " f"{a['policy']} {a['version']}`"
               if a["can_activate"] else "activation still needs one marketing and one sales owner")
        return (f"approved: {a['policy']} v{a['version']} by {a['approved_by']} as {' and '.join(a['as'])}\n"
                f"{_approvals(a['approvals'])}\n{nxt}")
    line = (f"{a['policy']}: v{a['active']} active (sha256 {a['sha256'][:12]}, rollout {a['rollout']}); "
            + (f"v{a['shadow']} in shadow" if a["shadow"] is not None else "no shadow run"))
    if action == "activate":
        return f"activated: {line}\nworkers take it at their next look (LEADFLOW_POLICY_POLL_SECONDS)"
    return line


def _approvals(ap: dict[str, list[str]]) -> str:
    return f"approvals: marketing {', '.join(ap['marketing']) or '-'}; sales {', '.join(ap['sales']) or '-'}"


def _log(registry: Registry, args: argparse.Namespace) -> int:
    entries = registry.log(args.name, args.limit)
    if args.json:
        for e in entries:
            print(json.dumps(e))
        return 0
    if not entries:
        print("no policy has been proposed or activated yet "
              "(a worker's first start activates the shipped files)")
        return 0
    for e in entries:
        when = datetime.fromtimestamp(e["at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        team = f" as {e['team'].replace(',', ' and ')}" if e["team"] else ""
        detail = f"  ({e['detail']})" if e["detail"] else ""
        print(f"{when}  {e['name']} v{e['version']}  {e['action']:<14} {e['who']}{team}  "
              f"sha256 {e['sha'][:12]}{detail}")
    return 0


def _shadow_report(registry: Registry, args: argparse.Namespace, settings: Settings) -> int:
    from leadflow.replay.diff import html_report, table
    from leadflow.replay.shadow_report import report

    name = args.name or settings.policy
    version = args.version
    if version is None:
        state = registry.state(name)
        version = state.shadow_version if state is not None else None
        if version is None:
            shadowed = [e for e in registry.log(name) if e["action"] == "shadowed"]
            if not shadowed:
                raise UserError(f"{name} has never had a version in shadow (`leadflow policy shadow {name} "
                                "VERSION`)")
            version = shadowed[0]["version"]
    found = registry.version(name, version)
    if found is None:
        raise UserError(f"{name} v{version} has not been proposed")
    figures = report(registry.ledger, found.sha, f"live ({name} active)", f"shadow ({name} v{version})")
    if args.report:
        Path(args.report).write_text(html_report(figures), encoding="utf-8")
    if args.json:
        print(json.dumps(figures))
    elif not figures["leads"]:
        print(f"{name} v{version} in shadow has seen no event yet")
    else:
        print(f"{figures['events']} live events of {figures['leads']} leads evaluated by both\n")
        print(table(figures))
    return 0
