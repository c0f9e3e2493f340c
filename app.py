"""Spoon Feeder — entry point.

`python app.py [--host H] [--port P] [--share] [--auth user:pass] [--database-url URL]`
serves one ASGI app with uvicorn: the REST API under /api and the UI at /. With
`--share`, Gradio serves the UI alone through its share link (the REST API is not
exposed there). Imported as a module (Hugging Face Spaces, `gradio app.py`,
`uvicorn app:app`), it exposes `demo` and `app`, configured from the environment and `.env`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a self-hosted app phones no one
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")  # Gradio's per-event log: 10,000

import gradio as gr
import uvicorn
from fastapi import FastAPI

from spoonfeeder.config import Settings, load_settings, parse_auth
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ConfigError
from spoonfeeder.logs import configure_logging
from spoonfeeder.memory import tune_allocator
from ui.app import THEME, build_app, build_demo

log = logging.getLogger("spoonfeeder")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def create_demo(settings: Settings | None = None) -> tuple[gr.Blocks, AppContext]:
    tune_allocator()  # before the app's threads start: memory freed after a burst goes back
    ctx = AppContext.create(settings or load_settings())
    return build_demo(ctx), ctx


def create_app(settings: Settings | None = None) -> tuple[FastAPI, gr.Blocks, AppContext]:
    """The ASGI app (REST under /api, the UI mounted at /), its Blocks and context."""
    demo, ctx = create_demo(settings)
    app, _ = build_app(ctx, demo)
    return app, demo, ctx


def start(ctx: AppContext) -> None:
    """What every way of serving does first: workers, and the open-network warning."""
    settings = ctx.settings
    if settings.worker_threads > 0:  # WORKER_THREADS=0: tasks run in `python -m spoonfeeder worker`
        ctx.start_workers()
    if settings.host not in LOOPBACK and not ctx.users.sign_in_required:
        log.warning(
            "Listening on %s without authentication: anyone on the network can use this app, "
            "its REST API and its API keys. Add a user (python -m spoonfeeder users add NAME "
            "--role admin) or set SPOONFEEDER_AUTH=user:password.",
            settings.host,
        )


def serve(app: FastAPI, ctx: AppContext) -> None:
    """Serve the whole app with uvicorn until interrupted."""
    start(ctx)
    host, port = ctx.settings.host, ctx.settings.port
    log.info("Spoon Feeder on http://%s:%s/ (REST API docs: /api/docs)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def share_ui(demo: gr.Blocks, ctx: AppContext, **kwargs: object) -> object:
    """`--share`: Gradio serves the UI, with its gradio_client API, on a public share
    link. The REST API under /api is not served in this mode, locally or shared."""
    start(ctx)
    log.warning("--share serves the web UI only: the REST API (/api) is off in this mode.")
    return demo.launch(
        server_name=ctx.settings.host,
        server_port=ctx.settings.port,
        share=True,
        auth=ctx.users.sign_in if ctx.users.sign_in_required else None,
        allowed_paths=[str(ctx.settings.media_path.resolve())],  # serve media, nothing else on disk
        theme=THEME,
        **kwargs,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Spoon Feeder: self-hosted AI content orchestration"
    )
    parser.add_argument("--host", help="interface to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (PORT, default 7860)")
    parser.add_argument("--share", action="store_true", help="create a public Gradio share link")
    parser.add_argument("--auth", help="user:password[,user2:password2] required to log in")
    parser.add_argument("--database-url", help="SQLAlchemy URL (DATABASE_URL); default SQLite")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    args = parse_args(argv)
    try:
        if args.auth:
            parse_auth(args.auth)  # fail early on a malformed value
        settings = load_settings(
            host=args.host,
            port=args.port,
            database_url=args.database_url,
            spoonfeeder_auth=args.auth,
        )
        settings.auth_pairs  # noqa: B018  (validates SPOONFEEDER_AUTH)
        if args.share:
            demo, ctx = create_demo(settings)
        else:
            app, demo, ctx = create_app(settings)
    except ConfigError as exc:
        sys.exit(f"spoonfeeder: {exc}")
    try:
        if args.share:
            share_ui(demo, ctx)
        else:
            serve(app, ctx)
    finally:
        ctx.close()  # running tasks finish or go back to the queue


if __name__ == "__main__":
    main()
else:
    app, demo, context = create_app()
