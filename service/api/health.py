"""GET /healthz (the process answers) and GET /readyz (and Temporal does): no key, for probes."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@router.get("/readyz", responses={503: {"description": "Temporal is not reachable"}})
async def readyz(ctx: Ctx) -> JSONResponse:
    try:
        await ctx.client.service_client.check_health(timeout=timedelta(seconds=3))
    except Exception as err:  # any failure to reach it is "not ready"
        return JSONResponse({"ok": False, "temporal": str(err)[:200]}, status_code=503)
    return JSONResponse({"ok": True, "temporal": ctx.settings.namespace})
