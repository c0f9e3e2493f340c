"""What the ComfyUI tab shows, as updates keyed by its components: a session's results,
the server's options, the form filled from parameters, a whole session on the page.
Reads of the services and formatting only; the events are wired in ui/comfyui*.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from ui.comfyui_format import (
    LORA_HEADERS,
    form_parameters,
    form_values,
    gallery_summary,
    generation_row,
    session_choices,
)

if TYPE_CHECKING:
    from ui.comfyui import ComfyView

DEFAULT_SERVER = ""  # the ComfyUI provider setting; otherwise a profile id
GALLERY_PAGE = 24  # completed generations per gallery page
# Form fields only some workflows have: shown when the chosen workflow takes them.
WORKFLOW_FIELDS = ("width", "height", "batch_size", "denoise", "image")


def need(value: str | None, what: str) -> str:
    if not (value or "").strip():
        raise ValidationError(f"Choose a {what} first")
    return value.strip()  # type: ignore[union-attr]


# ----- choices and rows ---------------------------------------------------------------------


def server_choices(ctx: AppContext) -> list[tuple[str, str]]:
    return [("Default ComfyUI server (Settings)", DEFAULT_SERVER)] + [
        (f"{p.name} ({p.url})", str(p.id)) for p in ctx.comfyui.servers.profiles()
    ]


def workflow_choices(ctx: AppContext) -> list[tuple[str, str]]:
    return [
        (w.name + (" ★" if w.is_default else ""), str(w.id))
        for w in ctx.comfyui.workflows.list_all()
    ]


def workflow_rows(ctx: AppContext) -> list[list[Any]]:
    return [
        [w.name, "★" if w.is_default else "", ", ".join(w.extracted), w.generation_count]
        for w in ctx.comfyui.workflows.list_all()
    ]


def session_update(ctx: AppContext, session_id: str | None) -> gr.Dropdown:
    choices = session_choices(ctx.comfyui.sessions.list_all())
    return gr.Dropdown(choices=choices, value=session_id)


# ----- results --------------------------------------------------------------------------------


def media_path(ctx: AppContext, relative: str) -> str:
    return str(ctx.comfyui.media.file(relative))


def outputs_of(
    ctx: AppContext, generations: list[GenerationView]
) -> tuple[list, list, str | None, str | None]:
    """Gallery items (images) with the generation behind each, and the newest video and
    audio file."""
    images, ids, video, audio = [], [], None, None
    for g in generations:
        for out in g.outputs:
            try:
                path = media_path(ctx, out.path)
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


def session_results(
    ctx: AppContext, view: ComfyView, session_id: str | None, page: int = 0
) -> dict[Any, Any]:
    """A session's gallery page (completed work, newest first), its newest video and
    audio, and its table of generations: what the database says now."""
    if not session_id:
        return {
            view.gallery: [],
            view.gallery_ids: [],
            view.gallery_page: 0,
            view.gallery_info: "",
            view.video: None,
            view.audio: None,
            view.generations: [],
        }
    stored = ctx.comfyui.generations
    found = stored.gallery_page(session_id, page, GALLERY_PAGE)
    images, ids, video_path, audio_path = outputs_of(ctx, found.generations)
    return {
        view.gallery: images,
        view.gallery_ids: ids,
        view.gallery_page: found.page,
        view.gallery_info: gallery_summary(found),
        view.video: video_path,
        view.audio: audio_path,
        view.generations: [generation_row(g) for g in stored.list_all(session_id, limit=200)],
    }


# ----- the form -------------------------------------------------------------------------------


def options_updates(
    ctx: AppContext,
    view: ComfyView,
    server_id: str | None,
    refresh: bool,
    current: str | None = None,
    values: dict[str, Any] | None = None,
) -> dict[Any, Any]:
    """The server's samplers, schedulers, checkpoints and LoRAs — with the form's values
    when `values` fills it. A checkpoint the server does not have (`current`: the
    built-in workflow's, on a fresh install) gives way to one it has, and the notice
    says so."""
    opts = ctx.comfyui.servers.options(server_id or None, refresh=refresh)

    def dropdown(choices: list[str], key: str) -> gr.Dropdown:
        if values is None:  # leave the value as it is in the browser
            return gr.Dropdown(choices=choices)
        return gr.Dropdown(choices=choices, value=values.get(key))

    update: dict[Any, Any] = {
        view.sampler: dropdown(opts.samplers, "sampler_name"),
        view.scheduler: dropdown(opts.schedulers, "scheduler"),
        view.checkpoint: dropdown(opts.checkpoints, "checkpoint"),
        view.lora_names: "Available LoRAs: " + (", ".join(opts.loras) if opts.loras else "none"),
    }
    if current and opts.checkpoints and current not in opts.checkpoints:
        update[view.checkpoint] = gr.Dropdown(choices=opts.checkpoints, value=opts.checkpoints[0])
        update[view.notice] = (
            f"ℹ️ The checkpoint {current!r} is not on this ComfyUI server; "
            f"**{opts.checkpoints[0]}** is chosen instead."
        )
    return update


def fill_form(ctx: AppContext, view: ComfyView, values: dict[str, Any]) -> dict[Any, Any]:
    """The form from parameters: each field's value, and the fields this workflow takes
    shown (denoise and an input image only where it has them)."""
    takes = set(ctx.comfyui.workflows.get(values["workflow_id"]).extracted)
    by_key = view.by_key()
    update: dict[Any, Any] = {view.workflow: values["workflow_id"]}
    update |= dict(zip(view.form(), form_values(values), strict=True))
    # Named columns, and a blank row to type into: an empty list loses the headers.
    lora_rows = update[view.loras] or [["", None, None]]
    update[view.loras] = pd.DataFrame(lora_rows, columns=LORA_HEADERS)
    update[view.batch_count] = values.get("batch_count") or 1
    for key in WORKFLOW_FIELDS[:4]:
        update[by_key[key]] = gr.Number(value=values.get(key), visible=key in takes)
    update[view.input_image] = _input_image(ctx, values.get("image"), "image" in takes)
    return update


def _input_image(ctx: AppContext, name: str | None, visible: bool) -> gr.Image:
    """The image field: the stored file of `name`, or — when it is only the server's
    own file — a label saying that one is used."""
    image_file = ctx.comfyui.media.input_image(name)
    label = "Input image"
    if name and image_file is None:
        label = f"Input image — none chosen: the server's {name!r} is used"
    return gr.Image(value=str(image_file) if image_file else None, visible=visible, label=label)


def request_parameters(
    ctx: AppContext, workflow_id: str | None, form_vals: list[Any], denoise: Any, image: str | None
) -> dict[str, Any]:
    """What the form asks for (its values in FORM_KEYS order)."""
    parameters = form_parameters(form_vals)
    if denoise is not None:
        parameters["denoise"] = denoise
    return parameters | ctx.comfyui.workflows.image_parameter(workflow_id or None, image)


# ----- a session on the page ------------------------------------------------------------------


def show_session(
    ctx: AppContext, view: ComfyView, session_id: str | None, form_checkpoint: str | None = None
) -> dict[Any, Any]:
    """A session on the page: its server, last parameters, results (its runs are followed
    by the event after). With `form_checkpoint` (a form being filled in, whose checkpoint
    that is) the form and its notice are left as they are."""
    keep_form = form_checkpoint is not None
    sessions = ctx.comfyui.sessions
    shown = sessions.get(session_id) if session_id else None
    values = sessions.form_parameters(shown.id if shown else None)
    server_id = str(shown.profile_id) if shown and shown.profile_id else DEFAULT_SERVER
    update: dict[Any, Any] = {
        view.session: gr.Dropdown(
            choices=session_choices(sessions.list_all()), value=session_id or None
        ),
        view.server: gr.Dropdown(choices=server_choices(ctx), value=server_id),
        view.details: "",
        view.running: [],
        **session_results(ctx, view, session_id),
    }
    if not keep_form:
        update |= fill_form(ctx, view, values)
        update[view.session_name] = shown.name if shown else ""
        update[view.notice] = ""
    try:
        current = form_checkpoint if keep_form else values.get("checkpoint")
        filled = None if keep_form else values  # the dropdowns' values with their lists
        update |= options_updates(ctx, view, server_id, False, current=current, values=filled)
    except Exception:  # ComfyUI may be off: the form still works, lists stay empty
        update[view.lora_names] = "ComfyUI is not reachable right now."
    return update
