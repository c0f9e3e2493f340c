"""ComfyUI tab: sessions, workflows, generation with live progress, reproduction, sweeps.

A page follows one session at a time: whatever starts work (Generate, a sweep, a re-run)
or shows a session (opening it, a page load, opening the tab) follows that session's
queued and running generations to their end — so a reloaded page picks up the runs it
left. The newest follower of a browser session wins; older ones stop at their next yield.

The tab renders (`render`: the layout, a ComfyView), then listens (`listen`): the session
bar and form here, following runs in ui/comfyui_follow.py, the Workflows accordion in
ui/comfyui_workflows.py; what they show is ui/comfyui_updates.py. Updates are dicts
({component: value}): each callback says only what it changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from spoonfeeder.comfyui.params import SWEEPABLE
from spoonfeeder.context import AppContext
from spoonfeeder.serialize import jsonable
from ui.comfyui_follow import (
    LIVE,
    Follow,
    listen_follow,
    listen_generate,
    listen_rerun,
    listen_sweep,
)
from ui.comfyui_format import FORM_KEYS, GENERATION_COLUMNS, LORA_HEADERS, describe_generation
from ui.comfyui_updates import (
    DEFAULT_SERVER,
    fill_form,
    need,
    options_updates,
    server_choices,
    session_results,
    session_update,
    show_session,
    workflow_choices,
    workflow_rows,
)
from ui.comfyui_workflows import listen_workflows, render_workflows
from ui.common import Refresh, api, api_json, selected_row_id, shows_errors
from ui.tab import Confirm, hidden_row, listen_confirm, new_tick, render_tick, shown_row


@dataclass
class ComfyView:
    # the session bar
    session: gr.Dropdown
    server: gr.Dropdown
    refresh_options: gr.Button
    session_name: gr.Textbox
    new: gr.Button
    rename: gr.Button
    delete: gr.Button
    also_generations: gr.Checkbox
    confirm: Confirm  # deleting the session (no question: the checkbox says what goes)
    notice: gr.Markdown
    # the form
    workflow: gr.Dropdown
    prompt: gr.Textbox
    negative: gr.Textbox
    input_image: gr.Image
    width: gr.Number
    height: gr.Number
    steps: gr.Number
    cfg: gr.Number
    denoise: gr.Number
    sampler: gr.Dropdown
    scheduler: gr.Dropdown
    seed: gr.Number
    checkpoint: gr.Dropdown
    loras: gr.Dataframe
    lora_names: gr.Markdown
    batch_size: gr.Number
    batch_count: gr.Number
    generate: gr.Button
    interrupt: gr.Button
    # the sweep
    axis1: gr.Dropdown
    values1: gr.Textbox
    axis2: gr.Dropdown
    values2: gr.Textbox
    sweep: gr.Button
    # the results
    progress: gr.Markdown
    preview: gr.Image
    gallery: gr.Gallery
    newer: gr.Button
    gallery_info: gr.Markdown
    older: gr.Button
    video: gr.Video
    audio: gr.Audio
    generations: gr.Dataframe
    selected: gr.Textbox
    reuse: gr.Button
    rerun: gr.Button
    snapshot: gr.Button
    sweep_grid: gr.Gallery
    sweep_picture: gr.Image
    details: gr.Markdown
    snapshot_file: gr.File
    # the Workflows accordion
    workflows_table: gr.Dataframe
    wf_name: gr.Textbox
    wf_file: gr.File
    wf_text: gr.Code
    inspect: gr.Button
    import_: gr.Button
    make_default: gr.Button
    wf_delete: gr.Button
    wf_confirm: Confirm
    wf_info: gr.JSON
    wf_defaults: gr.Code
    save_defaults: gr.Button
    # hidden
    results_tick: gr.Textbox  # a follower's "read the gallery and table again"
    running: gr.State  # the generations this page follows
    page: gr.State  # this page, for "the newest follower wins"
    gallery_page: gr.State
    gallery_ids: gr.State  # the generation behind each gallery image
    tick: gr.Textbox  # set by the tab refresh: restores the session

    # The lists below are the events' inputs and outputs: their order is the API's.

    def form(self) -> list[Any]:
        """The form fields in FORM_KEYS order (the generate endpoint's arguments)."""
        return [
            *(self.prompt, self.negative, self.width, self.height, self.steps, self.cfg),
            *(self.sampler, self.scheduler, self.seed, self.checkpoint, self.batch_size),
            self.loras,
        ]

    def by_key(self) -> dict[str, Any]:
        """Each parameter's field, those only some workflows take too."""
        fields = dict(zip(FORM_KEYS, self.form(), strict=True))
        return fields | {"denoise": self.denoise, "image": self.input_image}

    def results(self) -> list[Any]:
        return [
            *(self.progress, self.preview, self.gallery, self.video, self.audio),
            *(self.generations, self.gallery_info),
        ]

    def options(self) -> list[Any]:
        """What the server offers."""
        return [self.sampler, self.scheduler, self.checkpoint, self.lora_names]

    def filled(self) -> list[Any]:
        """What filling the form sets."""
        return [self.workflow, *self.form(), self.batch_count, self.denoise, self.input_image]

    def shown(self) -> list[Any]:
        return [*self.results(), self.gallery_page, self.gallery_ids, self.details, self.notice]

    def opened(self) -> list[Any]:
        """What showing a session sets."""
        bar = [self.session, self.server, self.session_name]
        return [*bar, *self.filled(), *self.shown(), *self.options(), self.running]

    def gallery_outputs(self) -> list[Any]:
        return [
            *(self.gallery, self.gallery_ids, self.gallery_page, self.gallery_info),
            *(self.video, self.audio, self.generations),
        ]

    # What followers stream (each a generator: see LiveOutputs), scripts' positions kept.

    def follow_outputs(self) -> list[Any]:
        return [self.progress, self.preview, self.results_tick, self.running]

    def followed(self) -> list[Any]:
        return [*self.follow_outputs(), *self.gallery_outputs()]

    def generate_outputs(self) -> list[Any]:
        return [
            *(self.session, *self.results(), self.running, self.gallery_page),
            *(self.gallery_ids, self.notice, self.results_tick),
        ]

    def sweep_outputs(self) -> list[Any]:
        return [*self.generate_outputs(), self.sweep_grid, self.sweep_picture]

    def rerun_outputs(self) -> list[Any]:
        return [
            *(*self.results(), self.running, self.gallery_page, self.gallery_ids),
            *(self.session, self.results_tick),
        ]


def build(ctx: AppContext) -> Refresh:
    view = render(ctx)
    return listen(ctx, view)


# ----- render -----------------------------------------------------------------------------


def render(ctx: AppContext) -> ComfyView:
    gr.Markdown(
        "Generate with ComfyUI. Every generation keeps the exact workflow it posted, so any "
        "result can be re-run exactly."
    )
    bar = _render_session_bar(ctx)
    with gr.Row():
        with gr.Column(scale=2):
            form = _render_form(ctx)
            sweep = _render_sweep()
        with gr.Column(scale=3):
            results = _render_results()
    workflows = render_workflows()
    hidden = {
        "results_tick": gr.Textbox(visible=False),
        "running": gr.State([]),
        "page": gr.State(lambda: uuid.uuid4().hex),
        "gallery_page": gr.State(0),
        "gallery_ids": gr.State([]),
        "tick": render_tick(),
    }
    return ComfyView(**bar, **form, **sweep, **results, **workflows, **hidden)


def _render_session_bar(ctx: AppContext) -> dict[str, Any]:
    with gr.Row():
        session = gr.Dropdown(
            [], label="Session", allow_custom_value=True, scale=3, elem_id="cf-session"
        )
        server = gr.Dropdown(
            server_choices(ctx),
            value=DEFAULT_SERVER,
            label="ComfyUI server",
            allow_custom_value=True,
            scale=3,
            elem_id="cf-server",
        )
        refresh_options = gr.Button("Refresh server lists", scale=1, elem_id="cf-refresh")
    with gr.Row():
        session_name = gr.Textbox(
            label="Session name", placeholder="New session name", scale=3, elem_id="cf-name"
        )
        new = gr.Button("New session", scale=1, elem_id="cf-new")
        rename = gr.Button("Rename", scale=1, elem_id="cf-rename")
        delete = gr.Button("Delete session", variant="stop", scale=1, elem_id="cf-delete")
    with gr.Row(visible=False) as confirm_row:
        also_generations = gr.Checkbox(
            label="Also delete its generations and their files", elem_id="cf-delete-gens"
        )
        yes = gr.Button("Yes, delete the session", variant="stop", elem_id="cf-confirm")
        no = gr.Button("Keep it")
    return {
        "session": session,
        "server": server,
        "refresh_options": refresh_options,
        "session_name": session_name,
        "new": new,
        "rename": rename,
        "delete": delete,
        "also_generations": also_generations,
        "confirm": Confirm(confirm_row, None, yes, no),
        "notice": gr.Markdown(elem_id="cf-notice"),
    }


def _render_form(ctx: AppContext) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "workflow": gr.Dropdown(
            workflow_choices(ctx), label="Workflow", allow_custom_value=True, elem_id="cf-workflow"
        ),
        "prompt": gr.Textbox(label="Prompt", lines=3, elem_id="cf-prompt"),
        "negative": gr.Textbox(label="Negative prompt", lines=2, elem_id="cf-negative"),
        "input_image": gr.Image(
            label="Input image",
            type="filepath",
            sources=["upload", "clipboard"],
            height=220,
            visible=False,
            elem_id="cf-image",
        ),
    }
    with gr.Row():
        fields["width"] = gr.Number(label="Width", precision=0, step=8, elem_id="cf-width")
        fields["height"] = gr.Number(label="Height", precision=0, step=8, elem_id="cf-height")
    with gr.Row():
        fields["steps"] = gr.Number(label="Steps", precision=0, elem_id="cf-steps")
        fields["cfg"] = gr.Number(label="CFG", step=0.5, elem_id="cf-cfg")
        fields["denoise"] = gr.Number(
            label="Denoise (how far from the input image, 0–1)",
            minimum=0,
            maximum=1,
            step=0.05,
            visible=False,
            elem_id="cf-denoise",
        )
    with gr.Row():
        for key, label in (("sampler", "Sampler"), ("scheduler", "Scheduler")):
            fields[key] = gr.Dropdown([], label=label, allow_custom_value=True, elem_id=f"cf-{key}")
    with gr.Row():
        fields["seed"] = gr.Number(-1, label="Seed (-1 = random)", precision=0, elem_id="cf-seed")
        fields["checkpoint"] = gr.Dropdown(
            [], label="Checkpoint", allow_custom_value=True, elem_id="cf-checkpoint"
        )
    fields["loras"] = gr.Dataframe(
        headers=LORA_HEADERS,
        datatype=["str", "number", "number"],
        type="array",
        row_count=1,
        interactive=True,
        label="LoRAs (name and strengths; leave the name blank for none)",
        elem_id="cf-loras",
    )
    fields["lora_names"] = gr.Markdown(elem_id="cf-lora-names")
    with gr.Row():
        fields["batch_size"] = gr.Number(1, label="Batch size", precision=0, elem_id="cf-batch")
        fields["batch_count"] = gr.Number(
            1, label="Batch count", precision=0, minimum=1, elem_id="cf-count"
        )
    with gr.Row():
        fields["generate"] = gr.Button("Generate", variant="primary", elem_id="cf-generate")
        fields["interrupt"] = gr.Button("Interrupt", variant="stop", elem_id="cf-interrupt")
    return fields


