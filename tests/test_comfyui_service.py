"""ComfyUI end to end: real databases (SQLite and PostgreSQL), a fake ComfyUI
replaying the captured transcripts over real HTTP and websockets, files on disk.

Runs are driven by calling `runner.run` directly (what the comfyui.generate task
does), except in the queue test, which lets a real worker pool do it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spoonfeeder.comfyui.area import ComfyUI
from spoonfeeder.comfyui.views import GenerationProgress, GenerationView
from spoonfeeder.comfyui.workflow import UI_FORMAT_HELP
from spoonfeeder.context import AppContext
from spoonfeeder.errors import (
    NotFoundError,
    ProviderAuthError,
    ProviderUnavailable,
    RunAbandoned,
    ValidationError,
)
from tests.conftest import MakeApp, make_settings
from tests.fakes.comfyui_server import (
    FIXTURES,
    FakeComfyUI,
    SwappableApp,
    load_fixture,
    png_with_text,
)
from tests.fakes.server import closed_port_url, serve

CKPT = "tiny-random-sd15.safetensors"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
LORAS = ["detail.safetensors", "style.safetensors"]
BASE = {"prompt": "a red fox", "checkpoint": CKPT, "width": 64, "height": 64, "steps": 3}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def fake(server: tuple[SwappableApp, str]) -> FakeComfyUI:
    fresh = FakeComfyUI()
    fresh.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    fresh.set_choices("LoraLoader", "lora_name", LORAS)
    server[0].target = fresh.app
    return fresh


@pytest.fixture
def comfy_url(fake: FakeComfyUI, server: tuple[SwappableApp, str]) -> str:
    return server[1]


def app_on(db_url: str, data: Path, comfy_url: str) -> AppContext:
    ctx = AppContext.create(make_settings(db_url, data, comfyui_url=comfy_url))
    ctx.comfyui.runner.timings.receive_timeout = 0.05
    ctx.comfyui.runner.timings.poll_interval = 0.05
    return ctx


@pytest.fixture
def app(db_url: str, tmp_path: Path, comfy_url: str) -> Iterator[AppContext]:
    ctx = app_on(db_url, tmp_path / "data", comfy_url)
    yield ctx
    ctx.close()


@pytest.fixture
def svc(app: AppContext) -> ComfyUI:
    return app.comfyui


def one(svc: ComfyUI, session_id: Any, **values: Any) -> GenerationView:
    return svc.generator.generate(session_id, {**BASE, **values})[0]


def stored_bytes(svc: ComfyUI, view: GenerationView) -> list[bytes]:
    return [svc.media.file(output.path).read_bytes() for output in view.outputs]


# ----- a generation, start to end ------------------------------------------------------


def test_success_saves_every_output_byte_for_byte(
    svc: ComfyUI, fake: FakeComfyUI, app: AppContext
) -> None:
    session = svc.sessions.create("Foxes")
    pending = one(svc, session.id, seed=42, cfg=6.5, sampler_name="euler", scheduler="karras")
    assert pending.status == "pending" and pending.prompt_id is None
    snapshot = svc.generations.snapshot(pending.id)
    assert snapshot["3"]["inputs"]["seed"] == 42 and snapshot["3"]["inputs"]["cfg"] == 6.5
    assert snapshot["6"]["inputs"]["text"] == "a red fox"

    reports: list[GenerationProgress] = []
    done = svc.runner.run(pending.id, report=reports.append)

    assert done.status == "completed", done.error
    assert done.prompt_id in fake.history_entries
    files = fake.history_entries[done.prompt_id]["outputs"]["9"]["images"]
    assert [o.filename for o in done.outputs] == [f["filename"] for f in files]
    assert stored_bytes(svc, done) == [fake.files[("output", "", f["filename"])] for f in files]
    assert all(o.kind == "image" and o.media_type == "image/png" for o in done.outputs)
    for output in done.outputs:  # inside the media folder, under this generation
        assert output.path.startswith(f"comfyui/{done.id}/")
    assert (done.width, done.height, done.steps, done.cfg, done.seed) == (64, 64, 3, 6.5, 42)
    assert (done.sampler_name, done.scheduler, done.checkpoint) == ("euler", "karras", CKPT)
    assert done.prompt == "a red fox" and done.negative_prompt == "text, watermark"
    assert done.generation_time_seconds is not None and done.generation_time_seconds >= 0
    assert done.server_info["comfyui_version"] == "0.3.64"
    assert done.server_info["system_stats"]["devices"][0]["name"] == "cpu"
    assert done.progress == 1.0 and done.completed_at is not None
    # exactly the stored snapshot was posted
    assert json.loads(fake.raw_prompts[0])["prompt"] == snapshot
    assert json.loads(fake.raw_prompts[0])["client_id"] == str(done.id)

    steps = [(r.step, r.max_steps) for r in reports if r.step is not None and r.preview is None]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert any("Step 2/3 · node 3 (KSampler)" == r.message for r in reports)
    previews = [r for r in reports if r.preview is not None]
    assert len(previews) == 3 and all(r.preview.startswith(b"\xff\xd8\xff") for r in previews)
    assert all(r.preview_path and r.preview_path.endswith(".jpg") for r in previews)
    assert reports[-1].status == "completed" and reports[-1].fraction == 1.0
    # previews stay servable for a while after the run: a browser fetches them late
    assert svc.media.file(previews[-1].preview_path or "").read_bytes() == previews[-1].preview
    svc.runner.timings.preview_ttl = 0  # ... and go once they are old (a scheduled job)
    svc.media.prune_previews()
    assert not any(
        str(done.id) in p.name for p in (app.settings.media_path / "comfyui/_previews").iterdir()
    )


def test_a_cached_run_completes_with_the_earlier_outputs(svc: ComfyUI, fake: FakeComfyUI) -> None:
    session = svc.sessions.create("Cache")
    first = svc.runner.run(one(svc, session.id, seed=7).id)
    fake.scenario = "cached"
    reports: list[GenerationProgress] = []
    again = svc.runner.run(svc.generator.rerun_exact(first.id).id, report=reports.append)
    assert again.status == "completed", again.error
    assert [o.filename for o in again.outputs] == [o.filename for o in first.outputs]
    assert stored_bytes(svc, again) == stored_bytes(svc, first)
    assert again.generation_time_seconds is not None and again.generation_time_seconds < 1
    # …and it says so: the same images again is not a fresh run
    assert again.server_info["cached"] is True and first.server_info["cached"] is False
    assert (
        reports[-1].message
        == "Done: 2 files · served from ComfyUI's cache (nothing was computed again)"
    )


def test_each_preview_is_labelled_with_its_own_step(svc: ComfyUI) -> None:
    """With preview metadata (event 4), a step's preview arrives before its `progress`."""
    reports: list[GenerationProgress] = []
    done = svc.runner.run(one(svc, None, seed=8).id, report=reports.append)
    assert done.status == "completed", done.error
    previews = [r for r in reports if r.preview is not None]
    assert [(r.step, r.max_steps) for r in previews] == [(1, 3), (2, 3), (3, 3)]
    assert [r.message for r in previews] == [f"Step {n}/3 · node 3 (KSampler)" for n in (1, 2, 3)]


