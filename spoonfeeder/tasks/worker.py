"""WorkerPool: N threads, each looping claim → run the handler → complete or fail.

Idle threads sleep on a condition that `task:created` / `task:queued` events wake
(from this process, or from others through LISTEN/NOTIFY), with a poll as the
fallback for delayed tasks and for SQLite across processes. One heartbeat thread
extends the leases of every running task in one statement and learns of
cancellations; an interval job on the process's scheduler (the reaper) returns
expired leases of dead workers to the queue. `stop()` lets running tasks finish, and
past its timeout gives them back to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler

from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import ValidationError
from spoonfeeder.events import Event
from spoonfeeder.ids import shown
from spoonfeeder.tasks import outcome
from spoonfeeder.tasks.connections import connection_lost
from spoonfeeder.tasks.handlers import HandlerRegistry, TaskContext
from spoonfeeder.tasks.outcome import Outcome
from spoonfeeder.tasks.queue import ClaimedTask, TaskQueue

log = logging.getLogger(__name__)

WAKE_TOPICS = ("task:created", "task:queued")


class WorkerPool:
    def __init__(
        self,
        queue: TaskQueue,
        registry: HandlerRegistry,
        scheduler: BaseScheduler,
        *,
        threads: int = 2,
        lease_seconds: float = 30.0,
        heartbeat_interval: float | None = None,
        reaper_interval: float = 10.0,
        poll_interval: float = 2.0,
        progress_interval: float = 0.25,
        db_retry_seconds: float = 30.0,
        name: str | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.queue = queue
        self.registry = registry
        self.threads = threads
        self.lease_seconds = lease_seconds
        self.heartbeat_interval = heartbeat_interval or max(lease_seconds / 3, 0.05)
        self.reaper_interval = reaper_interval
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        # How long a worker keeps trying to record an outcome while the database is
        # away (a restart, a failover) before leaving the task to its lease.
        self.db_retry_seconds = db_retry_seconds
        token = name or uuid.uuid4().hex[:8]
        self.name = f"{socket.gethostname()[:60]}:{os.getpid()}:{token}"
        self._cond = threading.Condition()
        self._seq = 0  # bumped by every wake-up event; idle threads wait for a change
        self._idle_threads = 0  # waiting in _idle, under _cond
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._busy: dict[str, TaskContext] = {}  # worker id -> its running task
        self._busy_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._heartbeat: threading.Thread | None = None
        self._scheduler = scheduler  # the process's: the reaper is one of its jobs
        self._reaper_job: Job | None = None
        self._subscription: Any = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> WorkerPool:
        self._subscription = self.queue.events.subscribe(
            [*WAKE_TOPICS, "task:cancel_requested"], callback=self._on_event
        )
        for n in range(self.threads):
            worker_id = f"{self.name}:{n}"
            thread = threading.Thread(
                target=self._work, args=(worker_id,), name=f"task-worker-{n}", daemon=True
            )
            self._workers.append(thread)
            thread.start()
        self._heartbeat = threading.Thread(target=self._beat, name="task-heartbeat", daemon=True)
        self._heartbeat.start()
        self._reaper_job = self._scheduler.add_job(
            self._reap,
            "interval",
            seconds=self.reaper_interval,
            id=f"task-reaper-{self.name}",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),  # at start too: leases left by a previous crash
        )
        log.info("Started %d task worker thread(s) as %s", self.threads, self.name)
        return self

    @property
    def running(self) -> bool:
        return bool(self._workers) and not self._closed.is_set()

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called: no task is claimed any more."""
        return self._stopping.is_set()

    def busy_count(self) -> int:
        with self._busy_lock:
            return len(self._busy)

    def idle_count(self) -> int:
        """Threads waiting for work: nothing was due when they last looked."""
        with self._cond:
            return self._idle_threads

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; let running tasks finish for up to `timeout` seconds, then
        give the unfinished ones back to the queue (their attempt does not count)."""
        if self._closed.is_set() or not self._workers:
            return
        self._stopping.set()
        self._wake()
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._busy_lock:
            leftovers = list(self._busy.values())
        for task in leftovers:
            task.interrupt()  # its handler stops at the next check; its writes are fenced
            try:
                if self.queue.release(task.task):
                    log.warning("Gave task %s back to the queue at shutdown", task.id)
            except Exception:
                log.exception("Could not release task %s; its lease will expire", task.id)
        self._closed.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5)
        if self._reaper_job is not None:
            with contextlib.suppress(JobLookupError):  # the scheduler was shut down first
                self._reaper_job.remove()
        if self._subscription is not None:
            self._subscription.close()
        log.info("Task workers %s stopped", self.name)

    # -- waking ------------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            self._seq += 1
            self._cond.notify_all()

    def _on_event(self, event: Event) -> None:
        if event.topic in WAKE_TOPICS:
            self._wake()
            return
        task_id = event.data.get("id")
        with self._busy_lock:
            running = [t for t in self._busy.values() if str(t.id) == task_id]
        for task in running:
            task.request_cancel()

    def _idle(self, seen: int) -> None:
        """Sleep until woken, the next delayed task is due, or the poll interval passes."""
        timeout = self.poll_interval
        try:
            due = self.queue.next_run_at()
        except Exception:
            due = None
        if due is not None:  # in the queue's time: the clock that decides it is due
            timeout = min(timeout, max(0.01, (due - self.queue.clock.now()).total_seconds()))
        with self._cond:
            self._idle_threads += 1
            try:
                self._cond.wait_for(lambda: self._seq != seen or self._stopping.is_set(), timeout)
            finally:
                self._idle_threads -= 1

    # -- the loop ----------------------------------------------------------------

    def _work(self, worker_id: str) -> None:
        while not self._stopping.is_set():
            try:
                with self.queue.pinned():
                    self._loop(worker_id)
            except Exception as exc:  # the pinned connection could not be opened
                log.warning("Task worker cannot reach the database (%s); retrying", exc)
                self._stopping.wait(min(self.poll_interval, 5.0))

    def _loop(self, worker_id: str) -> None:
        task: ClaimedTask | None = None
        try:
            while not self._stopping.is_set():
                if task is not None:
                    # Busy: completing a task also claims the next one.
                    task = self._execute(worker_id, task)
                    continue
                with self._cond:
                    seen = self._seq
                try:
                    task = self.queue.claim(worker_id, self.lease_seconds)
                except Exception as exc:
                    log.warning("Could not claim a task (%s); retrying shortly", exc)
                    if connection_lost(exc):  # it may have claimed one all the same
                        self._release_orphans(worker_id)
                    self._stopping.wait(min(self.poll_interval, 5.0))
                    continue
                if task is None:
                    self._idle(seen)
        finally:
            if task is not None:  # claimed with the last completion, never started
                try:
                    self.queue.release(task)
                except Exception:
                    log.exception("Could not release task %s; its lease will expire", task.id)

    def _execute(self, worker_id: str, task: ClaimedTask) -> ClaimedTask | None:
        """Run one task and record how it ended; returns the next task when the
        completion also claimed one."""
        context = TaskContext(
            task,
            self.queue,
            lease_seconds=self.lease_seconds,
            progress_interval=self.progress_interval,
        )
        with self._busy_lock:
            self._busy[worker_id] = context
        try:
            return self._finish(context, self._run(context))
        except Exception:
            # The database is unreachable, most likely: the lease expires and the
            # reaper hands the task to someone else. The worker itself carries on.
            log.exception("Could not record the outcome of task %s", task.id)
        finally:
            with self._busy_lock:
                self._busy.pop(worker_id, None)
        return None

    def _run(self, context: TaskContext) -> Outcome:
        """Run the handler; how it ended, as a value."""
        task = context.task
        spec = self.registry.get(task.type)
        if spec is None:
            known = ", ".join(self.registry.types())
            return outcome.failed(f"No handler for task type {shown(task.type)} (known: {known})")
        try:
            if spec.validate is not None:
                try:
                    context.payload = spec.validate(dict(task.payload))
                except ValidationError as exc:
                    return outcome.invalid_payload(task.type, exc)
            result = spec.run(context)
        except Exception as exc:
            ended = outcome.outcome_of(exc, task.type)
            if ended.kind == "requeued":
                log.warning("Task %s lost its database connection; requeueing it", task.id)
            elif ended.unexpected:
                log.exception("Task %s (%s) raised unexpectedly", task.id, task.type)
            return ended
        if context.interrupted:
            return outcome.INTERRUPTED
        return outcome.completed(task.type, result)

    def _finish(self, context: TaskContext, ended: Outcome) -> ClaimedTask | None:
        """Record how the task ended — through a lost database connection too: the
        write is tried again (reconnecting) for up to `db_retry_seconds`."""
        task = context.task
        if ended.kind == "completed":
            if self._stopping.is_set():
                self._durably(task, lambda: self.queue.complete(task, ended.result))
                return None
            done = self._durably(
                task,
                lambda: self.queue.complete_and_claim(task, ended.result, self.lease_seconds),
            )
            return done[1]
        if ended.kind == "cancelled":
            self._durably(task, lambda: self.queue.finish_cancelled(task))
        elif ended.kind == "failed":
            self._durably(
                task,
                lambda: self.queue.fail(
                    task,
                    ended.error or "failed",
                    retryable=ended.retryable,
                    retry_after=ended.retry_after,
                ),
            )
        elif ended.kind == "requeued":
            self._durably(task, lambda: self.queue.release(task))
        # "interrupted": the task was given back or taken over; nothing to record.
        return None

    def _durably(self, task: ClaimedTask, write: Callable[[], Any]) -> Any:
        """`write()`, tried again while the database connection is lost (each try
        reconnects), backing off up to `db_retry_seconds`. Before a retry, a task this
        worker claimed without learning of it (the answer was lost) goes back."""
        deadline = time.monotonic() + self.db_retry_seconds
        delay = 0.05
        while True:
            try:
                return write()
            except Exception as exc:
                if not connection_lost(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("Lost the database connection recording task %s; retrying", task.id)
                self._stopping.wait(delay)
                delay = min(delay * 2, 2.0)
                self._release_orphans(task.worker_id, keep=task.id)

    def _release_orphans(self, worker_id: str, keep: uuid.UUID | None = None) -> None:
        try:
            if self.queue.release_orphans(worker_id, keep):
                self._wake()
        except Exception as exc:  # still away: the next try, or the lease, settles it
            log.warning("Could not check for tasks claimed without an answer (%s)", exc)

    # -- leases ------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._closed.wait(self.heartbeat_interval):
            with self._busy_lock:
                running = dict(self._busy)
            if not running:
                continue
            try:
                held = self.queue.heartbeat(
                    {worker: context.id for worker, context in running.items()},
                    self.lease_seconds,
                )
            except Exception as exc:
                log.warning("Heartbeat failed (%s); leases may expire", exc)
                continue
            for context in running.values():
                state = held.get(context.id)
                if state is None:
                    if not context.interrupted and self._still_running(context):
                        log.warning("Lost the lease on task %s; stopping it", context.id)
                        context.interrupt()
                elif state:
                    context.request_cancel()

    def _still_running(self, context: TaskContext) -> bool:
        with self._busy_lock:
            return context in self._busy.values()

    def _reap(self) -> None:
        try:
            if self.queue.reap():
                self._wake()
        except Exception as exc:
            log.warning("Reaper could not check leases: %s", exc)
