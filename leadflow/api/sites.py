"""The doors a customer's own site calls from the browser, with no key: /v1/collect (the
tracking script's page views) and /f/{form} (forms). Only the origins of LEADFLOW_SITES (and
leadflow's own, for the hosted form pages) may call them: CORS answers those alone; a request
from any other origin is refused before it reaches the route, and counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from leadflow.ops import metrics
from leadflow.settings import Settings

COLLECT = "/v1/collect"
FORMS = "/f/"


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, as a browser sends it in Origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def refused(reason: str, door: str) -> None:
    metrics.count("leadflow_site_refused", "Requests from a browser refused at the site doors, by reason",
                  {"reason": reason, "door": door})


def site_cors(app: FastAPI, settings: Settings) -> None:
    allowed = frozenset({*settings.sites, origin_of(settings.public)})

    @app.middleware("http")
    async def sites(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        door = "collect" if path == COLLECT else "form" if path.startswith(FORMS) else None
        if door is None:
            return await call_next(request)
        origin = request.headers.get("origin")
        if origin is None:
            # a browser always names the origin of a page's fetch; a form's POST has it too, but
            # a form may be posted by a person's script or an old browser: the form's own checks
            # (honeypot, fill time, rate) stand for it
            if door == "collect" and request.method != "GET":
                refused("no_origin", door)
                return JSONResponse({"detail": "no Origin: /v1/collect answers the pages of "
                                               "LEADFLOW_SITES"}, status_code=403)
            return await call_next(request)
        if origin.lower() not in allowed:
            refused("origin", door)
            return JSONResponse({"detail": f"origin {origin} is not one of LEADFLOW_SITES"}, status_code=403)
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            return Response(status_code=204, headers={
                **headers, "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600"})
        response = await call_next(request)
        response.headers.update(headers)
        return response
