"""Chat through the launched app: gradio_client streams replies and drives conversations."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from spoonfeeder.context import AppContext
from spoonfeeder.providers.base import EMPTY_REPLY
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import launched, sqlite_app

KEY = "sk-app-test"
TOKENS = [f"word{i} " for i in range(30)]


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Client, AppContext, FakeOpenAI]]:
    fake = FakeOpenAI(key=KEY, tokens=TOKENS, token_delay=0.005, models=["gpt-4o-mini", "gpt-4o"])
    with serve(fake.app) as url, sqlite_app(tmp_path_factory.mktemp("chat-app")) as ctx:
        ctx.profiles.save_setting(
            "openai", api_key=KEY, endpoint_url=url + "/v1", default_model="gpt-4o"
        )
        with launched(ctx) as app_url:
            yield Client(app_url, verbose=False), ctx, fake


def test_chat_endpoint_streams_deltas_and_saves(app: tuple[Client, AppContext, FakeOpenAI]) -> None:
    client, ctx, _ = app
    job = client.submit("openai", "gpt-4o-mini", "Count for me", api_name="/chat")
    deltas = list(job)
    assert job.status().success
    assert "".join(deltas) == "".join(TOKENS)
    assert len(deltas) > 1  # it streamed, not one final blob
    conv = next(c for c in ctx.chat.list_conversations() if c.title == "Count for me")
    saved = ctx.chat.get_conversation(conv.id).messages
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].content == "".join(TOKENS)


def test_chat_endpoint_takes_a_message_history(app: tuple[Client, AppContext, FakeOpenAI]) -> None:
    client, _, fake = app
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    result = client.predict("openai", "gpt-4o-mini", "", "", history, "Be kind", api_name="/chat")
    assert result  # the last delta
    sent = fake.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[-1]["content"] == "What is my name?"


def test_chat_endpoint_reports_errors_clearly(app: tuple[Client, AppContext, FakeOpenAI]) -> None:
    client, _, _ = app
    with pytest.raises(Exception, match="Choose a model"):
        client.predict("openai", "", "hello", api_name="/chat")
    with pytest.raises(Exception, match="Choose a chat provider"):
        client.predict("nope", "m", "hello", api_name="/chat")


def test_ui_send_regenerate_and_export(app: tuple[Client, AppContext, FakeOpenAI]) -> None:
    client, ctx, fake = app
    job = client.submit(
        "",
        {"text": "UI hello", "files": []},
        "openai",
        "gpt-4o-mini",
        "",
        0.7,
        0,
        api_name="/send_message",
    )
    outputs = list(job)
    assert job.status().success
    conv_id, history = outputs[-1][0], outputs[-1][1]
    assert history[0]["content"][0]["text"] == "UI hello"
    assert "".join(TOKENS).strip() in history[-1]["content"][0]["text"]
    assert len(outputs) > 3  # token by token

    fake.tokens = ["regenerated"]
    try:
        client.predict(conv_id, "openai", "gpt-4o-mini", "", 0.7, 0, api_name="/regenerate")
    finally:
        fake.tokens = TOKENS
    messages = ctx.chat.get_conversation(conv_id).messages
    assert [m.content for m in messages] == ["UI hello", "regenerated"]

    path = client.predict(conv_id, api_name="/export_json")
    data = json.loads(Path(path).read_text())
    assert [m["content"] for m in data["messages"]] == ["UI hello", "regenerated"]
    markdown = Path(client.predict(conv_id, api_name="/export_markdown")).read_text()
    assert "UI hello" in markdown and "regenerated" in markdown


def test_ui_lists_models_with_the_default_selected(
    app: tuple[Client, AppContext, FakeOpenAI],
) -> None:
    client, _, _ = app
    update = client.predict("openai", api_name="/list_chat_models")
    assert update["value"] == "gpt-4o"
    assert [c[0] for c in update["choices"]] == ["gpt-4o-mini", "gpt-4o"]


def test_ui_bad_message_keeps_nothing(app: tuple[Client, AppContext, FakeOpenAI]) -> None:
    client, ctx, _ = app
    before = len(ctx.chat.list_conversations())
    with pytest.raises(Exception, match="Type a message"):
        client.predict(
            "",
            {"text": "  ", "files": []},
            "openai",
            "gpt-4o-mini",
            "",
            0.7,
            0,
            api_name="/send_message",
        )
    assert len(ctx.chat.list_conversations()) == before


def test_a_broken_stream_ends_in_a_clear_message_in_the_chat(
    app: tuple[Client, AppContext, FakeOpenAI],
) -> None:
    client, ctx, fake = app
    fake.fault = "break_midway"
    try:
        job = client.submit(
            "",
            {"text": "Break please", "files": []},
            "openai",
            "gpt-4o-mini",
            "",
            0.7,
            0,
            api_name="/send_message",
        )
        outputs = list(job)
        with pytest.raises(Exception, match="reply was cut off: the connection broke"):
            client.predict("openai", "gpt-4o-mini", "Break via the API", api_name="/chat")
    finally:
        fake.fault = None
    assert job.status().success  # the UI call ends normally, with the reason in the chat
    conv_id, history = outputs[-1][0], outputs[-1][1]
    shown = history[-1]["content"][0]["text"]
    half = "".join(TOKENS[: len(TOKENS) // 2])
    assert shown.startswith(half.strip())  # the text that arrived is kept
    assert "⚠️" in shown and "reply was cut off: the connection broke" in shown
    assert "Traceback" not in shown
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.status, saved.content) == ("error", half)


def test_the_readme_pattern_surfaces_a_failed_reply_after_its_deltas(
    app: tuple[Client, AppContext, FakeOpenAI],
) -> None:
    """The README's /chat example: iterating a job ends silently on a failure, so it ends
    with job.result(), which raises the reason."""
    client, _, fake = app
    fake.fault = "no_finish"  # llama.cpp's first stream when a second request arrives
    try:
        job = client.submit("openai", "gpt-4o-mini", "Cut me off", api_name="/chat")
        deltas = [delta for delta in job]
        with pytest.raises(AppError, match="The server ended the stream early without saying why"):
            job.result()
    finally:
        fake.fault = None
    assert "".join(deltas) == "".join(TOKENS[: len(TOKENS) // 2])


def test_an_empty_reply_is_shown_in_the_chat_with_its_reason(
    app: tuple[Client, AppContext, FakeOpenAI],
) -> None:
    client, ctx, fake = app
    fake.fault = "empty_stream"
    try:
        job = client.submit(
            "",
            {"text": "Too long", "files": []},
            "openai",
            "gpt-4o-mini",
            "",
            0.7,
            0,
            api_name="/send_message",
        )
        outputs = list(job)
    finally:
        fake.fault = None
    conv_id, history = outputs[-1][0], outputs[-1][1]
    shown = history[-1]["content"][0]["text"]
    assert shown == f"⚠️ **{EMPTY_REPLY}**"
    assert ctx.chat.get_conversation(conv_id).messages[-1].status == "error"


def test_values_created_after_the_app_started_are_accepted(
    app: tuple[Client, AppContext, FakeOpenAI],
) -> None:
    """No endpoint validates against the choices its dropdown had at start."""
    client, ctx, _ = app
    root = ctx.profiles.get_setting("openai").endpoint_url
    profile = ctx.profiles.create_profile(f"late vLLM {uuid.uuid4().hex[:6]}", "openai", root, KEY)
    choice = f"profile:{profile.id}"

    update = client.predict(choice, api_name="/list_chat_models")
    assert [c[0] for c in update["choices"]] == ["gpt-4o-mini", "gpt-4o"]
    outputs = list(
        client.submit(
            "",
            {"text": "From a late profile", "files": []},
            choice,
            "gpt-4o-mini",
            "",
            0.7,
            0,
            api_name="/send_message",
        )
    )
    conv_id = outputs[-1][0]
    client.predict(conv_id, choice, "gpt-4o-mini", "", 0.7, 0, api_name="/regenerate")
    saved = ctx.chat.get_conversation(conv_id).messages
    assert [m.profile_id for m in saved if m.role == "assistant"] == [profile.id]

    late = ctx.chat.create_conversation("Made after the start")
    opened = client.predict(str(late.id), api_name="/open_conversation")
    assert opened[0] == str(late.id) and "Made after the start" in opened
    with pytest.raises(AppError, match="No conversation"):
        client.predict(str(uuid.uuid4()), api_name="/open_conversation")
