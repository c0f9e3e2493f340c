"""Dashboard tab: database and provider health, task statistics, row counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.dashboard import DatabaseHealth, ProviderHealth
from spoonfeeder.serialize import jsonable
from spoonfeeder.tasks.views import TaskStats
from ui.common import Refresh, api, format_time, shows_errors, status_label

PROVIDER_COLUMNS = ["Name", "Kind", "Endpoint", "Status", "Message", "Last tested"]


# ----- pure helpers: how the health reads -------------------------------------------------


def describe_task_stats(stats: TaskStats) -> str:
    counts = " · ".join(f"{status}: **{n}**" for status, n in stats.counts.items())
    median = (
        f"{stats.median_duration_seconds:.2f} s"
        if stats.median_duration_seconds is not None
        else "—"
    )
    return (
        f"### Tasks\n{counts}\n\nLast hour: **{stats.completed_last_hour}** completed, "
        f"**{stats.failed_last_hour}** failed · median run time {median}"
    )


def describe_database(db: DatabaseHealth) -> str:
    return f"### Database {'✅' if db.ok else '❌'}\n{db.message}"


def describe_notices(notices: list[str]) -> str:
    return "\n\n".join(f"> ⚠️ {n}" for n in notices)


def provider_rows(health: list[ProviderHealth]) -> list[list[str]]:
    return [
        [
            h.name,
            h.kind,
            h.url,
            status_label(h.status),
            h.message or "",
            format_time(h.last_tested),
        ]
        for h in health
    ]


def failure_rows(stats: TaskStats) -> list[list[str]]:
    return [
        [t.name or str(t.id), t.type, format_time(t.completed_at), t.error or ""]
        for t in stats.recent_failures
    ]


# ----- the tab ----------------------------------------------------------------------------


@dataclass
class DashboardView:
    notices: gr.Markdown
    database: gr.Markdown
    providers: gr.Dataframe
    task_stats: gr.Markdown
    failures: gr.Dataframe
    counts: gr.Dataframe
    refresh: gr.Button

    def shown(self) -> list[Any]:
        """What a refresh fills in: everything but the button."""
        return [
            self.notices,
            self.database,
            self.providers,
            self.task_stats,
            self.failures,
            self.counts,
        ]


def build(ctx: AppContext) -> Refresh:
    view = render(ctx)
    return listen(ctx, view)


def render(ctx: AppContext) -> DashboardView:
    return DashboardView(
        notices=gr.Markdown(elem_id="dash-notices"),
        database=gr.Markdown(elem_id="dash-database"),
        providers=gr.Dataframe(
            headers=PROVIDER_COLUMNS,
            interactive=False,
            wrap=True,
            elem_id="dash-providers",
            label="Providers and profiles",
        ),
        task_stats=gr.Markdown(elem_id="dash-tasks"),
        failures=gr.Dataframe(
            headers=["Failed task", "Type", "When", "Error"],
            interactive=False,
            wrap=True,
            elem_id="dash-failures",
            label="Recent failures",
        ),
        counts=gr.Dataframe(
            headers=["Table", "Rows"], interactive=False, elem_id="dash-counts", label="Rows"
        ),
        refresh=gr.Button("Refresh", elem_id="dash-refresh"),
    )


def listen(ctx: AppContext, view: DashboardView) -> Refresh:
    service = ctx.dashboard

    @shows_errors
    def refresh() -> dict[Any, Any]:
        stats = ctx.tasks.stats()
        return {
            view.notices: describe_notices(ctx.operator_notices()),
            view.database: describe_database(service.database_health()),
            view.providers: provider_rows(service.provider_health()),
            view.task_stats: describe_task_stats(stats),
            view.failures: failure_rows(stats),
            view.counts: [[name, n] for name, n in service.table_counts().items()],
        }

    view.refresh.click(refresh, None, view.shown(), api_name="refresh_dashboard")

    def dashboard() -> dict:
        """Health and counts as JSON."""
        return {
            "notices": ctx.operator_notices(),
            "database": jsonable(service.database_health()),
            "providers": jsonable(service.provider_health()),
            "counts": service.table_counts(),
            "tasks": jsonable(ctx.tasks.stats()),
        }

    api(dashboard, "dashboard")
    return refresh, view.shown()
