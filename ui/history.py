"""History tab: search every generation and conversation, look at one, re-run one."""

from __future__ import annotations

import math
import time
from typing import Any

import gradio as gr
import pandas as pd

from spoonfeeder.chat import ConversationSummary
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.history import (
    GENERATION_STATUSES,
    ConversationFilters,
    GenerationFilters,
    HistoryFacets,
    TimelineEntry,
)
from spoonfeeder.serialize import jsonable
from ui.chat import render_conversation
from ui.comfyui_format import STATUS_ICONS, describe_generation
from ui.common import Refresh, api, format_time, selected_row_id, shows_errors

PAGE_SIZE = 24
ANY = ("any", "")  # a dropdown choice that is no filter
# The id goes last: it is long, and is mostly there for clicking a row to select it.
GENERATION_COLUMNS = [
    "Created",
    "Status",
    "Prompt",
    "Checkpoint",
    "Size",
    "Steps",
    "CFG",
    "Sampler",
    "Seed",
    "ID",
]
CONVERSATION_COLUMNS = ["Last active", "Title", "Provider", "Model", "Messages", "ID"]
TIMELINE_COLUMNS = ["When", "Kind", "Title", "Details", "ID"]
PROMPT_CHARS = 80


# ----- pure helpers: how results are shown ------------------------------------------------


def _short(text: str | None, limit: int = PROMPT_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value: Any) -> str:
    return format_time(value)[:16]


def generation_row(g: GenerationView) -> list[Any]:
    return [
        _when(g.created_at),
        f"{STATUS_ICONS.get(g.status, '⏹️')} {g.status}",
        _short(g.prompt),
        g.checkpoint or "",
        f"{g.width}×{g.height}" if g.width and g.height else "",
        g.steps if g.steps is not None else "",
        g.cfg if g.cfg is not None else "",
        " / ".join(x for x in (g.sampler_name, g.scheduler) if x),
        str(g.seed) if g.seed is not None else "",  # text: 64-bit seeds stay exact
        str(g.id),
    ]


def conversation_row(c: ConversationSummary) -> list[Any]:
    return [
        _when(c.updated_at),
        c.title,
        c.provider or "",
        c.model or "",
        c.message_count,
        str(c.id),
    ]


def timeline_row(entry: TimelineEntry) -> list[Any]:
    if entry.generation is not None:
        g = entry.generation
        details = f"{g.status} · {g.checkpoint or '?'} · seed {g.seed}"
        return [_when(entry.when), "🖼️ generation", _short(g.prompt), details, str(g.id)]
    c = entry.conversation
    assert c is not None
    details = f"{c.message_count} messages · {c.model or 'no model yet'}"
    return [_when(entry.when), "💬 conversation", c.title, details, str(c.id)]


def page_summary(what: str, total: int, limit: int, offset: int, shown: int) -> str:
    if not total:
        return f"No {what} match."
    pages = max(1, math.ceil(total / limit))
    page = offset // limit + 1
    if not shown:
        return f"Page {page} is past the end: {total} {what} match ({pages} pages)."
    return f"{what.capitalize()} {offset + 1}–{offset + shown} of {total} · page {page} of {pages}"


def describe(g: GenerationView) -> str:
    """The ComfyUI tab's description, plus where to take this generation next."""
    actions = (
        f"**Next:** *Re-run exactly* below posts this snapshot again. In the ComfyUI tab, "
        f"with this id selected, *Reuse parameters* (API `/reuse_parameters`) fills the "
        f"form and *Re-run exactly* (API `/rerun_exactly`) runs it there; both take the "
        f"id `{g.id}`."
    )
    return describe_generation(g) + "\n\n" + actions


def _choices(values: list[str]) -> list[tuple[str, str]]:
    return [ANY, *((v, v) for v in values)]


def _dropdown(values: list[str]) -> Any:
    return gr.Dropdown(choices=_choices(values))


def _page_offset(page: Any) -> int:
    try:
        number = int(float(page or 1))
    except (TypeError, ValueError):
        number = 1
    return (max(1, number) - 1) * PAGE_SIZE


def _frame(rows: list[list[Any]], columns: list[str]) -> pd.DataFrame:
    # Named columns: a plain list lost its headers in the browser after an update.
    return pd.DataFrame(rows, columns=columns)


# ----- the tab ----------------------------------------------------------------------------


