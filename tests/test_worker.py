"""Worker pools and worker processes running real tasks on both databases."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from spoonfeeder.context import AppContext
from spoonfeeder.db.engine import current_revision, head_revision, make_engine, transaction
from spoonfeeder.db.models import Conversation, Message
from spoonfeeder.errors import PermanentTaskError, RetryableTaskError
from spoonfeeder.providers.base import EMPTY_REPLY
from spoonfeeder.tasks import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    HandlerRegistry,
    RetryPolicy,
    TaskContext,
    WorkerPool,
)
from spoonfeeder.tasks.connections import QueueClock
from tests.conftest import make_settings
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.task_handlers import create_executions_table, executions, install

ROOT = Path(__file__).parents[1]
KEY = "sk-test"
FAST = {"lease_seconds": 5.0, "poll_interval": 0.2, "reaper_interval": 0.2}


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `condition()` holds; the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status_of(ctx: AppContext, task_id: Any) -> str:
    return ctx.tasks.queue.reads.get(task_id).status


@pytest.fixture
def registry(ctx: AppContext) -> HandlerRegistry:
    """The app's handlers plus the tests' own, without changing the app's registry."""
    return ctx.handlers.copy()


@pytest.fixture
def clock(ctx: AppContext) -> QueueClock:
    """The queue's clock: tests move it past backoffs and leases instead of sleeping."""
    return ctx.tasks.queue.clock


@pytest.fixture
def no_backoff(ctx: AppContext) -> None:
    """Retries due at once, for tests of what fails rather than of when it runs again."""
    ctx.tasks.queue.retry_policy = RetryPolicy(base=0.0, cap=0.0, jitter=0.0)


@pytest.fixture
def minute_backoff(ctx: AppContext) -> None:
    """Backoffs of 60 s, 120 s…: nothing runs again unless the test moves the clock."""
    ctx.tasks.queue.retry_policy = RetryPolicy(base=60.0, cap=600.0, jitter=0.0)


def start(ctx: AppContext, registry: HandlerRegistry, threads: int = 2, **kw: Any) -> WorkerPool:
    return ctx.start_workers(threads, registry=registry, **{**FAST, **kw})


# -- in-process pools ---------------------------------------------------------


def test_a_thousand_tasks_drained_by_eight_threads_each_run_once(
    ctx: AppContext, registry: HandlerRegistry
) -> None:
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @registry.register("test.count")
    def count(task: TaskContext) -> dict[str, Any]:
        with lock:
            runs[str(task.id)] += 1
        return {"n": task.payload["n"]}

    ids = ctx.tasks.queue.enqueue_many(
        [{"type": "test.count", "payload": {"n": n}} for n in range(1000)]
    )
    start(ctx, registry, threads=8)
    wait_for(lambda: ctx.tasks.stats().counts[COMPLETED] == 1000, 60, "1,000 completed tasks")
    assert len(runs) == 1000 and set(runs.values()) == {1}
    assert set(runs) == {str(i) for i in ids}
    stats = ctx.tasks.stats()
    assert stats.counts[QUEUED] == stats.counts[FAILED] == 0
    sample = ctx.tasks.get_task(ids[500])
    assert (sample.attempts, sample.result) == (1, {"n": 500})


def test_an_idle_worker_wakes_when_a_task_arrives(
    ctx: AppContext, registry: HandlerRegistry
) -> None:
    registry.add("test.noop", lambda task: {"ok": True})
    # Polling alone would take an hour: only the task:created event can wake it in time.
    pool = start(ctx, registry, threads=1, poll_interval=3600.0)
    wait_for(lambda: pool.idle_count() == 1, what="the worker to go idle")
    task_id = ctx.tasks.queue.enqueue("test.noop")
    wait_for(lambda: status_of(ctx, task_id) == COMPLETED, what="the task to run")


