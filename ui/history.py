"""History tab: search every generation and conversation, look at one, re-run one."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from spoonfeeder.access import Actor
from spoonfeeder.chat import ConversationSummary
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.history import (
    GENERATION_STATUSES,
    ConversationFilters,
    GenerationFilters,
    TimelineEntry,
)
from spoonfeeder.serialize import jsonable
from ui.chat import render_conversation
from ui.comfyui_format import STATUS_ICONS, describe_generation
from ui.common import Refresh, acting, api, format_time, selected_row_id, shows_errors

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


# ----- the tab ----------------------------------------------------------------------------


@dataclass
class GenerationsPane:
    text: gr.Textbox
    status: gr.Dropdown
    session: gr.Dropdown
    checkpoint: gr.Dropdown
    sampler: gr.Dropdown
    scheduler: gr.Dropdown
    width: gr.Textbox
    height: gr.Textbox
    steps_min: gr.Textbox
    steps_max: gr.Textbox
    cfg_min: gr.Textbox
    cfg_max: gr.Textbox
    seed: gr.Textbox
    created_from: gr.Textbox
    created_to: gr.Textbox
    page: gr.Number
    search: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe
    gallery: gr.Gallery
    gallery_ids: gr.State  # the generation id behind each gallery image
    selected: gr.Textbox
    rerun: gr.Button
    details: gr.Markdown
    params: gr.JSON

    def filters(self) -> list[Any]:
        """In GenerationFilters' field order, then the page (passed positionally)."""
        return [
            self.text,
            self.status,
            self.session,
            self.checkpoint,
            self.sampler,
            self.scheduler,
            self.width,
            self.height,
            self.steps_min,
            self.steps_max,
            self.cfg_min,
            self.cfg_max,
            self.seed,
            self.created_from,
            self.created_to,
            self.page,
        ]

    def results(self) -> list[Any]:
        return [self.summary, self.table, self.gallery, self.gallery_ids]


@dataclass
class ConversationsPane:
    text: gr.Textbox
    provider: gr.Dropdown
    model: gr.Dropdown
    active_from: gr.Textbox
    active_to: gr.Textbox
    page: gr.Number
    search: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe
    selected: gr.Textbox
    title: gr.Markdown
    messages: gr.Chatbot

    def filters(self) -> list[Any]:
        return [self.text, self.provider, self.model, self.active_from, self.active_to, self.page]

    def results(self) -> list[Any]:
        return [self.summary, self.table]


@dataclass
class TimelinePane:
    text: gr.Textbox
    since: gr.Textbox
    until: gr.Textbox
    page: gr.Number
    search: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe

    def filters(self) -> list[Any]:
        return [self.text, self.since, self.until, self.page]

    def results(self) -> list[Any]:
        return [self.summary, self.table]


@dataclass
class HistoryView:
    tabs: gr.Tabs
    generations: GenerationsPane
    conversations: ConversationsPane
    timeline: TimelinePane
    refresh_filters: gr.Button
    tick: gr.Textbox  # set on page load and tab open: re-runs the searches as they are

    def facets(self) -> list[Any]:
        """The filter dropdowns whose choices come from what was actually used."""
        g, c = self.generations, self.conversations
        return [g.status, g.session, g.checkpoint, g.sampler, g.scheduler, c.provider, c.model]


def build(ctx: AppContext) -> Refresh:
    view = render(ctx)
    return listen(ctx, view)


def render(ctx: AppContext) -> HistoryView:
    gr.Markdown("Every generation and conversation, searchable. Click a row to open it.")
    with gr.Tabs(selected="history-generations") as tabs:
        with gr.Tab("Generations", id="history-generations"):
            generations = _render_generations()
        with gr.Tab("Conversations", id="history-conversations"):
            conversations = _render_conversations()
        with gr.Tab("Everything", id="history-everything"):
            timeline = _render_timeline()
    return HistoryView(
        tabs=tabs,
        generations=generations,
        conversations=conversations,
        timeline=timeline,
        refresh_filters=gr.Button("Refresh filter choices", size="sm", elem_id="h-refresh"),
        tick=gr.Textbox(visible="hidden"),
    )


def _facet(label: str, elem_id: str, **options: Any) -> gr.Dropdown:
    # Any value, even one made after start: the service checks it.
    return gr.Dropdown(
        [ANY], value="", label=label, allow_custom_value=True, elem_id=elem_id, **options
    )


def _page(elem_id: str) -> gr.Number:
    return gr.Number(1, label="Page", precision=0, minimum=1, elem_id=elem_id)


