"""The app's Blocks, refusing a wrong input value with a sentence that names the field.

The browser only ever sends a value of the right kind, but every event is also an API
endpoint, and Gradio answers a wrong kind with a bare "Error" and a traceback in the log
(a number that is text, a malformed file, message or table, a file reference to a path
that was never uploaded) or with a message that echoes the whole value (a dropdown's
"Value: <1 MB> is not in the list of choices"). `CheckedBlocks` looks at each payload
before Gradio processes it. A refusal is a `gr.Error` that logs no traceback: it is the
caller's mistake, not ours.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import pydantic
from gradio.exceptions import InvalidPathError

from spoonfeeder.ids import shown

SHOWN_CHOICES = 8
UPLOAD_FIRST = "upload files first (gradio_client: handle_file(path))"
# What a data-model component takes, in words (its payload failed the model).
SHAPES: dict[type, str] = {
    gr.MultimodalTextbox: 'an object like {"text": "…", "files": []}',
    gr.Image: f"an uploaded image — {UPLOAD_FIRST}",
    gr.File: f"an uploaded file — {UPLOAD_FIRST}",
    gr.Dataframe: 'a table like {"headers": […], "data": [[…], …]}',
}


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def refuse(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def field(block: Any) -> str:
    label = getattr(block, "label", None)
    return f"“{label}”" if label else "This field"


def check_number(block: gr.Number | gr.Slider, payload: Any) -> None:
    if payload is None:
        if isinstance(block, gr.Slider):  # a slider always has a value; Gradio fails on None
            raise refuse(f"{field(block)} must be a number, not nothing.")
        return
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise refuse(f"{field(block)} must be a number, not {kind_of(payload)} ({shown(payload)}).")
    if isinstance(payload, float) and not math.isfinite(payload):
        raise refuse(f"{field(block)} must be a finite number.")
    low, high = block.minimum, block.maximum
    if low is not None and high is not None and not low <= payload <= high:
        raise refuse(f"{field(block)} must be between {low:g} and {high:g} (got {payload:g}).")
    if low is not None and payload < low:
        raise refuse(f"{field(block)} must be at least {low:g} (got {payload:g}).")
    if high is not None and payload > high:
        raise refuse(f"{field(block)} must be at most {high:g} (got {payload:g}).")


def check_choice(block: gr.Dropdown, payload: Any) -> None:
    """A scalar choice; with `allow_custom_value` any text or number (the handler judges
    it against what exists now), else one of the choices — named, the value not echoed."""
    values = payload if block.multiselect and isinstance(payload, list) else [payload]
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise refuse(f"{field(block)} must be a choice, not {kind_of(value)}.")
        choices = [choice for _, choice in block.choices]
        if block.allow_custom_value or value in choices:
            continue
        listed = ", ".join(shown(choice) for choice in choices[:SHOWN_CHOICES])
        more = f" and {len(choices) - SHOWN_CHOICES} more" if len(choices) > SHOWN_CHOICES else ""
        offer = f" Choose one of {listed}{more}." if choices else " There is nothing to choose yet."
        raise refuse(f"{field(block)}: {shown(value)} is not one of the choices.{offer}")


def check_shape(block: Any, payload: Any) -> None:
    shape = next((words for kind, words in SHAPES.items() if isinstance(block, kind)), None)
    if payload is None:
        if isinstance(block, gr.Dataframe):  # Gradio's table fails on None
            raise refuse(f"{field(block)} must be {shape}, not nothing.")
        return
    try:
        block.data_model.model_validate(payload)
    except pydantic.ValidationError:
        raise refuse(f"{field(block)} must be {shape or 'of another shape'}.") from None


def check_payload(block: Any, payload: Any) -> None:
    """Refuse `payload` for the input `block` if Gradio could not take it."""
    if isinstance(block, (gr.Number, gr.Slider)):
        check_number(block, payload)
    elif isinstance(block, gr.Checkbox):
        if payload is not None and not isinstance(payload, bool):
            raise refuse(f"{field(block)} must be true or false, not {shown(payload)}.")
    elif isinstance(block, gr.Dropdown):
        check_choice(block, payload)
    elif getattr(block, "data_model", None) is not None:
        check_shape(block, payload)


class CheckedBlocks(gr.Blocks):
    """gr.Blocks that checks every input payload before Gradio processes it.

    `preprocess_data` is where Gradio turns an event's payloads into handler arguments,
    for the browser and every API route alike: the one place to stand before it.
    """

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, *args: Any):
        for i, block in enumerate(block_fn.inputs):
            if i < len(inputs) and not block.stateful:
                if state is not None and block._id in state:
                    block = state[block._id]  # this session's copy (its current choices)
                check_payload(block, inputs[i])
        try:
            return await super().preprocess_data(block_fn, inputs, state, *args)
        except InvalidPathError:  # a file reference to a path on the server
            raise refuse(f"A file can only be one uploaded to this app: {UPLOAD_FIRST}.") from None