def test_bad_tasks_fail_with_a_clear_error_and_the_worker_keeps_going(
    ctx: AppContext, registry: HandlerRegistry, no_backoff: None
) -> None:
    @registry.register("test.crash")
    def crash(task: TaskContext) -> None:
        raise KeyError("oops")

    @registry.register("test.reject")
    def reject(task: TaskContext) -> None:
        raise PermanentTaskError("The input file is not an image")

    @registry.register("test.odd_result")
    def odd_result(task: TaskContext) -> dict[str, Any]:
        return {"when": object()}

    q = ctx.tasks.queue
    unknown = q.enqueue("video.render", {"x": 1})
    no_prompt = q.enqueue("text.generate", {"provider": "openai", "model": "gpt-4o-mini"})
    wrong_type = q.enqueue("text.batch", {"provider": "openai", "model": "m", "inputs": "nope"})
    crashing = q.enqueue("test.crash", max_attempts=2)
    rejected = q.enqueue("test.reject", max_attempts=5)
    odd = q.enqueue("test.odd_result")
    start(ctx, registry, threads=1)
    finished = [unknown, no_prompt, wrong_type, crashing, rejected, odd]
    wait_for(lambda: all(status_of(ctx, t) == FAILED for t in finished), what="six failures")

    def error(task_id: Any) -> str:
        return ctx.tasks.get_task(task_id).error

    assert "No handler for task type 'video.render'" in error(unknown)
    assert error(no_prompt) == "Bad payload for text.generate: A prompt is required"
    assert "Bad payload for text.batch: A prompt template is required" in error(wrong_type)
    assert error(crashing) == (  # the kind only: the details are for the operator
        "The test.crash handler failed unexpectedly (KeyError); the details are in the worker's log"
    )
    assert ctx.tasks.get_task(crashing).attempts == 2  # unexpected errors are retried
    assert (error(rejected), ctx.tasks.get_task(rejected).attempts) == (
        "The input file is not an image",
        1,
    )
    assert "returned a result that is not JSON" in error(odd)
    registry.add("test.noop", lambda task: None)
    after = q.enqueue("test.noop")
    wait_for(lambda: status_of(ctx, after) == COMPLETED, what="a good task after the bad ones")


def test_a_retryable_error_is_retried_with_backoff_until_it_succeeds(
    ctx: AppContext, registry: HandlerRegistry, clock: QueueClock, minute_backoff: None
) -> None:
    attempts: list[tuple[int, Any]] = []

    @registry.register("test.flaky")
    def flaky(task: TaskContext) -> dict[str, int]:
        attempts.append((task.attempt, clock.now()))
        if task.attempt < 3:
            raise RetryableTaskError("The server is busy")
        return {"attempt": task.attempt}

    task_id = ctx.tasks.queue.enqueue("test.flaky", max_attempts=3)
    with ctx.events.subscribe("task:queued") as requeued:
        pool = start(ctx, registry, threads=2)
        for backoff in (60.0, 120.0):
            event = requeued.get(timeout=30)
            assert event is not None and event.data["retry_in"] == backoff
            # Both threads looked for work and found none due: the backoff holds them.
            wait_for(lambda: pool.idle_count() == 2, what="the workers to wait out the backoff")
            clock.advance(backoff)
        wait_for(lambda: status_of(ctx, task_id) == COMPLETED, what="the flaky task to succeed")
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [
        (later - earlier).total_seconds()
        for (_, earlier), (_, later) in itertools.pairwise(attempts)
    ]
    assert gaps[0] >= 60 and gaps[1] >= 120  # no attempt ran before the clock passed its backoff
    assert ctx.tasks.get_task(task_id).result == {"attempt": 3}


