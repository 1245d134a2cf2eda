"""POST /v1/events: one event or a JSON array of up to 1,000, each answered in order."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from leadflow import intake
from leadflow.api.context import Context
from leadflow.api.deps import ERRORS, Ctx, SendsEvents, answer, unprocessable
from leadflow.keys import allowed

router = APIRouter(prefix="/v1", tags=["events"], responses={
    **ERRORS, 413: answer("a body over the size limit, or a batch over 1,000")})


class EventResult(BaseModel):
    index: int
    status: Literal["accepted", "duplicate", "refused"]
    lead_id: str | None = None
    event_id: str | None = None
    error: str | None = None


class EventResults(BaseModel):
    results: list[EventResult]
    decision: dict[str, Any] | None = None  # with ?wait=true: what the event did


def _event_schema() -> dict[str, Any]:
    from importlib import resources

    schema = json.loads(resources.files("rules").joinpath("schemas/event.schema.json").read_text())
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    return dict(schema)


_EVENT = _event_schema()
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [_EVENT, {"type": "array", "items": _EVENT, "maxItems": intake.MAX_BATCH}]}}}}}


async def read_raw(request: Request, limit: int) -> bytes:
    """The body, or a 413 past `limit` bytes (read no further than that)."""
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > limit:
        raise HTTPException(413, f"the body holds {int(size)} bytes; at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body holds more than {limit} bytes")
    return bytes(body)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, or a 4xx saying what is wrong with it (never a 500)."""
    body = await read_raw(request, limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HTTPException(400, f"the body is not UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as err:
        raise HTTPException(400, f"the body is not JSON: {err}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@router.post("/events", response_model=EventResults, openapi_extra=_BODY,
             summary="Send one event or up to 1,000; each is answered: accepted, duplicate or refused")
async def post_events(request: Request, ctx: Ctx, role: SendsEvents,
                      wait: Annotated[bool, Query(description="one event: answer with its Decision")] = False,
                      ) -> EventResults | JSONResponse:
    body = await read_json(request, ctx.settings.max_body)
    single = isinstance(body, dict)
    events = [body] if single else body
    if not isinstance(events, list):
        raise unprocessable("body", "send an event (a JSON object) or a JSON array of events")
    if len(events) > intake.MAX_BATCH:
        raise HTTPException(413, f"a batch holds at most {intake.MAX_BATCH} events, this one {len(events)}")
    if wait:
        if not single:
            raise unprocessable("query.wait", "?wait=true answers one event: send a JSON object")
        if not allowed(role, "read_leads"):  # the Decision is the lead: its state, scores and story
            raise HTTPException(403, f"the {role} role may not read leads: ?wait=true answers with the "
                                     "lead's Decision; send without it")
        return await _decide(ctx, body, role)
    results = await intake.send_events(ctx.client, ctx.settings, ctx.store, ctx.seen, events, role=role)
    answer = EventResults(results=[EventResult(**r.as_dict()) for r in results])
    if single and results[0].status == "refused":
        return _refused(answer, forbidden=results[0].forbidden)
    return answer


def _refused(answer: EventResults, forbidden: bool = False) -> JSONResponse:
    """A single event that is refused is a 422 (a batch answers 200, event by event), or a 403
    when the caller may not send its type, in the shape of FastAPI's own 422s, with the event's
    result beside."""
    (result,) = answer.results
    field, _, message = (result.error or "").removeprefix("bad event: ").partition(": ")
    detail = [{"loc": ["body", *field.split(".")], "msg": message or result.error, "type": "refused"}]
    return JSONResponse({"detail": detail, "results": [result.model_dump()]},
                        status_code=403 if forbidden else 422)


async def _decide(ctx: Context, raw: Any, role: str) -> EventResults | JSONResponse:
    try:
        event = intake.admit(raw, ctx.store, role)
        answer = await intake.decide(ctx.client, ctx.settings, event)
    except intake.IntakeError as err:
        intake.refused(intake.reason_of(err))
        event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        refused = EventResult(index=0, status="refused", event_id=event_id, error=str(err))
        return _refused(EventResults(results=[refused]), forbidden=isinstance(err, intake.Forbidden))
    decision = answer["decision"]
    if decision.get("rejected"):  # the lead refused it: a 422 with its reason, as the door's own refusals
        refused = EventResult(index=0, status="refused", lead_id=answer["lead_id"], event_id=event["id"],
                              error=f"rejected by the lead: {decision['rejected']}")
        return _refused(EventResults(results=[refused]))
    status = "duplicate" if decision.get("duplicate") else "accepted"
    await _record(ctx, answer["lead_id"], event["id"])
    return EventResults(results=[EventResult(index=0, status=status, lead_id=answer["lead_id"],
                                             event_id=event["id"])],
                        decision=None if status == "duplicate" else decision)


async def _record(ctx: Context, lead: str, event_id: str) -> None:
    import asyncio

    await asyncio.to_thread(ctx.seen.add, [(lead, event_id)])
