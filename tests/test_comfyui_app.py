"""The ComfyUI tab through the launched app: generate with live progress, results, exact
re-run, sweep grid, workflow import, and clear errors — driven with gradio_client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from spoonfeeder.context import AppContext
from tests.fakes.comfyui_server import FIXTURES, FakeComfyUI
from tests.fakes.server import serve
from tests.launch import launched, sqlite_app

CKPT = "tiny-random-sd15.safetensors"


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Client, AppContext, FakeComfyUI]]:
    fake = FakeComfyUI()
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    data = tmp_path_factory.mktemp("comfy-app")
    with serve(fake.app) as url, sqlite_app(data, comfyui_url=url) as ctx:
        ctx.comfyui.runner.timings.poll_interval = 0.05
        ctx.start_workers(2)
        with launched(ctx) as app_url:
            yield Client(app_url, verbose=False), ctx, fake


def form(**overrides) -> list:
    """The generate form in the endpoint's order (after session, server, workflow)."""
    values = {
        "prompt": "a lighthouse at dusk",
        "negative": "blurry",
        "width": 64,
        "height": 64,
        "steps": 3,
        "cfg": 7.0,
        "sampler": "euler",
        "scheduler": "normal",
        "seed": 1234,
        "checkpoint": CKPT,
        "batch_size": 1,
        "loras": {"headers": ["LoRA", "Model strength", "CLIP strength"], "data": [["", "", ""]]},
        "batch_count": 2,
    }
    values.update(overrides)
    return list(values.values())


def test_generate_streams_progress_and_shows_the_results(app) -> None:
    client, ctx, fake = app
    fake.delay = 0.02  # slow enough that steps are seen before the run ends
    try:
        job = client.submit("", "", "", *form(), api_name="/comfyui_generate")
        outputs = list(job)
    finally:
        fake.delay = 0.001
    assert job.status().success, job.result()
    progress_texts = [out[1] for out in outputs if isinstance(out[1], str)]
    assert any("Step" in text or "step" in text for text in progress_texts)  # live progress
    final = next(out for out in reversed(outputs) if isinstance(out[1], str))
    assert final[1].startswith("Done: 2 completed")
    gallery = final[3]
    assert len(gallery) == 4  # two generations × two images each (the fake's SaveImage)
    session = ctx.comfyui.sessions.list_all()[0]  # made from the prompt, since none was chosen
    assert session.name == "a lighthouse at dusk"
    assert session.completed_count == 2
    gens = ctx.comfyui.generations.list_all(session.id)
    assert [g.seed for g in sorted(gens, key=lambda g: g.batch_index)] == [1234, 1235]
    assert all(g.status == "completed" for g in gens)
    # Each image on disk is byte for byte what ComfyUI served.
    for g in gens:
        for out in g.outputs:
            saved = ctx.comfyui.media.file(out.path).read_bytes()
            assert saved == fake.files[("output", "", out.filename)]


def test_rerun_exactly_posts_the_identical_workflow(app) -> None:
    client, ctx, fake = app
    source = ctx.comfyui.generations.list_all()[0]
    posted_before = len(fake.prompts)
    outputs = list(client.submit(str(source.id), "", api_name="/rerun_exactly"))
    summary = next(out[0] for out in reversed(outputs) if isinstance(out[0], str))
    assert summary.startswith("Done: 1 completed")
    assert len(fake.prompts) == posted_before + 1
    assert fake.prompts[-1]["prompt"] == ctx.comfyui.generations.snapshot(source.id)
    rerun = ctx.comfyui.generations.list_all()[0]
    assert rerun.reproduced_from_id == source.id
    path = client.predict(str(source.id), api_name="/download_snapshot")
    assert json.loads(Path(path).read_text()) == ctx.comfyui.generations.snapshot(source.id)


def test_reuse_parameters_fills_the_form_with_the_actual_seed(app) -> None:
    client, ctx, _ = app
    g = ctx.comfyui.generations.list_all()[-1]
    values = client.predict(str(g.id), api_name="/reuse_parameters")
    assert values[1] == g.prompt  # after the workflow id
    assert values[9] == g.seed  # the seed it ran with, not -1


