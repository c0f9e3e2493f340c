"""/api/chat: send a message to any chat provider — its setting or one of its profiles,
the Chat tab's targets — and get the reply as one JSON answer or as server-sent events.
Every exchange is saved as a conversation, as in the Chat tab (see /api/conversations).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.auth import Acting
from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.api.failures import UNEXPECTED, failure, status_and_code
from spoonfeeder.chat import ERROR, ChatTarget, Reply, chat_options
from spoonfeeder.context import AppContext
from spoonfeeder.targets import ModelListing

TARGET = (
    'Where the message goes, as the Chat tab\'s Provider picker names it: "ollama", '
    '"openai", "anthropic" or "gemini" (that provider\'s setting), or "profile:<id>" '
    "(a chat profile). GET /api/chat/targets lists them."
)


class HistoryMessage(BaseModel):
    """One earlier turn, OpenAI-style."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"] = Field(
        description="'user' or 'assistant'; the system prompt goes in `options.system`"
    )
    content: str | list[dict[str, Any]] = Field(
        description='The text, or content blocks ([{"type": "text", "text": …}])'
    )


class ReplyOptions(BaseModel):
    """How the reply is asked for; what is left out is the provider's default."""

    model_config = ConfigDict(extra="forbid")

    system: str | None = Field(
        None,
        description='System prompt. Left out: a saved conversation keeps its own; "" removes it.',
    )
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000, description="Longest reply")


