"""Policies: the versions loaded, a check of a file, and proposing, approving, activating and
shadowing versions (the ops role; kept in the shared database)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from leadflow.api.deps import (
    ERRORS,
    ApproverOfPolicies,
    Caller,
    Ctx,
    GovernorOfPolicies,
    ReadsPolicies,
    ValidatesPolicies,
    answer,
)
from leadflow.api.events import read_raw
from leadflow.governance.checks import ProposalRefused
from leadflow.governance.registry import Conflict, NotFound, NotOwner, Registry
from leadflow.operations import governance, policy_info

router = APIRouter(prefix="/v1", tags=["policies"],
                   responses={**ERRORS, 413: answer("a body over the size limit")})


class Problem(BaseModel):
    line: int
    rule: str
    message: str


class Validation(BaseModel):
    valid: bool
    problems: list[Problem]
    # worth a look, no reason to refuse: a routing rule's queue that no rep of the roster works
    warnings: list[Problem] = []


@router.get("/policies", summary="Each loaded version: owners, content hash, active or not")
async def list_policies(ctx: Ctx, _: ReadsPolicies) -> dict[str, list[dict[str, Any]]]:
    return {"policies": policy_info.versions(ctx.store)}


@router.post("/policies/validate", response_model=Validation,
             summary="Check a policy file (the YAML as the body), as `leadflow policy validate`",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/yaml": {"schema": {"type": "string"}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def validate_policy(request: Request, ctx: Ctx, _: ValidatesPolicies) -> Validation:
    raw = await read_raw(request, ctx.settings.max_body)

    def check() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # off the loop: it compiles
        return policy_info.checked(raw, "body.yaml", ctx.desk.roster().queues())

    problems, warnings = await asyncio.to_thread(check)
    return Validation(valid=not problems, problems=[Problem(**p) for p in problems],
                      warnings=[Problem(**w) for w in warnings])


# -- proposals, approvals, activation, shadow runs: the same rules as `leadflow policy ...` -----

class Approval(BaseModel):
    as_: str = Field("", alias="as", max_length=320,
                     description="optional: the approver's e-mail, which must be the person the key names "
                                 "(role:person:key); an approval is always the key's person's")


class Activation(BaseModel):
    rollout: Literal["move", "pin"] | None = Field(None, description="running leads: move to this version, "
                                                                     "or stay pinned (default: the file's)")
    as_: str = Field("", alias="as", max_length=320, description="who activates it, for the log")


class Shadow(BaseModel):
    version: int | None = Field(description="the version to run in shadow; null ends the shadow run")
    as_: str = Field("", alias="as", max_length=320)


GOVERN = {**ERRORS, 404: answer("no such version was proposed"),
          409: answer("not now: approvals missing, the version taken by other content, nothing active"),
          422: answer("the file does not validate or its own tests fail; or a malformed request")}


def _registry(ctx: Ctx) -> Registry:
    if ctx.store.registry is None:
        raise HTTPException(503, "this API does not read policies from the shared database")
    return ctx.store.registry


async def _governed(call: Any, *args: Any) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = await asyncio.to_thread(call, *args)
        return answer
    except ProposalRefused as err:
        raise HTTPException(422, [{"loc": ["body"], "msg": p, "type": "value_error"}
                                  for p in err.problems]) from None
    except NotFound as err:
        raise HTTPException(404, str(err)) from None
    except NotOwner as err:
        raise HTTPException(403, str(err)) from None
    except Conflict as err:
        raise HTTPException(409, str(err)) from None


@router.post("/policies/proposals", status_code=201, responses={**GOVERN, 413: answer("a body over the size "
                                                                                     "limit")},
             summary="Propose a policy file (the YAML as the body), as `leadflow policy propose`",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/yaml": {"schema": {"type": "string"}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def propose(request: Request, ctx: Ctx, caller: GovernorOfPolicies,
                  file: str = Query("proposal.yaml", max_length=512, description="its name, for messages"),
                  as_: str = Query("", alias="as", max_length=320, description="who proposes it"),
                  ) -> dict[str, Any]:
    raw = await read_raw(request, ctx.settings.max_body)
    return await _governed(governance.propose, _registry(ctx), raw, file, ctx.settings.content_dir,
                           _who(caller, as_))


@router.post("/policies/{name}/{version}/approvals", responses=GOVERN,
             summary="Approve a proposed version as the person the key names: an owner of the version "
                     "that runs now")
async def approve(name: str, version: int, body: Approval, ctx: Ctx, caller: ApproverOfPolicies
                  ) -> dict[str, Any]:
    if caller.person is None:
        raise HTTPException(403, "this key names no person, and an approval is a person's: give the owner "
                                 "a key of their own, written role:person:key with their e-mail")
    if body.as_.strip() and body.as_.strip().lower() != caller.person.lower():
        raise HTTPException(403, f"this key is {caller.person}'s; it approves as {caller.person} only")
    return await _governed(governance.approve, _registry(ctx), name, version, caller.person,
                           f"API key of {caller.person} ({caller.role})")


@router.post("/policies/{name}/{version}/activation", responses=GOVERN,
             summary="Activate an approved version (one marketing and one sales approval)")
async def activate(name: str, version: int, body: Activation, ctx: Ctx,
                   caller: GovernorOfPolicies) -> dict[str, Any]:
    answer_ = await _governed(governance.activate, _registry(ctx), name, version, _who(caller, body.as_),
                              body.rollout)
    await asyncio.to_thread(ctx.store.reload)  # this process answers with it at once
    return answer_


@router.put("/policies/{name}/shadow", responses=GOVERN,
            summary="Run a proposed version in shadow beside the active one, or stop (version null)")
async def shadow(name: str, body: Shadow, ctx: Ctx, caller: GovernorOfPolicies) -> dict[str, Any]:
    return await _governed(governance.shadow, _registry(ctx), name, body.version, _who(caller, body.as_))


def _who(caller: Caller, said: str) -> str:
    return caller.by(said)


@router.get("/policies/log", responses=ERRORS,
            summary="Proposals, approvals, activations and shadow runs, newest first")
async def policy_log(ctx: Ctx, _: ReadsPolicies, name: str | None = Query(None, max_length=200),
                     limit: int = Query(200, ge=1, le=10_000)) -> dict[str, list[dict[str, Any]]]:
    return {"log": await asyncio.to_thread(_registry(ctx).log, name, limit)}
