"""The durable task queue over the app's database.

    task_id = ctx.tasks.create_task("text.generate", provider="openai", model="gpt-4o-mini",
                                    prompt="Write a haiku")
    ctx.start_workers()            # or: python -m spoonfeeder worker

`queue` holds the SQL, `worker` the thread pool, `handlers` the type → handler
registry (`register`), `service` what the UI calls, `retry` the backoff policy.
"""

from spoonfeeder.tasks import text as _builtin_handlers  # noqa: F401  (registers text.*)
from spoonfeeder.tasks.handlers import (
    HandlerRegistry,
    HandlerSpec,
    TaskCancelled,
    TaskContext,
    TaskInterrupted,
    handlers,
    register,
)
from spoonfeeder.tasks.queue import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    ClaimedTask,
    TaskPage,
    TaskQueue,
    TaskStats,
    TaskView,
)
from spoonfeeder.tasks.retry import RetryDecision, RetryPolicy
from spoonfeeder.tasks.service import TaskService
from spoonfeeder.tasks.worker import WorkerPool

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "ClaimedTask",
    "HandlerRegistry",
    "HandlerSpec",
    "RetryDecision",
    "RetryPolicy",
    "TaskCancelled",
    "TaskContext",
    "TaskInterrupted",
    "TaskPage",
    "TaskQueue",
    "TaskService",
    "TaskStats",
    "TaskView",
    "WorkerPool",
    "handlers",
    "register",
]
