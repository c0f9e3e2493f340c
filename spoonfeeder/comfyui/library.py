"""The workflow library (`ctx.comfyui.workflows`): parse and inspect API-format JSON,
import, edit, pick the default, delete. The built-in workflows are seeded when there is
none at all."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import builtin
from spoonfeeder.comfyui.rows import (
    clean_defaults,
    clean_name,
    get_row,
    refuse_duplicate,
    snapshot_text,
    workflow_view,
)
from spoonfeeder.comfyui.views import WorkflowView
from spoonfeeder.comfyui.workflow import Workflow, extract_params, read_params, validate_workflow
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIWorkflow
from spoonfeeder.errors import NotFoundError, ValidationError

MAX_WORKFLOW_BYTES = 5 * 1024 * 1024


def parse(source: str | bytes | Mapping[str, Any]) -> Workflow:
    """An API-format workflow from pasted/uploaded JSON text or a dict.

    A UI-format export is refused with how to export the API format instead."""
    if isinstance(source, bytes | bytearray):
        if len(source) > MAX_WORKFLOW_BYTES:
            raise ValidationError("That file is too large to be a workflow", "workflow")
        try:
            source = source.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError(
                "That file is not text; upload a .json file", "workflow"
            ) from None
    if isinstance(source, str):
        if not source.strip():
            raise ValidationError("Paste or upload a workflow (API-format JSON)", "workflow")
        try:
            data: Any = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"That is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                "workflow",
            ) from None
    else:
        data = json.loads(json.dumps(dict(source)))  # a private, JSON-clean copy
    return validate_workflow(data)


class WorkflowLibrary:
    """The stored workflows, default first; each keeps its JSON, its exact text and the
    map of where its parameters live."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self._db = db

    @staticmethod
    def inspect(source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
        """What an import would find, without saving: parameters with their values and
        where each lives ("node 3 (KSampler) · seed")."""
        workflow = parse(source)
        mapping = extract_params(workflow)
        return {
            "parameters": read_params(workflow, mapping),
            "targets": {
                param: f"node {node} ({workflow[node]['class_type']}) · {name}"
                for param, (node, name) in mapping.targets.items()
            },
            "loras": [slot.__dict__ for slot in mapping.loras],
            "nodes": len(workflow),
        }

    def add(
        self,
        name: str,
        source: str | bytes | Mapping[str, Any],
        *,
        description: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        make_default: bool = False,
        owner_id: uuid.UUID | None = None,
    ) -> WorkflowView:
        """Store an API-format workflow (JSON text, bytes of an uploaded file, or a dict)."""
        cleaned_name = clean_name(name, "workflow")
        workflow = parse(source)
        mapping = extract_params(workflow)
        cleaned = clean_defaults(defaults)
        with transaction(self._db) as session:
            refuse_duplicate(session, ComfyUIWorkflow, cleaned_name, "A workflow")
            if make_default:
                session.execute(update(ComfyUIWorkflow).values(is_default=False))
            row = ComfyUIWorkflow(
                owner_id=owner_id,
                name=cleaned_name,
                description=(description or "").strip() or None,
                workflow_json=workflow,
                workflow_text=snapshot_text(workflow),
                parameter_map=mapping.to_json(),
                default_parameters=cleaned,
                is_default=make_default,
            )
            session.add(row)
            session.flush()
            return workflow_view(row)

    def seed_builtin(self) -> WorkflowView | None:
        """Seed the built-in workflows when there is no workflow at all (first start): txt2img,
        the default, and img2img. Returns the default."""
        with self._db() as session:
            if session.scalar(select(func.count()).select_from(ComfyUIWorkflow)):
                return None
        txt2img = self.add(
            builtin.NAME,
            builtin.workflow(),
            description=builtin.DESCRIPTION,
            defaults=builtin.DEFAULTS,
            make_default=True,
        )
        self.add(
            builtin.IMG2IMG_NAME,
            builtin.img2img_workflow(),
            description=builtin.IMG2IMG_DESCRIPTION,
            defaults=builtin.IMG2IMG_DEFAULTS,
        )
        return txt2img

    def list_all(self, owner_id: uuid.UUID | None = None) -> list[WorkflowView]:
        """Default first, then by name."""
        with self._db() as session:
            query = select(ComfyUIWorkflow).order_by(
                ComfyUIWorkflow.is_default.desc(), ComfyUIWorkflow.name
            )
            if owner_id is not None:
                query = query.where(ComfyUIWorkflow.owner_id == owner_id)
            return [workflow_view(row) for row in session.scalars(query)]

    def get(self, workflow_id: uuid.UUID | str) -> WorkflowView:
        with self._db() as session:
            return workflow_view(get_row(session, ComfyUIWorkflow, workflow_id, "workflow"))

    def default(self) -> WorkflowView:
        """The workflow marked default, else the oldest; seeds the built-in one if none."""
        with self._db() as session:
            row = session.scalar(
                select(ComfyUIWorkflow).order_by(
                    ComfyUIWorkflow.is_default.desc(), ComfyUIWorkflow.created_at
                )
            )
            if row is not None:
                return workflow_view(row)
        seeded = self.seed_builtin()
        return seeded if seeded is not None else self.default()

    def image_parameter(
        self, workflow_id: uuid.UUID | str | None, chosen: str | None
    ) -> dict[str, Any]:
        """The `image` of a request for `workflow_id` (None = the default): the image
        `chosen`, else — for a workflow that takes one — its own, never one remembered
        from an earlier run; {} for a workflow that takes none."""
        workflow = self.get(workflow_id) if workflow_id else self.default()
        if chosen:
            return {"image": chosen}
        if "image" in workflow.extracted:
            return {"image": workflow.parameters.get("image")}
        return {}

    def chosen_row(
        self,
        session: Session,
        workflow_id: uuid.UUID | str | None,
        remembered: uuid.UUID | str | None = None,
    ) -> ComfyUIWorkflow:
        """The asked-for workflow (NotFoundError if gone), else the remembered one if it
        still exists, else the default — as a row of `session`."""
        if workflow_id:
            return get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
        if remembered:
            with contextlib.suppress(NotFoundError):
                return get_row(session, ComfyUIWorkflow, remembered, "workflow")
        row = session.get(ComfyUIWorkflow, self.default().id)
        assert row is not None
        return row

    def update(
        self,
        workflow_id: uuid.UUID | str,
        *,
        name: str | None = None,
        description: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> WorkflowView:
        """Rename, describe, or replace the edited default parameters (None = unchanged)."""
        cleaned = clean_defaults(defaults) if defaults is not None else None
        with transaction(self._db) as session:
            row = get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
            if name is not None:
                cleaned_name = clean_name(name, "workflow")
                if cleaned_name != row.name:
                    refuse_duplicate(session, ComfyUIWorkflow, cleaned_name, "A workflow")
                row.name = cleaned_name
            if description is not None:
                row.description = description.strip() or None
            if cleaned is not None:
                row.default_parameters = cleaned
            session.flush()
            return workflow_view(row)

    def set_default(self, workflow_id: uuid.UUID | str) -> WorkflowView:
        with transaction(self._db) as session:
            row = get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
            session.execute(update(ComfyUIWorkflow).values(is_default=False))
            row.is_default = True
            session.flush()
            return workflow_view(row)

    def delete(self, workflow_id: uuid.UUID | str) -> str:
        """Delete a workflow; its generations keep their snapshots. Returns its name."""
        with transaction(self._db) as session:
            row = get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
            name = row.name
            session.delete(row)
            return name
