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
The hot path is Core SQL (no ORM objects); times come from the database clock on
PostgreSQL, so workers on other machines agree on leases and `run_at`.
"""

from __future__ import annotations

import statistics
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Interval,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError

from spoonfeeder.db.models import Result, Task
from spoonfeeder.db.types import UTCDateTime, utcnow
from spoonfeeder.events import EventBus
from spoonfeeder.tasks.retry import RetryPolicy

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
)
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)
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


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` is the database connection going away (a restart, a failover,
    pg_terminate_backend) rather than something wrong with the statement: the one place
    the queue and its workers decide that."""
    # SQLAlchemy marks what its dialect recognises as a disconnect ("terminating
    # connection due to administrator command", "server closed the connection…").
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _view(row: Any, result: dict[str, Any] | None = None) -> TaskView:
    values = {c.name: row._mapping[c.name] for c in _VIEW_COLUMNS}
    return TaskView(**values, result=result)


class TaskQueue:
    """The queue over the app's database. Publishes `task:*` events after each change."""

    def __init__(
        self,
        engine: Engine,
        events: EventBus | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.events = events or EventBus()
        self.retry_policy = retry_policy or RetryPolicy()
        self.postgres = engine.dialect.name == "postgresql"
        self._local = threading.local()
        self._sqlite_lock = threading.Lock()
        self._prepare()

    # -- plumbing --------------------------------------------------------------

    def _ts(self, name: str) -> ColumnElement[Any]:
        """A time parameter of a prebuilt statement; `_at(seconds)` is its value.
        PostgreSQL adds the interval to its own clock; SQLite gets the time itself."""
        if self.postgres:
            return func.now() + bindparam(name, type_=Interval())
        return bindparam(name, type_=UTCDateTime())

    def _at(self, seconds: float = 0.0) -> Any:
        delta = timedelta(seconds=seconds)
        return delta if self.postgres else utcnow() + delta

    def _prepare(self) -> None:
        """Build the hot-path statements once: SQLAlchemy then reuses their compiled
        form, and each call only binds values."""
        now, until = self._ts("now"), self._ts("until")
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
            .values(
                status=QUEUED,
                attempts=tasks.c.attempts - 1,
                locked_by=None,
                locked_until=None,
                updated_at=now,
            )
            .returning(tasks.c.id, tasks.c.type)
        )

    def _now(self, plus: float = 0.0) -> ColumnElement[Any]:
        """Now (+ seconds): the database clock on PostgreSQL, this machine's on SQLite."""
        if self.postgres:
            return func.now() + timedelta(seconds=plus) if plus else func.now()
        return literal(utcnow() + timedelta(seconds=plus), UTCDateTime())

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep one connection for this thread's queue calls until the block ends.

        Worker threads run inside one: no pool checkout (and pre-ping) per statement,
        which is a large share of a no-op task's cost.
        """
        with self._connection() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.engine.connect() as conn:
            if self.postgres:
                # Single statements commit on their own: no BEGIN round trip.
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._connection() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def _write(self, *, atomic: bool = False) -> Iterator[Connection]:
        """Run writes. One statement is atomic by itself on PostgreSQL (autocommit);
        `atomic=True` wraps several in one transaction. On SQLite every write takes the
        write lock up front (BEGIN IMMEDIATE), after an in-process lock: threads queue
        on that lock instead of in SQLite's busy handler, which sleeps in steps of
        milliseconds."""
        with self._connection() as conn:
            try:
                if self.postgres:
                    if atomic:
                        conn.exec_driver_sql("BEGIN")
                    yield conn
                    if atomic:
                        conn.exec_driver_sql("COMMIT")
                    conn.commit()
                    return
                with self._sqlite_lock:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
                    conn.commit()
            except BaseException:
                # Leaves a pinned connection usable: after a lost connection SQLAlchemy
                # reconnects on the next statement once the failed one is rolled back.
                with suppress(Exception):
                    if self.postgres and atomic:
                        conn.exec_driver_sql("ROLLBACK")
                with suppress(Exception):
                    conn.rollback()
                raise

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
        now = self._now()
        stmt = insert(tasks).values(
            status=QUEUED,
            attempts=0,
            progress=0.0,
            cancel_requested=False,
            run_at=func.coalesce(bindparam("given_run_at", type_=UTCDateTime()), now),
            created_at=now,
            updated_at=now,
        )
        with self._write(atomic=len(rows) > 1) as conn:
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
        params = {"worker": worker_id, "now": self._at(), "until": self._at(lease_seconds)}
        with self._write() as conn:
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
        params = {
            "tid": task.id,
            "worker": task.worker_id,
            "rid": uuid.uuid4(),
            "data": dict(result or {}),
            "now": self._at(),
        }
        with self._write() as conn:
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
        params = {
            "tid": task.id,
            "worker": task.worker_id,
            "rid": uuid.uuid4(),
            "data": dict(result or {}),
            "now": self._at(),
            "until": self._at(lease_seconds),
        }
        with self._write() as conn:
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
            "now": self._at(),
            "until": self._at(decision.delay),
        }
        stmt = self._requeue_sql if decision.retry else self._fail_sql
        with self._write() as conn:
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
        now = self._now()
        with self._write() as conn:
            done = conn.execute(
                update(tasks)
                .where(self._mine(task))
                .values(
                    status=CANCELLED,
                    progress_message=message,
                    locked_by=None,
                    locked_until=None,
                    completed_at=now,
                    updated_at=now,
                )
            ).rowcount
        if done:
            self._publish("task:cancelled", id=task.id, type=task.type, status=CANCELLED)
        return bool(done)

    def release(self, task: ClaimedTask) -> bool:
        """Give a task back untouched (shutdown, a lost database connection): the
        interrupted attempt does not count, and it keeps its place (its run_at)."""
        now = self._now()
        with self._write() as conn:
            done = conn.execute(
                update(tasks)
                .where(self._mine(task))
                .values(
                    status=QUEUED,
                    attempts=tasks.c.attempts - 1,
                    locked_by=None,
                    locked_until=None,
                    updated_at=now,
                )
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
            "now": self._at(),
            "until": self._at(lease_seconds),
        }
        with self._write() as conn:
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
            "until": self._at(lease_seconds),
        }
        with self._write() as conn:
            rows = conn.execute(self._heartbeat_sql, params).all()
        return {row.id: bool(row.cancel_requested) for row in rows}

    def release_orphans(self, worker_id: str, keep: uuid.UUID | None = None) -> int:
        """Give back the tasks `worker_id` holds but does not know of (all but `keep`):
        a claim that committed while the connection died before its answer arrived.
        Their attempt does not count. Returns how many."""
        params = {"worker": worker_id, "keep": keep or uuid.UUID(int=0), "now": self._at()}
        with self._write() as conn:
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
        now = self._now()
        expired = and_(tasks.c.status == RUNNING, tasks.c.locked_until < now)
        unlock = {"locked_by": None, "locked_until": None, "updated_at": now}
        with self._write(atomic=True) as conn:
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

    def next_run_at(self) -> datetime | None:
        """When the earliest queued task becomes due (None: nothing queued)."""
        with self._read() as conn:
            return conn.execute(
                select(func.min(tasks.c.run_at)).where(tasks.c.status == QUEUED)
            ).scalar()

    # -- managing ----------------------------------------------------------------

    def cancel(self, task_id: uuid.UUID) -> str | None:
        """Cancel a queued task now; ask a running one to stop (its handler checks).
        Queued children of a batch are cancelled with it. Returns the task's status
        afterwards, None if it does not exist."""
        now = self._now()
        with self._write(atomic=True) as conn:
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
        now = self._now()
        with self._write() as conn:
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
                    locked_by=None,
                    locked_until=None,
                    updated_at=now,
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
        with self._write() as conn:
            gone = conn.execute(statement).first() is not None
        if gone:
            self._publish("task:deleted", id=task_id)
        return bool(gone)

    # -- reading -----------------------------------------------------------------

    def get(self, task_id: uuid.UUID) -> TaskView | None:
        with self._read() as conn:
            row = conn.execute(
                select(*_VIEW_COLUMNS, results.c.data.label("result_data"))
                .outerjoin(results, results.c.task_id == tasks.c.id)
                .where(tasks.c.id == task_id)
            ).first()
        return None if row is None else _view(row, row.result_data)

    def children(self, task_id: uuid.UUID) -> list[TaskView]:
        with self._read() as conn:
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
        with self._read() as conn:
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
        hour_ago = utcnow() - timedelta(hours=1)
        with self._read() as conn:
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
