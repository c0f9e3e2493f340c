"""The Gradio Blocks app: one tab per module, each built from the shared AppContext."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import gradio as gr
from fastapi import FastAPI
from gradio.routes import App
from starlette.routing import Mount

from spoonfeeder.api.app import create_api
from spoonfeeder.api.auth import HeaderCredentials
from spoonfeeder.context import AppContext
from ui import chat, comfyui, dashboard, history, mcp, models, settings, tasks
from ui.inputs import CheckedBlocks
from ui.sessions import SessionReaper

TITLE = "Spoon Feeder"
THEME = gr.themes.Soft()


def build_demo(ctx: AppContext) -> gr.Blocks:
    # Media files are served from the media folder itself, never copied into Gradio's
    # cache: a deleted output is gone from every route, and a 4 GiB video is not stored
    # twice. (Still behind the login: Gradio's file route checks it.)
    gr.set_static_paths([ctx.settings.media_path])
    with CheckedBlocks(title=TITLE) as demo:
        gr.Markdown(f"# 🥄 {TITLE}")
        # The MCP server's tools, a chosen few: first, so they get their plain names.
        mcp.register_tools(ctx)
        # Kept in the browser, so a reload reopens what was open. At the top level: in a
        # tab that was never opened, a BrowserState is not restored.
        open_conversation = gr.BrowserState("", storage_key="spoonfeeder-open-conversation")
        with gr.Tabs(selected="dashboard"):
            tabs = []
            with gr.Tab("Dashboard", id="dashboard") as tab:
                tabs.append((tab, dashboard.build(ctx)))
            with gr.Tab("Chat", id="chat") as tab:
                tabs.append((tab, chat.build(ctx, open_conversation)))
            with gr.Tab("Models", id="models") as tab:
                tabs.append((tab, models.build(ctx)))
            with gr.Tab("ComfyUI", id="comfyui") as tab:
                tabs.append((tab, comfyui.build(ctx)))
            with gr.Tab("Tasks", id="tasks") as tab:
                tabs.append((tab, tasks.build(ctx)))
            with gr.Tab("History", id="history") as tab:
                tabs.append((tab, history.build(ctx)))
            with gr.Tab("Settings", id="settings") as tab:
                tabs.append((tab, settings.build(ctx)))
        # Each tab re-reads its data on page load and whenever it is opened.
        for tab, (refresh, outputs) in tabs:
            demo.load(refresh, None, outputs, api_visibility="private")
            tab.select(refresh, None, outputs, api_visibility="private")
        # An open page keeps its session; every other one is forgotten once idle.
        reaper = SessionReaper()
        demo.load(reaper.opened, None, None, api_visibility="private")
        demo.unload(reaper.closed)
    mcp.only_these_are_tools(demo)
    demo.queue(default_concurrency_limit=8, max_size=256)
    demo.session_reaper = reaper  # type: ignore[attr-defined]  # for tests and benches
    reaper.watch(demo, ctx.scheduler)
    return demo


def build_app(ctx: AppContext, demo: gr.Blocks | None = None) -> tuple[FastAPI, gr.Blocks]:
    """The one ASGI app: the REST API under /api, the UI (and gradio_client's API, and
    the MCP server at /gradio_api/mcp/) mounted at the root, media served from the media
    folder only. Serve it with uvicorn."""
    demo = demo or build_demo(ctx)
    app = create_api(ctx)
    gr.mount_gradio_app(
        app,
        demo,
        path="",
        # The users' login form, when users exist (the same decision as /api's).
        auth=ctx.users.sign_in if ctx.users.sign_in_required else None,
        allowed_paths=[str(ctx.settings.media_path.resolve())],  # media, nothing else on disk
        theme=THEME,
        mcp_server=True,  # at /gradio_api/mcp/: the tools of ui/mcp.py
    )
    reaper: SessionReaper = demo.session_reaper  # type: ignore[attr-defined]
    served = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[object]:
        reaper.loop = asyncio.get_running_loop()  # where Gradio's queue forgets sessions
        async with served(app) as state:
            yield state

    app.router.lifespan_context = lifespan
    gradio = next(r.app for r in app.routes if isinstance(r, Mount) and r.app.__class__ is App)
    app.add_middleware(HeaderCredentials, gate=app.state.gate, gradio=gradio)
    return app, demo
