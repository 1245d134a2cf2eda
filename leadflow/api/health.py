"""GET /healthz (the process answers), GET /readyz (and Temporal does) and GET /metrics
(Prometheus): no key, for probes and scrapers; no metric label holds an address or a name."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from leadflow.api.deps import Ctx
from leadflow.ops import metrics

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


@router.get("/metrics", response_class=PlainTextResponse,
            responses={404: {"description": "this process serves no metrics"}})
async def prometheus() -> PlainTextResponse:
    """This process's metrics in Prometheus' text format: leadflow's (events taken and refused by
    door, type and reason, and, in one process with the worker, the rest) and Temporal's SDK's.
    The SDK's exporter owns its socket; this route reads it there."""
    import httpx

    where = metrics.bound()
    if where is None:
        return PlainTextResponse("this process serves no metrics\n", status_code=404)
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"http://{where}/metrics")
    return PlainTextResponse(answer.text, media_type="text/plain; version=0.0.4")