def test_cancel_stops_a_running_task_at_its_next_check(
    ctx: AppContext, registry: HandlerRegistry
) -> None:
    steps: list[int] = []

    @registry.register("test.long")
    def long(task: TaskContext) -> None:
        """Never ends by itself: only its cancellation check can stop it."""
        for step in itertools.count():
            task.check_cancelled()
            steps.append(step)
            task.progress(1 - 1 / (step + 2), f"step {step}")
            time.sleep(0.01)  # a unit of work

    task_id = ctx.tasks.queue.enqueue("test.long")
    start(ctx, registry, threads=1, progress_interval=0.02)
    wait_for(lambda: ctx.tasks.get_task(task_id).progress > 0, what="progress to be reported")
    ctx.tasks.cancel_task(task_id)
    wait_for(lambda: status_of(ctx, task_id) == CANCELLED, what="the task to stop")
    view = ctx.tasks.get_task(task_id)
    assert view.progress > 0 and view.completed_at is not None
    # Retried, it runs again from the start.
    ctx.tasks.retry_task(task_id)
    wait_for(lambda: steps.count(0) == 2, what="the retried task to start again")
    ctx.tasks.cancel_task(task_id)


def test_heartbeats_keep_a_long_task_from_being_reaped(
    ctx: AppContext, registry: HandlerRegistry, clock: QueueClock
) -> None:
    runs: list[int] = []
    finish = threading.Event()
    lease = 60.0

    @registry.register("test.quiet")
    def quiet(task: TaskContext) -> dict[str, int]:
        runs.append(task.attempt)
        finish.wait(60)  # until the test has moved the clock on, without a word of progress
        return {"attempt": task.attempt}

    q = ctx.tasks.queue
    task_id = q.enqueue("test.quiet")
    start(ctx, registry, threads=1, lease_seconds=lease, heartbeat_interval=0.05)
    wait_for(lambda: runs, what="the long task to start")
    for _ in range(7):  # three and a half leases, half a lease at a time
        clock.advance(lease / 2)
        wait_for(
            lambda: (
                q.reads.get(task_id).locked_until > clock.now() + timedelta(seconds=lease * 0.75)
            ),
            what="a heartbeat to extend the lease",
        )
        assert q.reap() == 0  # the pool's own reaper runs too, every 0.2 s
    finish.set()
    wait_for(lambda: status_of(ctx, task_id) == COMPLETED, what="the long task")
    assert runs == [1]
    assert ctx.tasks.get_task(task_id).attempts == 1


def test_shutdown_lets_a_short_task_finish_and_gives_a_long_one_back(
    ctx: AppContext, registry: HandlerRegistry
) -> None:
    may_finish = threading.Event()

    @registry.register("test.short")
    def short(task: TaskContext) -> dict[str, bool]:
        may_finish.wait(60)
        return {"finished": True}

    @registry.register("test.endless")
    def endless(task: TaskContext) -> None:
        while True:
            task.check_cancelled()
            time.sleep(0.01)

    q = ctx.tasks.queue
    # A task that ends while stop() waits is let finish: stop() returns when it has, so
    # its timeout only bounds a failure.
    short_id = q.enqueue("test.short")
    pool = start(ctx, registry, threads=1)
    wait_for(lambda: pool.busy_count() == 1, what="the short task to start")
    stopper = threading.Thread(target=pool.stop, kwargs={"timeout": 60.0}, daemon=True)
    stopper.start()
    wait_for(lambda: pool.stopping, what="stop() to begin")
    may_finish.set()
    stopper.join(60)
    assert not stopper.is_alive()
    assert ctx.tasks.get_task(short_id).result == {"finished": True}
    # One that never ends is given back once the timeout has passed.
    endless_id = q.enqueue("test.endless")
    pool = start(ctx, registry, threads=1)
    wait_for(lambda: pool.busy_count() == 1, what="the endless task to start")
    pool.stop(timeout=0.2)
    given_back = ctx.tasks.get_task(endless_id)
    assert (given_back.status, given_back.attempts, given_back.locked_by) == (QUEUED, 0, None)


# -- text.generate and text.batch against a fake OpenAI server ----------------


@pytest.fixture
def openai_url(ctx: AppContext) -> Iterator[Callable[[FakeOpenAI], str]]:
    """Serve a fake and point the OpenAI setting at it."""
    with_stack: list[Any] = []

    def use(fake: FakeOpenAI) -> str:
        cm = serve(fake.app)
        url = cm.__enter__()
        with_stack.append(cm)
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        return url

    yield use
    for cm in reversed(with_stack):
        cm.__exit__(None, None, None)


