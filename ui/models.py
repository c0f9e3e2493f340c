"""Models tab: the models of an Ollama server (pull, load, unload, delete, inspect),
and the models a cloud provider's key can use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.errors import SpoonFeederError, ValidationError
from spoonfeeder.ollama_models import (
    InstalledModel,
    LoadedModel,
    ModelDetails,
    OllamaModelService,
    PullProgress,
    format_bytes,
)
from spoonfeeder.serialize import jsonable
from ui.common import Refresh, api, shows_errors
from ui.tab import (
    Confirm,
    hidden_row,
    listen_confirm,
    new_tick,
    render_confirm,
    render_tick,
    shown_row,
)

INSTALLED_COLUMNS = ["Name", "Size", "Family", "Parameters", "Quantization", "Modified"]
LOADED_COLUMNS = ["Name", "Memory", "VRAM", "Context", "Unloads"]
LAYER_COLUMNS = ["Layer", "Downloaded", "Size", "Progress"]
CLOUD_COLUMNS = ["Model id", "Name"]
# Ollama reports keep_alive -1 as an expiry centuries away.
FOREVER_YEAR = 2200
# Real pulls send many lines a second; the browser only needs a few updates.
PULL_UPDATE_SECONDS = 0.25


# Overall and per-layer <progress> bars from the pull summary (Markdown) and the layers
# table ({headers, data} or rows). Runs in the browser; the text is escaped.
PROGRESS_BARS_JS = """(summary, layers) => {
  if (!summary) return "";
  const esc = (t) => String(t).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const done = summary.startsWith("✅");
  const m = summary.match(/([0-9.]+)%/);
  const overall = done ? 100 : (m ? parseFloat(m[1]) : 0);
  const bar = (label, pct) =>
    `<div class="pull-bar" style="display:flex;gap:.75em;align-items:center">` +
    `<span style="min-width:17em">${esc(label)}</span>` +
    `<progress max="100" value="${pct}" style="flex:1">${pct}%</progress>` +
    `<span style="min-width:4em;text-align:right">${pct.toFixed(1)}%</span></div>`;
  const rows = Array.isArray(layers) ? layers : ((layers && layers.data) || []);
  let html = bar("Overall", overall);
  for (const row of rows) {
    if (row.length < 4 || !row[0]) continue;
    html += bar(`Layer ${row[0]} (${row[2]})`, parseFloat(row[3]) || 0);
  }
  return html;
}"""


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "—"


def _expiry(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.year >= FOREVER_YEAR:
        return "never (kept loaded)"
    seconds = int((value - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "now"
    return f"in {seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"in {seconds} s"


def installed_rows(models: list[InstalledModel]) -> list[list[str]]:
    return [
        [
            m.name,
            format_bytes(m.size),
            m.family or "",
            m.parameter_size or "",
            m.quantization or "",
            _when(m.modified_at),
        ]
        for m in models
    ]


def loaded_rows(models: list[LoadedModel]) -> list[list[str]]:
    return [
        [
            m.name,
            format_bytes(m.size),
            f"{format_bytes(m.size_vram)} ({100 * m.size_vram / m.size:.0f}% GPU)"
            if m.size
            else format_bytes(m.size_vram),
            str(m.context_length or ""),
            _expiry(m.expires_at),
        ]
        for m in models
    ]


def layer_rows(progress: PullProgress) -> list[list[str]]:
    return [
        [
            layer.digest.removeprefix("sha256:")[:12],
            format_bytes(layer.completed),
            format_bytes(layer.total),
            f"{layer.percent:.1f}%",
        ]
        for layer in progress.layers.values()
    ]


def pull_summary(name: str, progress: PullProgress) -> str:
    if progress.done:
        return f"✅ Pulled **{name}** ({format_bytes(progress.total_bytes)})"
    size = (
        f" · {format_bytes(progress.completed_bytes)} of {format_bytes(progress.total_bytes)}"
        if progress.total_bytes
        else ""
    )
    return f"⏳ **{progress.status}** — {progress.percent:.1f}%{size}"


def details_summary(info: ModelDetails) -> str:
    facts = {
        "Family": info.details.get("family"),
        "Parameters": info.details.get("parameter_size"),
        "Quantization": info.details.get("quantization_level"),
        "Format": info.details.get("format"),
        "Capabilities": ", ".join(info.capabilities) or None,
        "Context length": next(
            (v for k, v in info.model_info.items() if k.endswith(".context_length")), None
        ),
    }
    lines = [f"- **{label}:** {value}" for label, value in facts.items() if value]
    return f"### {info.name}\n" + "\n".join(lines)


def endpoint_choices(service: OllamaModelService) -> list[tuple[str, str]]:
    return [(e.label, e.profile_id or "") for e in service.endpoints()]


@dataclass
class Listing:
    """What the tables show of one endpoint."""

    installed: list[list[str]]
    loaded: list[list[str]]
    names: list[str]
    status: str

    @classmethod
    def read(cls, service: OllamaModelService, profile_id: str | None) -> Listing:
        installed = service.installed(profile_id)
        names = [m.name for m in installed]
        status = f"{len(names)} model{'' if len(names) == 1 else 's'} installed"
        return cls(
            installed_rows(installed), loaded_rows(service.loaded(profile_id)), names, status
        )


# ----- the tab ----------------------------------------------------------------------------


@dataclass
class ModelsView:
    endpoint: gr.Dropdown  # "" is the Ollama setting; anything else an Ollama profile's id
    refresh: gr.Button
    listing_status: gr.Markdown
    tick: gr.Textbox  # set by the tab refresh: re-reads the tables of the chosen endpoint
    installed: gr.Dataframe
    loaded: gr.Dataframe
    pull_name: gr.Textbox
    pull: gr.Button
    pull_stop: gr.Button
    pull_status: gr.Markdown
    pull_bars: gr.HTML
    layers: gr.Dataframe
    model: gr.Dropdown
    load: gr.Button
    unload: gr.Button
    show: gr.Button
    delete: gr.Button
    confirm: Confirm
    action_status: gr.Markdown
    details_text: gr.Markdown
    details_json: gr.JSON
    cloud_pick: gr.Dropdown
    cloud_list: gr.Button
    cloud_table: gr.Dataframe

    def listing(self) -> list[Any]:
        """What a re-read of the endpoint fills in."""
        return [self.installed, self.loaded, self.model, self.listing_status]


def build(ctx: AppContext) -> Refresh:
    view = render(ctx)
    return listen(ctx, view)


def render(ctx: AppContext) -> ModelsView:
    gr.Markdown("Manage the models of an Ollama server, and see what your cloud keys can use.")
    with gr.Row():
        # Custom values allowed: profiles created after start-up are not in the build-time
        # choices that API callers are checked against; the service rejects unknown ids.
        endpoint = gr.Dropdown(
            endpoint_choices(ctx.ollama_models),
            value="",
            label="Ollama endpoint",
            allow_custom_value=True,
            scale=4,
            elem_id="models-endpoint",
        )
        refresh = gr.Button("Refresh", scale=1, elem_id="models-refresh")
    listing_status = gr.Markdown(elem_id="models-status")
    tick = render_tick()
    with gr.Accordion("Installed models", open=True):
        installed = gr.Dataframe(
            headers=INSTALLED_COLUMNS, interactive=False, wrap=True, elem_id="models-installed"
        )
    with gr.Accordion("Loaded in memory", open=True):
        loaded = gr.Dataframe(
            headers=LOADED_COLUMNS, interactive=False, wrap=True, elem_id="models-loaded"
        )
    return ModelsView(
        endpoint=endpoint,
        refresh=refresh,
        listing_status=listing_status,
        tick=tick,
        installed=installed,
        loaded=loaded,
        **_render_pull(),
        **_render_manage(),
        **_render_cloud(ctx),
    )


def _render_pull() -> dict[str, Any]:
    with gr.Accordion("Pull a model", open=True):
        with gr.Row():
            pull_name = gr.Textbox(
                label="Model name",
                placeholder="llama3.2, qwen2.5:7b, hf.co/user/repo:Q4_K_M",
                scale=4,
                elem_id="pull-name",
            )
            pull = gr.Button("Pull", variant="primary", scale=1, elem_id="pull-start")
            pull_stop = gr.Button("Stop", variant="stop", scale=1, elem_id="pull-stop")
        pull_status = gr.Markdown(elem_id="pull-status")
        pull_bars = gr.HTML(elem_id="pull-progress")
        layers = gr.Dataframe(
            headers=LAYER_COLUMNS, interactive=False, label="Layers", elem_id="pull-layers"
        )
    return {
        "pull_name": pull_name,
        "pull": pull,
        "pull_stop": pull_stop,
        "pull_status": pull_status,
        "pull_bars": pull_bars,
        "layers": layers,
    }


def _render_manage() -> dict[str, Any]:
    with gr.Accordion("Manage a model", open=True):
        model = gr.Dropdown([], label="Model", allow_custom_value=True, elem_id="manage-model")
        with gr.Row():
            load = gr.Button("Load into memory", elem_id="model-load")
            unload = gr.Button("Unload", elem_id="model-unload")
            show = gr.Button("Details", elem_id="model-show")
            delete = gr.Button("Delete…", variant="stop", elem_id="model-delete")
        confirm = render_confirm("model")
        action_status = gr.Markdown(elem_id="model-action-status")
        details_text = gr.Markdown(elem_id="model-details-summary")
        details_json = gr.JSON(label="Details (/api/show)", elem_id="model-details")
    return {
        "model": model,
        "load": load,
        "unload": unload,
        "show": show,
        "delete": delete,
        "confirm": confirm,
        "action_status": action_status,
        "details_text": details_text,
        "details_json": details_json,
    }


def _render_cloud(ctx: AppContext) -> dict[str, Any]:
    with gr.Accordion("Cloud models", open=False):
        with gr.Row():
            cloud_pick = gr.Dropdown(
                ctx.targets.cloud_choices(),
                value="openai",
                label="Provider",
                allow_custom_value=True,  # as for the endpoint: later profiles must work too
                scale=4,
                elem_id="cloud-pick",
            )
            cloud_list = gr.Button("List models", scale=1, elem_id="cloud-list")
        cloud_table = gr.Dataframe(
            headers=CLOUD_COLUMNS, interactive=False, wrap=True, elem_id="cloud-models"
        )
    return {"cloud_pick": cloud_pick, "cloud_list": cloud_list, "cloud_table": cloud_table}


def listen(ctx: AppContext, view: ModelsView) -> Refresh:
    read_tables = _read_tables(ctx, view)
    _listen_listing(view, read_tables)
    _listen_pull(ctx, view, read_tables)
    _listen_manage(ctx, view)
    _listen_delete(ctx, view)
    _listen_cloud(ctx, view)
    _register_json_api(ctx)

    def refresh() -> dict[Any, Any]:
        # Keep the chosen endpoint; the tick's change event re-reads its tables.
        return {
            view.endpoint: gr.Dropdown(choices=endpoint_choices(ctx.ollama_models)),
            view.cloud_pick: gr.Dropdown(choices=ctx.targets.cloud_choices()),
            view.tick: new_tick(),
        }

    return refresh, [view.endpoint, view.cloud_pick, view.tick]


def _read_tables(ctx: AppContext, view: ModelsView) -> Callable[..., Any]:
    """The handler that re-reads the endpoint's tables (its failure shown inline)."""

    @shows_errors
    def read_tables(profile_id: str | None):
        # A failure is shown inline, not as a popup: this also runs whenever the tab opens.
        try:
            listing = Listing.read(ctx.ollama_models, profile_id)
        except SpoonFeederError as exc:
            return {
                view.installed: [],
                view.loaded: [],
                view.model: gr.Dropdown(choices=[]),
                view.listing_status: f"⚠️ {exc}",
            }
        return {
            view.installed: listing.installed,
            view.loaded: listing.loaded,
            view.model: gr.Dropdown(choices=listing.names),
            view.listing_status: listing.status,
        }

    return read_tables


