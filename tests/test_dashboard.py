"""The dashboard reports database health, provider health and row counts."""

from __future__ import annotations

from spoonfeeder.context import AppContext
from tests.fakes.server import closed_port_url


def test_database_health(ctx: AppContext) -> None:
    health = ctx.dashboard.database_health()
    assert health.ok
    assert health.backend in ("sqlite", "postgresql")
    assert health.backend in health.message and health.revision in health.message


def test_provider_health_shows_settings_and_profiles(ctx: AppContext) -> None:
    ctx.profiles.save_setting("ollama", endpoint_url=closed_port_url())
    ctx.profiles.test_setting("ollama")
    ctx.profiles.create_profile("Render box", "comfyui", "http://10.1.1.1:8188")
    rows = {row.name: row for row in ctx.dashboard.provider_health()}
    assert rows["Ollama"].status == "unreachable" and rows["Ollama"].last_tested
    assert rows["Render box"].is_profile and rows["Render box"].status == "untested"
    assert len(rows) == 6


def test_table_counts_follow_the_data(ctx: AppContext) -> None:
    before = ctx.dashboard.table_counts()
    assert before["profiles"] == 0
    ctx.profiles.create_profile("a", "ollama")
    ctx.profiles.create_profile("b", "ollama")
    after = ctx.dashboard.table_counts()
    assert after["profiles"] == 2
    assert set(after) >= {"conversations", "messages", "comfyui_generations", "tasks"}
