"""/api/tasks: the durable task queue, as the Tasks tab shows it — create, list with
filters, look at one, cancel or delete, retry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.envelope import Ok, Paged, PageQuery, ok, page_query, paged
from spoonfeeder.chat import ChatTarget
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.targets import PROFILE_PREFIX, ChatTargets
from spoonfeeder.tasks.states import STATUSES
from spoonfeeder.tasks.views import TaskView

DATE_HELP = "YYYY-MM-DD or YYYY-MM-DD HH:MM (UTC)"


class TaskBody(BaseModel):
    """A new task. What a type needs is its own: text.generate a provider, a model and
    a prompt; text.batch a prompt template with {input} and `inputs`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Task type, e.g. text.generate (GET /api/tasks/types)")
    name: str | None = Field(None, description="Shown in the list; default: the prompt's start")
    provider: str | None = Field(
        None,
        description="Chat provider: a kind (ollama, openai, anthropic, gemini: its setting) "
        f"or {PROFILE_PREFIX}<id> (a profile)",
    )
    profile_id: uuid.UUID | None = Field(
        None, description="A profile to use instead of the provider's setting"
    )
    model: str | None = Field(None, description="Model id, e.g. gpt-4o-mini")
    prompt: str | None = Field(None, description="The prompt; for text.batch the template")
    inputs: list[str] | None = Field(None, description="text.batch: one child task each")
    options: dict[str, Any] | None = Field(
        None,
        description='Merged into the payload, e.g. {"temperature": 0.2, "max_tokens": 200, '
        '"system": "Be brief."}',
    )
    priority: int = Field(0, description="Higher runs first")
    max_attempts: int = Field(3, description="Attempts before it fails (1–20)")


@dataclass(frozen=True)
class TaskDetails(TaskView):
    """One task with its result (completed) or error (failed), and a batch's tasks."""

    children: list[TaskView] = field(default_factory=list)


@dataclass(frozen=True)
class TaskRemoval:
    id: uuid.UUID
    action: Literal["cancelled", "deleted"]
    task: TaskView  # as it is now (cancelled), or as it was (deleted)


@dataclass(frozen=True)
class TaskType:
    type: str
    description: str


def _statuses(values: list[str] | None) -> list[str] | None:
    """?status=a&status=b, or ?status=a,b."""
    return [s for value in values or [] for s in value.split(",")] or None


def _target(ctx: AppContext, body: TaskBody) -> ChatTarget | None:
    """Where a chat task goes, resolved as every face resolves a provider choice."""
    choice = ChatTargets.choice_of(body.provider, body.profile_id)
    if choice is None:
        return None
    target = ctx.targets.resolve(choice, body.model)
    if body.profile_id and body.provider not in (None, target.provider, choice):
        raise ValidationError(
            f"provider {shown(body.provider)} is not the kind of profile {body.profile_id} "
            f"({target.provider}): leave provider out",
            "provider",
        )
    return target


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/tasks", tags=["tasks"])
    service = ctx.tasks

    @router.get("", summary="List tasks (with filters)")
    def list_tasks(
        pages: Annotated[PageQuery, Depends(page_query)],
        status: Annotated[
            list[str] | None,
            Query(description=f"One or several of {', '.join(STATUSES)} (repeat it, or a,b)"),
        ] = None,
        type: Annotated[str | None, Query(description="Task type")] = None,
        provider: Annotated[str | None, Query(description="Provider kind")] = None,
        created_from: Annotated[str | None, Query(description=f"From, {DATE_HELP}")] = None,
        created_to: Annotated[
            str | None, Query(description=f"To, {DATE_HELP}; a bare date includes that day")
        ] = None,
        parent_id: Annotated[uuid.UUID | None, Query(description="The tasks of this batch")] = None,
    ) -> Paged[TaskView]:
        """Newest first, without results (GET /api/tasks/{id} has it)."""
        page = service.list_tasks(
            status=_statuses(status),
            type=type,
            provider=provider,
            created_from=created_from,
            created_to=created_to,
            parent_id=parent_id,
            limit=pages.limit,
            offset=pages.offset,
        )
        return paged(page.items, pages.page, pages.limit, page.total)

    @router.post("", status_code=201, summary="Create task")
    def create_task(body: TaskBody) -> Ok[TaskView]:
        """Queue a task; a worker runs it (follow it at /api/ws, or GET it)."""
        target = _target(ctx, body)
        return ok(
            service.create_task(
                body.type,
                name=body.name,
                target=target,
                model=body.model,
                prompt=body.prompt,
                options=body.options,
                inputs=body.inputs,
                priority=body.priority,
                max_attempts=body.max_attempts,
            )
        )

    @router.get("/types", summary="List task types")
    def task_types() -> Ok[list[TaskType]]:
        return ok([TaskType(t, service.describe_type(t)) for t in service.task_types()])

    @router.get("/{task_id}", summary="Get task details")
    def get_task(task_id: str) -> Ok[TaskDetails]:
        """The task with its result or error; a batch with its tasks (`children`)."""
        task = service.get_task(task_id)
        return ok(TaskDetails(**vars(task), children=service.children(task.id)))

    @router.delete("/{task_id}", summary="Cancel/delete task")
    def delete_task(task_id: str) -> Ok[TaskRemoval]:
        """A task still to finish (queued, running, or a batch with tasks still to run)
        is cancelled: a queued one at once, a running one is asked to stop
        (`cancel_requested`; it ends as cancelled). A finished one is deleted with its
        result and its batch's tasks. `action` says which."""
        action, task = service.cancel_or_delete(task_id)
        return ok(TaskRemoval(task.id, action, task))

    @router.post("/{task_id}/retry", summary="Retry failed task")
    def retry_task(task_id: str) -> Ok[TaskView]:
        """Queue a failed or cancelled task again, with a fresh set of attempts."""
        return ok(service.retry_task(task_id))

    return router
