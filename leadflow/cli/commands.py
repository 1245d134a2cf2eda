"""The CLI's commands that talk to Temporal: send events, read leads and tasks, answer tasks.
They use the same operations as the HTTP API and the pages (leadflow.intake, .leads, .tasks)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from temporalio.client import Client

from leadflow import intake
from leadflow.cli import people
from leadflow.cli.errors import UserError
from leadflow.operations import leads, tasks
from leadflow.settings import Settings

CHUNK = 500  # events handed to the intake at a time


async def send(args: argparse.Namespace, settings: Settings) -> int:
    """Events from a file: each checked and sent, a progress bar, a summary; exit 1 if any was
    refused. The events of a file may be thousands; a refused one costs only itself."""
    from activities.policies import PolicyStore
    from leadflow.temporal import connect

    lines = _lines(args.file)
    store = PolicyStore(settings.policy_dir, settings.policy, settings.content_dir)
    store.reload()
    results: list[dict[str, Any]] = []
    parsed: list[tuple[int, Any]] = []
    for n, line in lines:  # refused here need no server: an unknown type is said before any send
        try:
            raw = json.loads(line)
            intake.admit(raw, store)
        except json.JSONDecodeError as err:
            results.append(_refusal(n, f"not JSON: {err.msg}"))
            continue
        except intake.IntakeError as err:
            results.append(_refusal(n, str(err), raw))
            continue
        parsed.append((n, raw))
    if parsed:
        client = await connect(settings)
        if args.wait:
            return await _send_and_wait(client, settings, store, parsed, results, args.json)
        await _send_all(client, settings, store, parsed, results, quiet=args.json)
    results.sort(key=lambda r: r["line"])
    if args.json:
        for r in results:
            print(json.dumps(r))
    else:
        people.console.print(people.sent(results))
    return 1 if any(r["status"] == "refused" for r in results) else 0


def _refusal(line: int, error: str, raw: Any = None) -> dict[str, Any]:
    event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    return {"line": line, "index": None, "status": "refused", "lead_id": None, "event_id": event_id,
            "error": error}


async def _send_all(client: Client, settings: Settings, store: Any, parsed: list[tuple[int, Any]],
                    results: list[dict[str, Any]], quiet: bool) -> None:
    from leadflow.seen import SeenEvents

    seen = SeenEvents.of(settings)
    try:
        with _progress(len(parsed), quiet=quiet) as progress:
            bar = progress.add_task("sending", total=len(parsed))
            for start in range(0, len(parsed), CHUNK):
                chunk = parsed[start:start + CHUNK]
                answers = await intake.send_events(client, settings, store, seen, [raw for _, raw in chunk],
                                                   door="cli")
                for answer in answers:
                    results.append({"line": chunk[answer.index][0], **answer.as_dict()})
                progress.advance(bar, len(chunk))
    finally:
        seen.close()


async def _send_and_wait(client: Client, settings: Settings, store: Any, parsed: list[tuple[int, Any]],
                         results: list[dict[str, Any]], as_json: bool) -> int:
    from leadflow.cli.render import render_decision
    from rules.models import Decision

    for n, raw in parsed:
        try:
            answer = await intake.decide(client, settings, intake.admit(raw, store), door="cli")
        except intake.IntakeError as err:
            results.append({"line": n, "status": "refused", "error": str(err)})
            continue
        decision = answer["decision"]
        if decision.get("rejected"):  # the lead refused it (a policy error): said, not drawn
            results.append({"line": n, "status": "refused", "lead_id": answer["lead_id"],
                            "error": f"rejected by the lead: {decision['rejected']}"})
            continue
        results.append({"line": n, "status": "duplicate" if decision.get("duplicate") else "accepted",
                        "lead_id": answer["lead_id"], "event_id": decision.get("event_id")})
        if as_json:
            print(json.dumps(answer, default=str))
        elif not decision.get("duplicate"):
            shown = Decision.model_validate({**decision, "lead": _stub(decision)})
            people.console.print(render_decision(shown))
    refused = [r for r in results if r["status"] == "refused"]
    for r in refused:
        print(f"line {r['line']}: {r['error']}", file=sys.stderr)
    return 1 if refused else 0


def _stub(decision: dict[str, Any]) -> dict[str, Any]:
    """render_decision reads no lead; a Decision needs one to validate."""
    return {"policy": decision["policy"], "version": decision["version"], "state": decision["state"],
            "state_since": 0, "created": 0}


async def run(args: argparse.Namespace, settings: Settings, client: Client) -> int:
    if args.command == "lead":
        state = await leads.lead(client, args.who, intake.aliases_for(settings))
        if state is None:
            raise UserError(f"no lead {args.who!r}")
        people.show(args.json, state, lambda: people.lead(state))
        return 0
    if args.command == "leads":
        found, _ = await leads.leads(client, args.state, args.limit)
        people.show(args.json, found, lambda: people.rows("leads", found, [
            ("id", "lead"), ("LeadflowState", "state"), ("LeadflowScore", "score")]))
        return 0
    if args.command == "tasks":
        found = await tasks.tasks(client, args.queue, "all" if args.all else args.status)
        people.show(args.json, found, lambda: people.rows("tasks", found, [
            ("id", "task"), ("LeadflowQueue", "queue"), ("LeadflowTaskStatus", "status")]))
        return 0
    if args.action == "show":
        info = await tasks.task(client, args.task_id)
    elif args.action == "accept":
        info = await tasks.accept(client, args.task_id, args.by)
    elif args.action == "reject":
        info = await tasks.reject(client, args.task_id, args.reason, args.by)
    else:
        info = await tasks.reassign(client, args.task_id, args.queue, args.by)
    people.show(args.json, info, lambda: people.task(info))
    return 0


def _lines(file: str) -> list[tuple[int, str]]:
    where = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{where}: {err}") from None
    stripped = text.strip()
    if stripped.startswith("{") and "\n{" not in stripped:
        return [(1, stripped)]
    # JSON Lines end lines at \n only: U+2028 and the like may sit inside a string
    found = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not found:
        raise UserError(f"{where}: no events")
    return found


def _progress(total: int, quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True),
                    disable=quiet or total < 200, transient=True)
