"""Dashboard tab: database and provider health, task statistics, row counts."""

from __future__ import annotations

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.serialize import jsonable
from spoonfeeder.tasks.views import TaskStats
from ui.common import Refresh, api, format_time, shows_errors, status_label


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


PROVIDER_COLUMNS = ["Name", "Kind", "Endpoint", "Status", "Message", "Last tested"]


def build(ctx: AppContext) -> Refresh:
    service = ctx.dashboard
    notices = gr.Markdown(elem_id="dash-notices")
    database = gr.Markdown(elem_id="dash-database")
    providers = gr.Dataframe(
        headers=PROVIDER_COLUMNS,
        interactive=False,
        wrap=True,
        elem_id="dash-providers",
        label="Providers and profiles",
    )
    task_stats = gr.Markdown(elem_id="dash-tasks")
    failures = gr.Dataframe(
        headers=["Failed task", "Type", "When", "Error"],
        interactive=False,
        wrap=True,
        elem_id="dash-failures",
        label="Recent failures",
    )
    counts = gr.Dataframe(
        headers=["Table", "Rows"], interactive=False, elem_id="dash-counts", label="Rows"
    )
    refresh_btn = gr.Button("Refresh", elem_id="dash-refresh")

    @shows_errors
    def refresh():
        db = service.database_health()
        db_text = f"### Database {'✅' if db.ok else '❌'}\n{db.message}"
        notice_text = "\n\n".join(f"> ⚠️ {n}" for n in ctx.operator_notices())
        rows = [
            [
                h.name,
                h.kind,
                h.url,
                status_label(h.status),
                h.message or "",
                format_time(h.last_tested),
            ]
            for h in service.provider_health()
        ]
        table_counts = [[name, n] for name, n in service.table_counts().items()]
        stats = ctx.tasks.stats()
        failed = [
            [t.name or str(t.id), t.type, format_time(t.completed_at), t.error or ""]
            for t in stats.recent_failures
        ]
        return notice_text, db_text, rows, describe_task_stats(stats), failed, table_counts

    outputs = [notices, database, providers, task_stats, failures, counts]
    refresh_btn.click(refresh, None, outputs, api_name="refresh_dashboard")

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
    return refresh, outputs
