"""Task handlers for the worker tests. Worker processes load them through
`python -m spoonfeeder worker --handlers tests.worker_handlers`; tests add them to a
copy of the registry, so the app's own registry never lists test types.

Every run is written to `test_executions`, a table the test creates, so a test can
count how many times each task really ran, in which process, on which attempt.
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Any

from sqlalchemy import Engine, text

from spoonfeeder.tasks import HandlerRegistry, TaskContext

EXECUTIONS_DDL = (
    "CREATE TABLE test_executions (task_id VARCHAR(36) NOT NULL, pid INTEGER NOT NULL, "
    "attempt INTEGER NOT NULL)"
)


def create_executions_table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(EXECUTIONS_DDL))


def executions(engine: Engine) -> list[tuple[str, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT task_id, pid, attempt FROM test_executions")).all()
    return [(row[0], row[1], row[2]) for row in rows]


def _record(engine: Engine, task: TaskContext) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO test_executions (task_id, pid, attempt) VALUES (:t, :p, :a)"),
            {"t": str(task.id), "p": os.getpid(), "a": task.attempt},
        )


def record(engine: Engine, task: TaskContext) -> dict[str, Any]:
    """Record the run, optionally take `sleep` seconds, report progress once."""
    _record(engine, task)
    time.sleep(float(task.payload.get("sleep", 0)))
    task.progress(0.5, "half way", force=True)
    return {"pid": os.getpid()}


def hang_first(engine: Engine, task: TaskContext) -> dict[str, Any]:
    """Hang on the first attempt (the test kills this process), finish on the next."""
    _record(engine, task)
    if task.attempt == 1:
        time.sleep(120)
    return {"pid": os.getpid(), "attempt": task.attempt}


def until_cancelled(engine: Engine, task: TaskContext) -> None:
    """Run until cancelled (at most a minute), checking every 20 ms."""
    _record(engine, task)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task.check_cancelled()
        time.sleep(0.02)


def install(registry: HandlerRegistry, engine: Engine) -> HandlerRegistry:
    """The tests' handlers, recording their runs in `engine`'s test_executions table."""
    registry.add("test.record", partial(record, engine))
    registry.add("test.hang_first", partial(hang_first, engine))
    registry.add("test.until_cancelled", partial(until_cancelled, engine))
    return registry
