"""/api/profiles and /api/settings through the REST face, on SQLite and PostgreSQL: CRUD
in the envelope, refusals naming the field, no API key in any answer, a stored key only
ever sent to the URL it was saved with, and Test connection against a fake OpenAI."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from spoonfeeder.context import AppContext
from spoonfeeder.errors import NotFoundError
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import api_client

KEY = "sk-rest-secret-0123456789abcdef"
OTHER_KEY = "sk-rest-other-9876543210fedcba"
KNOWN = "ollama, openai, anthropic, gemini, comfyui"


@pytest.fixture
def client(ctx: AppContext):
    with api_client(ctx) as c:
        yield c


def failure(answer, status: int, code: str) -> str:
    """The error sentence of a failed answer, after checking its envelope."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is False and body["code"] == code
    assert "Traceback" not in body["error"]
    return body["error"]


def data(answer, status: int = 200):
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["success"] is True
    return body["data"]


def create(client: TestClient, **fields) -> dict:
    body = {"name": "vLLM", "provider": "openai", "url": "http://10.0.0.5:8000/v1"}
    body.update(fields)
    return data(client.post("/api/profiles", json=body), 201)


# ----- profiles --------------------------------------------------------------------------


def test_profile_create_list_get_update_delete(ctx: AppContext, client: TestClient) -> None:
    made = create(client, api_key=KEY, options={"timeout": 30})
    assert (made["name"], made["provider"], made["url"]) == (
        "vLLM",
        "openai",
        "http://10.0.0.5:8000/v1",
    )
    assert made["key"] == {"masked": "sk-…cdef", "error": None}
    assert made["options"] == {"timeout": 30} and made["label"] == "OpenAI / compatible"
    stored = ctx.profiles.credentials("openai", profile_id=made["id"])
    assert stored.api_key == KEY and stored.url == "http://10.0.0.5:8000/v1"

    create(client, name="Second ComfyUI", provider="comfyui", url="http://10.0.0.6:8188")
    listed = client.get("/api/profiles", params={"limit": 1, "page": 2})
    assert listed.json()["pagination"] == {"page": 2, "limit": 1, "total": 2, "pages": 2}
    assert [p["name"] for p in data(listed)] == ["vLLM"]  # by kind, then name

    assert data(client.get(f"/api/profiles/{made['id']}"))["name"] == "vLLM"

    renamed = data(client.put(f"/api/profiles/{made['id']}", json={"name": "vLLM big"}))
    # What a PUT leaves out keeps its stored value: the URL, the options, the key.
    assert renamed["url"] == "http://10.0.0.5:8000/v1" and renamed["options"] == {"timeout": 30}
    assert renamed["key_removed"] is False and renamed["key"]["masked"] == "sk-…cdef"
    assert ctx.profiles.get_profile(made["id"]).name == "vLLM big"

    gone = data(client.delete(f"/api/profiles/{made['id']}"))
    assert gone["name"] == "vLLM big"
    with pytest.raises(NotFoundError):
        ctx.profiles.get_profile(made["id"])
    assert [p.name for p in ctx.profiles.list_profiles()] == ["Second ComfyUI"]


