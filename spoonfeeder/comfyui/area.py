"""The ComfyUI area as the app builds it (`ctx.comfyui`): one object per job, each
owning what it needs. Every face (UI, REST, MCP, scripts) calls these parts directly.

    comfy = ctx.comfyui
    session = comfy.sessions.create("Portraits")
    form = comfy.sessions.form_parameters(session.id)        # workflow defaults ← last used
    gens = comfy.generator.generate(session.id, {"prompt": "a cat", "seed": -1}, batch_count=4)
    comfy.runner.run(gens[0].id, report=print)               # what the worker does
    comfy.generator.rerun_exact(gens[0].id)                  # posts the same snapshot again
    for event in comfy.progress.follow([g.id for g in gens]): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import params
from spoonfeeder.comfyui.generations import Generations
from spoonfeeder.comfyui.generator import Generator
from spoonfeeder.comfyui.hooks import CancelRequests, CancelTask, Enqueue, QueueHooks
from spoonfeeder.comfyui.library import WorkflowLibrary
from spoonfeeder.comfyui.media import MediaFolder
from spoonfeeder.comfyui.progress import Progress
from spoonfeeder.comfyui.runner import Runner, RunnerTimings
from spoonfeeder.comfyui.servers import Servers
from spoonfeeder.comfyui.sessions import SessionStore
from spoonfeeder.events import EventBus
from spoonfeeder.profiles import ProfileService


@dataclass
class ComfyUI:
    workflows: WorkflowLibrary  # the stored workflows
    servers: Servers  # what a server offers; uploads
    sessions: SessionStore  # sessions and the values their form opens with
    generator: Generator  # new generations: batches, sweeps, exact re-runs
    generations: Generations  # stored ones: read, snapshot, cancel, delete
    runner: Runner  # runs one on its server (the worker calls it)
    progress: Progress  # following runs as they happen
    media: MediaFolder  # outputs and previews under MEDIA_STORAGE_PATH
    hooks: QueueHooks  # the task queue and event bus, once connected

    @classmethod
    def create(
        cls,
        db: sessionmaker[Session],
        profiles: ProfileService,
        media_root: Path,
        *,
        timings: RunnerTimings | None = None,
        sweep_max_cells: int = params.DEFAULT_SWEEP_CELLS,
    ) -> ComfyUI:
        hooks = QueueHooks()
        cancels = CancelRequests(hooks)
        workflows = WorkflowLibrary(db)
        servers = Servers(profiles, workflows)
        generations = Generations(db, media_root, cancels)
        sessions = SessionStore(db, profiles, workflows, generations)
        runner = Runner(db, profiles, media_root, generations, hooks, cancels, timings)
        return cls(
            workflows=workflows,
            servers=servers,
            sessions=sessions,
            generator=Generator(
                db, workflows, servers, sessions, generations, hooks, media_root, sweep_max_cells
            ),
            generations=generations,
            runner=runner,
            progress=Progress(db, hooks),
            media=MediaFolder(media_root, lambda: runner.timings.preview_ttl),
            hooks=hooks,
        )

    def connect(
        self,
        enqueue: Enqueue | None = None,
        cancel_task: CancelTask | None = None,
        events: EventBus | None = None,
    ) -> None:
        """From now on new generations enqueue one task each, cancelling one cancels its
        task, and every run's progress is published as `comfyui:progress` events."""
        self.hooks.enqueue, self.hooks.cancel_task = enqueue, cancel_task
        self.hooks.events = events