def _render_sweep() -> dict[str, Any]:
    with gr.Accordion("Parameter sweep", open=False):
        with gr.Row():
            axis1 = gr.Dropdown(list(SWEEPABLE), value="cfg", label="Vary", elem_id="cf-axis1")
            values1 = gr.Textbox(label="Values", placeholder="4, 6, 8", elem_id="cf-values1")
        with gr.Row():
            axis2 = gr.Dropdown(
                ["", *SWEEPABLE], value="", label="and (optional)", elem_id="cf-axis2"
            )
            values2 = gr.Textbox(label="Values", placeholder="20, 30", elem_id="cf-values2")
        sweep = gr.Button("Run sweep", elem_id="cf-sweep")
    return {"axis1": axis1, "values1": values1, "axis2": axis2, "values2": values2, "sweep": sweep}


def _render_results() -> dict[str, Any]:
    shown: dict[str, Any] = {
        "progress": gr.Markdown(elem_id="cf-progress"),
        "preview": gr.Image(label="Preview", height=256, interactive=False, elem_id="cf-preview"),
        "gallery": gr.Gallery(
            label="Results (click one to select it)",
            columns=4,
            height="auto",
            elem_id="cf-gallery",
            interactive=False,
        ),
    }
    with gr.Row():
        shown["newer"] = gr.Button("‹ Newer", size="sm", scale=1, elem_id="cf-newer")
        shown["gallery_info"] = gr.Markdown(elem_id="cf-gallery-info")
        shown["older"] = gr.Button("Older ›", size="sm", scale=1, elem_id="cf-older")
    with gr.Row():
        shown["video"] = gr.Video(label="Video", interactive=False, elem_id="cf-video")
        shown["audio"] = gr.Audio(label="Audio", interactive=False, elem_id="cf-audio")
    shown["generations"] = gr.Dataframe(
        headers=GENERATION_COLUMNS,
        interactive=False,
        wrap=True,
        label="This session's generations (click one)",
        elem_id="cf-generations",
    )
    with gr.Row():
        shown["selected"] = gr.Textbox(label="Generation id", scale=3, elem_id="cf-selected")
        shown["reuse"] = gr.Button("Reuse parameters", scale=1, elem_id="cf-reuse")
        shown["rerun"] = gr.Button("Re-run exactly", scale=1, elem_id="cf-rerun")
        shown["snapshot"] = gr.Button("Download workflow", scale=1, elem_id="cf-snapshot")
    shown["sweep_grid"] = gr.Gallery(
        label="Sweep grid", columns=3, elem_id="cf-sweep-grid", interactive=False
    )
    shown["sweep_picture"] = gr.Image(
        label="Sweep grid as one image",
        type="filepath",
        interactive=False,
        elem_id="cf-sweep-image",
    )
    shown["details"] = gr.Markdown(elem_id="cf-details")
    shown["snapshot_file"] = gr.File(label="Workflow snapshot (API format)", elem_id="cf-file")
    return shown


