"""The durable task queue over the app's database.

    task_id = ctx.tasks.create_task("text.generate", provider="openai", model="gpt-4o-mini",
                                    prompt="Write a haiku")
    ctx.start_workers()            # or: python -m spoonfeeder worker

`queue` holds the queue's SQL (`connections` how it reaches the database, `views` the
reads of the Dashboard and the Tasks tab, `states` the states), `worker` the thread
pool, `handlers` the type → handler registry and the `TaskContext`, `service` what
the UI calls, `retry` the backoff policy, `text` the built-in text.* handlers (registered by
`AppContext`).

The names below are imported on first use, so that the pure `retry` loads without the
database, the providers or the services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spoonfeeder.lazy import lazy_exports

if TYPE_CHECKING:
    from spoonfeeder.tasks.handlers import (
        HandlerRegistry,
        HandlerSpec,
        TaskCancelled,
        TaskContext,
        TaskInterrupted,
        register,
    )
    from spoonfeeder.tasks.queue import ClaimedTask, TaskQueue
    from spoonfeeder.tasks.retry import RetryDecision, RetryPolicy
    from spoonfeeder.tasks.service import TaskService
    from spoonfeeder.tasks.states import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, STATUSES
    from spoonfeeder.tasks.views import TaskPage, TaskStats, TaskView
    from spoonfeeder.tasks.worker import WorkerPool

_HOME = {
    **dict.fromkeys(
        [
            "HandlerRegistry",
            "HandlerSpec",
            "TaskCancelled",
            "TaskContext",
            "TaskInterrupted",
            "register",
        ],
        "handlers",
    ),
    **dict.fromkeys(
        ["CANCELLED", "COMPLETED", "FAILED", "QUEUED", "RUNNING", "STATUSES"], "states"
    ),
    "ClaimedTask": "queue",
    "TaskQueue": "queue",
    **dict.fromkeys(["TaskPage", "TaskStats", "TaskView"], "views"),
    "RetryDecision": "retry",
    "RetryPolicy": "retry",
    "TaskService": "service",
    "WorkerPool": "worker",
}
__all__ = sorted(_HOME)


__getattr__ = lazy_exports(__name__, _HOME, globals())