def _listen_listing(view: ModelsView, read_tables: Callable[..., Any]) -> None:
    view.refresh.click(read_tables, view.endpoint, view.listing(), api_name="refresh_ollama_models")
    view.endpoint.change(read_tables, view.endpoint, view.listing(), api_visibility="private")
    view.tick.change(read_tables, view.endpoint, view.listing(), api_visibility="private")


def _listen_pull(ctx: AppContext, view: ModelsView, read_tables: Callable[..., Any]) -> None:

    @shows_errors
    def pull_model(profile_id: str | None, name: str) -> Iterator[dict[Any, Any]]:
        progress = ctx.ollama_models.pull(name, profile_id)  # validates before any request
        shown_status, shown_at = None, 0.0
        for step in progress:
            now = time.monotonic()
            if step.done or step.status != shown_status or now - shown_at >= PULL_UPDATE_SECONDS:
                shown_status, shown_at = step.status, now
                yield {
                    view.pull_status: pull_summary(name.strip(), step),
                    view.layers: layer_rows(step),
                }

    pulled = [view.pull_status, view.layers]
    pull_event = view.pull.click(
        pull_model,
        [view.endpoint, view.pull_name],
        pulled,
        api_name="pull_model",
        show_progress="minimal",
    )
    pull_event.success(read_tables, view.endpoint, view.listing(), api_visibility="private")
    view.pull_name.submit(
        pull_model,
        [view.endpoint, view.pull_name],
        pulled,
        api_visibility="private",
        show_progress="minimal",
    ).success(read_tables, view.endpoint, view.listing(), api_visibility="private")
    # The bars are drawn in the browser from what the pull already sends, so the
    # /pull_model API keeps its two outputs and no extra round trip is made.
    gr.on(
        [view.pull_status.change, view.layers.change],
        None,
        pulled,
        view.pull_bars,
        js=PROGRESS_BARS_JS,
        api_visibility="private",
    )
    # Cancelling the job closes the generator, which closes the pull's HTTP stream.
    view.pull_stop.click(None, None, None, cancels=[pull_event], api_visibility="private")