# ----- listen -----------------------------------------------------------------------------


def listen(ctx: AppContext, view: ComfyView) -> Refresh:
    follow = Follow(ctx, view)
    opener = _session_opener(ctx, view)
    _listen_server(ctx, view)
    _listen_sessions(ctx, view, opener, follow)
    _listen_session_delete(ctx, view, opener, follow)
    _listen_workflow_form(ctx, view)
    listen_follow(follow)
    listen_generate(follow)
    listen_sweep(follow)
    listen_rerun(follow)
    _listen_selected(ctx, view)
    listen_workflows(ctx, view)
    _listen_restore(ctx, view, follow)

    def comfyui_generation(generation_id: str) -> dict:
        """One generation with its parameters, outputs and status, as JSON."""
        found = ctx.comfyui.generations.get(generation_id)
        return api_json(jsonable(found), ctx.comfyui.media.file)

    api(comfyui_generation, "comfyui_generation")

    def refresh() -> dict[Any, Any]:
        return {
            view.workflow: gr.Dropdown(choices=workflow_choices(ctx)),
            view.workflows_table: workflow_rows(ctx),
            view.tick: new_tick(),
        }

    return refresh, [view.workflow, view.workflows_table, view.tick]


def _listen_server(ctx: AppContext, view: ComfyView) -> None:
    @shows_errors
    def refresh_options(server_id: str, current: str | None):
        return options_updates(ctx, view, server_id, refresh=True, current=current)

    @shows_errors
    def change_server(session_id: str | None, server_id: str | None, current: str | None):
        if session_id:
            ctx.comfyui.sessions.set_profile(session_id, server_id or None)
        return options_updates(ctx, view, server_id, refresh=False, current=current)

    view.refresh_options.click(
        refresh_options,
        [view.server, view.checkpoint],
        [*view.options(), view.notice],
        api_name="refresh_comfyui_options",
    )
    view.server.input(
        change_server,
        [view.session, view.server, view.checkpoint],
        [*view.options(), view.notice],
        api_name="set_comfyui_server",
    )


