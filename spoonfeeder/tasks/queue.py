"""The task queue's SQL, in one place: enqueue, claim, heartbeat, finish, reap, browse.

States: queued → running → completed | failed | cancelled. A retryable failure, an
expired lease and a manual retry put a task back to `queued`.

Claim (PostgreSQL) — one statement; concurrent workers skip each other's locked rows:

    UPDATE tasks SET status='running', locked_by=:worker, locked_until=now()+:lease,
           attempts=attempts+1, started_at=now(), ...
    WHERE id = (SELECT id FROM tasks WHERE status='queued' AND run_at <= now()
                ORDER BY priority DESC, run_at, created_at
                FOR UPDATE SKIP LOCKED LIMIT 1)
    RETURNING id, type, payload, attempts, ...

SQLite has no row locks: the same UPDATE runs inside `BEGIN IMMEDIATE`, which takes
the database's single write lock up front (a deferred transaction could fail to
upgrade its read snapshot under WAL instead of waiting).

A busy worker calls `complete_and_claim`: completion, result row and the next claim
in one statement (data-modifying CTEs) on PostgreSQL, one transaction on SQLite —
one commit per task. See docs/performance.md for what each choice bought.

Finishing writes (complete, fail, progress, heartbeat) are fenced by `locked_by`: a
worker whose lease was reaped and whose task went to someone else changes nothing.
The hot path is Core SQL (no ORM objects); times come from `QueueClock`: the
database clock on PostgreSQL, so workers on other machines agree on leases and
`run_at`, and one the tests move forward instead of sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)

from spoonfeeder.db.models import Result, Task
from spoonfeeder.db.types import UTCDateTime
from spoonfeeder.events import EventBus
from spoonfeeder.tasks.connections import QueueClock, QueueConnections
from spoonfeeder.tasks.retry import RetryPolicy
from spoonfeeder.tasks.states import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING
from spoonfeeder.tasks.views import TaskReads

MAX_ERROR_CHARS = 4000

tasks = Task.__table__
results = Result.__table__

_CLAIMED_COLUMNS = (
    tasks.c.id,
    tasks.c.type,
    tasks.c.payload,
    tasks.c.attempts,
    tasks.c.max_attempts,
    tasks.c.name,
    tasks.c.provider,
    tasks.c.model,
    tasks.c.parent_id,
)


def _unlocked(now: Any) -> dict[str, Any]:
    """The values that take a task out of its worker's hands."""
    return {"locked_by": None, "locked_until": None, "updated_at": now}


def _given_back(now: Any) -> dict[str, Any]:
    """Back in the queue, in its old place, without counting the interrupted attempt."""
    return {"status": QUEUED, "attempts": tasks.c.attempts - 1, **_unlocked(now)}