def test_sweep_shows_a_labelled_grid(app) -> None:
    client, _, _ = app
    outputs = list(
        client.submit(
            "", "", "", "cfg", "4, 6", "steps", "2, 3", *form()[:-1], api_name="/comfyui_sweep"
        )
    )
    update = outputs[-1][-2]  # the grid, laid out one row per value of the first axis
    assert update["columns"] == 2
    grid = update["value"]
    assert sorted(item["caption"] for item in grid) == sorted(
        ["cfg=4.0 · steps=2", "cfg=4.0 · steps=3", "cfg=6.0 · steps=2", "cfg=6.0 · steps=3"]
    )
    picture = outputs[-1][-1]  # …and the same grid as one labelled image
    assert Path(picture).read_bytes().startswith(b"\x89PNG")


def test_bad_parameters_and_workflows_give_clear_errors(app) -> None:
    client, ctx, _ = app
    before = len(ctx.comfyui.generations.list_all())
    sessions_before = len(ctx.comfyui.sessions.list_all())
    with pytest.raises(AppError, match="multiple of 8"):
        client.submit("", "", "", *form(width=100), api_name="/comfyui_generate").result()
    with pytest.raises(AppError, match="no checkpoint called"):
        client.submit(
            "", "", "", *form(checkpoint="nope.safetensors"), api_name="/comfyui_generate"
        ).result()
    assert len(ctx.comfyui.generations.list_all()) == before
    assert len(ctx.comfyui.sessions.list_all()) == sessions_before  # a refusal makes no session
    ui_format = (FIXTURES / "workflow_txt2img_ui.json").read_text()
    with pytest.raises(AppError, match="API"):
        client.predict("Mine", None, ui_format, api_name="/import_workflow")
    api_format = (FIXTURES / "workflow_txt2img_api.json").read_text()
    _dropdown, table = client.predict("Mine", None, api_format, api_name="/import_workflow")
    assert any(row[0] == "Mine" for row in table["data"])


def test_interrupt_stops_the_running_generation(app) -> None:
    client, ctx, fake = app
    fake.hold = True  # the run pauses after its first step until released or interrupted
    try:
        job = client.submit("", "", "", *form(batch_count=1), api_name="/comfyui_generate")
        deadline = time.monotonic() + 30  # generous: CI machines are shared
        while not any("Step" in str(out[1]) for out in job.outputs()):
            assert time.monotonic() < deadline, "no progress arrived"
            time.sleep(0.05)
        assert client.predict(api_name="/comfyui_interrupt") == "Interrupting…"
        outputs = list(job)
    finally:
        fake.hold = False
        fake.release()
    summary = next(out[1] for out in reversed(outputs) if isinstance(out[1], str))
    assert summary.startswith("Done: 1 cancelled")
    assert ctx.comfyui.generations.list_all()[0].status == "cancelled"
    with pytest.raises(AppError, match="Nothing is running"):
        client.predict(api_name="/comfyui_interrupt")


def test_video_and_audio_outputs_reach_their_players(app) -> None:
    client, _, fake = app
    blobs = {
        ("video", "clip_00001.mp4"): b"\x00\x00\x00\x18ftypmp42 video bytes",
        ("audio", "voice_00001.flac"): b"fLaC\x00\x00\x00\x22 audio bytes",
    }
    fake.outputs = {
        "21": {"video": [{"filename": "clip_00001.mp4", "subfolder": "video", "type": "output"}]},
        "22": {"audio": [{"filename": "voice_00001.flac", "subfolder": "audio", "type": "output"}]},
    }
    for (subfolder, name), data in blobs.items():
        fake.files[("output", subfolder, name)] = data
    try:
        job = client.submit("", "", "", *form(batch_count=1), api_name="/comfyui_generate")
        outputs = list(job)
    finally:
        fake.outputs = None
    final = next(out for out in reversed(outputs) if isinstance(out[1], str))
    assert final[1].startswith("Done: 1 completed")
    video, audio = final[4], final[5]
    assert (
        Path(video if isinstance(video, str) else video["video"]).read_bytes()
        == blobs[("video", "clip_00001.mp4")]
    )
    assert Path(audio).read_bytes() == blobs[("audio", "voice_00001.flac")]


