"""HistoryService: search every generation and conversation, and what to filter them by.

Generations are filtered in SQL on the indexed columns `comfyui_generations` keeps for
this (size, steps, cfg, seed, sampler, scheduler, checkpoint, status, session, time).
Conversations are found by `ChatService.list_conversations` (title and message text),
then narrowed by the provider and model that answered and by when they were last active.

Every filter arrives as the user typed it (a string, a number or None); a blank is no
filter, and a value that cannot be one raises ValidationError naming the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select, union
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.access import EVERYONE, Actor
from spoonfeeder.chat import ChatService, ConversationSummary
from spoonfeeder.comfyui.rows import generation_view
from spoonfeeder.comfyui.sessions import SessionStore
from spoonfeeder.comfyui.views import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    GenerationView,
    SessionView,
)
from spoonfeeder.db.models import ComfyUIGeneration, Conversation, Message
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import parse_id, shown
from spoonfeeder.search import search_term
from spoonfeeder.tasks.service import parse_when

GENERATION_STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
MAX_PAGE = 500
# Conversations are matched by ChatService (title and message text) and narrowed here,
# so one search reads at most this many of the newest matches.
CONVERSATION_SCAN = 10_000

When = datetime | date | str | None
Number = int | float | str | None


# ----- filters --------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationFilters:
    """What a generation search asks for; blanks (None, "") are no filter."""

    text: str = ""  # in the prompt or the negative prompt, any case
    status: str | None = None
    session_id: uuid.UUID | str | None = None
    checkpoint: str | None = None
    sampler: str | None = None
    scheduler: str | None = None
    width: Number = None
    height: Number = None
    steps_min: Number = None
    steps_max: Number = None
    cfg_min: Number = None
    cfg_max: Number = None
    seed: Number = None
    created_from: When = None
    created_to: When = None  # a bare date includes that whole day


@dataclass(frozen=True)
class ConversationFilters:
    text: str = ""  # in the title or any message, any case
    provider: str | None = None  # a conversation some reply of which came from here
    model: str | None = None
    active_from: When = None  # last activity (updated_at)
    active_to: When = None


@dataclass(frozen=True)
class GenerationPage:
    items: list[GenerationView]
    total: int  # matches over all pages
    limit: int
    offset: int


@dataclass(frozen=True)
class ConversationPage:
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class TimelineEntry:
    kind: Literal["generation", "conversation"]
    when: datetime  # a generation's creation; a conversation's last activity
    generation: GenerationView | None = None
    conversation: ConversationSummary | None = None

    @property
    def id(self) -> uuid.UUID:
        item = self.generation or self.conversation
        assert item is not None
        return item.id


@dataclass(frozen=True)
class TimelinePage:
    items: list[TimelineEntry]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class HistoryFacets:
    """Values actually in the history, for the filter dropdowns."""

    statuses: list[str]
    checkpoints: list[str]
    samplers: list[str]
    schedulers: list[str]
    sessions: list[SessionView]
    providers: list[str]
    models: list[str]


# ----- parsing what a person typed (pure) -------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_int(value: Number, label: str, field: str) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        return int(text)  # exact, even past float precision (seeds are 64-bit)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ValidationError(f"{label}: {shown(value)} is not a number", field) from None
    if not number.is_integer():
        raise ValidationError(f"{label}: {shown(value)} is not a whole number", field)
    return int(number)


def parse_float(value: Number, label: str, field: str) -> float | None:
    if _blank(value):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(f"{label}: {shown(value)} is not a number", field) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValidationError(f"{label}: {shown(value)} is not a number", field)
    return number


def parse_date(value: When, label: str, field: str, *, end: bool = False) -> datetime | None:
    try:
        return parse_when(value, end=end)
    except ValidationError as exc:
        raise ValidationError(f"{label}: {exc}", field) from None


def check_range(low: Any, high: Any, label: str, field: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValidationError(
            f"{label}: the lower bound ({low}) is above the upper bound ({high})", field
        )


def check_dates(start: datetime | None, end: datetime | None, label: str, field: str) -> None:
    """`end` is exclusive (a bare date's next midnight): an empty range is a mistake."""
    if start is not None and end is not None and start >= end:
        raise ValidationError(f"{label}: the start date is not before the end date", field)


def _choice(value: str | None) -> str | None:
    return None if _blank(value) else str(value).strip()


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    # lower() on both sides: case-insensitive alike on SQLite and PostgreSQL;
    # autoescape so that % and _ typed by a person match themselves.
    return func.lower(column).contains(text.lower(), autoescape=True)


def generation_conditions(filters: GenerationFilters) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a generation search; ValidationError names a bad field."""
    g = ComfyUIGeneration
    where: list[ColumnElement[bool]] = []
    if term := search_term(filters.text, field="text"):
        where.append(or_(_contains(g.prompt_text, term), _contains(g.negative_prompt, term)))
    if status := _choice(filters.status):
        if status not in GENERATION_STATUSES:
            raise ValidationError(
                f"Status: {shown(status)} is not one of {', '.join(GENERATION_STATUSES)}", "status"
            )
        where.append(g.status == status)
    if not _blank(filters.session_id):
        try:
            session_key = parse_id(filters.session_id, "session")
        except NotFoundError:
            raise ValidationError(
                f"Session: {shown(filters.session_id)} is not a session id", "session"
            ) from None
        where.append(g.session_id == session_key)
    for column, value in (
        (g.checkpoint_name, filters.checkpoint),
        (g.sampler_name, filters.sampler),
        (g.scheduler, filters.scheduler),
    ):
        if (picked := _choice(value)) is not None:
            where.append(column == picked)
    for column, value, label, field in (
        (g.width, filters.width, "Width", "width"),
        (g.height, filters.height, "Height", "height"),
        (g.seed, filters.seed, "Seed", "seed"),
    ):
        if (exact := parse_int(value, label, field)) is not None:
            where.append(column == exact)
    steps = (
        parse_int(filters.steps_min, "Steps (min)", "steps"),
        parse_int(filters.steps_max, "Steps (max)", "steps"),
    )
    cfg = (
        parse_float(filters.cfg_min, "CFG (min)", "cfg"),
        parse_float(filters.cfg_max, "CFG (max)", "cfg"),
    )
    created = (
        parse_date(filters.created_from, "Created from", "created_from"),
        parse_date(filters.created_to, "Created to", "created_to", end=True),
    )
    check_range(*steps, "Steps", "steps")
    check_range(*cfg, "CFG", "cfg")
    check_dates(*created, "Created", "created_from")
    where += _range(g.steps, *steps) + _range(g.cfg_scale, *cfg)
    if created[0] is not None:
        where.append(g.created_at >= created[0])
    if created[1] is not None:
        where.append(g.created_at < created[1])  # end: the day after a bare date
    return where


def _range(column: Any, low: Any, high: Any) -> list[ColumnElement[bool]]:
    out = []
    if low is not None:
        out.append(column >= low)
    if high is not None:
        out.append(column <= high)
    return out


def _page(limit: int, offset: int) -> tuple[int, int]:
    return max(1, min(int(limit), MAX_PAGE)), max(0, int(offset))


# ----- the service ------------------------------------------------------------------------


class HistoryService:
    def __init__(
        self, sessions: sessionmaker[Session], chat: ChatService, comfyui_sessions: SessionStore
    ) -> None:
        self._sessions = sessions
        self._chat = chat
        self._comfyui_sessions = comfyui_sessions

    # ----- generations ---------------------------------------------------------------------

    def search_generations(
        self,
        filters: GenerationFilters | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
        actor: Actor = EVERYONE,
        owner_id: uuid.UUID | None = None,
    ) -> GenerationPage:
        """Newest first, with the number of matches over all pages."""
        limit, offset = _page(limit, offset)
        where = generation_conditions(filters or GenerationFilters())
        where += _owned(actor, owner_id)
        items, total = self._generations(where, limit, offset)
        return GenerationPage(items, total, limit, offset)

    def _generations(
        self, where: list[ColumnElement[bool]], limit: int, offset: int
    ) -> tuple[list[GenerationView], int]:
        g = ComfyUIGeneration
        query = (
            select(g)
            .where(*where)
            .order_by(g.created_at.desc(), g.batch_index.desc(), g.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(g).where(*where)) or 0
            return [generation_view(row) for row in session.scalars(query)], int(total)

    # ----- conversations -------------------------------------------------------------------

    def search_conversations(
        self,
        filters: ConversationFilters | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
        actor: Actor = EVERYONE,
        owner_id: uuid.UUID | None = None,
    ) -> ConversationPage:
        """Most recently active first, with the number of matches over all pages."""
        limit, offset = _page(limit, offset)
        filters = filters or ConversationFilters()
        matches = self._matching_conversations(filters, actor, owner_id)
        return ConversationPage(matches[offset : offset + limit], len(matches), limit, offset)

    def _matching_conversations(
        self, filters: ConversationFilters, actor: Actor, owner_id: uuid.UUID | None
    ) -> list[ConversationSummary]:
        start = parse_date(filters.active_from, "Active from", "active_from")
        end = parse_date(filters.active_to, "Active to", "active_to", end=True)
        check_dates(start, end, "Active", "active_from")
        provider, model = _choice(filters.provider), _choice(filters.model)
        found = self._chat.list_conversations(
            filters.text or "", limit=CONVERSATION_SCAN, actor=actor, owner_id=owner_id
        )
        if provider or model:
            using = self._conversations_using(provider, model)
            found = [c for c in found if c.id in using]
        return [
            c
            for c in found
            if (start is None or c.updated_at >= start) and (end is None or c.updated_at < end)
        ]

    def _conversations_using(self, provider: str | None, model: str | None) -> set[uuid.UUID]:
        """Conversations in which some reply (or the current setting) used these."""
        by_message = select(Message.conversation_id)
        by_conversation = select(Conversation.id)
        if provider:
            by_message = by_message.where(Message.provider == provider)
            by_conversation = by_conversation.where(Conversation.provider == provider)
        if model:
            by_message = by_message.where(Message.model == model)
            by_conversation = by_conversation.where(Conversation.model == model)
        with self._sessions() as session:
            return set(session.scalars(select(union(by_message, by_conversation).subquery().c[0])))

    # ----- both ----------------------------------------------------------------------------

    def timeline(
        self,
        text: str = "",
        *,
        since: When = None,
        until: When = None,
        limit: int = 50,
        offset: int = 0,
        actor: Actor = EVERYONE,
        owner_id: uuid.UUID | None = None,
    ) -> TimelinePage:
        """Generations and conversations in one list, newest first: `text` in a prompt,
        a title or a message; the dates bound a generation's creation and a
        conversation's last activity."""
        limit, offset = _page(limit, offset)
        window = offset + limit  # the newest `window` of each kind hold the page
        where = generation_conditions(
            GenerationFilters(text=text, created_from=since, created_to=until)
        )
        where += _owned(actor, owner_id)
        generations, generation_total = self._generations(where, window, 0)
        conversations = self._matching_conversations(
            ConversationFilters(text=text, active_from=since, active_to=until), actor, owner_id
        )
        entries = [TimelineEntry("generation", g.created_at, generation=g) for g in generations] + [
            TimelineEntry("conversation", c.updated_at, conversation=c)
            for c in conversations[:window]
        ]
        entries.sort(key=lambda e: e.when, reverse=True)
        total = generation_total + len(conversations)
        return TimelinePage(entries[offset : offset + limit], total, limit, offset)

    # ----- facets --------------------------------------------------------------------------

    def facets(self) -> HistoryFacets:
        """Over the whole database (there is one user today)."""
        g = ComfyUIGeneration
        with self._sessions() as session:

            def distinct(*columns: Any) -> list[str]:
                queries = [
                    select(c.label("value")).where(c.is_not(None), c != "").distinct()
                    for c in columns
                ]
                values: Iterable[Any] = session.scalars(
                    union(*queries) if len(queries) > 1 else queries[0]
                )
                return sorted({str(v) for v in values}, key=str.lower)

            return HistoryFacets(
                statuses=distinct(g.status),
                checkpoints=distinct(g.checkpoint_name),
                samplers=distinct(g.sampler_name),
                schedulers=distinct(g.scheduler),
                sessions=self._comfyui_sessions.list_all(),
                providers=distinct(Message.provider, Conversation.provider),
                models=distinct(Message.model, Conversation.model),
            )


def _owned(actor: Actor, owner_id: uuid.UUID | None) -> list[ColumnElement[bool]]:
    """The condition that keeps generations to those `actor` sees (none: all)."""
    clause = actor.scope(ComfyUIGeneration.owner_id, owner_id)
    return [] if clause is None else [clause]