def _render_generations() -> GenerationsPane:
    with gr.Row():
        text = gr.Textbox(label="Prompt or negative prompt contains", scale=3, elem_id="hg-text")
        status = gr.Dropdown(
            _choices(list(GENERATION_STATUSES)), value="", label="Status", elem_id="hg-status"
        )
        session = _facet("Session", "hg-session")
    with gr.Row():
        checkpoint = _facet("Checkpoint", "hg-ckpt")
        sampler = _facet("Sampler", "hg-sampler")
        scheduler = _facet("Scheduler", "hg-sched")
    with gr.Row():
        sizes = [
            gr.Textbox(label=label, elem_id=f"hg-{key}")
            for label, key in [
                ("Width", "width"),
                ("Height", "height"),
                ("Steps from", "steps-min"),
                ("Steps to", "steps-max"),
                ("CFG from", "cfg-min"),
                ("CFG to", "cfg-max"),
                ("Seed", "seed"),
            ]
        ]
    with gr.Row():
        created_from = gr.Textbox(label="Created from (YYYY-MM-DD)", elem_id="hg-from")
        created_to = gr.Textbox(label="Created to (YYYY-MM-DD)", elem_id="hg-to")
        page = _page("hg-page")
        search = gr.Button("Search", variant="primary", elem_id="hg-search")
    summary = gr.Markdown(elem_id="hg-summary")
    table = gr.Dataframe(
        headers=GENERATION_COLUMNS, interactive=False, wrap=True, elem_id="hg-table"
    )
    gallery = gr.Gallery(
        label="Images of these generations (click one to open it)",
        columns=6,
        height="auto",
        elem_id="hg-gallery",
    )
    gallery_ids = gr.State([])
    with gr.Row():
        selected = gr.Textbox(
            label="Selected generation id (click a row or an image)", scale=4, elem_id="hg-selected"
        )
        rerun = gr.Button("Re-run exactly", scale=1, elem_id="hg-rerun")
    width, height, steps_min, steps_max, cfg_min, cfg_max, seed = sizes
    return GenerationsPane(
        text=text,
        status=status,
        session=session,
        checkpoint=checkpoint,
        sampler=sampler,
        scheduler=scheduler,
        width=width,
        height=height,
        steps_min=steps_min,
        steps_max=steps_max,
        cfg_min=cfg_min,
        cfg_max=cfg_max,
        seed=seed,
        created_from=created_from,
        created_to=created_to,
        page=page,
        search=search,
        summary=summary,
        table=table,
        gallery=gallery,
        gallery_ids=gallery_ids,
        selected=selected,
        rerun=rerun,
        details=gr.Markdown(elem_id="hg-details"),
        params=gr.JSON(label="Parameters", elem_id="hg-params"),
    )


def _render_conversations() -> ConversationsPane:
    with gr.Row():
        text = gr.Textbox(label="Title or message contains", scale=3, elem_id="hc-text")
        provider = _facet("Provider", "hc-prov")
        model = _facet("Model", "hc-model")
    with gr.Row():
        active_from = gr.Textbox(label="Active from (YYYY-MM-DD)", elem_id="hc-from")
        active_to = gr.Textbox(label="Active to (YYYY-MM-DD)", elem_id="hc-to")
        page = _page("hc-page")
        search = gr.Button("Search", variant="primary", elem_id="hc-search")
    return ConversationsPane(
        text,
        provider,
        model,
        active_from,
        active_to,
        page,
        search,
        summary=gr.Markdown(elem_id="hc-summary"),
        table=gr.Dataframe(
            headers=CONVERSATION_COLUMNS, interactive=False, wrap=True, elem_id="hc-table"
        ),
        selected=gr.Textbox(label="Selected conversation id (click a row)", elem_id="hc-selected"),
        title=gr.Markdown(elem_id="hc-title"),
        messages=gr.Chatbot(label="Messages", height=420, elem_id="hc-messages"),
    )


def _render_timeline() -> TimelinePane:
    with gr.Row():
        text = gr.Textbox(label="Prompt, title or message contains", scale=3, elem_id="ht-text")
        since = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="ht-from")
        until = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="ht-to")
        page = _page("ht-page")
        search = gr.Button("Search", variant="primary", elem_id="ht-search")
    return TimelinePane(
        text,
        since,
        until,
        page,
        search,
        summary=gr.Markdown(elem_id="ht-summary"),
        table=gr.Dataframe(
            headers=TIMELINE_COLUMNS, interactive=False, wrap=True, elem_id="ht-table"
        ),
    )


def _listing(
    pane: GenerationsPane | ConversationsPane | TimelinePane,
    what: str,
    total: int,
    offset: int,
    rows: list[list[Any]],
    columns: list[str],
) -> dict[Any, Any]:
    """A page of search results: its summary line and its table."""
    return {
        pane.summary: page_summary(what, total, PAGE_SIZE, offset, len(rows)),
        pane.table: _frame(rows, columns),
    }


