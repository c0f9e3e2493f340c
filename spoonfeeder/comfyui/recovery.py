"""After a restart: finding the generations a stopped app left unfinished, and
resuming those it left running on ComfyUI."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui.views import PENDING, RUNNING
from spoonfeeder.db.models import ComfyUIGeneration


def interrupted_generations(sessions: sessionmaker[Session]) -> list[uuid.UUID]:
    """Generations left `running` (by a stopped app) or `pending`, oldest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(ComfyUIGeneration.id)
                .where(ComfyUIGeneration.status.in_([PENDING, RUNNING]))
                .order_by(ComfyUIGeneration.created_at, ComfyUIGeneration.batch_index)
            )
        )


def resume_interrupted(
    sessions: sessionmaker[Session],
    run: Callable[[uuid.UUID], object],
    *,
    background: bool = True,
) -> list[uuid.UUID]:
    """`run` each generation a stopped app left running — in one daemon thread unless
    `background` is False. Returns their ids."""
    ids = [gid for gid in interrupted_generations(sessions) if _is_running(sessions, gid)]
    if not background:
        for generation_id in ids:
            run(generation_id)
        return ids
    if ids:
        threading.Thread(
            target=lambda: [run(g) for g in ids],
            name="comfyui-resume",
            daemon=True,
        ).start()
    return ids


def _is_running(sessions: sessionmaker[Session], generation_id: uuid.UUID) -> bool:
    with sessions() as session:
        row = session.get(ComfyUIGeneration, generation_id)
        return row is not None and row.status == RUNNING
