"""/api/comfyui through the REST API: options, sessions and generating in them, the
workflow library, generations (the exact snapshot, exact re-runs) and the stored media —
on SQLite and PostgreSQL, against the fake ComfyUI replaying the real transcripts, with
real task workers running the generations."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spoonfeeder.api.app import create_api
from spoonfeeder.api.routes.comfyui_params import DefaultParameters, GenerationParameters
from spoonfeeder.comfyui.params import PARAM_KEYS
from spoonfeeder.context import AppContext
from tests.conftest import MakeApp, make_settings
from tests.fakes.comfyui_server import FIXTURES, FakeComfyUI, SwappableApp, png_with_text
from tests.fakes.server import closed_port_url, serve
from tests.launch import api_client, raw_get

CKPT = "tiny-random-sd15.safetensors"
SMALL = {"checkpoint": CKPT, "width": 64, "height": 64, "steps": 3}
IMG2IMG = "Default img2img (built-in)"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def fake(server: tuple[SwappableApp, str]) -> FakeComfyUI:
    fresh = FakeComfyUI()
    fresh.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    fresh.set_choices("LoraLoader", "lora_name", ["detail.safetensors"])
    server[0].target = fresh.app
    return fresh


@pytest.fixture
def app(
    make_app: MakeApp, db_url: str, tmp_path: Path, server: tuple[SwappableApp, str], fake: Any
) -> AppContext:
    ctx = make_app(settings=make_settings(db_url, tmp_path / "data", comfyui_url=server[1]))
    ctx.comfyui.runner.timings.poll_interval = 0.05
    ctx.comfyui.runner.timings.receive_timeout = 0.05
    return ctx


@pytest.fixture
def client(app: AppContext) -> Iterator[TestClient]:
    with api_client(app) as made:
        yield made


def data(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is True
    return body["data"]


def refused(answer: Any, status: int, code: str) -> str:
    """The error sentence of a failure envelope."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and body["code"] == code, body
    assert "Traceback" not in body["error"]
    return body["error"]


def new_session(client: TestClient, name: str = "Foxes", **extra: Any) -> str:
    return data(client.post("/api/comfyui/sessions", json={"name": name, **extra}), 201)["id"]


def finished(app: AppContext, client: TestClient, ids: list[str]) -> list[dict[str, Any]]:
    """The generations once the workers have ended them: waits on their progress events
    (bounded), then reads each through the API."""
    for _ in app.comfyui.progress.follow(ids, poll=0.1, timeout=30):
        pass
    return [data(client.get(f"/api/comfyui/generations/{gid}")) for gid in ids]


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


def img2img_id(client: TestClient) -> str:
    listed = data(client.get("/api/comfyui/workflows"))
    return next(w["id"] for w in listed if w["name"] == IMG2IMG)


# ----- options ------------------------------------------------------------------------------


def test_options_list_what_the_server_offers_and_503_when_it_is_down(
    app: AppContext, client: TestClient, fake: FakeComfyUI
) -> None:
    found = data(client.get("/api/comfyui/options"))
    assert found["checkpoints"] == [CKPT] and found["loras"] == ["detail.safetensors"]
    assert "euler" in found["samplers"] and "karras" in found["schedulers"]
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT, "new.safetensors"])
    assert data(client.get("/api/comfyui/options"))["checkpoints"] == [CKPT]  # cached
    again = data(client.get("/api/comfyui/options", params={"refresh": "true"}))
    assert again["checkpoints"] == [CKPT, "new.safetensors"]

    down = app.profiles.create_profile("Down", "comfyui", url=closed_port_url())
    error = refused(
        client.get("/api/comfyui/options", params={"profile_id": str(down.id)}),
        503,
        "PROVIDER_UNAVAILABLE",
    )
    assert down.url in error
    missing = client.get("/api/comfyui/options", params={"profile_id": str(uuid.uuid4())})
    refused(missing, 404, "NOT_FOUND")


# ----- sessions -----------------------------------------------------------------------------


