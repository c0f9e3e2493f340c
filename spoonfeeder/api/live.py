"""The seed's live events for one WebSocket client: what it subscribed to, and the
event bus's news turned into the seed's event names and camelCase payloads.

Client → server: `{"event": "subscribe:task", "data": "<task id>"}` (or "*" for every
task), `subscribe:session`, `subscribe:generation`, and `unsubscribe:…` of each.
Server → client: `{"event": "task:progress", "data": {"taskId": …, "progress": 0.5,
"message": "…"}}` and the rest of the seed's list. A subscription is answered with
the current state of what it names first, then `subscribed`, so a client that
connects late misses nothing.

Synchronous on purpose (it reads the database): the WebSocket route runs it in a
thread. The bus's events are best-effort across processes; ends of generations are
also read from the database (`check_ends`), as `Progress.follow` does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from spoonfeeder.comfyui.views import PROGRESS_TOPIC, TERMINAL, GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import NotFoundError, SpoonFeederError
from spoonfeeder.events import Event
from spoonfeeder.ids import parse_id
from spoonfeeder.serialize import jsonable
from spoonfeeder.tasks.states import CANCELLED, COMPLETED, FAILED
from spoonfeeder.tasks.views import TaskView

TOPICS = ["task:*", PROGRESS_TOPIC, "notification"]
KINDS = ("task", "session", "generation")
MEDIA_URL = "/api/comfyui/image/"
EVERY = "*"  # subscribe:task "*": every task's events

Message = dict[str, Any]


def message(event: str, **data: Any) -> Message:
    return {"event": event, "data": jsonable(data)}


def media_url(relative_path: str | None) -> str | None:
    return f"{MEDIA_URL}{relative_path}" if relative_path else None


def outputs_of(generation: GenerationView) -> list[dict[str, Any]]:
    return [
        {
            "url": media_url(out.path),
            "path": out.path,
            "kind": out.kind,
            "mediaType": out.media_type,
            "filename": out.filename,
            "nodeId": out.node_id,
            "size": out.size,
        }
        for out in generation.outputs
    ]


@dataclass
class LiveFeed:
    ctx: AppContext
    subscribed: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    _session_of: dict[str, str | None] = field(default_factory=dict)
    _started: set[str] = field(default_factory=set)  # generations said to have started
    _ended: set[str] = field(default_factory=set)

    def greeting(self) -> list[Message]:
        """Sent on connect: what the operator should know (unreadable keys, …)."""
        return [
            message("notification", type="warning", message=n) for n in self.ctx.operator_notices()
        ]

    # -- what the client says ------------------------------------------------------

    def handle(self, incoming: Any) -> list[Message]:
        """Answer one client message: `{"event": "subscribe:task", "data": "<id>"}`."""
        if not isinstance(incoming, dict) or not isinstance(incoming.get("event"), str):
            return [self._error('Send {"event": "subscribe:task", "data": "<task id>"}.')]
        action, _, kind = incoming["event"].partition(":")
        target = incoming.get("data")
        if action not in ("subscribe", "unsubscribe") or kind not in KINDS:
            known = ", ".join(f"subscribe:{k}" for k in KINDS)
            return [self._error(f"Unknown event {incoming['event'][:60]!r}; known: {known}.")]
        if not isinstance(target, str) or not target.strip():
            return [self._error(f"{incoming['event']} needs an id as its data.")]
        key = target.strip()
        if action == "unsubscribe":
            self.subscribed[kind].discard(key)
            return [message("unsubscribed", kind=kind, id=key)]
        try:
            current = self._current(kind, key)
        except SpoonFeederError as exc:
            return [self._error(exc.message, "NOT_FOUND" if isinstance(exc, NotFoundError) else "")]
        self.subscribed[kind].add(key)
        return [*current, message("subscribed", kind=kind, id=key)]

    def _error(self, text: str, code: str = "") -> Message:
        return message("error", message=text, code=code or "VALIDATION_ERROR")

    def _current(self, kind: str, key: str) -> list[Message]:
        """What a late subscriber needs first: the thing as it is now."""
        if kind == "task":
            if key == EVERY:
                return []
            task = self.ctx.tasks.get_task(key)
            return [message("task:created", task=task), *self._task_end(task)]
        if kind == "session":
            session = self.ctx.comfyui.sessions.get(key)
            unfinished = self.ctx.comfyui.generations.unfinished(session.id)
            return [m for g in unfinished for m in self._generation_now(str(g))]
        generation = self.ctx.comfyui.generations.get(parse_id(key, "generation"))
        return self._generation_now(str(generation.id))

    def _task_end(self, task: TaskView) -> list[Message]:
        if task.status == COMPLETED:
            return [message("task:completed", taskId=task.id, result=task.result)]
        if task.status == FAILED:
            return [message("task:failed", taskId=task.id, error=task.error)]
        if task.status == CANCELLED:
            return [message("task:cancelled", taskId=task.id)]
        return []

    def _generation_now(self, key: str) -> list[Message]:
        generation = self.ctx.comfyui.generations.get(key)
        self._session_of[key] = str(generation.session_id) if generation.session_id else None
        if generation.done:
            return self._generation_end(generation)
        if generation.status != "running":
            return []  # queued: generation:started comes when it starts
        return [
            *self._started_once(generation),
            message(
                "generation:progress",
                generationId=generation.id,
                sessionId=generation.session_id,
                progress=generation.progress,
                message="Running",
            ),
        ]

    # -- what the bus says -----------------------------------------------------------

    def translate(self, event: Event) -> list[Message]:
        """The seed's messages for one bus event, if this client subscribed to them."""
        if event.topic == "notification":
            return [message("notification", **event.data)]
        if event.topic == PROGRESS_TOPIC:
            return self._generation_event(event.data)
        return self._task_event(event.topic, event.data)

    def _task_event(self, topic: str, data: dict[str, Any]) -> list[Message]:
        key = str(data.get("id", ""))
        tasks = self.subscribed["task"]
        parent = str(data.get("parent_id") or "")
        if not (EVERY in tasks or key in tasks or (parent and parent in tasks)):
            return []
        name = topic.partition(":")[2]
        if name == "created":
            return self._with_task(key, lambda task: [message("task:created", task=task)])
        if name == "started":
            return self._with_task(
                key, lambda task: [message("task:started", taskId=key, startedAt=task.started_at)]
            )
        if name == "progress":
            progress, text = data.get("progress"), data.get("message")
            return [message("task:progress", taskId=key, progress=progress, message=text)]
        if name in ("completed", "failed", "cancelled"):
            return self._with_task(key, self._task_end)
        if name == "queued":  # back in the queue: a retry after a failure, or a release
            return [
                message(
                    "task:queued", taskId=key, error=data.get("error"), retryIn=data.get("retry_in")
                )
            ]
        if name == "deleted":
            return [message("task:deleted", taskId=key)]
        return []

    def _with_task(self, key: str, render: Any) -> list[Message]:
        try:
            return render(self.ctx.tasks.get_task(key))
        except NotFoundError:
            return [message("task:deleted", taskId=key)]

    def _wants_generation(self, key: str) -> bool:
        if key in self.subscribed["generation"]:
            return True
        if not self.subscribed["session"]:
            return False
        if key not in self._session_of:
            try:
                found = self.ctx.comfyui.generations.get(key)
                self._session_of[key] = str(found.session_id) if found.session_id else None
            except NotFoundError:
                self._session_of[key] = None
        return self._session_of[key] in self.subscribed["session"]

    def _generation_event(self, data: dict[str, Any]) -> list[Message]:
        key = str(data.get("generation_id", ""))
        if key in self._ended or not self._wants_generation(key):
            return []
        if data.get("status") in TERMINAL:
            try:
                return self._generation_end(self.ctx.comfyui.generations.get(key))
            except NotFoundError:
                self._ended.add(key)
                return [message("generation:failed", generationId=key, error="Deleted")]
        out = (
            []
            if key in self._started
            else self._started_once(self.ctx.comfyui.generations.get(key))
        )
        out.append(
            message(
                "generation:progress",
                generationId=key,
                sessionId=self._session_of.get(key),
                node=data.get("node"),
                nodeType=data.get("node_type"),
                progress=data.get("fraction"),
                step=data.get("step"),
                max=data.get("max"),
                message=data.get("message"),
                preview=media_url(data.get("preview_path")),
            )
        )
        return out

    def _started_once(self, generation: GenerationView) -> list[Message]:
        key = str(generation.id)
        if key in self._started:
            return []
        self._started.add(key)
        return [
            message(
                "generation:started",
                generationId=generation.id,
                promptId=generation.prompt_id,
                sessionId=generation.session_id,
            )
        ]

    def _generation_end(self, generation: GenerationView) -> list[Message]:
        key = str(generation.id)
        self._ended.add(key)
        self._started.discard(key)
        if generation.status == "completed":
            return [
                message(
                    "generation:completed",
                    generationId=generation.id,
                    sessionId=generation.session_id,
                    outputs=outputs_of(generation),
                )
            ]
        return [
            message(
                "generation:failed",
                generationId=generation.id,
                sessionId=generation.session_id,
                status=generation.status,
                error=generation.error or generation.status,
            )
        ]

    def check_ends(self) -> list[Message]:
        """Ends of started generations the bus did not bring (a worker in another process
        on SQLite): read from the database."""
        out: list[Message] = []
        for key in list(self._started):
            try:
                generation = self.ctx.comfyui.generations.get(uuid.UUID(key))
            except NotFoundError:
                self._started.discard(key)
                continue
            if generation.done:
                out += self._generation_end(generation)
        return out
