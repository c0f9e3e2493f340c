"""Stored generations: one, a filtered list, a sweep's grid, the posted snapshot, the
parameters to reuse — and deleting them with their files."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import grid, media, params
from spoonfeeder.comfyui.records import generation_view, get_row, snapshot_of
from spoonfeeder.comfyui.views import (
    COMPLETED,
    PENDING,
    RUNNING,
    GalleryPage,
    GenerationView,
    SweepView,
)
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import parse_id, shown

if TYPE_CHECKING:
    from spoonfeeder.comfyui.cancelling import CancelRequests


def get(sessions: sessionmaker[Session], generation_id: uuid.UUID | str) -> GenerationView:
    with sessions() as session:
        return generation_view(get_row(session, ComfyUIGeneration, generation_id, "generation"))


def list_filtered(
    sessions: sessionmaker[Session],
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
    with sessions() as session:
        rows = session.scalars(query.limit(max(1, min(limit, 2000))).offset(max(0, offset)))
        return [generation_view(row) for row in rows]


def gallery_page(
    sessions: sessionmaker[Session], session_id: uuid.UUID | str, page: int, per_page: int
) -> GalleryPage:
    """A page of the session's completed generations, newest first — whatever else
    (cancelled sweep cells, failures) the session holds."""
    key = parse_id(session_id, "session")
    g = ComfyUIGeneration
    done = (g.session_id == key) & (g.status == COMPLETED)
    with sessions() as session:
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
        return GalleryPage([generation_view(r) for r in rows], page, pages, int(total), per_page)


def unfinished(sessions: sessionmaker[Session], session_id: uuid.UUID | str) -> list[uuid.UUID]:
    """The session's generations still queued or running, oldest first."""
    g = ComfyUIGeneration
    with sessions() as session:
        return list(
            session.scalars(
                select(g.id)
                .where(g.session_id == parse_id(session_id, "session"))
                .where(g.status.in_([PENDING, RUNNING]))
                .order_by(g.created_at, g.batch_index)
            )
        )


def sweep_grid(sessions: sessionmaker[Session], sweep_id: str) -> SweepView:
    """A sweep again, with its generations' current state (for the labelled grid)."""
    with sessions() as session:
        rows = list(
            session.scalars(
                select(ComfyUIGeneration)
                .where(cast(ComfyUIGeneration.parameters, String).contains(sweep_id))
                .order_by(ComfyUIGeneration.created_at, ComfyUIGeneration.batch_index)
            )
        )
    views = [
        generation_view(r) for r in rows if (r.parameters.get("sweep") or {}).get("id") == sweep_id
    ]
    if not views:
        raise NotFoundError(f"No sweep with id {shown(sweep_id)}")
    axes = [(name, list(values)) for name, values in views[0].parameters["sweep"].get("axes", [])]
    return SweepView(sweep_id, axes, sorted(views, key=lambda v: v.batch_index))


def sweep_image(sessions: sessionmaker[Session], media_root: Path, sweep_id: str) -> Path:
    """The sweep as one labelled PNG under the media folder (made again each time: cells
    finish, fail or are deleted meanwhile)."""
    view = sweep_grid(sessions, sweep_id)
    names = [name for name, _ in view.axes]
    if len(view.axes) == 2:
        rows = [f"{params.label(names[0])} {value}" for value in view.axes[0][1]]
    else:
        rows = [""]
    columns = [f"{params.label(names[-1])} {value}" for value in view.axes[-1][1]]
    cells = [_cell(media_root, g) for g in view.generations]
    first = view.generations[0]
    # The default font has no "×": plain words.
    axes = f"{params.label(names[0])} (rows), {params.label(names[1])} (columns)"
    title = (axes if len(names) == 2 else params.label(names[0])) + f" · seed {first.seed}"
    if first.prompt:
        title += f" · {' '.join(first.prompt.split())[:80]}"
    png = grid.labelled_grid(title, rows, columns, cells)
    path = media.inside(media_root, media_root / media.FOLDER / "sweeps" / f"{sweep_id}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def _cell(media_root: Path, generation: GenerationView) -> grid.Cell:
    image = next((o for o in generation.outputs if o.kind == "image"), None)
    if image is None:
        return grid.Cell(None, generation.status)
    try:
        return grid.Cell(media.media_file(media_root, image.path).read_bytes())
    except (NotFoundError, ValidationError):  # its file was removed by hand
        return grid.Cell(None, "file missing")


def reuse_parameters(
    sessions: sessionmaker[Session], generation_id: uuid.UUID | str
) -> dict[str, Any]:
    """A generation's parameters as form values (its actual seed, not -1), with
    `workflow_id`, `session_id` and `batch_count` 1."""
    view = get(sessions, generation_id)
    values = params.merge(view.parameters)
    return {
        **values,
        "workflow_id": str(view.workflow_id) if view.workflow_id else None,
        "session_id": str(view.session_id) if view.session_id else None,
        "batch_count": 1,
    }


def snapshot(sessions: sessionmaker[Session], generation_id: uuid.UUID | str) -> dict[str, Any]:
    """The exact API-format JSON that was (or will be) posted for a generation, in its order."""
    return snapshot_and_text(sessions, generation_id)[0]


def snapshot_and_text(
    sessions: sessionmaker[Session], generation_id: uuid.UUID | str
) -> tuple[dict[str, Any], str]:
    with sessions() as session:
        return snapshot_of(get_row(session, ComfyUIGeneration, generation_id, "generation"))


def export_snapshot(
    sessions: sessionmaker[Session], media_root: Path, generation_id: uuid.UUID | str
) -> Path:
    """The snapshot as a .json file under the media folder, for a download button.
    Loading it into ComfyUI (or importing it here) runs the same workflow."""
    view = get(sessions, generation_id)
    folder = media.generation_folder(media_root, view.id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"workflow_api_{str(view.id)[:8]}.json"
    path.write_text(snapshot_and_text(sessions, view.id)[1], encoding="utf-8")  # as posted
    return path


def delete(
    sessions: sessionmaker[Session],
    cancels: CancelRequests,
    media_root: Path,
    generation_id: uuid.UUID | str,
) -> None:
    """Delete a generation and its files (cancelling it if it still runs)."""
    with transaction(sessions) as session:
        row = get_row(session, ComfyUIGeneration, generation_id, "generation")
        key = row.id
        session.delete(row)
    forget([key], cancels, media_root)


def forget(ids: Iterable[uuid.UUID], cancels: CancelRequests, media_root: Path) -> None:
    """After their rows are deleted: stop any run still going, and delete their files."""
    for generation_id in ids:
        cancels.request(generation_id)
        shutil.rmtree(media.generation_folder(media_root, generation_id), ignore_errors=True)
