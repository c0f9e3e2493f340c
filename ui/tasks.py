"""Tasks tab: create background tasks, watch the queue live, cancel, retry, delete."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gradio as gr
import pandas as pd

from spoonfeeder.context import AppContext
from spoonfeeder.serialize import jsonable
from spoonfeeder.tasks.states import STATUSES
from spoonfeeder.tasks.views import TaskPage, TaskView
from ui.arguments import checks_arguments
from ui.common import (
    LiveOutputs,
    NewestView,
    Refresh,
    api,
    format_time,
    selected_row_id,
    shows_errors,
)
from ui.pickers import model_dropdown
from ui.tab import (
    Confirm,
    hidden_row,
    listen_confirm,
    new_tick,
    render_confirm,
    render_tick,
    shown_row,
)

# The id goes last: it is long, and is mostly there for clicking a row to select it.
COLUMNS = ["Name", "Type", "Status", "Progress", "Attempts", "Provider", "Age", "ID"]
PAGE_SIZE = 25
# A live view ends after this long (the browser restarts it when the tab is opened again),
# so a forgotten tab does not hold a server thread forever.
WATCH_SECONDS = 15 * 60
# With no events, the view still yields this often so that it can be stopped.
IDLE_SECONDS = 1.0
# Events arriving this close together are shown in one update.
DEBOUNCE_SECONDS = 0.2
STATUS_ICONS = {
    "queued": "⏳",
    "running": "▶️",
    "completed": "✅",
    "failed": "❌",
    "cancelled": "⏹️",
}


# ----- pure helpers: how a task is shown --------------------------------------------------


def age(when: datetime, now: datetime | None = None) -> str:
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{math.floor(seconds / size)}{unit}"
    return f"{int(seconds)}s"


def progress_text(task: TaskView) -> str:
    if task.status == "completed":
        return "100%"
    if task.status == "queued" and not task.progress:
        return ""
    if not task.progress and task.progress_message:  # no fraction known (a stream): just say
        return task.progress_message
    text = f"{task.progress:.0%}"
    return f"{text} · {task.progress_message}" if task.progress_message else text


def task_row(task: TaskView, now: datetime | None = None) -> list[Any]:
    status = f"{STATUS_ICONS.get(task.status, '')} {task.status}"
    if task.cancel_requested and task.status == "running":
        status += " (cancelling)"
    return [
        task.name or "",
        task.type,
        status,
        progress_text(task),
        f"{task.attempts}/{task.max_attempts}",
        task.provider or "",
        age(task.created_at, now),
        str(task.id),
    ]


def page_summary(page: TaskPage) -> str:
    if not page.total:
        return "No tasks match."
    pages = max(1, math.ceil(page.total / page.limit))
    first = page.offset + 1
    last = page.offset + len(page.items)
    return f"Tasks {first}–{last} of {page.total} · page {page.offset // page.limit + 1} of {pages}"


def describe_task(task: TaskView) -> str:
    lines = [
        f"### {task.name or task.type}",
        f"**Status:** {task.status}"
        + (" — cancellation requested" if task.cancel_requested else ""),
        f"**Type:** `{task.type}` · **Provider:** {task.provider or '—'} · "
        f"**Model:** {task.model or '—'}",
        f"**Attempts:** {task.attempts} of {task.max_attempts} · **Priority:** {task.priority}",
        f"**Created:** {format_time(task.created_at)} · **Started:** "
        f"{format_time(task.started_at)} · **Finished:** {format_time(task.completed_at)}",
    ]
    if task.duration_seconds is not None:
        lines.append(f"**Ran for:** {task.duration_seconds:.2f} s")
    if task.status == "queued" and task.run_at > datetime.now(UTC):
        lines.append(f"**Next attempt at:** {format_time(task.run_at)}")
    if task.progress_message and task.status == "running":
        lines.append(f"**Progress:** {progress_text(task)}")
    if task.parent_id:
        lines.append(f"**Part of batch:** `{task.parent_id}`")
    if task.error:
        lines.append(f"\n⚠️ **{task.error}**")
    if task.result and isinstance(task.result.get("text"), str):
        lines.append("\n---\n" + task.result["text"])
    return "\n\n".join(lines)


# ----- the tab ----------------------------------------------------------------------------


@dataclass
class TasksView:
    # the new-task form
    name: gr.Textbox
    task_type: gr.Dropdown
    provider: gr.Dropdown
    model: gr.Dropdown
    prompt: gr.Textbox
    batch_inputs: gr.Textbox
    options: gr.Textbox
    priority: gr.Number
    max_attempts: gr.Number
    create: gr.Button
    # the queue, its filters, and the selected task
    status: gr.Dropdown
    type_filter: gr.Dropdown
    provider_filter: gr.Dropdown
    created_from: gr.Textbox
    created_to: gr.Textbox
    page: gr.Number
    summary: gr.Markdown
    table: gr.Dataframe
    selected: gr.Textbox
    cancel: gr.Button
    retry: gr.Button
    delete: gr.Button
    confirm: Confirm
    details: gr.Markdown
    result: gr.JSON
    tick: gr.Textbox  # set on tab open: starts the live view
    refresh: gr.Button

    def form(self) -> list[Any]:
        return [
            self.name,
            self.task_type,
            self.provider,
            self.model,
            self.prompt,
            self.batch_inputs,
            self.options,
            self.priority,
            self.max_attempts,
        ]

    def filters(self) -> list[Any]:
        return [
            self.status,
            self.type_filter,
            self.provider_filter,
            self.created_from,
            self.created_to,
            self.page,
        ]

    def watched(self) -> list[Any]:
        """What the live view shows."""
        return [self.summary, self.table, self.details, self.result]


def build(ctx: AppContext) -> Refresh:
    view = render(ctx)
    return listen(ctx, view)


def render(ctx: AppContext) -> TasksView:
    gr.Markdown(
        "Background work runs here: each task is queued in the database and run by a worker "
        "(this app's threads, or `python -m spoonfeeder worker` on another machine)."
    )
    form = _render_form(ctx)
    with gr.Row():
        filters = {
            "status": gr.Dropdown(
                ["all", *STATUSES], value="all", label="Status", elem_id="tf-status"
            ),
            "type_filter": gr.Dropdown(
                ["all", *ctx.tasks.task_types()], value="all", label="Type", elem_id="tf-type"
            ),
            "provider_filter": gr.Dropdown(
                ["all", *(name for _, name in ctx.profiles.kind_choices())],
                value="all",
                label="Provider",
                elem_id="tf-provider",
            ),
            "created_from": gr.Textbox(label="From (YYYY-MM-DD)", elem_id="tf-from"),
            "created_to": gr.Textbox(label="To (YYYY-MM-DD)", elem_id="tf-to"),
            "page": gr.Number(1, label="Page", precision=0, minimum=1, elem_id="tf-page"),
        }
    summary = gr.Markdown(elem_id="tasks-summary")
    table = gr.Dataframe(
        headers=COLUMNS,
        interactive=False,
        wrap=True,
        elem_id="tasks-table",
        label="Queue (updates live)",
    )
    with gr.Row():
        selected = gr.Textbox(
            label="Selected task id (click a row)", scale=4, elem_id="task-selected"
        )
        cancel = gr.Button("Cancel", scale=1, elem_id="task-cancel")
        retry = gr.Button("Retry", scale=1, elem_id="task-retry")
        delete = gr.Button("Delete", variant="stop", scale=1, elem_id="task-delete")
    confirm = render_confirm(
        "task", "Delete this task, its result and any tasks of its batch?", no_label="Keep it"
    )
    details = gr.Markdown(elem_id="task-details")
    result = gr.JSON(label="Result", elem_id="task-result")
    tick = render_tick()
    refresh = gr.Button("Refresh", size="sm")
    return TasksView(
        **form,
        **filters,
        summary=summary,
        table=table,
        selected=selected,
        cancel=cancel,
        retry=retry,
        delete=delete,
        confirm=confirm,
        details=details,
        result=result,
        tick=tick,
        refresh=refresh,
    )


def _render_form(ctx: AppContext) -> dict[str, Any]:
    """The "New task" accordion: TasksView's form fields and its create button."""
    with gr.Accordion("New task", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name (optional)", scale=2, elem_id="task-name")
            task_type = gr.Dropdown(
                ctx.tasks.task_types(),
                value="text.generate",
                label="Type",
                allow_custom_value=True,  # the service explains unknown types
                scale=1,
                elem_id="task-type",
            )
        with gr.Row():
            provider = gr.Dropdown(
                ctx.targets.choices(),
                value=ctx.targets.choices()[0][1],  # the first chat provider's setting
                label="Provider",
                allow_custom_value=True,
                scale=2,
                elem_id="task-provider",
            )
            model = gr.Dropdown(
                [], label="Model", allow_custom_value=True, scale=2, elem_id="task-model"
            )
        prompt = gr.Textbox(
            label="Prompt (text.batch: a template where {input} is replaced by each input)",
            lines=3,
            elem_id="task-prompt",
        )
        batch_inputs = gr.Textbox(
            label="Inputs for text.batch, one per line", lines=3, elem_id="task-inputs"
        )
        with gr.Row():
            options = gr.Textbox(
                label="Options (JSON)",
                placeholder='{"temperature": 0.2, "max_tokens": 200, "system": "Be brief."}',
                scale=3,
                elem_id="task-options",
            )
            priority = gr.Number(0, label="Priority", precision=0, scale=1)
            max_attempts = gr.Number(3, label="Attempts", precision=0, minimum=1, scale=1)
        create = gr.Button("Create task", variant="primary", elem_id="task-create")
    return {
        "name": name,
        "task_type": task_type,
        "provider": provider,
        "model": model,
        "prompt": prompt,
        "batch_inputs": batch_inputs,
        "options": options,
        "priority": priority,
        "max_attempts": max_attempts,
        "create": create,
    }


def listen(ctx: AppContext, view: TasksView) -> Refresh:
    _listen_form(ctx, view)
    _listen_queue(ctx, view)
    _listen_selected(ctx, view)
    service = ctx.tasks

    def task_json(task_id: str) -> dict:
        """One task with its result or error, as JSON."""
        return jsonable(service.get_task(task_id))

    @shows_errors
    def list_task_types() -> list[dict[str, str]]:
        return [{"type": t, "description": service.describe_type(t)} for t in service.task_types()]

    api(task_json, "task")
    api(list_task_types, "task_types")

    def refresh() -> dict[Any, Any]:
        # On page load and tab open: the providers (profiles made since), and (re)start
        # the live view through the tick.
        return {view.provider: gr.Dropdown(choices=ctx.targets.choices()), view.tick: new_tick()}

    return refresh, [view.provider, view.tick]


@checks_arguments
def _list_page(
    ctx: AppContext,
    status_: str,
    type_: str,
    provider_: str,
    from_: str | None,
    to_: str | None,
    page_: float | None,
) -> TaskPage:
    offset = (max(1, int(page_ or 1)) - 1) * PAGE_SIZE
    return ctx.tasks.list_tasks(
        status=status_,
        type=type_,
        provider=provider_,
        created_from=from_,
        created_to=to_,
        limit=PAGE_SIZE,
        offset=offset,
    )


def _table(ctx: AppContext, view: TasksView, filter_values: tuple[Any, ...]) -> dict[Any, Any]:
    listed = _list_page(ctx, *filter_values)
    now = datetime.now(UTC)
    # A DataFrame with named columns: a plain list streamed from a generator lost the
    # headers in the browser.
    rows = pd.DataFrame([task_row(t, now) for t in listed.items], columns=COLUMNS)
    return {view.summary: page_summary(listed), view.table: rows}


def _details(ctx: AppContext, view: TasksView, task_id: str | None) -> dict[Any, Any]:
    if not (task_id or "").strip():
        return {view.details: "", view.result: None}
    task = ctx.tasks.get_task(task_id)
    result = jsonable(task.result) if task.result is not None else None
    return {view.details: describe_task(task), view.result: result}


def _listen_form(ctx: AppContext, view: TasksView) -> None:
    @shows_errors
    def list_task_models(choice: str):
        return model_dropdown(ctx, choice)

    @shows_errors
    def create_task(
        name_: str | None,
        type_: str,
        provider_: str,
        model_: str | None,
        prompt_: str | None,
        inputs_: str | None,
        options_: str | None,
        prio: float | None,
        attempts: float | None,
    ):
        task = ctx.tasks.create_task(
            type_,
            name=name_,
            target=ctx.targets.resolve(provider_, model_ or ""),
            prompt=prompt_,
            inputs=inputs_ or None,  # one per line: the service splits them
            options=options_,
            priority=int(prio or 0),
            max_attempts=int(attempts or 3),
        )
        gr.Info(f"Queued “{task.name}”")
        return str(task.id)

    view.provider.input(
        list_task_models,
        view.provider,
        view.model,
        api_name="list_task_models",
        show_progress="hidden",
    )
    view.create.click(create_task, view.form(), view.selected, api_name="create_task")


def _listen_queue(ctx: AppContext, view: TasksView) -> None:
    views = NewestView()  # the newest live view of a browser session wins

    def safe_details(task_id: str | None) -> dict[Any, Any]:
        try:
            return _details(ctx, view, task_id)
        except Exception as exc:  # deleted meanwhile: say so, keep the view alive
            return {view.details: f"⚠️ {exc}", view.result: None}

    @shows_errors
    def watch_tasks(
        status_: str,
        type_: str,
        provider_: str,
        from_: str | None,
        to_: str | None,
        page_: float | None,
        task_id: str | None,
        request: gr.Request,
    ) -> Iterator[tuple]:
        """The table (and the selected task) again whenever a task event arrives."""
        filter_values = (status_, type_, provider_, from_, to_, page_)
        key = request.session_hash if request else ""
        ticket = views.start(key)
        deadline = time.monotonic() + WATCH_SECONDS
        live = LiveOutputs(view.watched())
        try:
            for seen, changed in enumerate(ctx.tasks.changes(IDLE_SECONDS, DEBOUNCE_SECONDS)):
                if seen and (time.monotonic() >= deadline or not views.is_newest(key, ticket)):
                    return
                # Without news, hand control back now and then: Gradio can only stop a
                # generator (cancel, closed tab) between two yields.
                if not changed:
                    yield live.frame()
                    continue
                yield live.frame({**_table(ctx, view, filter_values), **safe_details(task_id)})
        finally:
            views.end(key, ticket)

    @shows_errors
    def refresh_tasks(*filter_values):
        return _table(ctx, view, filter_values)

    # The live view restarts with the new filters or selection; the old one stops itself.
    gr.on(
        [f.change for f in view.filters()] + [view.selected.change, view.tick.change],
        watch_tasks,
        [*view.filters(), view.selected],
        view.watched(),
        api_name="watch_tasks",
        concurrency_limit=None,  # one long-lived view per open tab, not a queue slot
        trigger_mode="multiple",  # a new view must start while the old one still runs
        show_progress="hidden",
    )
    view.table.select(selected_row_id, view.table, view.selected, api_visibility="private")
    view.refresh.click(
        refresh_tasks, view.filters(), [view.summary, view.table], api_name="list_tasks"
    )


def _listen_selected(ctx: AppContext, view: TasksView) -> None:
    service = ctx.tasks
    shown = [view.details, view.result]

    @shows_errors
    def show_task(task_id: str):
        return _details(ctx, view, task_id)

    @shows_errors
    def cancel_task(task_id: str):
        task = service.cancel_task(task_id)
        return _details(ctx, view, str(task.id))

    @shows_errors
    def retry_task(task_id: str):
        task = service.retry_task(task_id)
        return _details(ctx, view, str(task.id))

    @shows_errors
    def ask_delete(task_id: str):
        service.get_task(task_id)  # a clear message if there is nothing to delete
        return shown_row()

    @shows_errors
    def delete_task(task_id: str, *filter_values):
        service.delete_task(task_id)
        return {
            view.selected: "",
            view.details: "Task deleted.",
            view.result: None,
            view.confirm.row: hidden_row(),
            **_table(ctx, view, filter_values),
        }

    view.cancel.click(cancel_task, view.selected, shown, api_name="cancel_task")
    view.retry.click(retry_task, view.selected, shown, api_name="retry_task")
    view.delete.click(ask_delete, view.selected, view.confirm.row, api_name="confirm_delete_task")
    listen_confirm(view.confirm)
    view.confirm.yes.click(
        delete_task,
        [view.selected, *view.filters()],
        [view.selected, *shown, view.confirm.row, view.summary, view.table],
        api_name="delete_task",
    )
    view.selected.submit(show_task, view.selected, shown, api_name="show_task")