def test_sessions_are_created_listed_read_changed_and_deleted(
    app: AppContext, client: TestClient
) -> None:
    first = new_session(client, "Portraits", description="faces")
    second = new_session(client, "Landscapes")
    listed = client.get("/api/comfyui/sessions", params={"limit": 1})
    assert [s["name"] for s in data(listed)] == ["Landscapes"]  # the newest first
    assert listed.json()["pagination"] == {"page": 1, "limit": 1, "total": 2, "pages": 2}

    shown = data(client.get(f"/api/comfyui/sessions/{first}"))
    assert shown["session"]["description"] == "faces"
    assert shown["generations"] == [] and shown["pagination"]["total"] == 0

    other = app.profiles.create_profile("Second GPU", "comfyui", url="http://gpu2:8188")
    changed = client.put(
        f"/api/comfyui/sessions/{first}", json={"name": "Faces", "profile_id": str(other.id)}
    )
    assert (data(changed)["name"], data(changed)["profile_id"]) == ("Faces", str(other.id))
    back = client.put(f"/api/comfyui/sessions/{first}", json={"profile_id": None})
    assert (data(back)["name"], data(back)["profile_id"]) == ("Faces", None)

    chat = app.profiles.create_profile("Local", "ollama", url="http://127.0.0.1:1")
    not_comfy = client.put(f"/api/comfyui/sessions/{first}", json={"profile_id": str(chat.id)})
    assert refused(not_comfy, 422, "VALIDATION_ERROR") == "That profile is not a ComfyUI server"
    assert app.comfyui.sessions.get(first).profile_id is None  # nothing changed
    blank = client.post("/api/comfyui/sessions", json={"name": "  "})
    assert refused(blank, 422, "VALIDATION_ERROR") == "Give the session a name"
    assert "name" in refused(client.post("/api/comfyui/sessions", json={}), 422, "VALIDATION_ERROR")

    gone = data(client.delete(f"/api/comfyui/sessions/{second}"))
    assert gone == {"id": second, "generations_deleted": 0}
    for answer in (
        client.get(f"/api/comfyui/sessions/{second}"),
        client.put(f"/api/comfyui/sessions/{second}", json={"name": "x"}),
        client.delete(f"/api/comfyui/sessions/{second}"),
        client.get("/api/comfyui/sessions/not-an-id"),
    ):
        assert "No session with id" in refused(answer, 404, "NOT_FOUND")


# ----- generating ---------------------------------------------------------------------------


def test_generate_a_random_seed_batch_then_serve_rerun_and_delete(
    app: AppContext, client: TestClient, fake: FakeComfyUI
) -> None:
    """The seed's example request: seed -1 and a batch of two, run by the task workers."""
    app.start_workers(2, poll_interval=0.05)
    session = new_session(client)
    workflow = data(client.get("/api/comfyui/workflows"))[0]  # the default
    body = {
        "prompt_text": "a sunset over mountains",
        "negative_prompt": "blurry, low quality",
        "workflow_id": workflow["id"],
        "parameters": {**SMALL, "seed": -1, "cfg": 6.5, "sampler_name": "euler"},
        "batch_count": 2,
    }
    queued = data(client.post(f"/api/comfyui/sessions/{session}/generate", json=body), 202)
    assert [g["status"] for g in queued] == ["pending", "pending"]
    assert all(g["task_id"] for g in queued)
    seeds = [g["seed"] for g in queued]
    assert seeds[0] >= 0 and seeds[1] == seeds[0] + 1  # a random seed, the batch counting up

    done = finished(app, client, [g["id"] for g in queued])
    assert [g["status"] for g in done] == ["completed", "completed"], [g["error"] for g in done]
    assert [g["seed"] for g in done] == seeds
    assert all(g["prompt"] == "a sunset over mountains" and g["cfg"] == 6.5 for g in done)
    for generation in done:
        assert generation["outputs"]
        for output in generation["outputs"]:
            served = client.get(f"/api/comfyui/image/{output['path']}")
            assert served.status_code == 200
            assert served.headers["content-type"] == "image/png"
            assert served.content == fake.files[("output", "", output["filename"])]

    first = done[0]
    snapshot = client.get(f"/api/comfyui/generations/{first['id']}/workflow")
    assert snapshot.status_code == 200
    assert snapshot.headers["content-type"] == "application/json"
    assert snapshot.text == app.comfyui.generations.snapshot_text(first["id"])
    posted = next(raw for raw in fake.raw_prompts if json.loads(raw)["client_id"] == first["id"])
    assert posted.startswith(b'{"prompt": ' + snapshot.content + b", ")  # byte for byte
    assert json.loads(snapshot.text)["3"]["inputs"]["seed"] == first["seed"]

    shown = data(client.get(f"/api/comfyui/sessions/{session}", params={"limit": 1}))
    assert shown["session"]["completed_count"] == 2 and shown["pagination"]["total"] == 2
    assert len(shown["generations"]) == 1
    assert shown["session"]["last_parameters"]["seed"] == -1  # as asked, for the next form

    again = data(client.post(f"/api/comfyui/generations/{first['id']}/rerun"), 202)
    assert again["reproduced_from_id"] == first["id"] and again["seed"] == first["seed"]
    [rerun] = finished(app, client, [again["id"]])
    assert rerun["status"] == "completed", rerun["error"]
    assert json.loads(fake.raw_prompts[-1])["prompt"] == json.loads(snapshot.text)
    assert client.get(f"/api/comfyui/generations/{rerun['id']}/workflow").text == snapshot.text

    image = first["outputs"][0]["path"]
    assert data(client.delete(f"/api/comfyui/generations/{first['id']}")) == {"id": first["id"]}
    for answer in (
        client.get(f"/api/comfyui/generations/{first['id']}"),
        client.get(f"/api/comfyui/generations/{first['id']}/workflow"),
        client.post(f"/api/comfyui/generations/{first['id']}/rerun"),
        client.delete(f"/api/comfyui/generations/{first['id']}"),
    ):
        assert "No generation with id" in refused(answer, 404, "NOT_FOUND")
    assert "does not exist" in refused(client.get(f"/api/comfyui/image/{image}"), 404, "NOT_FOUND")


