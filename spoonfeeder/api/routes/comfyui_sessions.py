"""/api/comfyui/sessions: sessions (list, create, read with their generations, rename or
move to another server, delete) and generating in one — as the ComfyUI tab does."""

from __future__ import annotations

import base64
import binascii
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from spoonfeeder.api.envelope import Ok, Paged, PageQuery, Pagination, ok, page_query, page_slice
from spoonfeeder.api.routes.comfyui_params import GenerationParameters
from spoonfeeder.comfyui import media
from spoonfeeder.comfyui.views import GenerationView, SessionView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError

Pages = Annotated[PageQuery, Depends(page_query)]


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the session's name", examples=["Portraits"])
    description: str | None = Field(None, description="what the session is for")
    profile_id: str | None = Field(
        None, description="a ComfyUI server profile to run on; null: the default server"
    )


class SessionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="a new name")
    profile_id: str | None = Field(
        None, description="another ComfyUI server profile; null: the default server"
    )


class InputImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field("image.png", description="its name, for the record", examples=["x.png"])
    data_base64: str = Field(description="the PNG, JPEG or WebP file, base64-encoded")

    @field_validator("data_base64")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("is not base64 (send the file's bytes base64-encoded)") from None
        return value

    def content(self) -> bytes:
        return base64.b64decode(self.data_base64)


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_text: str | None = Field(None, examples=["a sunset over mountains"])
    negative_prompt: str | None = Field(None, examples=["blurry, low quality"])
    workflow_id: uuid.UUID | None = Field(
        None, description="the workflow to run; default: the session's last, else the default"
    )
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)
    batch_count: int = Field(1, description="generations to make, seeds counting up (1–100)")
    input_image: InputImage | None = Field(
        None, description="an image for the workflow's Load Image node (img2img workflows)"
    )


@dataclass(frozen=True)
class SessionDetail:
    session: SessionView
    generations: list[GenerationView]  # newest first, one page of them
    pagination: Pagination  # of the generations


@dataclass(frozen=True)
class SessionDeleted:
    id: str
    generations_deleted: int  # 0 unless ?delete_generations=true


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/sessions", tags=["comfyui"])

    @router.get("", summary="List sessions")
    def list_sessions(paging: Pages) -> Paged[SessionView]:
        """Most recently used first, with their generation, completed and failed counts."""
        return page_slice(ctx.comfyui.sessions.list_all(), paging)

    @router.post("", summary="Create session", status_code=status.HTTP_201_CREATED)
    def create_session(body: SessionBody) -> Ok[SessionView]:
        """A new session; `profile_id` picks the ComfyUI server it runs on."""
        made = ctx.comfyui.sessions.create(
            body.name, description=body.description, profile_id=body.profile_id
        )
        return ok(made)

    @router.get("/{session_id}", summary="Get session with generations")
    def get_session(session_id: str, paging: Pages) -> Ok[SessionDetail]:
        """The session and a page of its generations (newest first; `?page=&limit=`)."""
        shown = ctx.comfyui.sessions.get(session_id)
        found = ctx.comfyui.generations.list_all(shown.id, limit=paging.limit, offset=paging.offset)
        pagination = Pagination.of(paging.page, paging.limit, shown.generation_count)
        return ok(SessionDetail(shown, found, pagination))

    @router.put("/{session_id}", summary="Update session")
    def update_session(session_id: str, body: SessionChange) -> Ok[SessionView]:
        """Rename it, and/or move its next generations to another server profile
        (`"profile_id": null`: the default server). Fields left out stay as they are."""
        sessions = ctx.comfyui.sessions
        moving = "profile_id" in body.model_fields_set
        if moving:  # a bad profile is refused before anything changes
            sessions.comfyui_profile(body.profile_id)
        changed = sessions.get(session_id)
        if body.name is not None:
            changed = sessions.rename(session_id, body.name)
        if moving:
            changed = sessions.set_profile(session_id, body.profile_id)
        return ok(changed)

    @router.delete("/{session_id}", summary="Delete session")
    def delete_session(
        session_id: str,
        delete_generations: Annotated[
            bool, Query(description="also delete its generations and their files")
        ] = False,
    ) -> Ok[SessionDeleted]:
        """Without `delete_generations` its generations stay, in no session."""
        removed = ctx.comfyui.sessions.delete(session_id, delete_generations=delete_generations)
        return ok(SessionDeleted(session_id, removed))

    @router.post(
        "/{session_id}/generate",
        summary="Generate with parameters",
        status_code=status.HTTP_202_ACCEPTED,
    )
    def generate(session_id: str, body: GenerateBody) -> Ok[list[GenerationView]]:
        """Queue `batch_count` generations (seed -1: a random one, the batch counting up
        from it) and answer at once with them, `pending`, each with its task id. Follow
        one with GET /comfyui/generations/{id} (or the comfyui:progress events); its
        files are served by GET /comfyui/image/{path}. Sampler, scheduler, checkpoint and
        LoRA names are checked against the server first: 503 if it cannot be reached."""
        comfy = ctx.comfyui
        # A workflow left out is the one the session's form opens with.
        form = comfy.sessions.form_parameters
        workflow_id = str(body.workflow_id or form(session_id)["workflow_id"])
        values = body.parameters.values()
        if body.prompt_text is not None:
            values["prompt"] = body.prompt_text
        if body.negative_prompt is not None:
            values["negative_prompt"] = body.negative_prompt
        with tempfile.TemporaryDirectory() as folder:
            chosen = _chosen_image(body, Path(folder))
            values |= comfy.workflows.image_parameter(workflow_id, chosen)
            made = comfy.generator.generate(
                session_id, values, workflow_id=workflow_id, batch_count=body.batch_count
            )
        return ok(made)

    return router


def _chosen_image(body: GenerateBody, folder: Path) -> str | None:
    """The input image as the tab hands it to the service: a new one as a file (stored
    and uploaded by the service), else a name already on the server."""
    named = body.parameters.image
    if body.input_image is not None:
        if named is not None:
            raise ValidationError("Give either input_image or parameters.image, not both", "image")
        path = folder / media.safe_name(body.input_image.filename)
        path.write_bytes(body.input_image.content())
        return str(path)
    if named is None:
        return None
    from spoonfeeder.comfyui import inputs  # loads Pillow: only when an image is named

    if not inputs.is_reference(named):
        # The service reads a path as a file to upload: never one named by a client.
        raise ValidationError(
            "parameters.image is the name of an image on the ComfyUI server; "
            "send a new image as input_image",
            "image",
        )
    return named
