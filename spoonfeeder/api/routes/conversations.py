"""/api/conversations: the saved chats of the Chat tab (and of POST /api/chat) — list and
search, read with every message, rename, delete, export as JSON or Markdown."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.auth import OWNER, Acting
from spoonfeeder.api.envelope import Ok, Paged, PageQuery, ok, page_query, paged
from spoonfeeder.chat import MAX_TITLE, ConversationSummary, ConversationView, export_filename
from spoonfeeder.context import AppContext


class RenameBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(
        description=f"The new title (at most {MAX_TITLE} characters); it no longer follows "
        "the first message"
    )


@dataclass(frozen=True)
class DeletedConversation:
    id: uuid.UUID
    title: str


MARKDOWN = {
    "description": "With `format=markdown`: the conversation as a Markdown file",
    "content": {"text/markdown": {}},
}


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/conversations", tags=["conversations"])
    chat = ctx.chat

    @router.get("", summary="List conversations")
    def list_conversations(
        actor: Acting,
        pages: Annotated[PageQuery, Depends(page_query)],
        search: Annotated[
            str, Query(max_length=500, description="Words in the title or in any message")
        ] = "",
        owner: Annotated[str, Query(max_length=64, description=OWNER)] = "",
    ) -> Paged[ConversationSummary]:
        """Newest first (the last message's time), with how many messages each holds:
        your own (an admin: everyone's, or `owner`'s)."""
        mine = dict(actor=actor, owner_id=ctx.users.owner_filter(actor, owner))
        found = chat.list_conversations(search, limit=pages.limit, offset=pages.offset, **mine)
        return paged(found, pages.page, pages.limit, chat.count_conversations(search, **mine))

    @router.get("/{conversation_id}", summary="Get a conversation")
    def get_conversation(actor: Acting, conversation_id: str) -> Ok[ConversationView]:
        """A conversation with every message, in order: a reply's model, token counts,
        timings, status ("complete", "stopped", "error", or still "streaming") and error."""
        return ok(chat.get_conversation(conversation_id, actor))

    @router.patch("/{conversation_id}", summary="Rename a conversation")
    def rename_conversation(
        actor: Acting, conversation_id: str, body: RenameBody
    ) -> Ok[ConversationView]:
        return ok(chat.rename(conversation_id, body.title, actor))

    @router.delete("/{conversation_id}", summary="Delete a conversation")
    def delete_conversation(actor: Acting, conversation_id: str) -> Ok[DeletedConversation]:
        """Delete a conversation, its messages and their images; a reply still streaming
        in it is stopped first."""
        conv = chat.get_conversation(conversation_id, actor)
        return ok(DeletedConversation(conv.id, chat.delete(conv.id, actor)))

    @router.get(
        "/{conversation_id}/export",
        summary="Export a conversation",
        responses={200: MARKDOWN},
    )
    def export_conversation(
        actor: Acting,
        conversation_id: str,
        format: Annotated[
            Literal["json", "markdown"], Query(description="json (in the envelope) or markdown")
        ] = "json",
    ) -> Ok[dict[str, Any]]:
        """As the Chat tab's Export buttons: JSON (the conversation with every message)
        or a Markdown document, sent as a file download named after the title."""
        if format == "json":
            return ok(chat.export_json(conversation_id, actor))
        text = chat.export_markdown(conversation_id, actor)
        name = export_filename(chat.get_conversation(conversation_id, actor).title, ".md")
        return Response(
            text,
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": _attachment(name)},
        )

    return router


def _attachment(name: str) -> str:
    """A Content-Disposition for `name`, which may hold any letter (RFC 6266)."""
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