def test_a_new_input_image_is_stored_uploaded_and_posted(
    app: AppContext, client: TestClient, fake: FakeComfyUI
) -> None:
    app.start_workers(1, poll_interval=0.05)
    session = new_session(client, "Img2img")
    photo = png_with_text("a photo")
    body = {
        "prompt_text": "the same, at night",
        "workflow_id": img2img_id(client),
        "parameters": {"checkpoint": CKPT, "steps": 3, "denoise": 0.5},
        "input_image": {
            "filename": "my photo.png",
            "data_base64": base64.b64encode(photo).decode(),
        },
    }
    [queued] = data(client.post(f"/api/comfyui/sessions/{session}/generate", json=body), 202)
    name = f"spoonfeeder_{hashlib.sha256(photo).hexdigest()[:16]}.png"
    [image] = queued["input_images"]
    assert (image["name"], image["filename"], image["size"]) == (name, "my_photo.png", len(photo))

    [done] = finished(app, client, [queued["id"]])
    assert done["status"] == "completed", done["error"]
    assert fake.uploads == [(name, photo)]  # reached ComfyUI before the prompt naming it
    assert json.loads(fake.raw_prompts[-1])["prompt"]["10"]["inputs"]["image"] == name
    stored = client.get(f"/api/comfyui/image/{image['path']}")  # our copy, servable
    assert stored.status_code == 200 and stored.content == photo

    # The same image again, by the name it has on the server: nothing new to send.
    reuse = {**body, "input_image": None, "parameters": {**body["parameters"], "image": name}}
    [named] = data(client.post(f"/api/comfyui/sessions/{session}/generate", json=reuse), 202)
    assert named["input_images"][0]["sha256"] == image["sha256"]


def test_a_refused_generate_says_which_value_and_queues_nothing(
    app: AppContext, client: TestClient, tmp_path: Path
) -> None:
    session = new_session(client)
    url = f"/api/comfyui/sessions/{session}/generate"

    def error(body: dict[str, Any], status: int = 422, code: str = "VALIDATION_ERROR") -> str:
        return refused(client.post(url, json=body), status, code)

    assert "parameters.colour" in error({"parameters": {**SMALL, "colour": "red"}})
    assert "Extra inputs are not permitted" in error({"parameters": {**SMALL, "colour": "red"}})
    assert "parameters.steps" in error({"parameters": {**SMALL, "steps": "many"}})
    assert error({"parameters": {**SMALL, "width": 65}}).startswith("Width must be a multiple of 8")
    assert "no sampler called 'nope'" in error({"parameters": {**SMALL, "sampler_name": "nope"}})
    assert "Batch count must be between 1 and 100" in error({"parameters": SMALL, "batch_count": 0})
    assert "workflow_id" in error({"workflow_id": "not-a-uuid"})
    assert "No workflow with id" in error({"workflow_id": str(uuid.uuid4())}, 404, "NOT_FOUND")
    bad_image = {"parameters": SMALL, "input_image": {"data_base64": "***"}}
    assert "input_image.data_base64" in error(bad_image)
    text = {"data_base64": base64.b64encode(b"not an image").decode(), "filename": "notes.png"}
    assert error({"workflow_id": img2img_id(client), "input_image": text}) == (
        "'notes.png' is not an image ComfyUI can load (PNG, JPEG or WebP)"
    )
    png = {"data_base64": base64.b64encode(png_with_text("p")).decode()}
    assert "no Load Image node" in error({"parameters": SMALL, "input_image": png})
    # A path is never read as a file to upload: only a name on the server is taken.
    local = tmp_path / "private.png"
    local.write_bytes(png_with_text("private"))
    named = {"workflow_id": img2img_id(client), "parameters": {"image": str(local)}}
    assert "send a new image as input_image" in error(named)
    both = {"parameters": {"image": "x.png"}, "input_image": png}
    assert error(both) == "Give either input_image or parameters.image, not both"
    missing = refused(
        client.post(f"/api/comfyui/sessions/{uuid.uuid4()}/generate", json={}), 404, "NOT_FOUND"
    )
    assert "No session with id" in missing

    assert app.comfyui.generations.list_all() == []
    assert app.tasks.stats().counts["queued"] == 0


