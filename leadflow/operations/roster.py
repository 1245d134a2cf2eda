"""The roster as people and programs read and change it: one view (the API, the roster page,
`leadflow roster show`) and one way to change a rep (the API's PATCH, the page's form,
`leadflow roster set`), so the three never disagree on what a change means."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from leadflow.routing.desk import Desk
from leadflow.routing.roster import Rep, Roster
from workflows.handoff import HandoffWorkflow

CHANGEABLE = ("name", "email", "queues", "capacity", "away")


class ChangeRefused(ValueError):
    """A change that does not make a valid rep or roster; each problem at its place."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems))
        self.problems = problems


def rep_json(rep: Rep) -> dict[str, Any]:
    """A rep as JSON: `away` as {"from", "until"} in ISO (UTC), or null."""
    return rep.model_dump(mode="json", by_alias=True)


def view(desk: Desk) -> dict[str, Any]:
    """The roster with each rep's open tasks, each queue's reps and the tasks waiting in it, and
    whether the roster file was refused (then the roster is what it was before that edit)."""
    roster = desk.roster()
    load = desk.load()
    waiting = Counter(row["queue"] for row in desk.assigned(waiting=True))
    # a queue nobody works still shows when tasks wait in it: that is where help is needed
    names = sorted(set(roster.queues()) | set(waiting))
    return {
        "reps": [{**rep_json(rep), "open_tasks": load.get(rep.id, 0)} for rep in roster.reps],
        "queues": {q: {"reps": [r.id for r in roster.in_queue(q)], "waiting": waiting.get(q, 0)}
                   for q in names},
        "file": str(desk.roster_file) if desk.roster_file else None,
        "file_problem": desk.file_problem(),
    }


def roster_from(data: Any) -> Roster:
    """A whole roster from JSON, or ChangeRefused naming each bad field (and its rep)."""
    try:
        return Roster.model_validate(data)
    except ValidationError as err:
        reps = data.get("reps") if isinstance(data, dict) else None
        raise ChangeRefused(problems(err, reps if isinstance(reps, list) else [])) from None


def rep_from(rep_id: str, data: Any) -> Rep:
    """A rep from JSON whose id is `rep_id` (the body may leave the id out or repeat it)."""
    if not isinstance(data, dict):
        raise ChangeRefused([{"loc": [], "msg": "a rep is a JSON object", "type": "type_error"}])
    if data.get("id", rep_id) != rep_id:
        raise ChangeRefused([{"loc": ["id"], "type": "value_error",
                              "msg": f"the body's id {data['id']!r} is not the path's {rep_id!r}"}])
    try:
        return Rep.model_validate({**data, "id": rep_id})
    except ValidationError as err:
        raise ChangeRefused(problems(err)) from None


def changed(rep: Rep, changes: Any) -> Rep:
    """The rep with `changes` (some of name, email, queues, capacity, away; away null: back)."""
    if not isinstance(changes, dict):
        raise ChangeRefused([{"loc": [], "msg": "the changes are a JSON object", "type": "type_error"}])
    unknown = [k for k in changes if k not in CHANGEABLE and not (k == "id" and changes[k] == rep.id)]
    if unknown:
        raise ChangeRefused([{"loc": [str(k)], "type": "value_error",
                              "msg": "not a field to change here (" + ", ".join(CHANGEABLE) + ")"
                                     + ("; a rep's id stays: add the rep anew" if k == "id" else "")}
                             for k in unknown])
    try:
        kept = {k: v for k, v in changes.items() if k != "id"}
        return Rep.model_validate({**rep.model_dump(by_alias=True), **kept})
    except ValidationError as err:
        raise ChangeRefused(problems(err)) from None


def problems(err: ValidationError, reps: list[Any] | None = None) -> list[dict[str, Any]]:
    """pydantic's errors as the API's 422s have them, in the names people write (`from`, not
    `from_`); in a whole roster, each says which rep it is about."""
    out = []
    for e in err.errors():
        loc = [("from" if p == "from_" else p) for p in e["loc"]
               if not (isinstance(p, str) and p.startswith("function-"))]
        message = e["msg"].removeprefix("Value error, ")
        if reps is not None and len(loc) > 1 and loc[0] == "reps" and isinstance(loc[1], int):
            item = reps[loc[1]] if loc[1] < len(reps) else None
            named = item.get("id") if isinstance(item, dict) else None
            message = f"rep {named if isinstance(named, str) else loc[1]!r}: {message}"
        out.append({"loc": loc, "msg": message, "type": e["type"]})
    return out


async def wake_waiting(client: Client, desk: Desk) -> int:
    """Tell the tasks waiting for a rep that the roster changed: a rep may be free for them now
    (they look again at once, not at their next retry)."""
    waiting = await asyncio.to_thread(desk.assigned, waiting=True)
    woke = 0
    for row in waiting:
        try:
            await client.get_workflow_handle(row["task"]).signal(
                HandoffWorkflow.wake)
            woke += 1
        except Exception:  # noqa: BLE001 - answered or gone meanwhile: nothing to wake
            continue
    return woke
