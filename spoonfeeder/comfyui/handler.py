"""ComfyUI on the task queue: the `comfyui.generate` handler and the wiring at start-up.

A task's payload is `{"generation_id": "<uuid>"}`; the generation row holds everything
else. Progress goes to the task (fraction, message); the runner publishes it on the
event bus as `comfyui:progress` events: `{generation_id, status, message, fraction, step, max, node,
node_type, preview_path}` (preview_path relative to MEDIA_STORAGE_PATH, when a preview
image was sent; status becomes completed | failed | cancelled on the last event).
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from spoonfeeder.comfyui.views import CANCELLED, COMPLETED, GenerationProgress, GenerationView
from spoonfeeder.errors import PermanentTaskError, TaskCancelled, ValidationError
from spoonfeeder.events import Event, EventBus
from spoonfeeder.tasks.handlers import HandlerRegistry, TaskContext

if TYPE_CHECKING:
    from spoonfeeder.comfyui.area import ComfyUI
    from spoonfeeder.tasks.queue import TaskQueue

TASK_TYPE = "comfyui.generate"


def validate_payload(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"generation_id": str(uuid.UUID(str(payload.get("generation_id"))))}
    except ValueError:
        raise ValidationError(
            "A comfyui.generate task needs the generation_id of a ComfyUI generation",
            "generation_id",
        ) from None


def install(registry: HandlerRegistry, comfyui: ComfyUI) -> None:
    registry.add(
        TASK_TYPE,
        partial(run_generation_task, comfyui),
        validate=validate_payload,
        description="Run a ComfyUI generation",
    )


def run_generation_task(comfyui: ComfyUI, task: TaskContext) -> dict[str, Any]:
    def report(progress: GenerationProgress) -> None:  # the runner publishes the event
        task.progress(progress.fraction, progress.message, force=progress.status != "running")

    # A run given up (RunAbandoned, a TaskInterrupted) leaves the generation to resume.
    view = comfyui.runner.run(
        task.payload["generation_id"],
        report,
        lambda: task.cancel_requested,
        should_abandon=lambda: task.interrupted,
    )
    if view.status == CANCELLED:
        raise TaskCancelled(view.error or "cancelled")
    if view.status != COMPLETED:
        raise PermanentTaskError(view.error or f"The generation ended {view.status}")
    return {
        "generation_id": str(view.id),
        "status": view.status,
        "outputs": [output.path for output in view.outputs],
        "seconds": view.generation_time_seconds,
    }


def setup(comfyui: ComfyUI, queue: TaskQueue, events: EventBus, *, recover: bool = True) -> None:
    """At start-up: generations enqueue tasks. With `recover` (the app, not a worker):
    the built-in workflow exists, and generations a stopped app left behind without a
    live task get one (their task, if any, is handed back by the queue's reaper and
    resumes the same way)."""

    def enqueue(view: GenerationView) -> uuid.UUID:
        lines = (view.prompt or "").strip().splitlines()
        label = lines[0][:60] if lines else ""
        return queue.enqueue(
            TASK_TYPE,
            {"generation_id": str(view.id)},
            name=f"ComfyUI: {label}" if label else "ComfyUI generation",
            provider="comfyui",
            model=view.checkpoint,
            # Attempts beyond the first only ever resume a run whose worker died (the
            # lease expired): a generation that failed is final, and re-run by the user.
            max_attempts=3,
        )

    def on_task_cancelled(event: Event) -> None:
        # Cancelled in the Tasks tab before it ran: the handler never will, say so here.
        if event.data.get("type") == TASK_TYPE and event.data.get("id"):
            comfyui.generations.task_cancelled(uuid.UUID(str(event.data["id"])))

    comfyui.connect(enqueue, queue.cancel, events)
    events.subscribe("task:cancelled", callback=on_task_cancelled)
    if not recover:
        return
    comfyui.workflows.seed_builtin()
    for generation_id in comfyui.generations.interrupted():
        view = comfyui.generations.get(generation_id)
        task = queue.reads.get(view.task_id) if view.task_id else None
        if task is not None and task.status == "cancelled":
            comfyui.generations.task_cancelled(task.id, task_is_final=True)
        elif task is None or task.status in ("completed", "failed"):
            # its worker died more often than the task's attempts allow: resume anyway
            comfyui.generator.requeue(generation_id, replacing=view.task_id)
