"""The ComfyUI client against the fake server, and the fake against the transcripts.

No database here: these tests pin the wire protocol (what ComfyUI 0.3.64 sends, as
captured in tests/fixtures/comfyui/) and how each failure reads for a person.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from spoonfeeder.comfyui.client import (
    ComfyUIClient,
    PreviewImage,
    RetryWindow,
    ServerMessage,
    decode_binary_frame,
    describe_rejection,
    websocket_url,
)
from spoonfeeder.errors import ComfyUIPromptRejected, ProviderServerError, ProviderUnavailable
from tests.fakes.comfyui_server import FIXTURES, FakeComfyUI, SwappableApp, load_fixture
from tests.fakes.server import closed_port_url, serve

JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def fake(server: tuple[SwappableApp, str]) -> FakeComfyUI:
    fresh = FakeComfyUI()
    server[0].target = fresh.app
    return fresh


@pytest.fixture
def client(fake: FakeComfyUI, server: tuple[SwappableApp, str]) -> Iterator[ComfyUIClient]:
    with ComfyUIClient(server[1]) as comfy:
        yield comfy


@pytest.fixture
def fake_and_url(fake: FakeComfyUI, server: tuple[SwappableApp, str]) -> tuple[FakeComfyUI, str]:
    return fake, server[1]


@pytest.fixture
def workflow() -> dict[str, Any]:
    return load_fixture("workflow_txt2img_api.json")


def read_until_done(socket: Any, prompt_id: str) -> list[ServerMessage | PreviewImage]:
    messages: list[ServerMessage | PreviewImage] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = socket.receive(timeout=0.5)
        if message is None:
            continue
        messages.append(message)
        if (
            isinstance(message, ServerMessage)
            and message.type == "executing"
            and message.data.get("node") is None
            and message.prompt_id == prompt_id
        ):
            return messages
    raise AssertionError("the run did not end")


# ----- binary frames (pure) ------------------------------------------------------------


def test_preview_frames_decode_to_the_image_bytes() -> None:
    raw1 = (FIXTURES / "ws_preview_frame_event1.bin").read_bytes()
    raw4 = (FIXTURES / "ws_preview_frame_event4.bin").read_bytes()
    first = decode_binary_frame(raw1)
    assert first is not None
    assert first.mime == "image/jpeg" and first.image == raw1[8:]
    assert first.image.startswith(JPEG_MAGIC)
    assert first.prompt_id is None
    fourth = decode_binary_frame(raw4)
    assert fourth is not None
    assert fourth.node_id == "3" and fourth.prompt_id == "c7fe1fac-4c4b-40c8-b609-ab163fcce33c"
    assert fourth.image.startswith(JPEG_MAGIC) and len(fourth.image) == len(raw4) - 8 - 166
    assert decode_binary_frame(b"\x00\x00\x00\x03\x00\x00\x00\x00text") is None  # no image
    assert decode_binary_frame(b"\x00") is None


def test_websocket_url_keeps_scheme_and_path() -> None:
    assert websocket_url("http://h:8188", "c") == "ws://h:8188/ws?clientId=c"
    assert websocket_url("https://h/comfy/", "c") == "wss://h/comfy/ws?clientId=c"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("value_not_in_list_sampler", "node 3 (KSampler) input 'sampler_name': Value not in"),
        ("value_not_in_list_ckpt", "input 'ckpt_name': Value not in list: 'missing-model"),
        ("missing_required_input", "node 3 (KSampler) input 'model': Required input is"),
        ("value_smaller_than_min", "input 'steps': Value 0 smaller than min of 1"),
        ("return_type_mismatch", "input 'latent_image'"),
        ("unknown_class_type", "node CLIPTextEncodeDoesNotExist does not exist"),
        ("no_outputs", "Prompt has no outputs"),
    ],
)
def test_rejections_name_the_node_and_input(case: str, expected: str) -> None:
    exchange = load_fixture("prompt_error_invalid.json")[case]
    prompt = exchange["request_body"].get("prompt") or {}
    error = describe_rejection(exchange["body"], prompt)
    assert error.message.startswith("ComfyUI rejected the workflow: ")
    assert expected in error.message


# ----- the fake speaks as the real server did ------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "unknown_class_type",
        "missing_required_input",
        "value_not_in_list_sampler",
        "value_not_in_list_ckpt",
        "value_smaller_than_min",
        "return_type_mismatch",
        "no_outputs",
        "node_without_class_type",
        "no_prompt_key",
        "invalid_input_type",
    ],
)
def test_fake_rejects_prompts_as_the_real_server_did(
    fake: FakeComfyUI, client: ComfyUIClient, case: str
) -> None:
    exchange = load_fixture("prompt_error_invalid.json")[case]
    response = client._http.post("/prompt", json=exchange["request_body"])
    body = response.json()
    assert response.status_code == exchange["status"] == 400
    assert body["error"]["type"] == exchange["body"]["error"]["type"]
    assert body["error"]["message"] == exchange["body"]["error"]["message"]
    real = exchange["body"]["node_errors"]
    assert set(body["node_errors"]) == set(real)
    for node_id, entry in real.items():
        ours = body["node_errors"][node_id]
        assert ours["class_type"] == entry["class_type"]
        assert [e["type"] for e in ours["errors"]] == [e["type"] for e in entry["errors"]]
        assert [e["extra_info"].get("input_name") for e in ours["errors"]] == [
            e["extra_info"].get("input_name") for e in entry["errors"]
        ]
    assert fake.prompts == []  # nothing queued


def test_an_invalid_output_beside_a_valid_one_is_queued_with_its_node_errors(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    exchange = load_fixture("prompt_post_partial_node_errors.json")
    queued = client.queue_prompt(exchange["request_body"]["prompt"], "c")
    real = exchange["body"]["node_errors"]
    assert set(queued.node_errors) == set(real) == {"10"}
    assert queued.node_errors["10"]["class_type"] == real["10"]["class_type"] == "SaveImage"
    assert queued.node_errors["10"]["dependent_outputs"] == real["10"]["dependent_outputs"]
    assert len(fake.prompts) == 1  # queued all the same, as the real server does


def test_a_body_that_is_not_json_gets_the_real_500(client: ComfyUIClient) -> None:
    response = client._http.post("/prompt", content=b"not json")
    assert response.status_code == 500
    assert response.text == load_fixture("prompt_error_invalid.json")["malformed_json_body"]["body"]


# ----- the client ----------------------------------------------------------------------


def test_a_run_streams_progress_previews_and_ends_in_history(
    fake: FakeComfyUI, client: ComfyUIClient, workflow: dict[str, Any]
) -> None:
    with client.connect("client-1") as socket:
        hello = socket.receive(timeout=5)
        assert isinstance(hello, ServerMessage) and hello.data["sid"] == "client-1"
        queued = client.queue_prompt(workflow, "client-1")
        messages = read_until_done(socket, queued.prompt_id)
    kinds = [m.type for m in messages if isinstance(m, ServerMessage)]
    assert kinds[0] == "feature_flags"  # the server answers our flags
    assert kinds.index("execution_start") < kinds.index("execution_success")
    progress = [m.data for m in messages if isinstance(m, ServerMessage) and m.type == "progress"]
    assert [(p["value"], p["max"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    previews = [m for m in messages if isinstance(m, PreviewImage)]
    assert len(previews) == 3
    assert all(p.prompt_id == queued.prompt_id and p.node_id == "3" for p in previews)
    assert all(p.image.startswith(JPEG_MAGIC) for p in previews)

    entry = client.history(queued.prompt_id)
    assert entry is not None and entry["status"]["status_str"] == "success"
    images = entry["outputs"]["9"]["images"]
    data = client.view(images[0]["filename"], images[0]["subfolder"], images[0]["type"])
    assert data == fake.files[("output", "", images[0]["filename"])]
    assert json.loads(fake.raw_prompts[0])["prompt"] == workflow


def test_without_feature_flags_previews_come_as_event_1(
    client: ComfyUIClient, workflow: dict[str, Any]
) -> None:
    with client.connect("plain", preview_metadata=False) as socket:
        queued = client.queue_prompt(workflow, "plain")
        messages = read_until_done(socket, queued.prompt_id)
    previews = [m for m in messages if isinstance(m, PreviewImage)]
    assert previews and all(p.prompt_id is None and p.mime == "image/jpeg" for p in previews)
    assert not any(isinstance(m, ServerMessage) and m.type == "feature_flags" for m in messages)


def test_a_rejected_prompt_raises_naming_node_and_input(
    fake: FakeComfyUI, client: ComfyUIClient, workflow: dict[str, Any]
) -> None:
    workflow["3"]["inputs"]["sampler_name"] = "not_a_sampler"
    with pytest.raises(ComfyUIPromptRejected) as caught:
        client.queue_prompt(workflow, "c")
    assert caught.value.node_id == "3" and caught.value.input_name == "sampler_name"
    assert "node 3 (KSampler) input 'sampler_name'" in caught.value.message
    assert "'not_a_sampler' not in" in caught.value.message
    assert fake.prompts == []


def test_endpoints_answer_as_the_transcripts_show(fake: FakeComfyUI, client: ComfyUIClient) -> None:
    assert client.system_stats()["system"]["comfyui_version"] == "0.3.64"
    assert "sampler_name" in client.object_info("KSampler")["KSampler"]["input"]["required"]
    assert client.object_info("NoSuchNode") == {}
    assert client.queue() == {"queue_running": [], "queue_pending": []}
    assert client.history("00000000-0000-0000-0000-000000000000") is None
    client.interrupt()
    assert fake.interrupts == [{}]
    stored = client.upload_image(b"\x89PNG fake", "input.png")
    assert stored == {"name": "input.png", "subfolder": "", "type": "input"}
    assert fake.uploads == [("input.png", b"\x89PNG fake")]


def test_a_missing_output_file_is_a_clear_error(client: ComfyUIClient) -> None:
    with pytest.raises(Exception) as caught:
        client.view("nope.png")
    assert "has nothing at /view (HTTP 404)" in str(caught.value)


def test_an_unreachable_server_says_so() -> None:
    url = closed_port_url()
    with ComfyUIClient(url) as client:
        for call in (client.system_stats, lambda: client.connect("x"), client.queue):
            with pytest.raises(ProviderUnavailable) as caught:
                call()
            assert str(caught.value) == f"ComfyUI is not reachable at {url} — is it running?"


def test_a_server_that_is_not_comfyui_is_named(fake: FakeComfyUI) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def html(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("<html>hello</html>")

    app = Starlette(routes=[Route("/system_stats", html)])
    with (
        serve(app) as url,
        ComfyUIClient(url) as client,
        pytest.raises(ProviderServerError) as caught,
    ):
        client.system_stats()
    assert "is this URL a ComfyUI server?" in str(caught.value)


def test_a_proxy_page_instead_of_json_is_a_sentence_on_every_call(
    workflow: dict[str, Any],
) -> None:
    """A reverse proxy's login page answers 200 with HTML where ComfyUI answers JSON."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def login_page(_request: Any) -> HTMLResponse:
        return HTMLResponse("<html><form>Sign in to the proxy</form></html>")

    app = Starlette(routes=[Route("/{path:path}", login_page, methods=["GET", "POST"])])
    with serve(app) as url, ComfyUIClient(url) as client:
        calls = {
            "/prompt": lambda: client.queue_prompt(workflow, "client-1"),
            "/upload/image": lambda: client.upload_image(b"\x89PNG", "in.png"),
            "/system_stats": client.system_stats,
        }
        for path, call in calls.items():
            with pytest.raises(ProviderServerError) as caught:
                call()
            assert path in str(caught.value) and "not JSON" in str(caught.value)
            assert "<html>" not in str(caught.value)


