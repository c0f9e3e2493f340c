"""The Tasks tab through the launched app: create, watch live, cancel, retry, delete."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from spoonfeeder.context import AppContext
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import launched, sqlite_app
from ui.tasks import age

KEY = "sk-tasks-test"
TOKENS = [f"t{i} " for i in range(20)]
FILTERS = ("all", "all", "all", "", "", 1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AppContext]]:
    fake = FakeOpenAI(key=KEY, tokens=TOKENS, token_delay=0.002)
    with serve(fake.app) as url, sqlite_app(tmp_path_factory.mktemp("tasks-app")) as ctx:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        ctx.start_workers(2)
        with launched(ctx) as app_url:
            yield Client(app_url, verbose=False), ctx


def wait_for(fetch, done, timeout: float = 30.0):
    """Fetch until `done(value)`, then return the value; the caller asserts on it. The
    timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def create(client: Client, **fields) -> str:
    values = {
        "name": "",
        "type": "text.generate",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt": "Say hi",
        "inputs": "",
        "options": "",
        "priority": 0,
        "attempts": 3,
    }
    values.update(fields)
    return client.predict(*values.values(), api_name="/create_task")


def test_created_task_runs_and_shows_its_result(app: tuple[Client, AppContext]) -> None:
    client, _ = app
    task_id = create(client, name="Greeting")
    task = wait_for(
        lambda: client.predict(task_id, api_name="/task"), lambda t: t["status"] == "completed"
    )
    assert task["status"] == "completed"
    assert task["result"]["text"] == "".join(TOKENS)
    details, result = client.predict(task_id, api_name="/show_task")
    assert "Greeting" in details and "completed" in details
    assert result["usage"]["tokens_out"] > 0


def test_live_view_shows_a_new_task_without_a_refresh(app: tuple[Client, AppContext]) -> None:
    client, _ = app
    job = client.submit(*FILTERS, "", api_name="/watch_tasks")
    try:
        first = len(wait_for(job.outputs, bool))
        assert first >= 1  # the table is shown at once
        task_id = create(client, name="Live one")
        # The watcher yields again because task events arrived, not because anyone asked.
        later = wait_for(
            lambda: job.outputs(),
            lambda outs: any(row[-1] == task_id and "completed" in row[2] for row in _rows(outs)),
        )
        assert any(row[-1] == task_id and "completed" in row[2] for row in _rows(later))
    finally:
        job.cancel()


def _rows(outputs: list) -> list[list]:
    """The table of the newest output that carries one (idle yields change nothing)."""
    tables = [out[1] for out in outputs if isinstance(out[1], dict) and "data" in out[1]]
    return tables[-1]["data"] if tables else []


def test_bad_task_input_gives_a_clear_error_and_queues_nothing(
    app: tuple[Client, AppContext],
) -> None:
    client, ctx = app
    before = ctx.tasks.list_tasks().total
    with pytest.raises(AppError, match="Options must be JSON"):
        create(client, options="{temperature: hot}")
    with pytest.raises(AppError, match="prompt"):
        create(client, prompt="")
    assert ctx.tasks.list_tasks().total == before


def test_cancel_retry_and_delete(app: tuple[Client, AppContext]) -> None:
    client, ctx = app
    # Far in the future: stays queued, so cancel acts at once.
    task = ctx.tasks.create_task(
        "text.generate",
        provider="openai",
        model="gpt-4o-mini",
        prompt="later",
        run_at=ctx.tasks.get_task(create(client)).created_at.replace(year=2099),
    )
    details, _ = client.predict(str(task.id), api_name="/cancel_task")
    assert "cancelled" in details
    with pytest.raises(AppError, match="already cancelled"):
        client.predict(str(task.id), api_name="/cancel_task")
    details, _ = client.predict(str(task.id), api_name="/retry_task")
    retried = wait_for(lambda: ctx.tasks.get_task(task.id), lambda t: t.status == "completed")
    assert retried.status == "completed"  # retry runs it now, not in 2099
    client.predict(str(task.id), api_name="/confirm_delete_task")
    client.predict(str(task.id), *FILTERS, api_name="/delete_task")
    with pytest.raises(AppError, match="no longer exists"):
        client.predict(str(task.id), api_name="/show_task")


def test_filters_and_paging(app: tuple[Client, AppContext]) -> None:
    client, _ = app
    summary, table = client.predict("failed", "all", "all", "", "", 1, api_name="/list_tasks")
    assert all("failed" in row[2] for row in table["data"])
    with pytest.raises(AppError, match="not a date"):
        client.predict("all", "all", "all", "yesterday", "", 1, api_name="/list_tasks")
    summary, table = client.predict(*FILTERS, api_name="/list_tasks")
    assert summary.startswith("Tasks 1–")


def test_age_text() -> None:
    from datetime import timedelta

    from spoonfeeder.db.types import utcnow

    now = utcnow()
    assert age(now - timedelta(seconds=5), now) == "5s"
    assert age(now - timedelta(minutes=3, seconds=5), now) == "3m"
    assert age(now - timedelta(hours=2), now) == "2h"


def test_dashboard_shows_task_statistics(app: tuple[Client, AppContext]) -> None:
    client, ctx = app
    task_id = create(client, name="Counted", model="no-such-model")
    wait_for(lambda: ctx.tasks.get_task(task_id), lambda t: t.status == "failed")
    data = client.predict(api_name="/dashboard")
    assert data["tasks"]["counts"]["completed"] >= 1
    assert data["tasks"]["counts"]["failed"] >= 1
    assert data["tasks"]["completed_last_hour"] >= 1
    _, _, _, stats_md, failures, _ = client.predict(api_name="/refresh_dashboard")
    assert "Last hour" in stats_md and "median run time" in stats_md
    failed = [row for row in failures["data"] if row[0] == "Counted"]
    assert failed and "no-such-model" in failed[0][3]
