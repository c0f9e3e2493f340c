"""Two users and an admin on one app: each sees and touches only their own work, on
every face (REST, gradio_client, MCP); another user's row is refused with 403 in the
envelope; an admin sees everyone's and can narrow a list to one user."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client
from mcp import ClientSession

from spoonfeeder.context import AppContext
from tests.conftest import MakeApp
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import api_client, served
from tests.test_mcp import text_of, with_session

KEY = "sk-test"
USERS = "root:root-pass-1,alice:alice-pass-1,bob:bob-pass-12"
ASK = {"target": "openai", "model": "gpt-4o-mini"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ROOT = basic("root", "root-pass-1")
ALICE = basic("alice", "alice-pass-1")
BOB = basic("bob", "bob-pass-12")


@pytest.fixture
def shared(make_app: MakeApp) -> Iterator[AppContext]:
    ctx = make_app(spoonfeeder_auth=USERS)
    fake = FakeOpenAI(key=KEY, tokens=["Hi", "!"], usage=(3, 2))
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        yield ctx


def say(client: Any, headers: dict[str, str], message: str) -> str:
    answer = client.post("/api/chat", json={**ASK, "message": message}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["conversation_id"]


def titles(client: Any, headers: dict[str, str], **params: str) -> list[str]:
    answer = client.get("/api/conversations", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    return sorted(c["title"] for c in answer.json()["data"])


def test_each_user_sees_and_changes_only_their_own_conversations(shared: AppContext) -> None:
    with api_client(shared) as client:
        alices = say(client, ALICE, "alice asks")
        bobs = say(client, BOB, "bob asks")
        assert titles(client, ALICE) == ["alice asks"]
        assert titles(client, BOB) == ["bob asks"]
        assert titles(client, ALICE, search="asks") == ["alice asks"]
        assert titles(client, ROOT) == ["alice asks", "bob asks"]
        assert titles(client, ROOT, owner="bob") == ["bob asks"]
        peeking = client.get("/api/conversations", headers=ALICE, params={"owner": "bob"})
        assert peeking.status_code == 403 and peeking.json()["code"] == "FORBIDDEN"

        bobs_path = f"/api/conversations/{bobs}"
        for method, path, body in [
            ("GET", bobs_path, None),
            ("PATCH", bobs_path, {"title": "mine now"}),
            ("DELETE", bobs_path, None),
            ("GET", f"{bobs_path}/export", None),
            ("POST", "/api/chat", {**ASK, "message": "more", "conversation_id": bobs}),
        ]:
            answer = client.request(method, path, json=body, headers=ALICE)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json() == {
                "success": False,
                "error": "This conversation belongs to another user.",
                "code": "FORBIDDEN",
            }
        kept = client.get(bobs_path, headers=BOB).json()["data"]
        assert kept["title"] == "bob asks" and len(kept["messages"]) == 2  # untouched

        # An admin may open, rename and delete anyone's.
        assert client.patch(bobs_path, json={"title": "seen"}, headers=ROOT).status_code == 200
        assert client.delete(f"/api/conversations/{alices}", headers=ROOT).status_code == 200
        assert titles(client, ALICE) == []


def test_gradio_client_and_mcp_act_as_their_caller(shared: AppContext) -> None:
    alice_token = shared.users.create_token(shared.users.get("alice"), "ui").secret
    bob_token = shared.users.create_token(shared.users.get("bob"), "agent").secret
    with served(shared) as url:
        as_alice = Client(url + "/", headers={"Authorization": f"Bearer {alice_token}"})
        as_alice.predict("gradio asks", api_name="/new_conversation")
        as_alice.predict("openai", "gpt-4o-mini", "alice via gradio", api_name="/chat")

        async def chat(session: ClientSession) -> Any:
            arguments = {"message": "bob via mcp", "target": "openai", "model": "gpt-4o-mini"}
            return await session.call_tool("chat", arguments)

        answered = with_session(url, chat, {"Authorization": f"Bearer {bob_token}"})
        assert not answered.isError, text_of(answered)
        bobs = json.loads(text_of(answered))["conversation_id"]

        alice_sees = httpx.get(
            f"{url}/api/conversations", headers={"Authorization": f"Bearer {alice_token}"}
        ).json()["data"]
        bob_sees = httpx.get(
            f"{url}/api/conversations", headers={"Authorization": f"Bearer {bob_token}"}
        ).json()["data"]
        assert {c["title"] for c in bob_sees} == {"bob via mcp"}
        assert {c["title"] for c in alice_sees} == {"alice via gradio", "New conversation"}
        assert "bob via mcp" not in {c["title"] for c in alice_sees}

        # Opening bob's conversation from alice's gradio_client is refused, in a sentence.
        with pytest.raises(Exception, match="belongs to another user"):
            as_alice.predict(bobs, api_name="/open_conversation")
        with pytest.raises(Exception, match="belongs to another user"):
            as_alice.predict(bobs, api_name="/delete_conversation")
        assert httpx.get(
            f"{url}/api/conversations/{bobs}", headers={"Authorization": f"Bearer {bob_token}"}
        ).json()["success"]
