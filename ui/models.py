"""Models tab: the models of an Ollama server (pull, load, unload, delete, inspect),
and the models a cloud provider's key can use."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


def build(ctx: AppContext) -> Refresh:
    service = ctx.ollama_models
    # "" is the Ollama setting; anything else an Ollama profile's id.
    choices = endpoint_choices(service)

    gr.Markdown("Manage the models of an Ollama server, and see what your cloud keys can use.")
    with gr.Row():
        # Custom values allowed: profiles created after start-up are not in the build-time
        # choices that API callers are checked against; the service rejects unknown ids.
        endpoint = gr.Dropdown(
            choices,
            value="",
            label="Ollama endpoint",
            allow_custom_value=True,
            scale=4,
            elem_id="models-endpoint",
        )
        refresh_btn = gr.Button("Refresh", scale=1, elem_id="models-refresh")
    listing_status = gr.Markdown(elem_id="models-status")
    # Set by the tab refresh; its change event re-reads the tables for the chosen endpoint.
    tick = gr.Textbox(visible=False)

    with gr.Accordion("Installed models", open=True):
        installed_table = gr.Dataframe(
            headers=INSTALLED_COLUMNS, interactive=False, wrap=True, elem_id="models-installed"
        )
    with gr.Accordion("Loaded in memory", open=True):
        loaded_table = gr.Dataframe(
            headers=LOADED_COLUMNS, interactive=False, wrap=True, elem_id="models-loaded"
        )

    with gr.Accordion("Pull a model", open=True):
        with gr.Row():
            pull_name = gr.Textbox(
                label="Model name",
                placeholder="llama3.2, qwen2.5:7b, hf.co/user/repo:Q4_K_M",
                scale=4,
                elem_id="pull-name",
            )
            pull_btn = gr.Button("Pull", variant="primary", scale=1, elem_id="pull-start")
            pull_stop = gr.Button("Stop", variant="stop", scale=1, elem_id="pull-stop")
        pull_status = gr.Markdown(elem_id="pull-status")
        pull_bars = gr.HTML(elem_id="pull-progress")
        layers_table = gr.Dataframe(
            headers=LAYER_COLUMNS, interactive=False, label="Layers", elem_id="pull-layers"
        )

    with gr.Accordion("Manage a model", open=True):
        model_pick = gr.Dropdown([], label="Model", allow_custom_value=True, elem_id="manage-model")
        with gr.Row():
            load_btn = gr.Button("Load into memory", elem_id="model-load")
            unload_btn = gr.Button("Unload", elem_id="model-unload")
            show_btn = gr.Button("Details", elem_id="model-show")
            delete_btn = gr.Button("Delete…", variant="stop", elem_id="model-delete")
        with gr.Row(visible=False) as confirm_row:
            confirm_text = gr.Markdown()
            confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="model-confirm-delete")
            cancel_btn = gr.Button("Cancel", elem_id="model-cancel-delete")
        action_status = gr.Markdown(elem_id="model-action-status")
        details_text = gr.Markdown(elem_id="model-details-summary")
        details_json = gr.JSON(label="Details (/api/show)", elem_id="model-details")

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
            cloud_btn = gr.Button("List models", scale=1, elem_id="cloud-list")
        cloud_table = gr.Dataframe(
            headers=CLOUD_COLUMNS, interactive=False, wrap=True, elem_id="cloud-models"
        )

    # ----- listings --------------------------------------------------------------
    def tables(profile_id: str | None) -> tuple[list[list[str]], list[list[str]], list[str], str]:
        installed = service.installed(profile_id or None)
        loaded = service.loaded(profile_id or None)
        names = [m.name for m in installed]
        status = f"{len(names)} model{'' if len(names) == 1 else 's'} installed"
        return installed_rows(installed), loaded_rows(loaded), names, status

    @shows_errors
    def read_tables(profile_id: str | None):
        # A failure is shown inline, not as a popup: this also runs whenever the tab opens.
        try:
            installed, loaded, names, status = tables(profile_id)
        except SpoonFeederError as exc:
            return [], [], gr.Dropdown(choices=[]), f"⚠️ {exc}"
        return installed, loaded, gr.Dropdown(choices=names), status

    listing = [installed_table, loaded_table, model_pick, listing_status]
    refresh_btn.click(read_tables, endpoint, listing, api_name="refresh_ollama_models")
    endpoint.change(read_tables, endpoint, listing, api_visibility="private")
    tick.change(read_tables, endpoint, listing, api_visibility="private")

    # ----- pull ------------------------------------------------------------------------
    @shows_errors
    def pull_model(profile_id: str | None, name: str) -> Iterator[tuple[str, list[list[str]]]]:
        progress = service.pull(name, profile_id or None)  # validates before any request
        shown_status, shown_at = None, 0.0
        for step in progress:
            now = time.monotonic()
            if step.done or step.status != shown_status or now - shown_at >= PULL_UPDATE_SECONDS:
                shown_status, shown_at = step.status, now
                yield pull_summary(name.strip(), step), layer_rows(step)

    pull_event = pull_btn.click(
        pull_model,
        [endpoint, pull_name],
        [pull_status, layers_table],
        api_name="pull_model",
        show_progress="minimal",
    )
    pull_event.success(read_tables, endpoint, listing, api_visibility="private")
    pull_name.submit(
        pull_model,
        [endpoint, pull_name],
        [pull_status, layers_table],
        api_visibility="private",
        show_progress="minimal",
    ).success(read_tables, endpoint, listing, api_visibility="private")
    # The bars are drawn in the browser from what the pull already sends, so the
    # /pull_model API keeps its two outputs and no extra round trip is made.
    gr.on(
        [pull_status.change, layers_table.change],
        None,
        [pull_status, layers_table],
        pull_bars,
        js=PROGRESS_BARS_JS,
        api_visibility="private",
    )
    # Cancelling the job closes the generator, which closes the pull's HTTP stream.
    pull_stop.click(None, None, None, cancels=[pull_event], api_visibility="private")

    # ----- load / unload / show ----------------------------------------------------------
    @shows_errors
    def load_model(profile_id: str | None, name: str | None):
        service.load(name, profile_id=profile_id or None)
        loaded = service.loaded(profile_id or None)
        return loaded_rows(loaded), f"Loaded **{name.strip()}**; it stays in memory until unloaded."

    @shows_errors
    def unload_model(profile_id: str | None, name: str | None):
        service.unload(name, profile_id or None)
        loaded = service.loaded(profile_id or None)
        return loaded_rows(loaded), f"Unloaded **{name.strip()}**; it is still installed."

    @shows_errors
    def show_model(profile_id: str | None, name: str | None):
        info = service.show(name, profile_id or None)
        return details_summary(info), jsonable(info)

    load_btn.click(
        load_model, [endpoint, model_pick], [loaded_table, action_status], api_name="load_model"
    )
    unload_btn.click(
        unload_model, [endpoint, model_pick], [loaded_table, action_status], api_name="unload_model"
    )
    show_btn.click(
        show_model, [endpoint, model_pick], [details_text, details_json], api_name="show_model"
    )

    # ----- delete, in two steps ------------------------------------------------------------
    @shows_errors
    def ask_delete(name: str | None):
        if not (name or "").strip():
            raise ValidationError("Choose a model to delete.")
        return gr.Row(visible=True), f"Delete **{name.strip()}** from this Ollama server?"

    @shows_errors
    def delete_model(profile_id: str | None, name: str | None):
        service.delete(name, profile_id or None)
        installed, loaded, names, status = tables(profile_id)
        return (
            installed,
            loaded,
            gr.Dropdown(choices=names, value=None),
            gr.Row(visible=False),
            f"Deleted **{name.strip()}**. {status}",
        )

    delete_btn.click(
        ask_delete, model_pick, [confirm_row, confirm_text], api_name="confirm_delete_model"
    )
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm_btn.click(
        delete_model,
        [endpoint, model_pick],
        [installed_table, loaded_table, model_pick, confirm_row, action_status],
        api_name="delete_model",
    )

    # ----- cloud models -----------------------------------------------------------------
    @shows_errors
    def show_provider_models(target: str):
        return [[m.id, m.name or ""] for m in ctx.targets.cloud_models(target)]

    cloud_btn.click(show_provider_models, cloud_pick, cloud_table, api_name="show_provider_models")

    # ----- JSON endpoints for scripts (gradio_client) -----------------------------------------
    @shows_errors
    def list_ollama_models(profile_id: str | None = "") -> list[dict[str, Any]]:
        """Installed models of the Ollama setting ("") or of an Ollama profile (its id)."""
        return jsonable(service.installed(profile_id or None))

    @shows_errors
    def list_loaded_models(profile_id: str | None = "") -> list[dict[str, Any]]:
        """Models in memory on the Ollama setting ("") or an Ollama profile (its id)."""
        return jsonable(service.loaded(profile_id or None))

    @shows_errors
    def list_provider_models(target: str = "openai") -> list[dict[str, Any]]:
        """Models a cloud key can use: target is openai/anthropic/gemini or a profile id."""
        return jsonable(ctx.targets.cloud_models(target))

    api(list_ollama_models, "list_ollama_models")
    api(list_loaded_models, "list_loaded_models")
    api(list_provider_models, "list_provider_models")

    def refresh():
        # Keep the chosen endpoint; the tick's change event re-reads its tables.
        return (
            gr.Dropdown(choices=endpoint_choices(service)),
            gr.Dropdown(choices=ctx.targets.cloud_choices()),
            str(time.time()),
        )

    return refresh, [endpoint, cloud_pick, tick]
