"""Rows ↔ views, lookups and small checks shared by the ComfyUI service. No I/O of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from spoonfeeder.comfyui import params
from spoonfeeder.comfyui.views import (
    COMPLETED,
    FAILED,
    GenerationView,
    OutputFile,
    SessionView,
    WorkflowView,
)
from spoonfeeder.comfyui.workflow import ParamMap, Workflow, read_params
from spoonfeeder.db.models import ComfyUIGeneration, ComfyUISession, ComfyUIWorkflow
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import parse_id, shown

MAX_NAME = 200


def get_row(session: Session, model: type[Any], key: uuid.UUID | str, what: str) -> Any:
    row = session.get(model, parse_id(key, what))
    if row is None:
        raise NotFoundError(f"No {what} with id {key} (it may have been deleted)")
    return row


def clean_name(name: str | None, what: str) -> str:
    text = " ".join((name or "").split())
    if not text:
        raise ValidationError(f"Give the {what} a name", "name")
    if len(text) > MAX_NAME:
        raise ValidationError(f"A {what} name has at most {MAX_NAME} characters", "name")
    return text


def refuse_duplicate(session: Session, model: type[Any], name: str, what: str) -> None:
    if session.scalar(select(func.count()).select_from(model).where(model.name == name)):
        raise ValidationError(
            f"{what} called {shown(name)} already exists; choose another name", "name"
        )


def clean_defaults(defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    values = dict(defaults or {})
    unknown = params.unknown_keys(values)
    if unknown:
        raise ValidationError(f"Unknown parameter {shown(unknown[0])}", unknown[0])
    return params.clean(values)


def workflow_of(row: ComfyUIWorkflow) -> Workflow:
    """A stored workflow in its own key order (its text), else its JSON (rows from before
    migration 0004, whose order PostgreSQL has already sorted)."""
    return json.loads(row.workflow_text) if row.workflow_text else dict(row.workflow_json)


def snapshot_text(workflow: Workflow) -> str:
    """The one way a prompt becomes the text that is stored and posted (order kept)."""
    return json.dumps(workflow)


def snapshot_of(row: ComfyUIGeneration) -> tuple[Workflow, str]:
    """A generation's snapshot, as the dict (in the posted order) and the exact text."""
    text = row.workflow_snapshot_text or snapshot_text(dict(row.workflow_json_snapshot))
    return json.loads(text), text


def effective_defaults(row: ComfyUIWorkflow) -> dict[str, Any]:
    mapping = ParamMap.from_json(row.parameter_map)
    return params.merge(read_params(row.workflow_json, mapping), row.default_parameters)


def combo_choices(info: Mapping[str, Any], input_name: str) -> list[str]:
    """A combo input's values, in either form ComfyUI uses: [[values], {…}] or
    ["COMBO", {"options": [values]}]."""
    spec = ((info.get("input") or {}).get("required") or {}).get(input_name)
    if not spec:
        spec = ((info.get("input") or {}).get("optional") or {}).get(input_name)
    if not spec:
        return []
    if isinstance(spec[0], list):
        return [str(v) for v in spec[0]]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return [str(v) for v in spec[1].get("options") or []]
    return []


def session_counts(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int, int]]:
    if not ids:
        return {}
    g = ComfyUIGeneration
    rows = session.execute(
        select(
            g.session_id,
            func.count(),
            func.sum(case((g.status == COMPLETED, 1), else_=0)),
            func.sum(case((g.status == FAILED, 1), else_=0)),
        )
        .where(g.session_id.in_(ids))
        .group_by(g.session_id)
    )
    return {sid: (int(n), int(done or 0), int(failed or 0)) for sid, n, done, failed in rows}


def session_view(row: ComfyUISession, counts: tuple[int, int, int]) -> SessionView:
    return SessionView(
        row.id,
        row.name,
        row.description,
        row.profile_id,
        dict(row.last_parameters or {}),
        counts[0],
        counts[1],
        counts[2],
        row.created_at,
        row.updated_at,
    )


def workflow_view(row: ComfyUIWorkflow) -> WorkflowView:
    return WorkflowView(
        row.id,
        row.name,
        row.description,
        workflow_of(row),
        dict(row.parameter_map),
        effective_defaults(row),
        bool(row.is_default),
        int(row.generation_count or 0),
        row.created_at,
        row.updated_at,
    )


def generation_view(row: ComfyUIGeneration) -> GenerationView:
    return GenerationView(
        row.id,
        row.session_id,
        row.workflow_id,
        row.profile_id,
        row.task_id,
        row.status,
        row.prompt_id,
        row.prompt_text,
        row.negative_prompt,
        dict(row.parameters or {}),
        row.width,
        row.height,
        row.steps,
        row.cfg_scale,
        row.seed,
        row.sampler_name,
        row.scheduler,
        row.batch_size,
        row.checkpoint_name,
        list(row.loras_used or []),
        [OutputFile.from_json(item) for item in row.outputs or []],
        row.error,
        float(row.progress or 0.0),
        row.generation_time_seconds,
        int(row.batch_index or 0),
        row.reproduced_from_id,
        dict(row.server_info or {}),
        row.created_at,
        row.started_at,
        row.completed_at,
        list(row.input_images or []),
    )


def posted_loras(snapshot: Workflow, mapping: ParamMap, values: Mapping[str, Any]) -> list[Any]:
    """The LoRAs as posted (names and strengths) — after apply_params rebuilt the chain."""
    if values.get("loras") is None:
        return read_params(snapshot, mapping)["loras"]
    return [dict(lora) for lora in values["loras"]]


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, list) else None
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, list) else None
    except (TypeError, ValueError):
        return None