def test_unknown_profiles_are_404(client: TestClient) -> None:
    missing = str(uuid.uuid4())
    for method, path in [
        ("GET", f"/api/profiles/{missing}"),
        ("PUT", f"/api/profiles/{missing}"),
        ("DELETE", f"/api/profiles/{missing}"),
        ("POST", f"/api/profiles/{missing}/test"),
    ]:
        answer = client.request(method, path, json={} if method == "PUT" else None)
        assert "No profile with id" in failure(answer, 404, "NOT_FOUND"), (method, path)
    assert "'not-an-id'" in failure(client.get("/api/profiles/not-an-id"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"provider": "openai"}, "name: Field required"),
        ({"name": "x", "provider": "openai", "options": [1, 2]}, "options: Input should be"),
        ({"name": "x", "provider": "openai", "colour": "red"}, "colour: Extra inputs"),
        ({"name": "x", "provider": "nope"}, "Unknown provider 'nope'. Choose one of: " + KNOWN),
        ({"name": "x", "provider": "openai", "url": "ftp://files"}, "URL 'ftp://files' is not"),
        (
            {"name": "x", "provider": "openai", "url": "http://me:pw@host/v1"},
            "URL has a user name or password in it",
        ),
        ({"name": " ", "provider": "openai"}, "The profile name cannot be empty"),
        ({"name": "x", "provider": "openai", "api_key": "sk a b"}, "contains spaces"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_field(
    ctx: AppContext, client: TestClient, body: dict, says: str
) -> None:
    assert says in failure(client.post("/api/profiles", json=body), 422, "VALIDATION_ERROR")
    assert ctx.profiles.list_profiles() == []


def test_a_duplicate_name_or_bad_update_is_refused(ctx: AppContext, client: TestClient) -> None:
    first = create(client)
    second = create(client, name="LM Studio", url="http://10.0.0.7:1234/v1")
    taken = client.put(f"/api/profiles/{second['id']}", json={"name": "VLLM"})
    assert "A profile named 'VLLM' already exists" in failure(taken, 422, "VALIDATION_ERROR")
    bad_url = client.put(f"/api/profiles/{first['id']}", json={"url": "localhost:8000"})
    assert "is not valid" in failure(bad_url, 422, "VALIDATION_ERROR")
    assert ctx.profiles.get_profile(second["id"]).name == "LM Studio"
    assert ctx.profiles.get_profile(first["id"]).url == "http://10.0.0.5:8000/v1"


def test_a_profile_moved_without_its_key_loses_it(ctx: AppContext, client: TestClient) -> None:
    made = create(client, api_key=KEY)
    path = f"/api/profiles/{made['id']}"
    moved = data(client.put(path, json={"url": "http://10.0.0.8:8000/v1"}))
    assert moved["key_removed"] is True and moved["key"]["masked"] == ""
    assert ctx.profiles.credentials("openai", profile_id=made["id"]).api_key is None

    rekeyed = data(client.put(path, json={"url": "http://10.0.0.9:8000/v1", "api_key": KEY}))
    assert rekeyed["key_removed"] is False and rekeyed["key"]["masked"] == "sk-…cdef"
    assert ctx.profiles.credentials("openai", profile_id=made["id"]).api_key == KEY
    cleared = data(client.put(path, json={"clear_key": True}))
    assert cleared["key_removed"] is False and cleared["key"]["masked"] == ""
    assert ctx.profiles.credentials("openai", profile_id=made["id"]).api_key is None


def test_profile_test_connection_records_the_result(ctx: AppContext, client: TestClient) -> None:
    with serve(FakeOpenAI(key=KEY).app) as url:
        good = create(client, url=url + "/v1", api_key=KEY)
        bad = create(client, name="Wrong key", url=url + "/v1", api_key=OTHER_KEY)
        tested = data(client.post(f"/api/profiles/{good['id']}/test"))
        refused = data(client.post(f"/api/profiles/{bad['id']}/test"))
    assert tested["status"] == "ok" and "models available" in tested["status_message"]
    assert tested["last_tested"] is not None
    assert refused["status"] == "auth_rejected"
    assert ctx.profiles.get_profile(good["id"]).status == "ok"
    assert ctx.profiles.get_profile(bad["id"]).status == "auth_rejected"


# ----- provider settings -------------------------------------------------------------------


def test_settings_list_and_get(client: TestClient) -> None:
    listed = data(client.get("/api/settings"))
    assert ", ".join(s["provider"] for s in listed) == KNOWN
    openai = data(client.get("/api/settings/openai"))
    assert openai["label"] == "OpenAI / compatible"
    assert openai["stored_url"] is None and openai["endpoint_url"].startswith("https://")
    assert openai["key"] == {"masked": "", "error": None} and openai["status"] == "untested"


def test_settings_put_saves_through_the_service(ctx: AppContext, client: TestClient) -> None:
    saved = data(
        client.put(
            "/api/settings/openai",
            json={
                "api_key": KEY,
                "endpoint_url": "http://10.0.0.1:8000/v1/",
                "default_model": "gpt-4o-mini",
            },
        )
    )
    assert saved["endpoint_url"] == "http://10.0.0.1:8000/v1"  # no trailing slash
    assert (saved["default_model"], saved["key"]["masked"]) == ("gpt-4o-mini", "sk-…cdef")
    creds = ctx.profiles.credentials("openai")
    assert (creds.url, creds.api_key) == ("http://10.0.0.1:8000/v1", KEY)

    # Left out stays; "" resets to the default; clear_key removes the key.
    kept = data(client.put("/api/settings/openai", json={"default_model": "gpt-4o"}))
    assert kept["endpoint_url"] == "http://10.0.0.1:8000/v1" and kept["key"]["masked"]
    cleared = data(client.put("/api/settings/openai", json={"clear_key": True}))
    assert cleared["key"]["masked"] == "" and ctx.profiles.credentials("openai").api_key is None
    reset = data(client.put("/api/settings/openai", json={"endpoint_url": ""}))
    assert reset["stored_url"] is None and reset["endpoint_url"].startswith("https://")
    assert ctx.profiles.get_setting("openai").default_model == "gpt-4o"


def test_the_key_stays_with_its_url_through_put(ctx: AppContext, client: TestClient) -> None:
    client.put("/api/settings/openai", json={"api_key": KEY, "endpoint_url": "http://a:1/v1"})
    same = data(client.put("/api/settings/openai", json={"endpoint_url": "http://a:1/v1/"}))
    assert same["key_removed"] is False and ctx.profiles.credentials("openai").api_key == KEY

    with_key = {"endpoint_url": "http://b:2/v1", "api_key": OTHER_KEY}
    moved_with_key = data(client.put("/api/settings/openai", json=with_key))
    assert moved_with_key["key_removed"] is False
    assert ctx.profiles.credentials("openai").api_key == OTHER_KEY

    moved = data(client.put("/api/settings/openai", json={"endpoint_url": "http://c:3/v1"}))
    assert moved["key_removed"] is True and moved["key"]["masked"] == ""
    assert ctx.profiles.credentials("openai").api_key is None


def test_a_moved_key_is_never_sent_to_the_new_url(client: TestClient) -> None:
    with serve(FakeOpenAI(key=KEY).app) as home:
        client.put("/api/settings/openai", json={"api_key": KEY, "endpoint_url": home + "/v1"})
    listener = FakeOpenAI(key=None)  # accepts any key, records every request
    with serve(listener.app) as elsewhere:
        client.put("/api/settings/openai", json={"endpoint_url": elsewhere + "/v1"})
        tested = data(client.post("/api/settings/openai/test"))
    assert tested["endpoint_url"] == elsewhere + "/v1"
    assert listener.requests and not any(KEY in str(r.headers) for r in listener.requests)


def test_setting_test_connection_against_a_fake(ctx: AppContext, client: TestClient) -> None:
    with serve(FakeOpenAI(key=KEY).app) as url:
        client.put("/api/settings/openai", json={"api_key": KEY, "endpoint_url": url + "/v1"})
        tested = data(client.post("/api/settings/openai/test"))
        client.put("/api/settings/openai", json={"api_key": OTHER_KEY})
        refused = data(client.post("/api/settings/openai/test"))
    assert tested["status"] == "ok" and "models available" in tested["status_message"]
    assert refused["status"] == "auth_rejected" and "rejected" in refused["status_message"]
    assert ctx.profiles.get_setting("openai").status == "auth_rejected"


def test_an_unknown_provider_is_404_naming_the_known_ones(client: TestClient) -> None:
    for answer in (
        client.get("/api/settings/nope"),
        client.put("/api/settings/nope", json={"default_model": "m"}),
        client.post("/api/settings/nope/test"),
    ):
        message = failure(answer, 404, "NOT_FOUND")
        assert message == f"Unknown provider 'nope'. Choose one of: {KNOWN}."


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"endpoint_url": "ftp://x"}, "Endpoint URL 'ftp://x' is not valid"),
        ({"endpoint_url": "http://h/v1?key=1"}, "has a query string or fragment"),
        ({"api_key": "two words"}, "The API key contains spaces"),
        ({"api_key": 12345}, "api_key: Input should be a valid string"),
        ({"clear_key": "maybe"}, "clear_key: Input should be a valid boolean"),
        ({"endpoint": "http://h"}, "endpoint: Extra inputs are not permitted"),
    ],
)
def test_a_bad_setting_is_refused_and_nothing_stored(
    ctx: AppContext, client: TestClient, body: dict, says: str
) -> None:
    answer = client.put("/api/settings/openai", json=body)
    assert says in failure(answer, 422, "VALIDATION_ERROR")
    assert ctx.profiles.get_setting("openai").stored_url is None


