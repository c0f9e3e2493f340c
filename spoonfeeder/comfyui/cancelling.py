"""Stopping generations: the requests a run in this process looks at, cancelling one
(with its task), and following a task that was cancelled before it ran."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui.queueing import QueueHooks
from spoonfeeder.comfyui.records import get_row
from spoonfeeder.comfyui.views import CANCELLED, PENDING, RUNNING
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration
from spoonfeeder.db.types import utcnow
from spoonfeeder.ids import parse_id


class CancelRequests:
    """Generations asked to stop; a run of one of them in this process interrupts it."""

    def __init__(self, hooks: QueueHooks) -> None:
        self._hooks = hooks
        self._keys: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    def request(self, key: uuid.UUID, task_id: uuid.UUID | None = None) -> None:
        """Stop it here, and cancel its task too when one is named."""
        with self._lock:
            self._keys.add(key)
        if task_id is not None and self._hooks.cancel_task is not None:
            self._hooks.cancel_task(task_id)

    def discard(self, key: uuid.UUID) -> None:
        with self._lock:
            self._keys.discard(key)

    def __contains__(self, key: uuid.UUID) -> bool:
        return key in self._keys


def cancel(
    sessions: sessionmaker[Session], cancels: CancelRequests, generation_id: uuid.UUID | str
) -> uuid.UUID:
    """Stop a generation: a pending one is cancelled at once; a running one is
    interrupted on ComfyUI by its runner and ends `cancelled`. Returns its id."""
    key = parse_id(generation_id, "generation")
    with transaction(sessions) as session:
        row = get_row(session, ComfyUIGeneration, key, "generation")
        task_id = row.task_id
        if row.status == PENDING and row.prompt_id is None:
            row.status = CANCELLED
            row.error = "Cancelled before it started"
            row.completed_at = utcnow()
    cancels.request(key, task_id)
    return key


def task_cancelled(
    sessions: sessionmaker[Session], task_id: uuid.UUID, *, task_is_final: bool = False
) -> None:
    """Its task was cancelled before it ran: a generation not yet posted is cancelled
    too (a running one hears of it through the task and interrupts ComfyUI). With
    `task_is_final` (seen at start-up: no worker holds it) any unfinished one is."""
    g = ComfyUIGeneration
    unfinished = g.status.in_([PENDING, RUNNING])
    not_started = (g.status == PENDING) & g.prompt_id.is_(None)
    with transaction(sessions) as session:
        session.execute(
            update(g)
            .where(g.task_id == task_id, unfinished if task_is_final else not_started)
            .values(status=CANCELLED, error="Its task was cancelled", completed_at=utcnow())
        )
