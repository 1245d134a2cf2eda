"""How the CLI shows things to people: tables and timelines (rich). `--json` skips all of it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=False)


def show(as_json: bool, data: Any, table: Callable[[], Any]) -> None:
    """JSON lines (a list) or one JSON document with --json; the table otherwise."""
    if as_json:
        for item in data if isinstance(data, list) else [data]:
            print(json.dumps(item, default=str))
    else:
        console.print(table())


def when(text: str | None) -> str:
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return text
    return moment.strftime("%Y-%m-%d %H:%M")


def timeline(story: list[dict[str, Any]], title: str = "story") -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for column in ("when", "event", "move", "rule", "why"):
        table.add_column(column, overflow="fold")
    for s in story:
        moved = s["from_state"] != s["to_state"]
        move = f"{s['from_state']} → [bold]{s['to_state']}[/]" if moved else ""
        rule = f"{s['rule']} (v{s['version']})" if s.get("rule") else ""
        table.add_row(when(s.get("at")), s.get("event_type", ""), move, rule, Text(s.get("why", "")))
    return table


def pairs(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for key, value in values.items():
        table.add_row(str(key), Text(str(value)))
    if not values:
        table.add_row("", "none")
    return table


def lead(state: dict[str, Any]) -> Group:
    s = state.get("scores") or {}
    track = state.get("track")
    head = Text.assemble((f"{state['lead_id']}  ", "bold"), (state.get("state") or "?", "bold green"),
                         f"   policy {state.get('policy')} v{state.get('version')}")
    lines = [
        f"scores   fit {s.get('fit')}  interest {s.get('interest')}  intent {s.get('intent')}  "
        f"total {s.get('total')}  bant {s.get('bant')}",
        f"track    {track['name']} (step {track['step']})" if track else "track    none",
        f"hand-off {state.get('open_handoff') or 'none open'}",
        *([f"also     {', '.join(also(a) for a in state['aliases'])}"] if state.get("aliases") else []),
        f"events   {state.get('events')} ({state.get('rejected')} rejected)   next check "
        f"{when(state.get('next_check_at')) or 'none'}",
    ]
    return Group(Panel(Group(head, *lines), expand=False), pairs("profile", state.get("profile") or {}),
                 pairs("facts", state.get("facts") or {}), timeline(state.get("story") or []))


def also(alias: dict[str, Any]) -> str:
    """Another id of the same person, merged into this lead."""
    who = alias.get("email") or alias.get("external_id")
    return f"{who} ({alias.get('lead_id')})" if who else str(alias.get("lead_id"))


def rows(title: str, items: list[dict[str, Any]], columns: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for item in items:
        table.add_row(*(Text("" if item.get(key) is None else str(item.get(key))) for key, _ in columns))
    if not items:
        table.add_row(*(["none"] + [""] * (len(columns) - 1)))
    return table


def task(info: dict[str, Any]) -> Group:
    story = info.get("lead_story") or {}
    left = info.get("seconds_left")
    due = f"   due {when(info.get('due_at'))}" + (f" ({left // 3600}h {left % 3600 // 60:02d}m left)"
                                                  if left is not None and left >= 0 else "")
    head = Text.assemble((f"{info['id']}  ", "bold"), (info.get("status", "?"), "bold green"),
                         f"   queue {info.get('queue')}{due if info.get('due_at') else ''}")
    lines = [f"lead     {info.get('lead_workflow_id')} ({info.get('lead_email') or '-'})",
             f"why      {info.get('reason') or '-'} (policy {info.get('policy')} v{info.get('version')}; "
             f"rules {', '.join(story.get('fired') or [])})"]
    if info.get("answer"):
        a = info["answer"]
        lines.append(f"answer   {a.get('status')} by {a.get('by') or '-'}"
                     + (f": {a['reason']}" if a.get("reason") else ""))
    log = rows("log", info.get("log") or [], [("at", "at"), ("what", "what"), ("queue", "queue"),
                                             ("by", "by"), ("reason", "reason")])
    return Group(Panel(Group(head, *lines), expand=False), pairs("profile", story.get("profile") or {}),
                 pairs("scores", story.get("scores") or {}),
                 timeline(story.get("story") or [], "the lead's story"), log)


def sent(results: list[dict[str, Any]]) -> Group:
    counts = Counter(r["status"] for r in results)
    summary = Text.assemble(("accepted ", "green"), str(counts["accepted"]), "   ",
                            ("duplicate ", "yellow"), str(counts["duplicate"]), "   ",
                            ("refused ", "red"), str(counts["refused"]))
    refused = [r for r in results if r["status"] == "refused"]
    if not refused:
        return Group(summary)
    table = rows("refused", refused, [("line", "line"), ("event_id", "event"), ("error", "why")])
    return Group(table, summary)
