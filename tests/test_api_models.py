"""/api/models against the fake Ollama, through the real ollama client: list, details,
load, unload, delete, and a pull streamed as server-sent events. Model names keep their
':' and '/' in the path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from spoonfeeder.api.app import create_api
from spoonfeeder.context import AppContext
from tests.fakes.ollama_server import DEFAULT_LAYERS, FakeOllama
from tests.fakes.server import closed_port_url, serve
from tests.launch import api_client, sse_events

NESTED = "library/tiny:1b"  # a namespace and a tag: '/' and ':' in the path


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama(models=["llama3.2:latest", NESTED])


@pytest.fixture
def ollama(ctx: AppContext, fake: FakeOllama) -> Iterator[FakeOllama]:
    """The fake, as the Ollama setting's server."""
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        yield fake


def names(models: list[dict[str, Any]]) -> list[str]:
    return [m["name"] for m in models]


@pytest.mark.usefixtures("ollama")
def test_list_shows_installed_and_loaded_models(ctx: AppContext) -> None:
    with api_client(ctx) as client:
        answer = client.get("/api/models")
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True
    assert names(body["data"]["installed"]) == [NESTED, "llama3.2:latest"]
    tiny = body["data"]["installed"][0]
    assert (tiny["family"], tiny["parameter_size"], tiny["quantization"]) == (
        "llama",
        "3.2B",
        "Q4_K_M",
    )
    assert body["data"]["loaded"] == []


def test_load_and_unload_a_name_with_a_namespace_and_tag(
    ctx: AppContext, ollama: FakeOllama
) -> None:
    with api_client(ctx) as client:
        loaded = client.post(f"/api/models/{NESTED}/load")
        assert loaded.status_code == 200
        assert names(loaded.json()["data"]["loaded"]) == [NESTED]
        assert list(ollama.loaded) == [NESTED]
        assert ollama.bodies("/api/generate")[-1]["keep_alive"] == -1  # until unloaded

        unloaded = client.post(f"/api/models/{NESTED}/unload")
    assert unloaded.status_code == 200
    assert unloaded.json()["data"]["loaded"] == []
    assert ollama.loaded == {}
    assert NESTED in names(unloaded.json()["data"]["installed"])  # still installed


@pytest.mark.usefixtures("ollama")
def test_details_of_a_model(ctx: AppContext) -> None:
    with api_client(ctx) as client:
        answer = client.get(f"/api/models/{NESTED}")
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["name"] == NESTED
    assert data["details"]["family"] == "llama"
    assert data["capabilities"] == ["completion"]


def test_delete_removes_the_model(ctx: AppContext, ollama: FakeOllama) -> None:
    with api_client(ctx) as client:
        answer = client.delete(f"/api/models/{NESTED}")
        again = client.delete(f"/api/models/{NESTED}")
    assert answer.status_code == 200
    assert names(answer.json()["data"]["installed"]) == ["llama3.2:latest"]
    assert NESTED not in ollama.installed
    # Ollama's own 404: the request named what the server does not have.
    assert again.status_code == 422
    assert again.json()["code"] == "PROVIDER_REJECTED"
    assert NESTED in again.json()["error"] and "nothing to delete" in again.json()["error"]


@pytest.mark.usefixtures("ollama")
def test_unknown_model_and_bad_names_are_refused(ctx: AppContext) -> None:
    with api_client(ctx) as client:
        missing = client.post("/api/models/nope:7b/load")
        spaced = client.post("/api/models/two words/load")
        odd = client.post("/api/models/what$ever/unload")
    assert missing.status_code == 422
    assert missing.json()["code"] == "PROVIDER_REJECTED"
    assert "'nope:7b' is not installed" in missing.json()["error"]
    assert spaced.status_code == 422
    assert spaced.json() == {
        "success": False,
        "error": "Model names cannot contain spaces: 'two words'",
        "code": "VALIDATION_ERROR",
    }
    assert odd.status_code == 422 and "$" in odd.json()["error"]


def test_pull_streams_progress_then_done(ctx: AppContext, ollama: FakeOllama) -> None:
    with api_client(ctx) as client:
        answer = client.post(f"/api/models/{'library/new:3b'}/pull")
        listed = client.get("/api/models")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"progress"}
    steps = [data for kind, data in events if kind == "progress"]
    assert steps[0]["status"] == "pulling manifest"
    assert len(steps) > len(DEFAULT_LAYERS)  # one event per line Ollama sent
    percents = [s["percent"] for s in steps]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert steps[-1]["done"] is True and len(steps[-1]["layers"]) == len(DEFAULT_LAYERS)
    size = sum(total for _, total in DEFAULT_LAYERS)
    assert events[-1][1] == {"name": "library/new:3b", "total_bytes": size}
    assert "library/new:3b" in names(listed.json()["data"]["installed"])


