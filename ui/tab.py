"""What the tabs share in how they render and listen.

Each tab module has `render(ctx) -> XView` (the layout: a dataclass with one field per
component its events use) and `listen(ctx, view) -> Refresh` (the handlers and their
wiring); `build(ctx)` is the two in turn. Handlers return dicts keyed by component.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr


@dataclass
class Confirm:
    """A hidden "are you sure?" row: a question, yes, and no (which only hides the row)."""

    row: gr.Row
    question: gr.Markdown | None
    yes: gr.Button
    no: gr.Button


def render_confirm(prefix: str, question: str | None = "", no_label: str = "Cancel") -> Confirm:
    """The row, hidden; its buttons are `#{prefix}-confirm-delete` and `#{prefix}-cancel-delete`.
    `question` is the row's text ("" = set by the event that shows it, None = no text)."""
    with gr.Row(visible=False) as row:
        text = gr.Markdown(question) if question is not None else None
        yes = gr.Button("Yes, delete", variant="stop", elem_id=f"{prefix}-confirm-delete")
        no = gr.Button(no_label, elem_id=f"{prefix}-cancel-delete")
    return Confirm(row, text, yes, no)


def listen_confirm(confirm: Confirm) -> None:
    confirm.no.click(hidden_row, None, confirm.row, api_visibility="private")


def hidden_row() -> gr.Row:
    return gr.Row(visible=False)


def shown_row() -> gr.Row:
    return gr.Row(visible=True)


def render_tick() -> gr.Textbox:
    """A hidden box the tab's refresh sets (page load, tab open): its change event starts
    what has to run then (a live view, listings that may be slow)."""
    return gr.Textbox(visible=False)


def new_tick() -> str:
    return str(time.time())
