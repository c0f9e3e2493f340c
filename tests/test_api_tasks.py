"""/api/tasks through the REST face, on SQLite and PostgreSQL: create, get, cancel,
retry and delete with the stored state checked through TaskService; list filters and
page/limit with the real total; refusals naming the field. No worker runs (the test app
has none), so a created task stays queued until a test moves it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from spoonfeeder.context import AppContext
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import Task
from spoonfeeder.errors import NotFoundError
from tests.launch import api_client

GENERATE = {"type": "text.generate", "provider": "openai", "model": "gpt-4o-mini"}


@pytest.fixture
def client(ctx: AppContext):
    with api_client(ctx) as c:
        yield c


def data(answer, status: int = 200):
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is True
    return body["data"]


def failure(answer, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and body["code"] == code
    return body["error"]


def create(client: TestClient, **fields) -> dict:
    return data(client.post("/api/tasks", json={**GENERATE, "prompt": "Say hi", **fields}), 201)


def dated(ctx: AppContext, task_id: str, when: str) -> None:
    with transaction(ctx.sessions) as session:
        session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(created_at=datetime.fromisoformat(when).replace(tzinfo=UTC))
        )


def test_create_get_cancel_retry_delete(ctx: AppContext, client: TestClient) -> None:
    made = create(
        client,
        name="Greeting",
        options={"temperature": 0.2, "max_tokens": 50},
        priority=5,
        max_attempts=2,
    )
    assert (made["name"], made["status"], made["priority"], made["max_attempts"]) == (
        "Greeting",
        "queued",
        5,
        2,
    )
    assert made["payload"] == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt": "Say hi",
        "temperature": 0.2,
        "max_tokens": 50,
    }
    path = f"/api/tasks/{made['id']}"
    shown = data(client.get(path))
    assert (shown["status"], shown["result"], shown["children"]) == ("queued", None, [])
    assert ctx.tasks.get_task(made["id"]).status == "queued"

    cancelled = data(client.delete(path))
    assert (cancelled["id"], cancelled["action"]) == (made["id"], "cancelled")
    assert cancelled["task"]["status"] == "cancelled"
    assert ctx.tasks.get_task(made["id"]).status == "cancelled"

    retried = data(client.post(f"{path}/retry"))
    assert (retried["status"], retried["attempts"], retried["cancel_requested"]) == (
        "queued",
        0,
        False,
    )
    assert ctx.tasks.get_task(made["id"]).status == "queued"
    again = client.post(f"{path}/retry")
    assert "Only failed or cancelled tasks can be retried; this one is queued" in failure(
        again, 422, "VALIDATION_ERROR"
    )

    assert data(client.delete(path))["action"] == "cancelled"  # queued again: cancel first
    deleted = data(client.delete(path))
    assert (deleted["action"], deleted["task"]["status"]) == ("deleted", "cancelled")
    with pytest.raises(NotFoundError):
        ctx.tasks.get_task(made["id"])
    assert "no longer exists" in failure(client.get(path), 404, "NOT_FOUND")
    assert "no longer exists" in failure(client.delete(path), 404, "NOT_FOUND")


def test_a_batch_shows_its_tasks_and_goes_with_them(ctx: AppContext, client: TestClient) -> None:
    batch = create(client, type="text.batch", prompt="Summarise {input}", inputs=["a", "b"])
    assert batch["payload"]["inputs"] == ["a", "b"]
    # The handler queues the children when it runs; queue them as it does.
    child = {"type": "text.generate", "parent_id": uuid.UUID(batch["id"])}
    ctx.tasks.queue.enqueue_many(
        [{**child, "payload": {**GENERATE, "prompt": f"Summarise {x}"}} for x in "ab"]
    )
    path = f"/api/tasks/{batch['id']}"
    children = data(client.get(path))["children"]
    assert [c["parent_id"] for c in children] == [batch["id"]] * 2
    listed = client.get("/api/tasks", params={"parent_id": batch["id"]})
    assert listed.json()["pagination"]["total"] == 2

    assert data(client.delete(path))["action"] == "cancelled"
    assert {c.status for c in ctx.tasks.children(batch["id"])} == {"cancelled"}
    assert data(client.delete(path))["action"] == "deleted"
    assert ctx.tasks.children(batch["id"]) == []
    assert ctx.tasks.list_tasks().total == 0


def test_a_profile_is_the_tasks_provider(ctx: AppContext, client: TestClient) -> None:
    profile = ctx.profiles.create_profile("Local Ollama", "ollama", "http://10.0.0.3:11434")
    by_id = create(client, provider=None, profile_id=str(profile.id), model="llama3.2")
    by_choice = create(client, provider=f"profile:{profile.id}", model="llama3.2")
    for made in (by_id, by_choice):
        stored = ctx.tasks.get_task(made["id"])
        assert (stored.provider, stored.payload["profile_id"]) == ("ollama", str(profile.id))
    mismatch = client.post(
        "/api/tasks", json={**GENERATE, "prompt": "x", "profile_id": str(profile.id)}
    )
    assert "is not the kind of profile" in failure(mismatch, 422, "VALIDATION_ERROR")
    gone = client.post("/api/tasks", json={**GENERATE, "profile_id": str(uuid.uuid4())})
    assert "No profile with id" in failure(gone, 404, "NOT_FOUND")
    assert ctx.tasks.list_tasks().total == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"prompt": "x"}, "type: Field required"),
        ({"type": "text.nope"}, "Unknown task type 'text.nope'; choose one of: comfyui.generate"),
        ({**GENERATE, "prompt": "x", "priority": "high"}, "priority: Input should be"),
        ({**GENERATE, "prompt": "x", "max_attempts": 50}, "Attempts must be between 1 and 20"),
        ({**GENERATE, "prompt": "x", "options": "hot"}, "options: Input should be"),
        ({**GENERATE, "prompt": "x", "colour": "red"}, "colour: Extra inputs"),
        ({**GENERATE}, "A prompt is required"),
        ({**GENERATE, "provider": "comfyui", "prompt": "x"}, "Choose a chat provider"),
        ({**GENERATE, "prompt": "x", "options": {"temperature": 9}}, "temperature must be"),
        (
            {**GENERATE, "type": "text.batch", "prompt": "no slot", "inputs": ["a"]},
            "must contain {input}",
        ),
        ({**GENERATE, "type": "text.batch", "prompt": "{input}"}, "A batch needs a list"),
        ({"type": "comfyui.generate"}, "needs the generation_id"),
    ],
)
def test_a_bad_task_is_refused_naming_the_field(
    ctx: AppContext, client: TestClient, body: dict, says: str
) -> None:
    assert says in failure(client.post("/api/tasks", json=body), 422, "VALIDATION_ERROR")
    assert ctx.tasks.list_tasks().total == 0


def test_unknown_task_ids_are_404(client: TestClient) -> None:
    missing = str(uuid.uuid4())
    for method, path in [
        ("GET", f"/api/tasks/{missing}"),
        ("DELETE", f"/api/tasks/{missing}"),
        ("POST", f"/api/tasks/{missing}/retry"),
        ("GET", "/api/tasks/not-a-task"),
    ]:
        failure(client.request(method, path), 404, "NOT_FOUND")


def test_list_filters_and_pages(ctx: AppContext, client: TestClient) -> None:
    ids = [create(client, name=f"t{i}")["id"] for i in range(5)]
    ids.append(create(client, name="local", provider="ollama", model="llama3.2")["id"])
    batch = create(client, type="text.batch", name="batch", prompt="{input}", inputs=["a"])
    ids.append(batch["id"])
    ctx.tasks.cancel_task(ids[0])
    ctx.tasks.cancel_task(ids[1])
    oldest = ("2020-01-05T10:00", "2020-02-10T10:00", "2020-03-15T23:30")  # t0, t1, t2
    for task_id, when in zip(ids[:3], oldest, strict=True):
        dated(ctx, task_id, when)

    def names(**params) -> list[str]:
        answer = client.get("/api/tasks", params={"limit": 200, **params})
        assert answer.json()["pagination"]["total"] == len(answer.json()["data"])
        return sorted(t["name"] for t in data(answer))

    assert names(status="cancelled") == ["t0", "t1"]
    assert names(status=["cancelled", "queued"]) == names() == names(status="queued,cancelled")
    assert len(names()) == 7
    assert names(status="all") == names()
    assert names(type="text.batch") == ["batch"]
    assert names(provider="ollama") == ["local"]
    assert names(created_from="2020-02-01", created_to="2020-03-15") == ["t1", "t2"]
    assert names(created_to="2020-01-05") == ["t0"]  # a bare end date: that whole day
    assert names(status="queued", provider="openai", type="text.generate") == ["t2", "t3", "t4"]

    # Page 2 of 3, newest first, with the total over all pages.
    first, second, third = (
        client.get("/api/tasks", params={"limit": 3, "page": page}).json() for page in (1, 2, 3)
    )
    assert second["pagination"] == {"page": 2, "limit": 3, "total": 7, "pages": 3}
    assert [len(p["data"]) for p in (first, second, third)] == [3, 3, 1]
    every = [t["id"] for p in (first, second, third) for t in p["data"]]
    assert sorted(every) == sorted(ids)
    assert every[-1] == ids[0]  # the oldest last
    past = client.get("/api/tasks", params={"limit": 3, "page": 4}).json()
    assert past["data"] == [] and past["pagination"]["total"] == 7


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"status": "done"}, "Unknown status 'done'; choose one of: queued, running"),
        ({"created_from": "yesterday"}, "'yesterday' is not a date; use YYYY-MM-DD"),
        ({"limit": 500}, "limit: Input should be less than or equal to 200"),
        ({"page": 0}, "page: Input should be greater than or equal to 1"),
        ({"parent_id": "nope"}, "parent_id: Input should be a valid UUID"),
    ],
)
def test_bad_list_filters_are_refused(client: TestClient, params: dict, says: str) -> None:
    answer = client.get("/api/tasks", params=params)
    assert says in failure(answer, 422, "VALIDATION_ERROR")


def test_task_types_are_listed_with_their_descriptions(client: TestClient) -> None:
    types = {t["type"]: t["description"] for t in data(client.get("/api/tasks/types"))}
    assert {"text.generate", "text.batch", "comfyui.generate"} <= set(types)
    assert "{input}" in types["text.batch"]