def generate(ctx: AppContext, **options: Any) -> Any:
    return ctx.tasks.create_task(
        "text.generate",
        provider="openai",
        model="gpt-4o-mini",
        prompt="Say hello",
        options=options or None,
    ).id


def test_text_generate_streams_with_progress_and_stores_text_and_usage(
    ctx: AppContext, registry: HandlerRegistry, openai_url: Callable[[FakeOpenAI], str]
) -> None:
    fake = FakeOpenAI(key=KEY, tokens=["Hel", "lo", " there", "!"], usage=(7, 4), token_delay=0.1)
    openai_url(fake)
    with ctx.events.subscribe(["task:progress", "task:completed"]) as events:
        task_id = generate(ctx, system="Be brief", max_tokens=50)
        start(ctx, registry, progress_interval=0.05)
        messages = []
        while (event := events.get(timeout=30)) is not None and event.topic == "task:progress":
            messages.append(event.data["message"])
        assert event is not None and event.data["id"] == str(task_id), "the generation ended"
    result = ctx.tasks.get_task(task_id).result
    assert result == {
        "text": "Hello there!",
        "usage": {"tokens_in": 7, "tokens_out": 4},
        "finish_reason": "stop",
        "provider": "openai",
        "model": "gpt-4o-mini",
    }
    assert any(m.startswith("Streaming:") for m in messages)
    sent = fake.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief"}


def test_text_generate_retries_a_rate_limit_then_succeeds(
    ctx: AppContext,
    registry: HandlerRegistry,
    openai_url: Callable[[FakeOpenAI], str],
    clock: QueueClock,
    minute_backoff: None,
) -> None:
    # One request per attempt (no hidden SDK retries): the first is refused, so the
    # attempt fails with ProviderRateLimited and the queue, backing off, tries again.
    fake = FakeOpenAI(key=KEY, tokens=["ok"], fault="rate_limit", fault_times=1, retry_after=0.05)
    openai_url(fake)
    task_id = generate(ctx)
    with ctx.events.subscribe("task:queued") as requeued:
        start(ctx, registry)
        event = requeued.get(timeout=30)
        assert event is not None, "the rate-limited attempt was not requeued"
        clock.advance(event.data["retry_in"])
        wait_for(lambda: status_of(ctx, task_id) == COMPLETED, what="the retried generation")
    view = ctx.tasks.get_task(task_id)
    assert (view.attempts, view.result["text"], len(fake.requests)) == (2, "ok", 2)
    assert "rate" in event.data["error"].lower()


def test_text_generate_with_a_rejected_key_fails_at_once(
    ctx: AppContext, registry: HandlerRegistry, openai_url: Callable[[FakeOpenAI], str]
) -> None:
    openai_url(FakeOpenAI(key=KEY, fault="auth"))
    task_id = generate(ctx)
    start(ctx, registry)
    wait_for(lambda: status_of(ctx, task_id) == FAILED, what="the failure")
    view = ctx.tasks.get_task(task_id)
    assert view.attempts == 1
    assert "key" in view.error.lower()


def test_text_generate_with_an_empty_reply_fails_at_once_with_the_reason(
    ctx: AppContext, registry: HandlerRegistry, openai_url: Callable[[FakeOpenAI], str]
) -> None:
    openai_url(FakeOpenAI(key=KEY, fault="empty_stream"))  # llama.cpp, prompt over context
    task_id = generate(ctx)
    start(ctx, registry)
    wait_for(lambda: status_of(ctx, task_id) == FAILED, what="the failure")
    view = ctx.tasks.get_task(task_id)
    assert view.attempts == 1  # retrying the same over-long prompt cannot help
    assert view.error == EMPTY_REPLY


def test_text_generate_estimates_tokens_the_server_did_not_report(
    ctx: AppContext, registry: HandlerRegistry, openai_url: Callable[[FakeOpenAI], str]
) -> None:
    openai_url(FakeOpenAI(key=KEY, tokens=["a", "b", "c"], usage=False))
    task_id = generate(ctx)  # "Say hello": 9 characters, about 3 tokens
    start(ctx, registry)
    wait_for(lambda: status_of(ctx, task_id) == COMPLETED, what="the generation")
    usage = ctx.tasks.get_task(task_id).result["usage"]
    assert usage == {"tokens_in": 3, "tokens_out": 3, "estimated": True}