def _listen_manage(ctx: AppContext, view: ModelsView) -> None:
    service = ctx.ollama_models

    @shows_errors
    def load_model(profile_id: str | None, name: str | None):
        service.load(name, profile_id=profile_id)
        return {
            view.loaded: loaded_rows(service.loaded(profile_id)),
            view.action_status: f"Loaded **{name.strip()}**; it stays in memory until unloaded.",
        }

    @shows_errors
    def unload_model(profile_id: str | None, name: str | None):
        service.unload(name, profile_id)
        return {
            view.loaded: loaded_rows(service.loaded(profile_id)),
            view.action_status: f"Unloaded **{name.strip()}**; it is still installed.",
        }

    @shows_errors
    def show_model(profile_id: str | None, name: str | None):
        info = service.show(name, profile_id)
        return {view.details_text: details_summary(info), view.details_json: jsonable(info)}

    picked = [view.endpoint, view.model]
    changed = [view.loaded, view.action_status]
    view.load.click(load_model, picked, changed, api_name="load_model")
    view.unload.click(unload_model, picked, changed, api_name="unload_model")
    view.show.click(
        show_model, picked, [view.details_text, view.details_json], api_name="show_model"
    )


def _listen_delete(ctx: AppContext, view: ModelsView) -> None:
    """Delete, in two steps: the button asks, the confirm row's yes deletes."""

    @shows_errors
    def ask_delete(name: str | None):
        if not (name or "").strip():
            raise ValidationError("Choose a model to delete.")
        return {
            view.confirm.row: shown_row(),
            view.confirm.question: f"Delete **{name.strip()}** from this Ollama server?",
        }

    @shows_errors
    def delete_model(profile_id: str | None, name: str | None):
        ctx.ollama_models.delete(name, profile_id)
        listing = Listing.read(ctx.ollama_models, profile_id)
        return {
            view.installed: listing.installed,
            view.loaded: listing.loaded,
            view.model: gr.Dropdown(choices=listing.names, value=None),
            view.confirm.row: hidden_row(),
            view.action_status: f"Deleted **{name.strip()}**. {listing.status}",
        }

    view.delete.click(
        ask_delete,
        view.model,
        [view.confirm.row, view.confirm.question],
        api_name="confirm_delete_model",
    )
    listen_confirm(view.confirm)
    view.confirm.yes.click(
        delete_model,
        [view.endpoint, view.model],
        [view.installed, view.loaded, view.model, view.confirm.row, view.action_status],
        api_name="delete_model",
    )