class ChatBody(BaseModel):
    """A message, and where and how to answer it."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description=TARGET, examples=["openai", "profile:3f0c…"])
    model: str = Field(description="Model name, e.g. gpt-4o-mini or llama3.2:1b")
    message: str | None = Field(None, description="Your message")
    messages: list[HistoryMessage] | None = Field(
        None,
        description="Earlier turns to store first; without `message`, the last of them "
        "(the user's) is the message to answer",
    )
    conversation_id: uuid.UUID | None = Field(
        None, description="A saved conversation to continue; left out: a new one is saved"
    )
    options: ReplyOptions = Field(default_factory=ReplyOptions)
    stream: bool = Field(False, description="Answer with server-sent events as text arrives")


@dataclass(frozen=True)
class ChatUsage:
    tokens_in: int | None
    tokens_out: int | None
    estimated: bool  # the server reported no counts: these are rough, counted here


@dataclass(frozen=True)
class ChatTiming:
    ttft_ms: float | None  # time to the first token
    latency_ms: float | None  # to the end of the reply


@dataclass(frozen=True)
class ChatReply:
    conversation_id: uuid.UUID
    message_id: uuid.UUID  # the reply's, in the conversation
    text: str
    status: str  # "complete", or "stopped" (someone pressed Stop in the Chat tab)
    finish_reason: str | None  # "stop", "length" (cut at max_tokens), "content_filter"…
    provider: str
    profile_id: uuid.UUID | None
    model: str
    usage: ChatUsage
    timing: ChatTiming

    @classmethod
    def of(cls, reply: Reply, target: ChatTarget) -> ChatReply:
        usage = reply.usage
        return cls(
            conversation_id=reply.conversation_id,
            message_id=reply.message_id,
            text=reply.text,
            status=reply.status,
            finish_reason=reply.finish_reason,
            provider=target.provider,
            profile_id=target.profile_id,
            model=target.model,
            usage=ChatUsage(
                usage.tokens_in if usage else None,
                usage.tokens_out if usage else None,
                reply.usage_estimated,
            ),
            timing=ChatTiming(reply.ttft_ms, reply.latency_ms),
        )


@dataclass(frozen=True)
class TargetChoice:
    label: str
    value: str  # what `target` takes


STREAM_EVENTS = {
    "description": "With `stream: true`, server-sent events: `start` (conversation_id, "
    "message_id), `delta` ({text}) as the reply arrives, then `done` (the same object as "
    "the JSON answer) or `error` (the envelope's `error` and `code`; the partial reply "
    "is saved). Anything refused before the reply starts is a JSON error envelope.",
    "content": {"text/event-stream": {}},
}


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/chat", tags=["chat"])

    @router.post("", summary="Send chat message to any provider", responses={200: STREAM_EVENTS})
    def send(actor: Acting, body: ChatBody) -> Ok[ChatReply]:
        """Answer `message` with `model` at `target`: in a saved conversation
        (`conversation_id`), or in a new one, saved like a chat in the Chat tab.

        Without `stream`, the answer comes once the reply is complete. A provider that
        fails answers its error (503 unreachable, 429 rate-limited, 502 key rejected…);
        what arrived before the failure is saved in the conversation.
        With `stream: true`, see the event stream below. Closing it stops the reply, as
        the Chat tab's Stop does: the text so far is saved as "stopped"."""
        target = ctx.targets.resolve(body.target, body.model).validated()
        reply = ctx.chat.chat(
            target,
            body.message,
            conversation_id=body.conversation_id,
            messages=[m.model_dump() for m in body.messages or []],
            options=chat_options(
                body.options.system, body.options.temperature, body.options.max_tokens
            ),
            actor=actor,
        )
        if body.stream:
            return EventSourceResponse(
                _events(reply, target),
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        reply.wait()
        if reply.status == ERROR:
            if reply.failure is not None:
                raise reply.failure
            return _unexpected(reply)
        return ok(ChatReply.of(reply, target))

    @router.get("/targets", summary="List chat targets")
    def list_targets() -> Ok[list[TargetChoice]]:
        """Each chat provider's setting, then each chat profile: the values `target`
        takes, with the Chat tab's labels."""
        return ok([TargetChoice(label, value) for label, value in ctx.targets.choices()])

    @router.get("/models", summary="List a target's models")
    def list_target_models(target: Annotated[str, Query(description=TARGET)]) -> Ok[ModelListing]:
        """The models `target` offers, asked of its server now, with the one the Chat tab
        preselects (`default`); `error` says why there is no list (server off, no key):
        a model typed by name may still work."""
        return ok(ctx.targets.models(target))

    return router


def _sse(event: str, data: Any) -> bytes:
    return format_sse_event(data_str=json.dumps(jsonable_encoder(data)), event=event)


def _error_data(reply: Reply) -> dict[str, Any]:
    if reply.failure is None:  # not a provider's error: a bug, logged by the reply
        return {"success": False, "error": reply.error or UNEXPECTED, "code": "INTERNAL_ERROR"}
    _, code = status_and_code(reply.failure)
    return {"success": False, "error": reply.failure.message, "code": code}


def _unexpected(reply: Reply) -> JSONResponse:
    data = _error_data(reply)
    return failure(500, data["code"], data["error"])


async def _events(reply: Reply, target: ChatTarget) -> AsyncIterator[bytes]:
    """The reply as server-sent events. A client that goes away stops it (its text so
    far is saved), as the Chat tab's Stop button does."""
    try:
        yield _sse(
            "start", {"conversation_id": reply.conversation_id, "message_id": reply.message_id}
        )
        # Batched: the deltas that piled up while this loop waited for the thread and
        # the socket go out as one event, so a fast stream costs a hop per batch, not
        # per token. In a worker thread, since the reply's queue blocks; given up at once
        # when the client goes away (the reply ends soon after stop(), and the thread too).
        deltas: Iterator[str] = reply.batched()
        while (
            delta := await anyio.to_thread.run_sync(next, deltas, None, abandon_on_cancel=True)
        ) is not None:
            yield _sse("delta", {"text": delta})
        # The deltas end once the reply has been saved.
        if reply.status == ERROR:
            yield _sse("error", _error_data(reply))
        else:
            yield _sse("done", ChatReply.of(reply, target))
    finally:
        if not reply.done:
            reply.stop(wait=False)
