"""ComfyUI sessions (`ctx.comfyui.sessions`): create, rename, move to another server
profile, delete, list, and the values their form opens with (workflow defaults ← the
last parameters used)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete as delete_rows
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import params, planning
from spoonfeeder.comfyui.generations import Generations
from spoonfeeder.comfyui.library import WorkflowLibrary
from spoonfeeder.comfyui.rows import (
    clean_name,
    effective_defaults,
    get_row,
    session_counts,
    session_view,
)
from spoonfeeder.comfyui.views import SessionView
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration, ComfyUISession
from spoonfeeder.errors import ValidationError
from spoonfeeder.profiles import ProfileService


class SessionStore:
    def __init__(
        self,
        db: sessionmaker[Session],
        profiles: ProfileService,
        workflows: WorkflowLibrary,
        generations: Generations,
    ) -> None:
        self._db = db
        self._profiles = profiles
        self._workflows = workflows
        self._generations = generations

    def create(
        self,
        name: str,
        *,
        description: str | None = None,
        profile_id: uuid.UUID | str | None = None,
        owner_id: uuid.UUID | None = None,
    ) -> SessionView:
        """A new session; `profile_id` picks a ComfyUI server profile (None = default)."""
        cleaned_name = clean_name(name, "session")
        profile = self.comfyui_profile(profile_id)
        with transaction(self._db) as session:
            row = ComfyUISession(
                owner_id=owner_id,
                name=cleaned_name,
                description=(description or "").strip() or None,
                profile_id=profile,
            )
            session.add(row)
            session.flush()
            return self._view(session, row)

    def rename(self, session_id: uuid.UUID | str, name: str) -> SessionView:
        return self._change(session_id, name=clean_name(name, "session"))

    def set_profile(
        self,
        session_id: uuid.UUID | str,
        profile_id: uuid.UUID | str | None,
    ) -> SessionView:
        """Run this session's next generations on another ComfyUI server (None = default)."""
        return self._change(session_id, profile_id=self.comfyui_profile(profile_id))

    def delete(
        self,
        session_id: uuid.UUID | str,
        *,
        delete_generations: bool,
    ) -> int:
        """Delete a session. With `delete_generations`, its generations and their files go
        too (running ones are cancelled first); otherwise they stay, without a session.
        Returns how many generations were deleted."""
        with transaction(self._db) as session:
            row = get_row(session, ComfyUISession, session_id, "session")
            ids = list(
                session.scalars(
                    select(ComfyUIGeneration.id).where(ComfyUIGeneration.session_id == row.id)
                )
            )
            if delete_generations:
                session.execute(delete_rows(ComfyUIGeneration).where(ComfyUIGeneration.id.in_(ids)))
            else:
                session.execute(
                    update(ComfyUIGeneration)
                    .where(ComfyUIGeneration.session_id == row.id)
                    .values(session_id=None)
                )
            session.delete(row)
        if not delete_generations:
            return 0
        self._generations.forget(ids)
        return len(ids)

    def list_all(self, owner_id: uuid.UUID | None = None) -> list[SessionView]:
        """Most recently used first, with generation / completed / failed counts."""
        with self._db() as session:
            query = select(ComfyUISession).order_by(ComfyUISession.updated_at.desc())
            if owner_id is not None:
                query = query.where(ComfyUISession.owner_id == owner_id)
            rows = list(session.scalars(query))
            counts = session_counts(session, [row.id for row in rows])
            return [session_view(row, counts.get(row.id, (0, 0, 0))) for row in rows]

    def get(self, session_id: uuid.UUID | str) -> SessionView:
        with self._db() as session:
            return self._view(session, get_row(session, ComfyUISession, session_id, "session"))

    def form_parameters(
        self,
        session_id: uuid.UUID | str | None = None,
        workflow_id: uuid.UUID | str | None = None,
    ) -> dict[str, Any]:
        """Values to fill the form with: the workflow's defaults ← the session's last
        parameters, plus `workflow_id` and `batch_count`. Opening a session uses this."""
        with self._db() as session:
            last = {}
            if session_id is not None:
                last = dict(
                    get_row(session, ComfyUISession, session_id, "session").last_parameters or {}
                )
            row = self._workflows.chosen_row(session, workflow_id, last.get("workflow_id"))
            remembered = planning.last_for(last, row.id)
            values = params.merge(effective_defaults(row), remembered)
            return {
                **values,
                "workflow_id": str(row.id),
                "batch_count": int(remembered.get("batch_count") or 1),
            }

    def comfyui_profile(self, profile_id: uuid.UUID | str | None) -> uuid.UUID | None:
        """The id of a ComfyUI server profile (None = the default server); a profile of
        another provider is refused."""
        if profile_id in (None, ""):
            return None
        credentials = self._profiles.credentials("comfyui", profile_id)
        if credentials.provider != "comfyui":
            raise ValidationError("That profile is not a ComfyUI server", "profile")
        return credentials.profile_id

    def _change(self, session_id: uuid.UUID | str, **values: Any) -> SessionView:
        with transaction(self._db) as session:
            row = get_row(session, ComfyUISession, session_id, "session")
            for column, value in values.items():
                setattr(row, column, value)
            session.flush()
            return self._view(session, row)

    @staticmethod
    def _view(session: Session, row: ComfyUISession) -> SessionView:
        return session_view(row, session_counts(session, [row.id]).get(row.id, (0, 0, 0)))
