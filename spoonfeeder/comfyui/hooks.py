"""What the app connects to the ComfyUI area after building it — the task queue and the
event bus — and the stop requests that runs in this process look at."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spoonfeeder.comfyui.views import GenerationView
    from spoonfeeder.events import EventBus

# (generation) -> its task's id. Set by the task queue integration (comfyui/handler.py).
Enqueue = Callable[["GenerationView"], "uuid.UUID | None"]
CancelTask = Callable[[uuid.UUID], None]


@dataclass
class QueueHooks:
    """None until the app connects them (`ComfyUI.connect`): without a queue,
    generations are created pending and run directly (tests, scripts); without an
    event bus, progress reaches only a run's own `report`."""

    enqueue: Enqueue | None = None
    cancel_task: CancelTask | None = None
    events: EventBus | None = None


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
