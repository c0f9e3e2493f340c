"""What a batch or sweep will post, read once: the session, its server profile, the
workflow with its parameter map, and the values — workflow defaults ← the session's
last parameters ← the request — cleaned and checked against the workflow and server."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import params
from spoonfeeder.comfyui.library import WorkflowLibrary
from spoonfeeder.comfyui.rows import effective_defaults, get_row, workflow_of
from spoonfeeder.comfyui.servers import Servers
from spoonfeeder.comfyui.workflow import ParamMap, Workflow
from spoonfeeder.db.models import ComfyUISession
from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown

# Form values that are not workflow parameters, allowed in what the form sends.
FORM_EXTRAS = {"workflow_id", "batch_count", "session_id", "requested_seed", "sweep"}


@dataclass
class Plan:
    session_id: uuid.UUID | None
    profile_id: uuid.UUID | None
    workflow_id: uuid.UUID
    workflow: Workflow
    mapping: ParamMap
    values: dict[str, Any]


def make(
    db: sessionmaker[Session],
    workflows: WorkflowLibrary,
    servers: Servers,
    session_id: uuid.UUID | str | None,
    parameters: Mapping[str, Any],
    workflow_id: uuid.UUID | str | None,
    check_server: bool,
    profile_id: uuid.UUID | None = None,
) -> Plan:
    """`profile_id` is the server when there is no session yet (one made with the
    generations); a session's own server wins."""
    unknown = params.unknown_keys({k: v for k, v in parameters.items() if k not in FORM_EXTRAS})
    if unknown:
        raise ValidationError(
            f"Unknown parameter {shown(unknown[0])}; known: {', '.join(params.PARAM_KEYS)}",
            unknown[0],
        )
    with db() as session:
        last: dict[str, Any] = {}
        session_key = None
        if session_id is not None:
            srow = get_row(session, ComfyUISession, session_id, "session")
            session_key, profile_id, last = (
                srow.id,
                srow.profile_id,
                dict(srow.last_parameters or {}),
            )
        wrow = workflows.chosen_row(
            session, workflow_id or parameters.get("workflow_id"), last.get("workflow_id")
        )
        values = params.clean(
            params.merge(effective_defaults(wrow), last_for(last, wrow.id), parameters)
        )
        plan = Plan(
            session_key,
            profile_id,
            wrow.id,
            workflow_of(wrow),
            ParamMap.from_json(wrow.parameter_map),
            values,
        )
    too_many = len(values.get("loras") or []) > len(plan.mapping.loras)
    if too_many and plan.mapping.targets.get("checkpoint") is None:
        raise ValidationError(
            "This workflow has no checkpoint loader to chain LoRAs after", "loras"
        )
    if check_server:
        check_names(servers, values, plan)
    return plan


def last_for(last: Mapping[str, Any], workflow_id: uuid.UUID) -> Mapping[str, Any]:
    """A session's last parameters, if they were this workflow's: values set for another
    workflow never apply (an img2img denoise of 0.55 must not reach a txt2img run, nor
    the reverse)."""
    return last if str(last.get("workflow_id")) == str(workflow_id) else {}


def check_names(servers: Servers, values: Mapping[str, Any], plan: Plan) -> None:
    """Sampler, scheduler, checkpoint and LoRA names the server offers (ValidationError
    naming the first it does not)."""
    used = set(plan.mapping.targets) | {"loras"}
    problem = params.check_against_server(values, servers.options(plan.profile_id), used)
    if problem is not None:  # the server may have gained a model since we looked
        problem = params.check_against_server(
            values, servers.options(plan.profile_id, refresh=True), used
        )
    if problem is not None:
        raise ValidationError(problem, "server")
