"""Input components that refuse a wrong value with a sentence naming the field.

The browser only ever sends a value of the right kind, but every event is also an API
endpoint, and Gradio's own components answer a wrong kind with a generic "Error" (a
number that is text, a malformed file or message) or with a message that echoes the whole
value (a dropdown's "Value: <1 MB> is not in the list of choices"). These subclasses look
exactly like Gradio's (`is_template` keeps the front-end component) and check the payload
first. A refusal is a `gr.Error` without a traceback in the log: it is the caller's
mistake, not ours.

Gradio writes a type stub (`ui/inputs.pyi`) beside any module that subclasses a component,
for editors; it is generated, ignored by git and by ruff.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import gradio as gr
import pydantic

SHOWN_CHARS = 40  # of a refused value, in a message
SHOWN_CHOICES = 8


def shown(value: Any) -> str:
    """A refused value as a message quotes it: short, one line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


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


def _field(component: Any) -> str:
    label = getattr(component, "label", None)  # not yet set while Gradio initialises it
    return f"“{label}”" if label else "This field"


def check_number(component: Any, payload: Any) -> Any:
    if payload is None:
        return None
    field = _field(component)
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise refuse(f"{field} must be a number, not {kind_of(payload)} ({shown(payload)}).")
    if isinstance(payload, float) and not math.isfinite(payload):
        raise refuse(f"{field} must be a finite number.")
    low, high = component.minimum, component.maximum
    if low is not None and high is not None and not low <= payload <= high:
        raise refuse(f"{field} must be between {low:g} and {high:g} (got {payload:g}).")
    if low is not None and payload < low:
        raise refuse(f"{field} must be at least {low:g} (got {payload:g}).")
    if high is not None and payload > high:
        raise refuse(f"{field} must be at most {high:g} (got {payload:g}).")
    return payload


class Number(gr.Number):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return super().preprocess(check_number(self, payload))


class Slider(gr.Slider):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return super().preprocess(check_number(self, payload))


class Checkbox(gr.Checkbox):
    is_template = True

    def preprocess(self, payload: Any) -> Any:
        if payload is not None and not isinstance(payload, bool):
            raise refuse(f"{_field(self)} must be true or false, not {shown(payload)}.")
        return payload


class Dropdown(gr.Dropdown):
    """A dropdown whose refusal names the field and the choices, never echoing 1 MB.

    With `allow_custom_value` any text (or number) is let through for the handler to
    judge against what exists now; other kinds are refused here.
    """

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        values = payload if isinstance(payload, list) and self.multiselect else [payload]
        for value in values:
            self._check(value)
        return super().preprocess(payload)

    def _check(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise refuse(f"{_field(self)} must be a choice, not {kind_of(value)}.")
        choices = [choice for _, choice in self.choices]
        if self.allow_custom_value or value in choices:
            return
        listed = ", ".join(shown(choice) for choice in choices[:SHOWN_CHOICES])
        more = f" and {len(choices) - SHOWN_CHOICES} more" if len(choices) > SHOWN_CHOICES else ""
        offer = f" Choose one of {listed}{more}." if choices else " There is nothing to choose yet."
        raise refuse(f"{_field(self)}: {shown(value)} is not one of the choices.{offer}")


@functools.cache  # one class per model and message, not one per component or session
def _refusing(model: type[Any], message: str) -> type[Any]:
    """`model` with a malformed payload refused as `message` (same schema, same name)."""

    class Refusing(model):  # type: ignore[misc, valid-type]
        model_config = pydantic.ConfigDict(title=model.__name__)

        @classmethod
        def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().model_validate(obj, *args, **kwargs)
            except pydantic.ValidationError:
                raise refuse(message) from None

    Refusing.__name__ = Refusing.__qualname__ = model.__name__
    return Refusing


def _refusing_model(default: type[Any] | None, wanted: str) -> property:
    """A `data_model` that turns a malformed payload into "<field> must be <wanted>".

    A property, not an `__init__`: Gradio rebuilds a component from its constructor
    arguments inside events (a session's updated copy), where a subclass `__init__` runs
    without its base having initialised.
    """

    def get(self: Any) -> type[Any] | None:
        model = self.__dict__.get("_data_model", default)
        return None if model is None else _refusing(model, f"{_field(self)} must be {wanted}.")

    def put(self: Any, model: type[Any] | None) -> None:
        self.__dict__["_data_model"] = model

    return property(get, put)


class MultimodalTextbox(gr.MultimodalTextbox):
    is_template = True
    data_model = _refusing_model(
        gr.MultimodalTextbox.data_model, 'an object like {"text": "…", "files": []}'
    )


class Image(gr.Image):
    is_template = True
    data_model = _refusing_model(
        gr.Image.data_model, "an uploaded image file (gradio_client: handle_file(path))"
    )


class File(gr.File):
    is_template = True  # its data model is set per instance (one file or a list)
    data_model = _refusing_model(None, "an uploaded file (gradio_client: handle_file(path))")


class Dataframe(gr.Dataframe):
    is_template = True
    data_model = _refusing_model(
        gr.Dataframe.data_model, 'a table like {"headers": […], "data": [[…], …]}'
    )
