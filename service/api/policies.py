"""GET /v1/policies and POST /v1/policies/validate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from service import policy_info
from service.api.deps import ERRORS, Ctx, ReadsPolicies, ValidatesPolicies, answer
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
