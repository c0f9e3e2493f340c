"""/api/ws: the seed's live events over a real WebSocket (uvicorn on 127.0.0.1, the
`websockets` client): a task's life, a generation's life against the fake ComfyUI
from generation:started to completed with its outputs, a late subscriber's current
state first, events from another process on PostgreSQL, refused credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from spoonfeeder.api.app import create_api
from spoonfeeder.context import AppContext
from spoonfeeder.tasks import TaskContext
from tests.conftest import MakeApp, make_settings
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.server import serve

WAIT = 30.0  # only ends a failed wait
CKPT = "tiny-random-sd15.safetensors"


class Live:
    """A WebSocket client of /api/ws that keeps every message it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    def send(self, event: str, data: Any) -> None:
        self.ws.send(json.dumps({"event": event, "data": data}))

    def until(self, event: str, **match: Any) -> dict[str, Any]:
        """Read until a message `event` whose data has `match`; returns its data."""
        while True:
            message = json.loads(self.ws.recv(timeout=WAIT))
            self.seen.append(message)
            data = message["data"]
            if message["event"] == event and all(data.get(k) == v for k, v in match.items()):
                return data

    def events(self) -> list[str]:
        return [m["event"] for m in self.seen]


@contextmanager
def live(ctx: AppContext, headers: dict[str, str] | None = None) -> Iterator[Live]:
    with serve(create_api(ctx)) as url:
        ws_url = url.replace("http://", "ws://") + "/api/ws"
        with connect(ws_url, additional_headers=headers or {}, open_timeout=WAIT) as ws:
            yield Live(ws)


def echo(task: TaskContext) -> dict[str, Any]:
    task.progress(0.5, "half way", force=True)
    return {"echo": task.payload["text"]}


def test_a_tasks_life_arrives_in_the_seeds_events(ctx: AppContext) -> None:
    registry = ctx.handlers.copy()
    registry.add("test.echo", echo)
    with live(ctx) as client:
        client.send("subscribe:task", "*")
        client.until("subscribed", kind="task", id="*")
        ctx.start_workers(1, registry=registry, poll_interval=0.05)
        task_id = str(ctx.tasks.queue.enqueue("test.echo", {"text": "hello"}))
        created = client.until("task:created")
        started = client.until("task:started", taskId=task_id)
        progress = client.until("task:progress", taskId=task_id)
        completed = client.until("task:completed", taskId=task_id)
    assert created["task"]["id"] == task_id and created["task"]["type"] == "test.echo"
    assert started["startedAt"]  # an ISO time
    assert progress == {"taskId": task_id, "progress": 0.5, "message": "half way"}
    assert completed["result"] == {"echo": "hello"}


def test_a_late_subscriber_gets_the_current_state_first(ctx: AppContext) -> None:
    registry = ctx.handlers.copy()
    registry.add("test.echo", echo)
    with ctx.events.subscribe("task:completed") as ends:  # before it can end
        task_id = ctx.tasks.queue.enqueue("test.echo", {"text": "early"})
        workers = ctx.start_workers(1, registry=registry, poll_interval=0.05)
        while (ended := ends.get(timeout=WAIT)) is not None and ended.data["id"] != str(task_id):
            pass
    workers.stop()
    assert ctx.tasks.get_task(task_id).status == "completed"
    with live(ctx) as client:
        client.send("subscribe:task", str(task_id))
        client.until("subscribed")
    assert client.events()[-3:] == ["task:created", "task:completed", "subscribed"]
    assert client.seen[-3]["data"]["task"]["status"] == "completed"
    assert client.seen[-2]["data"]["result"] == {"echo": "early"}


def test_bad_messages_are_answered_with_a_sentence(make_app: MakeApp) -> None:
    with live(make_app()) as client:
        client.ws.send("not json")
        not_json = client.until("error")
        client.send("subscribe:planet", "x")
        unknown = client.until("error")
        client.send("subscribe:task", "")
        no_id = client.until("error")
        client.send("subscribe:task", "00000000-0000-0000-0000-000000000000")
        missing = client.until("error")
    assert "subscribe:task" in not_json["message"]
    assert "subscribe:session" in unknown["message"]
    assert "needs an id" in no_id["message"]
    assert missing["code"] == "NOT_FOUND" and "no longer exists" in missing["message"]


@pytest.fixture
def comfy(make_app: MakeApp, db_url: str, tmp_path: Any) -> Iterator[AppContext]:
    fake = FakeComfyUI()
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    with serve(fake.app) as url:
        ctx = make_app(settings=make_settings(db_url, tmp_path / "data", comfyui_url=url))
        ctx.comfyui.runner.timings.receive_timeout = 0.05
        ctx.comfyui.runner.timings.poll_interval = 0.05
        yield ctx


def test_a_generation_from_started_to_completed_with_its_outputs(comfy: AppContext) -> None:
    session = comfy.comfyui.sessions.create("Foxes")
    with live(comfy) as client:
        client.send("subscribe:session", str(session.id))
        client.until("subscribed", kind="session")
        comfy.start_workers(1, poll_interval=0.05)
        parameters = {"prompt": "a red fox", "checkpoint": CKPT, "steps": 3, "seed": -1}
        made = comfy.comfyui.generator.generate(session.id, parameters)[0]
        generation_id = str(made.id)
        started = client.until("generation:started", generationId=generation_id)
        stepped = client.until("generation:progress", generationId=generation_id, step=3)
        completed = client.until("generation:completed", generationId=generation_id)
    assert started["promptId"] and started["sessionId"] == str(session.id)
    assert stepped["max"] == 3 and stepped["node"] and 0 < stepped["progress"] <= 1
    previews = [
        m["data"]["preview"]
        for m in client.seen
        if m["event"] == "generation:progress" and m["data"]["preview"]
    ]
    assert previews and all(p.startswith("/api/comfyui/image/") for p in previews)
    outputs = completed["outputs"]
    assert outputs and outputs[0]["url"] == "/api/comfyui/image/" + outputs[0]["path"]
    stored = comfy.comfyui.media.file(outputs[0]["path"]).read_bytes()
    assert stored.startswith(b"\x89PNG") and len(stored) == outputs[0]["size"]
    assert client.events().count("generation:started") == 1


def test_events_of_another_process_arrive_on_postgresql(
    make_app: MakeApp, postgres: Any, tmp_path: Any
) -> None:
    url = postgres.create(template=postgres.migrated_template())
    serving = make_app(url, tmp_path / "a")
    other = make_app(url, tmp_path / "b")  # its own event bus: another process's
    registry = other.handlers.copy()
    registry.add("test.echo", echo)
    assert serving.events.wait_listening() and other.events.wait_listening()
    with live(serving) as client:
        client.send("subscribe:task", "*")
        client.until("subscribed")
        other.start_workers(1, registry=registry, poll_interval=0.05)
        task_id = str(other.tasks.queue.enqueue("test.echo", {"text": "far"}))
        completed = client.until("task:completed", taskId=task_id)
    assert completed["result"] == {"echo": "far"}


def test_with_auth_on_the_socket_needs_credentials(make_app: MakeApp) -> None:
    ctx = make_app(spoonfeeder_auth="alice:wonder-land")
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"alice:no").decode()}):
        with pytest.raises(InvalidStatus) as refused, live(ctx, headers):
            pass
        assert refused.value.response.status_code == 403
    good = {"Authorization": "Basic " + base64.b64encode(b"alice:wonder-land").decode()}
    with live(ctx, good) as client:
        client.send("subscribe:task", "*")
        assert client.until("subscribed")["id"] == "*"
