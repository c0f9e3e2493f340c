"""The queue's SQL and TaskService on both databases, and the pure retry policy."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from spoonfeeder.db.engine import make_engine
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.events import EventBus
from spoonfeeder.tasks import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    RetryPolicy,
    TaskQueue,
    TaskService,
)
from spoonfeeder.tasks import text as text_tasks
from spoonfeeder.tasks.connections import QueueClock
from spoonfeeder.tasks.handlers import HandlerRegistry

LEASE = 60.0  # seconds of the queue's time: tests advance the clock past it, never wait


def text_handlers() -> HandlerRegistry:
    """The built-in text.* handlers, for their payload checks: nothing runs them here."""
    registry = HandlerRegistry()
    text_tasks.install(registry, providers=None)  # type: ignore[arg-type]
    return registry


@pytest.fixture
def tasks(db_url: str) -> Iterator[TaskService]:
    """The queue alone on a migrated database: no app around it, so each test is cheap.
    Its clock is the production one (the database's on PostgreSQL), moved by the tests."""
    engine = make_engine(db_url)
    clock = QueueClock(postgres=engine.dialect.name == "postgresql")
    yield TaskService(TaskQueue(engine, EventBus(), clock=clock), text_handlers())
    engine.dispose()


@pytest.fixture
def queue(tasks: TaskService) -> TaskQueue:
    q = tasks.queue
    q.retry_policy = RetryPolicy(base=100.0, cap=1000.0, jitter=0.0)
    return q


@pytest.fixture
def clock(queue: TaskQueue) -> QueueClock:
    return queue.clock


# -- retry policy (pure) ------------------------------------------------------


def test_backoff_doubles_per_attempt_up_to_the_cap() -> None:
    policy = RetryPolicy(base=2.0, cap=30.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_stays_within_its_fraction_and_spreads_values() -> None:
    policy = RetryPolicy(base=10.0, cap=1000.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(3, rng) for _ in range(200)]
    assert all(32.0 <= d <= 48.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100


def test_retry_decisions() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter=0.0)
    assert policy.decide(1, 3, retryable=True).delay == 1.0
    assert policy.decide(2, 3, retryable=True).retry
    assert not policy.decide(3, 3, retryable=True).retry  # no attempts left
    assert not policy.decide(1, 3, retryable=False).retry
    # A server's retry-after wins when longer, within the cap.
    assert policy.decide(1, 3, retryable=True, retry_after=4.0).delay == 4.0
    assert policy.decide(1, 3, retryable=True, retry_after=99.0).delay == 10.0


# -- claim --------------------------------------------------------------------


def test_claim_takes_the_most_urgent_due_task(queue: TaskQueue) -> None:
    low = queue.enqueue("t.low", {"n": 1})
    high = queue.enqueue("t.high", {"n": 2}, priority=5)
    queue.enqueue("t.later", priority=99, run_at=queue.clock.now() + timedelta(hours=1))
    first = queue.claim("w1", LEASE)
    second = queue.claim("w1", LEASE)
    assert (first.id, second.id) == (high, low)
    assert first.payload == {"n": 2} and first.attempts == 1
    assert queue.claim("w1", LEASE) is None  # the delayed task is not due yet
    queue.clock.advance(3600)
    assert queue.claim("w1", LEASE).type == "t.later"  # an hour later, it is


def test_a_claimed_task_is_running_under_a_lease(queue: TaskQueue) -> None:
    task_id = queue.enqueue("t", name="job")
    claimed = queue.claim("host:1:a:0", LEASE)
    view = queue.reads.get(task_id)
    assert (view.status, view.locked_by, view.attempts) == (RUNNING, "host:1:a:0", 1)
    assert view.started_at is not None
    assert view.locked_until - view.started_at == timedelta(seconds=LEASE)
    assert claimed.name == "job"


def test_complete_stores_the_result_and_ignores_a_worker_without_the_lease(
    queue: TaskQueue,
) -> None:
    task_id = queue.enqueue("t")
    claimed = queue.claim("w1", LEASE)
    impostor = dataclasses.replace(claimed, worker_id="w2")
    assert not queue.complete(impostor, {"x": 0})
    assert queue.complete(claimed, {"text": "done", "n": [1, 2]})
    assert not queue.complete(claimed, {"again": True})  # no second result
    view = queue.reads.get(task_id)
    assert (view.status, view.progress, view.locked_by) == (COMPLETED, 1.0, None)
    assert view.result == {"text": "done", "n": [1, 2]}
    assert view.duration_seconds is not None and view.duration_seconds >= 0


def test_retryable_failures_back_off_then_fail_with_the_last_error(
    queue: TaskQueue, clock: QueueClock
) -> None:
    task_id = queue.enqueue("t", max_attempts=3)
    for attempt, expected_delay in ((1, 100.0), (2, 200.0)):
        claimed = queue.claim("w1", LEASE)
        assert claimed.attempts == attempt
        assert queue.fail(claimed, f"busy #{attempt}", retryable=True) == QUEUED
        view = queue.reads.get(task_id)
        assert view.error == f"busy #{attempt}" and view.locked_by is None
        # Due exactly its backoff after the failure was recorded (the same statement).
        assert view.run_at - view.updated_at == timedelta(seconds=expected_delay)
        clock.advance(expected_delay / 2)
        assert queue.claim("w1", LEASE) is None  # not due before its backoff
        clock.advance(expected_delay / 2)
    claimed = queue.claim("w1", LEASE)
    assert claimed.attempts == 3
    assert queue.fail(claimed, "still busy", retryable=True) == FAILED
    view = queue.reads.get(task_id)
    assert (view.status, view.error, view.attempts) == (FAILED, "still busy", 3)
    assert view.completed_at is not None


def test_a_permanent_failure_does_not_retry(queue: TaskQueue) -> None:
    task_id = queue.enqueue("t", max_attempts=5)
    claimed = queue.claim("w1", LEASE)
    assert queue.fail(claimed, "bad key", retryable=False) == FAILED
    assert queue.reads.get(task_id).attempts == 1


# -- leases -------------------------------------------------------------------


def test_the_reaper_requeues_expired_leases_and_gives_up_when_attempts_run_out(
    queue: TaskQueue, clock: QueueClock
) -> None:
    again = queue.enqueue("t", max_attempts=3)
    spent = queue.enqueue("t", max_attempts=1)
    stopping = queue.enqueue("t")
    for _ in range(3):
        queue.claim("dead-worker", LEASE)
    queue.cancel(stopping)  # running: only asks
    held = queue.enqueue("t")
    queue.claim("live-worker", 4 * LEASE)
    assert queue.reap() == 0  # every lease still runs
    clock.advance(2 * LEASE)
    assert queue.reap() == 1
    assert queue.reads.get(again).status == QUEUED and queue.reads.get(again).locked_by is None
    assert queue.reads.get(spent).status == FAILED
    assert "stopped responding" in queue.reads.get(spent).error
    assert queue.reads.get(stopping).status == CANCELLED
    assert queue.reads.get(held).status == RUNNING
    assert queue.claim("w2", LEASE).attempts == 2


def test_heartbeat_extends_leases_and_reports_cancellation(
    queue: TaskQueue, clock: QueueClock
) -> None:
    first, second = queue.enqueue("t"), queue.enqueue("t")
    queue.claim("w1", LEASE)
    queue.claim("w2", LEASE)
    queue.cancel(second)
    assert queue.heartbeat({"w1": first, "w2": second}, 4 * LEASE) == {
        first: False,
        second: True,
    }
    clock.advance(2 * LEASE)
    assert queue.reap() == 0  # both leases were extended


def test_progress_is_stored_and_fenced(queue: TaskQueue) -> None:
    task_id = queue.enqueue("t")
    claimed = queue.claim("w1", LEASE)
    assert queue.progress(claimed, 0.4, "40%", LEASE) is False
    view = queue.reads.get(task_id)
    assert (view.progress, view.progress_message) == (0.4, "40%")
    assert queue.progress(dataclasses.replace(claimed, worker_id="w9"), 0.9, "x", LEASE) is None


def test_release_returns_a_task_without_spending_an_attempt(queue: TaskQueue) -> None:
    task_id = queue.enqueue("t")
    assert queue.release(queue.claim("w1", LEASE))
    view = queue.reads.get(task_id)
    assert (view.status, view.attempts, view.locked_by) == (QUEUED, 0, None)


# -- cancel, retry, delete (through the service, as the UI does) -------------


def test_cancel_a_queued_task_at_once_and_a_running_one_by_request(tasks: TaskService) -> None:
    queued = tasks.queue.enqueue("t")
    assert tasks.cancel_task(queued).status == CANCELLED
    running = tasks.queue.enqueue("t")
    tasks.queue.claim("w1", LEASE)
    view = tasks.cancel_task(str(running))
    assert (view.status, view.cancel_requested) == (RUNNING, True)
    with pytest.raises(ValidationError, match="already cancelled"):
        tasks.cancel_task(queued)


def test_cancelling_a_batch_cancels_its_queued_children(tasks: TaskService) -> None:
    q = tasks.queue
    parent = q.enqueue("t.parent")
    q.claim("w1", LEASE)
    children = q.enqueue_many([{"type": "t.child", "parent_id": parent} for _ in range(3)])
    tasks.cancel_task(parent)
    assert {q.reads.get(c).status for c in children} == {CANCELLED}
    assert q.reads.get(parent).cancel_requested
    # A batch that completed (it only queues its tasks) still cancels what is left.
    done = q.enqueue("t.parent", priority=9)
    q.complete(q.claim("w1", LEASE), {})
    left = q.enqueue_many([{"type": "t.child", "parent_id": done} for _ in range(2)])
    assert tasks.cancel_task(done).status == COMPLETED
    assert {q.reads.get(c).status for c in left} == {CANCELLED}
    with pytest.raises(ValidationError, match="already completed"):
        tasks.cancel_task(done)


def test_retry_requeues_failed_and_cancelled_tasks_with_fresh_attempts(tasks: TaskService) -> None:
    q = tasks.queue
    failed = q.enqueue("t", max_attempts=1)
    q.fail(q.claim("w1", LEASE), "boom", retryable=True)
    cancelled = q.enqueue("t")
    q.cancel(cancelled)
    for task_id in (failed, cancelled):
        view = tasks.retry_task(task_id)
        assert (view.status, view.attempts, view.error, view.cancel_requested) == (
            QUEUED,
            0,
            None,
            False,
        )
    done = q.enqueue("t")
    claimed = q.claim("w1", LEASE)
    while claimed.id != done:  # the two retried tasks may come first
        q.complete(claimed, {})
        claimed = q.claim("w1", LEASE)
    q.complete(claimed, {})
    with pytest.raises(ValidationError, match="Only failed or cancelled"):
        tasks.retry_task(done)


def test_delete_removes_a_task_with_its_result_and_children_but_not_while_running(
    tasks: TaskService,
) -> None:
    q = tasks.queue
    parent = q.enqueue("t")
    q.complete(q.claim("w1", LEASE), {"a": 1})
    child = q.enqueue("t", parent_id=parent)
    running = q.enqueue("t", priority=1)
    assert q.claim("w1", LEASE).id == running
    tasks.delete_task(parent)
    assert q.reads.get(parent) is None and q.reads.get(child) is None
    with pytest.raises(ValidationError, match="cancel it first"):
        tasks.delete_task(running)
    with pytest.raises(NotFoundError):
        tasks.get_task(parent)
    with pytest.raises(NotFoundError, match="No task with id 'nonsense'"):
        tasks.get_task("nonsense")


# -- listing and stats --------------------------------------------------------


def test_list_filters_and_pages(tasks: TaskService) -> None:
    q = tasks.queue
    for n in range(7):
        q.enqueue("text.generate", {"n": n}, provider="openai" if n % 2 else "ollama")
    q.enqueue("other")
    q.fail(q.claim("w1", LEASE), "x", retryable=False)  # one of them failed

    page = tasks.list_tasks(limit=3)
    assert (page.total, len(page.items)) == (8, 3)
    rest = tasks.list_tasks(limit=3, offset=6)
    assert len(rest.items) == 2
    seen = {t.id for t in page.items} | {t.id for t in rest.items}
    seen |= {t.id for t in tasks.list_tasks(limit=3, offset=3).items}
    assert len(seen) == 8
    assert [t.created_at for t in page.items] == sorted(
        (t.created_at for t in page.items), reverse=True
    )
    assert tasks.list_tasks(type="other").total == 1
    assert tasks.list_tasks(provider="openai").total == 3
    assert tasks.list_tasks(status="failed").total == 1
    assert tasks.list_tasks(status=["queued", "failed"], type="all").total == 8
    # The days the tasks were created on (two if this ran across midnight, UTC).
    created = sorted(t.created_at.date() for t in tasks.list_tasks().items)
    first, last = created[0].isoformat(), created[-1].isoformat()
    assert tasks.list_tasks(created_from=first, created_to=last).total == 8
    day_after = (created[-1] + timedelta(days=1)).isoformat()
    assert tasks.list_tasks(created_from=day_after).total == 0
    with pytest.raises(ValidationError, match="not a date"):
        tasks.list_tasks(created_from="yesterday")
    with pytest.raises(ValidationError, match="Unknown status"):
        tasks.list_tasks(status="done")


def test_stats_count_statuses_throughput_and_failures(tasks: TaskService) -> None:
    q = tasks.queue
    ids = [q.enqueue("t", name=f"t{n}") for n in range(5)]
    for _ in range(3):
        q.complete(q.claim("w1", LEASE), {})
    q.fail(q.claim("w1", LEASE), "provider said no", retryable=False)
    stats = tasks.stats()
    assert stats.counts == {QUEUED: 1, RUNNING: 0, COMPLETED: 3, FAILED: 1, CANCELLED: 0}
    assert (stats.completed_last_hour, stats.failed_last_hour) == (3, 1)
    assert stats.median_duration_seconds is not None and stats.median_duration_seconds >= 0
    assert [f.error for f in stats.recent_failures] == ["provider said no"]
    assert stats.recent_failures[0].id in ids


# -- creating tasks from the form ---------------------------------------------


def test_create_text_generate_from_form_fields(tasks: TaskService) -> None:
    view = tasks.create_task(
        "text.generate",
        provider="openai",
        model=" gpt-4o-mini ",
        prompt="Write a haiku about queues",
        options='{"temperature": 0.3, "max_tokens": 50, "system": "Be terse"}',
        priority=2,
    )
    assert view.status == QUEUED and view.name == "Write a haiku about queues"
    assert (view.provider, view.model, view.priority) == ("openai", "gpt-4o-mini", 2)
    assert view.payload == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt": "Write a haiku about queues",
        "temperature": 0.3,
        "max_tokens": 50,
        "system": "Be terse",
    }
    assert "text.generate" in tasks.task_types()


def test_create_text_batch_takes_inputs_one_per_line(tasks: TaskService) -> None:
    view = tasks.create_task(
        "text.batch",
        name="Colours",
        provider="ollama",
        model="llama3",
        prompt="Describe {input} in one line",
        inputs="red\n\n green \nblue\n",
    )
    assert view.payload["inputs"] == ["red", "green", "blue"]
    assert view.payload["template"] == "Describe {input} in one line"


BAD_FORMS = [
    ({"type": "video.make"}, "Unknown task type 'video.make'"),
    ({"type": "text.generate", "provider": "openai", "model": "m"}, "A prompt is required"),
    ({"type": "text.generate", "provider": "skynet", "model": "m", "prompt": "p"}, "skynet"),
    ({"type": "text.generate", "provider": "openai", "prompt": "p"}, "A model is required"),
    (
        {
            "type": "text.generate",
            "provider": "openai",
            "model": "m",
            "prompt": "p",
            "options": "{temperature: 1}",
        },
        "Options must be JSON",
    ),
    (
        {
            "type": "text.generate",
            "provider": "openai",
            "model": "m",
            "prompt": "p",
            "options": '{"temperature": 5}',
        },
        "between 0 and 2",
    ),
    (
        {
            "type": "text.batch",
            "provider": "openai",
            "model": "m",
            "prompt": "no slot",
            "inputs": "a",
        },
        "must contain {input}",
    ),
    (
        {"type": "text.batch", "provider": "openai", "model": "m", "prompt": "{input}"},
        "list of inputs",
    ),
]


def test_create_task_explains_what_is_wrong(tasks: TaskService) -> None:
    for form, message in BAD_FORMS:
        fields = dict(form)
        expected = message.replace("{", r"\{").replace("}", r"\}")
        with pytest.raises(ValidationError, match=expected):
            tasks.create_task(fields.pop("type"), **fields)
    assert tasks.list_tasks().total == 0


def test_a_reaped_task_keeps_its_place_in_the_queue(queue: TaskQueue, clock: QueueClock) -> None:
    first = queue.enqueue("t")
    assert queue.claim("dead-worker", LEASE).id == first
    later = [queue.enqueue("t") for _ in range(3)]  # the backlog that arrived meanwhile
    clock.advance(2 * LEASE)  # its lease is over: the worker died
    assert queue.reap() == 1
    assert queue.claim("w2", LEASE).id == first  # before the backlog, not behind it
    assert [queue.claim("w2", LEASE).id for _ in later] == later


def test_a_released_task_keeps_its_place_too(queue: TaskQueue) -> None:
    first = queue.enqueue("t")
    claimed = queue.claim("stopping-worker", LEASE)
    later = queue.enqueue("t")
    assert queue.release(claimed)
    assert queue.claim("w2", LEASE).id == first and queue.claim("w2", LEASE).id == later


def test_refusing_to_delete_a_plain_running_task_does_not_speak_of_a_batch(
    tasks: TaskService,
) -> None:
    plain = tasks.queue.enqueue("t")
    tasks.queue.claim("w1", LEASE)
    with pytest.raises(ValidationError) as caught:
        tasks.delete_task(plain)
    assert str(caught.value) == "This task is running; cancel it first, then delete it"
    parent = tasks.queue.enqueue("t", priority=-1)
    tasks.queue.enqueue("t", parent_id=parent, priority=5)
    tasks.queue.claim("w2", LEASE)  # the child
    with pytest.raises(ValidationError, match="A task of this batch is still running"):
        tasks.delete_task(parent)


@pytest.mark.postgres
def test_a_delete_never_removes_a_task_a_worker_claimed_a_moment_before(
    postgres: Any, tmp_path: Any
) -> None:
    """The claim lands between the delete's look and its deletion: the delete must lose."""
    from sqlalchemy import event

    url = postgres.create(template=postgres.migrated_template())
    engine = make_engine(url)
    try:
        service = TaskService(TaskQueue(engine, EventBus()), text_handlers())
        q = service.queue
        victim = q.enqueue("t")
        claimed: list[Any] = []

        def claim_first(conn, cursor, statement: str, *rest: object) -> None:
            if statement.lstrip().upper().startswith(("DELETE", "WITH")) and not claimed:
                claimed.append(q.claim("fast-worker", LEASE))  # its own connection, committed

        event.listen(engine, "before_cursor_execute", claim_first)
        try:
            with pytest.raises(ValidationError, match="This task is running"):
                service.delete_task(victim)
        finally:
            event.remove(engine, "before_cursor_execute", claim_first)
        assert claimed and claimed[0].id == victim
        assert q.reads.get(victim).status == RUNNING  # the worker's task is still there
    finally:
        engine.dispose()
        postgres.drop(url)


def test_a_task_claimed_without_its_answer_goes_back_without_an_attempt(queue: TaskQueue) -> None:
    """The claim committed, the connection died before its answer: the worker never knew."""
    known, lost = queue.enqueue("t", priority=1), queue.enqueue("t")
    assert queue.claim("w1", LEASE).id == known
    assert queue.claim("w1", LEASE).id == lost  # the claim whose answer was lost
    assert queue.heartbeat({"w1": known}, 60) == {known: False}  # the orphan is not kept
    assert queue.release_orphans("w1", keep=known) == 1
    assert queue.reads.get(known).status == RUNNING
    again = queue.reads.get(lost)
    assert (again.status, again.attempts, again.locked_by) == (QUEUED, 0, None)
