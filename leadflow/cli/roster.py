"""`leadflow roster show|apply|set`: the sales roster in the shared database (LEADFLOW_DATABASE_URL,
else the embedded SQLite under .leadflow/), the one every worker assigns from; a change counts
for the next task."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadflow.cli import people
from leadflow.cli.errors import UserError
from leadflow.db.database import Database
from leadflow.operations import roster as roster_ops
from leadflow.routing.desk import Desk
from leadflow.routing.roster import Roster, RosterInvalid, is_roster, parse_roster
from leadflow.settings import Settings

if TYPE_CHECKING:
    from rules.validate import LoadedPolicy, PolicyWarning


def add_commands(sub: Any) -> None:
    rs = sub.add_parser("roster", help="the sales roster: who works which queue, capacity, time away")
    rsub = rs.add_subparsers(dest="action", required=True)
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--as", dest="who", help="who changes it, for the record (default: LEADFLOW_USER, "
                                              "else your login)")
    sh = rsub.add_parser("show", help="reps with queues, capacity, open tasks and time away; queues with "
                                      "their waiting tasks")
    sh.add_argument("--json", action="store_true", help="the roster as one JSON object (as GET /v1/roster)")
    ap = rsub.add_parser("apply", parents=[who], help="replace the whole roster with a roster file; a file "
                                                      "that does not validate changes nothing (exit 1)")
    ap.add_argument("file")
    st = rsub.add_parser("set", parents=[who], help="change one rep's capacity or time away")
    st.add_argument("rep", help="the rep's id")
    st.add_argument("--capacity", type=int, help="open tasks the rep takes at once (0: none for now)")
    st.add_argument("--away-from", help="away from this date or time (UTC unless it says; default: now)")
    st.add_argument("--away-until", help="back at this date or time (default: until changed)")
    st.add_argument("--back", action="store_true", help="not away any more")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    raw = b""
    if args.action == "apply":
        # checked before the database is opened: a bad file changes nothing and says where
        try:
            raw = Path(args.file).read_bytes()
        except OSError as err:
            raise UserError(f"{args.file}: {err.strerror}") from None
        try:
            roster = parse_roster(raw, args.file)
        except RosterInvalid as err:
            for problem in err.problems:
                print(problem, file=sys.stderr)
            return 1
        # a routing rule of the policies that names a queue nobody in this roster works: said,
        # not refused (the queue may be staffed next)
        for warning in queue_warnings(roster, args.file, policies_in(settings.policy_dir)):
            print(warning, file=sys.stderr)
    ledger = Database.of(settings)
    try:
        desk = Desk(ledger, settings.roster_file)
        if args.action == "show":
            return _show(desk, args.json)
        who = args.who or settings.user or getpass.getuser()
        if args.action == "apply":
            # applying the roster file itself: the desk counts it as taken, so it does not take
            # the same content again at the next task
            same = Path(args.file).resolve() == settings.roster_file.resolve()
            desk.replace(roster, by=who, file_sha=hashlib.sha256(raw).hexdigest() if same else None)
            print(f"roster replaced from {args.file}: {len(roster.reps)} reps")
            return 0
        return _set(desk, args, who)
    finally:
        ledger.close()


def policies_in(folder: Path, but: Iterable[Path] = ()) -> list[LoadedPolicy]:
    """The policy files of a folder that load (one that does not is validated on its own), but
    those in `but`."""
    from rules.validate import PolicyInvalid, load_policy_file

    skip = {p.resolve() for p in but}
    found = []
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        if is_roster(path) or path.resolve() in skip:
            continue
        try:
            found.append(load_policy_file(path))
        except PolicyInvalid:
            continue
    return found


def queue_warnings(roster: Roster, roster_file: str, policies: Iterable[LoadedPolicy]) -> list[PolicyWarning]:
    """Each routing rule of `policies` that names a queue no rep of `roster` works, at its line."""
    from rules.validate import unserved_queues

    queues = roster.queues()
    return [w for loaded in policies for w in unserved_queues(loaded, queues, roster_file)]


def _show(desk: Desk, as_json: bool) -> int:
    view = roster_ops.view(desk)
    if as_json:
        print(json.dumps(view))
        return 0
    rows = [{**rep, "queues": ", ".join(rep["queues"]), "away": _away(rep["away"])} for rep in view["reps"]]
    people.console.print(people.rows("roster", rows, [
        ("id", "rep"), ("name", "name"), ("queues", "queues"), ("capacity", "capacity"),
        ("open_tasks", "open"), ("away", "away")]))
    queues = [{"queue": q, "reps": ", ".join(info["reps"]) or "nobody", "waiting": info["waiting"]}
              for q, info in view["queues"].items()]
    people.console.print(people.rows("queues", queues, [("queue", "queue"), ("reps", "reps"),
                                                        ("waiting", "waiting for a rep")]))
    if view["file_problem"]:
        print(f"the roster file was refused; the roster stays as it was:\n{view['file_problem']}",
              file=sys.stderr)
    return 0


def _away(away: dict[str, Any] | None) -> str:
    if away is None:
        return ""
    return f"{people.when(away.get('from')) or 'now'} → {people.when(away.get('until')) or 'until changed'}"


def _set(desk: Desk, args: argparse.Namespace, who: str) -> int:
    if args.back and (args.away_from or args.away_until):
        raise UserError("--back clears the time away: give it without --away-from or --away-until")
    rep = desk.roster().rep(args.rep)
    if rep is None:
        raise UserError(f"no rep {args.rep!r} in the roster (leadflow roster show)")
    changes: dict[str, Any] = {}
    if args.capacity is not None:
        changes["capacity"] = args.capacity
    if args.back:
        changes["away"] = None
    elif args.away_from or args.away_until:
        # one end given: the other stays as it was
        was = rep.away.model_dump(by_alias=True) if rep.away else {}
        changes["away"] = {**was, **{k: v for k, v in (("from", args.away_from), ("until", args.away_until))
                                     if v}}
    if not changes:
        raise UserError("nothing to change: give --capacity, --away-from, --away-until or --back")
    try:
        new = roster_ops.changed(rep, changes)
    except roster_ops.ChangeRefused as err:
        flags = {"capacity": "--capacity", "away.from": "--away-from", "away.until": "--away-until",
                 "away": "--away-from/--away-until"}
        raise UserError("; ".join(f"{flags.get('.'.join(map(str, p['loc'])), p['loc'])}: {p['msg']}"
                                  for p in err.problems)) from None
    desk.put_rep(new, by=who)
    away = roster_ops.rep_json(new)["away"]
    print(f"{new.id}: capacity {new.capacity}, " + (f"away {_away(away)}" if away else "not away"))
    return 0
