"""ComfyUI on the task queue: the `comfyui.generate` handler and the wiring at start-up.

A task's payload is `{"generation_id": "<uuid>"}`; the generation row holds everything
else. Progress goes to the task (fraction, message); the service publishes it on the
event bus as `comfyui:progress` events: `{generation_id, status, message, fraction, step, max, node,
node_type, preview_path}` (preview_path relative to MEDIA_STORAGE_PATH, when a preview
image was sent; status becomes completed | failed | cancelled on the last event).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from spoonfeeder.comfyui.runner import RunAbandoned
from spoonfeeder.comfyui.views import CANCELLED, COMPLETED, GenerationProgress, GenerationView
from spoonfeeder.errors import PermanentTaskError, ValidationError
from spoonfeeder.events import Event
from spoonfeeder.tasks.handlers import TaskCancelled, TaskContext, TaskInterrupted, register

if TYPE_CHECKING:
    from spoonfeeder.context import AppContext

TASK_TYPE = "comfyui.generate"


def validate_payload(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"generation_id": str(uuid.UUID(str(payload.get("generation_id"))))}
    except ValueError:
        raise ValidationError(
            "A comfyui.generate task needs the generation_id of a ComfyUI generation",
            "generation_id",
        ) from None


@register(TASK_TYPE, validate=validate_payload, description="Run a ComfyUI generation")
def run_generation_task(task: TaskContext) -> dict[str, Any]:
    if task.app is None:
        raise PermanentTaskError("comfyui.generate runs inside the app (it needs its context)")
    app = task.app

    def report(progress: GenerationProgress) -> None:  # the service publishes the event
        task.progress(progress.fraction, progress.message, force=progress.status != "running")

    try:
        view = app.comfyui.run_generation(
            task.payload["generation_id"],
            report,
            lambda: task.cancel_requested,
            should_abandon=lambda: task.interrupted,
        )
    except RunAbandoned:
        raise TaskInterrupted(f"task {task.id} given up; its generation resumes later") from None
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


def setup(app: AppContext, recover: bool = True) -> None:
    """At start-up: generations enqueue tasks. With `recover` (the app, not a worker):
    the built-in workflow exists, and generations a stopped app left behind without a
    live task get one (their task, if any, is handed back by the queue's reaper and
    resumes the same way)."""
    queue = app.tasks.queue

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

    def cancel_task(task_id: uuid.UUID) -> None:
        queue.cancel(task_id)

    def on_task_cancelled(event: Event) -> None:
        # Cancelled in the Tasks tab before it ran: the handler never will, say so here.
        if event.data.get("type") == TASK_TYPE and event.data.get("id"):
            app.comfyui.task_cancelled(uuid.UUID(str(event.data["id"])))

    app.comfyui.attach_events(app.events)
    app.comfyui.attach_queue(enqueue, cancel_task)
    app.events.subscribe("task:cancelled", callback=on_task_cancelled)
    if not recover:
        return
    app.comfyui.ensure_builtin_workflow()
    for generation_id in app.comfyui.interrupted_generations():
        view = app.comfyui.get_generation(generation_id)
        task = queue.get(view.task_id) if view.task_id else None
        if task is not None and task.status == "cancelled":
            app.comfyui.task_cancelled(task.id, task_is_final=True)
        elif task is None or task.status in ("completed", "failed"):
            # its worker died more often than the task's attempts allow: resume anyway
            app.comfyui.requeue(generation_id, replacing=view.task_id)
