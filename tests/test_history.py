"""HistoryService on SQLite and PostgreSQL: every filter narrows, pages add up, text
search ignores case, and a bad filter value is refused with the field it came from.

Generations are created by ComfyUI.generator.generate (not run: no server is needed for a
pending row); conversations by ChatService, replies streamed from a fake OpenAI server.
Rows are then dated (and some marked finished) with a plain UPDATE, as time would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from spoonfeeder.chat import ChatTarget
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration, Conversation
from spoonfeeder.errors import ValidationError
from spoonfeeder.history import (
    ConversationFilters,
    GenerationFilters,
    HistoryService,
    generation_conditions,
)
from spoonfeeder.providers.base import ChatMessage
from spoonfeeder.search import MAX_TERM_CHARS
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve

KEY = "sk-history-test"
BIG_SEED = 2**53 - 5


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def set_generation(ctx: AppContext, generation_id: uuid.UUID, **values: Any) -> None:
    with transaction(ctx.sessions) as session:
        session.execute(
            update(ComfyUIGeneration).where(ComfyUIGeneration.id == generation_id).values(**values)
        )


def generate(ctx: AppContext, session_id: Any, created: str | None, **values: Any) -> uuid.UUID:
    view = ctx.comfyui.generator.generate(session_id, values, check_server=False)[0]
    if created:
        set_generation(ctx, view.id, created_at=day(created))
    return view.id


@pytest.fixture
def seeded(ctx: AppContext) -> dict[str, Any]:
    """Four generations in two sessions (and one outside any), oldest first."""
    foxes = ctx.comfyui.sessions.create("Foxes").id
    cities = ctx.comfyui.sessions.create("Cities").id
    ids = {
        "g1": generate(
            ctx,
            foxes,
            "2026-01-05T10:00",
            prompt="A Red Fox in snow",
            negative_prompt="blurry",
            width=512,
            height=512,
            steps=20,
            cfg=7.0,
            sampler_name="euler",
            scheduler="normal",
            checkpoint="sd15.safetensors",
            seed=111,
        ),
        "g2": generate(
            ctx,
            foxes,
            "2026-02-10T10:00",
            prompt="a red FOX at dusk",
            negative_prompt="text",
            width=768,
            height=512,
            steps=30,
            cfg=4.5,
            sampler_name="dpmpp_2m",
            scheduler="karras",
            checkpoint="sdxl.safetensors",
            seed=222,
        ),
        "g3": generate(
            ctx,
            cities,
            "2026-03-15T23:30",
            prompt="neon city, 100% night_time",
            negative_prompt="",
            width=512,
            height=768,
            steps=10,
            cfg=2.0,
            sampler_name="euler",
            scheduler="karras",
            checkpoint="sdxl.safetensors",
            seed=BIG_SEED,
        ),
        "g4": generate(
            ctx,
            None,
            None,  # now: the newest
            prompt="mountain lake",
            negative_prompt="Fox, people",
            width=1024,
            height=1024,
            steps=25,
            cfg=7.0,
            sampler_name="heun",
            scheduler="normal",
            checkpoint="sd15.safetensors",
            seed=444,
        ),
    }
    set_generation(ctx, ids["g2"], status="completed")
    set_generation(ctx, ids["g3"], status="failed", error="out of memory")
    return {**ids, "foxes": foxes, "cities": cities}


def found(history: HistoryService, seeded: dict[str, Any], **filters: Any) -> list[str]:
    """The names (g1…g4) of the generations a search returns, in its order."""
    names = {v: k for k, v in seeded.items()}
    page = history.search_generations(GenerationFilters(**filters))
    assert page.total == len(page.items)
    return [names[g.id] for g in page.items]


# ----- generations --------------------------------------------------------------------


def test_every_generation_filter_narrows_the_results(
    ctx: AppContext, seeded: dict[str, Any]
) -> None:
    h = ctx.history
    assert found(h, seeded) == ["g4", "g3", "g2", "g1"]  # newest first
    # Text: prompt or negative prompt, any case.
    assert found(h, seeded, text="fox") == ["g4", "g2", "g1"]
    assert found(h, seeded, text="  RED fox ") == ["g2", "g1"]
    assert found(h, seeded, text="Neon CITY") == ["g3"]
    assert found(h, seeded, status="completed") == ["g2"]
    assert found(h, seeded, status="failed") == ["g3"]
    assert found(h, seeded, status="pending") == ["g4", "g1"]
    assert found(h, seeded, session_id=str(seeded["foxes"])) == ["g2", "g1"]
    assert found(h, seeded, session_id=seeded["cities"]) == ["g3"]
    assert found(h, seeded, checkpoint="sdxl.safetensors") == ["g3", "g2"]
    assert found(h, seeded, sampler="euler") == ["g3", "g1"]
    assert found(h, seeded, scheduler="karras") == ["g3", "g2"]
    assert found(h, seeded, width=512) == ["g3", "g1"]
    assert found(h, seeded, height="512") == ["g2", "g1"]
    assert found(h, seeded, steps_min=20) == ["g4", "g2", "g1"]
    assert found(h, seeded, steps_max="20") == ["g3", "g1"]
    assert found(h, seeded, steps_min=20, steps_max=25.0) == ["g4", "g1"]
    assert found(h, seeded, cfg_min="4.5", cfg_max=7) == ["g4", "g2", "g1"]
    assert found(h, seeded, cfg_max=4.5) == ["g3", "g2"]
    assert found(h, seeded, seed="222") == ["g2"]
    assert found(h, seeded, seed=str(BIG_SEED)) == ["g3"]  # exact past float precision
    # A bare end date includes that whole day (g3 is at 23:30).
    assert found(h, seeded, created_from="2026-02-01", created_to="2026-03-15") == ["g3", "g2"]
    assert found(h, seeded, created_from="2026-01-05 12:00") == ["g4", "g3", "g2"]
    # Filters combine; blanks are no filter.
    assert found(h, seeded, text="fox", checkpoint="sdxl.safetensors", status="") == ["g2"]
    assert found(h, seeded, sampler="euler", width=512, scheduler=None, seed=" ") == ["g3", "g1"]
    assert found(h, seeded, text="fox", sampler="heun", steps_max=20) == []


def test_text_search_takes_wildcards_literally(ctx: AppContext, seeded: dict[str, Any]) -> None:
    assert found(ctx.history, seeded, text="100%") == ["g3"]
    assert found(ctx.history, seeded, text="_") == ["g3"]
    assert found(ctx.history, seeded, text="%") == ["g3"]


def test_a_search_term_longer_than_a_search_is_refused_by_name(
    ctx: AppContext, seeded: dict[str, Any]
) -> None:
    # SQLite refused a megabyte LIKE pattern with its own words; now every search says it.
    longest = "fox " + "x" * (MAX_TERM_CHARS - 4)
    assert found(ctx.history, seeded, text=longest) == []  # the longest term still searches
    too_long = "x" * 1_000_000
    with pytest.raises(ValidationError, match="Search: at most 500 characters, got 1,000,000"):
        ctx.history.search_generations(GenerationFilters(text=too_long))
    with pytest.raises(ValidationError, match="at most 500 characters"):
        ctx.history.search_conversations(ConversationFilters(text=too_long))
    with pytest.raises(ValidationError, match="at most 500 characters"):
        ctx.chat.list_conversations(too_long)
    assert ctx.chat.list_conversations(" " * 2000) == ctx.chat.list_conversations("")  # blank


def test_pages_add_up_to_the_total(ctx: AppContext, seeded: dict[str, Any]) -> None:
    names = {v: k for k, v in seeded.items()}
    pages = [ctx.history.search_generations(limit=3, offset=offset) for offset in (0, 3, 6)]
    assert [p.total for p in pages] == [4, 4, 4]
    assert [[names[g.id] for g in p.items] for p in pages] == [["g4", "g3", "g2"], ["g1"], []]
    fox = ctx.history.search_generations(GenerationFilters(text="fox"), limit=2, offset=2)
    assert fox.total == 3 and [names[g.id] for g in fox.items] == ["g1"]
    view = fox.items[0]
    assert isinstance(view, GenerationView)
    assert (view.prompt, view.seed, view.checkpoint, view.cfg) == (
        "A Red Fox in snow",
        111,
        "sd15.safetensors",
        7.0,
    )


@pytest.mark.parametrize(
    ("filters", "field", "message"),
    [
        ({"created_from": "yesterday"}, "created_from", "Created from: 'yesterday' is not a date"),
        ({"created_to": "2026-13-01"}, "created_to", "Created to: '2026-13-01' is not a date"),
        (
            {"created_from": "2026-03-01", "created_to": "2026-02-01"},
            "created_from",
            "Created: the start date is not before",
        ),
        ({"steps_min": "ten"}, "steps", "Steps (min): 'ten' is not a number"),
        ({"steps_min": 30, "steps_max": 20}, "steps", "Steps: the lower bound (30) is above"),
        ({"cfg_max": "high"}, "cfg", "CFG (max): 'high' is not a number"),
        ({"cfg_min": 8, "cfg_max": "7.5"}, "cfg", "CFG: the lower bound"),
        ({"seed": "1.5"}, "seed", "Seed: '1.5' is not a whole number"),
        ({"width": "wide"}, "width", "Width: 'wide' is not a number"),
        ({"status": "done"}, "status", "Status: 'done' is not one of pending"),
        ({"session_id": "my session"}, "session", "Session: 'my session' is not a session id"),
    ],
)
def test_bad_filters_name_their_field(filters: dict[str, Any], field: str, message: str) -> None:
    # Pure: the filters are checked before any SQL is built.
    with pytest.raises(ValidationError) as caught:
        generation_conditions(GenerationFilters(**filters))
    assert caught.value.field == field
    assert str(caught.value).startswith(message)


def test_a_bad_filter_reaches_the_caller_as_is(ctx: AppContext) -> None:
    with pytest.raises(ValidationError, match="Steps: the lower bound") as caught:
        ctx.history.search_generations(GenerationFilters(steps_min="40", steps_max=10))
    assert caught.value.field == "steps"


# ----- conversations ----------------------------------------------------------------------


@pytest.fixture
def openai(ctx: AppContext) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(key=KEY, tokens=["Try", " the", " Alps"], models=["gpt-4o-mini", "gpt-4o"])
    with serve(fake.app) as url:
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=url + "/v1")
        yield fake


@pytest.fixture
def conversations(ctx: AppContext, openai: FakeOpenAI) -> dict[str, uuid.UUID]:
    """Three conversations: two answered by OpenAI models, one only seeded; oldest first."""
    chat = ctx.chat
    trip = chat.create_conversation("Trip planning").id
    chat.send(trip, "Where can I see a FOX?", ChatTarget("openai", "gpt-4o-mini")).wait(10)
    code = chat.create_conversation("Python help").id
    chat.send(code, "Explain decorators", ChatTarget("openai", "gpt-4o")).wait(10)
    notes = chat.create_conversation("Imported notes").id
    chat.seed_messages(
        notes,
        [ChatMessage("user", "a note about snow foxes"), ChatMessage("assistant", "noted")],
    )
    for cid, when in ((trip, "2026-01-10T09:00"), (code, "2026-02-20T09:00"), (notes, None)):
        if when:
            with transaction(ctx.sessions) as session:
                session.execute(
                    update(Conversation).where(Conversation.id == cid).values(updated_at=day(when))
                )
    return {"trip": trip, "code": code, "notes": notes}


def titles(ctx: AppContext, **filters: Any) -> list[str]:
    page = ctx.history.search_conversations(ConversationFilters(**filters))
    assert page.total == len(page.items)
    return [c.title for c in page.items]


def test_conversation_filters(ctx: AppContext, conversations: dict[str, uuid.UUID]) -> None:
    assert titles(ctx) == ["Imported notes", "Python help", "Trip planning"]
    # Title or message content, any case (the Chat tab's own search).
    assert titles(ctx, text="fox") == ["Imported notes", "Trip planning"]
    assert titles(ctx, text="PYTHON") == ["Python help"]
    assert titles(ctx, text="the alps") == ["Python help", "Trip planning"]  # the replies
    assert titles(ctx, provider="openai") == ["Python help", "Trip planning"]
    assert titles(ctx, provider="anthropic") == []
    assert titles(ctx, model="gpt-4o") == ["Python help"]
    assert titles(ctx, provider="openai", model="gpt-4o-mini", text="fox") == ["Trip planning"]
    assert titles(ctx, active_from="2026-02-01", active_to="2026-02-20") == ["Python help"]
    assert titles(ctx, active_to="2026-01-31") == ["Trip planning"]
    page = ctx.history.search_conversations(limit=2, offset=2)
    assert page.total == 3 and [c.title for c in page.items] == ["Trip planning"]
    summary = ctx.history.search_conversations(ConversationFilters(text="decorators")).items[0]
    assert (summary.provider, summary.model, summary.message_count) == ("openai", "gpt-4o", 2)


def test_bad_conversation_filters(ctx: AppContext) -> None:
    with pytest.raises(ValidationError, match="Active from: 'last week' is not a date") as caught:
        ctx.history.search_conversations(ConversationFilters(active_from="last week"))
    assert caught.value.field == "active_from"
    with pytest.raises(ValidationError, match="Active: the start date is not before"):
        ctx.history.search_conversations(
            ConversationFilters(active_from="2026-05-02", active_to="2026-05-01")
        )


# ----- everything, and the dropdowns ---------------------------------------------------------


def test_timeline_and_facets(
    ctx: AppContext, seeded: dict[str, Any], conversations: dict[str, uuid.UUID]
) -> None:
    everything = ctx.history.timeline()
    assert everything.total == 7
    when = [e.when for e in everything.items]
    assert when == sorted(when, reverse=True)
    assert {e.kind for e in everything.items[:2]} == {"generation", "conversation"}  # both new
    assert everything.items[-1].id == seeded["g1"]  # January 5th: the oldest of all

    foxes = ctx.history.timeline("fox")
    assert foxes.total == 5
    assert {e.id for e in foxes.items[:2]} == {seeded["g4"], conversations["notes"]}
    assert [e.id for e in foxes.items][2:] == [seeded["g2"], conversations["trip"], seeded["g1"]]
    second = ctx.history.timeline("fox", limit=2, offset=2)
    assert second.total == 5
    assert [e.id for e in second.items] == [seeded["g2"], conversations["trip"]]
    dated = ctx.history.timeline(since="2026-01-06", until="2026-02-28")
    assert [e.id for e in dated.items] == [
        conversations["code"],
        seeded["g2"],
        conversations["trip"],
    ]
    with pytest.raises(ValidationError, match="Created from"):
        ctx.history.timeline(since="soon")

    facets = ctx.history.facets()
    assert facets.checkpoints == ["sd15.safetensors", "sdxl.safetensors"]
    assert facets.samplers == ["dpmpp_2m", "euler", "heun"]
    assert facets.schedulers == ["karras", "normal"]
    assert facets.statuses == ["completed", "failed", "pending"]
    assert facets.providers == ["openai"]
    assert facets.models == ["gpt-4o", "gpt-4o-mini"]
    assert sorted(s.name for s in facets.sessions) == ["Cities", "Foxes"]


def test_empty_history(ctx: AppContext) -> None:
    assert ctx.history.search_generations().total == 0
    assert ctx.history.search_conversations().items == []
    assert ctx.history.timeline().total == 0
    facets = ctx.history.facets()
    assert facets.checkpoints == [] and facets.providers == [] and facets.sessions == []
