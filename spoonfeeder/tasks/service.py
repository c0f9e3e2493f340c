"""TaskService: what the Tasks tab and the dashboard call. Validates what a person typed
and explains refusals; the queue does the work."""

from __future__ import annotations

import json
import time as time_
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import parse_id, shown
from spoonfeeder.tasks.handlers import HandlerRegistry
from spoonfeeder.tasks.queue import TaskQueue
from spoonfeeder.tasks.states import CANCELLED, FAILED, QUEUED, RUNNING, STATUSES
from spoonfeeder.tasks.views import TaskPage, TaskStats, TaskView

if TYPE_CHECKING:
    from spoonfeeder.chat import ChatTarget

MAX_NAME = 200
MAX_PAGE = 500


def parse_task_id(value: uuid.UUID | str) -> uuid.UUID:
    return parse_id(value, "task")


def parse_options(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The Options box: a JSON object, or nothing."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationError(
            f'Options must be JSON, e.g. {{"temperature": 0.2}} — {exc}', "options"
        ) from None
    if not isinstance(value, dict):
        raise ValidationError('Options must be a JSON object, e.g. {"max_tokens": 200}', "options")
    return value


def parse_when(value: datetime | date | str | None, *, end: bool = False) -> datetime | None:
    """A date filter: a datetime, a date or 'YYYY-MM-DD[ HH:MM]' text (UTC). A bare date
    as the end of a range includes that whole day."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text) if len(text) > 10 else date.fromisoformat(text)
        except ValueError:
            raise ValidationError(
                f"{shown(text)} is not a date; use YYYY-MM-DD or YYYY-MM-DD HH:MM", "date"
            ) from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    start = datetime.combine(value, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


class TaskService:
    def __init__(self, queue: TaskQueue, registry: HandlerRegistry) -> None:
        self.queue = queue
        self.registry = registry

    def changes(self, idle: float, debounce: float) -> Iterator[bool]:
        """For a live view of the tasks: True at once, then True after each burst of
        task events (collected for `debounce` seconds: one update for many), False after
        `idle` seconds without any — a moment for the reader to hand control back. Runs
        until the reader stops it."""
        with self.queue.events.subscribe("task:*") as events:
            yield True
            while True:
                if events.get(timeout=idle) is None:
                    yield False
                    continue
                pause = time_.monotonic() + debounce
                while (left := pause - time_.monotonic()) > 0 and events.get(left) is not None:
                    pass  # take the burst
                yield True

    def task_types(self) -> list[str]:
        return self.registry.types()

    def describe_type(self, type: str) -> str:
        spec = self.registry.get(type)
        return spec.description if spec else ""

    def create_task(
        self,
        type: str,
        *,
        name: str | None = None,
        target: ChatTarget | None = None,
        provider: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        options: str | Mapping[str, Any] | None = None,
        inputs: str | Sequence[str] | None = None,
        payload: Mapping[str, Any] | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        run_at: datetime | None = None,
    ) -> TaskView:
        """Queue a task from the form's fields. Options (JSON) and `payload` are merged
        into the payload; provider, model, prompt and inputs win over both. A chat
        `target` (ChatTargets.resolve of a face's provider choice) gives the provider,
        the model and the profile, if it names one."""
        type = (type or "").strip()
        if not type:
            raise ValidationError("Choose a task type", "type")
        body = {**parse_options(options), **(payload or {})}
        if target is not None:
            provider, model = target.provider, target.model
            if target.profile_id:
                body["profile_id"] = str(target.profile_id)
        for key, value in (("provider", provider), ("model", model), ("prompt", prompt)):
            if isinstance(value, str) and value.strip():
                body[key] = value.strip() if key != "prompt" else value
        if inputs:
            body["inputs"] = inputs if isinstance(inputs, str) else list(inputs)
        body = self.registry.validate(type, body)
        clean_name = (name or "").strip() or _default_name(type, body)
        if len(clean_name) > MAX_NAME:
            raise ValidationError(f"A name has at most {MAX_NAME} characters", "name")
        if isinstance(priority, bool) or not isinstance(priority, int | float):
            raise ValidationError("Priority must be a whole number", "priority")
        if not 1 <= int(max_attempts) <= 20:
            raise ValidationError("Attempts must be between 1 and 20", "max_attempts")
        task_id = self.queue.enqueue(
            type,
            body,
            name=clean_name,
            provider=body.get("provider"),
            model=body.get("model"),
            priority=int(priority),
            max_attempts=int(max_attempts),
            run_at=run_at,
        )
        return self.get_task(task_id)

    def list_tasks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        provider: str | None = None,
        created_from: datetime | date | str | None = None,
        created_to: datetime | date | str | None = None,
        parent_id: uuid.UUID | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> TaskPage:
        """Newest first. Empty or "all" filters are ignored."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        statuses = [s.strip().lower() for s in statuses if s and s.strip().lower() != "all"]
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise ValidationError(
                f"Unknown status {shown(unknown[0])}; choose one of: {', '.join(STATUSES)}",
                "status",
            )
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"Page size must be between 1 and {MAX_PAGE}", "limit")
        return self.queue.reads.list(
            status=statuses or None,
            type=_choice(type),
            provider=_choice(provider),
            created_from=parse_when(created_from),
            created_to=parse_when(created_to, end=True),
            parent_id=parse_task_id(parent_id) if parent_id else None,
            limit=limit,
            offset=max(0, offset),
        )

    def get_task(self, task_id: uuid.UUID | str) -> TaskView:
        """One task with its result (completed) or error (failed)."""
        found = self.queue.reads.get(parse_task_id(task_id))
        if found is None:
            raise NotFoundError("This task no longer exists (it may have been deleted)")
        return found

    def children(self, task_id: uuid.UUID | str) -> list[TaskView]:
        return self.queue.reads.children(parse_task_id(task_id))

    def cancel_task(self, task_id: uuid.UUID | str) -> TaskView:
        """A queued task is cancelled at once; a running one is asked to stop. A batch
        that already finished queueing its tasks can still be cancelled: its remaining
        tasks are."""
        task = self.get_task(task_id)
        if not self._unfinished(task):
            raise ValidationError(f"This task is already {task.status}; there is nothing to cancel")
        self.queue.cancel(task.id)
        return self.get_task(task.id)

    def cancel_or_delete(
        self, task_id: uuid.UUID | str
    ) -> tuple[Literal["cancelled", "deleted"], TaskView]:
        """One verb for both (the REST DELETE): a task still to finish — queued, running,
        or a batch with tasks still to run — is cancelled (as `cancel_task`); a finished
        one is deleted with its result and children (as `delete_task`). Returns what was
        done and the task: as it is now, or as it was before it was deleted."""
        task = self.get_task(task_id)
        if self._unfinished(task):
            return "cancelled", self.cancel_task(task.id)
        self.delete_task(task.id)
        return "deleted", task

    def _unfinished(self, task: TaskView) -> bool:
        if task.status in (QUEUED, RUNNING):
            return True
        active = [QUEUED, RUNNING]
        return self.queue.reads.list(parent_id=task.id, status=active, limit=1).total > 0

    def retry_task(self, task_id: uuid.UUID | str) -> TaskView:
        task = self.get_task(task_id)
        if task.status not in (FAILED, CANCELLED) or not self.queue.retry(task.id):
            raise ValidationError(
                f"Only failed or cancelled tasks can be retried; this one is {task.status}"
            )
        return self.get_task(task.id)

    def delete_task(self, task_id: uuid.UUID | str) -> None:
        """Delete a task with its result and children; never one that is running."""
        task = self.get_task(task_id)
        if self.queue.delete(task.id):
            return
        now = self.queue.reads.get(task.id)  # why not: read after the refusal, not before
        if now is None:
            return  # deleted meanwhile by someone else: what was asked for
        if now.status == RUNNING:
            raise ValidationError("This task is running; cancel it first, then delete it")
        raise ValidationError(
            "A task of this batch is still running; cancel the batch first, then delete it"
        )

    def stats(self) -> TaskStats:
        return self.queue.reads.stats()


def _choice(value: str | None) -> str | None:
    """A dropdown filter: blank and "all" mean no filter."""
    text = (value or "").strip()
    return None if text.lower() in ("", "all") else text


def _default_name(type: str, payload: Mapping[str, Any]) -> str:
    text = payload.get("prompt") or payload.get("template")
    if isinstance(text, str) and text.strip():
        first = " ".join(text.split())
        return first if len(first) <= 60 else first[:59] + "…"
    return type
