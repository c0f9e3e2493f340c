"""Personal API tokens as a script meets them: created once over REST (the secret in
that answer only), accepted as `Authorization: Bearer` by /api, /api/ws, MCP and
gradio_client, refused everywhere the moment they are revoked; and who am I."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from gradio_client import Client
from mcp import ClientSession
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from spoonfeeder.context import AppContext
from tests.conftest import MakeApp
from tests.launch import api_client, served
from tests.test_mcp import TOOLS, with_session

USERS = "alice:wonder-land-1,bob:builder-bob-2"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ALICE = basic("alice", "wonder-land-1")
BOB = basic("bob", "builder-bob-2")


@pytest.fixture
def signed_in(make_app: MakeApp) -> AppContext:
    return make_app(spoonfeeder_auth=USERS)


def test_a_token_is_shown_once_and_works_until_revoked(signed_in: AppContext) -> None:
    with api_client(signed_in) as client:
        created = client.post("/api/tokens", json={"name": "render farm"}, headers=ALICE)
        assert created.status_code == 201
        made = created.json()["data"]
        secret = made["token"]
        assert made["name"] == "render farm" and made["state"] == "active"
        assert secret.startswith(made["hint"]) and len(made["hint"]) < 10

        me = client.get("/api/me", headers=bearer(secret)).json()["data"]
        assert me == {"signed_in": True, "name": "alice", "role": "admin"}
        listed = client.get("/api/tokens", headers=bearer(secret))
        assert [token["name"] for token in listed.json()["data"]] == ["render farm"]
        assert secret not in listed.text  # the secret is never shown again
        assert client.get("/api/tokens", headers=BOB).json()["data"] == []

        stolen = client.delete(f"/api/tokens/{made['id']}", headers=BOB)
        assert stolen.status_code == 404 and stolen.json()["code"] == "NOT_FOUND"
        assert client.get("/api/health", headers=bearer(secret)).status_code == 200

        revoked = client.delete(f"/api/tokens/{made['id']}", headers=ALICE)
        assert revoked.json()["data"]["state"] == "revoked"
        refused = client.get("/api/health", headers=bearer(secret))
        assert refused.status_code == 401
        assert refused.json() == {
            "success": False,
            "error": "This API token is unknown, revoked or expired.",
            "code": "UNAUTHORIZED",
        }


def test_bad_token_requests_get_sentences(signed_in: AppContext) -> None:
    with api_client(signed_in) as client:
        nameless = client.post("/api/tokens", json={"name": " "}, headers=ALICE)
        past = client.post(
            "/api/tokens", json={"name": "x", "expires_at": "2020-01-01T00:00:00"}, headers=ALICE
        )
        unknown = client.delete("/api/tokens/not-an-id", headers=ALICE)
    assert nameless.status_code == 422 and "Give the token a name" in nameless.json()["error"]
    assert past.status_code == 422 and "in the past" in past.json()["error"]
    assert unknown.status_code == 404


def test_with_sign_in_off_there_is_no_one_to_own_a_token(make_app: MakeApp) -> None:
    with api_client(make_app()) as client:
        me = client.get("/api/me")
        made = client.post("/api/tokens", json={"name": "script"})
    assert me.json()["data"] == {"signed_in": False, "name": None, "role": None}
    assert made.status_code == 422
    assert "Sign-in is off" in made.json()["error"] and "users add" in made.json()["error"]


def test_a_token_opens_every_face_and_revoking_it_closes_them_all(
    signed_in: AppContext,
) -> None:
    secret = signed_in.users.create_token(signed_in.users.get("bob"), "everything").secret
    token_id = signed_in.users.list_tokens(signed_in.users.get("bob"))[0].id
    with served(signed_in) as url:
        assert httpx.get(f"{url}/api/me", headers=bearer(secret)).json()["data"]["name"] == "bob"

        ws_url = url.replace("http://", "ws://") + "/api/ws"
        with connect(ws_url, additional_headers=bearer(secret), open_timeout=10) as ws:
            ws.send('{"event": "subscribe:task", "data": "*"}')
            assert '"subscribed"' in ws.recv(timeout=10)

        async def listing(session: ClientSession) -> Any:
            return (await session.list_tools()).tools

        assert {tool.name for tool in with_session(url, listing, bearer(secret))} == TOOLS

        client = Client(url + "/", headers=bearer(secret), verbose=False)
        assert client.predict(api_name="/list_profiles") is not None
        with pytest.raises(Exception):  # noqa: B017  (gradio_client: no login, no config)
            Client(url + "/", verbose=False)

        signed_in.users.revoke_token(signed_in.users.get("bob"), token_id)
        assert httpx.get(f"{url}/api/me", headers=bearer(secret)).status_code == 401
        with pytest.raises(InvalidStatus):
            connect(ws_url, additional_headers=bearer(secret), open_timeout=10)
        mcp_call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        refused = httpx.post(f"{url}/gradio_api/mcp/", json=mcp_call, headers=bearer(secret))
        assert refused.status_code == 401
        gradio_route = httpx.get(f"{url}/config", headers=bearer(secret))
        assert gradio_route.status_code == 401
        assert gradio_route.json()["code"] == "UNAUTHORIZED"
