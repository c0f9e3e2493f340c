"""Generation parameters as data (pure): merging, cleaning, server checks, sweeps, seeds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spoonfeeder.comfyui import params
from spoonfeeder.comfyui.views import ServerOptions
from spoonfeeder.comfyui.workflow import MAX_SEED
from spoonfeeder.errors import ValidationError

OPTIONS = ServerOptions(
    "http://gpu:8188",
    ["euler", "dpmpp_2m"],
    ["normal", "karras"],
    ["sd15.safetensors"],
    ["detail.safetensors"],
    datetime.now(UTC),
)


def test_later_layers_win_and_blanks_do_not_erase() -> None:
    merged = params.merge(
        {"steps": 20, "cfg": 7.0, "prompt": "a"},
        {"steps": 30, "workflow_id": "x"},  # not a parameter: skipped
        {"cfg": None, "prompt": "b"},  # None: "not given"
    )
    assert merged == {"steps": 30, "cfg": 7.0, "prompt": "b"}


def test_numbers_from_a_form_are_typed() -> None:
    cleaned = params.clean(
        {"width": 512.0, "height": "768", "steps": "20", "cfg": "7.5", "seed": -1, "denoise": 1}
    )
    assert cleaned == {
        "width": 512,
        "height": 768,
        "steps": 20,
        "cfg": 7.5,
        "seed": -1,
        "denoise": 1.0,
    }
    assert isinstance(cleaned["steps"], int) and isinstance(cleaned["cfg"], float)


@pytest.mark.parametrize(
    ("values", "message", "field"),
    [
        ({"width": 513}, "Width must be a multiple of 8 (got 513; try 512 or 520)", "width"),
        ({"height": 8}, "Height must be between 16 and 16384 (got 8)", "height"),
        ({"steps": 20.5}, "Steps must be a whole number, not 20.5", "steps"),
        ({"steps": "many"}, "Steps must be a whole number, not 'many'", "steps"),
        ({"cfg": 101}, "CFG must be between 0 and 100 (got 101)", "cfg"),
        ({"cfg": float("nan")}, "CFG must be between 0 and 100 (got nan)", "cfg"),
        ({"denoise": 1.5}, "Denoise must be between 0 and 1 (got 1.5)", "denoise"),
        ({"seed": -2}, f"Seed must be between -1 and {MAX_SEED} (got -2)", "seed"),
        ({"seed": MAX_SEED + 1}, "Seed must be between -1 and", "seed"),
        ({"batch_size": 0}, "Batch size must be between 1 and 64 (got 0)", "batch_size"),
        ({"sampler_name": " "}, "Choose a sampler", "sampler_name"),
        ({"checkpoint": ""}, "Choose a checkpoint", "checkpoint"),
        ({"loras": "detail"}, "LoRAs must be a list", "loras"),
        ({"loras": [{"strength_model": 1}]}, "LoRA 1 has no name", "loras"),
        (
            {"loras": [{"name": "a", "strength": 500}]},
            "Loras must be between -100 and 100",
            "loras",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    values: dict[str, object], message: str, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        params.clean(values)
    assert str(caught.value).startswith(message)
    assert caught.value.field == field


def test_loras_take_names_or_dicts_and_one_strength_for_both() -> None:
    assert params.clean({"loras": ["a.safetensors", {"name": " b ", "strength": 0.5}]}) == {
        "loras": [
            {"name": "a.safetensors", "strength_model": 1.0, "strength_clip": 1.0},
            {"name": "b", "strength_model": 0.5, "strength_clip": 0.5},
        ]
    }
    assert params.clean({"loras": [{"name": "c", "strength_model": 0.8, "strength_clip": 0.2}]})[
        "loras"
    ] == [{"name": "c", "strength_model": 0.8, "strength_clip": 0.2}]


def test_names_are_checked_only_where_the_workflow_uses_them() -> None:
    used = {"sampler_name", "scheduler", "checkpoint", "loras"}
    good = {"sampler_name": "euler", "scheduler": "karras", "checkpoint": "sd15.safetensors"}
    assert params.check_against_server(good, OPTIONS, used) is None
    assert params.check_against_server({**good, "scheduler": "exp"}, OPTIONS, used) == (
        "The ComfyUI server at http://gpu:8188 has no scheduler called 'exp'. "
        "Available: normal, karras"
    )
    no_loader = used - {"checkpoint"}  # a workflow without a checkpoint loader
    assert params.check_against_server({**good, "checkpoint": "x"}, OPTIONS, no_loader) is None
    lora = {"loras": [{"name": "gone.safetensors"}]}
    assert "no LoRA called 'gone.safetensors'" in str(
        params.check_against_server(lora, OPTIONS, used)
    )
    empty = ServerOptions("http://gpu:8188", [], [], [], [], datetime.now(UTC))
    assert params.check_against_server(lora, empty, used) == (
        "The ComfyUI server at http://gpu:8188 has no LoRA called 'gone.safetensors' "
        "(it lists none)"
    )


def test_batch_seeds_count_up_and_wrap_past_the_largest_seed() -> None:
    assert params.batch_seeds(10, 3) == [10, 11, 12]
    assert params.batch_seeds(MAX_SEED, 2) == [MAX_SEED, 0]


def test_sweep_cells_vary_the_first_axis_slowest() -> None:
    cells = params.sweep_cells([("cfg", [4, 6]), ("sampler_name", ["euler", "dpmpp_2m"])])
    assert cells == [
        {"cfg": 4, "sampler_name": "euler"},
        {"cfg": 4, "sampler_name": "dpmpp_2m"},
        {"cfg": 6, "sampler_name": "euler"},
        {"cfg": 6, "sampler_name": "dpmpp_2m"},
    ]
    assert params.cell_label({"cfg": 4.0, "steps": 20}) == "cfg=4.0 · steps=20"


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ([], "A sweep varies one or two parameters"),
        ([("cfg", [1]), ("steps", [1]), ("seed", [1])], "A sweep varies one or two parameters"),
        ([("cfg", [1]), ("cfg", [2])], "Sweep two different parameters"),
        ([("loras", [1])], "Cannot sweep 'loras'"),
        ([("steps", [])], "Give at least one value for Steps"),
        ([("steps", list(range(9))), ("cfg", list(range(8)))], "has 72 .* the cap of 64"),
    ],
)
def test_sweeps_that_cannot_run_are_refused(axes: list, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        params.sweep_cells(axes)


def test_sweep_values_parse_from_text() -> None:
    assert params.parse_values("4, 6.5, 8") == [4, 6.5, 8]
    assert params.parse_values("euler, dpmpp_2m,") == ["euler", "dpmpp_2m"]
    assert params.parse_values("1.0") == [1.0]
    assert params.parse_values([3, 4]) == [3, 4]
