"""Handing generations to the task queue: the hooks `attach_queue` sets, one task per
new generation, and a new task for one whose task a restart left finished or lost."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import generations
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration

# Enqueue hook: (generation) -> task id. Set by the task queue integration.
Enqueue = Callable[[GenerationView], uuid.UUID | None]
CancelTask = Callable[[uuid.UUID], None]


@dataclass
class QueueHooks:
    """None until the task queue is attached: generations are then run directly."""

    enqueue: Enqueue | None = None
    cancel_task: CancelTask | None = None


def enqueue_all(
    sessions: sessionmaker[Session], hooks: QueueHooks, views: list[GenerationView]
) -> list[GenerationView]:
    """One task each (when a queue is attached), its id stored on the generation."""
    if hooks.enqueue is None:
        return views
    out = []
    for view in views:
        task_id = hooks.enqueue(view)
        if task_id is not None:
            with transaction(sessions) as session:
                session.execute(
                    update(ComfyUIGeneration)
                    .where(ComfyUIGeneration.id == view.id)
                    .values(task_id=task_id)
                )
            view = replace(view, task_id=task_id)
        out.append(view)
    return out


def requeue(
    sessions: sessionmaker[Session],
    hooks: QueueHooks,
    generation_id: uuid.UUID | str,
    replacing: uuid.UUID | None,
) -> GenerationView:
    """Give an unfinished generation a new task in place of `replacing` (its old task,
    which a restart left finished or lost). Compare-and-set: when two processes start
    at once, only one new task is kept, so the generation never runs twice."""
    view = generations.get(sessions, generation_id)
    if view.done or hooks.enqueue is None or view.task_id != replacing:
        return view
    task_id = hooks.enqueue(view)
    if task_id is None:
        return view
    g = ComfyUIGeneration
    same = g.task_id.is_(None) if replacing is None else g.task_id == replacing
    with transaction(sessions) as session:
        won = session.execute(
            update(g).where(g.id == view.id, same).values(task_id=task_id)
        ).rowcount
    if not won and hooks.cancel_task is not None:
        hooks.cancel_task(task_id)  # another process requeued it first
    return generations.get(sessions, view.id)
