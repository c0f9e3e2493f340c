"""The chat service: streaming replies through real SDKs against fake servers, saved per message."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.exc import OperationalError

from spoonfeeder.chat import COMPLETE, ERROR, STOPPED, ChatTarget, describe_message
from spoonfeeder.context import AppContext
from spoonfeeder.db.models import Conversation, Message
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.providers.base import CUT_REPLY, EMPTY_REPLY, ChatOptions
from tests.conftest import MakeApp
from tests.fakes.anthropic_server import DEFAULT_MODELS as CLAUDE_MODELS
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import closed_port_url, serve

KEY = "sk-test"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def openai(ctx: AppContext) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(key=KEY, tokens=["Hel", "lo", " there", "!"], usage=(7, 4))
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        yield fake


GPT = ChatTarget("openai", "gpt-4o-mini")


def _chat(ctx: AppContext, text: str = "Say hello", target: ChatTarget = GPT, **kw):
    conv = ctx.chat.create_conversation()
    reply = ctx.chat.send(conv.id, text, target, **kw)
    return conv.id, reply


def test_reply_streams_and_is_saved_with_its_metadata(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx, options=ChatOptions(system="Be brief", temperature=0.3))
    assert list(reply) == ["Hel", "lo", " there", "!"]
    reply.wait(5)
    assert (reply.status, reply.text) == (COMPLETE, "Hello there!")

    conv = ctx.chat.get_conversation(conv_id)
    assert conv.title == "Say hello"
    user, assistant = conv.messages
    assert (user.role, user.content) == ("user", "Say hello")
    assert assistant.content == "Hello there!"
    assert (assistant.provider, assistant.model, assistant.status) == (
        "openai",
        "gpt-4o-mini",
        COMPLETE,
    )
    assert (assistant.tokens_in, assistant.tokens_out) == (7, 4)
    assert assistant.finish_reason == "stop"
    assert assistant.ttft_ms is not None and assistant.latency_ms >= assistant.ttft_ms
    sent = openai.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief"}
    assert sent["temperature"] == 0.3


def test_conversation_survives_a_restart(db_url: str, tmp_path: Path, make_app: MakeApp) -> None:
    fake = FakeOpenAI(key=KEY, tokens=["persisted"])
    first = make_app(db_url, tmp_path)
    with serve(fake.app) as url:
        first.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv_id, reply = _chat(first, "remember me")
        reply.wait(5)
    first.close()
    again = make_app(db_url, tmp_path)
    try:
        conv = again.chat.get_conversation(conv_id)
        assert [m.content for m in conv.messages] == ["remember me", "persisted"]
        assert [c.id for c in again.chat.list_conversations()] == [conv_id]
    finally:
        again.close()


def test_stop_keeps_the_partial_reply_and_closes_the_upstream(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=[f"t{i} " for i in range(400)], token_delay=0.01)
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv_id, reply = _chat(ctx)
        received = []
        for delta in reply:
            received.append(delta)
            if len(received) == 3:
                assert ctx.chat.stop(conv_id)
        assert fake.disconnected.wait(5), "the upstream request was not closed"
    assert reply.status == STOPPED
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert saved.status == STOPPED
    assert saved.content.startswith("t0 t1 t2 ")
    assert len(saved.content.split()) < 400


def test_regenerate_replaces_the_last_reply(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx)
    reply.wait(5)
    openai.tokens = ["Second", " answer"]
    ctx.chat.regenerate(conv_id, GPT).wait(5)
    contents = [m.content for m in ctx.chat.get_conversation(conv_id).messages]
    assert contents == ["Say hello", "Second answer"]


def test_edit_and_resend_truncates_and_answers_again(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx, "first question")
    reply.wait(5)
    ctx.chat.send(conv_id, "second question", GPT).wait(5)
    first_user = ctx.chat.get_conversation(conv_id).messages[0]
    openai.tokens = ["Edited", " answer"]
    ctx.chat.edit_and_resend(conv_id, first_user.id, "a better question", GPT).wait(5)
    conv = ctx.chat.get_conversation(conv_id)
    assert [m.content for m in conv.messages] == ["a better question", "Edited answer"]
    sent = [m["content"] for m in openai.requests[-1].json["messages"]]
    assert sent == ["a better question"]


def test_switching_provider_keeps_the_history(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx, "hi gpt")
    reply.wait(5)
    claude = FakeAnthropic(key=KEY, tokens=["Hi", " from", " Claude"])
    with serve(claude.app) as url:
        ctx.profiles.create_profile("claude box", "anthropic", url, KEY)
        profile = ctx.profiles.list_profiles()[0]
        target = ChatTarget("anthropic", CLAUDE_MODELS[0], profile.id)
        ctx.chat.send(conv_id, "and you?", target).wait(5)
    sent = claude.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "Hello there!" in str(sent[1]["content"])
    last = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (last.provider, last.profile_id, last.content) == (
        "anthropic",
        profile.id,
        "Hi from Claude",
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("auth", "rejected the API key"),
        ("unknown_model", "Model 'gpt-4o-mini' is not available"),
        ("rate_limit", "rate limit reached (HTTP 429); retry after 20 s"),
        ("server_error", "server error (HTTP 500)"),
    ],
)
def test_provider_faults_end_in_a_clear_saved_message(
    ctx: AppContext, fault: str, expected: str
) -> None:
    fake = FakeOpenAI(key=KEY, fault=fault)
    with serve(fake.app) as url:
        ctx.profiles.create_profile("no retries", "openai", url + "/v1", KEY, {"max_retries": 0})
        profile = ctx.profiles.list_profiles()[0]
        conv_id, reply = _chat(ctx, "hello?", ChatTarget("openai", "gpt-4o-mini", profile.id))
        assert list(reply) == []
    assert reply.status == ERROR and expected in (reply.error or "")
    user, assistant = ctx.chat.get_conversation(conv_id).messages
    assert user.content == "hello?"  # the question is never lost
    assert assistant.status == ERROR and expected in (assistant.error or "")


def test_a_stream_that_breaks_midway_keeps_the_text(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=["one ", "two ", "three ", "four "], fault="break_midway")
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv_id, reply = _chat(ctx)
        assert "".join(reply) == "one two "
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.status, saved.content) == (ERROR, "one two ")
    assert "reply was cut off: the connection broke" in (saved.error or "")


def test_an_ollama_stream_that_breaks_midway_keeps_the_text(ctx: AppContext) -> None:
    fake = FakeOllama(tokens=["uno ", "dos ", "tres ", "cuatro "], fault="break_midway")
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        conv_id, reply = _chat(ctx, target=ChatTarget("ollama", "llama3.2"))
        assert "".join(reply) == "uno dos "
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.status, saved.content, saved.provider) == (ERROR, "uno dos ", "ollama")
    assert "dropped and the reply was cut off" in (saved.error or "")


def test_unreachable_provider(ctx: AppContext) -> None:
    ctx.profiles.save_setting("ollama", endpoint_url=closed_port_url())
    conv_id, reply = _chat(ctx, "anyone?", ChatTarget("ollama", "llama3.2"))
    assert list(reply) == []  # ends promptly (short connect timeout), no hang
    assert reply.status == ERROR
    user, assistant = ctx.chat.get_conversation(conv_id).messages
    assert user.content == "anyone?"
    assert (assistant.status, assistant.content) == (ERROR, "")
    assert "Ollama is not reachable at" in (assistant.error or "")


def test_bad_input_is_refused_and_stores_nothing(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv = ctx.chat.create_conversation()
    with pytest.raises(ValidationError, match="Type a message"):
        ctx.chat.send(conv.id, "   ", GPT)
    with pytest.raises(ValidationError, match="Choose a model"):
        ctx.chat.send(conv.id, "hi", ChatTarget("openai", " "))
    with pytest.raises(ValidationError, match="Unknown chat provider"):
        ctx.chat.send(conv.id, "hi", ChatTarget("comfyui", "x"))
    with pytest.raises(NotFoundError):
        ctx.chat.send("00000000-0000-0000-0000-000000000000", "hi", GPT)
    not_image = ctx.settings.data_dir / "notes.txt"
    not_image.write_text("hello")
    with pytest.raises(ValidationError, match="not a supported image"):
        ctx.chat.send(conv.id, "look", GPT, images=[not_image])
    assert ctx.chat.get_conversation(conv.id).messages == []


def test_a_refused_first_message_leaves_no_conversation_behind(
    ctx: AppContext, openai: FakeOpenAI
) -> None:
    """A new conversation is made only once the message, its images and the target pass."""
    not_image = ctx.settings.data_dir / "notes.txt"
    not_image.write_text("hello")
    missing = ctx.settings.data_dir / "gone.png"
    with pytest.raises(ValidationError, match="not a supported image"):
        ctx.chat.send(None, "look", GPT, images=[not_image])
    with pytest.raises(ValidationError, match="could not be read"):
        ctx.chat.send("", "look", GPT, images=[missing])
    with pytest.raises(ValidationError, match="Choose a model"):
        ctx.chat.send(None, "hi", ChatTarget("openai", " "))
    assert ctx.chat.list_conversations() == []
    assert not any((ctx.settings.media_path).rglob("*.txt"))  # nothing was stored


def test_one_reply_at_a_time_per_conversation(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=["slow "] * 50, token_delay=0.02)
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv_id, reply = _chat(ctx)
        with pytest.raises(ValidationError, match="still streaming"):
            ctx.chat.send(conv_id, "again", GPT)
        reply.stop()
        assert len(fake.requests) == 1  # the refused one never reached the provider
    assert len(ctx.chat.get_conversation(conv_id).messages) == 2


def test_images_are_stored_and_sent(ctx: AppContext, openai: FakeOpenAI, tmp_path: Path) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    conv_id, reply = _chat(ctx, "what is this?", images=[image])
    reply.wait(5)
    user = ctx.chat.get_conversation(conv_id).messages[0]
    stored = Path(user.attachments[0]["path"])
    assert stored.read_bytes() == PNG
    assert ctx.settings.media_path.resolve() in stored.resolve().parents
    parts = openai.requests[-1].json["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    assert urls == ["data:image/png;base64," + base64.b64encode(PNG).decode()]


def test_search_rename_delete_and_export(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx, "Plan a trip to Lisbon")
    reply.wait(5)
    other, reply2 = _chat(ctx, "Unrelated")
    reply2.wait(5)
    assert [c.id for c in ctx.chat.list_conversations("lisbon")] == [conv_id]  # title
    assert {c.id for c in ctx.chat.list_conversations("there!")} == {conv_id, other}  # content
    assert ctx.chat.list_conversations("100%") == []  # LIKE wildcards are literal

    ctx.chat.rename(conv_id, "  Lisbon   weekend ")
    assert ctx.chat.get_conversation(conv_id).title == "Lisbon weekend"
    with pytest.raises(ValidationError):
        ctx.chat.rename(conv_id, "   ")

    markdown = ctx.chat.export_markdown(conv_id)
    assert markdown.startswith("# Lisbon weekend")
    assert "Plan a trip to Lisbon" in markdown and "Hello there!" in markdown
    assert "gpt-4o-mini" in markdown and "7→4 tokens" in markdown
    data = ctx.chat.export_json(conv_id)
    assert [m["content"] for m in data["messages"]] == ["Plan a trip to Lisbon", "Hello there!"]
    assert data["messages"][1]["tokens_out"] == 4

    assert ctx.chat.delete(conv_id) == "Lisbon weekend"
    assert [c.id for c in ctx.chat.list_conversations()] == [other]
    with pytest.raises(NotFoundError):
        ctx.chat.get_conversation(conv_id)


def test_interrupted_replies_are_marked_at_start(
    db_url: str, tmp_path: Path, make_app: MakeApp
) -> None:
    from spoonfeeder.db.engine import transaction
    from spoonfeeder.db.models import Message

    ctx = make_app(db_url, tmp_path)
    conv = ctx.chat.create_conversation("crashed")
    with transaction(ctx.sessions) as session:
        session.add(
            Message(conversation_id=conv.id, role="assistant", content="half a", status="streaming")
        )
    ctx.close()
    again = make_app(db_url, tmp_path)
    try:
        message = again.chat.get_conversation(conv.id).messages[0]
        assert (message.status, message.content) == (STOPPED, "half a")
        assert "stopped while" in (message.error or "")
    finally:
        again.close()


def test_warm_up_imports_every_provider_sdk_in_the_background() -> None:
    # A fresh interpreter: here the SDKs are already imported by other tests.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from spoonfeeder.providers.registry import CHAT_PROVIDERS, warm_up\n"
        "mods = [t.split(':')[0] for t in CHAT_PROVIDERS.values()]\n"
        "assert not any(m in sys.modules for m in mods), 'imported too early'\n"
        "warm_up().join(60)\n"
        "assert all(m in sys.modules for m in mods), mods\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=90)


# ----- the credentials cache and the overlapped commit ---------------------------------


def _statements(ctx: AppContext) -> list[str]:
    """Every SQL statement the app runs from now on (SQLAlchemy's public event API)."""
    seen: list[str] = []
    event.listen(ctx.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_key_changed_in_settings_is_used_by_the_very_next_message(
    ctx: AppContext, openai: FakeOpenAI
) -> None:
    conv_id, reply = _chat(ctx)
    reply.wait(5)
    statements = _statements(ctx)
    ctx.chat.send(conv_id, "cached?", GPT).wait(5)
    # The second message took its key from memory: no settings read, no decryption.
    assert not [s for s in statements if "provider_settings" in s]

    openai.key = "sk-rotated"
    ctx.profiles.save_setting("openai", api_key="sk-rotated")
    reply = ctx.chat.send(conv_id, "and now?", GPT).wait(5)
    assert reply.status == COMPLETE, reply.error
    assert openai.requests[-1].headers["authorization"] == "Bearer sk-rotated"


def test_profile_edits_and_deletion_reach_the_very_next_message(ctx: AppContext) -> None:
    first, second = FakeOpenAI(key=KEY, tokens=["one"]), FakeOpenAI(key="sk-2", tokens=["two"])
    with serve(first.app) as url1, serve(second.app) as url2:
        profile = ctx.profiles.create_profile("vllm", "openai", url1 + "/v1", KEY)
        target = ChatTarget("openai", "gpt-4o-mini", profile.id)
        conv_id, reply = _chat(ctx, target=target)
        assert reply.wait(5).text == "one"

        ctx.profiles.update_profile(profile.id, "vllm", "openai", url2 + "/v1", "sk-2")
        assert ctx.chat.send(conv_id, "moved?", target).wait(5).text == "two"
        assert second.requests[-1].headers["authorization"] == "Bearer sk-2"

        ctx.profiles.delete_profile(profile.id)
        with pytest.raises(NotFoundError, match="profile"):
            ctx.chat.send(conv_id, "still there?", target)
    assert len(ctx.chat.get_conversation(conv_id).messages) == 4  # nothing of the refused one


def test_the_request_goes_out_before_the_commit_and_the_reply_waits_for_it(
    ctx: AppContext, openai: FakeOpenAI
) -> None:
    conv = ctx.chat.create_conversation()
    seen_before_commit: list[int] = []

    def before_commit(session: object) -> None:
        active = ctx.chat.active_reply(conv.id)
        if active is None or active.message_id in replies_done:
            return
        # The upstream request is already out, and may even have finished streaming…
        deadline = time.monotonic() + 5
        while active.latency_ms is None and time.monotonic() < deadline:
            time.sleep(0.005)
        seen_before_commit.append(len(openai.requests))

    replies_done: set[object] = set()
    event.listen(ctx.sessions, "before_commit", before_commit)
    reply = ctx.chat.send(conv.id, "overlap", GPT)
    replies_done.add(reply.message_id)
    assert seen_before_commit == [1]
    # …yet it is saved in full: the reply thread waited for the row to be committed.
    assert reply.wait(5).status == COMPLETE
    saved = ctx.chat.get_conversation(conv.id).messages
    assert [(m.role, m.content, m.status) for m in saved] == [
        ("user", "overlap", COMPLETE),
        ("assistant", "Hello there!", COMPLETE),
    ]


def test_a_failed_commit_closes_the_stream_and_raises(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=[f"t{i} " for i in range(200)], token_delay=0.01)
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv = ctx.chat.create_conversation()

        def delete_meanwhile(conn, cursor, statement: str, *rest: object) -> None:
            if statement.startswith("UPDATE conversations"):
                deadline = time.monotonic() + 5
                while not fake.requests and time.monotonic() < deadline:  # stream is on
                    time.sleep(0.005)
                with ctx.engine.begin() as other:  # another session deletes it first
                    other.execute(delete(Conversation).where(Conversation.id == conv.id))

        event.listen(ctx.engine, "before_cursor_execute", delete_meanwhile)
        try:
            # PostgreSQL: the update finds no conversation; SQLite: the write conflicts.
            with pytest.raises((NotFoundError, OperationalError)):
                ctx.chat.send(conv.id, "are you there?", GPT)
        finally:
            event.remove(ctx.engine, "before_cursor_execute", delete_meanwhile)
        assert len(fake.requests) == 1
        assert fake.disconnected.wait(5), "the upstream stream was not closed"
    assert ctx.chat.active_reply(conv.id) is None
    with ctx.sessions() as session:
        assert session.scalars(select(Message)).all() == []


# ----- replies that end without text or without a reason (llama.cpp, seen for real) ----

EMPTY = EMPTY_REPLY  # "The server ended the reply without any text — the prompt may be …"
CUT = CUT_REPLY  # "The server ended the stream early without saying why"
# provider kind -> (fake server, the base URL path a user enters, a model the fake serves)
PROVIDER_FAKES = {
    "ollama": (FakeOllama, "", "llama3.2"),
    "openai": (FakeOpenAI, "/v1", "gpt-4o-mini"),
    "anthropic": (FakeAnthropic, "", CLAUDE_MODELS[0]),
    "gemini": (FakeGemini, "", "gemini-2.5-flash"),
}


def _serve_provider(ctx: AppContext, stack: ExitStack, kind: str, **fake_options: object):
    """A fake of `kind` set as that provider's setting; (fake, target)."""
    fake_class, path, model = PROVIDER_FAKES[kind]
    if kind != "ollama":
        fake_options.setdefault("key", KEY)
    fake = fake_class(**fake_options)
    url = stack.enter_context(serve(fake.app))
    key = None if kind == "ollama" else KEY
    ctx.profiles.save_setting(kind, api_key=key, endpoint_url=url + path)
    return fake, ChatTarget(kind, model)


@pytest.mark.parametrize("kind", list(PROVIDER_FAKES))
def test_an_empty_stream_is_an_error_not_a_complete_reply(ctx: AppContext, kind: str) -> None:
    with ExitStack() as stack:
        _fake, target = _serve_provider(ctx, stack, kind, fault="empty_stream")
        conv_id, reply = _chat(ctx, "a prompt longer than the context", target)
        assert list(reply) == []
    assert reply.wait(5).status == ERROR
    assert reply.error == EMPTY
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.status, saved.content, saved.error) == (ERROR, "", EMPTY)


@pytest.mark.parametrize("kind", list(PROVIDER_FAKES))
def test_a_stream_that_ends_without_a_reason_keeps_its_text_as_an_error(
    ctx: AppContext, kind: str
) -> None:
    with ExitStack() as stack:
        _fake, target = _serve_provider(
            ctx, stack, kind, tokens=["a ", "b ", "c ", "d "], fault="no_finish"
        )
        conv_id, reply = _chat(ctx, "hello", target)
        assert "".join(reply) == "a b "
    assert (reply.wait(5).status, reply.error) == (ERROR, CUT)
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.status, saved.content, saved.error) == (ERROR, "a b ", CUT)
    assert saved.finish_reason is None


