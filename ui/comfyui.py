"""ComfyUI tab: sessions, workflows, generation with live progress, reproduction, sweeps."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from spoonfeeder.comfyui.params import SWEEPABLE
from spoonfeeder.comfyui.views import GenerationView, SweepView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.serialize import jsonable
from ui.comfyui_format import (
    GENERATION_COLUMNS,
    LORA_HEADERS,
    describe_generation,
    form_parameters,
    form_values,
    generation_row,
    placeholder,
    run_summary,
    session_choices,
)
from ui.common import Refresh, selected_row_id, shows_errors

DEFAULT_SERVER = ""  # the ComfyUI provider setting; otherwise a profile id
# A run's live view gives up after this long (the runs go on; the session shows them).
QUIET_LIMIT_SECONDS = 30 * 60
# The gallery shows the outputs of this many of a session's newest generations.
GALLERY_GENERATIONS = 60


# ----- the tab -------------------------------------------------------------------------------


def build(ctx: AppContext) -> Refresh:
    service = ctx.comfyui

    def media_path(relative: str) -> str:
        return str(service.media_file(relative))

    def outputs_of(generations: list[GenerationView]) -> tuple[list, str | None, str | None]:
        """Gallery items (images), and the newest video and audio file."""
        images, video, audio = [], None, None
        for g in generations:
            for out in g.outputs:
                try:
                    path = media_path(out.path)
                except Exception:  # a file removed by hand: show the rest
                    continue
                caption = g.label or f"seed {g.seed}"
                if out.kind == "image":
                    images.append((path, caption))
                elif out.kind == "video" and video is None:
                    video = path
                elif out.kind == "audio" and audio is None:
                    audio = path
        return images, video, audio

    def server_choices() -> list[tuple[str, str]]:
        return [("Default ComfyUI server (Settings)", DEFAULT_SERVER)] + [
            (f"{p.name} ({p.url})", str(p.id))
            for p in ctx.profiles.list_profiles()
            if p.provider == "comfyui"
        ]

    def workflow_choices() -> list[tuple[str, str]]:
        return [
            (w.name + (" ★" if w.is_default else ""), str(w.id)) for w in service.list_workflows()
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
            with gr.Row():
                width = gr.Number(label="Width", precision=0, step=8, elem_id="cf-width")
                height = gr.Number(label="Height", precision=0, step=8, elem_id="cf-height")
            with gr.Row():
                steps = gr.Number(label="Steps", precision=0, elem_id="cf-steps")
                cfg = gr.Number(label="CFG", step=0.5, elem_id="cf-cfg")
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
                label="Results", columns=4, height="auto", elem_id="cf-gallery", interactive=False
            )
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
            wf_delete_btn = gr.Button("Delete the selected workflow", variant="stop")
        wf_info = gr.JSON(label="Parameters found", elem_id="cf-wf-info")
        wf_defaults = gr.Code(
            label="Default parameters of the selected workflow (JSON; edit and save)",
            language="json",
            lines=8,
            elem_id="cf-wf-defaults",
        )
        save_defaults_btn = gr.Button("Save defaults", elem_id="cf-wf-save")

    form = [prompt, negative, width, height, steps, cfg, sampler, scheduler, seed]
    form += [checkpoint, batch_size, loras]
    results = [progress, preview, gallery, video, audio, generations]

    # ----- reading ---------------------------------------------------------------------------

    def session_results(session_id: str | None) -> tuple[list, str | None, str | None, list]:
        """A session's gallery images, newest video and audio, and its table: one read."""
        gens = service.list_generations(session_id, limit=200) if session_id else []
        images, video_path, audio_path = outputs_of(gens[:GALLERY_GENERATIONS])
        return images, video_path, audio_path, [generation_row(g) for g in gens]

    def options_updates(server_id: str, refresh: bool):
        opts = service.options(server_id or None, refresh=refresh)
        return (
            gr.Dropdown(choices=opts.samplers),
            gr.Dropdown(choices=opts.schedulers),
            gr.Dropdown(choices=opts.checkpoints),
            "Available LoRAs: " + (", ".join(opts.loras) if opts.loras else "none"),
        )

    def fill_form(values: dict[str, Any]) -> list[Any]:
        return [values.get("workflow_id"), *form_values(values), values.get("batch_count") or 1]

    def workflow_rows() -> list[list[Any]]:
        return [
            [w.name, "★" if w.is_default else "", ", ".join(w.extracted), w.generation_count]
            for w in service.list_workflows()
        ]

    # ----- callbacks -------------------------------------------------------------------------

    @shows_errors
    def refresh_options(server_id: str):
        return options_updates(server_id, refresh=True)

    @shows_errors
    def open_session(session_id: str):
        """Restore a session: its server, last parameters and generations."""
        if not session_id:
            values = service.form_parameters()
            return (DEFAULT_SERVER, *fill_form(values), "", [], [], None, None)
        view = service.get_session(session_id)
        values = service.form_parameters(view.id)
        images, video_path, audio_path, table = session_results(session_id)
        return (
            str(view.profile_id) if view.profile_id else DEFAULT_SERVER,
            *fill_form(values),
            view.name,
            table,
            images,
            video_path,
            audio_path,
        )

    @shows_errors
    def create_session(name: str, server_id: str):
        view = service.create_session(name, profile_id=server_id or None)
        return gr.Dropdown(choices=session_choices(service.list_sessions()), value=str(view.id))

    @shows_errors
    def rename_session(session_id: str, name: str):
        view = service.rename_session(_need(session_id, "session"), name)
        return gr.Dropdown(choices=session_choices(service.list_sessions()), value=str(view.id))

    @shows_errors
    def ask_delete(session_id: str):
        service.get_session(_need(session_id, "session"))
        return gr.Row(visible=True)

    @shows_errors
    def delete_session(session_id: str, with_generations: bool):
        removed = service.delete_session(
            _need(session_id, "session"), delete_generations=with_generations
        )
        gr.Info(f"Session deleted ({removed} generations deleted with it)")
        return (
            gr.Dropdown(choices=session_choices(service.list_sessions()), value=None),
            gr.Row(visible=False),
        )

    @shows_errors
    def change_server(session_id: str, server_id: str):
        if session_id:
            service.set_session_profile(session_id, server_id or None)
        return options_updates(server_id, refresh=False)

    def watch(ids: list[str], session_id: str | None) -> Iterator[tuple]:
        """Live progress of these generations until all are done (events, and the database
        for ends the events did not bring)."""
        done: set[str] = set()
        yield (f"Queued {len(ids)} generation(s)…", *[gr.skip()] * 5, ids)
        for event in service.follow(ids, timeout=QUIET_LIMIT_SECONDS):
            shown = gr.skip()
            if event.get("preview_path"):
                # A preview already replaced is skipped: the next one comes.
                with contextlib.suppress(Exception):
                    shown = media_path(event["preview_path"])
            text = f"**{min(len(done) + 1, len(ids))} of {len(ids)}** · {event.get('message', '')}"
            if event.get("status") in ("completed", "failed", "cancelled"):
                done.add(event["generation_id"])
                images, video_path, audio_path, table = session_results(session_id)
                yield (text, shown, images, video_path, audio_path, table, ids)
            else:
                yield (text, shown, *[gr.skip()] * 4, ids)
        finished = [service.get_generation(gid) for gid in ids]
        images, video_path, audio_path, table = session_results(session_id)
        yield (run_summary(finished), gr.skip(), images, video_path, audio_path, table, [])

    @shows_errors
    def generate(session_id, server_id, workflow_id, *values):
        *form_vals, count = values
        session_id = session_id or _new_session_for(form_vals[0], server_id)
        gens = service.generate(
            session_id,
            form_parameters(form_vals),
            workflow_id=workflow_id or None,
            batch_count=int(count or 1),
        )
        yield (_session_update(session_id), *[gr.skip()] * 7)
        yield from ((gr.skip(), *out) for out in watch([str(g.id) for g in gens], session_id))
        yield (_session_update(session_id), *[gr.skip()] * 7)  # its counts changed

    @shows_errors
    def run_sweep(session_id, server_id, workflow_id, a1, v1, a2, v2, *form_vals):
        session_id = session_id or _new_session_for(form_vals[0], server_id)
        axes = [(a1, v1)] + ([(a2, v2)] if a2 else [])
        sweep = service.sweep(
            session_id, form_parameters(form_vals), axes, workflow_id=workflow_id or None
        )
        yield (_session_update(session_id), *[gr.skip()] * 8)
        for out in watch([str(g.id) for g in sweep.generations], session_id):
            yield (gr.skip(), *out, gr.skip())
        grid = sweep_gallery(service.sweep_grid(sweep.id))
        yield (_session_update(session_id), *[gr.skip()] * 7, grid)

    def sweep_gallery(sweep: SweepView) -> gr.Gallery:
        """One image per cell, in rows of the last axis's values: a labelled grid."""
        items = []
        for g in sweep.generations:
            images, _, _ = outputs_of([g])
            if images:
                items.append((images[0][0], g.label))
            else:  # failed or cancelled: the cell stays, saying so
                items.append((placeholder(), f"{g.label} — {g.status}"))
        return gr.Gallery(value=items, columns=len(sweep.axes[-1][1]))

    def _session_update(session_id: str):
        return gr.Dropdown(choices=session_choices(service.list_sessions()), value=session_id)

    def _new_session_for(prompt_text: str, server_id: str) -> str:
        title = " ".join((prompt_text or "").split())[:40] or "Untitled"
        existing = {s.name for s in service.list_sessions()}
        name, n = title, 2
        while name in existing:
            name, n = f"{title} ({n})", n + 1
        return str(service.create_session(name, profile_id=server_id or None).id)

    @shows_errors
    def interrupt(running: list[str] | None):
        running = running or []
        if not running:
            raise ValidationError("Nothing is running from this page")
        for gid in running:
            if not service.get_generation(gid).done:
                service.cancel(gid)
        return "Interrupting…"

    @shows_errors
    def show_generation(generation_id: str):
        g = service.get_generation(_need(generation_id, "generation"))
        images, video_path, audio_path = outputs_of([g])
        return describe_generation(g), images, video_path, audio_path

    @shows_errors
    def reuse_parameters(generation_id: str):
        values = service.reuse_parameters(_need(generation_id, "generation"))
        return fill_form(values)

    @shows_errors
    def rerun_exactly(generation_id: str, session_id: str):
        g = service.rerun_exact(_need(generation_id, "generation"))
        target_session = str(g.session_id) if g.session_id else session_id
        yield from ((*out, gr.skip()) for out in watch([str(g.id)], target_session))
        yield (*[gr.skip()] * 7, _session_update(target_session))  # its counts changed

    @shows_errors
    def download_snapshot(generation_id: str) -> str:
        return str(service.export_snapshot(_need(generation_id, "generation")))

    @shows_errors
    def inspect(file_bytes: bytes | None, text: str):
        return service.inspect_workflow(_workflow_source(file_bytes, text))

    @shows_errors
    def import_workflow(name: str, file_bytes: bytes | None, text: str):
        view = service.import_workflow(name, _workflow_source(file_bytes, text))
        gr.Info(f"Imported “{view.name}”: {', '.join(view.extracted) or 'no parameters found'}")
        return gr.Dropdown(choices=workflow_choices(), value=str(view.id)), workflow_rows()

    @shows_errors
    def make_default(workflow_id: str):
        service.set_default_workflow(_need(workflow_id, "workflow"))
        return gr.Dropdown(choices=workflow_choices(), value=workflow_id), workflow_rows()

    @shows_errors
    def delete_workflow(workflow_id: str):
        name = service.delete_workflow(_need(workflow_id, "workflow"))
        gr.Info(f"Deleted workflow “{name}”; its generations keep their snapshots")
        return gr.Dropdown(choices=workflow_choices(), value=None), workflow_rows()

    @shows_errors
    def show_defaults(workflow_id: str):
        if not workflow_id:
            return ""
        return json.dumps(service.get_workflow(workflow_id).parameters, indent=2)

    @shows_errors
    def save_defaults(workflow_id: str, text: str):
        try:
            defaults = json.loads(text or "{}")
        except ValueError as exc:
            raise ValidationError(f"The defaults are not valid JSON: {exc}") from None
        if not isinstance(defaults, dict):
            raise ValidationError('The defaults must be a JSON object, e.g. {"steps": 25}')
        service.update_workflow(_need(workflow_id, "workflow"), defaults=defaults)
        gr.Info("Defaults saved")
        return workflow_rows()

    # ----- wiring ----------------------------------------------------------------------------

    running = gr.State([])
    option_outputs = [sampler, scheduler, checkpoint, lora_names]
    refresh_options_btn.click(
        refresh_options, server, option_outputs, api_name="refresh_comfyui_options"
    )
    server.input(change_server, [session, server], option_outputs, api_name="set_comfyui_server")
    session.input(
        open_session,
        session,
        [server, workflow, *form, batch_count, session_name, generations, gallery, video, audio],
        api_name="open_comfyui_session",
    )
    new_btn.click(create_session, [session_name, server], session, api_name="create_session")
    rename_btn.click(rename_session, [session, session_name], session, api_name="rename_session")
    delete_btn.click(ask_delete, session, confirm_row, api_name="confirm_delete_session")
    keep_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm_btn.click(
        delete_session,
        [session, also_generations],
        [session, confirm_row],
        api_name="delete_session",
    ).then(
        open_session,
        session,
        [server, workflow, *form, batch_count, session_name, generations, gallery, video, audio],
        api_visibility="private",
    )
    generate_btn.click(
        generate,
        [session, server, workflow, *form, batch_count],
        [session, *results, running],
        api_name="comfyui_generate",
        show_progress="hidden",
    )
    sweep_btn.click(
        run_sweep,
        [session, server, workflow, axis1, values1, axis2, values2, *form],
        [session, *results, running, sweep_grid],
        api_name="comfyui_sweep",
        show_progress="hidden",
    )
    interrupt_btn.click(interrupt, running, progress, api_name="comfyui_interrupt")
    generations.select(selected_row_id, generations, selected, api_visibility="private")
    selected.change(
        show_generation,
        selected,
        [details, gallery, video, audio],
        api_name="show_generation",
        show_progress="hidden",
    )
    reuse_btn.click(
        reuse_parameters, selected, [workflow, *form, batch_count], api_name="reuse_parameters"
    )
    rerun_btn.click(
        rerun_exactly,
        [selected, session],
        [*results, running, session],
        api_name="rerun_exactly",
        show_progress="hidden",
    )
    snapshot_btn.click(download_snapshot, selected, snapshot_file, api_name="download_snapshot")
    inspect_btn.click(inspect, [wf_file, wf_text], wf_info, api_name="inspect_workflow")
    import_btn.click(
        import_workflow,
        [wf_name, wf_file, wf_text],
        [workflow, workflows_table],
        api_name="import_workflow",
    )
    default_btn.click(
        make_default, workflow, [workflow, workflows_table], api_name="set_default_workflow"
    )
    wf_delete_btn.click(
        delete_workflow, workflow, [workflow, workflows_table], api_name="delete_workflow"
    )
    workflow.change(show_defaults, workflow, wf_defaults, api_visibility="private")
    save_defaults_btn.click(
        save_defaults, [workflow, wf_defaults], workflows_table, api_name="save_workflow_defaults"
    )

    def comfyui_generation(generation_id: str) -> dict:
        """One generation with its parameters, outputs and status, as JSON."""
        return jsonable(service.get_generation(generation_id))

    gr.api(comfyui_generation, api_name="comfyui_generation")

    @shows_errors
    def restore(session_id: str | None, prompt_text: str | None):
        """On page load and tab open: reopen the session (the newest if none is chosen)
        and re-read its results — but never overwrite a form the user is filling in."""
        sessions = service.list_sessions()
        if not session_id and sessions:
            session_id = str(sessions[0].id)
        opened = open_session(session_id or "")
        server_id = opened[0]
        try:
            opts = options_updates(server_id, refresh=False)
        except Exception:  # ComfyUI may be off: the form still works, lists stay empty
            opts = (gr.skip(), gr.skip(), gr.skip(), "ComfyUI is not reachable right now.")
        typing = bool((prompt_text or "").strip())
        form_part = [gr.skip()] * 15 if typing else list(opened[1:16])
        return (
            gr.Dropdown(choices=session_choices(sessions), value=session_id or None),
            gr.Dropdown(choices=server_choices(), value=server_id),
            *form_part,  # workflow, the form, batch count, session name
            *opened[16:],  # generations, gallery, video, audio
            *opts,
        )

    tick = gr.Textbox(visible=False)  # set by the tab refresh: restores the session
    tick.change(
        restore,
        [session, prompt],
        [
            session,
            server,
            workflow,
            *form,
            batch_count,
            session_name,
            generations,
            gallery,
            video,
            audio,
            *option_outputs,
        ],
        api_visibility="private",
        show_progress="hidden",
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
