"""/api/history: search every ComfyUI generation and conversation with the History tab's
filters, the two in one timeline, and the values the filters can take."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from spoonfeeder.access import Actor
from spoonfeeder.api.auth import OWNER, Acting
from spoonfeeder.api.envelope import Ok, Paged, PageQuery, ok, page_query, paged
from spoonfeeder.chat import ConversationSummary
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.history import (
    GENERATION_STATUSES,
    ConversationFilters,
    GenerationFilters,
    HistoryFacets,
    TimelineEntry,
)

DATE_HELP = "YYYY-MM-DD or YYYY-MM-DD HH:MM (UTC)"
END_HELP = f"{DATE_HELP}; a bare date includes that whole day"
Text = Annotated[str, Query(description="Words to find, any case")]


def generation_filters(
    text: Text = "",
    status: Annotated[
        str | None, Query(description=f"One of {', '.join(GENERATION_STATUSES)}")
    ] = None,
    session_id: Annotated[str | None, Query(description="A ComfyUI session's id")] = None,
    checkpoint: Annotated[str | None, Query(description="Checkpoint file name")] = None,
    sampler: Annotated[str | None, Query(description="Sampler name")] = None,
    scheduler: Annotated[str | None, Query(description="Scheduler name")] = None,
    width: Annotated[int | None, Query(description="Exact width")] = None,
    height: Annotated[int | None, Query(description="Exact height")] = None,
    steps_min: Annotated[int | None, Query(description="At least this many steps")] = None,
    steps_max: Annotated[int | None, Query(description="At most this many steps")] = None,
    cfg_min: Annotated[float | None, Query(description="CFG at least")] = None,
    cfg_max: Annotated[float | None, Query(description="CFG at most")] = None,
    seed: Annotated[int | None, Query(description="Exact seed")] = None,
    created_from: Annotated[str | None, Query(description=f"Created from, {DATE_HELP}")] = None,
    created_to: Annotated[str | None, Query(description=f"Created until, {END_HELP}")] = None,
) -> GenerationFilters:
    """The generation search's query parameters: the History tab's filters (text in the
    prompt or the negative prompt)."""
    return GenerationFilters(
        text=text,
        status=status,
        session_id=session_id,
        checkpoint=checkpoint,
        sampler=sampler,
        scheduler=scheduler,
        width=width,
        height=height,
        steps_min=steps_min,
        steps_max=steps_max,
        cfg_min=cfg_min,
        cfg_max=cfg_max,
        seed=seed,
        created_from=created_from,
        created_to=created_to,
    )


def conversation_filters(
    text: Text = "",
    provider: Annotated[
        str | None, Query(description="Some reply came from this provider kind")
    ] = None,
    model: Annotated[str | None, Query(description="Some reply came from this model")] = None,
    active_from: Annotated[str | None, Query(description=f"Last active from, {DATE_HELP}")] = None,
    active_to: Annotated[str | None, Query(description=f"Last active until, {END_HELP}")] = None,
) -> ConversationFilters:
    """The conversation search's query parameters (text in the title or any message)."""
    return ConversationFilters(text, provider, model, active_from, active_to)


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/history", tags=["history"])
    history = ctx.history

    def mine(actor: Actor, owner: str) -> dict[str, Any]:
        """Whose rows: the user's own; an admin's everyone's, or `owner`'s."""
        return {"actor": actor, "owner_id": ctx.users.owner_filter(actor, owner)}

    @router.get("", summary="Everything, newest first")
    def timeline(
        actor: Acting,
        pages: Annotated[PageQuery, Depends(page_query)],
        text: Text = "",
        since: Annotated[str | None, Query(description=f"From, {DATE_HELP}")] = None,
        until: Annotated[str | None, Query(description=f"Until, {END_HELP}")] = None,
        owner: Annotated[str, Query(max_length=64, description=OWNER)] = "",
    ) -> Paged[TimelineEntry]:
        """Generations and conversations in one list: `text` in a prompt, a title or a
        message; the dates bound a generation's creation and a conversation's last
        activity. Each entry has its `kind` and then `generation` or `conversation`."""
        found = history.timeline(
            text,
            since=since,
            until=until,
            limit=pages.limit,
            offset=pages.offset,
            **mine(actor, owner),
        )
        return paged(found.items, pages.page, pages.limit, found.total)

    @router.get("/generations", summary="Search generations")
    def generations(
        actor: Acting,
        filters: Annotated[GenerationFilters, Depends(generation_filters)],
        pages: Annotated[PageQuery, Depends(page_query)],
        owner: Annotated[str, Query(max_length=64, description=OWNER)] = "",
    ) -> Paged[GenerationView]:
        """Newest first; every filter given narrows the results."""
        found = history.search_generations(
            filters, limit=pages.limit, offset=pages.offset, **mine(actor, owner)
        )
        return paged(found.items, pages.page, pages.limit, found.total)

    @router.get("/conversations", summary="Search conversations")
    def conversations(
        actor: Acting,
        filters: Annotated[ConversationFilters, Depends(conversation_filters)],
        pages: Annotated[PageQuery, Depends(page_query)],
        owner: Annotated[str, Query(max_length=64, description=OWNER)] = "",
    ) -> Paged[ConversationSummary]:
        """Most recently active first; every filter given narrows the results."""
        found = history.search_conversations(
            filters, limit=pages.limit, offset=pages.offset, **mine(actor, owner)
        )
        return paged(found.items, pages.page, pages.limit, found.total)

    @router.get("/facets", summary="The values the filters can take")
    def facets() -> Ok[HistoryFacets]:
        """What is actually in the history: generation statuses, checkpoints, samplers,
        schedulers and sessions; the providers and models conversations used."""
        return ok(history.facets())

    return router