def test_an_execution_error_fails_with_the_nodes_message(svc: ComfyUI, fake: FakeComfyUI) -> None:
    workflow = svc.workflows.add(
        "Upscale by 0.01", (FIXTURES / "workflow_execution_error_api.json").read_text()
    )
    fake.scenario = "execution_error"
    session = svc.sessions.create("Errors")
    pending = svc.generator.generate(session.id, {"prompt": "x"}, workflow_id=workflow.id)[0]
    failed = svc.runner.run(pending.id)
    assert failed.status == "failed"
    assert failed.error == (
        "ComfyUI failed in node 10 “Upscale Latent By” (LatentUpscaleBy): RuntimeError: "
        "Input and output sizes should be greater than 0, but got input (H: 8, W: 8) "
        "output (H: 0, W: 0)"
    )
    assert failed.outputs == [] and failed.prompt_id is not None
    assert svc.sessions.get(session.id).failed_count == 1


def test_a_prompt_refused_by_comfyui_fails_naming_node_and_input(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    session = svc.sessions.create("Refused")
    pending = svc.generator.generate(
        session.id, {**BASE, "sampler_name": "not_a_sampler"}, check_server=False
    )[0]
    failed = svc.runner.run(pending.id)
    assert failed.status == "failed" and failed.prompt_id is None
    assert failed.error is not None
    assert failed.error.startswith(
        "ComfyUI rejected the workflow: node 3 (KSampler) input 'sampler_name': Value not in list"
    )
    assert fake.prompts == []


def test_an_output_comfyui_refuses_is_skipped_and_the_rest_runs(svc: ComfyUI) -> None:
    workflow = load_fixture("workflow_txt2img_api.json")
    workflow["10"] = {  # a second SaveImage fed the VAE instead of an image
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "bad", "images": ["4", 2]},
    }
    imported = svc.workflows.add("Two outputs", workflow)
    made = svc.generator.generate(
        svc.sessions.create("Partial").id, {"prompt": "p"}, workflow_id=imported.id
    )
    reports: list[GenerationProgress] = []
    done = svc.runner.run(made[0].id, report=reports.append)
    assert done.status == "completed" and len(done.outputs) == 2
    assert any(
        r.message.startswith(
            "ComfyUI will skip part of the workflow: node 10 (SaveImage) input 'images': "
            "Return type mismatch between linked nodes"
        )
        for r in reports
    )


def test_options_are_cached_and_names_the_server_lacks_are_refused(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    options = svc.servers.options()
    assert options.samplers[:3] == ["euler", "euler_cfg_pp", "euler_ancestral"]
    assert "karras" in options.schedulers and options.checkpoints == [CKPT]
    assert options.loras == LORAS
    calls = len(fake.requests)
    assert svc.servers.options() is options and len(fake.requests) == calls
    assert svc.servers.options(refresh=True) is not options and len(fake.requests) > calls
    session = svc.sessions.create("Check")
    with pytest.raises(ValidationError) as caught:
        svc.generator.generate(session.id, {**BASE, "sampler_name": "not_a_sampler"})
    assert "has no sampler called 'not_a_sampler'. Available: euler, euler_cfg_pp" in str(
        caught.value
    )
    with pytest.raises(ValidationError, match=r"has no checkpoint called 'gone\.safetensors'"):
        svc.generator.generate(session.id, {**BASE, "checkpoint": "gone.safetensors"})
    with pytest.raises(ValidationError, match="has no LoRA called 'nope'"):
        svc.generator.generate(
            session.id, {**BASE, "loras": [{"name": "nope", "strength_model": 1}]}
        )
    with pytest.raises(ValidationError, match="Width must be a multiple of 8"):
        svc.generator.generate(session.id, {**BASE, "width": 100})
    with pytest.raises(ValidationError, match="Steps must be between 1 and 10000"):
        svc.generator.generate(session.id, {**BASE, "steps": 0})
    with pytest.raises(ValidationError, match="Unknown parameter 'colour'"):
        svc.generator.generate(session.id, {**BASE, "colour": "red"})
    assert svc.generations.list_all(session.id) == []
    # a checkpoint added on the server since the options were cached is found by a refresh
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT, "new.safetensors"])
    made = svc.generator.generate(session.id, {**BASE, "checkpoint": "new.safetensors"})
    assert made[0].checkpoint == "new.safetensors"
    assert svc.servers.options().checkpoints == [CKPT, "new.safetensors"]