def _listen_cloud(ctx: AppContext, view: ModelsView) -> None:
    @shows_errors
    def show_provider_models(target: str):
        return [[m.id, m.name or ""] for m in ctx.targets.cloud_models(target)]

    view.cloud_list.click(
        show_provider_models, view.cloud_pick, view.cloud_table, api_name="show_provider_models"
    )


def _register_json_api(ctx: AppContext) -> None:
    """JSON endpoints for scripts (gradio_client)."""
    service = ctx.ollama_models

    @shows_errors
    def list_ollama_models(profile_id: str | None = "") -> list[dict[str, Any]]:
        """Installed models of the Ollama setting ("") or of an Ollama profile (its id)."""
        return jsonable(service.installed(profile_id))

    @shows_errors
    def list_loaded_models(profile_id: str | None = "") -> list[dict[str, Any]]:
        """Models in memory on the Ollama setting ("") or an Ollama profile (its id)."""
        return jsonable(service.loaded(profile_id))

    @shows_errors
    def list_provider_models(target: str = "openai") -> list[dict[str, Any]]:
        """Models a cloud key can use: target is openai/anthropic/gemini or a profile id."""
        return jsonable(ctx.targets.cloud_models(target))

    api(list_ollama_models, "list_ollama_models")
    api(list_loaded_models, "list_loaded_models")
    api(list_provider_models, "list_provider_models")