def test_a_pull_failing_midway_ends_with_an_error_event(ctx: AppContext) -> None:
    fake = FakeOllama(pullable=["llama3.2"])
    with serve(fake.app) as url, api_client(ctx) as client:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        answer = client.post("/api/models/no-such-model:1b/pull")
    assert answer.status_code == 200  # the pull had begun: its end is an event
    events = sse_events(answer.text)
    assert [kind for kind, _ in events] == ["progress", "error"]
    error = events[-1][1]
    assert error["success"] is False and error["code"] == "PROVIDER_REJECTED"
    assert "could not find model 'no-such-model:1b'" in error["error"]
    assert "no-such-model:1b" not in fake.installed


def test_a_connection_cut_mid_pull_is_an_error_event(ctx: AppContext) -> None:
    fake = FakeOllama(fault="break_midway", fault_after=3)
    with serve(fake.app) as url, api_client(ctx) as client:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        answer = client.post("/api/models/llama3.2:1b/pull")
    events = sse_events(answer.text)
    assert [kind for kind, _ in events] == ["progress"] * 3 + ["error"]
    assert events[-1][1]["code"] == "PROVIDER_UNAVAILABLE"
    assert "pull was cut off" in events[-1][1]["error"]


def test_closing_the_pull_stream_stops_the_download(ctx: AppContext) -> None:
    fake = FakeOllama(pull_steps=500, token_delay=0.01)
    with serve(fake.app) as ollama_url, serve(create_api(ctx)) as api_url:
        ctx.profiles.save_setting("ollama", endpoint_url=ollama_url)
        with httpx.stream("POST", f"{api_url}/api/models/llama3.2:1b/pull", timeout=10) as answer:
            assert answer.status_code == 200
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    break  # the first progress event; then the client goes away
        assert fake.stream_closed.wait(5), "the pull's stream to Ollama was not closed"
    assert "llama3.2:1b" not in fake.installed


def test_an_unreachable_server_is_a_503_envelope_not_a_stream(ctx: AppContext) -> None:
    ctx.profiles.save_setting("ollama", endpoint_url=closed_port_url())
    with api_client(ctx) as client:
        answers = {
            "list": client.get("/api/models"),
            "load": client.post("/api/models/llama3.2/load"),
            "pull": client.post("/api/models/llama3.2/pull"),
            "delete": client.delete("/api/models/llama3.2"),
        }
    for what, answer in answers.items():
        assert answer.status_code == 503, what
        assert answer.headers["content-type"] == "application/json", what
        assert answer.json()["code"] == "PROVIDER_UNAVAILABLE"
        assert "not reachable" in answer.json()["error"]


def test_a_bad_name_to_pull_is_refused_before_any_request(
    ctx: AppContext, ollama: FakeOllama
) -> None:
    with api_client(ctx) as client:
        answer = client.post("/api/models/bad name/pull")
    assert answer.status_code == 422
    assert answer.json()["code"] == "VALIDATION_ERROR"
    assert ollama.bodies("/api/pull") == []


def test_profile_id_picks_an_ollama_profile(ctx: AppContext) -> None:
    second = FakeOllama(models=["gemma3:4b"])
    with serve(second.app) as url, api_client(ctx) as client:
        profile = ctx.profiles.create_profile("Second box", "ollama", url)
        other = ctx.profiles.create_profile("Cloud", "openai", None, "sk-x")
        listed = client.get("/api/models", params={"profile_id": str(profile.id)})
        loaded = client.post("/api/models/gemma3:4b/load", params={"profile_id": str(profile.id)})
        not_ollama = client.get("/api/models", params={"profile_id": str(other.id)})
        unknown = client.get(
            "/api/models", params={"profile_id": "00000000-0000-0000-0000-000000000000"}
        )
    assert names(listed.json()["data"]["installed"]) == ["gemma3:4b"]
    assert names(loaded.json()["data"]["loaded"]) == ["gemma3:4b"]
    assert not_ollama.status_code == 422
    assert not_ollama.json()["error"] == "Profile 'Cloud' is a openai profile, not an Ollama one"
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