def build(ctx: AppContext) -> Refresh:
    history = ctx.history

    def media_path(relative: str) -> str | None:
        try:
            return str(ctx.comfyui.media.file(relative))
        except Exception:  # a file removed by hand: show the others
            return None

    gr.Markdown("Every generation and conversation, searchable. Click a row to open it.")
    with gr.Tabs(selected="history-generations") as tabs:
        with gr.Tab("Generations", id="history-generations"):
            with gr.Row():
                g_text = gr.Textbox(
                    label="Prompt or negative prompt contains",
                    scale=3,
                    elem_id="hg-text",
                )
                g_status = gr.Dropdown(
                    _choices(list(GENERATION_STATUSES)),
                    value="",
                    label="Status",
                    elem_id="hg-status",
                )
                g_session = gr.Dropdown(
                    [ANY],
                    value="",
                    label="Session",
                    allow_custom_value=True,  # any session id, even one made after start
                    elem_id="hg-session",
                )
            with gr.Row():
                g_checkpoint = gr.Dropdown(
                    [ANY], value="", label="Checkpoint", allow_custom_value=True, elem_id="hg-ckpt"
                )
                g_sampler = gr.Dropdown(
                    [ANY], value="", label="Sampler", allow_custom_value=True, elem_id="hg-sampler"
                )
                g_scheduler = gr.Dropdown(
                    [ANY], value="", label="Scheduler", allow_custom_value=True, elem_id="hg-sched"
                )
            with gr.Row():
                g_width = gr.Textbox(label="Width", elem_id="hg-width")
                g_height = gr.Textbox(label="Height", elem_id="hg-height")
                g_steps_min = gr.Textbox(label="Steps from", elem_id="hg-steps-min")
                g_steps_max = gr.Textbox(label="Steps to", elem_id="hg-steps-max")
                g_cfg_min = gr.Textbox(label="CFG from", elem_id="hg-cfg-min")
                g_cfg_max = gr.Textbox(label="CFG to", elem_id="hg-cfg-max")
                g_seed = gr.Textbox(label="Seed", elem_id="hg-seed")
            with gr.Row():
                g_from = gr.Textbox(label="Created from (YYYY-MM-DD)", elem_id="hg-from")
                g_to = gr.Textbox(label="Created to (YYYY-MM-DD)", elem_id="hg-to")
                g_page = gr.Number(1, label="Page", precision=0, minimum=1, elem_id="hg-page")
                g_search = gr.Button("Search", variant="primary", elem_id="hg-search")
            g_summary = gr.Markdown(elem_id="hg-summary")
            g_table = gr.Dataframe(
                headers=GENERATION_COLUMNS, interactive=False, wrap=True, elem_id="hg-table"
            )
            g_gallery = gr.Gallery(
                label="Images of these generations (click one to open it)",
                columns=6,
                height="auto",
                elem_id="hg-gallery",
            )
            g_gallery_ids = gr.State([])  # the generation id behind each gallery image
            with gr.Row():
                g_selected = gr.Textbox(
                    label="Selected generation id (click a row or an image)",
                    scale=4,
                    elem_id="hg-selected",
                )
                g_rerun = gr.Button("Re-run exactly", scale=1, elem_id="hg-rerun")
            g_details = gr.Markdown(elem_id="hg-details")
            g_params = gr.JSON(label="Parameters", elem_id="hg-params")

        with gr.Tab("Conversations", id="history-conversations"):
            with gr.Row():
                c_text = gr.Textbox(label="Title or message contains", scale=3, elem_id="hc-text")
                c_provider = gr.Dropdown(
                    [ANY], value="", label="Provider", allow_custom_value=True, elem_id="hc-prov"
                )
                c_model = gr.Dropdown(
                    [ANY], value="", label="Model", allow_custom_value=True, elem_id="hc-model"
                )
            with gr.Row():
                c_from = gr.Textbox(label="Active from (YYYY-MM-DD)", elem_id="hc-from")
                c_to = gr.Textbox(label="Active to (YYYY-MM-DD)", elem_id="hc-to")
                c_page = gr.Number(1, label="Page", precision=0, minimum=1, elem_id="hc-page")
                c_search = gr.Button("Search", variant="primary", elem_id="hc-search")
            c_summary = gr.Markdown(elem_id="hc-summary")
            c_table = gr.Dataframe(
                headers=CONVERSATION_COLUMNS, interactive=False, wrap=True, elem_id="hc-table"
            )
            c_selected = gr.Textbox(
                label="Selected conversation id (click a row)", elem_id="hc-selected"
            )
            c_title = gr.Markdown(elem_id="hc-title")
            c_messages = gr.Chatbot(label="Messages", height=420, elem_id="hc-messages")

        with gr.Tab("Everything", id="history-everything"):
            with gr.Row():
                t_text = gr.Textbox(
                    label="Prompt, title or message contains", scale=3, elem_id="ht-text"
                )
                t_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="ht-from")
                t_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="ht-to")
                t_page = gr.Number(1, label="Page", precision=0, minimum=1, elem_id="ht-page")
                t_search = gr.Button("Search", variant="primary", elem_id="ht-search")
            t_summary = gr.Markdown(elem_id="ht-summary")
            t_table = gr.Dataframe(
                headers=TIMELINE_COLUMNS, interactive=False, wrap=True, elem_id="ht-table"
            )

    refresh_filters = gr.Button("Refresh filter choices", size="sm", elem_id="h-refresh")
    # Set on page load and tab open: re-runs the searches with the filters as they are.
    tick = gr.Textbox(visible="hidden")

    # In GenerationFilters' field order (render_generations passes them positionally).
    g_filters = [
        g_text,
        g_status,
        g_session,
        g_checkpoint,
        g_sampler,
        g_scheduler,
        g_width,
        g_height,
        g_steps_min,
        g_steps_max,
        g_cfg_min,
        g_cfg_max,
        g_seed,
        g_from,
        g_to,
        g_page,
    ]
    c_filters = [c_text, c_provider, c_model, c_from, c_to, c_page]
    t_filters = [t_text, t_from, t_to, t_page]
    g_outputs = [g_summary, g_table, g_gallery, g_gallery_ids]
    c_outputs = [c_summary, c_table]
    t_outputs = [t_summary, t_table]
    facet_outputs = [g_status, g_session, g_checkpoint, g_sampler, g_scheduler, c_provider, c_model]

    # ----- renderers (raise service errors; the callbacks below show them) -----

    def render_generations(*values: Any) -> tuple:
        *fields, page = values
        offset = _page_offset(page)
        found = history.search_generations(
            GenerationFilters(*fields), limit=PAGE_SIZE, offset=offset
        )
        images, ids = [], []
        for g in found.items:
            for out in g.outputs:
                if out.kind == "image" and (path := media_path(out.path)):
                    images.append((path, f"seed {g.seed}"))
                    ids.append(str(g.id))
        rows = [generation_row(g) for g in found.items]
        summary = page_summary("generations", found.total, PAGE_SIZE, offset, len(rows))
        return summary, _frame(rows, GENERATION_COLUMNS), images, ids

    def render_conversations(text, provider, model, from_, to_, page) -> tuple:
        offset = _page_offset(page)
        found = history.search_conversations(
            ConversationFilters(text or "", provider, model, from_, to_),
            limit=PAGE_SIZE,
            offset=offset,
        )
        rows = [conversation_row(c) for c in found.items]
        summary = page_summary("conversations", found.total, PAGE_SIZE, offset, len(rows))
        return summary, _frame(rows, CONVERSATION_COLUMNS)

    def render_timeline(text, from_, to_, page) -> tuple:
        offset = _page_offset(page)
        found = history.timeline(text or "", since=from_, until=to_, limit=PAGE_SIZE, offset=offset)
        rows = [timeline_row(e) for e in found.items]
        summary = page_summary("items", found.total, PAGE_SIZE, offset, len(rows))
        return summary, _frame(rows, TIMELINE_COLUMNS)

    def facet_updates(facets: HistoryFacets) -> tuple:
        sessions = [ANY, *((s.name, str(s.id)) for s in facets.sessions)]
        statuses = sorted(set(GENERATION_STATUSES) | set(facets.statuses))
        return (
            _dropdown(statuses),
            gr.Dropdown(choices=sessions),
            _dropdown(facets.checkpoints),
            _dropdown(facets.samplers),
            _dropdown(facets.schedulers),
            _dropdown(facets.providers),
            _dropdown(facets.models),
        )

    def _or_message(render, values, blanks: int) -> tuple:
        # On a tab refresh a bad filter left in a box shows as text, not a modal.
        try:
            return render(*values)
        except Exception as exc:
            return (f"⚠️ {exc}", *([gr.skip()] * blanks))

    # ----- callbacks -----

    @shows_errors
    def search_generations(*values: Any):
        return render_generations(*values)

    @shows_errors
    def search_history_conversations(*values: Any):
        return render_conversations(*values)

    @shows_errors
    def search_history(*values: Any):
        return render_timeline(*values)

    @shows_errors
    def refresh_history_filters():
        return facet_updates(history.facets())

    def refresh_all(*values: Any):
        g_vals = values[: len(g_filters)]
        c_vals = values[len(g_filters) : len(g_filters) + len(c_filters)]
        t_vals = values[len(g_filters) + len(c_filters) :]
        return (
            *_or_message(render_generations, g_vals, 3),
            *_or_message(render_conversations, c_vals, 1),
            *_or_message(render_timeline, t_vals, 1),
        )

    @shows_errors
    def show_history_generation(generation_id: str | None):
        if not (generation_id or "").strip():
            return "", None
        g = ctx.comfyui.generations.get(generation_id.strip())
        return describe(g), jsonable(g.parameters)

    @shows_errors
    def history_rerun_exactly(generation_id: str | None):
        if not (generation_id or "").strip():
            raise ValidationError("Select a generation first (click a row or an image)")
        g = ctx.comfyui.generator.rerun_exact(generation_id.strip())
        gr.Info("Queued an exact re-run; it is the newest generation now.")
        return str(g.id)

    @shows_errors
    def show_history_conversation(conversation_id: str | None):
        if not (conversation_id or "").strip():
            return "", []
        conv = ctx.chat.get_conversation(conversation_id.strip())
        rows, _ = render_conversation(conv)
        title = f"### {conv.title}\n\nLast active {format_time(conv.updated_at)}"
        if conv.system_prompt:
            title += f" · system prompt: *{_short(conv.system_prompt, 200)}*"
        return title, rows

    def pick_gallery(evt: gr.SelectData, ids: list[str]) -> Any:
        index = evt.index if isinstance(evt.index, int) else None
        return ids[index] if index is not None and 0 <= index < len(ids) else gr.skip()

    def pick_timeline(evt: gr.SelectData, rows: Any) -> tuple:
        picked = selected_row_id(evt, rows)
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        try:
            kind = str(rows.iloc[row, 1]) if hasattr(rows, "iloc") else str(rows[row][1])
        except (IndexError, KeyError, TypeError):
            return gr.skip(), gr.skip(), gr.skip()
        if "generation" in kind:
            return picked, gr.skip(), gr.Tabs(selected="history-generations")
        return gr.skip(), picked, gr.Tabs(selected="history-conversations")

    # ----- events -----

    gr.on(
        [g_search.click, g_text.submit, g_page.submit]
        + [d.input for d in (g_status, g_session, g_checkpoint, g_sampler, g_scheduler)],
        search_generations,
        g_filters,
        g_outputs,
        api_name="search_generations",
        show_progress="minimal",
    )
    gr.on(
        [c_search.click, c_text.submit, c_page.submit, c_provider.input, c_model.input],
        search_history_conversations,
        c_filters,
        c_outputs,
        api_name="search_history_conversations",
        show_progress="minimal",
    )
    gr.on(
        [t_search.click, t_text.submit, t_page.submit],
        search_history,
        t_filters,
        t_outputs,
        api_name="search_history",
        show_progress="minimal",
    )
    refresh_filters.click(
        refresh_history_filters,
        None,
        facet_outputs,
        api_name="refresh_history_filters",
        show_progress="hidden",
    )
    tick.change(
        refresh_all,
        [*g_filters, *c_filters, *t_filters],
        [*g_outputs, *c_outputs, *t_outputs],
        api_visibility="private",
        show_progress="hidden",
    )
    g_table.select(selected_row_id, g_table, g_selected, api_visibility="private")
    g_gallery.select(pick_gallery, g_gallery_ids, g_selected, api_visibility="private")
    c_table.select(selected_row_id, c_table, c_selected, api_visibility="private")
    t_table.select(pick_timeline, t_table, [g_selected, c_selected, tabs], api_visibility="private")
    gr.on(
        [g_selected.change, g_selected.submit],
        show_history_generation,
        g_selected,
        [g_details, g_params],
        api_name="show_history_generation",
        show_progress="hidden",
    )
    g_rerun.click(history_rerun_exactly, g_selected, g_selected, api_name="history_rerun_exactly")
    gr.on(
        [c_selected.change, c_selected.submit],
        show_history_conversation,
        c_selected,
        [c_title, c_messages],
        api_name="show_history_conversation",
        show_progress="hidden",
    )

    def history_facets() -> dict:
        """The values the filters can take: statuses, checkpoints, samplers, schedulers,
        sessions, providers and models actually used."""
        return jsonable(history.facets())

    api(history_facets, "history_facets")

    def refresh() -> tuple:
        # Page load and tab open: new filter choices, then `tick` re-runs the searches.
        try:
            updates = facet_updates(history.facets())
        except Exception:  # the searches below will say what is wrong
            updates = (gr.skip(),) * len(facet_outputs)
        return (*updates, str(time.time()))

    return refresh, [*facet_outputs, tick]
