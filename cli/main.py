"""`leadflow`: the command line for ops and developers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cli.render import render_decision
from rules.compile import load_compiled
from rules.models import Event, LeadRef
from rules.policytest import run_tests
from rules.simulate import run
from rules.validate import PolicyInvalid, check_files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    policy = sub.add_parser("policy", help="validate, test and explain policy files")
    psub = policy.add_subparsers(dest="action", required=True)
    v = psub.add_parser("validate", help="schema and semantic checks; exit 1 on any problem")
    v.add_argument("files", nargs="+")
    t = psub.add_parser("test", help="run the policies' embedded tests")
    t.add_argument("files", nargs="+")
    t.add_argument("-v", "--verbose", action="store_true", help="print each case's trail")
    e = psub.add_parser("explain", help="print a lead's trail through a policy")
    e.add_argument("file")
    e.add_argument("--lead", required=True, help="JSON file with the lead's profile")
    e.add_argument("--events", required=True, help="JSON Lines file of events")
    e.add_argument("--until", help="let simulated time run to this ISO time, delivering checks")
    e.add_argument("--json", action="store_true", help="print the decisions as JSON lines")
    up = sub.add_parser("up", help="bring leadflow up on the embedded default")
    up.add_argument("--policy", default="policies/lead-lifecycle.v1.yaml")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            return _up(args.policy)
        return {"validate": _validate, "test": _test, "explain": _explain}[args.action](args)
    except PolicyInvalid as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except UserError as err:
        print(f"leadflow: {err}", file=sys.stderr)
        return 1


class UserError(Exception):
    pass


def _validate(args: argparse.Namespace) -> int:
    problems = check_files(args.files)
    for problem in problems:
        print(problem, file=sys.stderr)
    bad = {p.file for p in problems}
    for f in args.files:
        if f not in bad:
            print(f"{f}: ok")
    return 1 if problems else 0


def _test(args: argparse.Namespace) -> int:
    passed = failed = 0
    for file in args.files:
        policy = load_compiled(file)
        for result in run_tests(policy):
            if result.ok:
                passed += 1
                print(f"PASS {file}: {result.name}")
            else:
                failed += 1
                print(f"FAIL {file}: {result.name}")
                for failure in result.failures:
                    print(f"     {failure}")
            if args.verbose and result.trail:
                for d in result.trail.decisions:
                    print(render_decision(d, indent="     "))
    print(f"policy tests: {passed} passed, {failed} failed")
    return 1 if failed else 0


def _explain(args: argparse.Namespace) -> int:
    policy = load_compiled(args.file)
    profile = _read_json(args.lead)
    if not isinstance(profile, dict):
        raise UserError(f"{args.lead}: a lead file holds one JSON object")
    events = _read_events(args.events, profile)
    until = None
    if args.until:
        from datetime import datetime

        until = Event(type="check", at=datetime.fromisoformat(args.until)).at
    trail = run(policy, events, until)
    for d in trail.decisions:
        if args.json:
            print(d.model_dump_json(exclude={"lead"}))
        else:
            print(render_decision(d))
    if trail.lead is not None and not args.json:
        print(f"final: {trail.lead.state}  path: {' -> '.join(trail.states)}")
    return 0


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: {err}") from None


def _read_events(path: str, profile: dict[str, Any]) -> list[Event]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: {err}") from None
    events: list[Event] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise UserError(f"{path}:{n}: an event is a JSON object")
            lead = {**profile, **raw.get("lead", {})} if not events else raw.get("lead") or {
                k: profile[k] for k in ("email", "external_id") if k in profile}
            ref = LeadRef(**lead).model_dump(exclude_none=True)
            events.append(Event.model_validate({**raw, "lead": ref}))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{n}: not JSON: {err.msg}") from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(f"{path}:{n}: bad event: {where}: {first['msg']}") from None
    if not events:
        raise UserError(f"{path}: no events")
    return events


def _up(policy_file: str) -> int:
    """For now: validate and test the default policy and show one lead's trail."""
    examples = Path("examples")
    code = main(["policy", "validate", policy_file])
    code = code or main(["policy", "test", policy_file])
    code = code or main(["policy", "explain", policy_file, "--lead", str(examples / "hot-lead.json"),
                         "--events", str(examples / "hot-lead.jsonl")])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
