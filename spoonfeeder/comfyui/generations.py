"""The stored generations (`ctx.comfyui.generations`): one, a filtered list, a gallery
page, a sweep's grid, the posted snapshot, the parameters to reuse — and stopping and
deleting them with their files. New ones are made by `generator.Generator`."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import grid, media, params
from spoonfeeder.comfyui.hooks import CancelRequests
from spoonfeeder.comfyui.rows import generation_view, get_row, snapshot_of
from spoonfeeder.comfyui.views import (
    CANCELLED,
    COMPLETED,
    PENDING,
    RUNNING,
    GalleryPage,
    GenerationView,
    SweepView,
)
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import parse_id, shown


class Generations:
    def __init__(
        self, db: sessionmaker[Session], media_root: Path, cancels: CancelRequests
    ) -> None:
        self._db = db
        self._media = media_root
        self._cancels = cancels

    def get(self, generation_id: uuid.UUID | str) -> GenerationView:
        with self._db() as session:
            return generation_view(get_row(session, ComfyUIGeneration, generation_id, "generation"))

    def list_all(
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
        with self._db() as session:
            rows = session.scalars(query.limit(max(1, min(limit, 2000))).offset(max(0, offset)))
            return [generation_view(row) for row in rows]

    def gallery_page(
        self, session_id: uuid.UUID | str, page: int = 0, per_page: int = 24
    ) -> GalleryPage:
        """A page of the session's completed generations, newest first — whatever else
        (cancelled sweep cells, failures) the session holds."""
        key = parse_id(session_id, "session")
        g = ComfyUIGeneration
        done = (g.session_id == key) & (g.status == COMPLETED)
        with self._db() as session:
            total = session.scalar(select(func.count()).select_from(g).where(done)) or 0
            pages = max(1, -(-total // per_page))
            page = min(max(0, page), pages - 1)
            rows = session.scalars(
                select(g)
                .where(done)
                .order_by(g.created_at.desc(), g.batch_index.desc())
                .limit(per_page)
                .offset(page * per_page)
            )
            return GalleryPage(
                [generation_view(r) for r in rows], page, pages, int(total), per_page
            )

    def unfinished(self, session_id: uuid.UUID | str) -> list[uuid.UUID]:
        """The session's generations still queued or running, oldest first."""
        g = ComfyUIGeneration
        with self._db() as session:
            return list(
                session.scalars(
                    select(g.id)
                    .where(g.session_id == parse_id(session_id, "session"))
                    .where(g.status.in_([PENDING, RUNNING]))
                    .order_by(g.created_at, g.batch_index)
                )
            )

    def sweep_grid(self, sweep_id: str) -> SweepView:
        """A sweep again, with its generations' current state (for the labelled grid)."""
        with self._db() as session:
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
            raise NotFoundError(f"No sweep with id {shown(sweep_id)}")
        axes = [
            (name, list(values)) for name, values in views[0].parameters["sweep"].get("axes", [])
        ]
        return SweepView(sweep_id, axes, sorted(views, key=lambda v: v.batch_index))

    def sweep_image(self, sweep_id: str) -> Path:
        """The sweep as one labelled PNG under the media folder (made again each time: cells
        finish, fail or are deleted meanwhile)."""
        view = self.sweep_grid(sweep_id)
        names = [name for name, _ in view.axes]
        if len(view.axes) == 2:
            rows = [f"{params.label(names[0])} {value}" for value in view.axes[0][1]]
        else:
            rows = [""]
        columns = [f"{params.label(names[-1])} {value}" for value in view.axes[-1][1]]
        cells = [self._cell(g) for g in view.generations]
        first = view.generations[0]
        # The default font has no "×": plain words.
        axes = f"{params.label(names[0])} (rows), {params.label(names[1])} (columns)"
        title = (axes if len(names) == 2 else params.label(names[0])) + f" · seed {first.seed}"
        if first.prompt:
            title += f" · {' '.join(first.prompt.split())[:80]}"
        png = grid.labelled_grid(title, rows, columns, cells)
        path = media.inside(self._media, self._media / media.FOLDER / "sweeps" / f"{sweep_id}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path

    def _cell(self, generation: GenerationView) -> grid.Cell:
        image = next((o for o in generation.outputs if o.kind == "image"), None)
        if image is None:
            return grid.Cell(None, generation.status)
        try:
            return grid.Cell(media.media_file(self._media, image.path).read_bytes())
        except (NotFoundError, ValidationError):  # its file was removed by hand
            return grid.Cell(None, "file missing")

    def reuse_parameters(self, generation_id: uuid.UUID | str) -> dict[str, Any]:
        """A generation's parameters as form values (its actual seed, not -1), with
        `workflow_id`, `session_id` and `batch_count` 1."""
        view = self.get(generation_id)
        values = params.merge(view.parameters)
        return {
            **values,
            "workflow_id": str(view.workflow_id) if view.workflow_id else None,
            "session_id": str(view.session_id) if view.session_id else None,
            "batch_count": 1,
        }

    def snapshot(self, generation_id: uuid.UUID | str) -> dict[str, Any]:
        """The exact API-format JSON that was (or will be) posted for a generation, in its order."""
        return self._snapshot_and_text(generation_id)[0]

    def _snapshot_and_text(self, generation_id: uuid.UUID | str) -> tuple[dict[str, Any], str]:
        with self._db() as session:
            return snapshot_of(get_row(session, ComfyUIGeneration, generation_id, "generation"))

    def export_snapshot(self, generation_id: uuid.UUID | str) -> Path:
        """The snapshot as a .json file under the media folder, for a download button.
        Loading it into ComfyUI (or importing it here) runs the same workflow."""
        view = self.get(generation_id)
        folder = media.generation_folder(self._media, view.id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"workflow_api_{str(view.id)[:8]}.json"
        path.write_text(self._snapshot_and_text(view.id)[1], encoding="utf-8")  # as posted
        return path

    def delete(self, generation_id: uuid.UUID | str) -> None:
        """Delete a generation and its files (cancelling it if it still runs)."""
        with transaction(self._db) as session:
            row = get_row(session, ComfyUIGeneration, generation_id, "generation")
            key = row.id
            session.delete(row)
        self.forget([key])

    def forget(self, ids: Iterable[uuid.UUID]) -> None:
        """After their rows are deleted: stop any run still going, and delete their files."""
        for generation_id in ids:
            self._cancels.request(generation_id)
            shutil.rmtree(media.generation_folder(self._media, generation_id), ignore_errors=True)

    def snapshot_text(self, generation_id: uuid.UUID | str) -> str:
        """The snapshot exactly as it was (or will be) posted: the bytes ComfyUI receives,
        on SQLite and PostgreSQL alike. A re-run posts this text again."""
        return self._snapshot_and_text(generation_id)[1]

    # ===== stopping ==================================================================

    def cancel(self, generation_id: uuid.UUID | str) -> GenerationView:
        """Stop a generation: a pending one is cancelled at once; a running one is
        interrupted on ComfyUI by its runner and ends `cancelled`."""
        key = parse_id(generation_id, "generation")
        with transaction(self._db) as session:
            row = get_row(session, ComfyUIGeneration, key, "generation")
            task_id = row.task_id
            if row.status == PENDING and row.prompt_id is None:
                row.status = CANCELLED
                row.error = "Cancelled before it started"
                row.completed_at = utcnow()
        self._cancels.request(key, task_id)
        return self.get(key)

    def cancel_unfinished(self, generation_ids: Iterable[uuid.UUID | str]) -> int:
        """Stop those of `generation_ids` that have not ended (a page's Interrupt of
        what it follows); how many were asked to stop."""
        asked = 0
        for generation_id in generation_ids:
            if not self.get(generation_id).done:
                self.cancel(generation_id)
                asked += 1
        return asked

    def task_cancelled(self, task_id: uuid.UUID, *, task_is_final: bool = False) -> None:
        """Its task was cancelled before it ran: a generation not yet posted is cancelled
        too (a running one hears of it through the task and interrupts ComfyUI). With
        `task_is_final` (seen at start-up: no worker holds it) any unfinished one is."""
        g = ComfyUIGeneration
        unfinished = g.status.in_([PENDING, RUNNING])
        not_started = (g.status == PENDING) & g.prompt_id.is_(None)
        with transaction(self._db) as session:
            session.execute(
                update(g)
                .where(g.task_id == task_id, unfinished if task_is_final else not_started)
                .values(status=CANCELLED, error="Its task was cancelled", completed_at=utcnow())
            )

    def interrupted(self) -> list[uuid.UUID]:
        """Generations left `running` (by a stopped app) or `pending`, oldest first."""
        g = ComfyUIGeneration
        with self._db() as session:
            return list(
                session.scalars(
                    select(g.id)
                    .where(g.status.in_([PENDING, RUNNING]))
                    .order_by(g.created_at, g.batch_index)
                )
            )
