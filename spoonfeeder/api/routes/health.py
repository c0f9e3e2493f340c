"""GET /api/health: the database, the task queue and each provider's last known state."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.context import AppContext
from spoonfeeder.dashboard import DatabaseHealth, ProviderHealth
from spoonfeeder.tasks.views import TaskStats


@dataclass(frozen=True)
class Health:
    ok: bool  # the database answers at the current schema
    database: DatabaseHealth
    tasks: TaskStats
    providers: list[ProviderHealth]  # as last tested (Test connection, the Dashboard)


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="System health check")
    def health() -> Ok[Health]:
        """The database (reachable, schema at head, latency), the queue's counts and
        every provider setting and profile with its last tested status. Nothing is
        probed over the network: Test connection (POST /settings/{provider}/test,
        POST /profiles/{id}/test) does that."""
        database = ctx.dashboard.database_health()
        return ok(Health(database.ok, database, ctx.tasks.stats(), ctx.dashboard.provider_health()))

    return router
