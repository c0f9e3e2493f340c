"""The whole app launched for tests, as app.py launches it: every tab, media served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from spoonfeeder.context import AppContext
from tests.conftest import make_settings
from tests.fakes.server import free_port


@contextmanager
def sqlite_app(data: Path, **overrides: object) -> Iterator[AppContext]:
    """The app's context on a SQLite database in `data` (the database suites cover
    PostgreSQL), closed — workers stopped — when the block ends. `overrides` are
    settings (comfyui_url=…)."""
    ctx = AppContext.create(make_settings(f"sqlite:///{data / 'app.db'}", data, **overrides))
    try:
        yield ctx
    finally:
        ctx.close()


@contextmanager
def launched(ctx: AppContext) -> Iterator[str]:
    """Serve the app built on `ctx` on a free port until the block ends; yields its URL."""
    from ui.app import build_demo  # imports gradio: only for the tests that launch

    demo = build_demo(ctx)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        allowed_paths=[str(ctx.settings.media_path)],
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextmanager
def api_client(ctx: AppContext) -> Iterator[TestClient]:
    """The REST API built on `ctx` (no UI mounted), called in process over ASGI."""
    from spoonfeeder.api.app import create_api

    with TestClient(create_api(ctx), raise_server_exceptions=False) as client:
        yield client


@contextmanager
def served(ctx: AppContext) -> Iterator[str]:
    """The one ASGI app as `python app.py` serves it — REST under /api, the UI and the
    MCP server mounted — with uvicorn on 127.0.0.1 until the block ends; yields its URL."""
    from tests.fakes.server import serve
    from ui.app import build_app

    app, _demo = build_app(ctx)
    with serve(app, lifespan="on") as url:
        yield url