def test_interrupt_ends_cancelled_and_interrupts_only_this_prompt(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    fake.scenario = "interrupt"
    session = svc.sessions.create("Stop")
    pending = one(svc, session.id)

    def report(progress: GenerationProgress) -> None:
        if progress.step == 1:
            svc.generations.cancel(pending.id)  # what the Interrupt button calls

    cancelled = svc.runner.run(pending.id, report=report)
    assert cancelled.status == "cancelled"
    assert cancelled.error == "Interrupted in node 3 (KSampler)"
    assert fake.interrupts == [{"prompt_id": cancelled.prompt_id}]
    assert cancelled.outputs == []


def test_a_generation_cancelled_before_it_started_is_never_posted(
    svc: ComfyUI, app: AppContext, fake: FakeComfyUI
) -> None:
    pending = one(svc, svc.sessions.create("Never").id)
    assert svc.generations.cancel(pending.id).status == "cancelled"
    assert svc.runner.run(pending.id).status == "cancelled"
    assert fake.prompts == []
    made = one(svc, svc.sessions.create("Tasks tab").id)
    app.tasks.cancel_task(made.task_id)  # the Tasks tab's Cancel
    cancelled = svc.generations.get(made.id)
    assert cancelled.status == "cancelled" and cancelled.error == "Its task was cancelled"
    assert svc.runner.run(made.id).status == "cancelled" and fake.prompts == []


def test_cancelling_a_prompt_still_waiting_in_comfyuis_queue_removes_it(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    fake.hold = True  # the first prompt occupies the server
    session = svc.sessions.create("Queue")
    first, second = svc.generator.generate(session.id, BASE, batch_count=2)
    results: dict[str, GenerationView] = {}
    runner = threading.Thread(target=lambda: results.update(a=svc.runner.run(first.id)))
    runner.start()
    fake.wait_for_prompts(1)

    def report(progress: GenerationProgress) -> None:
        if progress.message == "Queued on ComfyUI":
            svc.generations.cancel(second.id)

    waiting = svc.runner.run(second.id, report=report)
    assert waiting.status == "cancelled" and waiting.error == "Cancelled before ComfyUI started it"
    assert fake.deleted == [waiting.prompt_id]
    assert fake.interrupts == []  # the run in progress (someone else's) was left alone
    fake.release()
    runner.join(10)
    assert results["a"].status == "completed"
    assert len(fake.history_entries) == 1  # the deleted prompt never ran


def test_without_its_websocket_a_run_is_followed_through_history(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    fake.drop_socket_after = 10  # a few nodes in, before the sampler's steps
    reports: list[GenerationProgress] = []
    done = svc.runner.run(one(svc, svc.sessions.create("Drop").id).id, report=reports.append)
    assert fake.sockets_dropped == 1
    assert done.status == "completed", done.error
    assert len(done.outputs) == 2
    assert any(r.message.startswith("Lost the live connection") for r in reports)
    assert any(path.startswith("/history/") for _, path in fake.requests)
    # and with no websocket at all (a proxy refusing it), from the start
    fake.refuse_websocket = True
    done = svc.runner.run(one(svc, svc.sessions.create("No ws").id).id)
    assert done.status == "completed", done.error
    assert len(stored_bytes(svc, done)) == 2


def test_restart_mid_generation_resumes_and_completes_from_history(
    db_url: str, tmp_path: Path, comfy_url: str, fake: FakeComfyUI
) -> None:
    first = app_on(db_url, tmp_path / "data", comfy_url)
    fake.hold = True  # the server pauses after the first step until released
    pending = one(first.comfyui, first.comfyui.sessions.create("Restart").id)
    abandon = threading.Event()

    def report(progress: GenerationProgress) -> None:
        if progress.step == 1:
            abandon.set()  # the app goes down here

    with pytest.raises(RunAbandoned):
        first.comfyui.runner.run(pending.id, report=report, should_abandon=abandon.is_set)
    left = first.comfyui.generations.get(pending.id)
    assert left.status == "running" and left.prompt_id is not None
    first.close()

    second = app_on(db_url, tmp_path / "data", comfy_url)  # the app starts again
    try:
        assert second.comfyui.generations.interrupted() == [pending.id]
        fake.release()
        resumed = second.comfyui.runner.resume_interrupted(background=False)
        assert resumed == [pending.id]
        done = second.comfyui.generations.get(pending.id)
        assert done.status == "completed", done.error
        assert done.prompt_id == left.prompt_id
        assert len(fake.prompts) == 1  # followed, never posted twice
        assert len(stored_bytes(second.comfyui, done)) == 2
    finally:
        second.close()


def test_a_worker_stopping_mid_generation_leaves_it_to_the_next_one(
    db_url: str, tmp_path: Path, comfy_url: str, fake: FakeComfyUI
) -> None:
    fake.hold = True
    first = app_on(db_url, tmp_path / "data", comfy_url)
    first.start_workers(1, poll_interval=0.05)
    made = one(first.comfyui, first.comfyui.sessions.create("Shutdown").id)
    deadline = time.monotonic() + 10
    while not fake.progress_sent and time.monotonic() < deadline:  # step 1 is under way
        time.sleep(0.01)
    first.close(worker_timeout=0.1)  # the app stops: the task is given back to the queue
    second = app_on(db_url, tmp_path / "data", comfy_url)
    try:
        left = second.comfyui.generations.get(made.id)
        assert left.status == "running" and left.prompt_id is not None
        assert second.tasks.get_task(made.task_id).status == "queued"
        fake.release()
        second.start_workers(1, poll_interval=0.05)
        events = list(second.comfyui.progress.follow([made.id], poll=0.1, timeout=20))
        assert events[-1]["status"] == "completed"
        done = second.comfyui.generations.get(made.id)
        assert done.status == "completed" and done.prompt_id == left.prompt_id
        assert len(fake.prompts) == 1 and len(done.outputs) == 2
    finally:
        second.close()


def test_at_start_a_generation_whose_task_is_gone_gets_exactly_one_new_task(
    db_url: str, tmp_path: Path, comfy_url: str, fake: FakeComfyUI
) -> None:
    first = app_on(db_url, tmp_path / "data", comfy_url)
    made = one(first.comfyui, first.comfyui.sessions.create("Lost task").id)
    first.tasks.delete_task(made.task_id)  # e.g. removed from the Tasks tab meanwhile
    first.close()
    second = app_on(db_url, tmp_path / "data", comfy_url)
    try:
        again = second.comfyui.generations.get(made.id)
        assert again.task_id is not None and again.task_id != made.task_id
        assert second.tasks.get_task(again.task_id).status == "queued"
        # another process starting at the same moment does not add a second task
        assert second.comfyui.generator.requeue(made.id, replacing=None).task_id == again.task_id
        second.start_workers(1, poll_interval=0.05)
        events = list(second.comfyui.progress.follow([made.id], poll=0.1, timeout=20))
        assert events[-1]["status"] == "completed" and len(fake.prompts) == 1
    finally:
        second.close()


def test_a_prompt_comfyui_forgot_fails_with_a_reason(
    svc: ComfyUI, fake: FakeComfyUI, app: AppContext
) -> None:
    pending = one(svc, svc.sessions.create("Lost").id)
    with app.sessions.begin() as session:  # as if posted before ComfyUI was restarted
        from spoonfeeder.db.models import ComfyUIGeneration

        row = session.get(ComfyUIGeneration, pending.id)
        row.status, row.prompt_id = "running", "11111111-2222-3333-4444-555555555555"
    failed = svc.runner.run(pending.id)
    assert failed.status == "failed"
    assert "no longer knows this prompt" in (failed.error or "")
    assert "was the server restarted?" in (failed.error or "")


def test_an_unreachable_server_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    url = closed_port_url()
    ctx = app_on(db_url, tmp_path / "data", url)
    try:
        svc = ctx.comfyui
        session = svc.sessions.create("Offline")
        with pytest.raises(ProviderUnavailable) as caught:
            svc.generator.generate(session.id, BASE)
        assert str(caught.value) == f"ComfyUI is not reachable at {url} — is it running?"
        pending = svc.generator.generate(session.id, BASE, check_server=False)[0]
        clock = FakeClock()  # the run retries for two minutes first: of fake time
        svc.runner.timings.sleep, svc.runner.timings.clock = clock.sleep, clock
        failed = svc.runner.run(pending.id)
        assert failed.status == "failed"
        assert failed.error.startswith(f"ComfyUI is not reachable at {url} — is it running?")
        assert "gave up after" in failed.error and 100 < clock.now <= 120
    finally:
        ctx.close()


# ----- reproduction ----------------------------------------------------------------------


def test_rerun_exactly_posts_an_identical_snapshot(svc: ComfyUI, fake: FakeComfyUI) -> None:
    session = svc.sessions.create("Again")
    original = svc.runner.run(
        one(svc, session.id, seed=-1, loras=[{"name": LORAS[0], "strength_model": 0.7}]).id
    )
    copy = svc.generator.rerun_exact(original.id)
    assert copy.reproduced_from_id == original.id and copy.status == "pending"
    assert (copy.seed, copy.checkpoint, copy.loras) == (
        original.seed,
        original.checkpoint,
        original.loras,
    )
    svc.runner.run(copy.id)
    first, second = (json.loads(raw) for raw in fake.raw_prompts)
    # same keys in the same order, same values: the same bytes once serialized
    assert json.dumps(first["prompt"]) == json.dumps(second["prompt"])
    assert json.dumps(second["prompt"]) == json.dumps(svc.generations.snapshot(original.id))
    assert first["client_id"] != second["client_id"]
    lora_nodes = [n for n in second["prompt"].values() if n["class_type"] == "LoraLoader"]
    assert [n["inputs"]["lora_name"] for n in lora_nodes] == [LORAS[0]]


def test_reuse_parameters_and_download_the_snapshot(svc: ComfyUI) -> None:
    session = svc.sessions.create("Reuse")
    made = one(svc, session.id, seed=-1, cfg=5)
    values = svc.generations.reuse_parameters(made.id)
    assert values["seed"] == made.seed and values["seed"] != -1
    assert values["cfg"] == 5 and values["prompt"] == "a red fox"
    assert values["workflow_id"] == str(made.workflow_id) and values["batch_count"] == 1
    again = svc.generator.generate(session.id, values)[0]
    assert svc.generations.snapshot(again.id) == svc.generations.snapshot(made.id)
    # the snapshot downloads as API-format JSON, which imports back as a workflow
    path = svc.generations.export_snapshot(made.id)
    assert json.loads(path.read_text()) == svc.generations.snapshot(made.id)
    imported = svc.workflows.add("From snapshot", path.read_bytes())
    assert imported.parameters["prompt"] == "a red fox"


# ----- seeds, batches, sweeps ---------------------------------------------------------------


def test_seeds_minus_one_resolved_and_batches_counting_up(svc: ComfyUI) -> None:
    session = svc.sessions.create("Batch")
    made = one(svc, session.id, seed=-1)
    assert made.seed is not None and 0 <= made.seed < 2**53
    assert svc.generations.snapshot(made.id)["3"]["inputs"]["seed"] == made.seed
    assert made.parameters["seed"] == made.seed and made.parameters["requested_seed"] == -1
    assert svc.sessions.get(session.id).last_parameters["seed"] == -1  # random next time too
    assert one(svc, session.id, seed=-1).seed != made.seed

    made = svc.generator.generate(session.id, {**BASE, "seed": 1000}, batch_count=3)
    assert [(g.seed, g.batch_index) for g in made] == [(1000, 0), (1001, 1), (1002, 2)]
    assert [svc.generations.snapshot(g.id)["3"]["inputs"]["seed"] for g in made] == [
        1000,
        1001,
        1002,
    ]
    assert all(g.task_id is not None for g in made)  # each is a comfyui.generate task
    random_batch = svc.generator.generate(session.id, {**BASE, "seed": -1}, batch_count=2)
    assert random_batch[1].seed == (random_batch[0].seed or 0) + 1
    assert svc.workflows.get(made[0].workflow_id).generation_count == 7
    with pytest.raises(ValidationError, match="Batch count must be between 1 and 100"):
        svc.generator.generate(session.id, BASE, batch_count=0)


def test_a_sweep_makes_one_labelled_generation_per_combination(svc: ComfyUI) -> None:
    session = svc.sessions.create("Sweep")
    sweep = svc.generator.sweep(
        session.id, {**BASE, "seed": -1}, [("cfg", [4, 6, 8]), ("steps", "20, 30")]
    )
    assert len(sweep.generations) == 6
    assert [g.label for g in sweep.generations] == [
        "cfg=4.0 · steps=20",
        "cfg=4.0 · steps=30",
        "cfg=6.0 · steps=20",
        "cfg=6.0 · steps=30",
        "cfg=8.0 · steps=20",
        "cfg=8.0 · steps=30",
    ]
    assert len({g.seed for g in sweep.generations}) == 1  # only the swept values differ
    cell = sweep.cell(6.0, 30)
    assert cell is not None and (cell.cfg, cell.steps) == (6.0, 30)
    assert svc.generations.snapshot(cell.id)["3"]["inputs"]["steps"] == 30
    again = svc.generations.sweep_grid(sweep.id)
    assert again.axes == [("cfg", [4.0, 6.0, 8.0]), ("steps", [20, 30])]
    assert [g.id for g in again.generations] == [g.id for g in sweep.generations]
    seeds = svc.generator.sweep(session.id, BASE, [("seed", "-1, 7")])
    assert seeds.generations[0].seed not in (None, -1) and seeds.generations[1].seed == 7
    assert [g.label for g in seeds.generations] == ["seed=-1", "seed=7"]
    with pytest.raises(ValidationError, match="Cannot sweep 'loras'"):
        svc.generator.sweep(session.id, BASE, [("loras", [1])])
    with pytest.raises(ValidationError, match="CFG must be between 0 and 100"):
        svc.generator.sweep(session.id, BASE, [("cfg", [4, 400])])
    with pytest.raises(NotFoundError):
        svc.generations.sweep_grid("0" * 32)


# ----- outputs of every kind, and the media folder -------------------------------------------


def test_gifs_video_and_audio_outputs_are_stored(svc: ComfyUI, fake: FakeComfyUI) -> None:
    blobs = {
        "a.png": png_with_text("still"),
        "anim_00001.webp": b"RIFF\x00\x00\x00\x00WEBPVP8 animated",
        "clip_00001.mp4": b"\x00\x00\x00\x18ftypmp42 video bytes",
        "voice_00001.flac": b"fLaC\x00\x00\x00\x22 audio bytes",
        "movie.webm": b"\x1a\x45\xdf\xa3 webm",
    }
    fake.outputs = {
        "9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]},
        "20": {
            "gifs": [{"filename": "anim_00001.webp", "subfolder": "vhs", "type": "output"}],
            "animated": [True],
        },
        "21": {"video": [{"filename": "clip_00001.mp4", "subfolder": "video", "type": "output"}]},
        "22": {"audio": [{"filename": "voice_00001.flac", "subfolder": "audio", "type": "output"}]},
        "23": {"gifs": [{"filename": "movie.webm", "subfolder": "", "type": "temp"}]},
    }
    subfolders = {"anim_00001.webp": "vhs", "clip_00001.mp4": "video", "voice_00001.flac": "audio"}
    for name, data in blobs.items():
        folder_type = "temp" if name == "movie.webm" else "output"
        fake.files[(folder_type, subfolders.get(name, ""), name)] = data
    done = svc.runner.run(one(svc, svc.sessions.create("Media").id).id)
    assert done.status == "completed", done.error
    assert [(o.filename, o.kind) for o in done.outputs] == [
        ("a.png", "image"),
        ("anim_00001.webp", "image"),
        ("clip_00001.mp4", "video"),
        ("voice_00001.flac", "audio"),
        ("movie.webm", "video"),
    ]
    assert stored_bytes(svc, done) == list(blobs.values())
    assert done.outputs[2].media_type == "video/mp4"


def test_output_paths_never_escape_the_media_folder(
    svc: ComfyUI, fake: FakeComfyUI, app: AppContext, tmp_path: Path
) -> None:
    evil = [
        ("../../../../escaped.png", "../../.."),
        ("/tmp/absolute.png", "/etc"),
        ("..\\..\\windows.png", ""),
        ("..", ".."),
    ]
    fake.outputs = {
        "9": {"images": [{"filename": n, "subfolder": s, "type": "output"} for n, s in evil]}
    }
    for n, s in evil:
        fake.files[("output", s, n)] = f"bytes of {n}".encode()
    done = svc.runner.run(one(svc, svc.sessions.create("Evil").id).id)
    assert done.status == "completed", done.error
    root = app.settings.media_path.resolve()
    for output, (name, _) in zip(done.outputs, evil, strict=True):
        path = svc.media.file(output.path)
        assert path.is_relative_to(root / "comfyui" / str(done.id))
        assert path.read_bytes() == f"bytes of {name}".encode()
        assert ".." not in output.path and "\\" not in output.path
    assert not list(tmp_path.rglob("escaped.png")) and not Path("/tmp/absolute.png").exists()
    # and serving refuses anything outside the media folder (more in test_comfyui_media)
    (app.settings.data_dir / "secret.key").write_text("not for you")
    for outside in ("../secret.key", "/etc/passwd", f"comfyui/{done.id}/../../../secret.key"):
        with pytest.raises(ValidationError, match="outside the media folder"):
            svc.media.file(outside)
    with pytest.raises(NotFoundError, match="does not exist"):
        svc.media.file(f"comfyui/{done.id}/nothing.png")


# ----- workflows -------------------------------------------------------------------------------


def test_builtin_and_imported_workflows(svc: ComfyUI) -> None:
    builtin, img2img = svc.workflows.list_all()
    assert builtin.is_default and builtin.name == "Default txt2img (built-in)"
    assert builtin.parameters["seed"] == -1 and builtin.parameters["width"] == 512
    assert {"prompt", "negative_prompt", "checkpoint", "seed", "loras"} <= set(builtin.extracted)
    assert img2img.name == "Default img2img (built-in)" and not img2img.is_default
    assert img2img.parameters["denoise"] == 0.6 and "width" not in img2img.extracted
    workflow = svc.workflows.add("Counted", load_fixture("workflow_txt2img_api.json"))
    session = svc.sessions.create("Count")
    svc.generator.generate(session.id, {"prompt": "p"}, workflow_id=workflow.id, batch_count=2)
    svc.generator.sweep(session.id, {"prompt": "p"}, [("steps", [1, 2])], workflow_id=workflow.id)
    assert svc.workflows.get(workflow.id).generation_count == 4
    text = (FIXTURES / "workflow_txt2img_api.json").read_text()
    seen = svc.workflows.inspect(text)
    assert seen["targets"]["seed"] == "node 3 (KSampler) · seed"
    assert seen["parameters"]["steps"] == 3
    imported = svc.workflows.add("Tiny", text, defaults={"steps": 12}, make_default=True)
    assert imported.is_default and imported.parameters["steps"] == 12
    assert imported.parameters["width"] == 64  # the workflow's own value
    assert svc.workflows.list_all()[0].name == "Tiny"
    assert sum(w.is_default for w in svc.workflows.list_all()) == 1
    assert svc.workflows.default().id == imported.id

    with pytest.raises(ValidationError) as caught:
        svc.workflows.add("UI", (FIXTURES / "workflow_txt2img_ui.json").read_bytes())
    assert str(caught.value) == UI_FORMAT_HELP and "Export (API)" in str(caught.value)
    with pytest.raises(
        ValidationError, match=r"not valid JSON \(line 1, column 13: Expecting value"
    ):
        svc.workflows.add("Broken", '{"3": {"a": }')
    with pytest.raises(ValidationError, match="already exists"):
        svc.workflows.add("Tiny", text)
    with pytest.raises(ValidationError, match="Give the workflow a name"):
        svc.workflows.add("  ", text)
    with pytest.raises(ValidationError, match="no KSampler"):
        svc.workflows.add("No sampler", {"1": {"class_type": "SaveImage", "inputs": {}}})

    edited = svc.workflows.update(imported.id, defaults={"steps": 30, "cfg": 4})
    assert (edited.parameters["steps"], edited.parameters["cfg"]) == (30, 4.0)
    with pytest.raises(ValidationError, match="Height must be a multiple of 8"):
        svc.workflows.update(imported.id, defaults={"height": 65})
    assert svc.workflows.delete(imported.id) == "Tiny"


def test_deleting_workflows_and_generations_keeps_what_is_still_needed(
    svc: ComfyUI, app: AppContext, fake: FakeComfyUI
) -> None:
    workflow = svc.workflows.add("Temp", load_fixture("workflow_txt2img_api.json"))
    session = svc.sessions.create("Cleanup")
    done = svc.runner.run(
        svc.generator.generate(session.id, {"prompt": "p"}, workflow_id=workflow.id)[0].id
    )
    svc.workflows.delete(workflow.id)
    kept = svc.generations.get(done.id)  # still reproducible: the snapshot is its own
    assert kept.workflow_id is None and svc.generations.snapshot(
        kept.id
    ) == svc.generations.snapshot(done.id)
    assert svc.generator.rerun_exact(kept.id).reproduced_from_id == kept.id
    folder = app.settings.media_path / "comfyui" / str(done.id)
    svc.generations.delete(done.id)
    assert not folder.exists()
    with pytest.raises(NotFoundError):
        svc.generations.get(done.id)
    assert svc.servers.upload_image(b"\x89PNG input", "../my photo.png") == "my_photo.png"
    assert fake.uploads == [("my_photo.png", b"\x89PNG input")]


# ----- sessions ---------------------------------------------------------------------------------


def test_sessions_count_and_restore_parameters(svc: ComfyUI, fake: FakeComfyUI) -> None:
    session = svc.sessions.create("  Studio   one ")
    assert session.name == "Studio one" and session.generation_count == 0
    ok = svc.runner.run(one(svc, session.id, cfg=3.5, seed=5).id)
    bad = svc.generator.generate(session.id, {**BASE, "sampler_name": "nope"}, check_server=False)[
        0
    ]
    svc.runner.run(bad.id)
    one(svc, session.id, cfg=3.5, seed=5, sampler_name="euler")  # still pending
    [listed] = svc.sessions.list_all()
    assert (listed.generation_count, listed.completed_count, listed.failed_count) == (3, 1, 1)
    assert ok.status == "completed"

    # opening the session again restores what was used last
    form = svc.sessions.form_parameters(session.id)
    assert (form["cfg"], form["seed"], form["prompt"], form["width"]) == (3.5, 5, "a red fox", 64)
    assert form["sampler_name"] == "euler" and form["workflow_id"] == str(ok.workflow_id)
    renamed = svc.sessions.rename(session.id, "Studio two")
    assert renamed.name == "Studio two"
    assert [g.status for g in svc.generations.list_all(session.id)] == [
        "pending",
        "failed",
        "completed",
    ]


def test_deleting_a_session_with_or_without_its_generations(svc: ComfyUI, app: AppContext) -> None:
    keep = svc.sessions.create("Keep")
    kept = svc.runner.run(one(svc, keep.id).id)
    assert svc.sessions.delete(keep.id, delete_generations=False) == 0
    still = svc.generations.get(kept.id)
    assert still.session_id is None and svc.media.file(still.outputs[0].path).is_file()

    drop = svc.sessions.create("Drop")
    gone = svc.runner.run(one(svc, drop.id).id)
    folder = app.settings.media_path / "comfyui" / str(gone.id)
    assert folder.is_dir()
    assert svc.sessions.delete(drop.id, delete_generations=True) == 1
    assert not folder.exists()
    with pytest.raises(NotFoundError):
        svc.generations.get(gone.id)
    with pytest.raises(NotFoundError):
        svc.sessions.get(drop.id)
    assert [s.name for s in svc.sessions.list_all()] == []


def test_a_session_can_use_another_comfyui_server(
    svc: ComfyUI, app: AppContext, fake: FakeComfyUI
) -> None:
    other = FakeComfyUI()
    other.set_choices("CheckpointLoaderSimple", "ckpt_name", ["other.safetensors"])
    with serve(other.app) as url:
        profile = app.profiles.create_profile("Second GPU", "comfyui", url=url)
        session = svc.sessions.create("Remote", profile_id=profile.id)
        with pytest.raises(ValidationError, match=f"server at {url} has no checkpoint"):
            svc.generator.generate(session.id, BASE)
        made = svc.generator.generate(session.id, {**BASE, "checkpoint": "other.safetensors"})[0]
        done = svc.runner.run(made.id)
    assert done.status == "completed", done.error
    assert done.profile_id == profile.id and done.server_info["url"] == url
    assert len(other.prompts) == 1 and fake.prompts == []


def test_a_server_behind_a_key_gets_it_and_a_wrong_key_is_named(
    svc: ComfyUI, app: AppContext, fake: FakeComfyUI, comfy_url: str
) -> None:
    fake.api_key = "s3cret"
    keyed = app.profiles.create_profile("Keyed", "comfyui", url=comfy_url, api_key="s3cret")
    session = svc.sessions.create("Keyed", profile_id=keyed.id)
    reports: list[GenerationProgress] = []
    done = svc.runner.run(svc.generator.generate(session.id, BASE)[0].id, report=reports.append)
    assert done.status == "completed", done.error
    assert any(r.step == 3 for r in reports)  # steps come over the websocket: it got in too
    wrong = app.profiles.create_profile("Wrong", "comfyui", url=comfy_url, api_key="nope")
    with pytest.raises(ProviderAuthError) as caught:
        svc.generator.generate(svc.sessions.create("Wrong", profile_id=wrong.id).id, BASE)
    assert str(caught.value) == (
        f"ComfyUI at {comfy_url} refused the API key (HTTP 401) — check the key of its profile"
    )


# ----- through the task queue ---------------------------------------------------------------------


def test_generate_runs_as_tasks_and_follow_streams_their_progress(
    svc: ComfyUI, app: AppContext
) -> None:
    app.start_workers(1, poll_interval=0.05)
    made = svc.generator.generate(svc.sessions.create("Queued").id, BASE, batch_count=2)
    events = list(svc.progress.follow([g.id for g in made], poll=0.1, timeout=20))
    for generation in made:
        mine = [e for e in events if e["generation_id"] == str(generation.id)]
        steps = [(e["step"], e["max"]) for e in mine if e["step"] is not None]
        # in order, ending at 3/3 (a reader that falls behind gets steps merged)
        assert steps == sorted(steps) and steps[-1] == (3, 3)
        assert any(e["preview_path"] for e in mine)
        assert mine[-1]["status"] == "completed"
        assert svc.generations.get(generation.id).status == "completed"
    deadline = time.monotonic() + 10  # the task row is finished just after the generation
    while time.monotonic() < deadline:
        tasks = [app.tasks.get_task(g.task_id) for g in made]
        if all(t.status != "running" and t.status != "queued" for t in tasks):
            break
        time.sleep(0.02)
    assert [(t.type, t.status) for t in tasks] == [("comfyui.generate", "completed")] * 2
    result = tasks[0].result or {}
    assert result["generation_id"] == str(made[0].id) and len(result["outputs"]) == 2


def test_a_slow_reader_gets_the_latest_state_with_the_latest_preview() -> None:
    from spoonfeeder.comfyui.progress import coalesce as _coalesce

    a, b = "gen-a", "gen-b"
    batch = [
        {"generation_id": a, "status": "running", "step": 1, "preview_path": "p1.jpg"},
        {"generation_id": b, "status": "running", "step": 1, "preview_path": None},
        {"generation_id": a, "status": "running", "step": 2, "preview_path": None},
        {"generation_id": "other", "status": "running", "step": 9, "preview_path": None},
        {"generation_id": b, "status": "completed", "step": None, "preview_path": None},
        {"generation_id": b, "status": "running", "step": 5, "preview_path": None},
    ]
    assert _coalesce(batch, {a, b}) == [
        {"generation_id": a, "status": "running", "step": 2, "preview_path": "p1.jpg"},
        {"generation_id": b, "status": "running", "step": 1, "preview_path": None},
        {"generation_id": b, "status": "completed", "step": 1, "preview_path": None},
    ]


def test_the_last_step_is_never_merged_into_the_news_after_it() -> None:
    from spoonfeeder.comfyui.progress import coalesce as _coalesce

    def event(message: str, step: int | None) -> dict[str, Any]:
        return {"generation_id": "g", "status": "running", "message": message, "step": step}

    batch = [
        event("Step 19/20 · node 3 (KSampler)", 19),
        event("Step 20/20 · node 3 (KSampler)", 20),
        event("Running node 8 (VAEDecode)", None),
        event("Running node 9 (SaveImage)", None),
    ]
    assert [e["message"] for e in _coalesce(batch, {"g"})] == [
        "Step 20/20 · node 3 (KSampler)",
        "Running node 9 (SaveImage)",
    ]


def test_follow_reports_ends_it_did_not_see_happen(svc: ComfyUI) -> None:
    session = svc.sessions.create("Follow")
    done = svc.runner.run(one(svc, session.id).id)
    cancelled = svc.generations.cancel(one(svc, session.id).id)
    events = list(svc.progress.follow([done.id, cancelled.id], poll=0.05, timeout=5))
    assert {(e["generation_id"], e["status"]) for e in events} == {
        (str(done.id), "completed"),
        (str(cancelled.id), "cancelled"),
    }


# ----- the snapshot is the posted bytes, on both databases ---------------------------------

# Keys in an order JSONB would not keep (it sorts them by length, then bytes).
UNSORTED_WORKFLOW = """{
  "10": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "z"}},
  "8": {"inputs": {"vae": ["4", 2], "samples": ["3", 0]}, "class_type": "VAEDecode"},
  "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 3, "cfg": 8.0,
        "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
  "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blur", "clip": ["4", 1]}}
}"""


def _order(workflow: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(node, list(body["inputs"])) for node, body in workflow.items()]


def test_the_posted_body_carries_the_stored_snapshot_byte_for_byte(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    workflow = svc.workflows.add("Unsorted", UNSORTED_WORKFLOW)
    first = svc.runner.run(one(svc, None, workflow_id=workflow.id, seed=5).id)
    assert first.status == "completed", first.error
    text = svc.generations.snapshot_text(first.id)
    assert fake.raw_prompts[0].startswith(b'{"prompt": ' + text.encode() + b', "client_id": ')
    # the import's own order, which ComfyUI writes into every PNG it saves
    assert _order(json.loads(text)) == _order(json.loads(UNSORTED_WORKFLOW))

    again = svc.runner.run(svc.generator.rerun_exact(first.id).id)
    assert again.status == "completed", again.error
    assert svc.generations.snapshot_text(again.id) == text
    assert fake.raw_prompts[1].startswith(b'{"prompt": ' + text.encode() + b', "client_id": ')
    assert svc.generations.export_snapshot(first.id).read_text() == text


def test_the_builtin_workflow_is_posted_in_its_own_order(svc: ComfyUI, fake: FakeComfyUI) -> None:
    from spoonfeeder.comfyui import builtin

    assert svc.runner.run(one(svc, None, seed=3).id).status == "completed"
    posted = json.loads(fake.raw_prompts[0])["prompt"]
    assert _order(posted) == _order(builtin.workflow())


# ----- a reverse proxy answering 502 while ComfyUI restarts ---------------------------------


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_a_run_rides_out_a_proxy_answering_502_while_comfyui_restarts(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    clock = FakeClock()
    svc.runner.timings.sleep, svc.runner.timings.clock = clock.sleep, clock
    pending = one(svc, None, seed=11)
    fake.proxy_errors = [502, 502, 503, 502]  # system_stats, /prompt… all refused a while
    done = svc.runner.run(pending.id)
    assert done.status == "completed", done.error
    assert len(fake.prompts) == 1 and len(done.outputs) == 2
    assert 0 < clock.now <= 120


def test_a_run_fails_with_a_clear_sentence_when_comfyui_stays_down(
    svc: ComfyUI, fake: FakeComfyUI, comfy_url: str
) -> None:
    clock = FakeClock()
    svc.runner.timings.sleep, svc.runner.timings.clock = clock.sleep, clock
    pending = one(svc, None, seed=12)
    fake.proxy_errors = [502] * 10_000
    done = svc.runner.run(pending.id)
    assert done.status == "failed" and fake.prompts == []
    assert done.error.startswith(f"ComfyUI at {comfy_url} still failed after ")
    assert "HTTP 502" in done.error and "restarting" in done.error
    assert clock.now <= 120


# ----- what a run ran on --------------------------------------------------------------------


def test_a_run_records_the_files_and_nodes_it_ran_on(svc: ComfyUI, fake: FakeComfyUI) -> None:
    import hashlib

    done = svc.runner.run(
        one(svc, None, seed=21, loras=[{"name": LORAS[1], "strength_model": 0.5}]).id
    )
    assert done.status == "completed", done.error
    info = done.server_info
    assert info["comfyui_version"] == "0.3.64"
    checkpoint = info["models"]["checkpoints"][CKPT]
    assert checkpoint == {"size": 2_132_625_230, "modified": 1795480000.0}
    assert info["models"]["loras"] == {LORAS[1]: {"size": 151_108_833, "modified": 1795480001.0}}
    canonical = json.dumps(fake.object_info, sort_keys=True, separators=(",", ":"))
    assert info["node_classes_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert info["node_class_count"] == len(fake.object_info)

    fake.object_info["MyCustomNode"] = {"input": {}, "output": []}  # a custom node installed
    svc.runner.timings.facts_ttl = 0
    later = svc.runner.run(one(svc, None, seed=22).id)
    assert later.server_info["node_classes_sha256"] != info["node_classes_sha256"]


def test_a_server_that_lists_no_model_files_is_recorded_as_such(
    svc: ComfyUI, fake: FakeComfyUI
) -> None:
    fake.model_files = {}  # an older ComfyUI: /experiment/models/… answers 404
    done = svc.runner.run(one(svc, None, seed=23).id)
    assert done.status == "completed", done.error
    assert done.server_info["models"] == {"checkpoints": {CKPT: None}}


# ----- img2img: input images, and parameters that belong to one workflow --------------------


def _img2img(svc: ComfyUI) -> Any:
    return next(w for w in svc.workflows.list_all() if w.name == "Default img2img (built-in)")


def _png(text: str) -> bytes:
    return png_with_text(text)  # a valid PNG, distinct per text


def test_an_input_image_is_uploaded_and_posted_by_its_name(
    svc: ComfyUI, fake: FakeComfyUI, tmp_path: Path
) -> None:
    import hashlib

    source = tmp_path / "my photo.png"
    source.write_bytes(_png("a photo"))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    session = svc.sessions.create("Img2img")
    pending = svc.generator.generate(
        session.id, {**BASE, "image": str(source)}, workflow_id=_img2img(svc).id
    )[0]
    name = f"spoonfeeder_{digest[:16]}.png"
    snapshot = svc.generations.snapshot(pending.id)
    assert snapshot["10"]["inputs"]["image"] == name
    [image] = svc.generations.get(pending.id).input_images
    assert (image["sha256"], image["filename"], image["node_id"]) == (digest, "my_photo.png", "10")

    done = svc.runner.run(pending.id)
    assert done.status == "completed", done.error
    assert fake.uploads == [(name, source.read_bytes())]  # uploaded before it was posted
    assert done.server_info["input_images"] == [{"node_id": "10", "name": name, "sha256": digest}]

    source.unlink()  # the user's copy is gone; ours is in the media folder
    again = svc.runner.run(svc.generator.rerun_exact(done.id).id)
    assert again.status == "completed", again.error
    assert fake.uploads[-1] == (name, fake.uploads[0][1])  # sent again, byte for byte
    assert svc.generations.snapshot_text(again.id) == svc.generations.snapshot_text(done.id)


def test_an_input_image_is_refused_where_it_cannot_go(svc: ComfyUI, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png("p"))
    session = svc.sessions.create("Refused")
    with pytest.raises(ValidationError, match="no Load Image node"):
        svc.generator.generate(session.id, {**BASE, "image": str(photo)})  # the txt2img default
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(ValidationError, match=r"'notes\.png' is not an image ComfyUI can load"):
        svc.generator.generate(
            session.id, {**BASE, "image": str(text)}, workflow_id=_img2img(svc).id
        )
    assert svc.generations.list_all(session.id) == []


def test_denoise_set_for_one_workflow_never_reaches_another(svc: ComfyUI) -> None:
    session = svc.sessions.create("Both ways")
    txt = svc.generator.generate(session.id, BASE)[0]
    assert svc.generations.snapshot(txt.id)["3"]["inputs"]["denoise"] == 1.0
    img = svc.generator.generate(
        session.id, {"prompt": "p", "checkpoint": CKPT}, workflow_id=_img2img(svc).id
    )[0]
    assert svc.generations.snapshot(img.id)["3"]["inputs"]["denoise"] == 0.6  # not the txt2img 1.0
    low = svc.generator.generate(session.id, {"prompt": "p", "denoise": 0.3})[0]  # still img2img
    assert svc.generations.snapshot(low.id)["3"]["inputs"]["denoise"] == 0.3
    txt2img = next(w for w in svc.workflows.list_all() if w.is_default)
    back = svc.generator.generate(
        session.id, {"prompt": "p", "checkpoint": CKPT}, workflow_id=txt2img.id
    )[0]
    assert svc.generations.snapshot(back.id)["3"]["inputs"]["denoise"] == 1.0  # not the img2img 0.3
    assert svc.sessions.form_parameters(session.id, txt2img.id)["denoise"] == 1.0
    assert svc.sessions.form_parameters(session.id, _img2img(svc).id)["denoise"] == 0.6


def test_a_refused_generate_makes_no_session_and_an_accepted_one_names_it_uniquely(
    svc: ComfyUI,
) -> None:
    before = len(svc.sessions.list_all())
    with pytest.raises(ValidationError, match="Width must be a multiple of 8"):
        svc.generator.generate(None, {**BASE, "width": 65}, new_session="a red fox")
    with pytest.raises(ValidationError, match="has no checkpoint"):
        svc.generator.generate(None, {**BASE, "checkpoint": "nope.ckpt"}, new_session="a red fox")
    with pytest.raises(ValidationError, match="combinations"):
        svc.generator.sweep(None, BASE, [("steps", list(range(1, 200)))], new_session="a red fox")
    assert len(svc.sessions.list_all()) == before  # nothing was made by the refusals

    first = svc.generator.generate(None, BASE, new_session="a red fox")[0]
    second = svc.generator.sweep(
        None, BASE, [("cfg", [4, 6])], new_session="a red fox"
    ).generations[0]
    names = {svc.sessions.get(g.session_id).name for g in (first, second)}
    assert names == {"a red fox", "a red fox (2)"}


def test_node_types_the_server_lacks_are_named(svc: ComfyUI, db_url: str, tmp_path: Path) -> None:
    custom = load_fixture("workflow_txt2img_api.json")
    custom["12"] = {"class_type": "ImpactWildcardProcessor", "inputs": {}}
    custom["13"] = {"class_type": "Efficient Loader", "inputs": {}}
    assert svc.servers.missing_node_types(json.dumps(custom)) == [
        "Efficient Loader",
        "ImpactWildcardProcessor",
    ]
    assert svc.servers.missing_node_types(load_fixture("workflow_txt2img_api.json")) == []
    offline = app_on(db_url, tmp_path / "offline", closed_port_url())
    try:
        assert offline.comfyui.servers.missing_node_types(json.dumps(custom)) is None
    finally:
        offline.close()


def test_sweeps_are_capped_by_the_setting(
    db_url: str, tmp_path: Path, comfy_url: str, make_app: MakeApp
) -> None:
    ctx = make_app(db_url, tmp_path / "capped", comfyui_url=comfy_url, sweep_max_cells=6)
    try:
        session = ctx.comfyui.sessions.create("Capped")
        with pytest.raises(ValidationError) as caught:
            ctx.comfyui.generator.sweep(
                session.id, BASE, [("cfg", [4, 5, 6]), ("steps", [1, 2, 3])]
            )
        assert str(caught.value) == (
            "That sweep has 9 combinations, more than the cap of 6 (SWEEP_MAX_CELLS); "
            "use fewer values"
        )
        assert ctx.comfyui.generations.list_all(session.id) == []
        made = ctx.comfyui.generator.sweep(
            session.id, BASE, [("cfg", [4, 5]), ("steps", [1, 2, 3])]
        )
        assert len(made.generations) == 6
    finally:
        ctx.close()


def test_a_sweep_is_saved_as_one_labelled_grid_image(svc: ComfyUI, fake: FakeComfyUI) -> None:

    from PIL import Image

    sweep = svc.generator.sweep(None, {**BASE, "seed": 9}, [("cfg", [4, 8]), ("steps", [2, 3, 4])])
    for generation in sweep.generations[:5]:
        assert svc.runner.run(generation.id).status == "completed"
    svc.generations.cancel(sweep.generations[5].id)  # one cell without a picture
    grid = Image.open(svc.generations.sweep_image(sweep.id))
    width, height = grid.size
    assert width > 3 * 64 and height > 2 * 64  # three columns, two rows, labels around them
    # each cell holds its own generation's first image, pixel for pixel
    first = svc.generations.get(sweep.generations[0].id)
    source = Image.open(svc.media.file(first.outputs[0].path)).convert("RGB")
    assert source.size == (64, 64)
    found = _find(grid.convert("RGB"), source)
    assert found is not None, "the first cell's image is not in the grid"
    # the sixth cell is a grey tile saying why it has no image
    colors = dict((color, count) for count, color in grid.convert("RGB").getcolors(1 << 24))
    assert colors[(200, 200, 200)] > 64 * 64 // 2


def _find(grid: Any, tile: Any) -> tuple[int, int] | None:
    """Where `tile` sits in `grid`, pixel-exact (searched on the grid's 12-px gaps)."""
    wanted = tile.tobytes()
    width, height = tile.size
    for y in range(0, grid.size[1] - height + 1):
        for x in range(0, grid.size[0] - width + 1):
            if grid.getpixel((x, y)) == tile.getpixel((0, 0)) and (
                grid.crop((x, y, x + width, y + height)).tobytes() == wanted
            ):
                return x, y
    return None


def test_the_gallery_pages_through_completed_work_whatever_else_the_session_holds(
    svc: ComfyUI,
) -> None:
    session = svc.sessions.create("Busy")
    done = [svc.runner.run(one(svc, session.id, seed=s).id) for s in range(3)]
    sweep = svc.generator.sweep(session.id, BASE, [("cfg", list(range(1, 11)))])  # 10 cells…
    for cell in sweep.generations:
        svc.generations.cancel(cell.id)  # …all cancelled, and newer than the completed work
    first = svc.generations.gallery_page(session.id, 0, per_page=2)
    assert [g.id for g in first.generations] == [done[2].id, done[1].id]
    assert (first.page, first.pages, first.total) == (0, 2, 3)
    last = svc.generations.gallery_page(session.id, 5, per_page=2)  # past the end: the last page
    assert [g.id for g in last.generations] == [done[0].id] and last.page == 1
    assert svc.generations.unfinished(session.id) == []
    waiting = one(svc, session.id)
    assert svc.generations.unfinished(session.id) == [waiting.id]


def test_facts_that_cannot_be_read_do_not_cost_the_run(svc: ComfyUI, fake: FakeComfyUI) -> None:
    clock = FakeClock()
    svc.runner.timings.sleep, svc.runner.timings.clock = clock.sleep, clock

    fake.model_files = {"checkpoints": 500, "loras": 500}  # a dead network share, say
    done = svc.runner.run(one(svc, None, seed=31).id)
    assert done.status == "completed", done.error
    error = done.server_info["facts_error"]
    assert "(HTTP 500 on /experiment/models/checkpoints)" in error  # after its retries
    assert done.server_info["comfyui_version"] == "0.3.64"


# ----- a broken or hostile ComfyUI cannot fill the disk or fake an image ---------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_output_past_the_cap_is_refused_and_not_kept(
    svc: ComfyUI, fake: FakeComfyUI, app: AppContext, chunked: bool
) -> None:
    svc.runner.timings.max_output_bytes = 100_000
    fake.view_chunked = chunked
    fake.outputs = {"9": {"images": [{"filename": "huge.png", "subfolder": "", "type": "output"}]}}
    fake.files[("output", "", "huge.png")] = PNG_HEADER + b"\0" * 300_000
    done = svc.runner.run(one(svc, None, seed=41).id)
    assert done.status == "failed" and done.outputs == []
    assert "sent more than 97.7 KiB for 'huge.png'" in (done.error or "")
    folder = app.settings.media_path / "comfyui" / str(done.id)
    assert not folder.exists() or not any(folder.iterdir())  # no partial file left behind


def test_a_redirect_or_an_empty_file_is_not_an_image(svc: ComfyUI, fake: FakeComfyUI) -> None:
    fake.view_redirect = "http://169.254.169.254/latest/meta-data/"
    redirected = svc.runner.run(one(svc, None, seed=42).id)
    assert redirected.status == "failed" and redirected.outputs == []
    assert "with a redirect (HTTP 302)" in (redirected.error or "")
    fake.view_redirect = None
    fake.outputs = {"9": {"images": [{"filename": "blank.png", "subfolder": "", "type": "output"}]}}
    fake.files[("output", "", "blank.png")] = b""
    empty = svc.runner.run(one(svc, None, seed=43).id)
    assert empty.status == "failed" and "sent an empty file for 'blank.png'" in (empty.error or "")
