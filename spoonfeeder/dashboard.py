"""What the dashboard shows: database health, provider health, row counts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.db.engine import current_revision, head_revision
from spoonfeeder.db.models import MAIN_TABLES
from spoonfeeder.profiles import ProfileService


@dataclass(frozen=True)
class DatabaseHealth:
    ok: bool
    backend: str
    latency_ms: float | None
    revision: str | None
    message: str


@dataclass(frozen=True)
class ProviderHealth:
    name: str  # provider kind, or the profile's name
    provider: str
    url: str
    status: str
    message: str | None
    last_tested: datetime | None
    is_profile: bool
    kind: str  # what it is: "OpenAI / compatible", "ComfyUI profile"


class DashboardService:
    def __init__(
        self, engine: Engine, sessions: sessionmaker[Session], profiles: ProfileService
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._profiles = profiles

    def database_health(self) -> DatabaseHealth:
        backend = self._engine.dialect.name
        started = time.perf_counter()
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            latency = (time.perf_counter() - started) * 1000
            revision = current_revision(self._engine)
        except SQLAlchemyError as exc:
            return DatabaseHealth(
                False,
                backend,
                None,
                None,
                f"Database unreachable: {getattr(exc, 'orig', None) or exc}",
            )
        head = head_revision()
        if revision != head:
            return DatabaseHealth(
                False, backend, latency, revision, f"Schema at {revision}, expected {head}"
            )
        return DatabaseHealth(
            True, backend, latency, revision, f"{backend} · schema {revision} · {latency:.1f} ms"
        )

    def provider_health(self) -> list[ProviderHealth]:
        rows = [
            ProviderHealth(
                s.label,
                s.provider,
                s.endpoint_url,
                s.status,
                s.status_message,
                s.last_tested,
                False,
                s.label,
            )
            for s in self._profiles.list_settings()
        ]
        rows += [
            ProviderHealth(
                p.name,
                p.provider,
                p.url,
                p.status,
                p.status_message,
                p.last_tested,
                True,
                f"{p.label} profile",
            )
            for p in self._profiles.list_profiles()
        ]
        return rows

    def table_counts(self) -> dict[str, int]:
        with self._sessions() as session:
            return {
                name: session.scalar(select(func.count()).select_from(model)) or 0
                for name, model in MAIN_TABLES.items()
            }