def test_cancelling_a_generation_closes_the_upstream_stream(
    ctx: AppContext, registry: HandlerRegistry, openai_url: Callable[[FakeOpenAI], str]
) -> None:
    fake = FakeOpenAI(key=KEY, tokens=[f"t{i} " for i in range(500)], token_delay=0.01)
    openai_url(fake)
    task_id = generate(ctx)
    start(ctx, registry, progress_interval=0.05)
    wait_for(lambda: ctx.tasks.get_task(task_id).progress_message, what="streaming to start")
    wait_for(lambda: "Streaming" in (ctx.tasks.get_task(task_id).progress_message or ""))
    ctx.tasks.cancel_task(task_id)
    wait_for(lambda: status_of(ctx, task_id) == CANCELLED, what="the generation to stop")
    assert fake.disconnected.wait(30), "the upstream request was not closed"


def test_text_batch_queues_one_generation_per_input(
    ctx: AppContext, registry: HandlerRegistry, openai_url: Callable[[FakeOpenAI], str]
) -> None:
    fake = FakeOpenAI(key=KEY, tokens=["fine"])
    openai_url(fake)
    batch = ctx.tasks.create_task(
        "text.batch",
        name="Greetings",
        provider="openai",
        model="gpt-4o-mini",
        prompt="Greet {input}",
        inputs=["Ada", "Linus", "Grace"],
    )
    start(ctx, registry, threads=3)
    wait_for(lambda: ctx.tasks.stats().counts[COMPLETED] == 4, what="batch and children")
    children = ctx.tasks.children(batch.id)
    assert sorted(c.name for c in children) == [
        "Greetings #1: Ada",
        "Greetings #2: Linus",
        "Greetings #3: Grace",
    ]
    result = ctx.tasks.get_task(batch.id).result
    assert result["count"] == 3
    assert set(result["children"]) == {str(c.id) for c in children}
    prompts = sorted(r.json["messages"][-1]["content"] for r in fake.requests)
    assert prompts == ["Greet Ada", "Greet Grace", "Greet Linus"]
    assert all(ctx.tasks.get_task(c.id).result["text"] == "fine" for c in children)
    assert all(c.parent_id == batch.id for c in children)


# -- worker processes ---------------------------------------------------------