# ----- no key ever leaves ---------------------------------------------------------------


def test_no_api_key_is_in_any_answer(ctx: AppContext, client: TestClient) -> None:
    answers = [
        client.put("/api/settings/openai", json={"api_key": KEY, "endpoint_url": "http://a/v1"}),
        client.put("/api/settings/anthropic", json={"api_key": OTHER_KEY}),
    ]
    made = client.post(
        "/api/profiles",
        json={"name": "Keyed", "provider": "openai", "url": "http://b/v1", "api_key": KEY},
    )
    profile_id = made.json()["data"]["id"]
    answers += [
        made,
        client.put(f"/api/profiles/{profile_id}", json={"name": "Keyed 2"}),
        client.get("/api/settings"),
        client.get("/api/settings/openai"),
        client.get("/api/settings/anthropic"),
        client.get("/api/profiles"),
        client.get(f"/api/profiles/{profile_id}"),
        client.get("/api/health"),
        client.post("/api/profiles", json={"name": "Keyed 2", "provider": "openai"}),  # refused
    ]
    assert ctx.profiles.credentials("openai").api_key == KEY  # stored, and only stored
    for answer in answers:
        assert KEY not in answer.text and OTHER_KEY not in answer.text, answer.request.url
        assert KEY[3:-4] not in answer.text
