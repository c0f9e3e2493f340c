"""Parameter extraction and application on ComfyUI API-format workflows (pure, no I/O)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from spoonfeeder.comfyui.workflow import (
    MAX_SEED,
    ParamMap,
    apply_params,
    extract_params,
    read_params,
    resolve_seed,
    validate_workflow,
)
from spoonfeeder.errors import ValidationError

FIXTURES = Path(__file__).parent / "fixtures" / "comfyui"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def txt2img() -> dict:
    return load("workflow_txt2img_api.json")


def test_fixture_workflow_parameters(txt2img: dict) -> None:
    mapping = extract_params(txt2img)
    assert mapping.targets == {
        "seed": ("3", "seed"),
        "steps": ("3", "steps"),
        "cfg": ("3", "cfg"),
        "sampler_name": ("3", "sampler_name"),
        "scheduler": ("3", "scheduler"),
        "denoise": ("3", "denoise"),
        "width": ("5", "width"),
        "height": ("5", "height"),
        "batch_size": ("5", "batch_size"),
        "prompt": ("6", "text"),
        "negative_prompt": ("7", "text"),
        "checkpoint": ("4", "ckpt_name"),
    }
    values = read_params(txt2img, mapping)
    assert (values["seed"], values["steps"], values["cfg"]) == (42, 3, 8.0)
    assert values["prompt"].startswith("beautiful scenery")
    assert values["negative_prompt"] == "text, watermark"
    assert values["loras"] == []


def test_positive_and_negative_are_told_apart_by_links_not_order(txt2img: dict) -> None:
    swapped = copy.deepcopy(txt2img)
    swapped["3"]["inputs"]["positive"], swapped["3"]["inputs"]["negative"] = ["7", 0], ["6", 0]
    mapping = extract_params(swapped)
    assert mapping.targets["prompt"] == ("7", "text")
    assert mapping.targets["negative_prompt"] == ("6", "text")


def test_apply_returns_a_new_workflow(txt2img: dict) -> None:
    original = copy.deepcopy(txt2img)
    mapping = extract_params(txt2img)
    result = apply_params(
        txt2img,
        mapping,
        {
            "seed": 7,
            "steps": 20,
            "cfg": 6.5,
            "width": 512,
            "height": 768,
            "prompt": "a red fox",
            "negative_prompt": "blurry",
            "checkpoint": "sdxl.safetensors",
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "batch_size": 4,
            "unknown_param": 1,
            "denoise": None,
        },
    )
    assert txt2img == original
    assert result["3"]["inputs"]["seed"] == 7
    assert result["3"]["inputs"]["steps"] == 20
    assert result["3"]["inputs"]["denoise"] == 1.0  # None leaves it alone
    assert result["5"]["inputs"] == {"width": 512, "height": 768, "batch_size": 4}
    assert result["6"]["inputs"]["text"] == "a red fox"
    assert result["7"]["inputs"]["text"] == "blurry"
    assert result["4"]["inputs"]["ckpt_name"] == "sdxl.safetensors"
    assert result["3"]["inputs"]["positive"] == ["6", 0]  # links untouched


def test_ksampler_advanced_uses_noise_seed(txt2img: dict) -> None:
    wf = copy.deepcopy(txt2img)
    inputs = wf["3"]["inputs"]
    wf["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "enable",
            "noise_seed": 5,
            "steps": 30,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "start_at_step": 0,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
            "model": inputs["model"],
            "positive": inputs["positive"],
            "negative": inputs["negative"],
            "latent_image": inputs["latent_image"],
        },
    }
    mapping = extract_params(wf)
    assert mapping.targets["seed"] == ("3", "noise_seed")
    assert "denoise" not in mapping.targets
    assert apply_params(wf, mapping, {"seed": 99})["3"]["inputs"]["noise_seed"] == 99


def with_loras(wf: dict, *names: str) -> dict:
    """The fixture workflow with LoraLoaders chained checkpoint → names… → sampler."""
    wf = copy.deepcopy(wf)
    source = "4"
    for index, name in enumerate(names):
        node_id = str(20 + index)
        wf[node_id] = {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": name,
                "strength_model": 0.5 + index / 10,
                "strength_clip": 1.0,
                "model": [source, 0],
                "clip": [source, 1],
            },
        }
        source = node_id
    wf["3"]["inputs"]["model"] = [source, 0]
    wf["6"]["inputs"]["clip"] = [source, 1]
    wf["7"]["inputs"]["clip"] = [source, 1]
    return wf


def test_chained_loras_are_found_in_chain_order(txt2img: dict) -> None:
    wf = with_loras(txt2img, "style.safetensors", "detail.safetensors")
    mapping = extract_params(wf)
    assert [s.name for s in mapping.loras] == ["style.safetensors", "detail.safetensors"]
    assert [s.node_id for s in mapping.loras] == ["20", "21"]
    assert mapping.loras[1].strength_model == pytest.approx(0.6)
    assert mapping.targets["checkpoint"] == ("4", "ckpt_name")
    assert ParamMap.from_json(json.loads(json.dumps(mapping.to_json()))) == mapping


def test_loras_are_updated_added_and_removed(txt2img: dict) -> None:
    wf = with_loras(txt2img, "a.safetensors")
    mapping = extract_params(wf)

    more = apply_params(
        wf,
        mapping,
        {
            "loras": [
                {"name": "a2.safetensors", "strength_model": 0.8, "strength_clip": 0.7},
                {"name": "b.safetensors", "strength_model": 1.2},
            ]
        },
    )
    remapped = extract_params(more)
    assert [(s.name, s.strength_model, s.strength_clip) for s in remapped.loras] == [
        ("a2.safetensors", 0.8, 0.7),
        ("b.safetensors", 1.2, 1.2),
    ]
    new_id = remapped.loras[1].node_id
    assert more["3"]["inputs"]["model"] == [new_id, 0]
    assert more["6"]["inputs"]["clip"] == [new_id, 1]
    assert more[new_id]["inputs"]["model"] == ["20", 0]

    none = apply_params(wf, mapping, {"loras": []})
    assert "20" not in none
    assert none["3"]["inputs"]["model"] == ["4", 0]
    assert none["6"]["inputs"]["clip"] == ["4", 1]
    validate_workflow(none)  # no dangling links

    plain = extract_params(txt2img)
    added = apply_params(
        txt2img, plain, {"loras": [{"name": "x.safetensors", "strength_model": 1}]}
    )
    assert [s.name for s in extract_params(added).loras] == ["x.safetensors"]


def test_two_samplers_pick_the_one_on_the_empty_latent(txt2img: dict) -> None:
    wf = copy.deepcopy(txt2img)
    # A hires-fix second pass: upscale the first sampler's latent, sample again at 0.5 denoise.
    wf["10"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["3", 0]},
    }
    wf["11"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": 1,
            "steps": 10,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["10", 0],
        },
    }
    wf["8"]["inputs"]["samples"] = ["11", 0]
    # Give the second pass the lower node id, so order alone would pick the wrong one.
    wf["2"] = wf.pop("11")
    wf["8"]["inputs"]["samples"] = ["2", 0]
    mapping = extract_params(wf)
    assert mapping.targets["seed"] == ("3", "seed")
    assert mapping.targets["width"] == ("5", "width")
    result = apply_params(wf, mapping, {"steps": 25})
    assert (result["3"]["inputs"]["steps"], result["2"]["inputs"]["steps"]) == (25, 10)


def test_ui_format_is_refused_with_export_instructions() -> None:
    with pytest.raises(ValidationError, match=r"UI-format.*Export \(API\)"):
        extract_params(load("workflow_txt2img_ui.json"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "JSON object of nodes"),
        ({}, "JSON object of nodes"),
        ({"1": {"inputs": {}}}, "no class_type"),
        ({"1": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}}, "links to node '9'"),
        ({"1": {"class_type": "SaveImage", "inputs": {}}}, "no KSampler"),
    ],
)
def test_invalid_workflows(data: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_workflow(data)


def test_prompt_request_body_is_accepted(txt2img: dict) -> None:
    assert validate_workflow({"prompt": txt2img, "client_id": "x"}) == txt2img


def test_resolve_seed() -> None:
    assert resolve_seed(1234) == 1234
    drawn = {resolve_seed(-1) for _ in range(20)}
    assert len(drawn) > 15 and all(0 <= s <= MAX_SEED for s in drawn)
    with pytest.raises(ValidationError, match="Seed must be"):
        resolve_seed(MAX_SEED + 1)
    with pytest.raises(ValidationError):
        resolve_seed(-2)
