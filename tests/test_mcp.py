"""The MCP server at /gradio_api/mcp/, called with the official `mcp` client over
streamable HTTP on the app as `python app.py` serves it: the deliberate set of tools
(and none of the page's own events), a chat and a generation through tools/call, an
error as a sentence, and credentials when authentication is on."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from spoonfeeder.context import AppContext
from tests.conftest import MakeApp
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import served

TOOLS = {
    "chat",
    "list_chat_targets",
    "list_models",
    "comfyui_generate",
    "get_generation",
    "get_generation_snapshot",
    "rerun_generation",
    "search_history",
    "create_task",
    "get_task",
}
CKPT = "tiny-random-sd15.safetensors"
KEY = "sk-mcp-test-key-1234"

Session = Callable[[ClientSession], Awaitable[Any]]


def with_session(url: str, use: Session, headers: dict[str, str] | None = None) -> Any:
    async def run() -> Any:
        async with (
            httpx.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{url}/gradio_api/mcp/", http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await use(session)

    return asyncio.run(run())


def text_of(result: Any) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def test_the_tools_are_the_chosen_set_with_schemas_and_descriptions(ctx: AppContext) -> None:
    async def listing(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    with served(ctx) as url:
        tools = with_session(url, listing)
    assert {tool.name for tool in tools} == TOOLS  # no UI event (save_profile, …) is a tool
    by_name = {tool.name: tool for tool in tools}
    generate = by_name["comfyui_generate"].inputSchema
    assert generate["properties"]["seed"]["type"] == "integer"
    assert "prompt" in generate["required"]
    assert "random" in generate["properties"]["seed"]["description"]  # the docstring's Args
    assert all(len(tool.description or "") > 30 for tool in tools)


def test_chat_through_mcp_is_saved_as_a_conversation(make_app: MakeApp) -> None:
    fake = FakeOpenAI(key=KEY, tokens=["Hello", " agent"])
    ctx = make_app()
    with serve(fake.app) as fake_url, served(ctx) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=fake_url + "/v1")

        async def talk(session: ClientSession) -> Any:
            arguments = {"message": "hi", "target": "openai", "model": "gpt-4o-mini"}
            return await session.call_tool("chat", arguments)

        result = with_session(url, talk)
    assert not result.isError, text_of(result)
    answer = json.loads(text_of(result))
    assert answer["reply"] == "Hello agent"
    saved = ctx.chat.get_conversation(answer["conversation_id"])
    assert [m.content for m in saved.messages] == ["hi", "Hello agent"]
    assert KEY not in text_of(result)


def test_generate_through_mcp_waits_for_the_outputs(make_app: MakeApp, tmp_path: Path) -> None:
    fake = FakeComfyUI()
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    with serve(fake.app) as comfy_url:
        ctx = make_app(data=tmp_path, comfyui_url=comfy_url)
        ctx.comfyui.runner.timings.receive_timeout = 0.05
        ctx.comfyui.runner.timings.poll_interval = 0.05
        ctx.start_workers(1, poll_interval=0.05)
        with served(ctx) as url:

            async def generate(session: ClientSession) -> Any:
                arguments = {"prompt": "a red fox", "checkpoint": CKPT, "steps": 3}
                return await session.call_tool("comfyui_generate", arguments)

            result = with_session(url, generate)
    assert not result.isError, text_of(result)
    [generation] = json.loads(text_of(result))
    assert generation["status"] == "completed"
    assert generation["seed"] >= 0  # -1 became a concrete, stored seed
    output = generation["outputs"][0]
    assert output["url"] == "/api/comfyui/image/" + output["path"]
    assert ctx.comfyui.media.file(output["path"]).read_bytes().startswith(b"\x89PNG")


def test_a_refused_call_is_an_error_with_a_sentence(make_app: MakeApp) -> None:
    with served(make_app()) as url:

        async def ask(session: ClientSession) -> Any:
            return await session.call_tool("get_task", {"task_id": "no-such-task"})

        result = with_session(url, ask)
    assert result.isError
    assert "No task with id" in text_of(result) and "Traceback" not in text_of(result)


def test_with_auth_on_mcp_needs_credentials(make_app: MakeApp) -> None:
    ctx = make_app(spoonfeeder_auth="alice:wonder-land")
    good = {"Authorization": "Basic " + base64.b64encode(b"alice:wonder-land").decode()}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {},
    }
    with served(ctx) as url:
        for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"alice:x").decode()}):
            refused = httpx.post(f"{url}/gradio_api/mcp/", json=initialize, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["code"] == "UNAUTHORIZED"

        async def listing(session: ClientSession) -> Any:
            return (await session.list_tools()).tools

        assert {tool.name for tool in with_session(url, listing, good)} == TOOLS


@pytest.fixture(autouse=True)
def _quiet_mcp_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
