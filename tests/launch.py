"""The whole app launched for tests, as app.py launches it: every tab, media served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from spoonfeeder.context import AppContext
from tests.fakes.server import free_port


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
