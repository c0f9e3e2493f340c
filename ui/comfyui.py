"""ComfyUI tab: sessions, workflows, generation with live progress, reproduction, sweeps.

A page follows one session at a time: whatever starts work (Generate, a sweep, a re-run)
or shows a session (opening it, a page load, opening the tab) follows that session's
queued and running generations to their end — so a reloaded page picks up the runs it
left. The newest follower of a browser session wins; older ones stop at their next yield.
Updates are dicts ({component: value}): each callback says only what it changes.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from spoonfeeder.comfyui.params import SWEEPABLE
from spoonfeeder.comfyui.views import TERMINAL, GenerationView, SweepView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.serialize import jsonable
from ui.comfyui_format import (
    FORM_KEYS,
    GENERATION_COLUMNS,
    LORA_HEADERS,
    describe_generation,
    form_parameters,
    form_values,
    gallery_summary,
    generation_row,
    placeholder,
    run_summary,
    session_choices,
)
from ui.common import LiveOutputs, NewestView, Refresh, api, api_json, selected_row_id, shows_errors

DEFAULT_SERVER = ""  # the ComfyUI provider setting; otherwise a profile id
# A page's follower gives up after this long without the runs ending (they go on).
QUIET_LIMIT_SECONDS = 30 * 60
GALLERY_PAGE = 24  # completed generations per gallery page
# Form fields only some workflows have: shown when the chosen workflow takes them.
WORKFLOW_FIELDS = ("width", "height", "batch_size", "denoise", "image")


def build(ctx: AppContext) -> Refresh:
    service = ctx.comfyui
    followers = NewestView()

    def media_path(relative: str) -> str:
        return str(service.media.file(relative))

    def outputs_of(generations: list[GenerationView]) -> tuple[list, list, str | None, str | None]:
        """Gallery items (images) with the generation behind each, and the newest video
        and audio file."""
        images, ids, video, audio = [], [], None, None
        for g in generations:
            for out in g.outputs:
                try:
                    path = media_path(out.path)
                except Exception:  # a file removed by hand: show the rest
                    continue
                if out.kind == "image":
                    images.append((path, g.label or f"seed {g.seed}"))
                    ids.append(str(g.id))
                elif out.kind == "video" and video is None:
                    video = path
                elif out.kind == "audio" and audio is None:
                    audio = path
        return images, ids, video, audio

    def server_choices() -> list[tuple[str, str]]:
        return [("Default ComfyUI server (Settings)", DEFAULT_SERVER)] + [
            (f"{p.name} ({p.url})", str(p.id))
            for p in ctx.profiles.list_profiles()
            if p.provider == "comfyui"
        ]

    def workflow_choices() -> list[tuple[str, str]]:
        return [
            (w.name + (" ★" if w.is_default else ""), str(w.id))
            for w in service.workflows.list_all()
        ]

    gr.Markdown(
        "Generate with ComfyUI. Every generation keeps the exact workflow it posted, so any "
        "result can be re-run exactly."
    )
    with gr.Row():
        session = gr.Dropdown(
            [], label="Session", allow_custom_value=True, scale=3, elem_id="cf-session"
        )
        server = gr.Dropdown(
            server_choices(),
            value=DEFAULT_SERVER,
            label="ComfyUI server",
            allow_custom_value=True,
            scale=3,
            elem_id="cf-server",
        )
        refresh_options_btn = gr.Button("Refresh server lists", scale=1, elem_id="cf-refresh")
    with gr.Row():
        session_name = gr.Textbox(
            label="Session name", placeholder="New session name", scale=3, elem_id="cf-name"
        )
        new_btn = gr.Button("New session", scale=1, elem_id="cf-new")
        rename_btn = gr.Button("Rename", scale=1, elem_id="cf-rename")
        delete_btn = gr.Button("Delete session", variant="stop", scale=1, elem_id="cf-delete")
    with gr.Row(visible=False) as confirm_row:
        also_generations = gr.Checkbox(
            label="Also delete its generations and their files", elem_id="cf-delete-gens"
        )
        confirm_btn = gr.Button("Yes, delete the session", variant="stop", elem_id="cf-confirm")
        keep_btn = gr.Button("Keep it")
    notice = gr.Markdown(elem_id="cf-notice")

    with gr.Row():
        with gr.Column(scale=2):
            workflow = gr.Dropdown(
                workflow_choices(),
                label="Workflow",
                allow_custom_value=True,
                elem_id="cf-workflow",
            )
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="cf-prompt")
            negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="cf-negative")
            input_image = gr.Image(
                label="Input image",
                type="filepath",
                sources=["upload", "clipboard"],
                height=220,
                visible=False,
                elem_id="cf-image",
            )
            with gr.Row():
                width = gr.Number(label="Width", precision=0, step=8, elem_id="cf-width")
                height = gr.Number(label="Height", precision=0, step=8, elem_id="cf-height")
            with gr.Row():
                steps = gr.Number(label="Steps", precision=0, elem_id="cf-steps")
                cfg = gr.Number(label="CFG", step=0.5, elem_id="cf-cfg")
                denoise = gr.Number(
                    label="Denoise (how far from the input image, 0–1)",
                    minimum=0,
                    maximum=1,
                    step=0.05,
                    visible=False,
                    elem_id="cf-denoise",
                )
            with gr.Row():
                sampler = gr.Dropdown(
                    [], label="Sampler", allow_custom_value=True, elem_id="cf-sampler"
                )
                scheduler = gr.Dropdown(
                    [], label="Scheduler", allow_custom_value=True, elem_id="cf-scheduler"
                )
            with gr.Row():
                seed = gr.Number(-1, label="Seed (-1 = random)", precision=0, elem_id="cf-seed")
                checkpoint = gr.Dropdown(
                    [], label="Checkpoint", allow_custom_value=True, elem_id="cf-checkpoint"
                )
            loras = gr.Dataframe(
                headers=LORA_HEADERS,
                datatype=["str", "number", "number"],
                type="array",
                row_count=1,
                interactive=True,
                label="LoRAs (name and strengths; leave the name blank for none)",
                elem_id="cf-loras",
            )
            lora_names = gr.Markdown(elem_id="cf-lora-names")
            with gr.Row():
                batch_size = gr.Number(1, label="Batch size", precision=0, elem_id="cf-batch")
                batch_count = gr.Number(
                    1, label="Batch count", precision=0, minimum=1, elem_id="cf-count"
                )
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary", elem_id="cf-generate")
                interrupt_btn = gr.Button("Interrupt", variant="stop", elem_id="cf-interrupt")
            with gr.Accordion("Parameter sweep", open=False):
                with gr.Row():
                    axis1 = gr.Dropdown(
                        list(SWEEPABLE), value="cfg", label="Vary", elem_id="cf-axis1"
                    )
                    values1 = gr.Textbox(
                        label="Values", placeholder="4, 6, 8", elem_id="cf-values1"
                    )
                with gr.Row():
                    axis2 = gr.Dropdown(
                        ["", *SWEEPABLE], value="", label="and (optional)", elem_id="cf-axis2"
                    )
                    values2 = gr.Textbox(label="Values", placeholder="20, 30", elem_id="cf-values2")
                sweep_btn = gr.Button("Run sweep", elem_id="cf-sweep")
        with gr.Column(scale=3):
            progress = gr.Markdown(elem_id="cf-progress")
            preview = gr.Image(label="Preview", height=256, interactive=False, elem_id="cf-preview")
            gallery = gr.Gallery(
                label="Results (click one to select it)",
                columns=4,
                height="auto",
                elem_id="cf-gallery",
                interactive=False,
            )
            with gr.Row():
                newer_btn = gr.Button("‹ Newer", size="sm", scale=1, elem_id="cf-newer")
                gallery_info = gr.Markdown(elem_id="cf-gallery-info")
                older_btn = gr.Button("Older ›", size="sm", scale=1, elem_id="cf-older")
            with gr.Row():
                video = gr.Video(label="Video", interactive=False, elem_id="cf-video")
                audio = gr.Audio(label="Audio", interactive=False, elem_id="cf-audio")
            generations = gr.Dataframe(
                headers=GENERATION_COLUMNS,
                interactive=False,
                wrap=True,
                label="This session's generations (click one)",
                elem_id="cf-generations",
            )
            with gr.Row():
                selected = gr.Textbox(label="Generation id", scale=3, elem_id="cf-selected")
                reuse_btn = gr.Button("Reuse parameters", scale=1, elem_id="cf-reuse")
                rerun_btn = gr.Button("Re-run exactly", scale=1, elem_id="cf-rerun")
                snapshot_btn = gr.Button("Download workflow", scale=1, elem_id="cf-snapshot")
            sweep_grid = gr.Gallery(
                label="Sweep grid", columns=3, elem_id="cf-sweep-grid", interactive=False
            )
            sweep_picture = gr.Image(
                label="Sweep grid as one image",
                type="filepath",
                interactive=False,
                elem_id="cf-sweep-image",
            )
            details = gr.Markdown(elem_id="cf-details")
            snapshot_file = gr.File(label="Workflow snapshot (API format)", elem_id="cf-file")

    with gr.Accordion("Workflows", open=False):
        workflows_table = gr.Dataframe(
            headers=["Name", "Default", "Parameters found", "Generations"],
            interactive=False,
            wrap=True,
            elem_id="cf-workflows",
        )
        with gr.Row():
            wf_name = gr.Textbox(label="Name for the import", scale=2, elem_id="cf-wf-name")
            wf_file = gr.File(
                label="Workflow file (API format .json)",
                file_types=[".json"],
                type="binary",
                scale=2,
                elem_id="cf-wf-file",
            )
        wf_text = gr.Code(label="…or paste the API-format JSON", language="json", lines=8)
        with gr.Row():
            inspect_btn = gr.Button("Show parameters", elem_id="cf-wf-inspect")
            import_btn = gr.Button("Import workflow", variant="primary", elem_id="cf-wf-import")
            default_btn = gr.Button("Make the selected workflow default", elem_id="cf-wf-default")
            wf_delete_btn = gr.Button(
                "Delete the selected workflow…", variant="stop", elem_id="cf-wf-delete"
            )
        with gr.Row(visible=False) as wf_confirm_row:
            wf_confirm_text = gr.Markdown()
            wf_confirm_btn = gr.Button(
                "Yes, delete the workflow", variant="stop", elem_id="cf-wf-confirm"
            )
            wf_keep_btn = gr.Button("Keep it")
        wf_info = gr.JSON(label="Parameters found", elem_id="cf-wf-info")
        wf_defaults = gr.Code(
            label="Default parameters of the selected workflow (JSON; edit and save)",
            language="json",
            lines=8,
            elem_id="cf-wf-defaults",
        )
        save_defaults_btn = gr.Button("Save defaults", elem_id="cf-wf-save")

    results_tick = gr.Textbox(visible=False)  # a follower's "read the gallery and table again"
    running = gr.State([])  # the generations this page follows
    page = gr.State(lambda: uuid.uuid4().hex)  # this page, for "the newest follower wins"
    gallery_page = gr.State(0)
    gallery_ids = gr.State([])  # the generation behind each gallery image
    form = [prompt, negative, width, height, steps, cfg, sampler, scheduler, seed]
    form += [checkpoint, batch_size, loras]
    by_key = dict(zip(FORM_KEYS, form, strict=True)) | {"denoise": denoise, "image": input_image}
    results = [progress, preview, gallery, video, audio, generations, gallery_info]
    option_outputs = [sampler, scheduler, checkpoint, lora_names]
    form_outputs = [workflow, *form, batch_count, denoise, input_image]
    shown = [*results, gallery_page, gallery_ids, details, notice]
    everything = [session, server, session_name, *form_outputs, *shown, *option_outputs, running]
    # What followers stream (each a generator: see LiveOutputs), scripts' positions kept.
    result_outputs = [gallery, gallery_ids, gallery_page, gallery_info, video, audio, generations]
    follow_outputs = [progress, preview, results_tick, running, *result_outputs]
    generate_outputs = [session, *results, running, gallery_page, gallery_ids, notice, results_tick]
    sweep_outputs = [*generate_outputs, sweep_grid, sweep_picture]
    rerun_outputs = [*results, running, gallery_page, gallery_ids, session, results_tick]

    # ----- reading ---------------------------------------------------------------------------

    def session_results(session_id: str | None, page: int = 0) -> dict:
        """A session's gallery page (completed work, newest first), its newest video and
        audio, and its table of generations: what the database says now."""
        if not session_id:
            return {
                gallery: [],
                gallery_ids: [],
                gallery_page: 0,
                gallery_info: "",
                video: None,
                audio: None,
                generations: [],
            }
        found = service.generations.gallery_page(session_id, page, GALLERY_PAGE)
        images, ids, video_path, audio_path = outputs_of(found.generations)
        return {
            gallery: images,
            gallery_ids: ids,
            gallery_page: found.page,
            gallery_info: gallery_summary(found),
            video: video_path,
            audio: audio_path,
            generations: table_of(session_id),
        }

    def table_of(session_id: str) -> list[list[Any]]:
        return [generation_row(g) for g in service.generations.list_all(session_id, limit=200)]

    def options_updates(
        server_id: str,
        refresh: bool,
        current: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> dict:
        """The server's samplers, schedulers, checkpoints and LoRAs — with the form's
        values when `values` fills it. A checkpoint the server does not have (`current`:
        the built-in workflow's, on a fresh install) gives way to one it has, and the
        notice says so."""
        opts = service.servers.options(server_id or None, refresh=refresh)

        def dropdown(choices: list[str], key: str) -> gr.Dropdown:
            if values is None:  # leave the value as it is in the browser
                return gr.Dropdown(choices=choices)
            return gr.Dropdown(choices=choices, value=values.get(key))

        update = {
            sampler: dropdown(opts.samplers, "sampler_name"),
            scheduler: dropdown(opts.schedulers, "scheduler"),
            checkpoint: dropdown(opts.checkpoints, "checkpoint"),
            lora_names: "Available LoRAs: " + (", ".join(opts.loras) if opts.loras else "none"),
        }
        if current and opts.checkpoints and current not in opts.checkpoints:
            update[checkpoint] = gr.Dropdown(choices=opts.checkpoints, value=opts.checkpoints[0])
            update[notice] = (
                f"ℹ️ The checkpoint {current!r} is not on this ComfyUI server; "
                f"**{opts.checkpoints[0]}** is chosen instead."
            )
        return update

    def fill_form(values: dict[str, Any]) -> dict:
        """The form from parameters: each field's value, and the fields this workflow
        takes shown (denoise and an input image only where it has them)."""
        takes = set(service.workflows.get(values["workflow_id"]).extracted)
        update: dict[Any, Any] = {workflow: values["workflow_id"]}
        update |= dict(zip(form, form_values(values), strict=True))
        # Named columns, and a blank row to type into: an empty list loses the headers.
        lora_rows = update[loras] or [["", None, None]]
        update[loras] = pd.DataFrame(lora_rows, columns=LORA_HEADERS)
        update[batch_count] = values.get("batch_count") or 1
        update[denoise] = values.get("denoise")
        for key in WORKFLOW_FIELDS[:3]:
            update[by_key[key]] = gr.Number(value=values.get(key), visible=key in takes)
        update[denoise] = gr.Number(value=values.get("denoise"), visible="denoise" in takes)
        image_name = values.get("image")
        image_file = service.media.input_image(image_name)
        label = "Input image"
        if image_name and image_file is None:
            label = f"Input image — none chosen: the server's {image_name!r} is used"
        update[input_image] = gr.Image(
            value=str(image_file) if image_file else None, visible="image" in takes, label=label
        )
        return update

    def request_parameters(
        workflow_id: str, form_vals: list[Any], denoise_value: Any, image: str | None
    ) -> dict[str, Any]:
        """What the form asks for. An empty image field means the workflow's own image,
        not one remembered from an earlier run."""
        parameters = form_parameters(form_vals)
        if denoise_value is not None:
            parameters["denoise"] = denoise_value
        chosen = service.workflows.get(workflow_id) if workflow_id else service.workflows.default()
        if image:
            parameters["image"] = image
        elif "image" in chosen.extracted:
            parameters["image"] = service.workflows.get(chosen.id).parameters.get("image")
        return parameters

    def session_update(session_id: str | None) -> gr.Dropdown:
        return gr.Dropdown(choices=session_choices(service.sessions.list_all()), value=session_id)

    # ----- following a session's runs ---------------------------------------------------------

    def follow_frames(
        session_id: str | None, key: str, live: LiveOutputs, last: dict | None = None
    ) -> Iterator[tuple]:
        """Live progress of the session's queued and running generations until all have
        ended; stops early when a newer follower of this page (`key`) starts, or the page
        goes away. On the way `results_tick` changes whenever the gallery or the table
        should be read again (a browser does so in its own event); the gallery and table
        themselves come only in the last frame (`last` adds to it), for scripts — see
        LiveOutputs for why they are not in the frames between."""
        ids = [str(g) for g in service.generations.unfinished(session_id)] if session_id else []
        if not ids:
            yield live.frame({running: [], **session_results(session_id), **(last or {})})
            return
        ticket = followers.start(key)
        try:
            done: set[str] = set()
            started: set[str] = set()
            run = uuid.uuid4().hex[:8]
            changes = iter(range(1, 1_000_000))

            def tick() -> str:  # a new value: the browser re-reads the gallery and table
                return f"{session_id}|{run}|{next(changes)}"

            yield live.frame(
                {
                    progress: f"Following {len(ids)} generation(s)…",
                    running: ids,
                    results_tick: tick(),
                }
            )
            for event in service.progress.follow(ids, timeout=QUIET_LIMIT_SECONDS, heartbeat=True):
                if not followers.is_newest(key, ticket):
                    return  # a newer follower has taken over
                if event is None:
                    yield live.frame()  # nothing new: hand control back, so Gradio can stop us
                    continue
                gid = event["generation_id"]
                update: dict[Any, Any] = {
                    progress: f"**{min(len(done) + 1, len(ids))} of {len(ids)}** · "
                    f"{event.get('message', '')}",
                }
                if event.get("preview_path"):
                    # A preview already pruned is skipped: the next one comes.
                    with contextlib.suppress(Exception):
                        update[preview] = media_path(event["preview_path"])
                if event.get("status") in TERMINAL:
                    done.add(gid)
                    update[results_tick] = tick()
                elif gid not in started:  # it started: its row says so at once
                    started.add(gid)
                    update[results_tick] = tick()
                yield live.frame(update)
            finished = [service.generations.get(gid) for gid in ids]
            yield live.frame(
                {
                    progress: run_summary(finished),
                    running: [],
                    results_tick: tick(),
                    **session_results(session_id),
                    **(last or {}),
                }
            )
        finally:
            followers.end(key, ticket)

    @shows_errors
    def follow_comfyui_session(session_id: str | None, key: str = ""):
        """Follow a session's queued and running generations to their end: progress text
        as it happens, then the gallery and table (what a page does after a reload)."""
        yield from follow_frames(session_id or None, key, LiveOutputs(follow_outputs))

    @shows_errors
    def refresh_results(tick_value: str | None):
        """Read the session's gallery page and table again (a follower said so)."""
        session_id = (tick_value or "").split("|")[0] or None
        return {session: session_update(session_id), **session_results(session_id)}

    # ----- callbacks -------------------------------------------------------------------------

    @shows_errors
    def refresh_options(server_id: str, current: str | None):
        return options_updates(server_id, refresh=True, current=current)

    def show_session(session_id: str | None, form_checkpoint: str | None = None) -> dict:
        """A session on the page: its server, last parameters, results (its runs are
        followed by the event after). With `form_checkpoint` (a form being filled in,
        whose checkpoint that is) the form and its notice are left as they are."""
        keep_form = form_checkpoint is not None
        sessions = service.sessions.list_all()
        view = service.sessions.get(session_id) if session_id else None
        values = service.sessions.form_parameters(view.id if view else None)
        server_id = str(view.profile_id) if view and view.profile_id else DEFAULT_SERVER
        update: dict[Any, Any] = {
            session: gr.Dropdown(choices=session_choices(sessions), value=session_id or None),
            server: gr.Dropdown(choices=server_choices(), value=server_id),
            details: "",
            running: [],
            **session_results(session_id),
        }
        if not keep_form:
            update |= fill_form(values)
            update[session_name] = view.name if view else ""
            update[notice] = ""
        try:
            current = form_checkpoint if keep_form else values.get("checkpoint")
            filled = None if keep_form else values  # the dropdowns' values with their lists
            update |= options_updates(server_id, refresh=False, current=current, values=filled)
        except Exception:  # ComfyUI may be off: the form still works, lists stay empty
            update[lora_names] = "ComfyUI is not reachable right now."
        return update

    @shows_errors
    def open_session(session_id: str | None):
        """Restore a session: its server, last parameters and generations."""
        return show_session(session_id or None)

    @shows_errors
    def create_session(name: str, server_id: str | None):
        view = service.sessions.create(name, profile_id=server_id or None)
        return {
            session: session_update(str(view.id)),
            progress: "",
            preview: None,
            details: "",
            notice: "",
            sweep_grid: [],
            sweep_picture: None,
            selected: "",
            **session_results(str(view.id)),
        }

    @shows_errors
    def rename_session(session_id: str | None, name: str):
        view = service.sessions.rename(_need(session_id, "session"), name)
        return session_update(str(view.id))

    @shows_errors
    def ask_delete(session_id: str | None):
        service.sessions.get(_need(session_id, "session"))
        return gr.Row(visible=True)

    @shows_errors
    def delete_session(session_id: str | None, with_generations: bool):
        removed = service.sessions.delete(
            _need(session_id, "session"), delete_generations=with_generations
        )
        gr.Info(f"Session deleted ({removed} generations deleted with it)")
        return session_update(None), gr.Row(visible=False)

    @shows_errors
    def change_server(session_id: str | None, server_id: str | None, current: str | None):
        if session_id:
            service.sessions.set_profile(session_id, server_id or None)
        return options_updates(server_id, refresh=False, current=current)

    @shows_errors
    def change_workflow(
        session_id: str | None,
        workflow_id: str | None,
        prompt_text: str | None,
        negative_text: str | None,
    ):
        """Another workflow: its own defaults (denoise, size…) — the prompts typed stay."""
        if not workflow_id:
            return gr.skip()
        values = service.sessions.form_parameters(session_id or None, workflow_id)
        update = fill_form(values)
        if (prompt_text or "").strip():
            update[prompt] = prompt_text
        if (negative_text or "").strip():
            update[negative] = negative_text
        return update

    @shows_errors
    def generate(
        session_id: str | None,
        server_id: str | None,
        workflow_id: str | None,
        prompt_text: str,
        negative_prompt: str,
        width_: float | None,
        height_: float | None,
        steps_: float | None,
        cfg_: float | None,
        sampler_name: str | None,
        scheduler_: str | None,
        seed_: float | None,
        checkpoint_: str | None,
        batch_size_: float | None,
        loras_: Any,
        count: float | None = 1,
        denoise_value: float | None = None,
        image: str | None = None,
        key: str = "",
    ):
        """Generate: `count` generations of the form (seeds counting up); `image` is an
        input image for a workflow with Load Image; then follow them to their end. Without
        a session, one named after the prompt is made — only if nothing is refused."""
        form_vals = [prompt_text, negative_prompt, width_, height_, steps_, cfg_, sampler_name]
        form_vals += [scheduler_, seed_, checkpoint_, batch_size_, loras_]
        made = service.generator.generate(
            session_id or None,
            request_parameters(workflow_id, form_vals, denoise_value, image),
            workflow_id=workflow_id or None,
            batch_count=int(count or 1),
            new_session=None if session_id else (form_vals[0] or ""),  # only if accepted
            profile_id=server_id or None,
        )
        target = str(made[0].session_id)
        live = LiveOutputs(generate_outputs)
        yield live.frame({notice: ""})
        yield from follow_frames(target, key, live, {session: session_update(target)})

    @shows_errors
    def run_sweep(
        session_id: str | None,
        server_id: str | None,
        workflow_id: str | None,
        a1: str,
        v1: str,
        a2: str | None,
        v2: str,
        prompt_text: str,
        negative_prompt: str,
        width_: float | None,
        height_: float | None,
        steps_: float | None,
        cfg_: float | None,
        sampler_name: str | None,
        scheduler_: str | None,
        seed_: float | None,
        checkpoint_: str | None,
        batch_size_: float | None,
        loras_: Any,
        denoise_value: float | None = None,
        image: str | None = None,
        key: str = "",
    ):
        """Sweep one or two parameters (`a1` over `v1`, `a2` over `v2`) on one seed; then
        follow the cells and show the labelled grid, as a gallery and as one image."""
        form_vals = [prompt_text, negative_prompt, width_, height_, steps_, cfg_, sampler_name]
        form_vals += [scheduler_, seed_, checkpoint_, batch_size_, loras_]
        axes = [(a1, v1)] + ([(a2, v2)] if a2 else [])
        sweep = service.generator.sweep(
            session_id or None,
            request_parameters(workflow_id, form_vals, denoise_value, image),
            axes,
            workflow_id=workflow_id or None,
            new_session=None if session_id else (form_vals[0] or ""),
            profile_id=server_id or None,
        )
        target = str(sweep.generations[0].session_id)
        live = LiveOutputs(sweep_outputs)
        yield live.frame({notice: ""})
        frames = follow_frames(target, key, live, {session: session_update(target)})
        yield from frames
        # Then the grid (its cells' states as they are now, had a newer follower taken over)
        finished = service.generations.sweep_grid(sweep.id)
        yield live.frame(
            {
                sweep_grid: sweep_gallery(finished),
                sweep_picture: str(service.generations.sweep_image(sweep.id)),
            }
        )

    def sweep_gallery(sweep: SweepView) -> gr.Gallery:
        """One image per cell, in rows of the last axis's values: a labelled grid."""
        items = []
        for g in sweep.generations:
            images, _, _, _ = outputs_of([g])
            if images:
                items.append((images[0][0], g.label))
            else:  # failed or cancelled: the cell stays, saying so
                items.append((placeholder(), f"{g.label} — {g.status}"))
        return gr.Gallery(value=items, columns=len(sweep.axes[-1][1]))

    @shows_errors
    def interrupt(following: list[str] | None):
        following = following or []
        if not following:
            raise ValidationError("Nothing is running from this page")
        for gid in following:
            if not service.generations.get(gid).done:
                service.generations.cancel(gid)
        return "Interrupting…"

    @shows_errors
    def show_generation(generation_id: str | None):
        if not (generation_id or "").strip():  # cleared (a new session): nothing to show
            return ""
        return describe_generation(service.generations.get(generation_id.strip()))

    @shows_errors
    def pick_from_gallery(ids: list[str], evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return ids[index] if 0 <= index < len(ids) else gr.skip()

    @shows_errors
    def turn_page(session_id: str | None, page: int | None, step: int):
        return session_results(session_id or None, int(page or 0) + step)

    @shows_errors
    def reuse_parameters(generation_id: str | None):
        values = service.generations.reuse_parameters(_need(generation_id, "generation"))
        return fill_form(values)

    @shows_errors
    def rerun_exactly(generation_id: str | None, session_id: str | None, key: str):
        g = service.generator.rerun_exact(_need(generation_id, "generation"))
        target = str(g.session_id) if g.session_id else session_id
        live = LiveOutputs(rerun_outputs)
        yield from follow_frames(target, key, live, {session: session_update(target)})

    @shows_errors
    def download_snapshot(generation_id: str | None) -> str:
        return str(service.generations.export_snapshot(_need(generation_id, "generation")))

    @shows_errors
    def inspect(file_bytes: bytes | None, text: str):
        return service.workflows.inspect(_workflow_source(file_bytes, text))

    @shows_errors
    def import_workflow(name: str, file_bytes: bytes | None, text: str, server_id: str | None):
        source = _workflow_source(file_bytes, text)
        view = service.workflows.add(name, source)
        gr.Info(f"Imported “{view.name}”: {', '.join(view.extracted) or 'no parameters found'}")
        missing = service.servers.missing_node_types(view.id, server_id or None)
        if missing:
            gr.Warning(
                f"The ComfyUI server lacks node types this workflow uses: {', '.join(missing)}. "
                "Install those custom nodes (e.g. with ComfyUI-Manager) before generating.",
                duration=None,
            )
        return gr.Dropdown(choices=workflow_choices(), value=str(view.id)), workflow_rows()

    @shows_errors
    def make_default(workflow_id: str | None):
        service.workflows.set_default(_need(workflow_id, "workflow"))
        return gr.Dropdown(choices=workflow_choices(), value=workflow_id), workflow_rows()

    @shows_errors
    def ask_delete_workflow(workflow_id: str | None):
        view = service.workflows.get(_need(workflow_id, "workflow"))
        text = (
            f"Delete the workflow **{view.name}**? Its {view.generation_count} generations "
            "keep their snapshots (and can still be re-run exactly)."
        )
        return gr.Row(visible=True), text

    @shows_errors
    def delete_workflow(workflow_id: str | None):
        name = service.workflows.delete(_need(workflow_id, "workflow"))
        gr.Info(f"Deleted workflow “{name}”; its generations keep their snapshots")
        return (
            gr.Dropdown(choices=workflow_choices(), value=None),
            workflow_rows(),
            gr.Row(visible=False),
        )

    @shows_errors
    def show_defaults(workflow_id: str | None):
        if not workflow_id:
            return ""
        return json.dumps(service.workflows.get(workflow_id).parameters, indent=2)

    @shows_errors
    def save_defaults(workflow_id: str | None, text: str | None):
        try:
            defaults = json.loads(text or "{}")
        except ValueError as exc:
            raise ValidationError(f"The defaults are not valid JSON: {exc}") from None
        if not isinstance(defaults, dict):
            raise ValidationError('The defaults must be a JSON object, e.g. {"steps": 25}')
        service.workflows.update(_need(workflow_id, "workflow"), defaults=defaults)
        gr.Info("Defaults saved")
        return workflow_rows()

    def workflow_rows() -> list[list[Any]]:
        return [
            [w.name, "★" if w.is_default else "", ", ".join(w.extracted), w.generation_count]
            for w in service.workflows.list_all()
        ]

    # ----- wiring ----------------------------------------------------------------------------

    live = {"show_progress": "hidden", "trigger_mode": "multiple"}  # followers run long
    refresh_options_btn.click(
        refresh_options,
        [server, checkpoint],
        [*option_outputs, notice],
        api_name="refresh_comfyui_options",
    )
    server.input(
        change_server,
        [session, server, checkpoint],
        [*option_outputs, notice],
        api_name="set_comfyui_server",
    )
    session.input(open_session, session, everything, api_name="open_comfyui_session").then(
        follow_comfyui_session,
        [session, page],
        follow_outputs,
        api_name="follow_comfyui_session",
        **live,
    )
    results_tick.change(
        refresh_results,
        results_tick,
        [session, *result_outputs],
        api_visibility="private",
        show_progress="hidden",
    )
    new_btn.click(
        create_session,
        [session_name, server],
        [session, *shown, sweep_grid, sweep_picture, selected],
        api_name="create_session",
        show_progress="hidden",
    )
    rename_btn.click(rename_session, [session, session_name], session, api_name="rename_session")
    delete_btn.click(ask_delete, session, confirm_row, api_name="confirm_delete_session")
    keep_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm_btn.click(
        delete_session,
        [session, also_generations],
        [session, confirm_row],
        api_name="delete_session",
    ).then(open_session, session, everything, api_visibility="private").then(
        follow_comfyui_session, [session, page], follow_outputs, api_visibility="private", **live
    )
    workflow.input(
        change_workflow,
        [session, workflow, prompt, negative],
        form_outputs,
        api_name="comfyui_workflow_form",
        show_progress="hidden",
    )
    generate_btn.click(
        generate,
        [session, server, workflow, *form, batch_count, denoise, input_image, page],
        generate_outputs,
        api_name="comfyui_generate",
        **live,
    )
    sweep_inputs = [session, server, workflow, axis1, values1, axis2, values2, *form]
    sweep_btn.click(
        run_sweep,
        [*sweep_inputs, denoise, input_image, page],
        sweep_outputs,
        api_name="comfyui_sweep",
        **live,
    )
    interrupt_btn.click(interrupt, running, progress, api_name="comfyui_interrupt")
    generations.select(selected_row_id, generations, selected, api_visibility="private")
    gallery.select(pick_from_gallery, gallery_ids, selected, api_visibility="private")
    newer_btn.click(
        lambda sid, page: turn_page(sid, page, -1),
        [session, gallery_page],
        [gallery, gallery_ids, gallery_page, gallery_info, video, audio, generations],
        api_visibility="private",
    )
    older_btn.click(
        lambda sid, page: turn_page(sid, page, +1),
        [session, gallery_page],
        [gallery, gallery_ids, gallery_page, gallery_info, video, audio, generations],
        api_visibility="private",
    )
    selected.change(
        show_generation, selected, details, api_name="show_generation", show_progress="hidden"
    )
    reuse_btn.click(reuse_parameters, selected, form_outputs, api_name="reuse_parameters")
    rerun_btn.click(
        rerun_exactly,
        [selected, session, page],
        rerun_outputs,
        api_name="rerun_exactly",
        **live,
    )
    snapshot_btn.click(download_snapshot, selected, snapshot_file, api_name="download_snapshot")
    inspect_btn.click(inspect, [wf_file, wf_text], wf_info, api_name="inspect_workflow")
    import_btn.click(
        import_workflow,
        [wf_name, wf_file, wf_text, server],
        [workflow, workflows_table],
        api_name="import_workflow",
    )
    default_btn.click(
        make_default, workflow, [workflow, workflows_table], api_name="set_default_workflow"
    )
    wf_delete_btn.click(
        ask_delete_workflow,
        workflow,
        [wf_confirm_row, wf_confirm_text],
        api_name="confirm_delete_workflow",
    )
    wf_keep_btn.click(lambda: gr.Row(visible=False), None, wf_confirm_row, api_visibility="private")
    wf_confirm_btn.click(
        delete_workflow,
        workflow,
        [workflow, workflows_table, wf_confirm_row],
        api_name="delete_workflow",
    )
    workflow.change(show_defaults, workflow, wf_defaults, api_visibility="private")
    save_defaults_btn.click(
        save_defaults, [workflow, wf_defaults], workflows_table, api_name="save_workflow_defaults"
    )

    def comfyui_generation(generation_id: str) -> dict:
        """One generation with its parameters, outputs and status, as JSON."""
        return api_json(jsonable(service.generations.get(generation_id)), service.media.file)

    api(comfyui_generation, "comfyui_generation")

    @shows_errors
    def restore(session_id: str | None, prompt_text: str | None, checkpoint_name: str | None):
        """Page load and tab open: reopen the session (the newest if none is chosen) and
        re-read its results — never overwriting a form being filled in. Its runs are
        followed by the event after (a reloaded page picks up the runs it left)."""
        if not session_id:
            newest = service.sessions.list_all()[:1]
            session_id = str(newest[0].id) if newest else None
        typing = bool((prompt_text or "").strip())
        return show_session(session_id, (checkpoint_name or "") if typing else None)

    tick = gr.Textbox(visible=False)  # set by the tab refresh: restores the session
    tick.change(restore, [session, prompt, checkpoint], everything, api_visibility="private").then(
        follow_comfyui_session, [session, page], follow_outputs, api_visibility="private", **live
    )

    def refresh():
        return gr.Dropdown(choices=workflow_choices()), workflow_rows(), str(time.time())

    return refresh, [workflow, workflows_table, tick]


def _need(value: str | None, what: str) -> str:
    if not (value or "").strip():
        raise ValidationError(f"Choose a {what} first")
    return value.strip()  # type: ignore[union-attr]


def _workflow_source(file_bytes: bytes | None, text: str | None) -> bytes | str:
    if file_bytes:
        return file_bytes
    if text and text.strip():
        return text
    raise ValidationError("Upload an API-format workflow file or paste its JSON")