class Searches:
    """The three searches as updates keyed by the view's components; they raise service
    errors (the callbacks show them)."""

    def __init__(self, ctx: AppContext, view: HistoryView) -> None:
        self.ctx, self.view = ctx, view

    def _media_path(self, relative: str) -> str | None:
        try:
            return str(self.ctx.comfyui.media.file(relative))
        except Exception:  # a file removed by hand: show the others
            return None

    def generations(self, actor: Actor, *values: Any) -> dict[Any, Any]:
        *fields, page = values
        offset = _page_offset(page)
        found = self.ctx.history.search_generations(
            GenerationFilters(*fields), limit=PAGE_SIZE, offset=offset, actor=actor
        )
        images, ids = [], []
        for g in found.items:
            for out in g.outputs:
                if out.kind == "image" and (path := self._media_path(out.path)):
                    images.append((path, f"seed {g.seed}"))
                    ids.append(str(g.id))
        pane = self.view.generations
        rows = [generation_row(g) for g in found.items]
        return {
            **_listing(pane, "generations", found.total, offset, rows, GENERATION_COLUMNS),
            pane.gallery: images,
            pane.gallery_ids: ids,
        }

    def conversations(
        self, actor: Actor, text, provider, model, from_, to_, page
    ) -> dict[Any, Any]:
        offset = _page_offset(page)
        found = self.ctx.history.search_conversations(
            ConversationFilters(text or "", provider, model, from_, to_),
            limit=PAGE_SIZE,
            offset=offset,
            actor=actor,
        )
        rows = [conversation_row(c) for c in found.items]
        pane = self.view.conversations
        return _listing(pane, "conversations", found.total, offset, rows, CONVERSATION_COLUMNS)

    def timeline(self, actor: Actor, text, from_, to_, page) -> dict[Any, Any]:
        offset = _page_offset(page)
        found = self.ctx.history.timeline(
            text or "", since=from_, until=to_, limit=PAGE_SIZE, offset=offset, actor=actor
        )
        rows = [timeline_row(e) for e in found.items]
        return _listing(self.view.timeline, "items", found.total, offset, rows, TIMELINE_COLUMNS)

    def facets(self) -> dict[Any, Any]:
        facets = self.ctx.history.facets()
        sessions = [ANY, *((s.name, str(s.id)) for s in facets.sessions)]
        statuses = sorted(set(GENERATION_STATUSES) | set(facets.statuses))
        g, c = self.view.generations, self.view.conversations
        return {
            g.status: _dropdown(statuses),
            g.session: gr.Dropdown(choices=sessions),
            g.checkpoint: _dropdown(facets.checkpoints),
            g.sampler: _dropdown(facets.samplers),
            g.scheduler: _dropdown(facets.schedulers),
            c.provider: _dropdown(facets.providers),
            c.model: _dropdown(facets.models),
        }

    def refresh_all(self, request: gr.Request, *values: Any) -> dict[Any, Any]:
        """Every search with the filters as they are (a tab refresh): a bad filter left in
        a box shows as text in its summary, not as a modal."""
        view, out = self.view, {}
        g_count = len(view.generations.filters())
        c_count = len(view.conversations.filters())
        parts = [
            (self.generations, view.generations.summary, values[:g_count]),
            (self.conversations, view.conversations.summary, values[g_count : g_count + c_count]),
            (self.timeline, view.timeline.summary, values[g_count + c_count :]),
        ]
        for search, summary, args in parts:
            try:
                out.update(search(acting(self.ctx.users, request), *args))
            except Exception as exc:
                out[summary] = f"⚠️ {exc}"
        return out


def listen(ctx: AppContext, view: HistoryView) -> Refresh:
    searches = Searches(ctx, view)
    _listen_searches(view, searches)
    _listen_generation(ctx, view)
    _listen_conversation(ctx, view)

    def history_facets() -> dict:
        """The values the filters can take: statuses, checkpoints, samplers, schedulers,
        sessions, providers and models actually used."""
        return jsonable(ctx.history.facets())

    api(history_facets, "history_facets")

    def refresh() -> dict[Any, Any]:
        # Page load and tab open: new filter choices, then `tick` re-runs the searches.
        try:
            updates = searches.facets()
        except Exception:  # the searches will say what is wrong
            updates = {}
        return {**updates, view.tick: str(time.time())}

    return refresh, [*view.facets(), view.tick]