def test_tokens_are_estimated_when_the_server_reports_none(ctx: AppContext) -> None:
    with ExitStack() as stack:
        _fake, target = _serve_provider(
            ctx, stack, "openai", tokens=["Hel", "lo", "!"], usage=False
        )
        conv_id, reply = _chat(ctx, "x" * 40, target)  # 40 characters: about 10 tokens
        assert reply.wait(5).status == COMPLETE
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.tokens_in, saved.tokens_out, saved.tokens_estimated) == (10, 3, True)
    assert "~10→~3 tokens (estimated)" in describe_message(saved)


def test_reported_tokens_are_not_marked_estimated(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx)
    assert reply.wait(5).status == COMPLETE
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.tokens_in, saved.tokens_out, saved.tokens_estimated) == (7, 4, False)
    assert "7→4 tokens" in describe_message(saved) and "estimated" not in describe_message(saved)


@pytest.mark.parametrize("unknown_path", ["openai", "fastapi"])
def test_a_base_url_without_v1_says_the_path_is_not_served(
    ctx: AppContext, unknown_path: str
) -> None:
    fake = FakeOpenAI(key=KEY, unknown_path=unknown_path)  # llama-cpp-python: "fastapi"
    with serve(fake.app) as url:
        profile = ctx.profiles.create_profile("llama.cpp", "openai", url, KEY)  # forgot /v1
        _, reply = _chat(ctx, "hi", ChatTarget("openai", "gpt-4o-mini", profile.id))
        assert list(reply) == []
    error = reply.wait(5).error or ""
    assert "is not available" not in error
    assert f"{url} answers HTTP 404 on /chat/completions" in error
    assert f"try {url}/v1" in error


