"""The app launches, exposes `demo`, and scripts can drive Settings through gradio_client."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from spoonfeeder.context import AppContext
from tests.conftest import MakeApp, make_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import closed_port_url, serve
from tests.launch import launched, sqlite_app

ROOT = Path(__file__).parents[1]
SETTINGS_ENDPOINTS = {
    "/load_provider_setting",
    "/save_provider_setting",
    "/test_provider_setting",
    "/list_provider_settings",
    "/load_profile",
    "/save_profile",
    "/test_profile",
    "/confirm_delete_profile",
    "/delete_profile",
    "/list_profiles",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AppContext]]:
    """The real app on a free port, on SQLite (the database suites cover PostgreSQL)."""
    with sqlite_app(tmp_path_factory.mktemp("live")) as ctx, launched(ctx) as url:
        yield Client(url, verbose=False), ctx


def test_client_lists_the_settings_endpoints(live: tuple[Client, AppContext]) -> None:
    client, _ = live
    api = client.view_api(print_info=False, return_format="dict")
    assert SETTINGS_ENDPOINTS <= set(api["named_endpoints"])
    assert "/dashboard" in api["named_endpoints"]


def test_client_saves_and_tests_a_profile(live: tuple[Client, AppContext]) -> None:
    client, ctx = live
    with serve(FakeOpenAI(key="sk-client-key-12345678").app) as url:
        result = client.predict(
            "",
            "client vLLM",
            "openai",
            url + "/v1",
            "sk-client-key-12345678",
            '{"timeout": 20}',
            False,
            api_name="/save_profile",
        )
        profile_id = result[0]
        listed = client.predict(api_name="/list_profiles")
        assert [p["name"] for p in listed] == ["client vLLM"]
        assert listed[0]["key"]["masked"] == "sk-…5678"
        assert "sk-client-key-12345678" not in str(listed)
        client.predict(profile_id, api_name="/test_profile")
    assert ctx.profiles.get_profile(profile_id).status == "ok"
    dashboard = client.predict(api_name="/dashboard")
    assert dashboard["database"]["ok"] is True
    assert dashboard["counts"]["profiles"] == 1


def test_dashboard_refresh_renders_health(live: tuple[Client, AppContext]) -> None:
    client, ctx = live
    ctx.profiles.save_setting("comfyui", endpoint_url=closed_port_url())
    ctx.profiles.test_setting("comfyui")
    _notices, database, providers, _tasks, _failures, counts = client.predict(
        api_name="/refresh_dashboard"
    )
    assert "Database ✅" in database
    rows = {row[0]: row for row in providers["data"]}
    assert "unreachable" in rows["ComfyUI"][3]
    assert "ComfyUI" in rows["ComfyUI"][4]
    assert ["profiles", len(ctx.profiles.list_profiles())] in counts["data"]


def test_start_up_and_the_dashboard_say_when_the_key_cannot_read_stored_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOONFEEDER_DATA_DIR", str(tmp_path / "module"))  # app's import-time demo
    from app import create_demo

    db_url = f"sqlite:///{tmp_path / 'app.db'}"
    first = AppContext.create(make_settings(db_url, tmp_path, encryption_key="aa" * 32))
    first.profiles.save_setting("gemini", api_key="AIzaSy-old-0000-1111")
    first.close()

    with caplog.at_level(logging.WARNING, logger="spoonfeeder"):
        _demo, ctx = create_demo(make_settings(db_url, tmp_path, encryption_key="bb" * 32))
    try:
        unreadable = (
            "1 stored API key cannot be decrypted with ENCRYPTION_KEY (the Google Gemini setting)"
        )
        assert any(unreadable in record.getMessage() for record in caplog.records)
        with launched(ctx) as url:
            client = Client(url, verbose=False)
            notices, *_ = client.predict(api_name="/refresh_dashboard")
            assert unreadable in notices
            assert [unreadable in n for n in client.predict(api_name="/dashboard")["notices"]] == [
                True
            ]
            client.predict(
                "gemini", "AIzaSy-new-2222-3333", "", "", False, api_name="/save_provider_setting"
            )
            notices, *_ = client.predict(api_name="/refresh_dashboard")
            assert "cannot be decrypted" not in notices
    finally:
        ctx.close()


def test_client_gets_a_clear_error_and_nothing_is_stored(live: tuple[Client, AppContext]) -> None:
    client, ctx = live
    before = len(ctx.profiles.list_profiles())
    with pytest.raises(Exception, match="Options are not valid JSON"):
        client.predict("", "broken", "openai", "", "", "{not json", False, api_name="/save_profile")
    with pytest.raises(Exception, match="is not valid"):
        client.predict(
            "ollama", "", "localhost 11434", "", False, api_name="/save_provider_setting"
        )
    assert len(ctx.profiles.list_profiles()) == before
    assert ctx.profiles.get_setting("ollama").stored_url is None


def test_client_saves_a_provider_setting_masked(live: tuple[Client, AppContext]) -> None:
    client, ctx = live
    client.predict(
        "gemini",
        "AIzaSy-client-0000-9999",
        "",
        "gemini-2.5-flash",
        False,
        api_name="/save_provider_setting",
    )
    settings = {s["provider"]: s for s in client.predict(api_name="/list_provider_settings")}
    assert settings["gemini"]["key"]["masked"] == "AIz…9999"
    assert settings["gemini"]["default_model"] == "gemini-2.5-flash"
    assert ctx.profiles.credentials("gemini").api_key == "AIzaSy-client-0000-9999"


def test_app_module_exposes_demo_at_import(tmp_path: Path) -> None:
    env = {**os.environ, "SPOONFEEDER_DATA_DIR": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("DATABASE_URL", None)
    code = "import app, gradio; assert isinstance(app.demo, gradio.Blocks); print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "spoonfeeder.db").exists()
    assert (tmp_path / "secret.key").exists()


def test_python_app_py_serves_the_ui_the_rest_api_and_mcp_on_one_port(tmp_path: Path) -> None:
    import httpx

    from tests.fakes.server import free_port

    port = free_port()
    env = {
        **os.environ,
        "SPOONFEEDER_DATA_DIR": str(tmp_path),
        "PORT": str(port),
        "WORKER_THREADS": "0",
        "OLLAMA_URL": closed_port_url(),
        "COMFYUI_URL": closed_port_url(),
    }
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to 60 s to start (only ends a failed wait)
            try:
                health = httpx.get(f"{base}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)
        assert health.json()["data"]["ok"] is True
        assert "Spoon Feeder" in httpx.get(f"{base}/", timeout=10).text  # the UI
        assert httpx.get(f"{base}/config", timeout=10).json()["components"]
        assert httpx.get(f"{base}/api/docs", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(30)


def test_bad_configuration_exits_with_a_message(tmp_path: Path) -> None:
    env = {**os.environ, "SPOONFEEDER_DATA_DIR": str(tmp_path), "PORT": "not-a-port"}
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "PORT" in out.stderr and "Traceback" not in out.stderr


def test_a_profile_created_after_start_can_be_loaded(live: tuple[Client, AppContext]) -> None:
    client, ctx = live
    late = ctx.profiles.create_profile("late box", "ollama", "http://10.0.0.9:11434")
    loaded = client.predict(str(late.id), api_name="/load_profile")
    assert loaded[0] == str(late.id) and loaded[1] == "late box"


# Dropdowns whose choices never change while the app runs (fixed vocabularies).
FIXED_CHOICES = {
    "setting-provider",  # the provider kinds
    "profile-provider",
    "cf-axis1",  # sweepable parameters
    "cf-axis2",
    "tf-status",  # task statuses, types and provider kinds
    "tf-type",
    "tf-provider",
    "hg-status",  # generation statuses
}


def test_no_endpoint_checks_a_value_against_choices_frozen_at_start(make_app: MakeApp) -> None:
    """Gradio refuses an API caller's dropdown value that is not among the choices the
    dropdown had when the app was built: every dropdown filled from the database (profiles,
    conversations, sessions, workflows, models…) must take any value and leave the check
    to the service."""
    import gradio as gr

    from ui.app import build_demo

    ctx = make_app()
    demo = build_demo(ctx)
    ctx.close()
    frozen = set()
    for fn in demo.fns.values():
        if fn.api_visibility == "private":
            continue
        for block in fn.inputs:
            if isinstance(block, gr.Dropdown) and not block.allow_custom_value:
                frozen.add(block.elem_id)
    assert frozen <= FIXED_CHOICES, f"dropdowns that refuse later values: {frozen - FIXED_CHOICES}"


def test_test_connection_tests_what_the_form_holds(live: tuple[Client, AppContext]) -> None:
    client, ctx = live
    key = "sk-typed-key-87654321"
    with serve(FakeOpenAI(key=key).app) as url:
        _table, line = client.predict("openai", url + "/v1", key, api_name="/test_provider_form")
        assert "✅ ok" in line and "not saved yet" in line
        assert ctx.profiles.get_setting("openai").status == "untested"  # nothing recorded
        _table, line = client.predict("", "openai", url + "/v1", key, api_name="/test_profile_form")
        assert "✅ ok" in line and "not saved yet" in line  # a new profile, tested unsaved
    with pytest.raises(Exception, match="is not valid"):
        client.predict("openai", "localhost 8000", "", api_name="/test_provider_form")


def test_idle_api_sessions_are_forgotten_and_open_pages_kept(make_app: MakeApp) -> None:
    """Gradio kept every raw call's session (a copy of every component's config) for good:
    a bad-input sweep grew the app by gigabytes. Idle sessions of no open page now go."""
    import datetime
    import time

    import gradio as gr
    import httpx

    from tests.fakes.server import free_port
    from ui.app import build_demo

    ctx = make_app()
    demo = build_demo(ctx)
    reaper = demo.session_reaper
    started = datetime.datetime.now()
    reaper._now = lambda: started  # the clock stands still until the test moves it
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        base = f"http://127.0.0.1:{port}/gradio_api/call/list_profiles"
        for session in ("api-call", "open-page"):
            posted = httpx.post(base, json={"data": [], "session_hash": session})
            httpx.get(f"{base}/{posted.json()['event_id']}", timeout=30)
        holder = demo.state_holder
        assert {"api-call", "open-page"} <= set(holder.session_data)
        queue = demo._queue
        assert "api-call" in queue.pending_messages_per_session
        reaper.opened(gr.Request(session_hash="open-page"))  # its load event ran
        assert reaper.sweep(demo) == 0  # nothing is idle yet
        later = datetime.datetime.now() + datetime.timedelta(hours=1)
        reaper._now = lambda: later
        assert reaper.sweep(demo) >= 1
        assert "api-call" not in holder.session_data  # forgotten
        # Gradio's own per-session queue and event ids go too (on its event loop).
        deadline = time.monotonic() + 5
        while "api-call" in queue.pending_event_ids_session and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "api-call" not in queue.pending_event_ids_session
        assert "api-call" not in queue.pending_messages_per_session
        assert "open-page" in queue.pending_messages_per_session
        assert "open-page" in holder.session_data  # an open page keeps its session
        reaper.closed(gr.Request(session_hash="open-page"))  # its tab was closed
        reaper.sweep(demo)
        assert "open-page" not in holder.session_data
        # A forgotten session simply starts afresh.
        posted = httpx.post(base, json={"data": [], "session_hash": "api-call"})
        answer = httpx.get(f"{base}/{posted.json()['event_id']}", timeout=30).text
        assert "event: complete" in answer
    finally:
        demo.close()
        ctx.close()