def _listen_searches(view: HistoryView, searches: Searches) -> None:
    g, c, t = view.generations, view.conversations, view.timeline

    users = searches.ctx.users

    @shows_errors
    def search_generations(request: gr.Request, *values: Any) -> dict[Any, Any]:
        return searches.generations(acting(users, request), *values)

    @shows_errors
    def search_history_conversations(request: gr.Request, *values: Any) -> dict[Any, Any]:
        return searches.conversations(acting(users, request), *values)

    @shows_errors
    def search_history(request: gr.Request, *values: Any) -> dict[Any, Any]:
        return searches.timeline(acting(users, request), *values)

    @shows_errors
    def refresh_history_filters() -> dict[Any, Any]:
        return searches.facets()

    gr.on(
        [g.search.click, g.text.submit, g.page.submit]
        + [d.input for d in (g.status, g.session, g.checkpoint, g.sampler, g.scheduler)],
        search_generations,
        g.filters(),
        g.results(),
        api_name="search_generations",
        show_progress="minimal",
    )
    gr.on(
        [c.search.click, c.text.submit, c.page.submit, c.provider.input, c.model.input],
        search_history_conversations,
        c.filters(),
        c.results(),
        api_name="search_history_conversations",
        show_progress="minimal",
    )
    gr.on(
        [t.search.click, t.text.submit, t.page.submit],
        search_history,
        t.filters(),
        t.results(),
        api_name="search_history",
        show_progress="minimal",
    )
    view.refresh_filters.click(
        refresh_history_filters,
        None,
        view.facets(),
        api_name="refresh_history_filters",
        show_progress="hidden",
    )
    view.tick.change(
        searches.refresh_all,
        [*g.filters(), *c.filters(), *t.filters()],
        [*g.results(), *c.results(), *t.results()],
        api_visibility="private",
        show_progress="hidden",
    )

    def pick_timeline(evt: gr.SelectData, rows: Any) -> dict[Any, Any]:
        picked = selected_row_id(evt, rows)
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        try:
            kind = str(rows.iloc[row, 1]) if hasattr(rows, "iloc") else str(rows[row][1])
        except (IndexError, KeyError, TypeError):
            return {}
        if "generation" in kind:
            return {g.selected: picked, view.tabs: gr.Tabs(selected="history-generations")}
        return {c.selected: picked, view.tabs: gr.Tabs(selected="history-conversations")}

    t.table.select(
        pick_timeline, t.table, [g.selected, c.selected, view.tabs], api_visibility="private"
    )


def _listen_generation(ctx: AppContext, view: HistoryView) -> None:
    pane = view.generations

    @shows_errors
    def show_history_generation(generation_id: str | None) -> dict[Any, Any]:
        if not (generation_id or "").strip():
            return {pane.details: "", pane.params: None}
        g = ctx.comfyui.generations.get(generation_id.strip())
        return {pane.details: describe(g), pane.params: jsonable(g.parameters)}

    @shows_errors
    def history_rerun_exactly(generation_id: str | None, request: gr.Request) -> str:
        if not (generation_id or "").strip():
            raise ValidationError("Select a generation first (click a row or an image)")
        actor = acting(ctx.users, request)
        g = ctx.comfyui.generator.rerun_exact(generation_id.strip(), owner_id=actor.owner_id)
        gr.Info("Queued an exact re-run; it is the newest generation now.")
        return str(g.id)

    def pick_gallery(evt: gr.SelectData, ids: list[str]) -> Any:
        index = evt.index if isinstance(evt.index, int) else None
        return ids[index] if index is not None and 0 <= index < len(ids) else gr.skip()

    pane.table.select(selected_row_id, pane.table, pane.selected, api_visibility="private")
    pane.gallery.select(pick_gallery, pane.gallery_ids, pane.selected, api_visibility="private")
    gr.on(
        [pane.selected.change, pane.selected.submit],
        show_history_generation,
        pane.selected,
        [pane.details, pane.params],
        api_name="show_history_generation",
        show_progress="hidden",
    )
    pane.rerun.click(
        history_rerun_exactly, pane.selected, pane.selected, api_name="history_rerun_exactly"
    )


def _listen_conversation(ctx: AppContext, view: HistoryView) -> None:
    pane = view.conversations

    @shows_errors
    def show_history_conversation(
        conversation_id: str | None, request: gr.Request
    ) -> dict[Any, Any]:
        if not (conversation_id or "").strip():
            return {pane.title: "", pane.messages: []}
        conv = ctx.chat.get_conversation(conversation_id.strip(), acting(ctx.users, request))
        rows, _ = render_conversation(conv)
        title = f"### {conv.title}\n\nLast active {format_time(conv.updated_at)}"
        if conv.system_prompt:
            title += f" · system prompt: *{_short(conv.system_prompt, 200)}*"
        return {pane.title: title, pane.messages: rows}

    pane.table.select(selected_row_id, pane.table, pane.selected, api_visibility="private")
    gr.on(
        [pane.selected.change, pane.selected.submit],
        show_history_conversation,
        pane.selected,
        [pane.title, pane.messages],
        api_name="show_history_conversation",
        show_progress="hidden",
    )
