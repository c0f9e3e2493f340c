"""AppContext: builds and owns everything the app shares — database, secrets, services."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.chat import ChatService
from spoonfeeder.comfyui import handler as comfyui_handler
from spoonfeeder.comfyui.area import ComfyUI
from spoonfeeder.config import Settings
from spoonfeeder.crypto import SecretBox, load_secret_box
from spoonfeeder.dashboard import DashboardService
from spoonfeeder.db.engine import make_engine, make_session_factory, prepare_schema
from spoonfeeder.events import EventBus
from spoonfeeder.history import HistoryService
from spoonfeeder.ollama_models import OllamaModelService
from spoonfeeder.profiles import ProfileService
from spoonfeeder.providers.registry import ProviderRegistry, warm_up
from spoonfeeder.schedule import make_scheduler
from spoonfeeder.targets import ChatTargets
from spoonfeeder.tasks import text as text_tasks
from spoonfeeder.tasks.handlers import HandlerRegistry
from spoonfeeder.tasks.queue import TaskQueue
from spoonfeeder.tasks.service import TaskService
from spoonfeeder.tasks.worker import WorkerPool
from spoonfeeder.users import UserService

log = logging.getLogger(__name__)

# The app migrates the schema and recovers what a stopped app left behind; a worker
# (`python -m spoonfeeder worker`, maybe one of many, beside a running app) does neither.
Role = Literal["app", "worker"]
PREVIEW_SWEEP_SECONDS = 30.0  # live previews older than their time to live are removed


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: SecretBox
    profiles: ProfileService
    dashboard: DashboardService
    providers: ProviderRegistry
    targets: ChatTargets  # which settings and profiles a prompt can go to, their models
    ollama_models: OllamaModelService
    chat: ChatService
    events: EventBus
    handlers: HandlerRegistry  # task type -> handler, for this process's workers
    tasks: TaskService
    comfyui: ComfyUI  # one object per job: workflows, sessions, generator, runner…
    history: HistoryService
    scheduler: BaseScheduler  # every periodic job of this process
    users: UserService  # who signs in, their tokens
    notices: list[str] = field(default_factory=list)  # start-up news for the operator
    workers: WorkerPool | None = None  # started by start_workers()
    closed: bool = False

    @classmethod
    def create(cls, settings: Settings, role: Role = "app") -> AppContext:
        """Connect and load the key. The app also upgrades the schema to head, seeds
        settings from the environment and recovers interrupted replies and generations;
        a worker only checks that the schema is current."""
        engine = make_engine(settings.resolved_database_url)
        try:
            prepare_schema(engine, migrate=role == "app")
        except BaseException:
            engine.dispose()
            raise
        sessions = make_session_factory(engine)
        secrets, notice = load_secret_box(settings.encryption_key, settings.data_dir)
        settings.media_path.mkdir(parents=True, exist_ok=True)
        profiles = ProfileService(sessions, secrets, settings)
        providers = ProviderRegistry(profiles.credentials, profiles.cached_credentials)
        events = EventBus.for_engine(engine)
        chat = ChatService(sessions, providers, settings.media_path)
        comfyui = ComfyUI.create(
            sessions, profiles, settings.media_path, sweep_max_cells=settings.sweep_max_cells
        )
        comfyui.runner.timings.max_output_bytes = settings.comfyui_max_output_bytes
        handlers = HandlerRegistry()
        text_tasks.install(handlers, providers)
        comfyui_handler.install(handlers, comfyui)
        queue = TaskQueue(engine, events)
        ctx = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            secrets=secrets,
            profiles=profiles,
            dashboard=DashboardService(engine, sessions, profiles),
            ollama_models=OllamaModelService(profiles),
            providers=providers,
            targets=ChatTargets(profiles, providers),
            chat=chat,
            events=events,
            handlers=handlers,
            tasks=TaskService(queue, handlers),
            comfyui=comfyui,
            history=HistoryService(sessions, chat, comfyui.sessions),
            scheduler=make_scheduler(),
            users=UserService(sessions),
            notices=[notice] if notice else [],
        )
        comfyui_handler.setup(comfyui, queue, events, recover=role == "app")
        ctx.scheduler.add_job(
            comfyui.media.prune_previews, "interval", seconds=PREVIEW_SWEEP_SECONDS, id="previews"
        )
        if role == "app":
            warm_up()  # so the first reply from each provider does not wait for its SDK import
            ctx.chat.recover_interrupted()
            ctx.notices += ctx.users.seed_from_pairs(settings.auth_pairs)
            ctx.users.decide_sign_in()
            seeded = profiles.seed_from_environment()
            if seeded:
                log.info("Stored API keys from the environment for: %s", ", ".join(seeded))
        for notice in ctx.operator_notices():  # every process says it at start: app, worker
            log.warning(notice)
        return ctx

    def operator_notices(self) -> list[str]:
        """What the operator should know now: the start-up notices, and stored API keys
        that the encryption key cannot read (checked afresh: re-entering them clears it)."""
        unreadable = self.profiles.unreadable_keys_notice()
        return [*self.notices, *([unreadable] if unreadable else [])]

    def start_workers(self, threads: int | None = None, **options: Any) -> WorkerPool:
        """Run task workers in this process (WORKER_THREADS of them unless `threads`);
        `options` go to WorkerPool (lease_seconds, poll_interval, …); `registry`
        replaces the app's handlers (tests add their own to a copy)."""
        if self.workers is None or not self.workers.running:
            count = threads or self.settings.worker_threads or 1
            registry = options.pop("registry", None) or self.handlers
            self.workers = WorkerPool(
                self.tasks.queue, registry, self.scheduler, threads=count, **options
            )
            self.workers.start()
        return self.workers

    def close(self, worker_timeout: float = 10.0) -> None:
        """Stop the workers and the scheduler, release the database. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.workers is not None:
            self.workers.stop(worker_timeout)
        self.scheduler.shutdown(wait=False)
        self.events.close()
        self.engine.dispose()
