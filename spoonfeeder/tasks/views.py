"""The queue as the Dashboard and the Tasks tab read it: one task, a page of them,
a batch's children, the figures; and when the next delayed task is due."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select

from spoonfeeder.db.models import Result, Task
from spoonfeeder.tasks.connections import QueueClock, QueueConnections
from spoonfeeder.tasks.states import COMPLETED, FAILED, QUEUED, STATUSES

tasks = Task.__table__
results = Result.__table__


@dataclass(frozen=True)
class TaskView:
    """One task as the UI shows it; `result` is filled by `get`, not by `list`."""

    id: uuid.UUID
    name: str | None
    type: str
    status: str
    payload: dict[str, Any]
    provider: str | None
    model: str | None
    priority: int
    attempts: int
    max_attempts: int
    progress: float
    progress_message: str | None
    cancel_requested: bool
    error: str | None
    parent_id: uuid.UUID | None
    locked_by: str | None
    locked_until: datetime | None
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    result: dict[str, Any] | None = None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class TaskPage:
    items: list[TaskView]
    total: int  # matching tasks over all pages
    limit: int
    offset: int


@dataclass(frozen=True)
class TaskStats:
    counts: dict[str, int]  # every status, zero included
    completed_last_hour: int
    failed_last_hour: int
    median_duration_seconds: float | None  # over the most recent completed tasks
    recent_failures: list[TaskView] = field(default_factory=list)


_VIEW_COLUMNS = [c for c in tasks.c if c.name != "owner_id"]


def _view(row: Any, result: dict[str, Any] | None = None) -> TaskView:
    values = {c.name: row._mapping[c.name] for c in _VIEW_COLUMNS}
    return TaskView(**values, result=result)


class TaskReads:
    def __init__(self, db: QueueConnections, clock: QueueClock) -> None:
        self._db = db
        self._clock = clock

    def next_run_at(self) -> datetime | None:
        """When the earliest queued task becomes due (None: nothing queued)."""
        with self._db.read() as conn:
            return conn.execute(
                select(func.min(tasks.c.run_at)).where(tasks.c.status == QUEUED)
            ).scalar()

    # -- managing ----------------------------------------------------------------

    def get(self, task_id: uuid.UUID) -> TaskView | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(*_VIEW_COLUMNS, results.c.data.label("result_data"))
                .outerjoin(results, results.c.task_id == tasks.c.id)
                .where(tasks.c.id == task_id)
            ).first()
        return None if row is None else _view(row, row.result_data)

    def children(self, task_id: uuid.UUID) -> list[TaskView]:
        with self._db.read() as conn:
            rows = conn.execute(
                select(*_VIEW_COLUMNS)
                .where(tasks.c.parent_id == task_id)
                .order_by(tasks.c.created_at, tasks.c.id)
            ).all()
        return [_view(row) for row in rows]

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,
        provider: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        parent_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> TaskPage:
        """Newest first, filtered; `total` counts every match for the pager."""
        where: list[ColumnElement[bool]] = []
        if status:
            where.append(tasks.c.status.in_([status] if isinstance(status, str) else status))
        if type:
            where.append(tasks.c.type == type)
        if provider:
            where.append(tasks.c.provider == provider)
        if created_from is not None:
            where.append(tasks.c.created_at >= created_from)
        if created_to is not None:
            where.append(tasks.c.created_at < created_to)
        if parent_id is not None:
            where.append(tasks.c.parent_id == parent_id)
        with self._db.read() as conn:
            total = conn.execute(select(func.count()).select_from(tasks).where(*where)).scalar_one()
            rows = conn.execute(
                select(*_VIEW_COLUMNS)
                .where(*where)
                .order_by(tasks.c.created_at.desc(), tasks.c.id)
                .limit(limit)
                .offset(offset)
            ).all()
        return TaskPage([_view(row) for row in rows], total, limit, offset)

    def stats(self, *, sample: int = 500, failures: int = 5) -> TaskStats:
        """Dashboard figures: counts by status, last hour's throughput, median run time."""
        hour_ago = self._clock.now() - timedelta(hours=1)
        with self._db.read() as conn:
            counts = dict.fromkeys(STATUSES, 0)
            for status, count in conn.execute(
                select(tasks.c.status, func.count()).group_by(tasks.c.status)
            ):
                counts[status] = count
            last_hour = dict(
                conn.execute(
                    select(tasks.c.status, func.count())
                    .where(
                        tasks.c.status.in_([COMPLETED, FAILED]), tasks.c.completed_at >= hour_ago
                    )
                    .group_by(tasks.c.status)
                ).all()
            )
            spans = conn.execute(
                select(tasks.c.started_at, tasks.c.completed_at)
                .where(tasks.c.status == COMPLETED, tasks.c.started_at.is_not(None))
                .order_by(tasks.c.completed_at.desc())
                .limit(sample)
            ).all()
            failed = conn.execute(
                select(*_VIEW_COLUMNS)
                .where(tasks.c.status == FAILED)
                .order_by(tasks.c.completed_at.desc())
                .limit(failures)
            ).all()
        durations = [(done - start).total_seconds() for start, done in spans if done]
        return TaskStats(
            counts=counts,
            completed_last_hour=last_hour.get(COMPLETED, 0),
            failed_last_hour=last_hour.get(FAILED, 0),
            median_duration_seconds=statistics.median(durations) if durations else None,
            recent_failures=[_view(row) for row in failed],
        )