# ----- a page reattaches to its session's runs; workflow fields; input images -------------


def _session_with(ctx: AppContext, name: str) -> str:
    return str(ctx.comfyui.sessions.create(name).id)


def test_opening_a_session_follows_its_running_generation_to_the_end(app) -> None:
    """A reloaded page (a new client) opens the session and sees the run it left."""
    client, ctx, fake = app
    session_id = _session_with(ctx, "Reattach")
    fake.hold = True  # the run pauses after its first step
    try:
        pending = ctx.comfyui.generator.generate(
            session_id,
            {"prompt": "a quiet lake", "checkpoint": CKPT, "width": 64, "height": 64, "steps": 3},
        )[0]
        deadline = time.monotonic() + 30
        while ctx.comfyui.generations.get(pending.id).status != "running":
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        job = Client(client.src, verbose=False).submit(
            session_id, api_name="/follow_comfyui_session"
        )
        while not any("Following" in str(out) for out in job.outputs()):
            assert time.monotonic() < deadline, "the page did not reattach"
            time.sleep(0.05)
    finally:
        fake.hold = False
        fake.release()
    outputs = list(job)
    texts = [str(part) for out in outputs for part in out]
    assert any("Done: 1 completed" in text for text in texts)
    final_table = next(
        part
        for out in reversed(outputs)
        for part in out
        if isinstance(part, dict) and part.get("headers") and "Status" in part["headers"]
    )
    assert "✅ completed" in final_table["data"][0][0]  # the table caught up with the run


def test_the_gallery_shows_completed_work_even_behind_many_cancelled_cells(app) -> None:
    client, ctx, fake = app
    session_id = _session_with(ctx, "Crowded")
    svc = ctx.comfyui
    base = {"prompt": "p", "checkpoint": CKPT, "width": 64, "height": 64, "steps": 3}
    done = svc.generator.generate(session_id, {**base, "seed": 1})[0]
    deadline = time.monotonic() + 30
    while not svc.generations.get(done.id).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fake.hold = True  # the cells that start pause at their first step, and are cancelled
    try:
        sweep = svc.generator.sweep(session_id, base, [("cfg", list(range(1, 31)))])
        for cell in sweep.generations:
            svc.generations.cancel(cell.id)
        while not all(svc.generations.get(cell.id).done for cell in sweep.generations):
            assert time.monotonic() < deadline, "the cells did not end"
            time.sleep(0.05)
    finally:
        fake.hold = False
        fake.release()
    assert all(svc.generations.get(c.id).status == "cancelled" for c in sweep.generations)
    opened = client.predict(session_id, api_name="/open_comfyui_session")
    gallery = next(
        part
        for part in opened
        if isinstance(part, list) and part and isinstance(part[0], dict) and "image" in part[0]
    )
    assert len(gallery) == 2  # the completed run's two images, not hidden by 30 cancelled cells


def test_an_img2img_generate_takes_an_input_image_and_denoise(app, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from tests.fakes.comfyui_server import png_with_text

    client, ctx, fake = app
    img2img = next(w for w in ctx.comfyui.workflows.list_all() if "img2img" in w.name)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_with_text("an input photo"))
    uploads_before = len(fake.uploads)
    job = client.submit(
        "",
        "",
        str(img2img.id),
        *form(batch_count=1),
        0.35,
        handle_file(str(photo)),
        api_name="/comfyui_generate",
    )
    outputs = list(job)
    assert job.status().success, job.result()
    assert any("Done: 1 completed" in str(out[1]) for out in outputs)
    made = ctx.comfyui.generations.list_all()[0]
    snapshot = ctx.comfyui.generations.snapshot(made.id)
    assert snapshot["3"]["inputs"]["denoise"] == 0.35
    name = snapshot["10"]["inputs"]["image"]
    assert fake.uploads[uploads_before:] == [(name, photo.read_bytes())]


