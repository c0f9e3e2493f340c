"""Dashboard tab: database and provider health, row counts."""

from __future__ import annotations

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.providers.kinds import PROVIDER_KINDS
from spoonfeeder.serialize import jsonable
from ui.common import Refresh, format_time, shows_errors, status_label

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
    counts = gr.Dataframe(
        headers=["Table", "Rows"], interactive=False, elem_id="dash-counts", label="Rows"
    )
    refresh_btn = gr.Button("Refresh", elem_id="dash-refresh")

    @shows_errors
    def refresh():
        db = service.database_health()
        db_text = f"### Database {'✅' if db.ok else '❌'}\n{db.message}"
        notice_text = "\n".join(f"> ⚠️ {n}" for n in ctx.notices)
        rows = [
            [
                h.name,
                PROVIDER_KINDS[h.provider].label + (" profile" if h.is_profile else ""),
                h.url,
                status_label(h.status),
                h.message or "",
                format_time(h.last_tested),
            ]
            for h in service.provider_health()
        ]
        table_counts = [[name, n] for name, n in service.table_counts().items()]
        return notice_text, db_text, rows, table_counts

    outputs = [notices, database, providers, counts]
    refresh_btn.click(refresh, None, outputs, api_name="refresh_dashboard")

    def dashboard() -> dict:
        """Health and counts as JSON."""
        return {
            "notices": list(ctx.notices),
            "database": jsonable(service.database_health()),
            "providers": jsonable(service.provider_health()),
            "counts": service.table_counts(),
        }

    gr.api(dashboard, api_name="dashboard")
    return refresh, outputs
