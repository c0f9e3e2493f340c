"""/api/comfyui/generations: one generation — its state and outputs, the exact workflow
it posted, an exact re-run, stopping and deleting it."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Response, status

from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext


@dataclass(frozen=True)
class GenerationDeleted:
    id: str


SNAPSHOT_RESPONSE = {
    200: {
        "description": "The API-format workflow exactly as posted to ComfyUI",
        "content": {"application/json": {}},
    }
}


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/generations", tags=["comfyui"])

    @router.get("/{generation_id}", summary="Get generation details")
    def get_generation(generation_id: str) -> Ok[GenerationView]:
        """Its status (pending, running, completed, failed, cancelled), progress, the
        parameters it ran with (the concrete seed), its outputs — each `path` served by
        GET /comfyui/image/{path} — and any error."""
        return ok(ctx.comfyui.generations.get(generation_id))

    @router.get(
        "/{generation_id}/workflow",
        summary="Get generation's workflow snapshot",
        response_class=Response,
        responses=SNAPSHOT_RESPONSE,
    )
    def get_snapshot(generation_id: str) -> Response:
        """The workflow exactly as it was (or will be) posted, byte for byte — not in the
        envelope: load it into ComfyUI, or import it, to run the same thing."""
        text = ctx.comfyui.generations.snapshot_text(generation_id)
        return Response(text, media_type="application/json")

    @router.post(
        "/{generation_id}/rerun",
        summary="Re-run a generation exactly",
        status_code=status.HTTP_202_ACCEPTED,
    )
    def rerun(generation_id: str) -> Ok[GenerationView]:
        """Queue a new generation posting the same snapshot (same seed, same server
        profile); its `reproduced_from_id` is this one."""
        return ok(ctx.comfyui.generator.rerun_exact(generation_id))

    @router.post("/{generation_id}/cancel", summary="Stop a generation")
    def cancel(generation_id: str) -> Ok[GenerationView]:
        """A pending one is cancelled at once; a running one is interrupted on ComfyUI
        and ends `cancelled` shortly after."""
        return ok(ctx.comfyui.generations.cancel(generation_id))

    @router.delete("/{generation_id}", summary="Delete generation")
    def delete_generation(generation_id: str) -> Ok[GenerationDeleted]:
        """Delete it and its files (stopping it first if it still runs)."""
        ctx.comfyui.generations.delete(generation_id)
        return ok(GenerationDeleted(generation_id))

    return router
