"""/api/comfyui/workflows: the workflow library — import (saying which node types the
server lacks, as the tab does), read, rename, make default, edit defaults, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.envelope import Ok, Paged, PageQuery, ok, page_query, page_slice
from spoonfeeder.api.routes.comfyui_params import DefaultParameters
from spoonfeeder.comfyui.views import WorkflowView
from spoonfeeder.context import AppContext


class WorkflowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a name no other workflow has", examples=["My SDXL"])
    workflow: dict[str, Any] | str = Field(
        description="the API-format workflow (ComfyUI's “Export (API)”), as a JSON object "
        "or its text; text keeps its exact key order in every snapshot"
    )
    description: str | None = None
    defaults: DefaultParameters | None = Field(
        None, description="default parameters over the workflow's own values"
    )
    make_default: bool = Field(False, description="make it the default workflow")
    profile_id: str | None = Field(
        None, description="the server to check its node types on; null: the default server"
    )


class WorkflowChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    defaults: DefaultParameters | None = Field(
        None, description="replaces the edited default parameters"
    )
    make_default: bool | None = Field(None, description="true: make it the default workflow")


@dataclass(frozen=True)
class ImportedWorkflow:
    workflow: WorkflowView
    extracted: list[str]  # the parameters found in it: those a generation can set
    # Node types it uses that the server lacks (custom nodes to install first); null when
    # the server could not be reached to ask.
    missing_node_types: list[str] | None


@dataclass(frozen=True)
class WorkflowDeleted:
    id: str
    name: str  # its generations keep their snapshots (and can still be re-run)


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/workflows", tags=["comfyui"])

    @router.get("", summary="List workflows")
    def list_workflows(paging: Annotated[PageQuery, Depends(page_query)]) -> Paged[WorkflowView]:
        """The default first, then by name; each with its parameter map and defaults."""
        return page_slice(ctx.comfyui.workflows.list_all(), paging)

    @router.post("", summary="Create workflow", status_code=status.HTTP_201_CREATED)
    def import_workflow(body: WorkflowBody) -> Ok[ImportedWorkflow]:
        """Import an API-format workflow (a UI-format export is refused, saying how to
        export the API format); the answer lists the parameters found and the node
        types the server lacks."""
        comfy = ctx.comfyui
        added = comfy.workflows.add(
            body.name,
            body.workflow,
            description=body.description,
            defaults=body.defaults.values() if body.defaults else None,
            make_default=body.make_default,
        )
        missing = comfy.servers.missing_node_types(added.id, body.profile_id)
        return ok(ImportedWorkflow(added, added.extracted, missing))

    @router.get("/{workflow_id}", summary="Get workflow")
    def get_workflow(workflow_id: str) -> Ok[WorkflowView]:
        return ok(ctx.comfyui.workflows.get(workflow_id))

    @router.put("/{workflow_id}", summary="Update workflow")
    def update_workflow(workflow_id: str, body: WorkflowChange) -> Ok[WorkflowView]:
        """Rename, describe, replace its default parameters, make it the default. Fields
        left out stay as they are."""
        workflows = ctx.comfyui.workflows
        changed = workflows.update(
            workflow_id,
            name=body.name,
            description=body.description,
            defaults=body.defaults.values() if body.defaults else None,
        )
        if body.make_default:
            changed = workflows.set_default(workflow_id)
        return ok(changed)

    @router.patch("/{workflow_id}/parameters", summary="Update default parameters")
    def patch_defaults(workflow_id: str, body: DefaultParameters) -> Ok[WorkflowView]:
        """Change some default parameters, e.g. `{"steps": 25}`; the others stay, and
        `null` puts one back to the workflow's own value. As the tab's Save defaults, the
        whole set it ends up with is stored."""
        workflows = ctx.comfyui.workflows
        current = workflows.get(workflow_id).parameters
        return ok(workflows.update(workflow_id, defaults={**current, **body.values()}))

    @router.delete("/{workflow_id}", summary="Delete workflow")
    def delete_workflow(workflow_id: str) -> Ok[WorkflowDeleted]:
        """Its generations stay, keeping their snapshots: they can still be re-run."""
        name = ctx.comfyui.workflows.delete(workflow_id)
        return ok(WorkflowDeleted(workflow_id, name))

    return router
