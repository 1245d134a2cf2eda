"""`leadflow`: the command line for ops and developers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
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
    up = sub.add_parser("up", help="embedded Temporal + worker + a short demo (make up)")
    up.add_argument("--no-demo", action="store_true")
    up.add_argument("--exit-after-demo", action="store_true", help="stop once the demo has played")
    sub.add_parser("worker", help="run a worker against the configured Temporal")
    snd = sub.add_parser("send", help="send events (JSON object or JSON Lines; - for stdin)")
    snd.add_argument("file")
    snd.add_argument("--wait", action="store_true", help="wait and print what each event did")
    ld = sub.add_parser("lead", help="a lead's state and story")
    ld.add_argument("who", help="e-mail, external id or lead-... workflow id")
    lds = sub.add_parser("leads", help="list running leads")
    lds.add_argument("--state")
    tks = sub.add_parser("tasks", help="list hand-off tasks (open and escalated by default)")
    tks.add_argument("--queue")
    tks.add_argument("--all", action="store_true")
    tk = sub.add_parser("task", help="show, accept or reject a hand-off task")
    tk.add_argument("action", choices=["show", "accept", "reject"])
    tk.add_argument("task_id")
    tk.add_argument("--reason", default="")
    tk.add_argument("--by", default="")
    ob = sub.add_parser("outbox", help="what leadflow sent or told (local outbox)")
    ob.add_argument("--lead")
    ob.add_argument("--kind")
    lid = sub.add_parser("lead-id", help="the workflow id of a lead")
    lid.add_argument("who")
    args = parser.parse_args(argv)

    try:
        if args.command == "policy":
            return {"validate": _validate, "test": _test, "explain": _explain}[args.action](args)
        if args.command == "lead-id":
            print(_lead_id(args.who))
            return 0
        if args.command == "outbox":
            from activities.outbox import Outbox
            from service.settings import Settings

            for row in Outbox(Settings.from_env().outbox_path).list(args.lead, args.kind):
                print(json.dumps(row))
            return 0
        return asyncio.run(_service(args))
    except PolicyInvalid as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except (UserError, ValueError) as err:
        print(f"leadflow: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # Temporal refusals (update validators, missing workflows)
        from temporalio.client import WorkflowUpdateFailedError
        from temporalio.service import RPCError

        if isinstance(err, WorkflowUpdateFailedError):
            cause = getattr(err.cause, "message", None) or str(err.cause)
            print(f"leadflow: refused: {cause}", file=sys.stderr)
            return 1
        if isinstance(err, RPCError):
            print(f"leadflow: Temporal said: {err.message}", file=sys.stderr)
            return 1
        raise
    except RuntimeError as err:  # e.g. no Temporal server reachable
        print(f"leadflow: {err}", file=sys.stderr)
        return 1


def _lead_id(who: str) -> str:
    from rules.identity import lead_key

    if who.startswith("lead-"):
        return who
    return lead_key(LeadRef(email=who) if "@" in who else LeadRef(external_id=who))


async def _service(args: argparse.Namespace) -> int:
    from service import intake
    from service.settings import Settings
    from service.temporal import connect

    settings = Settings.from_env()
    if args.command == "up":
        from service.up import up

        code = main(["policy", "validate", *map(str, sorted(settings.policy_dir.glob("*.yaml")))])
        if code:
            return code
        await up(settings, demo=not args.no_demo, exit_after_demo=args.exit_after_demo)
        return 0
    if args.command == "worker":
        from worker import run_worker

        await run_worker(settings)
        return 0
    if args.command == "send":
        events = _events_to_send(args.file, settings)  # all checked before any is sent
        client = await connect(settings)
        for item in events:
            print(json.dumps(await intake.send(client, settings, item, wait=args.wait), default=str))
        return 0
    client = await connect(settings)
    if args.command == "lead":
        print(json.dumps(await client.get_workflow_handle(_lead_id(args.who)).query("state"), indent=2))
        return 0
    if args.command == "leads":
        for row in await intake.list_workflows(client, intake.leads_query(args.state)):
            print(json.dumps(row))
        return 0
    if args.command == "tasks":
        for row in await intake.list_workflows(client, intake.tasks_query(args.queue, args.all)):
            print(json.dumps(row))
        return 0
    handle = client.get_workflow_handle(args.task_id)
    if args.action == "show":
        result = await handle.query("task")
    elif args.action == "accept":
        result = await handle.execute_update("accept", {"by": args.by})
    else:
        result = await handle.execute_update("reject", {"reason": args.reason, "by": args.by})
    print(json.dumps(result, indent=2))
    return 0


class UserError(Exception):
    pass


def _events_to_send(file: str, settings: Any) -> list[dict[str, Any]]:
    """The events of a JSON object or JSON Lines, each checked as the lead would check it; any
    problem refuses the whole input, so nothing is half sent."""
    from activities.policies import PolicyStore
    from service import intake

    where = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{where}: {err}") from None
    stripped = text.strip()
    if stripped.startswith("{") and "\n{" not in stripped:
        lines = [(1, stripped)]
    else:
        # JSON Lines end lines at \n only: U+2028 and the like may sit inside a string
        lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    store = PolicyStore(settings.policy_dir, settings.policy)
    store.reload()
    events, problems = [], []
    for n, line in lines:
        try:
            events.append(intake.admit(json.loads(line), store))
        except json.JSONDecodeError as err:
            problems.append(f"{where}:{n}: not JSON: {err.msg}")
        except intake.IntakeError as err:
            problems.append(f"{where}:{n}: {err}")
    if problems:
        raise UserError("nothing sent:\n" + "\n".join(problems))
    if not events:
        raise UserError(f"{where}: no events")
    return events


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


def entry() -> None:
    """The `leadflow` command. It ends without the interpreter's finalization: the Temporal
    client's runtime threads outlive the event loop, and meeting finalization they sometimes
    abort the process after its work is done (exit 134, "PyGILState_Release ... finalizing", or
    a segfault; temporalio/sdk-python#300), so a script would read failure for success."""
    try:
        code = main()
    except SystemExit as done:  # argparse: --help, usage errors
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
        if not isinstance(done.code, int) and done.code is not None:
            print(done.code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # the reader may have gone away (`| head`): nothing more to say then
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
