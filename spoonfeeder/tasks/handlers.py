"""Task handlers: a registry from task type to the function that runs it.

The app's registry is built by `AppContext` (`ctx.handlers`); each area installs its
handlers with what they need bound in, never the whole app:

    def install(registry: HandlerRegistry, providers: ProviderRegistry) -> None:
        registry.add("text.generate", partial(generate, providers), validate=check)

    def generate(providers: ProviderRegistry, task: TaskContext) -> dict:
        task.progress(0.5, "sampling")   # stored, published as task:progress
        task.check_cancelled()           # raises when the user pressed Cancel
        return {"outputs": [...]}        # stored as the task's result

A handler raises `RetryableTaskError` or `PermanentTaskError` (or a `ProviderError`,
whose `retryable` decides) and must be idempotent per task id: after a crash the
same task runs again. `validate(payload) -> payload` raises `ValidationError`; it
runs when a task is created in the UI and again before the handler, so a bad
payload fails with its message instead of crashing anything.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spoonfeeder.errors import TaskCancelled, TaskInterrupted, ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.tasks.connections import connection_lost

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from spoonfeeder.tasks.queue import ClaimedTask, TaskQueue

Handler = Callable[["TaskContext"], Mapping[str, Any] | None]
Validator = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class HandlerSpec:
    type: str
    run: Handler
    validate: Validator | None = None
    description: str = ""


class HandlerRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def register(
        self, type: str, *, validate: Validator | None = None, description: str = ""
    ) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("test.echo")`. Registering a type again replaces it."""

        def decorate(run: Handler) -> Handler:
            self.add(type, run, validate=validate, description=description)
            return run

        return decorate

    def add(
        self,
        type: str,
        run: Handler,
        *,
        validate: Validator | None = None,
        description: str = "",
    ) -> None:
        self._specs[type] = HandlerSpec(type, run, validate, description)

    def get(self, type: str) -> HandlerSpec | None:
        return self._specs.get(type)

    def types(self) -> list[str]:
        return sorted(self._specs)

    def validate(self, type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as the handler will see it, or a ValidationError saying what is wrong."""
        spec = self._specs.get(type)
        if spec is None:
            known = ", ".join(self.types()) or "none registered"
            raise ValidationError(
                f"Unknown task type {shown(type)}; choose one of: {known}", "type"
            )
        if not isinstance(payload, Mapping):
            raise ValidationError(f"The payload of a {type} task must be a JSON object")
        return spec.validate(dict(payload)) if spec.validate else dict(payload)

    def copy(self) -> HandlerRegistry:
        """A registry with the same handlers, to extend without touching the original."""
        other = HandlerRegistry()
        other._specs = dict(self._specs)
        return other


class TaskContext:
    """What a handler gets: its task, progress reporting and cancellation."""

    def __init__(
        self,
        task: ClaimedTask,
        queue: TaskQueue,
        *,
        lease_seconds: float,
        progress_interval: float = 0.25,
    ) -> None:
        self.task = task
        self.queue = queue
        self.payload: dict[str, Any] = dict(task.payload)
        self._lease = lease_seconds
        self._interval = progress_interval
        self._last_progress = 0.0
        self._cancel = threading.Event()
        self._interrupted = threading.Event()

    @property
    def id(self) -> uuid.UUID:
        return self.task.id

    @property
    def type(self) -> str:
        return self.task.type

    @property
    def attempt(self) -> int:
        """This attempt's number, starting at 1."""
        return self.task.attempts

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def progress(
        self, fraction: float | None = None, message: str | None = None, *, force: bool = False
    ) -> None:
        """Report progress (0..1; None keeps the last fraction). Cheap to call often:
        writes are spaced `progress_interval` apart unless `force` or complete."""
        now = time.monotonic()
        if not force and fraction != 1.0 and now - self._last_progress < self._interval:
            return
        self._last_progress = now
        try:
            state = self.queue.progress(self.task, fraction, message, self._lease)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            # Progress is news, not the task's outcome: the next report reconnects (and
            # the heartbeat keeps the lease meanwhile). The handler carries on.
            log.warning("Lost the database connection reporting progress of %s", self.id)
            self._last_progress = 0.0
            return
        if state is None:  # the lease is gone: someone else owns this task now
            self._interrupted.set()
        elif state:
            self._cancel.set()

    def check_cancelled(self) -> None:
        """Raise if the task should stop now; call it between units of work."""
        if self._interrupted.is_set():
            raise TaskInterrupted(f"task {self.id} was given up by this worker")
        if self._cancel.is_set():
            raise TaskCancelled(f"task {self.id} was cancelled")

    # Called by the worker pool, from other threads.
    def request_cancel(self) -> None:
        self._cancel.set()

    def interrupt(self) -> None:
        self._interrupted.set()
