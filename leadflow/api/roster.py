"""The sales roster: who works which queue, how many open tasks each takes, who is away. Reading
it needs `read_tasks`; changing it `manage_roster` (sales and admin). A change counts for the
next task: every assignment reads the roster from the shared database, so nothing restarts."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from leadflow.api.context import Context
from leadflow.api.deps import ERRORS, Ctx, ManagerOfRoster, ReaderOfTasks, answer
from leadflow.api.events import read_json, read_raw
from leadflow.operations import policy_info
from leadflow.operations import roster as roster_ops
from leadflow.routing.roster import Rep, Roster, RosterInvalid, parse_roster

router = APIRouter(prefix="/v1", tags=["roster"], responses={
    **ERRORS, 413: answer("a body over the size limit"),
    422: answer("the roster or rep does not validate: each problem at its field (a YAML body: at its "
                "line)")})
YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml")
YAML_NAME = "body.yaml"  # what problems of a YAML body are said to be in


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its $defs put in place: inside an OpenAPI document `#/$defs/...`
    would point at the document, not at the schema."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


_REP = _inline(Rep.model_json_schema())
_REP_BODY = {**_REP, "required": [r for r in _REP.get("required", []) if r != "id"]}
# a change leaves what it does not name as it is: no defaults
_CHANGES = {"type": "object", "additionalProperties": False,
            "properties": {k: {a: b for a, b in v.items() if a != "default"}
                           for k, v in _REP["properties"].items() if k in roster_ops.CHANGEABLE}}
_ROSTER = _inline(Roster.model_json_schema())


def _body(schema: dict[str, Any], yaml: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if yaml:
        content["application/yaml"] = {"schema": {"type": "string", "description": "the roster file's YAML"}}
    return {"requestBody": {"required": True, "content": content}}


def _refused(err: roster_ops.ChangeRefused, id_from_path: bool = False) -> HTTPException:
    """A 422 with each problem at its place in the request: the body's fields, or the path's
    rep id when the id the rep was given came from the path."""
    return HTTPException(422, [{**p, "loc": ["path", "rep_id"] if id_from_path and p["loc"] == ["id"]
                                else ["body", *p["loc"]]} for p in err.problems])


@router.get("/roster", summary="The reps with their queues, capacity, time away and open tasks; each queue's "
                               "reps and waiting tasks")
async def get_roster(ctx: Ctx, _: ReaderOfTasks) -> dict[str, Any]:
    return await asyncio.to_thread(roster_ops.view, ctx.desk)


@router.put("/roster", openapi_extra=_body(_ROSTER, yaml=True),
            summary="Replace the whole roster: JSON {\"reps\": [...]}, or the roster file's YAML "
                    "(content-type application/yaml)")
async def put_roster(request: Request, ctx: Ctx, caller: ManagerOfRoster,
                     as_: str = Query("", alias="as", max_length=320, description="who changes it, for the "
                                                                                  "record (default: the "
                                                                                  "key's person)"),
                     ) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in YAML_TYPES:
        raw = await read_raw(request, ctx.settings.max_body)
        try:
            roster = await asyncio.to_thread(parse_roster, raw, YAML_NAME)  # a big file: off the loop
        except RosterInvalid as err:
            raise HTTPException(422, [{"loc": ["body"], "line": p.line, "msg": str(p), "type": "value_error"}
                                      for p in err.problems]) from None
    else:
        try:
            roster = roster_ops.roster_from(await read_json(request, ctx.settings.max_body))
        except roster_ops.ChangeRefused as err:
            raise _refused(err) from None

    def replace() -> dict[str, Any]:
        ctx.desk.replace(roster, by=caller.by(as_))
        return roster_ops.view(ctx.desk)

    answer = await asyncio.to_thread(replace)
    await roster_ops.wake_waiting(ctx.client, ctx.desk)
    # the active policy's routing rules whose queue nobody works now: taken, and said
    answer["warnings"] = await asyncio.to_thread(policy_info.unworked_queues, ctx.store, roster.queues())
    return answer


@router.put("/roster/reps/{rep_id}", openapi_extra=_body(_REP_BODY),
            summary="Add a rep, or replace one (the body may leave the id out; it keeps its place)")
async def put_rep(rep_id: str, request: Request, ctx: Ctx, caller: ManagerOfRoster,
                  as_: str = Query("", alias="as", max_length=320, description="who changes it")
                  ) -> dict[str, Any]:
    data = await read_json(request, ctx.settings.max_body)
    try:
        rep = roster_ops.rep_from(rep_id, data)
    except roster_ops.ChangeRefused as err:
        # the body's id differing from the path's is the body's fault; a bad id, the path's
        raise _refused(err, id_from_path=not (isinstance(data, dict) and data.get("id", rep_id) != rep_id)
                       ) from None
    answer = await asyncio.to_thread(_saved, ctx, rep, caller.by(as_))
    await roster_ops.wake_waiting(ctx.client, ctx.desk)
    return answer


@router.patch("/roster/reps/{rep_id}", openapi_extra=_body(_CHANGES), responses={404: answer("no such rep")},
              summary="Change some of a rep's fields: name, email, queues, capacity, away "
                      "({\"from\", \"until\"}; null: back)")
async def patch_rep(rep_id: str, request: Request, ctx: Ctx, caller: ManagerOfRoster,
                    as_: str = Query("", alias="as", max_length=320, description="who changes it")
                    ) -> dict[str, Any]:
    changes = await read_json(request, ctx.settings.max_body)
    rep = (await asyncio.to_thread(ctx.desk.roster)).rep(rep_id)
    if rep is None:
        raise HTTPException(404, f"no rep {rep_id!r} in the roster")
    try:
        new = roster_ops.changed(rep, changes)
    except roster_ops.ChangeRefused as err:
        raise _refused(err) from None
    answer = await asyncio.to_thread(_saved, ctx, new, caller.by(as_))
    await roster_ops.wake_waiting(ctx.client, ctx.desk)
    return answer


@router.delete("/roster/reps/{rep_id}", status_code=204, response_class=Response,
               responses={404: answer("no such rep")},
               summary="Take a rep off the roster (their open tasks stay theirs until answered or passed "
                       "on)")
async def delete_rep(rep_id: str, ctx: Ctx, _: ManagerOfRoster) -> Response:
    if not await asyncio.to_thread(ctx.desk.remove_rep, rep_id):
        raise HTTPException(404, f"no rep {rep_id!r} in the roster")
    return Response(status_code=204)


def _saved(ctx: Context, rep: Rep, by: str) -> dict[str, Any]:
    ctx.desk.put_rep(rep, by)
    return {**roster_ops.rep_json(rep), "open_tasks": ctx.desk.load().get(rep.id, 0)}
