"""/api/chat and /api/conversations against the fake OpenAI-compatible server: a JSON
reply or server-sent events, saved as the Chat tab saves them; the saved conversations
listed, searched, paged, read, renamed, exported and deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from spoonfeeder.api.app import create_api
from spoonfeeder.chat import COMPLETE, ERROR, STOPPED
from spoonfeeder.context import AppContext
from spoonfeeder.providers.base import CUT_REPLY, EMPTY_REPLY
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import closed_port_url, serve
from tests.launch import api_client, sse_events

KEY = "sk-test"
TOKENS = ["Hel", "lo", " there", "!"]
ASK = {"target": "openai", "model": "gpt-4o-mini", "message": "Say hello"}
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def openai(ctx: AppContext) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(key=KEY, tokens=TOKENS, usage=(7, 4))
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        yield fake


# ----- POST /api/chat, JSON ------------------------------------------------------------


def test_a_message_gets_its_reply_and_is_saved(ctx: AppContext, openai: FakeOpenAI) -> None:
    with api_client(ctx) as client:
        answer = client.post(
            "/api/chat",
            json={**ASK, "options": {"system": "Be brief", "temperature": 0.3, "max_tokens": 50}},
        )
        assert answer.status_code == 200
        body = answer.json()
        assert body["success"] is True
        reply = body["data"]
        saved = client.get(f"/api/conversations/{reply['conversation_id']}").json()["data"]
    assert reply["text"] == "Hello there!"
    assert (reply["status"], reply["finish_reason"]) == (COMPLETE, "stop")
    assert (reply["provider"], reply["model"], reply["profile_id"]) == (
        "openai",
        "gpt-4o-mini",
        None,
    )
    assert reply["usage"] == {"tokens_in": 7, "tokens_out": 4, "estimated": False}
    assert reply["timing"]["latency_ms"] >= reply["timing"]["ttft_ms"] > 0
    sent = openai.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief"}
    assert sent["temperature"] == 0.3
    assert (saved["title"], saved["system_prompt"]) == ("Say hello", "Be brief")
    user, assistant = saved["messages"]
    assert (user["role"], user["content"]) == ("user", "Say hello")
    assert assistant["id"] == reply["message_id"]
    assert (assistant["content"], assistant["status"]) == ("Hello there!", COMPLETE)


def test_a_saved_conversation_continues(ctx: AppContext, openai: FakeOpenAI) -> None:
    with api_client(ctx) as client:
        first = client.post("/api/chat", json=ASK).json()["data"]
        openai.tokens = ["Again"]
        second = client.post(
            "/api/chat",
            json={**ASK, "message": "Once more", "conversation_id": first["conversation_id"]},
        ).json()["data"]
        saved = client.get(f"/api/conversations/{first['conversation_id']}").json()["data"]
    assert second["conversation_id"] == first["conversation_id"]
    assert [m["content"] for m in saved["messages"]] == [
        "Say hello",
        "Hello there!",
        "Once more",
        "Again",
    ]
    sent = [(m["role"], m["content"]) for m in openai.requests[-1].json["messages"]]
    assert sent == [
        ("user", "Say hello"),
        ("assistant", "Hello there!"),
        ("user", "Once more"),
    ]


def test_openai_style_messages_start_a_conversation(ctx: AppContext, openai: FakeOpenAI) -> None:
    history = [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": [{"type": "text", "text": "Who am I?"}]},
    ]
    body = {"target": "openai", "model": "gpt-4o-mini", "messages": history}
    with api_client(ctx) as client:
        reply = client.post("/api/chat", json=body).json()["data"]
        saved = client.get(f"/api/conversations/{reply['conversation_id']}").json()["data"]
    assert [m["content"] for m in saved["messages"]] == [
        "I am Ada.",
        "Hello Ada.",
        "Who am I?",
        "Hello there!",
    ]
    assert saved["title"] == "I am Ada."


def test_a_chat_profile_is_a_target(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=None, tokens=["From", " vLLM"], models=["qwen"])
    with serve(fake.app) as url, api_client(ctx) as client:
        profile = ctx.profiles.create_profile("vLLM box", "openai", url + "/v1")
        targets = client.get("/api/chat/targets").json()["data"]
        models = client.get("/api/chat/models", params={"target": f"profile:{profile.id}"})
        reply = client.post(
            "/api/chat",
            json={"target": f"profile:{profile.id}", "model": "qwen", "message": "Hi"},
        ).json()["data"]
    assert {"label": "vLLM box (OpenAI / compatible)", "value": f"profile:{profile.id}"} in targets
    assert "openai" in [t["value"] for t in targets]
    assert models.json()["data"]["ids"] == ["qwen"]
    assert (reply["text"], reply["profile_id"]) == ("From vLLM", str(profile.id))


# ----- POST /api/chat, server-sent events ----------------------------------------------


def test_a_streamed_reply_arrives_as_delta_events_then_done(
    ctx: AppContext, openai: FakeOpenAI
) -> None:
    with api_client(ctx) as client:
        answer = client.post("/api/chat", json={**ASK, "stream": True})
        events = sse_events(answer.text)
        done = events[-1][1]
        saved = client.get(f"/api/conversations/{done['conversation_id']}").json()["data"]
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    # Deltas that arrive while the client is busy come as one event; none is lost or
    # reordered, and the first is never held back.
    deltas = [data["text"] for kind, data in events if kind == "delta"]
    assert "".join(deltas) == "".join(TOKENS) and deltas[0].startswith(TOKENS[0])
    assert events[0][1] == {
        "conversation_id": done["conversation_id"],
        "message_id": done["message_id"],
    }
    assert (done["text"], done["status"], done["finish_reason"]) == (
        "Hello there!",
        "complete",
        "stop",
    )
    assert done["usage"] == {"tokens_in": 7, "tokens_out": 4, "estimated": False}
    assert [(m["content"], m["status"]) for m in saved["messages"]] == [
        ("Say hello", COMPLETE),
        ("Hello there!", COMPLETE),
    ]


@pytest.mark.parametrize(
    ("fault", "code", "message", "kept"),
    [
        ("break_midway", "PROVIDER_UNAVAILABLE", "cut off", "Hello"),
        ("error_event", "PROVIDER_ERROR", "", "Hello"),
        ("no_finish", "PROVIDER_ERROR", CUT_REPLY, "Hello"),
        ("empty_stream", "PROVIDER_REJECTED", EMPTY_REPLY, ""),
    ],
)
def test_a_stream_that_fails_midway_ends_with_an_error_event(
    ctx: AppContext, fault: str, code: str, message: str, kept: str
) -> None:
    fake = FakeOpenAI(key=KEY, tokens=TOKENS, fault=fault)
    with serve(fake.app) as url, api_client(ctx) as client:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        answer = client.post("/api/chat", json={**ASK, "stream": True})
        events = sse_events(answer.text)
        conv_id = events[0][1]["conversation_id"]
        saved = client.get(f"/api/conversations/{conv_id}").json()["data"]
    assert answer.status_code == 200
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "error" and "done" not in kinds
    assert "".join(data["text"] for kind, data in events if kind == "delta") == kept
    error = events[-1][1]
    assert (error["success"], error["code"]) == (False, code)
    assert message in error["error"]
    reply = saved["messages"][-1]
    assert (reply["status"], reply["content"], reply["error"]) == (ERROR, kept, error["error"])


def test_a_failed_reply_without_stream_answers_its_error(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=TOKENS, fault="empty_stream")
    with serve(fake.app) as url, api_client(ctx) as client:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        answer = client.post("/api/chat", json=ASK)
        listed = client.get("/api/conversations").json()["data"]
    assert answer.status_code == 422
    assert answer.json() == {"success": False, "error": EMPTY_REPLY, "code": "PROVIDER_REJECTED"}
    assert [c["message_count"] for c in listed] == [2]  # the message and the failed reply


def test_an_unreachable_provider_is_a_503(ctx: AppContext) -> None:
    ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=closed_port_url() + "/v1")
    with api_client(ctx) as client:
        plain = client.post("/api/chat", json=ASK)
        streamed = client.post("/api/chat", json={**ASK, "stream": True})
    assert plain.status_code == 503
    assert plain.json()["code"] == "PROVIDER_UNAVAILABLE"
    assert "reach" in plain.json()["error"].lower()
    assert KEY not in plain.text
    # Once the message is saved, the stream has begun: its failure is the last event.
    error = sse_events(streamed.text)[-1]
    assert error == ("error", plain.json())


def test_closing_the_stream_stops_the_reply_and_keeps_its_text(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=KEY, tokens=[f"t{i} " for i in range(400)], token_delay=0.01)
    with serve(fake.app) as url, serve(create_api(ctx)) as api_url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        received: list[tuple[str, Any]] = []
        with httpx.stream("POST", f"{api_url}/api/chat", json={**ASK, "stream": True}) as answer:
            assert answer.status_code == 200
            kind = ""
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    received.append((kind, json.loads(line[len("data: ") :])))
                    if len(received) == 4:  # the start and three deltas: then hang up
                        break
        assert fake.disconnected.wait(5), "the upstream request was not closed"
        conv_id = received[0][1]["conversation_id"]
        if (reply := ctx.chat.active_reply(conv_id)) is not None:
            reply.wait(5)  # it saves itself as it ends
    saved = ctx.chat.get_conversation(conv_id).messages[-1]
    assert saved.status == STOPPED
    assert saved.content.startswith("t0 t1 t2 ")
    assert len(saved.content.split()) < 400


# ----- POST /api/chat, refused before any reply -----------------------------------------


@pytest.mark.usefixtures("openai")
@pytest.mark.parametrize("stream", [False, True])
def test_what_is_refused_before_the_reply_is_a_json_error(ctx: AppContext, stream: bool) -> None:
    cases = {
        "unknown target": ({**ASK, "target": "chatgpt"}, 422, "Choose a chat provider"),
        "unknown profile": ({**ASK, "target": f"profile:{NO_SUCH_ID}"}, 404, "No profile"),
        "no model": ({**ASK, "model": " "}, 422, "Choose a model first"),
        "empty message": ({**ASK, "message": "  "}, 422, "Give `message`"),
        "unknown conversation": ({**ASK, "conversation_id": NO_SUCH_ID}, 404, NO_SUCH_ID),
        "last not the user's": (
            {**ASK, "message": None, "messages": [{"role": "assistant", "content": "Hi"}]},
            422,
            "The last of `messages` must be the user's",
        ),
    }
    with api_client(ctx) as client:
        for case, (body, status, words) in cases.items():
            answer = client.post("/api/chat", json={**body, "stream": stream})
            assert answer.status_code == status, case
            assert answer.headers["content-type"] == "application/json", case
            assert answer.json()["success"] is False, case
            assert words in answer.json()["error"], case
        listed = client.get("/api/conversations").json()
    assert listed["pagination"]["total"] == 0  # nothing refused left a conversation


@pytest.mark.usefixtures("openai")
def test_a_bad_body_names_the_field(ctx: AppContext) -> None:
    cases = {
        "model": {"target": "openai", "message": "Hi"},
        "options.temperature": {**ASK, "options": {"temperature": 5}},
        "options.max_tokens": {**ASK, "options": {"max_tokens": 0}},
        "messages.0.role": {**ASK, "messages": [{"role": "system", "content": "x"}]},
        "conversation_id": {**ASK, "conversation_id": "not-an-id"},
        "colour": {**ASK, "colour": "blue"},
    }
    with api_client(ctx) as client:
        for field, body in cases.items():
            answer = client.post("/api/chat", json=body)
            assert answer.status_code == 422, field
            assert answer.json()["code"] == "VALIDATION_ERROR", field
            assert answer.json()["error"].startswith(f"{field}: "), (field, answer.json())


# ----- /api/conversations ---------------------------------------------------------------


def test_conversations_are_paged_and_searched(ctx: AppContext) -> None:
    made = [ctx.chat.create_conversation(title) for title in ("Apple pie", "Banana", "Cherry")]
    with api_client(ctx) as client:
        first = client.get("/api/conversations", params={"limit": 2}).json()
        second = client.get("/api/conversations", params={"limit": 2, "page": 2}).json()
        beyond = client.get("/api/conversations", params={"limit": 2, "page": 3}).json()
        found = client.get("/api/conversations", params={"search": "APPLE"}).json()
        bad = client.get("/api/conversations", params={"limit": 0})
    assert first["success"] is True
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    assert second["pagination"] == {"page": 2, "limit": 2, "total": 3, "pages": 2}
    listed = [c["id"] for c in first["data"] + second["data"]]
    assert sorted(listed) == sorted(str(c.id) for c in made)  # each once, none skipped
    assert beyond["data"] == []
    assert [c["title"] for c in found["data"]] == ["Apple pie"]
    assert found["pagination"]["total"] == 1
    assert bad.status_code == 422 and bad.json()["error"].startswith("limit: ")


def test_a_conversation_is_renamed(ctx: AppContext) -> None:
    conv = ctx.chat.create_conversation()
    with api_client(ctx) as client:
        renamed = client.patch(f"/api/conversations/{conv.id}", json={"title": "  Plans  "})
        empty = client.patch(f"/api/conversations/{conv.id}", json={"title": " "})
        missing_field = client.patch(f"/api/conversations/{conv.id}", json={})
        unknown = client.patch(f"/api/conversations/{NO_SUCH_ID}", json={"title": "x"})
    assert renamed.status_code == 200
    assert renamed.json()["data"]["title"] == "Plans"
    assert ctx.chat.get_conversation(conv.id).title == "Plans"
    assert empty.status_code == 422
    assert empty.json()["error"] == "The title cannot be empty"
    assert missing_field.status_code == 422
    assert missing_field.json()["error"].startswith("title: ")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"


def test_a_conversation_is_deleted(ctx: AppContext, openai: FakeOpenAI) -> None:
    with api_client(ctx) as client:
        conv_id = client.post("/api/chat", json=ASK).json()["data"]["conversation_id"]
        deleted = client.delete(f"/api/conversations/{conv_id}")
        gone = client.get(f"/api/conversations/{conv_id}")
        again = client.delete(f"/api/conversations/{conv_id}")
        not_an_id = client.get("/api/conversations/not-an-id")
    assert deleted.status_code == 200
    assert deleted.json()["data"] == {"id": conv_id, "title": "Say hello"}
    assert gone.status_code == 404
    assert gone.json() == {
        "success": False,
        "error": f"No conversation with id {conv_id} (it may have been deleted)",
        "code": "NOT_FOUND",
    }
    assert again.status_code == 404
    assert not_an_id.status_code == 404 and "not-an-id" in not_an_id.json()["error"]
    assert ctx.chat.list_conversations() == []


def test_a_conversation_is_exported(ctx: AppContext, openai: FakeOpenAI) -> None:
    with api_client(ctx) as client:
        conv_id = client.post("/api/chat", json={**ASK, "message": "Café: plans?"}).json()["data"][
            "conversation_id"
        ]
        as_json = client.get(f"/api/conversations/{conv_id}/export")
        as_markdown = client.get(
            f"/api/conversations/{conv_id}/export", params={"format": "markdown"}
        )
        bad = client.get(f"/api/conversations/{conv_id}/export", params={"format": "pdf"})
        unknown = client.get(f"/api/conversations/{NO_SUCH_ID}/export")
    assert as_json.status_code == 200
    exported = as_json.json()["data"]
    assert exported["id"] == conv_id
    assert [m["content"] for m in exported["messages"]] == ["Café: plans?", "Hello there!"]
    assert as_markdown.status_code == 200
    assert as_markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    disposition = as_markdown.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Caf__ plans_.md"')
    assert "filename*=UTF-8''Caf%C3%A9_%20plans_.md" in disposition
    assert as_markdown.text.startswith("# Café: plans?\n")
    assert "Hello there!" in as_markdown.text
    assert bad.status_code == 422 and bad.json()["error"].startswith("format: ")
    assert unknown.status_code == 404
