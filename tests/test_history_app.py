"""The History tab through the launched app: search, page, pick one, see why a filter is bad.

One generation really ran (against the fake ComfyUI, so it has images on disk); another
only waits in the queue; a conversation was seeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from spoonfeeder.context import AppContext
from spoonfeeder.providers.base import ChatMessage
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.server import serve
from tests.launch import launched, sqlite_app

CKPT = "tiny-random-sd15.safetensors"
NO_FILTERS = {
    "text": "",
    "status": "",
    "session": "",
    "checkpoint": "",
    "sampler": "",
    "scheduler": "",
    "width": "",
    "height": "",
    "steps_min": "",
    "steps_max": "",
    "cfg_min": "",
    "cfg_max": "",
    "seed": "",
    "created_from": "",
    "created_to": "",
    "page": 1,
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AppContext, dict]]:
    fake = FakeComfyUI()
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    data = tmp_path_factory.mktemp("history-app")
    with serve(fake.app) as url, sqlite_app(data, comfyui_url=url) as ctx:
        ctx.comfyui.runner.timings.receive_timeout = 0.05
        ctx.comfyui.runner.timings.poll_interval = 0.05
        session = ctx.comfyui.sessions.create("Foxes")
        base = {"checkpoint": CKPT, "width": 64, "height": 64, "steps": 3, "cfg": 6.5}
        ran = ctx.comfyui.generator.generate(
            session.id, {**base, "prompt": "A Red Fox", "seed": 7}
        )[0]
        done = ctx.comfyui.runner.run(ran.id)  # what the worker would do
        assert done.status == "completed" and done.outputs, done.error
        waiting = ctx.comfyui.generator.generate(
            None, {**base, "prompt": "a quiet lake", "steps": 12, "seed": 8}, check_server=False
        )[0]
        conv = ctx.chat.create_conversation("Snow trip")
        ctx.chat.seed_messages(
            conv.id,
            [
                ChatMessage("user", "Where do arctic foxes live?"),
                ChatMessage("assistant", "Up north."),
            ],
        )
        ids = {"ran": str(done.id), "waiting": str(waiting.id), "conv": str(conv.id)}
        with launched(ctx) as app_url:
            yield Client(app_url, verbose=False), ctx, ids


def search(client: Client, **filters: Any) -> tuple[str, list[list[Any]], list[dict]]:
    summary, table, gallery = client.predict(
        *{**NO_FILTERS, **filters}.values(), api_name="/search_generations"
    )
    return summary, table["data"], gallery


def test_search_lists_generations_with_their_images(app: tuple[Client, AppContext, dict]) -> None:
    client, _, ids = app
    summary, rows, gallery = search(client)
    assert summary == "Generations 1–2 of 2 · page 1 of 1"
    assert [row[-1] for row in rows] == [ids["waiting"], ids["ran"]]  # newest first, id last
    assert rows[1][2] == "A Red Fox" and rows[1][3] == CKPT and "completed" in rows[1][1]
    assert len(gallery) == 2  # the fake's SaveImage wrote two PNGs
    assert all(Path(item["image"]).read_bytes().startswith(b"\x89PNG") for item in gallery)

    summary, rows, gallery = search(client, text="RED fox")
    assert [row[-1] for row in rows] == [ids["ran"]]
    summary, rows, gallery = search(client, steps_min="10", status="pending")
    assert [row[-1] for row in rows] == [ids["waiting"]] and gallery == []
    summary, rows, _ = search(client, checkpoint="other.safetensors")
    assert summary == "No generations match." and rows == []
    summary, rows, _ = search(client, page=2)
    assert summary.startswith("Page 2 is past the end: 2 generations match")


def test_bad_filters_say_which_field(app: tuple[Client, AppContext, dict]) -> None:
    client, _, _ = app
    with pytest.raises(AppError, match=r"Steps \(min\): 'ten' is not a number"):
        search(client, steps_min="ten")
    with pytest.raises(AppError, match="Created from: 'last tuesday' is not a date"):
        search(client, created_from="last tuesday")
    with pytest.raises(AppError, match="Active: the start date is not before the end date"):
        client.predict(
            "", "", "", "2026-05-02", "2026-05-01", 1, api_name="/search_history_conversations"
        )


def test_a_selected_generation_shows_its_parameters_and_next_steps(
    app: tuple[Client, AppContext, dict],
) -> None:
    client, ctx, ids = app
    details, parameters = client.predict(ids["ran"], api_name="/show_history_generation")
    assert "A Red Fox" in details and CKPT in details
    assert "/reuse_parameters" in details and "/rerun_exactly" in details and ids["ran"] in details
    assert parameters["seed"] == 7 and parameters["cfg"] == 6.5
    with pytest.raises(AppError, match="No generation with id"):
        client.predict("not-an-id", api_name="/show_history_generation")

    new_id = client.predict(ids["ran"], api_name="/history_rerun_exactly")
    rerun = ctx.comfyui.generations.get(new_id)
    assert str(rerun.reproduced_from_id) == ids["ran"] and rerun.seed == 7
    ctx.comfyui.generations.delete(new_id)  # leave the other tests' history as it was


def test_conversations_everything_and_facets(app: tuple[Client, AppContext, dict]) -> None:
    client, _, ids = app
    summary, table = client.predict(
        "ARCTIC", "", "", "", "", 1, api_name="/search_history_conversations"
    )
    assert summary.startswith("Conversations 1–1 of 1")
    assert table["data"][0][1] == "Snow trip" and table["data"][0][-1] == ids["conv"]
    title, messages = client.predict(ids["conv"], api_name="/show_history_conversation")
    assert "Snow trip" in title
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "arctic foxes" in str(messages[0]["content"])

    summary, table = client.predict("fox", "", "", 1, api_name="/search_history")
    kinds = [row[1] for row in table["data"]]
    assert summary.startswith("Items 1–2 of 2")
    assert sorted(kinds) == ["💬 conversation", "🖼️ generation"]

    facets = client.predict(api_name="/history_facets")
    assert facets["checkpoints"] == [CKPT]
    assert set(facets["statuses"]) == {"completed", "pending"}
    assert [s["name"] for s in facets["sessions"]] == ["Foxes"]


def test_a_session_filter_takes_any_session_even_one_made_after_start(
    app: tuple[Client, AppContext, dict],
) -> None:
    client, ctx, ids = app
    foxes = next(s for s in ctx.comfyui.sessions.list_all() if s.name == "Foxes")
    _, rows, _ = search(client, session=str(foxes.id))
    assert [row[-1] for row in rows] == [ids["ran"]]
    late = ctx.comfyui.sessions.create("Made after the start")
    summary, rows, _ = search(client, session=str(late.id))
    assert summary == "No generations match." and rows == []
    with pytest.raises(AppError, match="is not a session id"):
        search(client, session="foxes")