def test_generate_on_an_unreachable_server_is_503(app: AppContext, client: TestClient) -> None:
    down = app.profiles.create_profile("Off", "comfyui", url=closed_port_url())
    session = new_session(client, "Off", profile_id=str(down.id))
    answer = client.post(
        f"/api/comfyui/sessions/{session}/generate", json={"prompt_text": "x", "parameters": SMALL}
    )
    assert down.url in refused(answer, 503, "PROVIDER_UNAVAILABLE")
    assert app.comfyui.generations.list_all() == []


def test_a_session_deleted_with_its_generations_takes_their_files(
    app: AppContext, client: TestClient
) -> None:
    session = new_session(client)
    body = {"parameters": SMALL, "batch_count": 2}
    queued = data(client.post(f"/api/comfyui/sessions/{session}/generate", json=body), 202)
    cancelled = data(client.post(f"/api/comfyui/generations/{queued[0]['id']}/cancel"))
    assert cancelled["status"] == "cancelled"  # no worker had taken it yet
    gone = client.delete(f"/api/comfyui/sessions/{session}", params={"delete_generations": "true"})
    assert data(gone) == {"id": session, "generations_deleted": 2}
    assert app.comfyui.generations.list_all() == []


# ----- workflows ----------------------------------------------------------------------------


def test_workflows_are_imported_read_changed_and_deleted(
    app: AppContext, client: TestClient
) -> None:
    text = (FIXTURES / "workflow_txt2img_api.json").read_text()
    made = client.post(
        "/api/comfyui/workflows",
        json={"name": "Tiny", "workflow": text, "defaults": {"steps": 4}, "make_default": True},
    )
    imported = data(made, 201)
    assert imported["missing_node_types"] == []
    assert {"prompt", "seed", "steps", "checkpoint"} <= set(imported["extracted"])
    tiny = imported["workflow"]
    assert tiny["is_default"] and tiny["parameters"]["steps"] == 4
    listed = client.get("/api/comfyui/workflows")
    assert data(listed)[0]["name"] == "Tiny"  # the default first
    assert listed.json()["pagination"]["total"] == 3  # with the two built-in ones

    custom = json.loads(text) | {"99": {"class_type": "MyUpscaler", "inputs": {}}}
    with_custom = data(
        client.post("/api/comfyui/workflows", json={"name": "C", "workflow": custom}), 201
    )
    assert with_custom["missing_node_types"] == ["MyUpscaler"]
    ui_format = (FIXTURES / "workflow_txt2img_ui.json").read_text()
    error = refused(
        client.post("/api/comfyui/workflows", json={"name": "UI", "workflow": ui_format}),
        422,
        "VALIDATION_ERROR",
    )
    assert "API" in error
    again = client.post("/api/comfyui/workflows", json={"name": "Tiny", "workflow": text})
    assert "already exists" in refused(again, 422, "VALIDATION_ERROR")
    odd = client.post(
        "/api/comfyui/workflows", json={"name": "X", "workflow": text, "defaults": {"colour": 1}}
    )
    assert "defaults.colour" in refused(odd, 422, "VALIDATION_ERROR")

    wid = tiny["id"]
    assert data(client.get(f"/api/comfyui/workflows/{wid}"))["workflow"] == json.loads(text)
    renamed = data(client.put(f"/api/comfyui/workflows/{wid}", json={"name": "Tiny 2"}))
    assert renamed["name"] == "Tiny 2" and renamed["parameters"]["steps"] == 4  # kept

    patched = data(client.patch(f"/api/comfyui/workflows/{wid}/parameters", json={"cfg": 5.5}))
    assert (patched["parameters"]["cfg"], patched["parameters"]["steps"]) == (5.5, 4)
    reset = data(client.patch(f"/api/comfyui/workflows/{wid}/parameters", json={"steps": None}))
    assert reset["parameters"]["steps"] == 3  # the workflow's own value again
    assert reset["parameters"]["cfg"] == 5.5
    bad = client.patch(f"/api/comfyui/workflows/{wid}/parameters", json={"steps": 0})
    assert refused(bad, 422, "VALIDATION_ERROR").startswith("Steps must be between 1")
    unknown = client.patch(f"/api/comfyui/workflows/{wid}/parameters", json={"colour": "red"})
    assert "colour" in refused(unknown, 422, "VALIDATION_ERROR")

    builtin = img2img_id(client)
    assert data(client.put(f"/api/comfyui/workflows/{builtin}", json={"make_default": True}))[
        "is_default"
    ]
    assert not data(client.get(f"/api/comfyui/workflows/{wid}"))["is_default"]
    assert data(client.delete(f"/api/comfyui/workflows/{wid}")) == {"id": wid, "name": "Tiny 2"}
    for answer in (
        client.get(f"/api/comfyui/workflows/{wid}"),
        client.put(f"/api/comfyui/workflows/{wid}", json={"name": "x"}),
        client.patch(f"/api/comfyui/workflows/{wid}/parameters", json={"steps": 5}),
        client.delete(f"/api/comfyui/workflows/{wid}"),
    ):
        assert "No workflow with id" in refused(answer, 404, "NOT_FOUND")


