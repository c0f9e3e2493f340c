"""Test tiers, so a change can be checked at the speed it needs:

- `unit`: pure logic — no database, no server, no process (`pytest -m unit`, seconds);
- `integration`: the services on real SQLite and PostgreSQL, the real SDKs and clients
  against local fake servers (`pytest -m integration`);
- `acceptance`: the whole app as users meet it — launched and called through
  `gradio_client` or raw HTTP, in Chromium, and real worker processes
  (`pytest -m acceptance`).

Every test module is in exactly one tier (a new one must be added here), and a unit
test that asks for a database fixture is refused: the tier says what it is.
"""

from __future__ import annotations

import pytest

TIERS: dict[str, set[str]] = {
    "unit": {
        "test_comfyui_format",
        "test_comfyui_media",
        "test_comfyui_params",
        "test_config",
        "test_crypto",
        "test_imports",
        "test_outcome",
        "test_workflow",
    },
    "integration": {
        "test_chat",
        "test_comfyui_client",
        "test_comfyui_service",
        "test_connection",
        "test_dashboard",
        "test_events",
        "test_history",
        "test_migrations",
        "test_ollama_models",
        "test_ollama_provider",
        "test_profiles",
        "test_users",
        "test_providers_cloud",
        "test_queue",
    },
    "acceptance": {
        "test_api",
        "test_api_account",
        "test_ownership",
        "test_api_chat",
        "test_api_comfyui",
        "test_api_events",
        "test_api_history",
        "test_api_models",
        "test_api_schema",
        "test_api_settings",
        "test_api_tasks",
        "test_mcp",
        "test_app",
        "test_browser",
        "test_chat_app",
        "test_comfyui_app",
        "test_fuzz_endpoints",
        "test_history_app",
        "test_tasks_app",
        "test_worker",
    },
}
TIER_OF = {module: tier for tier, modules in TIERS.items() for module in modules}
# Fixtures that reach a database or build the app: not for a unit test.
NOT_UNIT = {"db_url", "empty_db_url", "postgres", "settings", "ctx", "app"}


def pytest_configure(config: pytest.Config) -> None:
    for tier, what in (
        ("unit", "pure logic: no database, server or process"),
        ("integration", "services on real databases, SDKs against local fake servers"),
        ("acceptance", "the launched app, the browser, real worker processes"),
    ):
        config.addinivalue_line("markers", f"{tier}: {what}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        tier = TIER_OF.get(module)
        if tier is None:
            raise pytest.UsageError(f"{module} has no tier: add it to TIERS in tests/tiers.py")
        uses = NOT_UNIT & set(getattr(item, "fixturenames", ()))
        if tier == "unit" and uses:
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but uses {', '.join(sorted(uses))}: "
                "move it to an integration module"
            )
        item.add_marker(tier)