def test_a_profile_timeout_option_reaches_the_client() -> None:
    from spoonfeeder.profiles import Credentials

    slow = ComfyUIClient.for_credentials(
        Credentials("comfyui", "http://gpu:8188", "k", {"timeout": 300.0})
    )
    plain = ComfyUIClient.for_credentials(Credentials("comfyui", "http://gpu:8188", None))
    try:
        assert slow._http.timeout.read == 300.0 and slow._http.timeout.connect == 5.0
        assert plain._http.timeout.read == 30.0
    finally:
        slow.close()
        plain.close()


# ----- a proxy answering 5xx while ComfyUI restarts ----------------------------------


class FakeClock:
    """Time that passes only when someone sleeps: retries without waiting for real."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _retrying_client(url: str, clock: FakeClock, seconds: float = 120.0) -> ComfyUIClient:
    return ComfyUIClient(url, retry=RetryWindow(seconds, sleep=clock.sleep, clock=clock))


def test_5xx_from_a_proxy_are_retried_with_backoff(fake_and_url: tuple[FakeComfyUI, str]) -> None:
    fake, url = fake_and_url
    fake.proxy_errors = [502, 503, 502]
    clock = FakeClock()
    with _retrying_client(url, clock) as client:
        queued = client.queue_prompt(load_fixture("workflow_txt2img_api.json"), "c1")
    assert queued.prompt_id == fake.prompts[0]["prompt_id"]
    assert len(fake.prompts) == 1  # posted once: the refused attempts never reached it
    assert clock.slept == [0.5, 1.0, 2.0]


def test_a_lost_answer_is_not_posted_twice(fake_and_url: tuple[FakeComfyUI, str]) -> None:
    fake, url = fake_and_url
    fake.lose_answers = 1  # queued, but the proxy answered 504
    clock = FakeClock()
    with _retrying_client(url, clock) as client:
        queued = client.queue_prompt(load_fixture("workflow_txt2img_api.json"), "c2")
    assert len(fake.prompts) == 1
    assert queued.prompt_id == fake.prompts[0]["prompt_id"]


def test_retrying_stops_after_the_window_with_a_clear_sentence(
    fake_and_url: tuple[FakeComfyUI, str],
) -> None:
    fake, url = fake_and_url
    fake.proxy_errors = [502] * 1000
    clock = FakeClock()
    with (
        _retrying_client(url, clock, seconds=120) as client,
        pytest.raises(ProviderServerError) as caught,
    ):
        client.system_stats()
    assert sum(clock.slept) <= 120
    message = caught.value.message
    assert message.startswith(f"ComfyUI at {url} still failed after ")
    assert "(HTTP 502 on /system_stats)" in message and "restarting" in message
    assert "<html>" not in message


def test_without_a_retry_window_a_502_fails_at_once(fake_and_url: tuple[FakeComfyUI, str]) -> None:
    fake, url = fake_and_url
    fake.proxy_errors = [502]
    with ComfyUIClient(url) as client, pytest.raises(ProviderServerError) as caught:
        client.system_stats()
    assert caught.value.message == (
        f"ComfyUI at {url} failed on /system_stats (HTTP 502): a proxy's error page"
    )


def test_the_fake_sends_event_4_previews_before_their_progress_as_the_real_server() -> None:
    from tests.fakes.comfyui_server import _previews_first

    real = [json.loads(line) for line in (FIXTURES / "ws_success_feature_flags.jsonl").open()]
    plain = [json.loads(line) for line in (FIXTURES / "ws_success.jsonl").open()]

    def order(frames: list[dict[str, Any]]) -> list[str]:
        kinds = ("progress", "binary")
        return [k for f in frames for k in kinds if f.get("type") == k or f.get(k) is True]

    assert order(_previews_first(plain)) == order(real)
