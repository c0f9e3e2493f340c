"""The FastAPI app of the REST face: routes under /api, OpenAPI at /api/openapi.json,
docs at /api/docs. The Gradio UI is mounted on it by the top-level app.py."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from spoonfeeder import __version__
from spoonfeeder.api import failures, websocket
from spoonfeeder.api.auth import Gate
from spoonfeeder.api.failures import ERROR_RESPONSES
from spoonfeeder.api.routes import (
    account,
    chat,
    comfyui,
    conversations,
    health,
    history,
    models,
    profiles,
    settings,
    tasks,
)
from spoonfeeder.context import AppContext

PREFIX = "/api"
DESCRIPTION = """Spoon Feeder's REST API: the same services as the web UI.

Every answer is the envelope `{"success": true, "data": …}` (lists add `pagination`),
or `{"success": false, "error": "…", "code": "…"}`. With SPOONFEEDER_AUTH set, every
route needs HTTP Basic credentials of one of its users."""

# Each area of the seed's tree: a module whose routes(ctx) returns its router.
AREAS: list[Callable[[AppContext], APIRouter]] = [
    health.routes,
    account.routes,
    models.routes,
    chat.routes,
    conversations.routes,
    profiles.routes,
    settings.routes,
    tasks.routes,
    comfyui.routes,
    history.routes,
]


def create_api(ctx: AppContext) -> FastAPI:
    gate = Gate(ctx.users)
    app = FastAPI(
        title="Spoon Feeder",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=None,  # served by the api router below, behind its credentials
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.gate = gate
    failures.install(app)
    api = APIRouter(prefix=PREFIX, dependencies=[Depends(gate)], responses=ERROR_RESPONSES)
    for area in AREAS:
        api.include_router(area(ctx))
    _documents(app, api)
    api.add_api_route("/{path:path}", _nowhere(app), methods=ALL_METHODS, include_in_schema=False)
    app.include_router(api)
    websocket.install(app, ctx, gate, f"{PREFIX}/ws")
    return app


def _documents(app: FastAPI, api: APIRouter) -> None:
    """The OpenAPI document and the interactive docs, under /api like every route."""

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{PREFIX}/openapi.json", title=app.title)


ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _nowhere(app: FastAPI) -> Callable[[Request], None]:
    """Every other path under /api: the envelope's 404 (or 405 for a documented path
    asked with another method), not the UI mounted at / answering with its own."""
    known: list[tuple[re.Pattern[str], set[str]]] = []

    def nowhere(request: Request) -> None:
        if not known:  # the documented paths, read once the app is complete
            for path, operations in app.openapi()["paths"].items():
                known.append((compile_path(path)[0], {m.upper() for m in operations}))
        for pattern, methods in known:
            if pattern.match(request.url.path) and request.method not in methods:
                raise StarletteHTTPException(405)
        raise StarletteHTTPException(404)

    return nowhere
