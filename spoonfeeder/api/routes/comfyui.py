"""/api/comfyui: what a server offers, the stored media; sessions, workflows and
generations in the comfyui_* modules beside this one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.api.routes import comfyui_generations, comfyui_sessions, comfyui_workflows
from spoonfeeder.comfyui.views import ServerOptions
from spoonfeeder.context import AppContext
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import shown

# A stored file is ours, but its content came from a ComfyUI server: never let a
# browser run it (an SVG or HTML output) as a page of this site.
MEDIA_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
MEDIA_RESPONSE = {
    200: {"description": "The file, with its media type", "content": {"image/png": {}}}
}


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/comfyui", tags=["comfyui"])

    @router.get("/options", summary="Get samplers, schedulers, checkpoints")
    def options(
        profile_id: Annotated[
            str | None, Query(description="a ComfyUI server profile; default: the default server")
        ] = None,
        refresh: Annotated[bool, Query(description="ask the server again, not the cache")] = False,
    ) -> Ok[ServerOptions]:
        """The samplers, schedulers, checkpoints and LoRAs the server offers (read from its
        /object_info, cached until `refresh`). 503 when it cannot be reached."""
        return ok(ctx.comfyui.servers.options(profile_id or None, refresh=refresh))

    @router.get(
        "/image/{filename:path}",
        summary="Get a stored image or other output",
        response_class=FileResponse,
        responses=MEDIA_RESPONSE,
    )
    def image(filename: str) -> FileResponse:
        """A file under the media folder by its path there — an output's `path`, e.g.
        `comfyui/<generation id>/000_ComfyUI_00001_.png`. Anything outside it is 404."""
        try:
            path = ctx.comfyui.media.file(filename)
        except ValidationError:  # outside the media folder: as if it did not exist
            raise NotFoundError(f"There is no media file {shown(filename)}") from None
        return FileResponse(path, headers=MEDIA_HEADERS)

    router.include_router(comfyui_sessions.routes(ctx))
    router.include_router(comfyui_workflows.routes(ctx))
    router.include_router(comfyui_generations.routes(ctx))
    return router
