"""ComfyUIService: workflows, server options, sessions, generations, sweeps, reproduction.

What the ComfyUI tab calls; nothing here imports Gradio. A generation is created
`pending` with the exact JSON that will be posted (`workflow_json_snapshot`) and every
denormalized column filled, then run by `run_generation` — from a `comfyui.generate`
task when the queue is attached, or directly (tests, scripts).

    svc = ctx.comfyui
    session = svc.create_session("Portraits")
    form = svc.form_parameters(session.id)                  # workflow defaults ← last used
    gens = svc.generate(session.id, {"prompt": "a cat", "seed": -1}, batch_count=4)
    svc.run_generation(gens[0].id, report=print)            # what the worker does
    svc.rerun_exact(gens[0].id)                             # posts the same snapshot again
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import builtin, media, params
from spoonfeeder.comfyui.client import ComfyUIClient
from spoonfeeder.comfyui.records import (
    as_float,
    as_int,
    clean_defaults,
    clean_name,
    combo_choices,
    effective_defaults,
    generation_view,
    get_row,
    parse_id,
    posted_loras,
    refuse_duplicate,
    session_counts,
    session_view,
    workflow_view,
)
from spoonfeeder.comfyui.runner import GenerationRunner, Report, RunnerTimings, ShouldCancel
from spoonfeeder.comfyui.views import (
    CANCELLED,
    PENDING,
    PROGRESS_TOPIC,
    RUNNING,
    TERMINAL,
    GenerationProgress,
    GenerationView,
    ServerOptions,
    SessionView,
    SweepView,
    WorkflowView,
)
from spoonfeeder.comfyui.workflow import (
    ParamMap,
    Workflow,
    apply_params,
    extract_params,
    read_params,
    resolve_seed,
    validate_workflow,
)
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration, ComfyUISession, ComfyUIWorkflow
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.events import EventBus
from spoonfeeder.profiles import ProfileService

MAX_NAME = 200
MAX_WORKFLOW_BYTES = 5 * 1024 * 1024
# Enqueue hook: (generation) -> task id. Set by the task queue integration.
Enqueue = Callable[[GenerationView], uuid.UUID | None]
CancelTask = Callable[[uuid.UUID], None]


class ComfyUIService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        media_root: Path,
        *,
        timings: RunnerTimings | None = None,
    ) -> None:
        self._sessions = sessions
        self._profiles = profiles
        self._media = media_root
        self._runner = GenerationRunner(sessions, profiles, media_root, timings)
        # per (url, profile): two profiles may reach one server with different keys
        self._options: dict[tuple[str, uuid.UUID | None], ServerOptions] = {}
        self._cancel_requests: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._enqueue: Enqueue | None = None
        self._cancel_task: CancelTask | None = None
        self._events: EventBus | None = None

    @property
    def timings(self) -> RunnerTimings:
        return self._runner.timings

    def attach_queue(self, enqueue: Enqueue, cancel_task: CancelTask | None = None) -> None:
        """From now on `generate`, `sweep` and `rerun_exact` enqueue one task each."""
        self._enqueue = enqueue
        self._cancel_task = cancel_task

    def attach_events(self, events: EventBus) -> None:
        """Publish every run's progress as `comfyui:progress` events (see `follow`)."""
        self._events = events

    # ===== workflows =====================================================================

    def ensure_builtin_workflow(self) -> WorkflowView | None:
        """Seed the default txt2img workflow when there is no workflow at all (first start)."""
        with self._sessions() as session:
            if session.scalar(select(func.count()).select_from(ComfyUIWorkflow)):
                return None
        return self.import_workflow(
            builtin.NAME,
            builtin.workflow(),
            description=builtin.DESCRIPTION,
            defaults=builtin.DEFAULTS,
            make_default=True,
        )

    def list_workflows(self, owner_id: uuid.UUID | None = None) -> list[WorkflowView]:
        """Default first, then by name."""
        with self._sessions() as session:
            query = select(ComfyUIWorkflow).order_by(
                ComfyUIWorkflow.is_default.desc(), ComfyUIWorkflow.name
            )
            if owner_id is not None:
                query = query.where(ComfyUIWorkflow.owner_id == owner_id)
            return [workflow_view(row) for row in session.scalars(query)]

    def get_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowView:
        with self._sessions() as session:
            return workflow_view(get_row(session, ComfyUIWorkflow, workflow_id, "workflow"))

    def default_workflow(self) -> WorkflowView:
        """The workflow marked default, else the oldest; seeds the built-in one if none."""
        with self._sessions() as session:
            row = session.scalar(
                select(ComfyUIWorkflow).order_by(
                    ComfyUIWorkflow.is_default.desc(), ComfyUIWorkflow.created_at
                )
            )
            if row is not None:
                return workflow_view(row)
        seeded = self.ensure_builtin_workflow()
        return seeded if seeded is not None else self.default_workflow()

    @staticmethod
    def parse_workflow(source: str | bytes | Mapping[str, Any]) -> Workflow:
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

    def inspect_workflow(self, source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
        """What an import would find, without saving: parameters with their values and
        where each lives ("node 3 (KSampler) · seed")."""
        workflow = self.parse_workflow(source)
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

    def import_workflow(
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
        workflow = self.parse_workflow(source)
        mapping = extract_params(workflow)
        cleaned = clean_defaults(defaults)
        with transaction(self._sessions) as session:
            refuse_duplicate(session, ComfyUIWorkflow, cleaned_name, "A workflow")
            if make_default:
                session.execute(update(ComfyUIWorkflow).values(is_default=False))
            row = ComfyUIWorkflow(
                owner_id=owner_id,
                name=cleaned_name,
                description=(description or "").strip() or None,
                workflow_json=workflow,
                parameter_map=mapping.to_json(),
                default_parameters=cleaned,
                is_default=make_default,
            )
            session.add(row)
            session.flush()
            return workflow_view(row)

    def update_workflow(
        self,
        workflow_id: uuid.UUID | str,
        *,
        name: str | None = None,
        description: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> WorkflowView:
        """Rename, describe, or replace the edited default parameters (None = unchanged)."""
        cleaned = clean_defaults(defaults) if defaults is not None else None
        with transaction(self._sessions) as session:
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

    def set_default_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowView:
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
            session.execute(update(ComfyUIWorkflow).values(is_default=False))
            row.is_default = True
            session.flush()
            return workflow_view(row)

    def delete_workflow(self, workflow_id: uuid.UUID | str) -> str:
        """Delete a workflow; its generations keep their snapshots. Returns its name."""
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
            name = row.name
            session.delete(row)
            return name

    # ===== server options ================================================================

    def options(
        self, profile_id: uuid.UUID | str | None = None, *, refresh: bool = False
    ) -> ServerOptions:
        """Samplers, schedulers, checkpoints and LoRAs of a server, cached until `refresh`."""
        credentials = self._profiles.credentials("comfyui", profile_id)
        url = credentials.url
        with self._lock:
            cached = self._options.get((url, credentials.profile_id))
        if cached is not None and not refresh:
            return cached
        with ComfyUIClient(url, api_key=credentials.api_key) as client:
            sampler = client.object_info("KSampler").get("KSampler") or {}
            loader = (
                client.object_info("CheckpointLoaderSimple").get("CheckpointLoaderSimple") or {}
            )
            lora = client.object_info("LoraLoader").get("LoraLoader") or {}
        found = ServerOptions(
            url,
            combo_choices(sampler, "sampler_name"),
            combo_choices(sampler, "scheduler"),
            combo_choices(loader, "ckpt_name"),
            combo_choices(lora, "lora_name"),
            utcnow(),
        )
        with self._lock:
            self._options[(url, credentials.profile_id)] = found
        return found

    def upload_image(
        self, data: bytes, filename: str, *, profile_id: uuid.UUID | str | None = None
    ) -> str:
        """Send an input image to the server (for LoadImage nodes); the name it stored."""
        credentials = self._profiles.credentials("comfyui", profile_id)
        with ComfyUIClient(credentials.url, api_key=credentials.api_key) as client:
            answer = client.upload_image(data, media.safe_name(filename))
        sub = answer.get("subfolder") or ""
        return f"{sub}/{answer['name']}" if sub else str(answer["name"])

    # ===== sessions ======================================================================

    def create_session(
        self,
        name: str,
        *,
        description: str | None = None,
        profile_id: uuid.UUID | str | None = None,
        owner_id: uuid.UUID | None = None,
    ) -> SessionView:
        """A new session; `profile_id` picks a ComfyUI server profile (None = default)."""
        cleaned_name = clean_name(name, "session")
        profile = self._check_profile(profile_id)
        with transaction(self._sessions) as session:
            row = ComfyUISession(
                owner_id=owner_id,
                name=cleaned_name,
                description=(description or "").strip() or None,
                profile_id=profile,
            )
            session.add(row)
            session.flush()
            return self._session_view(session, row)

    def rename_session(self, session_id: uuid.UUID | str, name: str) -> SessionView:
        cleaned_name = clean_name(name, "session")
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUISession, session_id, "session")
            row.name = cleaned_name
            session.flush()
            return self._session_view(session, row)

    def set_session_profile(
        self, session_id: uuid.UUID | str, profile_id: uuid.UUID | str | None
    ) -> SessionView:
        """Run this session's next generations on another ComfyUI server (None = default)."""
        profile = self._check_profile(profile_id)
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUISession, session_id, "session")
            row.profile_id = profile
            session.flush()
            return self._session_view(session, row)

    def delete_session(self, session_id: uuid.UUID | str, *, delete_generations: bool) -> int:
        """Delete a session. With `delete_generations`, its generations and their files go
        too (running ones are cancelled first); otherwise they stay, without a session.
        Returns how many generations were deleted."""
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUISession, session_id, "session")
            ids = list(
                session.scalars(
                    select(ComfyUIGeneration.id).where(ComfyUIGeneration.session_id == row.id)
                )
            )
            if delete_generations:
                session.execute(delete(ComfyUIGeneration).where(ComfyUIGeneration.id.in_(ids)))
            else:
                session.execute(
                    update(ComfyUIGeneration)
                    .where(ComfyUIGeneration.session_id == row.id)
                    .values(session_id=None)
                )
            session.delete(row)
        if not delete_generations:
            return 0
        for generation_id in ids:
            self._request_cancel(generation_id)
            shutil.rmtree(media.generation_folder(self._media, generation_id), ignore_errors=True)
        return len(ids)

    def list_sessions(self, owner_id: uuid.UUID | None = None) -> list[SessionView]:
        """Most recently used first, with generation / completed / failed counts."""
        with self._sessions() as session:
            query = select(ComfyUISession).order_by(ComfyUISession.updated_at.desc())
            if owner_id is not None:
                query = query.where(ComfyUISession.owner_id == owner_id)
            rows = list(session.scalars(query))
            counts = session_counts(session, [row.id for row in rows])
            return [session_view(row, counts.get(row.id, (0, 0, 0))) for row in rows]

    def get_session(self, session_id: uuid.UUID | str) -> SessionView:
        with self._sessions() as session:
            return self._session_view(
                session, get_row(session, ComfyUISession, session_id, "session")
            )

    def form_parameters(
        self,
        session_id: uuid.UUID | str | None = None,
        workflow_id: uuid.UUID | str | None = None,
    ) -> dict[str, Any]:
        """Values to fill the form with: the workflow's defaults ← the session's last
        parameters, plus `workflow_id` and `batch_count`. Opening a session uses this."""
        with self._sessions() as session:
            last = {}
            if session_id is not None:
                last = dict(
                    get_row(session, ComfyUISession, session_id, "session").last_parameters or {}
                )
            row = self._workflow_row(session, workflow_id, last.get("workflow_id"))
            values = params.merge(effective_defaults(row), last)
            return {
                **values,
                "workflow_id": str(row.id),
                "batch_count": int(last.get("batch_count") or 1),
            }

    # ===== generating ====================================================================

    def generate(
        self,
        session_id: uuid.UUID | str | None,
        parameters: Mapping[str, Any],
        *,
        workflow_id: uuid.UUID | str | None = None,
        batch_count: int = 1,
        owner_id: uuid.UUID | None = None,
        check_server: bool = True,
    ) -> list[GenerationView]:
        """Create `batch_count` pending generations (seeds counting up from the resolved
        seed) and enqueue them. Parameters merge as workflow defaults ← the session's
        last parameters ← `parameters`; a bad value raises ValidationError naming it.
        With `check_server`, names (sampler, scheduler, checkpoint, LoRAs) are checked
        against the server's /object_info (ProviderUnavailable if it cannot be reached)."""
        count = params.batch_count(batch_count)
        plan = self._plan(session_id, parameters, workflow_id, check_server)
        requested = plan.values.get("seed", -1)
        seeds = params.batch_seeds(resolve_seed(requested), count)
        items = [
            ({**plan.values, "seed": seed}, {"batch_count": count, "requested_seed": requested}, i)
            for i, seed in enumerate(seeds)
        ]
        return self._create(plan, items, owner_id, last={**plan.values, "batch_count": count})

    def sweep(
        self,
        session_id: uuid.UUID | str | None,
        parameters: Mapping[str, Any],
        axes: Sequence[tuple[str, Sequence[Any] | str]],
        *,
        workflow_id: uuid.UUID | str | None = None,
        owner_id: uuid.UUID | None = None,
        check_server: bool = True,
    ) -> SweepView:
        """One generation per combination of one or two parameters' values, e.g.
        `[("cfg", [4, 6, 8]), ("steps", "20, 30")]` → 6 generations, all on the same
        (resolved) seed so only the swept parameters differ. Each is labelled."""
        parsed = [(name, params.parse_values(values)) for name, values in axes]
        cells = params.sweep_cells(parsed)
        plan = self._plan(session_id, parameters, workflow_id, check_server=False)
        seed = resolve_seed(plan.values.get("seed", -1))
        sweep_id = uuid.uuid4().hex
        cleaned_axes: list[tuple[str, list[Any]]] = []
        for name, values in parsed:
            cleaned_axes.append((name, [params.clean({name: v})[name] for v in values]))
        items = []
        for index, cell in enumerate(cells):
            cleaned_cell = params.clean(cell)
            values = {**plan.values, "seed": seed, **cleaned_cell}
            values["seed"] = resolve_seed(values["seed"])  # a swept seed of -1: random
            if check_server:
                self._check_names(values, plan)
            meta = {
                "sweep": {
                    "id": sweep_id,
                    "values": cleaned_cell,
                    "label": params.cell_label(cleaned_cell),
                    "axes": [[name, vals] for name, vals in cleaned_axes],
                }
            }
            items.append((values, meta, index))
        generations = self._create(plan, items, owner_id, last=plan.values)
        return SweepView(sweep_id, cleaned_axes, generations)

    def sweep_grid(self, sweep_id: str) -> SweepView:
        """A sweep again, with its generations' current state (for the labelled grid)."""
        with self._sessions() as session:
            rows = list(
                session.scalars(
                    select(ComfyUIGeneration)
                    .where(cast(ComfyUIGeneration.parameters, String).contains(sweep_id))
                    .order_by(ComfyUIGeneration.created_at, ComfyUIGeneration.batch_index)
                )
            )
        views = [
            generation_view(r)
            for r in rows
            if (r.parameters.get("sweep") or {}).get("id") == sweep_id
        ]
        if not views:
            raise NotFoundError(f"No sweep with id {sweep_id!r}")
        axes = [
            (name, list(values)) for name, values in views[0].parameters["sweep"].get("axes", [])
        ]
        return SweepView(sweep_id, axes, sorted(views, key=lambda v: v.batch_index))

    def reuse_parameters(self, generation_id: uuid.UUID | str) -> dict[str, Any]:
        """A generation's parameters as form values (its actual seed, not -1), with
        `workflow_id`, `session_id` and `batch_count` 1."""
        view = self.get_generation(generation_id)
        values = params.merge(view.parameters)
        return {
            **values,
            "workflow_id": str(view.workflow_id) if view.workflow_id else None,
            "session_id": str(view.session_id) if view.session_id else None,
            "batch_count": 1,
        }

    def rerun_exact(
        self, generation_id: uuid.UUID | str, *, owner_id: uuid.UUID | None = None
    ) -> GenerationView:
        """A new generation that posts the stored snapshot unchanged, on the same server
        profile; `reproduced_from_id` points at the original."""
        with transaction(self._sessions) as session:
            src = get_row(session, ComfyUIGeneration, generation_id, "generation")
            row = ComfyUIGeneration(
                owner_id=owner_id if owner_id is not None else src.owner_id,
                session_id=src.session_id,
                workflow_id=src.workflow_id,
                profile_id=src.profile_id,
                reproduced_from_id=src.id,
                workflow_json_snapshot=src.workflow_json_snapshot,
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
                session.execute(
                    update(ComfyUISession)
                    .where(ComfyUISession.id == src.session_id)
                    .values(updated_at=utcnow())
                )
            session.flush()
            view = generation_view(row)
        return self._enqueued([view])[0]

    def snapshot(self, generation_id: uuid.UUID | str) -> dict[str, Any]:
        """The exact API-format JSON that was (or will be) posted for a generation."""
        with self._sessions() as session:
            return dict(
                get_row(
                    session, ComfyUIGeneration, generation_id, "generation"
                ).workflow_json_snapshot
            )

    def export_snapshot(self, generation_id: uuid.UUID | str) -> Path:
        """The snapshot as a .json file under the media folder, for a download button.
        Loading it into ComfyUI (or importing it here) runs the same workflow."""
        view = self.get_generation(generation_id)
        folder = media.generation_folder(self._media, view.id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"workflow_api_{str(view.id)[:8]}.json"
        path.write_text(json.dumps(self.snapshot(view.id), indent=2), encoding="utf-8")
        return path

    # ===== reading =======================================================================

    def get_generation(self, generation_id: uuid.UUID | str) -> GenerationView:
        with self._sessions() as session:
            return generation_view(get_row(session, ComfyUIGeneration, generation_id, "generation"))

    def list_generations(
        self,
        session_id: uuid.UUID | str | None = None,
        *,
        status: str | None = None,
        limit: int = 200,
        offset: int = 0,
        owner_id: uuid.UUID | None = None,
    ) -> list[GenerationView]:
        """Newest first; one session's, or all (session_id None)."""
        query = select(ComfyUIGeneration).order_by(
            ComfyUIGeneration.created_at.desc(), ComfyUIGeneration.batch_index.desc()
        )
        if session_id is not None:
            query = query.where(ComfyUIGeneration.session_id == parse_id(session_id, "session"))
        if status:
            query = query.where(ComfyUIGeneration.status == status)
        if owner_id is not None:
            query = query.where(ComfyUIGeneration.owner_id == owner_id)
        with self._sessions() as session:
            rows = session.scalars(query.limit(max(1, min(limit, 2000))).offset(max(0, offset)))
            return [generation_view(row) for row in rows]

    def delete_generation(self, generation_id: uuid.UUID | str) -> None:
        """Delete a generation and its files (cancelling it if it still runs)."""
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUIGeneration, generation_id, "generation")
            key = row.id
            session.delete(row)
        self._request_cancel(key)
        shutil.rmtree(media.generation_folder(self._media, key), ignore_errors=True)

    def media_file(self, relative_path: str) -> Path:
        """The absolute path of a stored output or preview; refuses anything outside the
        media folder (ValidationError) and missing files (NotFoundError)."""
        return media.media_file(self._media, relative_path)

    # ===== running =======================================================================

    def run_generation(
        self,
        generation_id: uuid.UUID | str,
        report: Report | None = None,
        should_cancel: ShouldCancel | None = None,
        *,
        should_abandon: ShouldCancel | None = None,
    ) -> GenerationView:
        """Run a pending generation — or resume one that has a prompt_id — to its end,
        reporting progress (and previews) through `report`. Never raises for ComfyUI
        failures: they end as status `failed` with a message; a cancel ends `cancelled`.
        Safe to call again for the same generation (a finished one is left alone).
        `should_abandon()` true makes it raise RunAbandoned, leaving the row `running`
        for a later call to resume (a worker shutting down)."""
        key = parse_id(generation_id, "generation")

        def cancelled() -> bool:
            return key in self._cancel_requests or bool(should_cancel and should_cancel())

        def relay(progress: GenerationProgress) -> None:
            if self._events is not None:
                self._events.publish(PROGRESS_TOPIC, progress.as_event())
            if report is not None:
                report(progress)

        try:
            self._runner.run(key, relay, cancelled, should_abandon)
        finally:
            with self._lock:
                self._cancel_requests.discard(key)
        return self.get_generation(key)

    def follow(
        self,
        generation_ids: Sequence[uuid.UUID | str],
        *,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Progress of these generations as it happens, until every one has ended (or
        `timeout` seconds): the `comfyui:progress` event dicts — generation_id, status,
        message, fraction, step, max, node, node_type, preview_path. Every `poll`
        seconds the database is checked too, so an end is never missed (events from a
        worker in another process need PostgreSQL); such an end is yielded in the same
        shape. For a UI generator: `for event in svc.follow(ids): yield render(event)`.
        A reader slower than the events gets them merged — per generation the latest
        state, with the latest preview — so it never falls behind; the first is never
        held back."""
        wanted = {str(parse_id(g, "generation")) for g in generation_ids}
        deadline = None if timeout is None else time.monotonic() + timeout
        subscription = self._events.subscribe(PROGRESS_TOPIC) if self._events else None
        try:
            ended = self._ended(wanted, set())
            for event in ended:
                yield event
            done = {event["generation_id"] for event in ended}
            checked = time.monotonic()
            while done != wanted:
                if deadline is not None and time.monotonic() > deadline:
                    return
                event = subscription.get(timeout=poll) if subscription else None
                if subscription is None:
                    time.sleep(poll)
                batch = [] if event is None else [event.data]
                while subscription is not None and event is not None:
                    event = subscription.get(timeout=0)  # what else is already waiting
                    if event is not None:
                        batch.append(event.data)
                for data in _coalesce(batch, wanted - done):
                    yield data
                    if data.get("status") in TERMINAL:
                        done.add(data["generation_id"])
                if time.monotonic() - checked >= poll:
                    checked = time.monotonic()
                    for data in self._ended(wanted, done):
                        done.add(data["generation_id"])
                        yield data
        finally:
            if subscription is not None:
                subscription.close()

    def _ended(self, wanted: set[str], done: set[str]) -> list[dict[str, Any]]:
        """Generations among `wanted - done` that have ended, as progress event dicts."""
        keys = [uuid.UUID(g) for g in wanted - done]
        if not keys:
            return []
        with self._sessions() as session:
            rows = session.execute(
                select(ComfyUIGeneration.id, ComfyUIGeneration.status, ComfyUIGeneration.error)
                .where(ComfyUIGeneration.id.in_(keys))
                .where(ComfyUIGeneration.status.in_(list(TERMINAL)))
            ).all()
            missing = set(keys) - set(
                session.scalars(select(ComfyUIGeneration.id).where(ComfyUIGeneration.id.in_(keys)))
            )
        ended = [
            GenerationProgress(row.id, row.status, row.error or row.status, None).as_event()
            for row in rows
        ]
        ended += [  # deleted meanwhile: nothing more will come
            GenerationProgress(key, CANCELLED, "Deleted", None).as_event() for key in missing
        ]
        return ended

    def cancel(self, generation_id: uuid.UUID | str) -> GenerationView:
        """Stop a generation: a pending one is cancelled at once; a running one is
        interrupted on ComfyUI by its runner and ends `cancelled`."""
        key = parse_id(generation_id, "generation")
        with transaction(self._sessions) as session:
            row = get_row(session, ComfyUIGeneration, key, "generation")
            task_id = row.task_id
            if row.status == PENDING and row.prompt_id is None:
                row.status = CANCELLED
                row.error = "Cancelled before it started"
                row.completed_at = utcnow()
        self._request_cancel(key, task_id)
        return self.get_generation(key)

    def requeue(
        self, generation_id: uuid.UUID | str, *, replacing: uuid.UUID | None = None
    ) -> GenerationView:
        """Give an unfinished generation a new task in place of `replacing` (its old task,
        which a restart left finished or lost). Compare-and-set: when two processes start
        at once, only one new task is kept, so the generation never runs twice."""
        view = self.get_generation(generation_id)
        if view.done or self._enqueue is None or view.task_id != replacing:
            return view
        task_id = self._enqueue(view)
        if task_id is None:
            return view
        g = ComfyUIGeneration
        same = g.task_id.is_(None) if replacing is None else g.task_id == replacing
        with transaction(self._sessions) as session:
            won = session.execute(
                update(g).where(g.id == view.id, same).values(task_id=task_id)
            ).rowcount
        if not won and self._cancel_task is not None:
            self._cancel_task(task_id)  # another process requeued it first
        return self.get_generation(view.id)

    def task_cancelled(self, task_id: uuid.UUID, *, task_is_final: bool = False) -> None:
        """Its task was cancelled before it ran: a generation not yet posted is cancelled
        too (a running one hears of it through the task and interrupts ComfyUI). With
        `task_is_final` (seen at start-up: no worker holds it) any unfinished one is."""
        g = ComfyUIGeneration
        unfinished = g.status.in_([PENDING, RUNNING])
        not_started = (g.status == PENDING) & g.prompt_id.is_(None)
        with transaction(self._sessions) as session:
            session.execute(
                update(g)
                .where(g.task_id == task_id, unfinished if task_is_final else not_started)
                .values(status=CANCELLED, error="Its task was cancelled", completed_at=utcnow())
            )

    def interrupted_generations(self) -> list[uuid.UUID]:
        """Generations left `running` (by a stopped app) or `pending`, oldest first."""
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(ComfyUIGeneration.id)
                    .where(ComfyUIGeneration.status.in_([PENDING, RUNNING]))
                    .order_by(ComfyUIGeneration.created_at, ComfyUIGeneration.batch_index)
                )
            )

    def resume_interrupted(self, *, background: bool = True) -> list[uuid.UUID]:
        """Pick up generations a stopped app left running: each is followed on ComfyUI
        through its prompt_id and completed from /history (or run, if never posted).
        In the background (one daemon thread) unless `background` is False."""
        ids = [gid for gid in self.interrupted_generations() if self._is_running(gid)]
        if not background:
            for generation_id in ids:
                self.run_generation(generation_id)
            return ids
        if ids:
            threading.Thread(
                target=lambda: [self.run_generation(g) for g in ids],
                name="comfyui-resume",
                daemon=True,
            ).start()
        return ids

    # ===== internals =====================================================================

    def _is_running(self, generation_id: uuid.UUID) -> bool:
        with self._sessions() as session:
            row = session.get(ComfyUIGeneration, generation_id)
            return row is not None and row.status == RUNNING

    def _request_cancel(self, key: uuid.UUID, task_id: uuid.UUID | None = None) -> None:
        with self._lock:
            self._cancel_requests.add(key)
        if task_id is not None and self._cancel_task is not None:
            self._cancel_task(task_id)

    def _check_profile(self, profile_id: uuid.UUID | str | None) -> uuid.UUID | None:
        if profile_id in (None, ""):
            return None
        credentials = self._profiles.credentials("comfyui", profile_id)
        if credentials.provider != "comfyui":
            raise ValidationError("That profile is not a ComfyUI server", "profile")
        return credentials.profile_id

    def _workflow_row(
        self,
        session: Session,
        workflow_id: uuid.UUID | str | None,
        remembered: uuid.UUID | str | None = None,
    ) -> ComfyUIWorkflow:
        """The asked-for workflow (NotFoundError if gone), else the remembered one if it
        still exists, else the default."""
        if workflow_id:
            return get_row(session, ComfyUIWorkflow, workflow_id, "workflow")
        if remembered:
            with contextlib.suppress(NotFoundError):
                return get_row(session, ComfyUIWorkflow, remembered, "workflow")
        default = self.default_workflow()
        row = session.get(ComfyUIWorkflow, default.id)
        assert row is not None
        return row

    def _session_view(self, session: Session, row: ComfyUISession) -> SessionView:
        return session_view(row, session_counts(session, [row.id]).get(row.id, (0, 0, 0)))

    def _plan(
        self,
        session_id: uuid.UUID | str | None,
        parameters: Mapping[str, Any],
        workflow_id: uuid.UUID | str | None,
        check_server: bool,
    ) -> _Plan:
        unknown = params.unknown_keys(
            {k: v for k, v in parameters.items() if k not in _FORM_EXTRAS}
        )
        if unknown:
            raise ValidationError(
                f"Unknown parameter {unknown[0]!r}; known: {', '.join(params.PARAM_KEYS)}",
                unknown[0],
            )
        with self._sessions() as session:
            last: dict[str, Any] = {}
            session_key = profile_id = None
            if session_id is not None:
                srow = get_row(session, ComfyUISession, session_id, "session")
                session_key, profile_id, last = (
                    srow.id,
                    srow.profile_id,
                    dict(srow.last_parameters or {}),
                )
            wrow = self._workflow_row(
                session, workflow_id or parameters.get("workflow_id"), last.get("workflow_id")
            )
            values = params.clean(params.merge(effective_defaults(wrow), last, parameters))
            plan = _Plan(
                session_key,
                profile_id,
                wrow.id,
                dict(wrow.workflow_json),
                ParamMap.from_json(wrow.parameter_map),
                values,
            )
        too_many = len(values.get("loras") or []) > len(plan.mapping.loras)
        if too_many and plan.mapping.targets.get("checkpoint") is None:
            raise ValidationError(
                "This workflow has no checkpoint loader to chain LoRAs after", "loras"
            )
        if check_server:
            self._check_names(values, plan)
        return plan

    def _check_names(self, values: Mapping[str, Any], plan: _Plan) -> None:
        used = set(plan.mapping.targets) | {"loras"}
        problem = params.check_against_server(values, self.options(plan.profile_id), used)
        if problem is not None:  # the server may have gained a model since we looked
            problem = params.check_against_server(
                values, self.options(plan.profile_id, refresh=True), used
            )
        if problem is not None:
            raise ValidationError(problem, "server")

    def _create(
        self,
        plan: _Plan,
        items: list[tuple[dict[str, Any], dict[str, Any], int]],
        owner_id: uuid.UUID | None,
        *,
        last: Mapping[str, Any],
    ) -> list[GenerationView]:
        views: list[GenerationView] = []
        with transaction(self._sessions) as session:
            for values, meta, index in items:
                snapshot = apply_params(plan.workflow, plan.mapping, values)
                posted = read_params(snapshot, plan.mapping)
                row = ComfyUIGeneration(
                    owner_id=owner_id,
                    session_id=plan.session_id,
                    workflow_id=plan.workflow_id,
                    profile_id=plan.profile_id,
                    workflow_json_snapshot=snapshot,
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
                session.execute(
                    update(ComfyUISession)
                    .where(ComfyUISession.id == plan.session_id)
                    .values(
                        last_parameters={**last, "workflow_id": str(plan.workflow_id)},
                        updated_at=utcnow(),
                    )
                )
        return self._enqueued(views)

    def _enqueued(self, views: list[GenerationView]) -> list[GenerationView]:
        if self._enqueue is None:
            return views
        out = []
        for view in views:
            task_id = self._enqueue(view)
            if task_id is not None:
                with transaction(self._sessions) as session:
                    session.execute(
                        update(ComfyUIGeneration)
                        .where(ComfyUIGeneration.id == view.id)
                        .values(task_id=task_id)
                    )
                view = replace(view, task_id=task_id)
            out.append(view)
        return out


# ----- helpers ---------------------------------------------------------------------------

_FORM_EXTRAS = {"workflow_id", "batch_count", "session_id", "requested_seed", "sweep"}


class _Plan:
    """Everything a batch or sweep needs, read once."""

    def __init__(
        self,
        session_id: uuid.UUID | None,
        profile_id: uuid.UUID | None,
        workflow_id: uuid.UUID,
        workflow: Workflow,
        mapping: ParamMap,
        values: dict[str, Any],
    ) -> None:
        self.session_id = session_id
        self.profile_id = profile_id
        self.workflow_id = workflow_id
        self.workflow = workflow
        self.mapping = mapping
        self.values = values


def _coalesce(batch: list[dict[str, Any]], wanted: set[str]) -> list[dict[str, Any]]:
    """Per generation, one event: the latest status and message, with the latest known
    value of every other field (step, max, preview_path, …); an end is never merged away."""
    latest: dict[str, dict[str, Any]] = {}
    for data in batch:
        key = data.get("generation_id")
        if key not in wanted:
            continue
        previous = latest.get(key)
        if previous is not None and previous.get("status") in TERMINAL:
            continue
        if previous is not None:
            known = {k: v for k, v in data.items() if v is not None}
            data = {**previous, **known}  # status and message are never None
        latest[key] = data
    return list(latest.values())
