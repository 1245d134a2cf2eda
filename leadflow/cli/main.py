"""`leadflow`: the command line for ops and developers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from leadflow.cli import deliverability, people
from leadflow.cli.errors import UserError
from leadflow.cli.render import render_decision
from leadflow.settings import Settings
from rules.compile import load_compiled
from rules.models import Event, LeadRef
from rules.policytest import run_tests
from rules.simulate import run_events
from rules.validate import LoadedPolicy, PolicyInvalid, PolicyWarning, load_policy_file

if TYPE_CHECKING:
    from leadflow.routing.roster import Roster


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    policy = sub.add_parser("policy", help="validate, test and explain policy files")
    psub = policy.add_subparsers(dest="action", required=True)
    v = psub.add_parser("validate", help="schema and semantic checks, and the content templates the "
                                         "policies send; exit 1 on any problem")
    v.add_argument("files", nargs="+")
    v.add_argument("--content", help="the templates' folder (default: LEADFLOW_CONTENT_DIR, else "
                                     "content/ beside the policy's folder)")
    t = psub.add_parser("test", help="run the policies' embedded tests")
    t.add_argument("files", nargs="+")
    t.add_argument("-v", "--verbose", action="store_true", help="print each case's trail")
    e = psub.add_parser("explain", help="print a lead's trail through a policy")
    e.add_argument("file")
    e.add_argument("--lead", required=True, help="JSON file with the lead's profile")
    e.add_argument("--events", required=True, help="JSON Lines file of events")
    e.add_argument("--until", help="let simulated time run to this ISO time, delivering checks")
    e.add_argument("--json", action="store_true", help="print the decisions as JSON lines")
    history = argparse.ArgumentParser(add_help=False)
    history.add_argument("--events", required=True,
                         help="JSON Lines from `events export` or `generate`, or plain events that name "
                              "their lead by email or external_id, each with its `at`")
    history.add_argument("--until", help="let virtual time run to this ISO time (default: the log's last "
                                         "event)")
    history.add_argument("--processes", type=int, default=0, help="processes to spread leads over "
                                                                  "(default: every core)")
    sm = psub.add_parser("simulate", parents=[history],
                         help="replay a history of many leads through a policy in virtual time")
    sm.add_argument("file", help="the policy file")
    sm.add_argument("--out", help="write each lead's result here as JSON Lines")
    sm.add_argument("--json", action="store_true", help="the summary as one JSON object")
    sm.add_argument("--roster", help="the sales roster to replay assignment with (default: "
                                     "LEADFLOW_ROSTER, else roster.yaml beside the policies, if it exists)")
    df = psub.add_parser("diff", parents=[history],
                         help="two policy versions on the same history: who ends differently and why")
    df.add_argument("old", help="the policy file in force")
    df.add_argument("new", help="the changed policy file")
    df.add_argument("--report", help="write an HTML page with charts here, to send to the other team")
    df.add_argument("--json", action="store_true", help="the comparison as one JSON object")
    df.add_argument("--roster", help="the sales roster to replay assignment with (default: "
                                     "LEADFLOW_ROSTER, else roster.yaml beside the policies, if it exists)")
    from leadflow.cli import suggest

    suggest.add_command(psub, history)
    from leadflow.cli import governance

    governance.add_commands(psub)
    content = sub.add_parser("content", help="marketing's e-mail templates (content/)")
    csub = content.add_subparsers(dest="action", required=True)
    cp = csub.add_parser("preview", help="render one template with a lead's profile")
    cp.add_argument("id", help="the content id, e.g. welcome-guide")
    cp.add_argument("--lead", help="JSON file with the lead's profile")
    cp.add_argument("--content", help="the templates' folder (default: LEADFLOW_CONTENT_DIR, else content/)")
    cp.add_argument("--json", action="store_true", help="subject, text and html as one JSON object")
    up = sub.add_parser("up", help="embedded Temporal + worker + a short demo (make up)")
    up.add_argument("--no-demo", action="store_true")
    up.add_argument("--exit-after-demo", action="store_true", help="stop once the demo has played")
    sub.add_parser("worker", help="run a worker against the configured Temporal")
    sub.add_parser("serve", help="the HTTP API and the pages, on LEADFLOW_HTTP (default 127.0.0.1:8000)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="JSON for machines instead of tables")
    snd = sub.add_parser("send", parents=[as_json],
                         help="send events (a JSON object or JSON Lines; - for stdin), with a summary")
    snd.add_argument("file")
    snd.add_argument("--wait", action="store_true", help="wait and print what each event did")
    ld = sub.add_parser("lead", parents=[as_json], help="a lead's state and story")
    ld.add_argument("who", help="e-mail, external id or lead-... workflow id")
    lds = sub.add_parser("leads", parents=[as_json], help="list running leads")
    lds.add_argument("--state")
    lds.add_argument("--limit", type=int, default=200)
    tks = sub.add_parser("tasks", parents=[as_json],
                         help="list hand-off tasks (open and escalated by default)")
    tks.add_argument("--queue")
    tks.add_argument("--status", help="open, escalated, accepted, rejected")
    tks.add_argument("--all", action="store_true")
    tk = sub.add_parser("task", parents=[as_json], help="show, accept, reject or reassign a hand-off task")
    tk.add_argument("action", choices=["show", "accept", "reject", "reassign"])
    tk.add_argument("task_id")
    tk.add_argument("--reason", default="")
    tk.add_argument("--by", default="")
    tk.add_argument("--queue", default="", help="reassign: the queue to pass the task to")
    dl = sub.add_parser("deliveries", parents=[as_json],
                        help="e-mails and webhooks sent or tried, newest first (the delivery ledger)")
    dl.add_argument("--lead", help="e-mail, external id or lead-... workflow id")
    dl.add_argument("--kind", help="email, handoff or escalation")
    dl.add_argument("--status", help="sending, retrying, sent, failed, bounced, suppressed or skipped")
    dl.add_argument("--limit", type=int, default=200)
    deliverability.add_commands(sub, as_json)
    evs = sub.add_parser("events", help="the event archive: every event a lead took")
    esub = evs.add_subparsers(dest="action", required=True)
    ex = esub.add_parser("export", help="the events as JSON Lines, in the order their leads took them "
                                        "(what `policy simulate` reads)")
    ex.add_argument("--since", help="events at or after this ISO time")
    ex.add_argument("--until", help="events before this ISO time")
    ex.add_argument("--lead", help="one lead: e-mail, external id or lead-... workflow id")
    gen = sub.add_parser("generate", help="a seeded, reproducible history of many leads as JSON Lines "
                                          "(the format `events export` writes)")
    gen.add_argument("--leads", type=int, required=True)
    gen.add_argument("--days", type=float, required=True, help="the window the leads sign up and act in")
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--start", help="the window's first moment, ISO (default 2026-01-05T09:00:00Z)")
    from leadflow.cli import report

    report.add_commands(sub)
    from leadflow.cli import roster

    roster.add_commands(sub)
    from leadflow.cli import forms, importing

    importing.add_commands(sub)
    forms.add_commands(sub)
    from leadflow.cli import person

    person.add_commands(sub)
    lid = sub.add_parser("lead-id", help="the workflow id of a lead")
    lid.add_argument("who")
    args = parser.parse_args(argv)

    try:
        if args.command == "policy":
            if args.action in ("propose", "approve", "activate", "shadow", "shadow-report", "log"):
                return governance.run(args)
            return {"validate": _validate, "test": _test, "explain": _explain,
                    "simulate": _simulate, "diff": _diff, "suggest": suggest.run}[args.action](args)
        if args.command == "content":
            from leadflow.cli.content import content_dir, preview

            return preview(args, content_dir(args, Settings.from_env().content_dir))
        if args.command == "report":
            return report.run(args)
        if args.command == "roster":
            return roster.run(args)
        if args.command == "import":
            return importing.run(args)
        if args.command == "form":
            return forms.run(args)
        if args.command == "person":
            return person.run(args)
        if args.command == "lead-id":
            print(_lead_id(args.who))
            return 0
        if args.command == "deliveries":
            return _deliveries(args)
        if args.command == "deliverability":
            return deliverability.run(args)
        if args.command == "events":
            return _export_events(args)
        if args.command == "generate":
            return _generate(args)
        return asyncio.run(_service(args))
    except PolicyInvalid as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except (UserError, ValueError) as err:
        print(f"leadflow: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader has gone (`| head`): nothing more to say
        return 0
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143
    except Exception as err:  # Temporal refusals (update validators, missing workflows)
        from leadflow.operations.tasks import NoSuchTask, TaskError

        if isinstance(err, TaskError):
            print(f"leadflow: refused: {err}", file=sys.stderr)
            return 1
        if isinstance(err, NoSuchTask):
            print(f"leadflow: no task {err}", file=sys.stderr)
            return 1
        from temporalio.client import WorkflowUpdateFailedError
        from temporalio.service import RPCError

        if isinstance(err, WorkflowUpdateFailedError):
            cause = getattr(err.cause, "message", None) or str(err.cause)
            print(f"leadflow: refused: {cause}", file=sys.stderr)
            return 1
        if isinstance(err, RPCError):
            print(f"leadflow: Temporal said: {err.message}", file=sys.stderr)
            return 1
        if isinstance(err, RuntimeError):  # e.g. no Temporal server reachable
            print(f"leadflow: {err}", file=sys.stderr)
            return 1
        raise


def _deliveries(args: argparse.Namespace) -> int:
    from leadflow.db.database import Database
    from leadflow.operations.deliveries import listing

    ledger = Database.of(Settings.from_env())
    try:
        rows = listing(ledger, lead=_lead_id(args.lead) if args.lead else None, status=args.status,
                       kind=args.kind, limit=args.limit)
    finally:
        ledger.close()
    shown = [{**row, "when": people.when(row["updated_at"])} for row in rows]
    people.show(args.json, rows, lambda: people.rows("deliveries", shown, [
        ("when", "when"), ("kind", "kind"), ("status", "status"), ("lead", "lead"), ("target", "to"),
        ("subject", "what"), ("attempts", "tries"), ("detail", "why")]))
    return 0


def _export_events(args: argparse.Namespace) -> int:
    from leadflow.archive.events import EventArchive
    from leadflow.db.database import Database

    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    ledger = Database.of(Settings.from_env())
    try:
        out = sys.stdout
        for event in EventArchive(ledger).export(since, until, _lead_id(args.lead) if args.lead else None):
            out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
    finally:
        ledger.close()
    return 0


def _generate(args: argparse.Namespace) -> int:
    from leadflow.replay.generate import DEFAULT_START, lines

    if args.leads < 0 or args.days <= 0:
        raise UserError("--leads must be 0 or more and --days more than 0")
    start = _when(args.start, "--start") or DEFAULT_START
    out = sys.stdout
    for line in lines(args.leads, args.days, args.seed, start):
        out.write(line + "\n")
    return 0


def _when(text: str | None, option: str) -> Any:
    """An ISO time (a date alone is its midnight, UTC unless it says otherwise), or None."""
    if not text:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option}: {text!r} is not an ISO time (2026-11-01, 2026-11-01T09:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _retention() -> float:
    """LEADFLOW_FINAL_RETENTION, as the workers have it: simulations end leads as their runs do."""

    return Settings.from_env().final_retention


def _lead_id(who: str) -> str:
    from rules.identity import lead_key

    if who.startswith("lead-"):
        return who
    return lead_key(LeadRef(email=who) if "@" in who else LeadRef(external_id=who))


async def _service(args: argparse.Namespace) -> int:
    from leadflow.cli import commands
    from leadflow.temporal import connect

    settings = Settings.from_env()
    if args.command in ("up", "serve", "worker"):
        from leadflow.ops import logs, tracing

        logs.configure(log_format=settings.log_format, log_level=settings.log_level)
        tracing.configure(f"leadflow-{args.command}")
        # a service manager stops with SIGTERM: shut down as on Ctrl-C (the embedded server too)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    if args.command == "up":
        from leadflow.up import up

        code = main(["policy", "validate", *map(str, sorted(settings.policy_dir.glob("*.yaml")))])
        if code:
            return code
        await up(settings, demo=not args.no_demo, exit_after_demo=args.exit_after_demo)
        return 0
    if args.command == "serve":
        from leadflow.api.main import serve
        from leadflow.keys import Keys

        host, port = settings.listen
        if not Keys.load(settings.api_keys, settings.api_keys_file).pairs:
            print("leadflow: no API keys (LEADFLOW_API_KEYS or LEADFLOW_API_KEYS_FILE): every /v1 request "
                  "will be refused", file=sys.stderr)
        print(f"leadflow API on http://{host}:{port} (docs: /docs, inbox: /inbox)", flush=True)
        await serve(settings)
        return 0
    if args.command == "worker":
        from worker import run_worker

        await run_worker(settings)
        return 0
    if args.command == "send":
        return await commands.send(args, settings)
    client = await connect(settings)
    return await commands.run(args, settings, client)


def _validate(args: argparse.Namespace) -> int:
    from leadflow.delivery.content import check_policy_content, content_dir_for
    from leadflow.routing.roster import RosterInvalid, is_roster, parse_roster

    failed = False
    rosters: dict[str, Roster] = {}
    policies: dict[str, LoadedPolicy] = {}
    for f in args.files:
        if is_roster(f):  # the sales roster beside the policies: checked as what it is
            try:
                rosters[f] = parse_roster(Path(f).read_bytes(), f)
                problems = []
            except RosterInvalid as err:
                problems = err.problems
            for problem in problems:
                print(problem, file=sys.stderr)
            if not problems:
                print(f"{f}: ok (roster)")
            failed = failed or bool(problems)
            continue
        try:
            loaded = policies[f] = load_policy_file(f)
        except PolicyInvalid as err:
            problems = err.problems
        else:
            content = args.content or _settings().content_dir_setting or content_dir_for(Path(f))
            problems = check_policy_content(loaded, Path(content))
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{f}: ok")
        failed = failed or bool(problems)
    for warning in _routing_warnings(policies, rosters):  # said, never a failure
        print(warning, file=sys.stderr)
    return 1 if failed else 0


def _routing_warnings(policies: dict[str, LoadedPolicy], rosters: dict[str, Roster]) -> list[PolicyWarning]:
    """Routing rules that name a queue no rep serves. A roster named on the command line is
    checked against the policies named and those beside it; with none named, each policy
    against its roster (LEADFLOW_ROSTER, else roster.yaml beside it), if there is one."""
    from leadflow.cli.roster import policies_in, queue_warnings
    from leadflow.routing.roster import FILE_NAME, RosterInvalid, parse_roster

    found = []
    for file, roster in rosters.items():
        beside = policies_in(Path(file).parent, but=[Path(f) for f in policies])
        found += queue_warnings(roster, file, [*policies.values(), *beside])
    if not rosters:
        for file, loaded in policies.items():
            path = Path(_settings().roster_setting or Path(file).parent / FILE_NAME)
            try:
                roster = parse_roster(path.read_bytes(), str(path))
            except (OSError, RosterInvalid):  # none, or refused where it is validated itself
                continue
            found += queue_warnings(roster, str(path), [loaded])
    return list(dict.fromkeys(found))


def _test(args: argparse.Namespace) -> int:
    from leadflow.routing.roster import is_roster

    passed = failed = 0
    for file in args.files:
        if is_roster(file):  # a roster has no tests of its own
            continue
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
    trail = run_events(policy, "explain", events, until, record=True)
    for d in trail.decisions:
        if args.json:
            print(d.model_dump_json(exclude={"lead"}))
        else:
            print(render_decision(d))
    if trail.lead is not None and not args.json:
        print(f"final: {trail.lead.state}  path: {' -> '.join(trail.path)}")
    return 0


def _history(path: str, until_text: str | None) -> tuple[dict[str, list[dict[str, Any]]], Any]:
    from leadflow.replay.simulate import group

    try:
        with open(path, encoding="utf-8") as log:
            leads, last = group(log, path)
    except OSError as err:
        raise UserError(f"{path}: {err.strerror}") from None
    return leads, _when(until_text, "--until") or last


def _diff(args: argparse.Namespace) -> int:
    from leadflow.replay.diff import compare, html_report, table
    from leadflow.replay.routing_report import choose_roster
    from leadflow.replay.simulate import Progress, simulate_many

    load_compiled(args.old)  # refuse a bad policy before any process starts
    load_compiled(args.new)
    roster = choose_roster(args.roster)
    leads, until = _history(args.events, args.until)
    progress = Progress(2 * sum(len(events) for events in leads.values()))
    old = simulate_many(args.old, leads, until, args.processes or None, progress,
                        retention=_retention())
    new = simulate_many(args.new, leads, until, args.processes or None, progress,
                        retention=_retention())
    report = compare(args.old, args.new, leads, old, new, until, roster)
    if args.report:
        Path(args.report).write_text(html_report(report), encoding="utf-8")
    print(json.dumps(report) if args.json else table(report))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from leadflow.replay import routing_report
    from leadflow.replay.simulate import Progress, per_variant, simulate_many, summary

    load_compiled(args.file)  # refuse a bad policy before any process starts
    roster = routing_report.choose_roster(args.roster)
    leads, until = _history(args.events, args.until)
    progress = Progress(sum(len(events) for events in leads.values()))
    results = simulate_many(args.file, leads, until, args.processes or None, progress,
                        retention=_retention())
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            for result in results:
                out.write(json.dumps(result, separators=(",", ":")) + "\n")
    figures = summary(results)
    figures["routing"] = routing_report.section(results, roster)
    if args.json:
        print(json.dumps(figures))
        return 0
    to = until.isoformat() if until else "-"
    print(f"{figures['leads']} leads, {progress.done} events, virtual time to {to}")
    print("\nfinal state       leads")
    for state, n in figures["states"].items():
        print(f"  {str(state):<15} {n:>6}  {n / max(figures['leads'], 1):6.1%}")
    print("\nhand-offs per queue per week")
    for key, n in figures["handoffs_per_week"].items():
        print(f"  {key:<32} {n:>6}")
    median = figures["median_days_to_sales_ready"]
    print(f"\nsales-ready: {figures['sales_ready']} leads; median time from sign-up: "
          f"{'-' if median is None else f'{median} days'}")
    print(f"e-mails under delivery manners: {figures['sends_moved']} moved to a later slot, "
          f"{figures['sends_skipped']} skipped")
    for test, sent in figures["ab_sends"].items():
        print(f"A/B test {test}, e-mails sent per variant: {per_variant(sent)}")
    print("\n" + routing_report.table(figures["routing"]))
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



def _settings() -> Settings:
    """The environment's settings, for commands that need a few of them (read once)."""
    global _SETTINGS
    if _SETTINGS is None:
        _SETTINGS = Settings.from_env()
    return _SETTINGS


_SETTINGS: Settings | None = None

if __name__ == "__main__":
    entry()
