"""Policies: the versions loaded, a check of a file, and proposing, approving, activating and
shadowing versions (the ops role; kept in the shared database)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from governance.checks import ProposalRefused
from governance.registry import Conflict, NotFound, NotOwner, Registry
from service import governance, policy_info
from service.api.deps import ERRORS, Ctx, GovernsPolicies, ReadsPolicies, ValidatesPolicies, answer
from service.api.events import read_raw

router = APIRouter(prefix="/v1", tags=["policies"],
                   responses={**ERRORS, 413: answer("a body over the size limit")})


class Problem(BaseModel):
    line: int
    rule: str
    message: str


class Validation(BaseModel):
    valid: bool
    problems: list[Problem]


@router.get("/policies", summary="Each loaded version: owners, content hash, active or not")
async def list_policies(ctx: Ctx, _: ReadsPolicies) -> dict[str, list[dict[str, Any]]]:
    return {"policies": policy_info.versions(ctx.store)}


@router.post("/policies/validate", response_model=Validation,
             summary="Check a policy file (the YAML as the body), as `leadflow policy validate`",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/yaml": {"schema": {"type": "string"}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def validate_policy(request: Request, ctx: Ctx, _: ValidatesPolicies) -> Validation:
    problems = policy_info.validate(await read_raw(request, ctx.settings.max_body), "body.yaml")
    return Validation(valid=not problems, problems=[Problem(**p) for p in problems])


# -- proposals, approvals, activation, shadow runs: the same rules as `leadflow policy ...` -----

class Approval(BaseModel):
    as_: str = Field(alias="as", min_length=3, max_length=320, description="the approver's e-mail: an owner "
                                                                          "the version's file lists")


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
        return await asyncio.to_thread(call, *args)  # type: ignore[no-any-return]
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
async def propose(request: Request, ctx: Ctx, role: GovernsPolicies,
                  file: str = Query("proposal.yaml", max_length=512, description="its name, for messages"),
                  as_: str = Query("", alias="as", max_length=320, description="who proposes it"),
                  ) -> dict[str, Any]:
    raw = await read_raw(request, ctx.settings.max_body)
    return await _governed(governance.propose, _registry(ctx), raw, file, ctx.settings.content_dir,
                           as_ or f"api ({role})")


@router.post("/policies/{name}/{version}/approvals", responses=GOVERN,
             summary="Approve a proposed version as an owner its file lists")
async def approve(name: str, version: int, body: Approval, ctx: Ctx, _: GovernsPolicies) -> dict[str, Any]:
    return await _governed(governance.approve, _registry(ctx), name, version, body.as_)


@router.post("/policies/{name}/{version}/activation", responses=GOVERN,
             summary="Activate an approved version (one marketing and one sales approval)")
async def activate(name: str, version: int, body: Activation, ctx: Ctx,
                   role: GovernsPolicies) -> dict[str, Any]:
    answer_ = await _governed(governance.activate, _registry(ctx), name, version, body.as_ or f"api ({role})",
                              body.rollout)
    await asyncio.to_thread(ctx.store.reload)  # this process answers with it at once
    return answer_


@router.put("/policies/{name}/shadow", responses=GOVERN,
            summary="Run a proposed version in shadow beside the active one, or stop (version null)")
async def shadow(name: str, body: Shadow, ctx: Ctx, role: GovernsPolicies) -> dict[str, Any]:
    return await _governed(governance.shadow, _registry(ctx), name, body.version, body.as_ or f"api ({role})")


@router.get("/policies/log", responses=ERRORS,
            summary="Proposals, approvals, activations and shadow runs, newest first")
async def policy_log(ctx: Ctx, _: ReadsPolicies, name: str | None = Query(None, max_length=200),
                     limit: int = Query(200, ge=1, le=10_000)) -> dict[str, list[dict[str, Any]]]:
    return {"log": await asyncio.to_thread(_registry(ctx).log, name, limit)}
