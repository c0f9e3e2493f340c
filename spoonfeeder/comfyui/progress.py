"""Following generations' progress as it happens: the `comfyui:progress` events of the
event bus, merged for a slow reader, with the database checked so no end is missed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui.hooks import QueueHooks
from spoonfeeder.comfyui.views import CANCELLED, PROGRESS_TOPIC, TERMINAL, GenerationProgress
from spoonfeeder.db.models import ComfyUIGeneration
from spoonfeeder.ids import parse_id


class Progress:
    """`ctx.comfyui.progress`: what a UI, a REST stream or a script follows."""

    def __init__(self, db: sessionmaker[Session], hooks: QueueHooks) -> None:
        self._db = db
        self._hooks = hooks

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
        shape. For a UI generator: `for event in progress.follow(ids): yield render(event)`.
        A reader slower than the events gets them merged — per generation the latest
        state, with the latest preview — so it never falls behind; the first is never
        held back. With `heartbeat`, None every `poll` seconds without news, so a reader
        can hand control back (and be stopped)."""
        events = self._hooks.events
        wanted = {str(parse_id(g, "generation")) for g in generation_ids}
        deadline = None if timeout is None else time.monotonic() + timeout
        subscription = events.subscribe(PROGRESS_TOPIC) if events else None
        try:
            ended = _ended(self._db, wanted, set())
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
                if heartbeat and not batch:
                    yield None
                for data in coalesce(batch, wanted - done):
                    yield data
                    if data.get("status") in TERMINAL:
                        done.add(data["generation_id"])
                if time.monotonic() - checked >= poll:
                    checked = time.monotonic()
                    for data in _ended(self._db, wanted, done):
                        done.add(data["generation_id"])
                        yield data
        finally:
            if subscription is not None:
                subscription.close()


def coalesce(batch: list[dict[str, Any]], wanted: set[str]) -> list[dict[str, Any]]:
    """Per generation, the latest status and message, with the latest known value of every
    other field (step, max, preview_path, …); an end is never merged away. Nor is the last
    sampling step: when later news without a step follows it ("Step 20/20", then "Running
    VAE decode"), that step's event comes first, so a reader always sees the last step."""
    latest: dict[str, dict[str, Any]] = {}
    is_step: dict[str, bool] = {}  # the latest event was itself a step's
    last_step: dict[str, dict[str, Any]] = {}  # a step event that later news followed
    for data in batch:
        key = data.get("generation_id")
        if key not in wanted:
            continue
        previous = latest.get(key)
        if previous is not None and previous.get("status") in TERMINAL:
            continue
        step = data.get("step") is not None
        if previous is not None:
            if is_step[key] and not step:
                last_step[key] = previous
            elif step:
                last_step.pop(key, None)  # a newer step: the older one is old news
            known = {k: v for k, v in data.items() if v is not None}
            data = {**previous, **known}  # status and message are never None
        latest[key], is_step[key] = data, step
    out: list[dict[str, Any]] = []
    for key, data in latest.items():
        if key in last_step:
            out.append(last_step[key])
        out.append(data)
    return out


def _ended(
    sessions: sessionmaker[Session], wanted: set[str], done: set[str]
) -> list[dict[str, Any]]:
    """Generations among `wanted - done` that have ended, as progress event dicts."""
    keys = [uuid.UUID(g) for g in wanted - done]
    if not keys:
        return []
    with sessions() as session:
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