@pytest.mark.parametrize(
    ("tokens", "max_tokens", "footer"),
    [(["a", "b", "c"], 2, "✂️ cut at the max tokens limit"), (["a", "b"], None, "")],
)
def test_the_footer_says_why_a_reply_ended(
    ctx: AppContext, openai: FakeOpenAI, tokens: list[str], max_tokens: int | None, footer: str
) -> None:
    openai.tokens = tokens
    conv_id, reply = _chat(ctx, options=ChatOptions(max_tokens=max_tokens))
    reply.wait(5)
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    text = describe_message(saved)
    if footer:
        assert saved.finish_reason == "length" and footer in text
    else:
        assert saved.finish_reason == "stop" and "cut" not in text


def test_a_stopped_reply_says_so_in_its_footer(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=[f"t{i} " for i in range(200)], token_delay=0.01)
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv_id, reply = _chat(ctx)
        next(iter(reply))
        ctx.chat.stop(conv_id)
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert saved.finish_reason == "stopped" and "⏹ stopped" in describe_message(saved)


# ----- a reply outlives its reader; titles follow the first message --------------------


def test_a_reader_that_goes_away_leaves_the_reply_streaming_to_its_end(ctx: AppContext) -> None:
    """A reloaded page: the request that read the deltas is gone, the reply is not."""
    tokens = [f"w{i} " for i in range(30)]
    fake = FakeOpenAI(key=KEY, tokens=tokens, token_delay=0.01)
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        conv_id, reply = _chat(ctx)
        first_reader = iter(reply)
        next(first_reader)
        first_reader.close()  # the page went away after one delta
        following = ctx.chat.active_reply(conv_id)
        assert following is reply
        seen = [text for text in following.follow(idle=0.05) if text is not None]
    assert seen[-1] == "".join(tokens)
    assert len(seen) > 2  # it grew while we watched, not one final blob
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    assert not fake.stream_closed_early
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert (saved.status, saved.content) == (COMPLETE, "".join(tokens))
    assert ctx.chat.active_reply(conv_id) is None


