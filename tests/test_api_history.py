"""/api/history through the REST face, on SQLite and PostgreSQL: the History tab's filters
as query parameters return the matching rows, pages carry the real totals, a bad filter
is refused naming it, and the facets list what is actually there.

Rows are made through the services as tests/test_history.py makes them: generations by
ComfyUI.generator.generate (not run: a pending row needs no server), conversations by
ChatService with replies from a fake OpenAI server; then dated with a plain UPDATE."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from spoonfeeder.chat import ChatTarget
from spoonfeeder.context import AppContext
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration, Conversation
from spoonfeeder.providers.base import ChatMessage
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import api_client

KEY = "sk-history-rest-test"
BIG_SEED = 2**53 - 5  # near the top of a seed: must stay exact


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def generate(ctx: AppContext, session_id: Any, created: str | None, **values: Any) -> str:
    view = ctx.comfyui.generator.generate(session_id, values, check_server=False)[0]
    if created:
        set_generation(ctx, view.id, created_at=day(created))
    return str(view.id)


def set_generation(ctx: AppContext, generation_id: uuid.UUID, **values: Any) -> None:
    with transaction(ctx.sessions) as session:
        session.execute(
            update(ComfyUIGeneration).where(ComfyUIGeneration.id == generation_id).values(**values)
        )


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with api_client(ctx) as c:
        yield c


@pytest.fixture
def generations(ctx: AppContext) -> dict[str, str]:
    """Four generations, oldest first: two in Foxes, one in Cities, one in no session."""
    foxes = ctx.comfyui.sessions.create("Foxes").id
    cities = ctx.comfyui.sessions.create("Cities").id
    common = {"negative_prompt": "", "scheduler": "normal", "cfg": 7.0}
    ids = {
        "g1": generate(
            ctx,
            foxes,
            "2020-01-05T10:00",
            **common,
            prompt="A Red Fox in snow",
            width=512,
            height=512,
            steps=20,
            sampler_name="euler",
            checkpoint="sd15.safetensors",
            seed=111,
        ),
        "g2": generate(
            ctx,
            foxes,
            "2020-02-10T10:00",
            **{**common, "cfg": 4.5, "scheduler": "karras"},
            prompt="a red FOX at dusk",
            width=768,
            height=512,
            steps=30,
            sampler_name="dpmpp_2m",
            checkpoint="sdxl.safetensors",
            seed=222,
        ),
        "g3": generate(
            ctx,
            cities,
            "2020-03-15T23:30",
            **{**common, "cfg": 2.0},
            prompt="neon city at night",
            width=512,
            height=768,
            steps=10,
            sampler_name="euler",
            checkpoint="sdxl.safetensors",
            seed=BIG_SEED,
        ),
        "g4": generate(
            ctx,
            None,
            None,  # now: the newest
            **{**common, "negative_prompt": "fox, people"},
            prompt="mountain lake",
            width=1024,
            height=1024,
            steps=25,
            sampler_name="heun",
            checkpoint="sd15.safetensors",
            seed=444,
        ),
    }
    set_generation(ctx, uuid.UUID(ids["g2"]), status="completed")
    set_generation(ctx, uuid.UUID(ids["g3"]), status="failed", error="out of memory")
    return {**ids, "foxes": str(foxes), "cities": str(cities)}


@pytest.fixture
def conversations(ctx: AppContext) -> Iterator[dict[str, str]]:
    """Three conversations, oldest first: two answered by OpenAI models, one imported."""
    fake = FakeOpenAI(key=KEY, tokens=["See", " the", " Alps"], models=["gpt-4o-mini", "gpt-4o"])
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        chat = ctx.chat
        trip = chat.create_conversation("Trip planning").id
        chat.send(trip, "Where can I see a FOX?", ChatTarget("openai", "gpt-4o-mini")).wait(10)
        code = chat.create_conversation("Python help").id
        chat.send(code, "Explain decorators", ChatTarget("openai", "gpt-4o")).wait(10)
    notes = chat.create_conversation("Imported notes").id
    chat.seed_messages(notes, [ChatMessage("user", "snow foxes"), ChatMessage("assistant", "ok")])
    with transaction(ctx.sessions) as session:
        for cid, when in ((trip, "2020-01-10T09:00"), (code, "2020-02-20T09:00")):
            session.execute(
                update(Conversation).where(Conversation.id == cid).values(updated_at=day(when))
            )
    yield {"trip": str(trip), "code": str(code), "notes": str(notes)}


def listed(client: TestClient, path: str, **params: Any) -> tuple[list[dict], dict]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    return body["data"], body["pagination"]


def facets(client: TestClient) -> dict[str, Any]:
    answer = client.get("/api/history/facets")
    assert answer.status_code == 200 and answer.json()["success"] is True
    return answer.json()["data"]


def refused(client: TestClient, path: str, **params: Any) -> str:
    answer = client.get(path, params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["success"] is False and body["code"] == "VALIDATION_ERROR"
    return body["error"]


# ----- generations --------------------------------------------------------------------------


def test_each_generation_filter_returns_the_matching_rows(
    client: TestClient, generations: dict[str, str]
) -> None:
    names = {v: k for k, v in generations.items()}

    def found(**params: Any) -> list[str]:
        items, pages = listed(client, "/api/history/generations", **params)
        assert pages["total"] == len(items)
        return [names[g["id"]] for g in items]

    assert found() == ["g4", "g3", "g2", "g1"]  # newest first
    assert found(text="fox") == ["g4", "g2", "g1"]  # the prompt or the negative, any case
    assert found(text=" RED fox ") == ["g2", "g1"]
    assert found(status="failed") == ["g3"]
    assert found(status="pending") == ["g4", "g1"]
    assert found(session_id=generations["foxes"]) == ["g2", "g1"]
    assert found(checkpoint="sdxl.safetensors") == ["g3", "g2"]
    assert found(sampler="euler") == ["g3", "g1"]
    assert found(scheduler="karras") == ["g2"]
    assert found(width=512) == ["g3", "g1"]
    assert found(height=512) == ["g2", "g1"]
    assert found(steps_min=20, steps_max=25) == ["g4", "g1"]
    assert found(cfg_min=4.5, cfg_max=7) == ["g4", "g2", "g1"]
    assert found(seed=BIG_SEED) == ["g3"]
    assert found(created_from="2020-02-01", created_to="2020-03-15") == ["g3", "g2"]
    assert found(created_from="2020-01-05 12:00", created_to="2020-12-31") == ["g3", "g2"]
    assert found(text="fox", checkpoint="sd15.safetensors", sampler="euler") == ["g1"]
    assert found(text="fox", sampler="heun", steps_max=20) == []


def test_generation_pages_carry_the_total(client: TestClient, generations: dict[str, str]) -> None:
    items, pages = listed(client, "/api/history/generations", limit=3, page=2)
    assert pages == {"page": 2, "limit": 3, "total": 4, "pages": 2}
    assert [g["id"] for g in items] == [generations["g1"]]
    first = listed(client, "/api/history/generations", limit=3)[0][0]
    assert first["id"] == generations["g4"] and first["prompt"] == "mountain lake"
    big = listed(client, "/api/history/generations", seed=BIG_SEED)[0][0]
    assert big["seed"] == BIG_SEED and big["checkpoint"] == "sdxl.safetensors"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"width": "wide"}, "width: Input should be a valid integer"),
        ({"cfg_max": "high"}, "cfg_max: Input should be a valid number"),
        ({"created_from": "yesterday"}, "Created from: 'yesterday' is not a date"),
        ({"created_to": "2020-13-01"}, "Created to: '2020-13-01' is not a date"),
        ({"steps_min": 30, "steps_max": 20}, "Steps: the lower bound (30) is above"),
        ({"status": "done"}, "Status: 'done' is not one of pending"),
        ({"session_id": "my session"}, "Session: 'my session' is not a session id"),
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_generation_filter_is_refused_by_name(
    client: TestClient, params: dict, says: str
) -> None:
    assert says in refused(client, "/api/history/generations", **params)


# ----- conversations ------------------------------------------------------------------------


def test_each_conversation_filter_returns_the_matching_rows(
    client: TestClient, conversations: dict[str, str]
) -> None:
    def titles(**params: Any) -> list[str]:
        items, pages = listed(client, "/api/history/conversations", **params)
        assert pages["total"] == len(items)
        return [c["title"] for c in items]

    assert titles() == ["Imported notes", "Python help", "Trip planning"]
    assert titles(text="fox") == ["Imported notes", "Trip planning"]  # title or messages
    assert titles(text="the ALPS") == ["Python help", "Trip planning"]  # the replies too
    assert titles(provider="openai") == ["Python help", "Trip planning"]
    assert titles(provider="anthropic") == []
    assert titles(model="gpt-4o") == ["Python help"]
    assert titles(provider="openai", model="gpt-4o-mini", text="fox") == ["Trip planning"]
    assert titles(active_from="2020-02-01", active_to="2020-02-20") == ["Python help"]
    items, pages = listed(client, "/api/history/conversations", limit=2, page=2)
    assert pages == {"page": 2, "limit": 2, "total": 3, "pages": 2}
    assert [c["id"] for c in items] == [conversations["trip"]]
    code = listed(client, "/api/history/conversations", text="decorators")[0][0]
    assert (code["provider"], code["model"], code["message_count"]) == ("openai", "gpt-4o", 2)
    assert "Active from: 'last week' is not a date" in refused(
        client, "/api/history/conversations", active_from="last week"
    )


# ----- the timeline and the facets ---------------------------------------------------------


def test_timeline_and_facets(
    client: TestClient, generations: dict[str, str], conversations: dict[str, str]
) -> None:
    items, pages = listed(client, "/api/history")
    assert pages["total"] == 7
    assert items[-1]["kind"] == "generation" and items[-1]["generation"]["id"] == generations["g1"]
    assert items[-1]["conversation"] is None

    def ids(**params: Any) -> list[str]:
        found, _ = listed(client, "/api/history", **params)
        return [(e["generation"] or e["conversation"])["id"] for e in found]

    dated = ids(since="2020-01-06", until="2020-02-28")
    assert dated == [conversations["code"], generations["g2"], conversations["trip"]]
    second, pages = listed(client, "/api/history", text="fox", limit=2, page=2)
    assert pages == {"page": 2, "limit": 2, "total": 5, "pages": 3}
    assert [e["kind"] for e in second] == ["generation", "conversation"]  # g2, then the trip
    assert "Created from: 'soon' is not a date" in refused(client, "/api/history", since="soon")

    choices = facets(client)
    assert choices["checkpoints"] == ["sd15.safetensors", "sdxl.safetensors"]
    assert choices["samplers"] == ["dpmpp_2m", "euler", "heun"]
    assert choices["schedulers"] == ["karras", "normal"]
    assert choices["statuses"] == ["completed", "failed", "pending"]
    assert choices["providers"] == ["openai"] and choices["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert sorted(s["name"] for s in choices["sessions"]) == ["Cities", "Foxes"]


def test_an_empty_history(client: TestClient) -> None:
    for path in ("/api/history", "/api/history/generations", "/api/history/conversations"):
        items, pages = listed(client, path)
        assert items == [] and pages == {"page": 1, "limit": 20, "total": 0, "pages": 1}
    empty = facets(client)
    assert empty["sessions"] == [] and empty["checkpoints"] == [] and empty["providers"] == []