def _session_opener(ctx: AppContext, view: ComfyView) -> Callable[..., Any]:
    """The handler that shows a session (a pick, a deletion): one, for two events."""

    @shows_errors
    def open_session(session_id: str | None):
        """Restore a session: its server, last parameters and generations."""
        return show_session(ctx, view, session_id or None)

    return open_session


def _listen_sessions(
    ctx: AppContext, view: ComfyView, opener: Callable[..., Any], follow: Follow
) -> None:
    sessions = ctx.comfyui.sessions

    @shows_errors
    def create_session(name: str, server_id: str | None):
        made = sessions.create(name, profile_id=server_id or None)
        return {
            view.session: session_update(ctx, str(made.id)),
            view.progress: "",
            view.preview: None,
            view.details: "",
            view.notice: "",
            view.sweep_grid: [],
            view.sweep_picture: None,
            view.selected: "",
            **session_results(ctx, view, str(made.id)),
        }

    @shows_errors
    def rename_session(session_id: str | None, name: str):
        renamed = sessions.rename(need(session_id, "session"), name)
        return session_update(ctx, str(renamed.id))

    view.session.input(opener, view.session, view.opened(), api_name="open_comfyui_session").then(
        follow.handler,
        [view.session, view.page],
        view.followed(),
        api_name="follow_comfyui_session",
        **LIVE,
    )
    view.new.click(
        create_session,
        [view.session_name, view.server],
        [view.session, *view.shown(), view.sweep_grid, view.sweep_picture, view.selected],
        api_name="create_session",
        show_progress="hidden",
    )
    view.rename.click(
        rename_session, [view.session, view.session_name], view.session, api_name="rename_session"
    )


