"""How a task's attempt ended, as a value: computed from the handler's result or the
exception it raised (procrastinate's retry strategy style), then recorded by the worker.

Pure: `outcome_of` and `completed` are unit-tested without a database or a worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from spoonfeeder.errors import (
    PermanentTaskError,
    ProviderError,
    ProviderRateLimited,
    RetryableTaskError,
    SpoonFeederError,
    TaskCancelled,
    TaskInterrupted,
    ValidationError,
)
from spoonfeeder.tasks.connections import connection_lost

Kind = Literal["completed", "cancelled", "interrupted", "requeued", "failed"]


@dataclass(frozen=True)
class Outcome:
    """`completed` (with `result`), `cancelled`, `interrupted` (given up: nothing to
    record), `requeued` (back to the queue, the attempt not counted) or `failed` (with
    `error`; `retryable` and `retry_after` feed the queue's retry policy)."""

    kind: Kind
    result: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    unexpected: bool = False  # the worker logs the traceback: the error names only its kind


CANCELLED = Outcome("cancelled")
INTERRUPTED = Outcome("interrupted")
REQUEUED = Outcome("requeued")


def failed(
    error: str,
    *,
    retryable: bool = False,
    retry_after: float | None = None,
    unexpected: bool = False,
) -> Outcome:
    return Outcome("failed", None, error, retryable, retry_after, unexpected)


def completed(task_type: str, result: Any) -> Outcome:
    """A handler's return value as the task's result: a JSON object (anything else is
    wrapped as {"value": …}); a result that is not JSON fails the task."""
    if result is not None and not isinstance(result, Mapping):
        result = {"value": result}
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return failed(f"The {task_type} handler returned a result that is not JSON")
    return Outcome("completed", result=dict(result) if result is not None else None)


def invalid_payload(task_type: str, exc: ValidationError) -> Outcome:
    return failed(f"Bad payload for {task_type}: {exc}")


def outcome_of(exc: Exception, task_type: str) -> Outcome:
    """What an exception raised by a handler means for its task. Messages are the
    app's own sentences (a SpoonFeederError's); anything else is named by its kind only,
    with the details in the worker's log."""
    if isinstance(exc, TaskCancelled):
        return CANCELLED
    if isinstance(exc, TaskInterrupted):
        return INTERRUPTED
    if isinstance(exc, SQLAlchemyError):
        if connection_lost(exc):  # not the task's fault: it goes back, attempt uncounted
            return REQUEUED
        return failed(
            f"A database error stopped it ({type(exc).__name__}); "
            "the details are in the worker's log",
            retryable=True,
            unexpected=True,
        )
    if isinstance(exc, RetryableTaskError):
        return failed(str(exc), retryable=True, retry_after=exc.retry_after)
    if isinstance(exc, PermanentTaskError):
        return failed(str(exc))
    if isinstance(exc, ProviderError):
        retry_after = exc.retry_after if isinstance(exc, ProviderRateLimited) else None
        return failed(str(exc), retryable=exc.retryable, retry_after=retry_after)
    if isinstance(exc, SpoonFeederError):  # configuration the user must fix: a key, a profile
        return failed(str(exc))
    return failed(
        f"The {task_type} handler failed unexpectedly ({type(exc).__name__}); "
        "the details are in the worker's log",
        retryable=True,
        unexpected=True,
    )