def test_switching_workflow_shows_its_own_fields_and_keeps_the_prompt(app) -> None:
    client, ctx, _ = app
    img2img = next(w for w in ctx.comfyui.workflows.list_all() if "img2img" in w.name)
    update = client.predict(
        "", str(img2img.id), "my own prompt", "", api_name="/comfyui_workflow_form"
    )
    # workflow, the 12 form fields, batch count, denoise, input image
    assert update[0] == str(img2img.id) and update[1] == "my own prompt"
    width, denoise, image = update[3], update[14], update[15]
    assert (denoise["visible"], denoise["value"]) == (True, 0.6)
    assert image["visible"] is True
    assert width["visible"] is False  # img2img takes its size from the image


def test_outputs_are_served_from_the_media_folder_and_gone_once_deleted(app) -> None:
    import httpx

    client, ctx, _ = app
    session_id = _session_with(ctx, "Served")
    made = ctx.comfyui.generator.generate(
        session_id, {"prompt": "p", "checkpoint": CKPT, "width": 64, "height": 64, "steps": 3}
    )[0]
    deadline = time.monotonic() + 30
    while not ctx.comfyui.generations.get(made.id).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    raw = Client(client.src, verbose=False, download_files=False)
    opened = raw.predict(session_id, api_name="/open_comfyui_session")
    gallery = next(p for p in opened if isinstance(p, list) and p and "image" in p[0])
    served = gallery[0]["image"]
    media = str(ctx.settings.media_path.resolve())
    assert served["path"].startswith(media)  # the file itself, no copy in Gradio's cache
    url = client.src.rstrip("/") + served["url"][served["url"].index("/gradio_api/file=") :]
    first = ctx.comfyui.generations.get(made.id).outputs[0]
    assert httpx.get(url).content == ctx.comfyui.media.file(first.path).read_bytes()
    ctx.comfyui.generations.delete(made.id)
    assert httpx.get(url).status_code in (403, 404)  # gone from every route


def _raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written: no client normalizes its dots or escapes."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


def test_the_file_route_serves_nothing_outside_the_media_folder(app) -> None:
    client, ctx, _ = app
    media = ctx.settings.media_path.resolve()
    key = ctx.settings.data_dir.resolve() / "secret.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        key.write_text("a" * 64)
    secret = key.read_bytes()
    attempts = [
        f"/gradio_api/file={media}/../secret.key",
        f"/gradio_api/file={media}/%2e%2e/secret.key",
        f"/gradio_api/file={media}/%252e%252e/secret.key",
        f"/gradio_api/file={media}/..%2fsecret.key",
        f"/gradio_api/file={media}/comfyui/../../secret.key",
        f"/gradio_api/file={key}",
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={media}/../app.db",
    ]
    for target in attempts:
        status, body = _raw_get(client.src, target)
        assert status in (400, 403, 404), (target, status)
        assert secret not in body and b"root:" not in body, target


def test_a_generation_reads_as_json_through_gradio_client_and_its_files_download(app) -> None:
    client, ctx, fake = app
    list(client.submit("", "", "", *form(batch_count=1), api_name="/comfyui_generate"))
    g = ctx.comfyui.generations.list_all()[0]
    # gradio_client fetches every {"path": …} it sees as a file: a media-relative path
    # was refused by the file route (403) and the whole call failed.
    data = client.predict(str(g.id), api_name="/comfyui_generation")
    assert data["id"] == str(g.id) and data["status"] == "completed"
    assert [o["media_path"] for o in data["outputs"]] == [o.path for o in g.outputs]
    base = client.src.rstrip("/")
    for output in data["outputs"]:
        served = httpx.get(base + output["url"])
        assert served.status_code == 200
        assert served.content == fake.files[("output", "", output["filename"])]
    with pytest.raises(AppError, match="No generation with id 'nope'"):
        client.predict("nope", api_name="/comfyui_generation")
