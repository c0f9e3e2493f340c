"""Making new generations (`ctx.comfyui.generator`) — a batch, a sweep, an exact re-run,
a new task for one a restart left behind. Each row is created `pending` with the exact
JSON that will be posted (`workflow_json_snapshot`) and every denormalized column, and
is handed to the task queue when one is connected; `runner.Runner` runs it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import inputs, params, planning
from spoonfeeder.comfyui.generations import Generations
from spoonfeeder.comfyui.hooks import QueueHooks
from spoonfeeder.comfyui.library import WorkflowLibrary
from spoonfeeder.comfyui.planning import Plan
from spoonfeeder.comfyui.rows import (
    as_float,
    as_int,
    clean_name,
    generation_view,
    get_row,
    posted_loras,
    snapshot_of,
    snapshot_text,
)
from spoonfeeder.comfyui.servers import Servers
from spoonfeeder.comfyui.sessions import SessionStore
from spoonfeeder.comfyui.views import PENDING, GenerationView, SweepView
from spoonfeeder.comfyui.workflow import apply_params, read_params, resolve_seed
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration, ComfyUISession, ComfyUIWorkflow
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import ValidationError

# One generation to create: its values, what else to record in `parameters`, its index.
Item = tuple[dict[str, Any], dict[str, Any], int]


@dataclass(frozen=True)
class NewSession:
    """A session to make together with the generations, in their transaction: a request
    that is refused makes none. Its name is made unique ("a fox (2)")."""

    name: str
    profile_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None


class Generator:
    def __init__(
        self,
        db: sessionmaker[Session],
        workflows: WorkflowLibrary,
        servers: Servers,
        sessions: SessionStore,
        generations: Generations,
        hooks: QueueHooks,
        media_root: Path,
        sweep_max_cells: int = params.DEFAULT_SWEEP_CELLS,
    ) -> None:
        self._db = db
        self._workflows = workflows
        self._servers = servers
        self._sessions = sessions
        self._generations = generations
        self._hooks = hooks
        self._media = media_root
        self.sweep_max_cells = sweep_max_cells

    def generate(
        self,
        session_id: uuid.UUID | str | None,
        parameters: Mapping[str, Any],
        *,
        workflow_id: uuid.UUID | str | None = None,
        batch_count: int = 1,
        owner_id: uuid.UUID | None = None,
        check_server: bool = True,
        new_session: str | None = None,
        profile_id: uuid.UUID | str | None = None,
    ) -> list[GenerationView]:
        """Create `batch_count` pending generations (seeds counting up from the resolved
        seed) and enqueue them. Parameters merge as workflow defaults ← the session's
        last parameters for this workflow ← `parameters`; a bad value raises
        ValidationError naming it. With `check_server`, names (sampler, scheduler,
        checkpoint, LoRAs) are checked against the server's /object_info
        (ProviderUnavailable if it cannot be reached). Without a session, `new_session`
        names one to make with them (on server `profile_id`) — only if nothing is refused.
        An input image (`image`) may be a file path or bytes: it is kept and uploaded."""
        new = self._new_session(session_id, new_session, profile_id, owner_id)
        count = params.batch_count(batch_count)
        parameters, stored = inputs.prepare(self._media, parameters)
        plan = self._plan(session_id, parameters, workflow_id, check_server, new)
        images = self._input_images(plan, stored)
        requested = plan.values.get("seed", -1)
        seeds = params.batch_seeds(resolve_seed(requested), count)
        items = [
            ({**plan.values, "seed": seed}, {"batch_count": count, "requested_seed": requested}, i)
            for i, seed in enumerate(seeds)
        ]
        last = {**plan.values, "batch_count": count}
        views = self._create(plan, items, owner_id, last=last, images=images, new=new)
        return self._enqueue_all(views)

    def sweep(
        self,
        session_id: uuid.UUID | str | None,
        parameters: Mapping[str, Any],
        axes: Sequence[tuple[str, Sequence[Any] | str]],
        *,
        workflow_id: uuid.UUID | str | None = None,
        owner_id: uuid.UUID | None = None,
        check_server: bool = True,
        new_session: str | None = None,
        profile_id: uuid.UUID | str | None = None,
    ) -> SweepView:
        """One generation per combination of one or two parameters' values, e.g.
        `[("cfg", [4, 6, 8]), ("steps", "20, 30")]` → 6 generations, all on the same
        (resolved) seed so only the swept parameters differ. Each is labelled.
        `new_session` and `profile_id` as for `generate`."""
        parsed = [(name, params.parse_values(values)) for name, values in axes]
        cells = params.sweep_cells(parsed, self.sweep_max_cells)
        new = self._new_session(session_id, new_session, profile_id, owner_id)
        parameters, stored = inputs.prepare(self._media, parameters)
        plan = self._plan(session_id, parameters, workflow_id, False, new)
        images = self._input_images(plan, stored)
        seed = resolve_seed(plan.values.get("seed", -1))
        sweep_id = uuid.uuid4().hex
        cleaned_axes: list[tuple[str, list[Any]]] = []
        for name, values in parsed:
            cleaned_axes.append((name, [params.clean({name: v})[name] for v in values]))
        items: list[Item] = []
        for index, cell in enumerate(cells):
            cleaned_cell = params.clean(cell)
            values = {**plan.values, "seed": seed, **cleaned_cell}
            values["seed"] = resolve_seed(values["seed"])  # a swept seed of -1: random
            if check_server:
                planning.check_names(self._servers, values, plan)
            meta = {
                "sweep": {
                    "id": sweep_id,
                    "values": cleaned_cell,
                    "label": params.cell_label(cleaned_cell),
                    "axes": [[name, vals] for name, vals in cleaned_axes],
                }
            }
            items.append((values, meta, index))
        views = self._create(plan, items, owner_id, last=plan.values, images=images, new=new)
        return SweepView(sweep_id, cleaned_axes, self._enqueue_all(views))

    def rerun_exact(
        self,
        generation_id: uuid.UUID | str,
        *,
        owner_id: uuid.UUID | None = None,
    ) -> GenerationView:
        """A new generation that posts the stored snapshot unchanged, on the same server
        profile; `reproduced_from_id` points at the original."""
        with transaction(self._db) as session:
            src = get_row(session, ComfyUIGeneration, generation_id, "generation")
            row = ComfyUIGeneration(
                owner_id=owner_id if owner_id is not None else src.owner_id,
                session_id=src.session_id,
                workflow_id=src.workflow_id,
                profile_id=src.profile_id,
                reproduced_from_id=src.id,
                workflow_json_snapshot=src.workflow_json_snapshot,
                workflow_snapshot_text=snapshot_of(src)[1],  # the same bytes, posted again
                input_images=src.input_images,
                prompt_text=src.prompt_text,
                negative_prompt=src.negative_prompt,
                parameters={k: v for k, v in src.parameters.items() if k != "sweep"},
                width=src.width,
                height=src.height,
                steps=src.steps,
                cfg_scale=src.cfg_scale,
                seed=src.seed,
                sampler_name=src.sampler_name,
                scheduler=src.scheduler,
                batch_size=src.batch_size,
                checkpoint_name=src.checkpoint_name,
                loras_used=src.loras_used,
                status=PENDING,
                batch_index=0,
            )
            session.add(row)
            if src.session_id is not None:
                _touch_session(session, src.session_id)
            session.flush()
            view = generation_view(row)
        return self._enqueue_all([view])[0]

    def _input_images(self, plan: Plan, stored: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The input images the generations will upload before they run."""
        target = plan.mapping.targets.get("image")
        if target is None:
            if stored is not None:
                raise ValidationError(
                    "This workflow has no Load Image node to take an input image; choose an "
                    "img2img workflow or leave the image out",
                    "image",
                )
            return []
        return inputs.for_run(self._media, plan.values.get("image"), target[0], stored)

    def _create(
        self,
        plan: Plan,
        items: list[Item],
        owner_id: uuid.UUID | None,
        *,
        last: Mapping[str, Any],
        images: list[dict[str, Any]],
        new: NewSession | None = None,
    ) -> list[GenerationView]:
        views: list[GenerationView] = []
        with transaction(self._db) as session:
            if new is not None and plan.session_id is None:
                made = ComfyUISession(
                    name=unique_session_name(session, new.name),
                    profile_id=new.profile_id,
                    owner_id=new.owner_id,
                )
                session.add(made)
                session.flush()
                plan.session_id, plan.profile_id = made.id, made.profile_id
            for values, meta, index in items:
                snapshot = apply_params(plan.workflow, plan.mapping, values)
                posted = read_params(snapshot, plan.mapping)
                row = ComfyUIGeneration(
                    owner_id=owner_id,
                    session_id=plan.session_id,
                    workflow_id=plan.workflow_id,
                    profile_id=plan.profile_id,
                    workflow_json_snapshot=snapshot,
                    workflow_snapshot_text=snapshot_text(snapshot),
                    parameters={**values, **meta},
                    prompt_text=posted.get("prompt"),
                    negative_prompt=posted.get("negative_prompt"),
                    width=as_int(posted.get("width")),
                    height=as_int(posted.get("height")),
                    steps=as_int(posted.get("steps")),
                    cfg_scale=as_float(posted.get("cfg")),
                    seed=as_int(posted.get("seed")),
                    sampler_name=posted.get("sampler_name"),
                    scheduler=posted.get("scheduler"),
                    batch_size=as_int(posted.get("batch_size")),
                    checkpoint_name=posted.get("checkpoint"),
                    loras_used=posted_loras(snapshot, plan.mapping, values),
                    input_images=images,
                    status=PENDING,
                    batch_index=index,
                )
                session.add(row)
                session.flush()
                views.append(generation_view(row))
            session.execute(
                update(ComfyUIWorkflow)
                .where(ComfyUIWorkflow.id == plan.workflow_id)
                .values(generation_count=ComfyUIWorkflow.generation_count + len(items))
            )
            if plan.session_id is not None:
                _touch_session(
                    session,
                    plan.session_id,
                    last_parameters={**last, "workflow_id": str(plan.workflow_id)},
                )
        return views

    def requeue(
        self, generation_id: uuid.UUID | str, *, replacing: uuid.UUID | None = None
    ) -> GenerationView:
        """Give an unfinished generation a new task in place of `replacing` (its old task,
        which a restart left finished or lost). Compare-and-set: when two processes start
        at once, only one new task is kept, so the generation never runs twice."""
        view = self._generations.get(generation_id)
        enqueue = self._hooks.enqueue
        if view.done or enqueue is None or view.task_id != replacing:
            return view
        task_id = enqueue(view)
        if task_id is None:
            return view
        g = ComfyUIGeneration
        same = g.task_id.is_(None) if replacing is None else g.task_id == replacing
        with transaction(self._db) as session:
            won = session.execute(
                update(g).where(g.id == view.id, same).values(task_id=task_id)
            ).rowcount
        if not won and self._hooks.cancel_task is not None:
            self._hooks.cancel_task(task_id)  # another process requeued it first
        return self._generations.get(view.id)

    def _new_session(
        self,
        session_id: uuid.UUID | str | None,
        name: str | None,
        profile_id: uuid.UUID | str | None,
        owner_id: uuid.UUID | None,
    ) -> NewSession | None:
        if session_id is not None or name is None:
            return None
        return NewSession(name, self._sessions.comfyui_profile(profile_id), owner_id)

    def _plan(
        self,
        session_id: uuid.UUID | str | None,
        parameters: Mapping[str, Any],
        workflow_id: uuid.UUID | str | None,
        check_server: bool,
        new: NewSession | None,
    ) -> Plan:
        profile = new.profile_id if new else None
        return planning.make(
            self._db,
            self._workflows,
            self._servers,
            session_id,
            parameters,
            workflow_id,
            check_server,
            profile,
        )

    def _enqueue_all(self, views: list[GenerationView]) -> list[GenerationView]:
        """One task each (when a queue is connected), its id stored on the generation."""
        enqueue = self._hooks.enqueue
        if enqueue is None:
            return views
        out = []
        for view in views:
            task_id = enqueue(view)
            if task_id is not None:
                with transaction(self._db) as session:
                    session.execute(
                        update(ComfyUIGeneration)
                        .where(ComfyUIGeneration.id == view.id)
                        .values(task_id=task_id)
                    )
                view = replace(view, task_id=task_id)
            out.append(view)
        return out


def unique_session_name(session: Session, wanted: str) -> str:
    """`wanted`, cleaned, or "wanted (2)", "(3)"… when a session already has that name."""
    base = clean_name(" ".join(wanted.split())[:40] or "Untitled", "session")
    taken = set(
        session.scalars(
            select(ComfyUISession.name).where(ComfyUISession.name.startswith(base, autoescape=True))
        )
    )
    name, number = base, 2
    while name in taken:
        name, number = f"{base} ({number})", number + 1
    return name


def _touch_session(session: Session, session_id: uuid.UUID, **values: Any) -> None:
    """The session was just used: it moves to the top of the list."""
    session.execute(
        update(ComfyUISession)
        .where(ComfyUISession.id == session_id)
        .values(**values, updated_at=utcnow())
    )
