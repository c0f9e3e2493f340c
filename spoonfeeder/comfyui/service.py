"""ComfyUIService: the one object the app, the task handler and scripts call.

Nothing here imports Gradio, and little is done here: each method hands its work to
the module whose job it is — `workflows`, `server` (options, uploads), `sessions`,
`planning` + `generate` (new generations), `generations` (stored ones), `runner` (one
run), `progress` (following runs), `cancelling`, `queueing`, `recovery`. A generation
is created `pending` with the exact JSON that will be posted (`workflow_json_snapshot`)
and every denormalized column filled, then run by `run_generation` — from a
`comfyui.generate` task when the queue is attached, or directly (tests, scripts).

    svc = ctx.comfyui
    session = svc.create_session("Portraits")
    form = svc.form_parameters(session.id)                  # workflow defaults ← last used
    gens = svc.generate(session.id, {"prompt": "a cat", "seed": -1}, batch_count=4)
    svc.run_generation(gens[0].id, report=print)            # what the worker does
    svc.rerun_exact(gens[0].id)                             # posts the same snapshot again
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import (
    cancelling,
    generate,
    generations,
    inputs,
    media,
    params,
    progress,
    queueing,
    recovery,
    server,
    sessions,
    workflows,
)
from spoonfeeder.comfyui.cancelling import CancelRequests
from spoonfeeder.comfyui.progress import coalesce as _coalesce  # noqa: F401  (tests use it)
from spoonfeeder.comfyui.queueing import CancelTask, Enqueue, QueueHooks
from spoonfeeder.comfyui.runner import GenerationRunner, Report, RunnerTimings, ShouldCancel
from spoonfeeder.comfyui.server import OptionsCache
from spoonfeeder.comfyui.views import (
    PROGRESS_TOPIC,
    GalleryPage,
    GenerationProgress,
    GenerationView,
    ServerOptions,
    SessionView,
    SweepView,
    WorkflowView,
)
from spoonfeeder.events import EventBus
from spoonfeeder.ids import parse_id
from spoonfeeder.profiles import ProfileService


class ComfyUIService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profiles: ProfileService,
        media_root: Path,
        *,
        timings: RunnerTimings | None = None,
        sweep_max_cells: int = params.DEFAULT_SWEEP_CELLS,
    ) -> None:
        self._sessions = sessions
        self.sweep_max_cells = sweep_max_cells
        self._profiles = profiles
        self._media = media_root
        self._runner = GenerationRunner(sessions, profiles, media_root, timings)
        self._options = OptionsCache(profiles)
        self._queue = QueueHooks()
        self._cancels = CancelRequests(self._queue)
        self._events: EventBus | None = None

    @property
    def timings(self) -> RunnerTimings:
        return self._runner.timings

    def attach_queue(self, enqueue: Enqueue, cancel_task: CancelTask | None = None) -> None:
        """From now on `generate`, `sweep` and `rerun_exact` enqueue one task each."""
        self._queue.enqueue = enqueue
        self._queue.cancel_task = cancel_task

    def attach_events(self, events: EventBus) -> None:
        """Publish every run's progress as `comfyui:progress` events (see `follow`)."""
        self._events = events

    # ===== workflows =====================================================================

    def ensure_builtin_workflow(self) -> WorkflowView | None:
        """Seed the default txt2img workflow when there is no workflow at all (first start)."""
        return workflows.seed_builtin(self._sessions)

    def list_workflows(self, owner_id: uuid.UUID | None = None) -> list[WorkflowView]:
        """Default first, then by name."""
        return workflows.list_all(self._sessions, owner_id)

    def get_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowView:
        return workflows.get(self._sessions, workflow_id)

    def default_workflow(self) -> WorkflowView:
        """The workflow marked default, else the oldest; seeds the built-in one if none."""
        return workflows.default(self._sessions)

    def inspect_workflow(self, source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
        """What an import would find, without saving: parameters with their values and
        where each lives ("node 3 (KSampler) · seed")."""
        return workflows.inspect(source)

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
        return workflows.add(
            self._sessions,
            name,
            source,
            description=description,
            defaults=defaults,
            make_default=make_default,
            owner_id=owner_id,
        )

    def update_workflow(
        self,
        workflow_id: uuid.UUID | str,
        *,
        name: str | None = None,
        description: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> WorkflowView:
        """Rename, describe, or replace the edited default parameters (None = unchanged)."""
        return workflows.update_details(
            self._sessions, workflow_id, name=name, description=description, defaults=defaults
        )

    def set_default_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowView:
        return workflows.set_default(self._sessions, workflow_id)

    def delete_workflow(self, workflow_id: uuid.UUID | str) -> str:
        """Delete a workflow; its generations keep their snapshots. Returns its name."""
        return workflows.delete(self._sessions, workflow_id)

    # ===== server options ================================================================

    def options(
        self, profile_id: uuid.UUID | str | None = None, *, refresh: bool = False
    ) -> ServerOptions:
        """Samplers, schedulers, checkpoints and LoRAs of a server, cached until `refresh`."""
        return self._options.get(profile_id, refresh=refresh)

    def missing_node_types(
        self,
        source: str | bytes | Mapping[str, Any] | uuid.UUID,
        profile_id: uuid.UUID | str | None = None,
    ) -> list[str] | None:
        """The node types a workflow (JSON, or a stored workflow's id) uses that the
        server lacks — custom nodes to install before it can run; None if the server
        cannot be reached to ask."""
        workflow = (
            self.get_workflow(source).workflow
            if isinstance(source, uuid.UUID)
            else workflows.parse(source)
        )
        return server.missing_node_types(self._profiles, workflow, profile_id)

    def upload_image(
        self, data: bytes, filename: str, *, profile_id: uuid.UUID | str | None = None
    ) -> str:
        """Send an input image to the server (for LoadImage nodes); the name it stored."""
        return server.upload_image(self._profiles, data, filename, profile_id)

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
        return sessions.create(
            self._sessions,
            self._profiles,
            name,
            description=description,
            profile_id=profile_id,
            owner_id=owner_id,
        )

    def rename_session(self, session_id: uuid.UUID | str, name: str) -> SessionView:
        return sessions.rename(self._sessions, session_id, name)

    def set_session_profile(
        self, session_id: uuid.UUID | str, profile_id: uuid.UUID | str | None
    ) -> SessionView:
        """Run this session's next generations on another ComfyUI server (None = default)."""
        return sessions.set_profile(self._sessions, self._profiles, session_id, profile_id)

    def delete_session(self, session_id: uuid.UUID | str, *, delete_generations: bool) -> int:
        """Delete a session. With `delete_generations`, its generations and their files go
        too (running ones are cancelled first); otherwise they stay, without a session.
        Returns how many generations were deleted."""
        return sessions.delete(
            self._sessions,
            self._cancels,
            self._media,
            session_id,
            delete_generations=delete_generations,
        )

    def list_sessions(self, owner_id: uuid.UUID | None = None) -> list[SessionView]:
        """Most recently used first, with generation / completed / failed counts."""
        return sessions.list_all(self._sessions, owner_id)

    def get_session(self, session_id: uuid.UUID | str) -> SessionView:
        return sessions.get(self._sessions, session_id)

    def form_parameters(
        self,
        session_id: uuid.UUID | str | None = None,
        workflow_id: uuid.UUID | str | None = None,
    ) -> dict[str, Any]:
        """Values to fill the form with: the workflow's defaults ← the session's last
        parameters, plus `workflow_id` and `batch_count`. Opening a session uses this."""
        return sessions.form_parameters(self._sessions, session_id, workflow_id)

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
        return generate.batch(
            self._sessions,
            self._options,
            self._queue,
            self._media,
            session_id,
            parameters,
            workflow_id=workflow_id,
            batch_count=batch_count,
            owner_id=owner_id,
            check_server=check_server,
            new_session=self._new_session(session_id, new_session, profile_id, owner_id),
        )

    def _new_session(
        self,
        session_id: uuid.UUID | str | None,
        name: str | None,
        profile_id: uuid.UUID | str | None,
        owner_id: uuid.UUID | None,
    ) -> generate.NewSession | None:
        if session_id is not None or name is None:
            return None
        profile = sessions.comfyui_profile(self._profiles, profile_id)
        return generate.NewSession(name, profile, owner_id)

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
        return generate.sweep(
            self._sessions,
            self._options,
            self._queue,
            self._media,
            session_id,
            parameters,
            axes,
            workflow_id=workflow_id,
            owner_id=owner_id,
            check_server=check_server,
            new_session=self._new_session(session_id, new_session, profile_id, owner_id),
            max_cells=self.sweep_max_cells,
        )

    def sweep_grid(self, sweep_id: str) -> SweepView:
        """A sweep again, with its generations' current state (for the labelled grid)."""
        return generations.sweep_grid(self._sessions, sweep_id)

    def sweep_image(self, sweep_id: str) -> Path:
        """The sweep as one labelled image (first axis down, second across), saved under
        the media folder; cells without an image say why (failed, cancelled…)."""
        return generations.sweep_image(self._sessions, self._media, sweep_id)

    def reuse_parameters(self, generation_id: uuid.UUID | str) -> dict[str, Any]:
        """A generation's parameters as form values (its actual seed, not -1), with
        `workflow_id`, `session_id` and `batch_count` 1."""
        return generations.reuse_parameters(self._sessions, generation_id)

    def rerun_exact(
        self, generation_id: uuid.UUID | str, *, owner_id: uuid.UUID | None = None
    ) -> GenerationView:
        """A new generation that posts the stored snapshot unchanged, on the same server
        profile; `reproduced_from_id` points at the original."""
        return generate.rerun_exact(self._sessions, self._queue, generation_id, owner_id=owner_id)

    def snapshot(self, generation_id: uuid.UUID | str) -> dict[str, Any]:
        """The exact API-format JSON that was (or will be) posted for a generation."""
        return generations.snapshot(self._sessions, generation_id)

    def snapshot_text(self, generation_id: uuid.UUID | str) -> str:
        """The snapshot exactly as it was (or will be) posted: the bytes ComfyUI receives,
        on SQLite and PostgreSQL alike. A re-run posts this text again."""
        return generations.snapshot_and_text(self._sessions, generation_id)[1]

    def export_snapshot(self, generation_id: uuid.UUID | str) -> Path:
        """The snapshot as a .json file under the media folder, for a download button.
        Loading it into ComfyUI (or importing it here) runs the same workflow."""
        return generations.export_snapshot(self._sessions, self._media, generation_id)

    # ===== reading =======================================================================

    def get_generation(self, generation_id: uuid.UUID | str) -> GenerationView:
        return generations.get(self._sessions, generation_id)

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
        return generations.list_filtered(
            self._sessions,
            session_id,
            status=status,
            limit=limit,
            offset=offset,
            owner_id=owner_id,
        )

    def gallery_page(
        self, session_id: uuid.UUID | str, page: int = 0, per_page: int = 24
    ) -> GalleryPage:
        """A page of the session's completed generations, newest first (failed and
        cancelled ones — a sweep's stopped cells — never crowd them out)."""
        return generations.gallery_page(self._sessions, session_id, page, per_page)

    def unfinished_generations(self, session_id: uuid.UUID | str) -> list[uuid.UUID]:
        """The session's generations still queued or running (to follow after a reload)."""
        return generations.unfinished(self._sessions, session_id)

    def input_image_file(self, name: str | None) -> Path | None:
        """The stored file behind an input image name of ours, to show in a form; None for
        a name of the server's own (the workflow's "example.png")."""
        return inputs.file_of(self._media, name)

    def delete_generation(self, generation_id: uuid.UUID | str) -> None:
        """Delete a generation and its files (cancelling it if it still runs)."""
        generations.delete(self._sessions, self._cancels, self._media, generation_id)

    def media_file(self, relative_path: str) -> Path:
        """The absolute path of a stored output or preview; refuses anything outside the
        media folder (ValidationError) and missing files (NotFoundError)."""
        return media.media_file(self._media, relative_path)

    def prune_previews(self) -> None:
        """Remove live previews older than their time to live (a scheduled job): a
        browser fetches one a little after it was announced, never minutes later."""
        media.prune_previews(self._media, self.timings.preview_ttl)

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
            return key in self._cancels or bool(should_cancel and should_cancel())

        def relay(progress: GenerationProgress) -> None:
            if self._events is not None:
                self._events.publish(PROGRESS_TOPIC, progress.as_event())
            if report is not None:
                report(progress)

        try:
            self._runner.run(key, relay, cancelled, should_abandon)
        finally:
            self._cancels.discard(key)
        return self.get_generation(key)

    def follow(
        self,
        generation_ids: Sequence[uuid.UUID | str],
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        heartbeat: bool = False,
    ) -> Iterator[dict[str, Any] | None]:
        """Progress of these generations as it happens, until every one has ended (or
        `timeout` seconds): the `comfyui:progress` event dicts — generation_id, status,
        message, fraction, step, max, node, node_type, preview_path. Every `poll`
        seconds the database is checked too, so an end is never missed (events from a
        worker in another process need PostgreSQL); such an end is yielded in the same
        shape. For a UI generator: `for event in svc.follow(ids): yield render(event)`.
        A reader slower than the events gets them merged — per generation the latest
        state, with the latest preview — so it never falls behind; the first is never
        held back. With `heartbeat`, None every `poll` seconds without news."""
        yield from progress.follow(
            self._sessions,
            self._events,
            generation_ids,
            poll=poll,
            timeout=timeout,
            heartbeat=heartbeat,
        )

    def cancel(self, generation_id: uuid.UUID | str) -> GenerationView:
        """Stop a generation: a pending one is cancelled at once; a running one is
        interrupted on ComfyUI by its runner and ends `cancelled`."""
        return self.get_generation(cancelling.cancel(self._sessions, self._cancels, generation_id))

    def requeue(
        self, generation_id: uuid.UUID | str, *, replacing: uuid.UUID | None = None
    ) -> GenerationView:
        """Give an unfinished generation a new task in place of `replacing` (its old task,
        which a restart left finished or lost). Compare-and-set: when two processes start
        at once, only one new task is kept, so the generation never runs twice."""
        return queueing.requeue(self._sessions, self._queue, generation_id, replacing)

    def task_cancelled(self, task_id: uuid.UUID, *, task_is_final: bool = False) -> None:
        """Its task was cancelled before it ran: a generation not yet posted is cancelled
        too (a running one hears of it through the task and interrupts ComfyUI). With
        `task_is_final` (seen at start-up: no worker holds it) any unfinished one is."""
        cancelling.task_cancelled(self._sessions, task_id, task_is_final=task_is_final)

    def interrupted_generations(self) -> list[uuid.UUID]:
        """Generations left `running` (by a stopped app) or `pending`, oldest first."""
        return recovery.interrupted_generations(self._sessions)

    def resume_interrupted(self, *, background: bool = True) -> list[uuid.UUID]:
        """Pick up generations a stopped app left running: each is followed on ComfyUI
        through its prompt_id and completed from /history (or run, if never posted).
        In the background (one daemon thread) unless `background` is False."""
        return recovery.resume_interrupted(
            self._sessions, self.run_generation, background=background
        )