def _listen_session_delete(
    ctx: AppContext, view: ComfyView, opener: Callable[..., Any], follow: Follow
) -> None:
    """Delete, in two steps: the button asks, the confirm row's yes deletes; then the
    page shows (and follows) no session."""
    sessions = ctx.comfyui.sessions

    @shows_errors
    def ask_delete(session_id: str | None):
        sessions.get(need(session_id, "session"))
        return shown_row()

    @shows_errors
    def delete_session(session_id: str | None, with_generations: bool):
        removed = sessions.delete(need(session_id, "session"), delete_generations=with_generations)
        gr.Info(f"Session deleted ({removed} generations deleted with it)")
        return {view.session: session_update(ctx, None), view.confirm.row: hidden_row()}

    view.delete.click(ask_delete, view.session, view.confirm.row, api_name="confirm_delete_session")
    listen_confirm(view.confirm)
    view.confirm.yes.click(
        delete_session,
        [view.session, view.also_generations],
        [view.session, view.confirm.row],
        api_name="delete_session",
    ).then(opener, view.session, view.opened(), api_visibility="private").then(
        follow.handler,
        [view.session, view.page],
        view.followed(),
        api_visibility="private",
        **LIVE,
    )


def _listen_workflow_form(ctx: AppContext, view: ComfyView) -> None:
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
        values = ctx.comfyui.sessions.form_parameters(session_id or None, workflow_id)
        update = fill_form(ctx, view, values)
        if (prompt_text or "").strip():
            update[view.prompt] = prompt_text
        if (negative_text or "").strip():
            update[view.negative] = negative_text
        return update

    view.workflow.input(
        change_workflow,
        [view.session, view.workflow, view.prompt, view.negative],
        view.filled(),
        api_name="comfyui_workflow_form",
        show_progress="hidden",
    )


def _listen_selected(ctx: AppContext, view: ComfyView) -> None:
    """The gallery and table pick a generation; its details, parameters and snapshot."""
    generations = ctx.comfyui.generations

    @shows_errors
    def show_generation(generation_id: str | None):
        if not (generation_id or "").strip():  # cleared (a new session): nothing to show
            return ""
        return describe_generation(generations.get(generation_id.strip()))

    @shows_errors
    def pick_from_gallery(ids: list[str], evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return ids[index] if 0 <= index < len(ids) else gr.skip()

    @shows_errors
    def newer_page(session_id: str | None, page: int | None):
        return session_results(ctx, view, session_id or None, int(page or 0) - 1)

    @shows_errors
    def older_page(session_id: str | None, page: int | None):
        return session_results(ctx, view, session_id or None, int(page or 0) + 1)

    @shows_errors
    def reuse_parameters(generation_id: str | None):
        return fill_form(ctx, view, generations.reuse_parameters(need(generation_id, "generation")))

    @shows_errors
    def download_snapshot(generation_id: str | None) -> str:
        return str(generations.export_snapshot(need(generation_id, "generation")))

    selected, paging = view.selected, [view.session, view.gallery_page]
    view.generations.select(selected_row_id, view.generations, selected, api_visibility="private")
    view.gallery.select(pick_from_gallery, view.gallery_ids, selected, api_visibility="private")
    for button, turn in ((view.newer, newer_page), (view.older, older_page)):
        button.click(turn, paging, view.gallery_outputs(), api_visibility="private")
    selected.change(
        show_generation, selected, view.details, api_name="show_generation", show_progress="hidden"
    )
    view.reuse.click(reuse_parameters, selected, view.filled(), api_name="reuse_parameters")
    view.snapshot.click(
        download_snapshot, selected, view.snapshot_file, api_name="download_snapshot"
    )


def _listen_restore(ctx: AppContext, view: ComfyView, follow: Follow) -> None:
    @shows_errors
    def restore(session_id: str | None, prompt_text: str | None, checkpoint_name: str | None):
        """Page load and tab open: reopen the session (the newest if none is chosen) and
        re-read its results — never overwriting a form being filled in. Its runs are
        followed by the event after (a reloaded page picks up the runs it left)."""
        if not session_id:
            newest = ctx.comfyui.sessions.list_all()[:1]
            session_id = str(newest[0].id) if newest else None
        typing = bool((prompt_text or "").strip())
        return show_session(ctx, view, session_id, (checkpoint_name or "") if typing else None)

    view.tick.change(
        restore,
        [view.session, view.prompt, view.checkpoint],
        view.opened(),
        api_visibility="private",
    ).then(
        follow.handler,
        [view.session, view.page],
        view.followed(),
        api_visibility="private",
        **LIVE,
    )
