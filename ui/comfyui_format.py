"""How the ComfyUI tab shows things: form values ↔ generation parameters, table rows,
descriptions and run summaries. Pure functions, no Gradio events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from spoonfeeder.comfyui.params import PARAM_KEYS
from spoonfeeder.comfyui.views import GalleryPage, GenerationView, SessionView
from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.ollama_models import format_bytes
from ui.common import format_time

# The form's fields in the order of the generate endpoint's arguments (scripts rely on it);
# the fields that only some workflows take (denoise, an input image) come after them.
WORKFLOW_KEYS = ("denoise", "image")
FORM_KEYS = tuple(key for key in PARAM_KEYS if key not in WORKFLOW_KEYS)
LORA_HEADERS = ["LoRA", "Model strength", "CLIP strength"]
GENERATION_COLUMNS = ["Status", "Seed", "Size", "Steps", "CFG", "Sampler", "Time", "Label", "ID"]
STATUS_ICONS = {"pending": "⏳", "running": "▶️", "completed": "✅", "failed": "❌"}


def loras_from_rows(rows: Any) -> list[dict[str, Any]]:
    """The LoRA table (name, model strength, clip strength) as parameters; blank rows skipped."""
    if hasattr(rows, "values"):  # a DataFrame
        rows = rows.values.tolist()
    out = []
    for row in rows or []:
        name = str(row[0] if len(row) > 0 and row[0] is not None else "").strip()
        if not name:
            continue
        model = _number_or(row[1] if len(row) > 1 else None, 1.0)
        clip = _number_or(row[2] if len(row) > 2 else None, model)
        out.append({"name": name, "strength_model": model, "strength_clip": clip})
    return out


def _number_or(value: Any, default: float) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"LoRA strength {shown(value)} is not a number", "loras") from None


def form_parameters(values: Sequence[Any]) -> dict[str, Any]:
    """The form's values (in FORM_KEYS order) as generation parameters; blanks left out."""
    params: dict[str, Any] = {}
    for key, value in zip(FORM_KEYS, values, strict=True):
        if key == "loras":
            params[key] = loras_from_rows(value)
        elif value is not None and not (isinstance(value, str) and not value.strip()):
            params[key] = value
    return params


def form_values(params: dict[str, Any]) -> list[Any]:
    """Parameters back into form values (FORM_KEYS order)."""
    out: list[Any] = []
    for key in FORM_KEYS:
        value = params.get(key)
        if key == "loras":
            value = [
                [lora["name"], lora.get("strength_model", 1.0), lora.get("strength_clip", 1.0)]
                for lora in value or []
            ]
        out.append(value)
    return out


def generation_row(g: GenerationView) -> list[Any]:
    return [
        f"{STATUS_ICONS.get(g.status, '⏹️')} {g.status}",
        g.seed if g.seed is not None else "",
        f"{g.width}×{g.height}" if g.width and g.height else "",
        g.steps or "",
        g.cfg if g.cfg is not None else "",
        g.sampler_name or "",
        f"{g.generation_time_seconds:.1f} s" if g.generation_time_seconds else "",
        g.label,
        str(g.id),
    ]


def describe_generation(g: GenerationView) -> str:
    lines = [
        f"### Generation `{str(g.id)[:8]}` — {g.status}",
        f"**Prompt:** {g.prompt or '—'}",
        f"**Negative:** {g.negative_prompt or '—'}",
        f"**Seed** {g.seed} · **{g.width}×{g.height}** · **steps** {g.steps} · **CFG** {g.cfg} "
        f"· **sampler** {g.sampler_name} / {g.scheduler}",
        f"**Checkpoint:** {g.checkpoint or '—'}"
        + (
            " · **LoRAs:** "
            + ", ".join(f"{lora.get('name')} ({lora.get('strength_model')})" for lora in g.loras)
            if g.loras
            else ""
        ),
        f"**Created:** {format_time(g.created_at)} · **Finished:** {format_time(g.completed_at)}"
        + (f" · **took** {g.generation_time_seconds:.1f} s" if g.generation_time_seconds else ""),
    ]
    if g.prompt_id:
        lines.append(f"**ComfyUI prompt id:** `{g.prompt_id}`")
    if ran_on := describe_server(g.server_info):
        lines.append(f"**Ran on:** {ran_on}")
    if g.reproduced_from_id:
        lines.append(f"**Exact re-run of:** `{g.reproduced_from_id}`")
    if g.label:
        lines.append(f"**Sweep cell:** {g.label}")
    if g.error:
        lines.append(f"\n⚠️ **{g.error}**")
    return "\n\n".join(lines)


def describe_server(info: dict[str, Any]) -> str:
    """What a run ran on, in a line: version, model files, node classes, input images."""
    if not info:
        return ""
    bits = [f"ComfyUI {info.get('comfyui_version') or '?'}"]
    for files in (info.get("models") or {}).values():
        for name, facts in files.items():
            if facts is None:
                bits.append(f"{name} (the server does not list its files)")
            elif facts.get("missing"):
                bits.append(f"{name} (not on the server)")
            else:
                when = datetime.fromtimestamp(float(facts.get("modified") or 0), UTC)
                size = format_bytes(int(facts.get("size") or 0))
                bits.append(f"{name} ({size}, modified {when:%Y-%m-%d %H:%M} UTC)")
    if info.get("node_classes_sha256"):
        digest = str(info["node_classes_sha256"])[:12]
        bits.append(f"{info.get('node_class_count', '?')} node classes (sha256 {digest}…)")
    for image in info.get("input_images") or []:
        bits.append(f"input {image.get('name')} (sha256 {str(image.get('sha256'))[:12]}…)")
    if info.get("cached"):
        bits.append("served from ComfyUI's cache")
    return " · ".join(bits)


def gallery_summary(page: GalleryPage) -> str:
    """Which completed generations the gallery shows, and how many pages there are."""
    if not page.total:
        return "No completed generations in this session yet."
    first = page.page * page.per_page + 1
    last = first + len(page.generations) - 1
    return f"Completed {first}–{last} of {page.total} · page {page.page + 1} of {page.pages}"


def session_choices(sessions: list[SessionView]) -> list[tuple[str, str]]:
    return [
        (
            f"{s.name} · {s.completed_count}/{s.generation_count} done"
            + (f", {s.failed_count} failed" if s.failed_count else ""),
            str(s.id),
        )
        for s in sessions
    ]


def run_summary(finished: list[GenerationView]) -> str:
    by_status: dict[str, int] = {}
    for g in finished:
        by_status[g.status] = by_status.get(g.status, 0) + 1
    text = "Done: " + ", ".join(f"{n} {status}" for status, n in by_status.items())
    errors = [g.error for g in finished if g.error]
    if errors:
        text += "\n\n⚠️ **" + errors[0] + "**"
    return text


def placeholder() -> str:
    """A tiny blank image for a sweep cell that has no picture (failed or cancelled)."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.gettempdir()) / "spoonfeeder-empty-cell.png"
    if not path.exists():
        # 1×1 transparent PNG
        path.write_bytes(
            bytes.fromhex(
                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
            )
        )
    return str(path)