@dataclass(frozen=True)
class ClaimedTask:
    """A task a worker holds the lease on; pass it back to complete/fail/progress."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    attempts: int  # this attempt's number, 1-based
    max_attempts: int
    name: str | None
    provider: str | None
    model: str | None
    parent_id: uuid.UUID | None
    worker_id: str


class TaskQueue:
    """The queue over the app's database. Publishes `task:*` events after each change."""

    def __init__(
        self,
        engine: Engine,
        events: EventBus | None = None,
        retry_policy: RetryPolicy | None = None,
        clock: QueueClock | None = None,
    ) -> None:
        self.engine = engine
        self.events = events or EventBus()
        self.retry_policy = retry_policy or RetryPolicy()
        self.db = QueueConnections(engine)
        self.postgres = self.db.postgres
        self.clock = clock or QueueClock(self.postgres)
        self.reads = TaskReads(self.db, self.clock)  # what the Dashboard and Tasks tab read
        self.pinned = self.db.pinned  # worker threads hold one connection each
        self._prepare()

    # -- plumbing --------------------------------------------------------------

    def _prepare(self) -> None:
        """Build the hot-path statements once: SQLAlchemy then reuses their compiled
        form, and each call only binds values."""
        now, until = self.clock.param("now"), self.clock.param("until")
        due = (
            select(tasks.c.id)
            # A literal status, so the planner can use the partial index ix_tasks_queued.
            .where(tasks.c.status == literal_column("'queued'"), tasks.c.run_at <= now)
            .order_by(tasks.c.priority.desc(), tasks.c.run_at, tasks.c.created_at)
            .limit(1)
        )
        if self.postgres:
            due = due.with_for_update(skip_locked=True)
        else:
            # SQLite's planner, without statistics, picks ix_tasks_claim and sorts the
            # queue on every claim; name the index that already has the claim's order.
            due = (
                text(
                    "SELECT id FROM tasks INDEXED BY ix_tasks_queued "
                    "WHERE status = 'queued' AND run_at <= :now "
                    "ORDER BY priority DESC, run_at, created_at LIMIT 1"
                )
                .bindparams(bindparam("now", type_=UTCDateTime()))
                .columns(tasks.c.id)
            )
        self._claim_sql = (
            update(tasks)
            .where(tasks.c.id == due.scalar_subquery())
            .values(
                status=RUNNING,
                locked_by=bindparam("worker"),
                locked_until=until,
                attempts=tasks.c.attempts + 1,
                started_at=now,
                updated_at=now,
                progress=0.0,
                progress_message=None,
            )
            .returning(*_CLAIMED_COLUMNS)
        )
        mine = and_(
            tasks.c.id == bindparam("tid", type_=tasks.c.id.type),
            tasks.c.status == literal_column("'running'"),
            tasks.c.locked_by == bindparam("worker"),
        )
        unlock = {"locked_by": None, "locked_until": None, "updated_at": now}
        finish = (
            update(tasks)
            .where(mine)
            .values(status=COMPLETED, progress=1.0, error=None, completed_at=now, **unlock)
        )
        if self.postgres:
            # One statement: the result row is written only if the update matched.
            finished = finish.returning(tasks.c.id).cte("finished")
            self._complete_sql = (
                insert(results)
                .from_select(
                    ["id", "task_id", "data", "created_at"],
                    select(
                        bindparam("rid", type_=results.c.id.type),
                        finished.c.id,
                        bindparam("data", type_=results.c.data.type),
                        now,
                    ),
                )
                .returning(results.c.task_id)
            )  # rowcount is not reliable through a CTE
            # Complete one task and claim the next in one statement, one commit: the
            # worker's steady state. Always one row: how many were completed (0 or 1)
            # and the claimed task's columns (NULL when nothing was due).
            stored = self._complete_sql.cte("stored")
            claimed = self._claim_sql.cte("claimed")
            one = select(literal_column("1").label("one")).subquery("one")
            self._complete_claim_sql = select(
                select(func.count()).select_from(stored).scalar_subquery().label("completed"),
                *claimed.c,
            ).select_from(one.outerjoin(claimed, true()))
        else:
            self._complete_sql = finish
            self._result_sql = insert(results).values(
                id=bindparam("rid", type_=results.c.id.type),
                task_id=bindparam("tid", type_=results.c.task_id.type),
                data=bindparam("data", type_=results.c.data.type),
                created_at=now,
            )
        self._requeue_sql = (
            update(tasks)
            .where(mine)
            .values(status=QUEUED, run_at=until, error=bindparam("err"), **unlock)
        )
        self._fail_sql = (
            update(tasks)
            .where(mine)
            .values(status=FAILED, completed_at=now, error=bindparam("err"), **unlock)
        )
        self._progress_sql = (
            update(tasks)
            .where(mine)
            .values(
                progress=func.coalesce(bindparam("frac", type_=Float()), tasks.c.progress),
                progress_message=bindparam("msg", type_=Text()),
                locked_until=until,
                updated_at=now,
            )
            .returning(tasks.c.cancel_requested, tasks.c.progress)
        )
        self._heartbeat_sql = (
            update(tasks)
            .where(
                tasks.c.status == literal_column("'running'"),
                tasks.c.locked_by.in_(bindparam("workers", expanding=True)),
                tasks.c.id.in_(bindparam("ids", expanding=True)),
            )
            .values(locked_until=until)
            .returning(tasks.c.id, tasks.c.cancel_requested)
        )
        # A task a worker holds without knowing it: a claim that committed while the
        # connection died before the answer came back. It goes back, attempt uncounted.
        self._orphans_sql = (
            update(tasks)
            .where(
                tasks.c.status == literal_column("'running'"),
                tasks.c.locked_by == bindparam("worker"),
                tasks.c.id != bindparam("keep", type_=tasks.c.id.type),
            )
            .values(**_given_back(now))
            .returning(tasks.c.id, tasks.c.type)
        )

    def _publish(self, topic: str, **data: Any) -> None:
        self.events.publish(
            topic, {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in data.items()}
        )

    # -- producing ---------------------------------------------------------------

    def enqueue(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        run_at: datetime | None = None,
        parent_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Add one task; returns its id."""
        spec = {
            "type": type,
            "payload": payload,
            "name": name,
            "provider": provider,
            "model": model,
            "priority": priority,
            "max_attempts": max_attempts,
            "run_at": run_at,
            "parent_id": parent_id,
        }
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
        """Add many tasks in one transaction; each spec has `enqueue`'s argument names."""
        if not specs:
            return []
        rows = [
            {
                "id": uuid.uuid4(),
                "type": spec["type"],
                "payload": dict(spec.get("payload") or {}),
                "name": spec.get("name"),
                "provider": spec.get("provider"),
                "model": spec.get("model"),
                "priority": int(spec.get("priority") or 0),
                "max_attempts": max(1, int(spec.get("max_attempts") or 3)),
                "given_run_at": spec.get("run_at"),
                "parent_id": spec.get("parent_id"),
            }
            for spec in specs
        ]
        now = self.clock.expr()
        stmt = insert(tasks).values(
            status=QUEUED,
            attempts=0,
            progress=0.0,
            cancel_requested=False,
            run_at=func.coalesce(bindparam("given_run_at", type_=UTCDateTime()), now),
            created_at=now,
            updated_at=now,
        )
        with self.db.write(atomic=len(rows) > 1) as conn:
            conn.execute(stmt, rows)
        for row in rows:
            self._publish(
                "task:created",
                id=row["id"],
                type=row["type"],
                name=row["name"],
                status=QUEUED,
                parent_id=row["parent_id"],
            )
        return [row["id"] for row in rows]

    # -- consuming ---------------------------------------------------------------

    def claim(self, worker_id: str, lease_seconds: float) -> ClaimedTask | None:
        """Take the most urgent due task, or None when there is none."""
        params = {
            "worker": worker_id,
            **self.clock.values(until=lease_seconds),
        }
        with self.db.write() as conn:
            row = conn.execute(self._claim_sql, params).first()
        if row is None:
            return None
        task = ClaimedTask(**row._mapping, worker_id=worker_id)
        self._published_start(task)
        return task

    def _published_start(self, task: ClaimedTask) -> None:
        self._publish(
            "task:started", id=task.id, type=task.type, status=RUNNING, attempt=task.attempts
        )

    def _mine(self, task: ClaimedTask) -> ColumnElement[bool]:
        return and_(
            tasks.c.id == task.id, tasks.c.status == RUNNING, tasks.c.locked_by == task.worker_id
        )

    def complete(self, task: ClaimedTask, result: Mapping[str, Any] | None = None) -> bool:
        """Mark done and store the result row; False if the lease was lost meanwhile."""
        params = {**_completion(task, result), **self.clock.values()}
        with self.db.write() as conn:
            if self.postgres:
                done = conn.execute(self._complete_sql, params).first() is not None
            else:
                done = conn.execute(self._complete_sql, params).rowcount == 1
            if done and not self.postgres:
                conn.execute(self._result_sql, params)
        if done:
            self._publish("task:completed", id=task.id, type=task.type, status=COMPLETED)
        return bool(done)

    def complete_and_claim(
        self, task: ClaimedTask, result: Mapping[str, Any] | None, lease_seconds: float
    ) -> tuple[bool, ClaimedTask | None]:
        """`complete(task)` then `claim()` for the same worker, in one transaction
        (one statement on PostgreSQL): a worker that keeps busy commits once per task."""
        params = {**_completion(task, result), **self.clock.values(until=lease_seconds)}
        with self.db.write() as conn:
            if self.postgres:
                row = conn.execute(self._complete_claim_sql, params).one()
                done = row.completed == 1
                if row.id is None:
                    row = None
            else:
                done = conn.execute(self._complete_sql, params).rowcount == 1
                if done:
                    conn.execute(self._result_sql, params)
                row = conn.execute(self._claim_sql, params).first()
        if done:
            self._publish("task:completed", id=task.id, type=task.type, status=COMPLETED)
        if row is None:
            return done, None
        claimed = ClaimedTask(
            **{c.name: row._mapping[c.name] for c in _CLAIMED_COLUMNS}, worker_id=task.worker_id
        )
        self._published_start(claimed)
        return done, claimed

    def fail(
        self,
        task: ClaimedTask,
        error: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
    ) -> str | None:
        """Record a failed attempt: back to `queued` after a backoff while attempts
        remain and the error allows it, else `failed`. Returns the new status (None if
        the lease was lost)."""
        decision = self.retry_policy.decide(
            task.attempts, task.max_attempts, retryable=retryable, retry_after=retry_after
        )
        error = error[:MAX_ERROR_CHARS]
        params = {
            "tid": task.id,
            "worker": task.worker_id,
            "err": error,
            **self.clock.values(until=decision.delay),
        }
        stmt = self._requeue_sql if decision.retry else self._fail_sql
        with self.db.write() as conn:
            done = conn.execute(stmt, params).rowcount
        if not done:
            return None
        status = QUEUED if decision.retry else FAILED
        topic = "task:queued" if status == QUEUED else "task:failed"
        self._publish(
            topic,
            id=task.id,
            type=task.type,
            status=status,
            error=error[:300],
            attempt=task.attempts,
            retry_in=round(decision.delay, 3) if decision.retry else None,
        )
        return status

    def finish_cancelled(self, task: ClaimedTask, message: str = "Cancelled while running") -> bool:
        """The handler stopped because cancellation was asked for."""
        now = self.clock.expr()
        with self.db.write() as conn:
            done = conn.execute(
                update(tasks)
                .where(self._mine(task))
                .values(
                    status=CANCELLED,
                    progress_message=message,
                    completed_at=now,
                    **_unlocked(now),
                )
            ).rowcount
        if done:
            self._publish("task:cancelled", id=task.id, type=task.type, status=CANCELLED)
        return bool(done)

    def release(self, task: ClaimedTask) -> bool:
        """Give a task back untouched (shutdown, a lost database connection): the
        interrupted attempt does not count, and it keeps its place (its run_at)."""
        now = self.clock.expr()
        with self.db.write() as conn:
            done = conn.execute(
                update(tasks).where(self._mine(task)).values(**_given_back(now))
            ).rowcount
        if done:
            self._publish("task:queued", id=task.id, type=task.type, status=QUEUED)
        return bool(done)

    def progress(
        self,
        task: ClaimedTask,
        fraction: float | None,
        message: str | None,
        lease_seconds: float,
    ) -> bool | None:
        """Store progress and extend the lease. Returns whether cancellation was
        requested, or None when this worker no longer holds the task."""
        params = {
            "tid": task.id,
            "worker": task.worker_id,
            "frac": None if fraction is None else max(0.0, min(1.0, fraction)),
            "msg": message,
            **self.clock.values(until=lease_seconds),
        }
        with self.db.write() as conn:
            row = conn.execute(self._progress_sql, params).first()
        if row is None:
            return None
        self._publish(
            "task:progress",
            id=task.id,
            type=task.type,
            progress=row.progress,
            message=(message or "")[:300],
        )
        return bool(row.cancel_requested)

    def heartbeat(
        self, running: Mapping[str, uuid.UUID], lease_seconds: float
    ) -> dict[uuid.UUID, bool]:
        """Extend the leases of the tasks these workers are running ({worker id: task
        id}), in one statement — only those: a task a worker holds without knowing it
        must not be kept alive. Returns {task id: cancel requested}."""
        if not running:
            return {}
        params = {
            "workers": list(running),
            "ids": list(running.values()),
            "until": self.clock.values(until=lease_seconds)["until"],
        }
        with self.db.write() as conn:
            rows = conn.execute(self._heartbeat_sql, params).all()
        return {row.id: bool(row.cancel_requested) for row in rows}

    def release_orphans(self, worker_id: str, keep: uuid.UUID | None = None) -> int:
        """Give back the tasks `worker_id` holds but does not know of (all but `keep`):
        a claim that committed while the connection died before its answer arrived.
        Their attempt does not count. Returns how many."""
        params = {"worker": worker_id, "keep": keep or uuid.UUID(int=0), **self.clock.values()}
        with self.db.write() as conn:
            rows = conn.execute(self._orphans_sql, params).all()
        for row in rows:
            self._publish("task:queued", id=row.id, type=row.type, status=QUEUED)
        return len(rows)

    def reap(self) -> int:
        """Return tasks whose lease expired (their worker died) to the queue.

        A task that has used all its attempts fails instead, so a task that kills its
        worker every time cannot loop forever; one whose cancellation was asked for
        ends cancelled. Returns how many tasks were requeued.
        """
        now = self.clock.expr()
        expired = and_(tasks.c.status == RUNNING, tasks.c.locked_until < now)
        unlock = {"locked_by": None, "locked_until": None, "updated_at": now}
        with self.db.write(atomic=True) as conn:
            cancelled = conn.execute(
                update(tasks)
                .where(expired, tasks.c.cancel_requested.is_(True))
                .values(status=CANCELLED, completed_at=now, **unlock)
                .returning(tasks.c.id, tasks.c.type)
            ).all()
            exhausted = conn.execute(
                update(tasks)
                .where(expired, tasks.c.attempts >= tasks.c.max_attempts)
                .values(
                    status=FAILED,
                    completed_at=now,
                    error="The worker running this task stopped responding (its lease "
                    "expired) and no attempts are left.",
                    **unlock,
                )
                .returning(tasks.c.id, tasks.c.type)
            ).all()
            # Back in its place: run_at stays the time it was due, so it runs before the
            # tasks queued behind it while it ran, not after the whole backlog.
            requeued = conn.execute(
                update(tasks)
                .where(expired)
                .values(status=QUEUED, **unlock)
                .returning(tasks.c.id, tasks.c.type)
            ).all()
        for rows, status, topic in (
            (cancelled, CANCELLED, "task:cancelled"),
            (exhausted, FAILED, "task:failed"),
            (requeued, QUEUED, "task:queued"),
        ):
            for row in rows:
                self._publish(topic, id=row.id, type=row.type, status=status, reaped=True)
        return len(requeued)

    def cancel(self, task_id: uuid.UUID) -> str | None:
        """Cancel a queued task now; ask a running one to stop (its handler checks).
        Queued children of a batch are cancelled with it. Returns the task's status
        afterwards, None if it does not exist."""
        now = self.clock.expr()
        with self.db.write(atomic=True) as conn:
            status = conn.execute(select(tasks.c.status).where(tasks.c.id == task_id)).scalar()
            if status is None:
                return None
            target = or_(tasks.c.id == task_id, tasks.c.parent_id == task_id)
            stopped = conn.execute(
                update(tasks)
                .where(target, tasks.c.status == QUEUED)
                .values(status=CANCELLED, cancel_requested=True, completed_at=now, updated_at=now)
                .returning(tasks.c.id, tasks.c.type)
            ).all()
            asked = conn.execute(
                update(tasks)
                .where(target, tasks.c.status == RUNNING)
                .values(cancel_requested=True, updated_at=now)
                .returning(tasks.c.id, tasks.c.type)
            ).all()
        for row in stopped:
            self._publish("task:cancelled", id=row.id, type=row.type, status=CANCELLED)
        for row in asked:
            self._publish("task:cancel_requested", id=row.id, type=row.type, status=RUNNING)
        return CANCELLED if status == QUEUED else status

    def retry(self, task_id: uuid.UUID) -> bool:
        """Queue a failed or cancelled task again with a fresh set of attempts."""
        now = self.clock.expr()
        with self.db.write() as conn:
            row = conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status.in_([FAILED, CANCELLED]))
                .values(
                    status=QUEUED,
                    attempts=0,
                    error=None,
                    cancel_requested=False,
                    progress=0.0,
                    progress_message=None,
                    run_at=now,
                    started_at=None,
                    completed_at=None,
                    **_unlocked(now),
                )
                .returning(tasks.c.type)
            ).first()
        if row is not None:
            self._publish("task:queued", id=task_id, type=row.type, status=QUEUED, retried=True)
        return row is not None

    def delete(self, task_id: uuid.UUID) -> bool:
        """Delete a task that is not running, with its result and its children (none of
        which may be running) — in one conditional statement, so a worker claiming the
        task meanwhile either wins (nothing is deleted) or finds it gone. The children are
        locked first (FOR UPDATE on PostgreSQL): a claim skips them, or is waited for."""
        kids = tasks.alias("kids")
        children = select(kids.c.id, kids.c.status).where(kids.c.parent_id == task_id)
        if self.postgres:  # SQLite's writes are serialized already (BEGIN IMMEDIATE)
            children = children.with_for_update().cte("children")
        else:
            children = children.subquery("children")
        running_child = exists(
            select(children.c.id).where(children.c.status == literal_column("'running'"))
        )
        statement = (
            delete(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.status != literal_column("'running'"),
                ~running_child,
            )
            .returning(tasks.c.id)  # rowcount is not reliable through a CTE
        )
        with self.db.write() as conn:
            gone = conn.execute(statement).first() is not None
        if gone:
            self._publish("task:deleted", id=task_id)
        return bool(gone)


def _completion(task: ClaimedTask, result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters of a completion: whose task, and its result row."""
    return {
        "tid": task.id,
        "worker": task.worker_id,
        "rid": uuid.uuid4(),
        "data": dict(result or {}),
    }
