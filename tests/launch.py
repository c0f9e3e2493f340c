"""The whole app launched for tests, as app.py launches it: every tab, media served."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from spoonfeeder.context import AppContext
from tests.conftest import make_settings


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
    """Serve the app built on `ctx` as `python app.py` does (uvicorn, the UI mounted
    beside /api) until the block ends; yields its URL, ending in "/"."""
    with served(ctx) as url:
        yield url + "/"


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


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """GET with this exact request target: http.client sends it as given (no
    normalization of `..`, no re-encoding), as a hostile client would."""
    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        connection.request("GET", target)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event, decoded data) of each event of a text/event-stream body."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            name = next((li[len("event: ") :] for li in lines if li.startswith("event: ")), "")
            data = "\n".join(li[len("data: ") :] for li in lines if li.startswith("data: "))
            events.append((name, json.loads(data)))
    return events
