"""The ComfyUI tab's Workflows accordion: import (with the parameters found), the
default, deletion, and the edited default parameters of the chosen workflow."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from ui.comfyui_updates import need, workflow_choices, workflow_rows
from ui.common import shows_errors
from ui.tab import Confirm, hidden_row, listen_confirm, shown_row

if TYPE_CHECKING:
    from ui.comfyui import ComfyView


def render_workflows() -> dict[str, Any]:
    """ComfyView's Workflows fields."""
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
            inspect = gr.Button("Show parameters", elem_id="cf-wf-inspect")
            import_ = gr.Button("Import workflow", variant="primary", elem_id="cf-wf-import")
            make_default = gr.Button("Make the selected workflow default", elem_id="cf-wf-default")
            wf_delete = gr.Button(
                "Delete the selected workflow…", variant="stop", elem_id="cf-wf-delete"
            )
        with gr.Row(visible=False) as confirm_row:
            question = gr.Markdown()
            yes = gr.Button("Yes, delete the workflow", variant="stop", elem_id="cf-wf-confirm")
            no = gr.Button("Keep it")
        wf_info = gr.JSON(label="Parameters found", elem_id="cf-wf-info")
        wf_defaults = gr.Code(
            label="Default parameters of the selected workflow (JSON; edit and save)",
            language="json",
            lines=8,
            elem_id="cf-wf-defaults",
        )
        save_defaults = gr.Button("Save defaults", elem_id="cf-wf-save")
    return {
        "workflows_table": workflows_table,
        "wf_name": wf_name,
        "wf_file": wf_file,
        "wf_text": wf_text,
        "inspect": inspect,
        "import_": import_,
        "make_default": make_default,
        "wf_delete": wf_delete,
        "wf_confirm": Confirm(confirm_row, question, yes, no),
        "wf_info": wf_info,
        "wf_defaults": wf_defaults,
        "save_defaults": save_defaults,
    }


def listen_workflows(ctx: AppContext, view: ComfyView) -> None:
    _listen_import(ctx, view)
    _listen_default(ctx, view)
    _listen_delete(ctx, view)
    _listen_defaults(ctx, view)


def _listing(ctx: AppContext, view: ComfyView, chosen: str | None) -> dict[Any, Any]:
    """The workflow picker (`chosen` picked) and table again."""
    return {
        view.workflow: gr.Dropdown(choices=workflow_choices(ctx), value=chosen),
        view.workflows_table: workflow_rows(ctx),
    }


def _workflow_source(file_bytes: bytes | None, text: str | None) -> bytes | str:
    if file_bytes:
        return file_bytes
    if text and text.strip():
        return text
    raise ValidationError("Upload an API-format workflow file or paste its JSON")


def _listen_import(ctx: AppContext, view: ComfyView) -> None:
    comfy = ctx.comfyui

    @shows_errors
    def inspect(file_bytes: bytes | None, text: str):
        return comfy.workflows.inspect(_workflow_source(file_bytes, text))

    @shows_errors
    def import_workflow(name: str, file_bytes: bytes | None, text: str, server_id: str | None):
        added = comfy.workflows.add(name, _workflow_source(file_bytes, text))
        gr.Info(f"Imported “{added.name}”: {', '.join(added.extracted) or 'no parameters found'}")
        missing = comfy.servers.missing_node_types(added.id, server_id or None)
        if missing:
            gr.Warning(
                f"The ComfyUI server lacks node types this workflow uses: {', '.join(missing)}. "
                "Install those custom nodes (e.g. with ComfyUI-Manager) before generating.",
                duration=None,
            )
        return _listing(ctx, view, str(added.id))

    view.inspect.click(
        inspect, [view.wf_file, view.wf_text], view.wf_info, api_name="inspect_workflow"
    )
    view.import_.click(
        import_workflow,
        [view.wf_name, view.wf_file, view.wf_text, view.server],
        [view.workflow, view.workflows_table],
        api_name="import_workflow",
    )


def _listen_default(ctx: AppContext, view: ComfyView) -> None:
    @shows_errors
    def make_default(workflow_id: str | None):
        ctx.comfyui.workflows.set_default(need(workflow_id, "workflow"))
        return _listing(ctx, view, workflow_id)

    view.make_default.click(
        make_default,
        view.workflow,
        [view.workflow, view.workflows_table],
        api_name="set_default_workflow",
    )


def _listen_delete(ctx: AppContext, view: ComfyView) -> None:
    """Delete, in two steps: the button asks, the confirm row's yes deletes."""
    workflows, confirm = ctx.comfyui.workflows, view.wf_confirm

    @shows_errors
    def ask_delete_workflow(workflow_id: str | None):
        chosen = workflows.get(need(workflow_id, "workflow"))
        text = (
            f"Delete the workflow **{chosen.name}**? Its {chosen.generation_count} generations "
            "keep their snapshots (and can still be re-run exactly)."
        )
        return {confirm.row: shown_row(), confirm.question: text}

    @shows_errors
    def delete_workflow(workflow_id: str | None):
        name = workflows.delete(need(workflow_id, "workflow"))
        gr.Info(f"Deleted workflow “{name}”; its generations keep their snapshots")
        return {**_listing(ctx, view, None), confirm.row: hidden_row()}

    view.wf_delete.click(
        ask_delete_workflow,
        view.workflow,
        [confirm.row, confirm.question],
        api_name="confirm_delete_workflow",
    )
    listen_confirm(confirm)
    confirm.yes.click(
        delete_workflow,
        view.workflow,
        [view.workflow, view.workflows_table, confirm.row],
        api_name="delete_workflow",
    )


def _listen_defaults(ctx: AppContext, view: ComfyView) -> None:
    workflows = ctx.comfyui.workflows

    @shows_errors
    def show_defaults(workflow_id: str | None):
        if not workflow_id:
            return ""
        return json.dumps(workflows.get(workflow_id).parameters, indent=2)

    @shows_errors
    def save_defaults(workflow_id: str | None, text: str | None):
        try:
            defaults = json.loads(text or "{}")
        except ValueError as exc:
            raise ValidationError(f"The defaults are not valid JSON: {exc}") from None
        if not isinstance(defaults, dict):
            raise ValidationError('The defaults must be a JSON object, e.g. {"steps": 25}')
        workflows.update(need(workflow_id, "workflow"), defaults=defaults)
        gr.Info("Defaults saved")
        return workflow_rows(ctx)

    view.workflow.change(show_defaults, view.workflow, view.wf_defaults, api_visibility="private")
    view.save_defaults.click(
        save_defaults,
        [view.workflow, view.wf_defaults],
        view.workflows_table,
        api_name="save_workflow_defaults",
    )
