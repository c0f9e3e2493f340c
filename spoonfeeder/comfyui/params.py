"""Generation parameters as data: merge, clean, check against a server, sweep. No I/O.

Parameters are the form's values: prompt, negative_prompt, width, height, steps, cfg,
sampler_name, scheduler, seed (-1 = random), denoise, checkpoint, batch_size, loras (a
list of {name, strength_model, strength_clip}) and image (the input image's name on the
server, for a LoadImage node). Each error names its field.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from spoonfeeder.comfyui.views import ServerOptions
from spoonfeeder.comfyui.workflow import MAX_SEED
from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown

PARAM_KEYS = (
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg",
    "sampler_name",
    "scheduler",
    "seed",
    "denoise",
    "checkpoint",
    "batch_size",
    "loras",
    "image",
)
SWEEPABLE = tuple(k for k in PARAM_KEYS if k not in ("loras", "image"))
MAX_BATCH_COUNT = 100
DEFAULT_SWEEP_CELLS = 64  # SWEEP_MAX_CELLS; each cell is a whole run on one GPU
MAX_PROMPT = 100_000
LABELS = {
    "image": "Input image",
    "cfg": "CFG",
    "sampler_name": "Sampler",
    "negative_prompt": "Negative prompt",
    "batch_size": "Batch size",
}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Later layers win; None values and keys that are not parameters are skipped."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key in PARAM_KEYS and value is not None:
                merged[key] = value
    return merged


def _integer(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{label(name)} must be a whole number, not {shown(value)}", name
        ) from None
    if not math.isfinite(number) or number != int(number):
        raise ValidationError(f"{label(name)} must be a whole number, not {shown(value)}", name)
    result = int(number)
    if not low <= result <= high:
        raise ValidationError(
            f"{label(name)} must be between {low} and {high} (got {result})", name
        )
    return result


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{label(name)} must be a number, not {shown(value)}", name) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ValidationError(
            f"{label(name)} must be between {low:g} and {high:g} (got {value})", name
        )
    return number


def _text(name: str, value: Any, *, required: bool) -> str:
    text = value if isinstance(value, str) else str(value)
    if required and not text.strip():
        raise ValidationError(f"Choose a {label(name).lower()}", name)
    if len(text) > MAX_PROMPT:
        raise ValidationError(f"{label(name)} is too long ({len(text)} characters)", name)
    return text.strip() if required else text


def _size(name: str, value: Any) -> int:
    size = _integer(name, value, 16, 16384)
    if size % 8:
        raise ValidationError(
            f"{label(name)} must be a multiple of 8 (got {size}; try {size - size % 8} "
            f"or {size - size % 8 + 8})",
            name,
        )
    return size


def _loras(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list | tuple):
        raise ValidationError("LoRAs must be a list of {name, strength}", "loras")
    cleaned = []
    for index, item in enumerate(value, start=1):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or not str(item.get("name") or "").strip():
            raise ValidationError(f"LoRA {index} has no name", "loras")
        strength = item.get("strength_model", item.get("strength", 1.0))
        model = _number("loras", 1.0 if strength is None else strength, -100, 100)
        clip = item.get("strength_clip")
        cleaned.append(
            {
                "name": str(item["name"]).strip(),
                "strength_model": model,
                "strength_clip": model if clip is None else _number("loras", clip, -100, 100),
            }
        )
    return cleaned


def clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed, range-checked parameters; a ValidationError naming the first bad field."""
    out: dict[str, Any] = {}
    for key, value in merge(values).items():
        if key in ("prompt", "negative_prompt"):
            out[key] = _text(key, value, required=False)
        elif key in ("width", "height"):
            out[key] = _size(key, value)
        elif key == "steps":
            out[key] = _integer(key, value, 1, 10000)
        elif key == "batch_size":
            out[key] = _integer(key, value, 1, 64)
        elif key == "seed":
            seed = _integer(key, value, -1, MAX_SEED)
            out[key] = seed
        elif key == "cfg":
            out[key] = _number(key, value, 0, 100)
        elif key == "denoise":
            out[key] = _number(key, value, 0, 1)
        elif key in ("sampler_name", "scheduler", "checkpoint", "image"):
            out[key] = _text(key, value, required=True)
        elif key == "loras":
            out[key] = _loras(value)
    return out


def unknown_keys(values: Mapping[str, Any]) -> list[str]:
    return [key for key in values if key not in PARAM_KEYS]


def check_against_server(
    values: Mapping[str, Any], options: ServerOptions, used: set[str]
) -> str | None:
    """The first value the server does not offer, as a sentence; None if all are known.

    Only parameters the workflow actually sets (`used`) are checked."""
    checks = (
        ("sampler_name", options.samplers, "sampler"),
        ("scheduler", options.schedulers, "scheduler"),
        ("checkpoint", options.checkpoints, "checkpoint"),
    )
    for key, offered, what in checks:
        if key in used and key in values and values[key] not in offered:
            return _not_offered(what, values[key], offered, options.url)
    if "loras" in used:
        for lora in values.get("loras") or []:
            if lora["name"] not in options.loras:
                return _not_offered("LoRA", lora["name"], options.loras, options.url)
    return None


def _not_offered(what: str, value: Any, offered: Sequence[str], url: str) -> str:
    if not offered:
        return f"The ComfyUI server at {url} has no {what} called {shown(value)} (it lists none)"
    listed = ", ".join(offered[:8]) + (f", … ({len(offered)} in all)" if len(offered) > 8 else "")
    return f"The ComfyUI server at {url} has no {what} called {shown(value)}. Available: {listed}"


def batch_count(value: Any) -> int:
    """How many generations one Generate makes."""
    return _integer("batch_count", value, 1, MAX_BATCH_COUNT)


def batch_seeds(seed: int, count: int) -> list[int]:
    """`count` seeds counting up from `seed`, wrapping past the largest seed."""
    return [(seed + i) % (MAX_SEED + 1) for i in range(count)]


def sweep_cells(
    axes: Sequence[tuple[str, Sequence[Any]]], max_cells: int = DEFAULT_SWEEP_CELLS
) -> list[dict[str, Any]]:
    """Every combination of one or two axes' values, first axis varying slowest; at most
    `max_cells` of them."""
    if not 1 <= len(axes) <= 2:
        raise ValidationError("A sweep varies one or two parameters", "sweep")
    names = [name for name, _ in axes]
    if len(set(names)) != len(names):
        raise ValidationError("Sweep two different parameters", "sweep")
    for name, values in axes:
        if name not in SWEEPABLE:
            raise ValidationError(
                f"Cannot sweep {shown(name)}; choose one of: {', '.join(SWEEPABLE)}", "sweep"
            )
        if not values:
            raise ValidationError(f"Give at least one value for {label(name)}", "sweep")
    cells = [
        dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))
    ]
    if len(cells) > max_cells:
        raise ValidationError(
            f"That sweep has {len(cells)} combinations, more than the cap of {max_cells} "
            "(SWEEP_MAX_CELLS); use fewer values",
            "sweep",
        )
    return cells


def parse_values(text: str | Sequence[Any]) -> list[Any]:
    """Sweep values from "4, 6, 8" (numbers where they parse) or an existing list."""
    if not isinstance(text, str):
        return list(text)
    values: list[Any] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            number = float(part)
            values.append(int(number) if number.is_integer() and "." not in part else number)
        except ValueError:
            values.append(part)
    return values


def cell_label(values: Mapping[str, Any]) -> str:
    return " · ".join(f"{name}={value}" for name, value in values.items())
