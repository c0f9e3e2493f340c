"""The ComfyUI tab's form ↔ parameters conversion: what a person typed becomes the
parameters a generation gets, and a generation's parameters fill the form back."""

from __future__ import annotations

import pytest

from spoonfeeder.errors import ValidationError
from ui.comfyui_format import (
    FORM_KEYS,
    describe_server,
    form_parameters,
    form_values,
    loras_from_rows,
)


def test_lora_rows_become_parameters_and_blank_rows_are_skipped() -> None:
    rows = [["detail.safetensors", 0.6, ""], ["", "", ""], [" style.safetensors ", "", None]]
    assert loras_from_rows(rows) == [
        {"name": "detail.safetensors", "strength_model": 0.6, "strength_clip": 0.6},
        {"name": "style.safetensors", "strength_model": 1.0, "strength_clip": 1.0},
    ]


def test_a_strength_that_is_not_a_number_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="'strong' is not a number"):
        loras_from_rows([["detail.safetensors", "strong", ""]])


def test_form_round_trip_keeps_every_value_and_drops_blanks() -> None:
    params = {
        "prompt": "a fox",
        "negative_prompt": "",
        "width": 512,
        "height": 768,
        "steps": 20,
        "cfg": 6.5,
        "sampler_name": "euler",
        "scheduler": "karras",
        "seed": 42,
        "checkpoint": "sd15.safetensors",
        "batch_size": 2,
        "loras": [{"name": "detail.safetensors", "strength_model": 0.5, "strength_clip": 0.7}],
    }
    values = form_values(params)
    assert len(values) == len(FORM_KEYS)
    back = form_parameters(values)
    assert "negative_prompt" not in back  # blank: the workflow's own value stays
    assert back == {k: v for k, v in params.items() if k != "negative_prompt"}


def test_what_a_run_ran_on_reads_in_one_line() -> None:
    info = {
        "comfyui_version": "0.3.64",
        "models": {
            "checkpoints": {"sd15.safetensors": {"size": 2_132_625_230, "modified": 1795480000.0}},
            "loras": {"gone.safetensors": {"missing": True}},
        },
        "node_classes_sha256": "0de426cdf6282ae13b0a16c0",
        "node_class_count": 478,
        "input_images": [{"name": "sf_ab12.png", "sha256": "ab12cd34ef56ab12cd34"}],
    }
    assert describe_server(info) == (
        "ComfyUI 0.3.64 · sd15.safetensors (2.1 GB, modified 2026-11-24 00:26 UTC) · "
        "gone.safetensors (not on the server) · 478 node classes (sha256 0de426cdf628…) · "
        "input sf_ab12.png (sha256 ab12cd34ef56…)"
    )
    assert describe_server({}) == ""


def test_live_outputs_resend_what_they_once_sent_and_skip_the_rest() -> None:
    """Gradio diffs a generator's frames: a skip after a value would replace the value."""
    import gradio as gr

    from ui.common import LiveOutputs

    a, b, c = object(), object(), object()
    live = LiveOutputs([a, b, c])
    skip = gr.skip()
    assert live.frame({a: "first"}) == ("first", skip, skip)
    assert live.frame({b: [1, 2]}) == ("first", [1, 2], skip)  # a keeps its value
    assert live.frame() == ("first", [1, 2], skip)
    assert live.frame({a: "second"}) == ("second", [1, 2], skip)