def test_a_workflow_posted_as_text_is_run_in_its_own_key_order(
    app: AppContext, client: TestClient, fake: FakeComfyUI
) -> None:
    """What was posted to /workflows is what ComfyUI receives, order and all."""
    nodes = json.loads((FIXTURES / "workflow_txt2img_api.json").read_text())
    text = json.dumps(dict(reversed(nodes.items())))  # not the order a sort would give
    made = client.post("/api/comfyui/workflows", json={"name": "R", "workflow": text})
    session = new_session(client)
    body = {"workflow_id": data(made, 201)["workflow"]["id"], "parameters": {"seed": 5}}
    [queued] = data(client.post(f"/api/comfyui/sessions/{session}/generate", json=body), 202)
    snapshot = client.get(f"/api/comfyui/generations/{queued['id']}/workflow").text
    assert list(json.loads(snapshot)) == list(json.loads(text))  # the order imported
    nodes["3"]["inputs"]["seed"] = 5
    assert json.loads(snapshot) == nodes  # the workflow as imported, with the seed asked for
    app.start_workers(1, poll_interval=0.05)
    [done] = finished(app, client, [queued["id"]])
    assert done["status"] == "completed", done["error"]
    assert fake.raw_prompts[-1].startswith(b'{"prompt": ' + snapshot.encode() + b", ")


def test_the_parameter_bodies_cover_every_parameter() -> None:
    """The REST bodies and the service's parameters cannot drift apart."""
    assert set(GenerationParameters.model_fields) == set(PARAM_KEYS) - {"prompt", "negative_prompt"}
    assert set(DefaultParameters.model_fields) == set(PARAM_KEYS)


# ----- the media folder, over raw HTTP ------------------------------------------------------


def test_only_files_inside_the_media_folder_are_served(make_app: MakeApp, tmp_path: Path) -> None:
    ctx = make_app()
    media = ctx.settings.media_path
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-" + uuid.uuid4().hex)
    served = media / "comfyui" / "gen" / "000_out.png"
    served.parent.mkdir(parents=True)
    served.write_bytes(png_with_text("ok"))
    (media / "link.png").symlink_to(secret)
    (media / "outside").symlink_to(tmp_path, target_is_directory=True)
    depth = len(media.relative_to(tmp_path).parts)
    up = "../" * depth
    targets = [
        f"{up}secret.txt",
        f"comfyui/gen/../../{up}secret.txt",
        (f"{up}secret.txt").replace("../", "%2e%2e%2f"),
        (f"{up}secret.txt").replace("../", "%2E%2E%2F"),
        (f"{up}secret.txt").replace("../", "..%2f"),
        (f"{up}secret.txt").replace("../", "%252e%252e%252f"),
        (f"{up}secret.txt").replace("../", "..\\"),
        (f"{up}secret.txt").replace("../", "..%5c"),
        f"/{secret}",
        str(secret).replace("/", "%2f"),
        "link.png",
        "outside/secret.txt",
        "comfyui/gen/000_out.png%00.txt",
        "",
    ]
    with serve(create_api(ctx)) as base:
        ok_status, ok_body = raw_get(base, "/api/comfyui/image/comfyui/gen/000_out.png")
        assert (ok_status, ok_body) == (200, served.read_bytes())
        for target in targets:
            status, body = raw_get(base, f"/api/comfyui/image/{target}")
            assert status == 404, (target, status, body)
            refusal = json.loads(body)
            assert refusal["code"] == "NOT_FOUND" and "media file" in refusal["error"], target
            assert secret.read_bytes() not in body, target