def test_the_title_follows_an_edit_of_the_first_message(
    ctx: AppContext, openai: FakeOpenAI
) -> None:
    conv_id, reply = _chat(ctx, "Plan a trip to Lisbon")
    reply.wait(5)
    ctx.chat.send(conv_id, "And Porto?", GPT).wait(5)
    assert ctx.chat.get_conversation(conv_id).title == "Plan a trip to Lisbon"
    first = ctx.chat.get_conversation(conv_id).messages[0]
    ctx.chat.edit_and_resend(conv_id, first.id, "Plan a trip to Madrid", GPT).wait(5)
    assert ctx.chat.get_conversation(conv_id).title == "Plan a trip to Madrid"


def test_a_title_renamed_by_hand_stays(ctx: AppContext, openai: FakeOpenAI) -> None:
    conv_id, reply = _chat(ctx, "Plan a trip to Lisbon")
    reply.wait(5)
    ctx.chat.rename(conv_id, "Holidays")
    first = ctx.chat.get_conversation(conv_id).messages[0]
    ctx.chat.edit_and_resend(conv_id, first.id, "Plan a trip to Madrid", GPT).wait(5)
    assert ctx.chat.get_conversation(conv_id).title == "Holidays"
    second = ctx.chat.create_conversation("Named at the start")
    ctx.chat.send(second.id, "hello there", GPT).wait(5)
    assert ctx.chat.get_conversation(second.id).title == "Named at the start"


def test_a_first_run_has_no_chat_provider_configured(ctx: AppContext) -> None:
    assert not ctx.targets.any_configured()
    ctx.profiles.create_profile("render box", "comfyui", "http://10.0.0.2:8188")
    assert not ctx.targets.any_configured()  # ComfyUI does not chat
    ctx.profiles.save_setting("gemini", api_key="gm-key-1234567890")
    assert ctx.targets.any_configured()