def spawn_worker(db_url: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return wait_ready(launch_worker(db_url, tmp_path, *args))


def launch_worker(
    db_url: str, tmp_path: Path, *args: str, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """`python -m spoonfeeder worker` with the tests' handlers, configured from the env
    (stderr=subprocess.PIPE to read what it says; a live worker must not fill the pipe)."""
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SPOONFEEDER_DATA_DIR": str(tmp_path / "worker-data"),
        "ENCRYPTION_KEY": "11" * 32,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoonfeeder", "worker", "--handlers", "tests.worker_handlers",
         "--poll-interval", "0.2", "--reaper-interval", "0.2", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )  # fmt: skip
    return proc


def wait_ready(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    line = proc.stdout.readline() if proc.stdout else ""
    if "worker ready" not in line:
        proc.kill()
        raise AssertionError(f"the worker process did not start: {line!r}")
    return proc


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_two_worker_processes_share_the_queue_and_never_run_a_task_twice(
    postgres_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    ctx = make_context(postgres_url, tmp_path)
    try:
        create_executions_table(ctx.engine)
        with ctx.events.subscribe("task:completed") as completed:
            assert ctx.events.wait_listening()
            for _ in range(2):  # leases so long that no heartbeat comes during the test
                processes.append(
                    launch_worker(
                        postgres_url, tmp_path, "--threads", "4", "--lease-seconds", "3600"
                    )
                )
            for proc in processes:
                wait_ready(proc)
            ids = ctx.tasks.queue.enqueue_many(
                [{"type": "test.record", "payload": {"sleep": 0.005}} for _ in range(300)]
            )
            wait_for(lambda: ctx.tasks.stats().counts[COMPLETED] == 300, 60, "300 tasks")
            # The task:completed events came from the workers, through NOTIFY.
            remote = set()
            while len(remote) < 300 and (event := completed.get(timeout=30)) is not None:
                assert event.remote
                remote.add(event.data["id"])
        runs = executions(ctx.engine)
        assert sorted(task for task, _, _ in runs) == sorted(str(i) for i in ids)
        pids = Counter(pid for _, pid, _ in runs)
        assert set(pids) == {p.pid for p in processes}, "both processes should have worked"
        assert remote == {str(i) for i in ids}
        # Cancel in this process reaches the handler running in another one through
        # NOTIFY: the heartbeat that would also tell it is 20 minutes away (an hour's lease).
        long = ctx.tasks.queue.enqueue("test.until_cancelled")
        wait_for(lambda: status_of(ctx, long) == "running", what="the long task to start")
        ctx.tasks.cancel_task(long)
        wait_for(lambda: status_of(ctx, long) == CANCELLED, what="the remote task to stop")
        # SIGTERM: each process stops cleanly.
        for proc in processes:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(15) for proc in processes] == [0, 0]
    finally:
        ctx.close()


def test_a_task_whose_worker_is_killed_runs_again_after_its_lease_expires(
    db_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    ctx = make_context(db_url, tmp_path)
    try:
        create_executions_table(ctx.engine)
        victim = spawn_worker(db_url, tmp_path, "--threads", "1", "--lease-seconds", "600")
        processes.append(victim)
        task_id = ctx.tasks.queue.enqueue("test.hang_first")
        wait_for(lambda: executions(ctx.engine), what="the first attempt to start")
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        assert status_of(ctx, task_id) == "running"  # nobody told the database
        # Once its lease has run out, a surviving worker (here, a pool in this process)
        # reaps it.
        ctx.tasks.queue.clock.advance(601)
        start(ctx, install(ctx.handlers.copy(), ctx.engine), threads=1)
        wait_for(lambda: status_of(ctx, task_id) == COMPLETED, what="the rerun to complete")
        runs = executions(ctx.engine)
        assert [(pid, attempt) for _, pid, attempt in runs] == [(victim.pid, 1), (os.getpid(), 2)]
        assert ctx.tasks.get_task(task_id).result == {"pid": os.getpid(), "attempt": 2}
    finally:
        ctx.close()


def test_workers_survive_losing_their_database_connections(
    postgres_url: str, tmp_path: Path
) -> None:
    ctx = make_context(postgres_url, tmp_path)
    registry = ctx.handlers.copy()
    try:
        registry.add("test.noop", lambda task: {"ok": True})
        start(ctx, registry, threads=2)
        first = ctx.tasks.queue.enqueue("test.noop")
        wait_for(lambda: status_of(ctx, first) == COMPLETED, what="a first task")
        with ctx.engine.connect() as conn:  # what a database restart does to clients
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        assert killed >= 2  # at least the workers' pinned connections
        second = ctx.tasks.queue.enqueue("test.noop")
        wait_for(lambda: status_of(ctx, second) == COMPLETED, what="a task after reconnecting")
        assert ctx.workers is not None and ctx.workers.running
    finally:
        ctx.close()


def make_context(db_url: str, tmp_path: Path) -> AppContext:
    return AppContext.create(make_settings(db_url, tmp_path / "test-data"))


@pytest.fixture
def postgres_url(postgres: Any) -> Iterator[str]:
    url = postgres.create(template=postgres.migrated_template())
    yield url
    postgres.drop(url)


def test_text_generate_on_ollama_runs_without_sdk_retry_options(
    ctx: AppContext, registry: HandlerRegistry
) -> None:
    """The queue asks for no SDK retries; Ollama's client has none to turn off."""
    fake = FakeOllama(tokens=["a ", "b "])
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        task_id = ctx.tasks.create_task(
            "text.generate", provider="ollama", model="llama3.2", prompt="Hi"
        ).id
        start(ctx, registry)
        wait_for(lambda: status_of(ctx, task_id) in (COMPLETED, FAILED), what="the generation")
    view = ctx.tasks.get_task(task_id)
    assert view.status == COMPLETED, view.error
    assert view.result["text"] == "a b "


def test_dropped_database_connections_cost_no_task_an_attempt(
    postgres_url: str, tmp_path: Path
) -> None:
    """A database that keeps killing the workers' connections (a failover, a restart):
    every task completes, on its first attempt, and no error is raw SQLAlchemy text."""
    ctx = make_context(postgres_url, tmp_path)
    registry = ctx.handlers.copy()
    stop = threading.Event()
    kills = Counter()

    def work(task: TaskContext) -> dict[str, Any]:
        for step in range(4):
            task.progress(step / 4, f"step {step}", force=True)  # a write every step
            time.sleep(0.008)
        return {"ok": True}

    def killer() -> None:
        with ctx.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while not stop.wait(0.15):
                kills["rounds"] += 1
                kills["backends"] += conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar()

    try:
        registry.add("test.steps", work)
        ids = [ctx.tasks.queue.enqueue("test.steps") for _ in range(240)]
        murderer = threading.Thread(target=killer, daemon=True)
        murderer.start()
        start(ctx, registry, threads=4, lease_seconds=20.0)

        def settled() -> bool:
            try:  # this check's own connection is killed now and then too
                with ctx.engine.connect() as conn:
                    return not conn.execute(
                        text("SELECT count(*) FROM tasks WHERE status IN ('queued', 'running')")
                    ).scalar()
            except OperationalError:
                return False

        wait_for(settled, 120, "every task to end")
        stop.set()
        murderer.join(5)
        with ctx.engine.connect() as conn:
            rows = conn.execute(text("SELECT status, attempts, error FROM tasks")).all()
    finally:
        stop.set()
        ctx.close()
    assert kills["rounds"] >= 8 and kills["backends"] > 15  # connections really were lost
    assert {row.status for row in rows} == {COMPLETED}
    assert len(rows) == len(ids)
    assert {row.attempts for row in rows} == {1}  # no attempt spent on the database
    assert not [row.error for row in rows if row.error]


# -- process roles: the app migrates and recovers, a worker does neither ----------------


def test_a_worker_process_leaves_replies_the_app_is_streaming_alone(
    db_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    ctx = make_context(db_url, tmp_path)  # the running app
    try:
        with transaction(ctx.sessions) as session:
            conversation = Conversation(title="Streaming now")
            session.add(conversation)
            session.flush()
            session.add(Message(conversation_id=conversation.id, role="user", content="hi"))
            reply = Message(
                conversation_id=conversation.id, role="assistant", position=1, status="streaming"
            )
            session.add(reply)
        processes.append(spawn_worker(db_url, tmp_path, "--threads", "1"))
        with ctx.sessions() as session:
            assert session.get(Message, reply.id).status == "streaming"  # still the app's
    finally:
        ctx.close()


def test_a_worker_refuses_an_unmigrated_database_until_migrate_runs(
    empty_db_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    refused = launch_worker(empty_db_url, tmp_path, "--threads", "1", stderr=subprocess.PIPE)
    processes.append(refused)
    out, err = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert "worker ready" not in out
    assert "python -m spoonfeeder migrate" in err and "Traceback" not in err
    assert current_revision_of(empty_db_url) is None  # the worker changed nothing

    migrate = subprocess.run(
        [sys.executable, "-m", "spoonfeeder", "migrate", "--database-url", empty_db_url],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SPOONFEEDER_DATA_DIR": str(tmp_path / "migrate-data")},
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    assert head_revision() in migrate.stdout  # says where the schema is now
    assert current_revision_of(empty_db_url) == head_revision()
    processes.append(spawn_worker(empty_db_url, tmp_path, "--threads", "1"))


def current_revision_of(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()
