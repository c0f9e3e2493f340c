"""Conversations, and replies streamed through any chat provider and saved per message.

Reading it the way simonw/llm reads:

    reply = chat.send(conversation_id, "hello", target=ChatTarget("openai", "gpt-4o-mini"))
    for delta in reply: ...
    reply.status, reply.usage, reply.ttft_ms

A reply streams on its own thread and saves itself when it ends — complete, stopped
or error — whether or not anyone is still reading it, so a closed browser tab or a
cancelled request never loses what was already received.
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Delete,
    Executable,
    Row,
    Select,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.access import EVERYONE, Actor, scoped
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import Conversation, Message
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import NotFoundError, ProviderError, ValidationError
from spoonfeeder.ids import parse_id, shown
from spoonfeeder.providers.base import (
    ChatMessage,
    ChatOptions,
    ChatProvider,
    ImageAttachment,
    Usage,
    complete_reply,
    estimate_usage,
)
from spoonfeeder.providers.registry import CHAT_PROVIDERS, ProviderRegistry
from spoonfeeder.search import search_term

log = logging.getLogger(__name__)

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TITLE = 300
NEW_TITLE = "New conversation"
STREAMING, COMPLETE, STOPPED, ERROR = "streaming", "complete", "stopped", "error"


@dataclass(frozen=True)
class ChatTarget:
    """Where a reply comes from: a provider kind (its setting) or one of its profiles."""

    provider: str
    model: str
    profile_id: uuid.UUID | None = None

    def validated(self) -> ChatTarget:
        if self.provider not in CHAT_PROVIDERS:
            raise ValidationError(
                f"Unknown chat provider {shown(self.provider)}; choose one of: "
                + ", ".join(CHAT_PROVIDERS)
            )
        if not self.model.strip():
            raise ValidationError("Choose a model first (refresh the list or type its name)")
        return ChatTarget(self.provider, self.model.strip(), self.profile_id)


@dataclass(frozen=True)
class MessageView:
    id: uuid.UUID
    position: int
    role: str
    content: str
    attachments: list[dict[str, Any]]
    provider: str | None
    profile_id: uuid.UUID | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    tokens_estimated: bool  # the server reported no usage: counted here, roughly
    ttft_ms: float | None
    latency_ms: float | None
    finish_reason: str | None
    status: str
    error: str | None
    created_at: datetime


@dataclass(frozen=True)
class ConversationSummary:
    id: uuid.UUID
    title: str
    provider: str | None
    model: str | None
    updated_at: datetime
    message_count: int


@dataclass(frozen=True)
class ConversationView:
    id: uuid.UUID
    title: str
    provider: str | None
    profile_id: uuid.UUID | None
    model: str | None
    system_prompt: str | None
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    messages: list[MessageView] = field(default_factory=list)


@dataclass(frozen=True)
class _Request:
    """What a reply asks its provider for."""

    provider: ChatProvider
    model: str
    messages: list[ChatMessage]
    options: ChatOptions


class Reply:
    """One assistant reply, streaming on a background thread. Iterate it for text deltas."""

    def __init__(self, conversation_id: uuid.UUID, message_id: uuid.UUID) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.text = ""
        self.status = STREAMING
        self.error: str | None = None
        self.failure: ProviderError | None = None  # the error behind `error`, for its kind
        self.usage: Usage | None = None
        self.usage_estimated = False  # the server sent no token counts: `usage` is ours
        self.finish_reason: str | None = None
        self.ttft_ms: float | None = None
        self.latency_ms: float | None = None
        self._deltas: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = threading.Event()
        # Set once send() & co. have committed the user message and this reply's row, or
        # gave up (then `_abandoned`): the stream starts before that commit, the save waits.
        self._committed = threading.Event()
        self._abandoned = False
        self._first_taken = threading.Event()  # a reader has the first delta
        self._parts: list[str] = []  # the deltas so far, for follow()
        self._grew = threading.Condition()  # notified on each delta and at the end

    def __iter__(self) -> Iterator[str]:
        """The text deltas, for the one reader that started the reply. A reader that goes
        away (a reloaded page) leaves the reply streaming: it saves itself, and `follow`
        picks it up again. Only `stop()` stops it."""
        while (delta := self._deltas.get()) is not None:
            if not self._first_taken.is_set():
                self._first_taken.set()
            yield delta

    def follow(self, idle: float = 1.0) -> Iterator[str | None]:
        """The whole text so far each time it grows, until the reply has ended and is
        saved — for any number of readers besides the first (a page opened mid-reply).
        Yields None after `idle` seconds without news, so a reader can hand control back.
        """
        seen = -1
        while True:
            with self._grew:
                self._grew.wait_for(lambda seen=seen: len(self._parts) != seen or self.done, idle)
                count, text, ended = len(self._parts), "".join(self._parts), self.done
            if count != seen:
                seen = count
                yield text
            elif not ended:
                yield None
            if ended:
                return

    def batched(self) -> Iterator[str]:
        """Like iterating, but joins the deltas that piled up while the reader was busy.

        A slow reader (a browser, an SSE client) then gets fewer, larger updates instead
        of falling behind; the first delta is never delayed.
        """
        for delta in self:
            pending = [delta]
            while True:
                try:
                    more = self._deltas.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._deltas.put(None)  # let the outer loop see the end
                    break
                pending.append(more)
            yield "".join(pending)

    def stop(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Ask the stream to stop; the text so far is kept and saved as 'stopped'."""
        self._stop.set()
        if wait:
            self._done.wait(timeout)

    def wait(self, timeout: float | None = None) -> Reply:
        self._done.wait(timeout)
        return self

    # ----- the stream, owned here; the service says when the row exists -------------

    def start(
        self,
        provider: ChatProvider,
        model: str,
        messages: list[ChatMessage],
        options: ChatOptions,
        *,
        save: Callable[[Reply], None],
        release: Callable[[Reply], None],
    ) -> None:
        """Stream on a thread. When the reply has ended, `save(reply)` stores it (once
        `committed()` says its row exists; never if `abandon()`ed), then `release(reply)`
        frees the conversation for the next turn."""
        thread = threading.Thread(
            target=self._run,
            args=(_Request(provider, model, messages, options), save, release),
            name=f"reply-{self.conversation_id}",
            daemon=True,
        )
        thread.start()

    def committed(self) -> None:
        """The user message and this reply's row are committed: the end may be saved."""
        self._committed.set()

    def abandon(self) -> None:
        """The turn was not committed: stop the stream (before its request, if that has
        not gone out yet) and save nothing."""
        self._abandoned = True
        self._stop.set()
        self._committed.set()

    def _run(
        self, request: _Request, save: Callable[[Reply], None], release: Callable[[Reply], None]
    ) -> None:
        started = time.perf_counter()
        status = COMPLETE
        try:
            status = self._receive(request, started)
        except ProviderError as exc:
            status, self.error, self.failure = ERROR, str(exc), exc
        except Exception as exc:  # a bug or an unmapped SDK error: still save what we have
            log.exception("The reply in conversation %s failed unexpectedly", self.conversation_id)
            status = ERROR
            self.error = f"The reply failed unexpectedly ({type(exc).__name__}); see the app's log"
        self.text = "".join(self._parts)
        self.status = status
        self.latency_ms = (time.perf_counter() - started) * 1000
        no_count = self.usage is None or self.usage.tokens_out is None
        if no_count and (self._parts or status != ERROR):  # something was asked and answered
            self.usage = estimate_usage(
                request.messages, request.options.system, len(self._parts), self.usage
            )
            self.usage_estimated = True
        try:
            self._committed.wait()  # the row exists (or never will): only then save it
            if not self._abandoned:
                save(self)
        finally:
            release(self)
            with self._grew:
                self._done.set()
                self._grew.notify_all()
            self._deltas.put(None)

    def _receive(self, request: _Request, started: float) -> str:
        """Read the provider's stream into this reply; the status it ended with."""
        provider = request.provider
        # Abandoned already (see ChatService._reply): the request never goes out.
        stream = (
            iter(())
            if self._stop.is_set()
            else complete_reply(
                provider.stream_chat(request.model, request.messages, request.options),
                provider.name,
            )
        )
        try:
            for chunk in stream:
                if self._stop.is_set():
                    return STOPPED
                if chunk.text:
                    self._parts.append(chunk.text)
                    self._deltas.put(chunk.text)
                    with self._grew:
                        self._grew.notify_all()
                    if self.ttft_ms is None:
                        self.ttft_ms = (time.perf_counter() - started) * 1000
                        # Let a waiting reader take the first delta now, instead of after
                        # this thread's next GIL switch interval (5 ms) of parsing;
                        # without a reader, go on after 2 ms.
                        self._first_taken.wait(0.002)
                if chunk.finish_reason:
                    self.finish_reason = chunk.finish_reason
                if chunk.usage:
                    self.usage = chunk.usage
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # closes the upstream HTTP stream when we stopped early
        return STOPPED if self._stop.is_set() else COMPLETE

    @property
    def done(self) -> bool:
        return self._done.is_set()


class ChatService:
    def __init__(
        self, sessions: sessionmaker[Session], providers: ProviderRegistry, media_path: Path
    ) -> None:
        self._sessions = sessions
        self._providers = providers
        self._media = media_path / "chat"
        self._active: dict[uuid.UUID, Reply] = {}
        self._lock = threading.Lock()

    # ----- conversations --------------------------------------------------------------

    def create_conversation(
        self,
        title: str | None = None,
        *,
        system_prompt: str | None = None,
        actor: Actor = EVERYONE,
    ) -> ConversationView:
        return self.get_conversation(self._new_conversation(title, system_prompt, actor), actor)

    def _new_conversation(
        self, title: str | None, system_prompt: str | None, actor: Actor
    ) -> uuid.UUID:
        row = Conversation(
            title=_clean_title(title) if title else NEW_TITLE,
            title_locked=bool(title),  # a title given here is the user's: it stays
            system_prompt=(system_prompt or "").strip() or None,
            owner_id=actor.owner_id,
        )
        with transaction(self._sessions) as session:
            session.add(row)
        return row.id

    def get_conversation(
        self, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE
    ) -> ConversationView:
        with self._sessions() as session:
            row = _conversation(session, conversation_id, actor)
            return _conversation_view(row, list(row.messages))

    def list_conversations(
        self,
        search: str = "",
        *,
        limit: int = 100,
        offset: int = 0,
        actor: Actor = EVERYONE,
        owner_id: uuid.UUID | None = None,
    ) -> list[ConversationSummary]:
        """Newest first; `search` matches the title or any message's text. A user's
        own conversations; an admin's `owner_id` narrows to one user's."""
        counts = (
            select(Message.conversation_id, func.count().label("n"))
            .group_by(Message.conversation_id)
            .subquery()
        )
        query = (
            select(Conversation, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.conversation_id == Conversation.id)
            # The id breaks ties, so that pages of the list neither repeat nor skip one.
            .order_by(Conversation.updated_at.desc(), Conversation.id)
            .limit(limit)
            .offset(offset)
        )
        with self._sessions() as session:
            return [
                ConversationSummary(c.id, c.title, c.provider, c.model, c.updated_at, n)
                for c, n in session.execute(_matching(query, search, actor, owner_id))
            ]

    def count_conversations(
        self,
        search: str = "",
        *,
        actor: Actor = EVERYONE,
        owner_id: uuid.UUID | None = None,
    ) -> int:
        """How many conversations `list_conversations` finds, over all its pages."""
        counted = select(func.count()).select_from(Conversation)
        query = _matching(counted, search, actor, owner_id)
        with self._sessions() as session:
            return session.scalar(query) or 0

    def rename(
        self, conversation_id: uuid.UUID | str, title: str, actor: Actor = EVERYONE
    ) -> ConversationView:
        """Rename by hand: from now on the title no longer follows the first message."""
        clean = _clean_title(title)
        with transaction(self._sessions) as session:
            row = _conversation(session, conversation_id, actor)
            row.title, row.title_locked = clean, True
        return self.get_conversation(conversation_id, actor)

    def delete(self, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE) -> str:
        with transaction(self._sessions) as session:
            row = _conversation(session, conversation_id, actor)
            title = row.title
            if (reply := self._active.get(row.id)) is not None:
                reply.stop()
            session.delete(row)
        shutil.rmtree(self._media / str(row.id), ignore_errors=True)
        return title

    def seed_messages(
        self,
        conversation_id: uuid.UUID | str,
        messages: Sequence[ChatMessage],
        actor: Actor = EVERYONE,
    ) -> None:
        """Append earlier turns given by an API caller, stored like any other message."""
        with transaction(self._sessions) as session:
            row = _conversation(session, conversation_id, actor)
            position = _next_position(session, row.id)
            first_user = next((m.content for m in messages if m.role == "user"), "")
            if position == 0 and not row.title_locked and first_user.strip():
                row.title = _title_from(first_user)
            for offset, m in enumerate(messages):
                if m.role not in ("user", "assistant"):
                    raise ValidationError(
                        f"Message {offset + 1} has role {shown(m.role)}; use 'user' or 'assistant' "
                        "(pass the system prompt separately)"
                    )
                session.add(
                    Message(
                        conversation_id=row.id,
                        position=position + offset,
                        role=m.role,
                        content=m.content,
                    )
                )

    # ----- chatting ---------------------------------------------------------------------

    def chat(
        self,
        target: ChatTarget,
        message: str | None = None,
        *,
        conversation_id: uuid.UUID | str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        options: ChatOptions | None = None,
        actor: Actor = EVERYONE,
    ) -> Reply:
        """One exchange for scripts: continue a saved conversation (`conversation_id` +
        `message`), or start a new one from an OpenAI-style `messages` history
        ([{"role": "user"|"assistant", "content": str or content blocks}, …], the last
        one the user's) or from `message` alone. Saved like an exchange in the UI."""
        target = target.validated()
        history = list(messages or [])
        if history and not message:
            last = history.pop()
            if not isinstance(last, Mapping) or last.get("role") != "user":
                raise ValidationError("The last of `messages` must be the user's")
            message = text_of(last.get("content"))
        if not (message or "").strip():
            raise ValidationError("Give `message`, or `messages` ending with the user's")
        if not all(isinstance(m, Mapping) for m in history):
            raise ValidationError('Each of `messages` must be {"role": …, "content": …}')
        options = options or ChatOptions()
        if history:
            if not conversation_id:
                conversation_id = self.create_conversation(
                    system_prompt=options.system, actor=actor
                ).id
            earlier = [
                ChatMessage(str(m.get("role", "")), text_of(m.get("content"))) for m in history
            ]
            self.seed_messages(conversation_id, earlier, actor)
        # With no conversation, send() makes one once the message has passed its checks.
        return self.send(conversation_id or None, message or "", target, options, actor=actor)

    def send(
        self,
        conversation_id: uuid.UUID | str | None,
        text: str,
        target: ChatTarget,
        options: ChatOptions | None = None,
        images: Sequence[Path | str] = (),
        actor: Actor = EVERYONE,
    ) -> Reply:
        """Add a user message and start streaming the reply to it.

        With no `conversation_id` (None or ""), the message starts a new conversation,
        its system prompt `options.system`: made only once the message and the target
        have passed their checks, so a refused first message leaves no empty one behind.
        The user message is committed before this returns; the upstream request is
        already on its way while that commit happens (see `_reply`).
        """
        target = target.validated()
        if not text.strip() and not images:
            raise ValidationError("Type a message or attach an image first")
        conv_id = _uuid(conversation_id) if conversation_id else None
        provider = self._provider(target)
        checked = [_checked_image(Path(p)) for p in images]
        new: dict[str, Any] | None = None
        if conv_id is None:  # made in the reply's own transaction: one commit, not two
            conv_id = uuid.uuid4()
            system = ((options.system if options else None) or "").strip() or None
            new = {"id": conv_id, "system_prompt": system, "owner_id": actor.owner_id}
        else:
            self._check_owner(conv_id, actor)  # before an image is stored in it
        attachments = [self._store_image(conv_id, *image) for image in checked]

        def plan(conv: Row[Any], rows: Sequence[Row[Any]]) -> _Turn:
            position = rows[-1].position + 1 if rows else 0
            user = {
                "conversation_id": conv_id,
                "position": position,
                "role": "user",
                "content": text,
                "attachments": attachments,
            }
            turn = _Turn([*rows, ChatMessage("user", text, _images(attachments))], position + 1)
            turn.new_messages.append(user)
            first = not any(m.role == "user" for m in rows)
            if first and not conv.title_locked and text.strip():
                turn.conversation["title"] = _title_from(text)
            return turn

        return self._reply(conv_id, provider, target, options, plan, actor, new)

    def regenerate(
        self,
        conversation_id: uuid.UUID | str,
        target: ChatTarget,
        options: ChatOptions | None = None,
        actor: Actor = EVERYONE,
    ) -> Reply:
        """Replace the reply to the last user message with a new one."""
        target = target.validated()
        conv_id = _uuid(conversation_id)
        provider = self._provider(target)

        def plan(conv: Row[Any], rows: Sequence[Row[Any]]) -> _Turn:
            last_user = max((m.position for m in rows if m.role == "user"), default=None)
            if last_user is None:
                raise ValidationError("There is no message to answer yet")
            turn = _Turn([m for m in rows if m.position <= last_user], last_user + 1)
            turn.before.append(_delete_after(conv_id, last_user))
            return turn

        return self._reply(conv_id, provider, target, options, plan, actor)

    def edit_and_resend(
        self,
        conversation_id: uuid.UUID | str,
        message_id: uuid.UUID | str,
        new_text: str,
        target: ChatTarget,
        options: ChatOptions | None = None,
        actor: Actor = EVERYONE,
    ) -> Reply:
        """Change a user message, drop everything after it, and answer it again."""
        target = target.validated()
        if not new_text.strip():
            raise ValidationError("The edited message is empty")
        conv_id = _uuid(conversation_id)
        message_uuid = _uuid(message_id)
        provider = self._provider(target)

        def plan(conv: Row[Any], rows: Sequence[Row[Any]]) -> _Turn:
            message = next((m for m in rows if m.id == message_uuid), None)
            if message is None:
                raise NotFoundError("That message is no longer in this conversation")
            if message.role != "user":
                raise ValidationError("Only your own messages can be edited")
            edited = ChatMessage("user", new_text, self._chat_message(message).images)
            earlier = [m for m in rows if m.position < message.position]
            turn = _Turn([*earlier, edited])
            turn.position = message.position + 1
            turn.before += [
                update(Message).where(Message.id == message.id).values(content=new_text),
                _delete_after(conv_id, message.position),
            ]
            # The title came from the first message: it follows an edit of it.
            if not conv.title_locked and not any(m.role == "user" for m in earlier):
                turn.conversation["title"] = _title_from(new_text)
            return turn

        return self._reply(conv_id, provider, target, options, plan, actor)

    def stop(self, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE) -> bool:
        """Stop the reply streaming in this conversation, if any. True if one was stopped."""
        self._check_owner(_uuid(conversation_id), actor)
        reply = self._active.get(_uuid(conversation_id))
        if reply is None:
            return False
        reply.stop()
        return True

    def active_reply(
        self, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE
    ) -> Reply | None:
        """The reply streaming in this conversation right now, if any: `reply.follow()`
        lets a page opened (or reloaded) mid-reply show it to its end."""
        self._check_owner(_uuid(conversation_id), actor)
        reply = self._active.get(_uuid(conversation_id))
        return reply if reply is not None and not reply.done else None

    def recover_interrupted(self) -> int:
        """Mark replies that were streaming when the app stopped; run once at start."""
        with transaction(self._sessions) as session:
            rows = session.scalars(select(Message).where(Message.status == STREAMING)).all()
            for row in rows:
                row.status = STOPPED
                row.error = "The app stopped while this reply was streaming"
            return len(rows)

    # ----- export ------------------------------------------------------------------------

    def export_json(
        self, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE
    ) -> dict[str, Any]:
        from spoonfeeder.serialize import jsonable

        return jsonable(self.get_conversation(conversation_id, actor))

    def export_markdown(self, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE) -> str:
        conv = self.get_conversation(conversation_id, actor)
        lines = [f"# {conv.title}", ""]
        if conv.system_prompt:
            lines += [f"> System: {conv.system_prompt}", ""]
        for m in conv.messages:
            stamp = m.created_at.strftime("%Y-%m-%d %H:%M UTC")
            if m.role == "user":
                lines.append(f"## You · {stamp}")
            else:
                lines.append(f"## {m.model or 'Assistant'} ({m.provider}) · {stamp}")
            lines += ["", m.content or "", ""]
            lines += [f"![image]({a['path']})" for a in m.attachments] + (
                [""] if m.attachments else []
            )
            if m.role == "assistant":
                lines += [f"*{describe_message(m)}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    # ----- internals -------------------------------------------------------------------------

    def _provider(self, target: ChatTarget) -> ChatProvider:
        # Before anything is saved: a missing key or a deleted profile fails here, loudly.
        # From the credentials cache, which every save in Settings empties.
        return self._providers.get(target.provider, target.profile_id, cached=True)

    def _check_owner(self, conv_id: uuid.UUID, actor: Actor) -> None:
        if actor.sees_all:
            return
        with self._sessions() as session:
            owner = session.execute(
                select(Conversation.owner_id).where(Conversation.id == conv_id)
            ).first()
        if owner is not None:  # a missing one is the caller's NotFoundError to raise
            actor.check(owner[0], "conversation")

    def _reply(
        self,
        conv_id: uuid.UUID,
        provider: ChatProvider,
        target: ChatTarget,
        options: ChatOptions | None,
        plan: Callable[[Row[Any], Sequence[Row[Any]]], _Turn],
        actor: Actor = EVERYONE,
        new: dict[str, Any] | None = None,
    ) -> Reply:
        """Read the history, start the upstream request, then write — in one transaction.

        Time to first token is the reason for the order: the request goes out as soon as
        the history is read, and the writes (user message, reply row, conversation) and
        their commit overlap it. Everything that can refuse the turn — a missing
        conversation or message, a reply already streaming — is checked before the
        request starts. If the writes or the commit still fail, the reply is abandoned:
        its stream is closed at its next chunk (before the request, if that has not gone
        out yet), nothing of it is saved, and the error reaches the caller as before. The
        reply thread saves its row only after the commit (`Reply.committed()`).

        Plain SQL statements rather than the ORM's unit of work: they take a fraction of
        the CPU, and here the CPU (one GIL) is shared with the request being sent.
        """
        options = options or ChatOptions()
        reply: Reply | None = None
        try:
            with transaction(self._sessions) as session:
                db = session.connection()
                if new is not None:  # a new conversation, written with its first turn
                    db.execute(insert(Conversation).values(**new))
                # The conversation and its messages in one query (one row, with NULL
                # message columns, for a conversation without messages).
                found = db.execute(
                    select(
                        Conversation.owner_id,
                        Conversation.title,
                        Conversation.title_locked,
                        Conversation.system_prompt,
                        Message.id,
                        Message.position,
                        Message.role,
                        Message.content,
                        Message.attachments,
                    )
                    .outerjoin(Message, Message.conversation_id == Conversation.id)
                    .where(Conversation.id == conv_id)
                    .order_by(Message.position)
                ).all()
                if not found:
                    raise NotFoundError(
                        f"No conversation with id {conv_id} (it may have been deleted)"
                    )
                actor.check(found[0].owner_id, "conversation")
                reply = self._claim(conv_id)
                conv = found[0]
                turn = plan(conv, [m for m in found if m.id is not None])
                system = (
                    conv.system_prompt  # None keeps the conversation's system prompt
                    if options.system is None
                    else options.system.strip() or None
                )
                options = dataclasses.replace(options, system=system)
                messages = [
                    m if isinstance(m, ChatMessage) else self._chat_message(m)
                    for m in turn.history
                    if m.role in ("user", "assistant")
                    and (m.content or (m.images if isinstance(m, ChatMessage) else m.attachments))
                ]
                reply.start(
                    provider,
                    target.model,
                    messages,
                    options,
                    save=self._save_reply,
                    release=self._release,
                )
                # The request is on its way; from here on, the writes.
                for statement in turn.before:
                    db.execute(statement)
                now = utcnow()
                changed = db.execute(
                    update(Conversation)
                    .where(Conversation.id == conv_id)
                    .values(
                        system_prompt=system,
                        provider=target.provider,
                        model=target.model,
                        profile_id=target.profile_id,
                        options={
                            "temperature": options.temperature,
                            "max_tokens": options.max_tokens,
                        },
                        updated_at=now,
                        **turn.conversation,
                    )
                )
                if changed.rowcount == 0:  # deleted since it was read
                    raise NotFoundError(
                        f"No conversation with id {conv_id} (it may have been deleted)"
                    )
                reply_row = {
                    "id": reply.message_id,
                    "conversation_id": conv_id,
                    "position": turn.position,
                    "role": "assistant",
                    "content": "",
                    "attachments": [],
                    "provider": target.provider,
                    "profile_id": target.profile_id,
                    "model": target.model,
                    "status": STREAMING,
                }
                rows_to_add = [*turn.new_messages, reply_row]
                for row in rows_to_add:  # one executemany: every row needs the same keys
                    for column, default in _MESSAGE_DEFAULTS.items():
                        row.setdefault(column, default)
                    row.setdefault("id", uuid.uuid4())
                    row.setdefault("created_at", now)
                db.execute(insert(Message), rows_to_add)
        except BaseException:
            if reply is not None:
                self._abandon(reply)
            raise
        reply.committed()
        return reply

    def _claim(self, conv_id: uuid.UUID) -> Reply:
        """The conversation's one streaming reply; checked and taken at once, so two
        sends at the same moment cannot both pass."""
        reply = Reply(conv_id, uuid.uuid4())
        with self._lock:
            current = self._active.get(conv_id)
            if current is not None and not current.done:
                raise ValidationError(
                    "A reply is still streaming in this conversation; stop it first"
                )
            self._active[conv_id] = reply
        return reply

    def _abandon(self, reply: Reply) -> None:
        """The turn was not committed: stop the stream, save nothing, free the slot."""
        reply.abandon()
        self._release(reply)

    def _release(self, reply: Reply) -> None:
        with self._lock:
            if self._active.get(reply.conversation_id) is reply:
                del self._active[reply.conversation_id]

    def _save_reply(self, reply: Reply) -> None:
        with transaction(self._sessions) as session:
            row = session.get(Message, reply.message_id)
            if row is None:  # the conversation was deleted while streaming
                return
            row.content = reply.text
            row.status = reply.status
            row.error = reply.error
            row.finish_reason = reply.finish_reason or (
                "stopped" if reply.status == STOPPED else None
            )
            row.ttft_ms = reply.ttft_ms
            row.latency_ms = reply.latency_ms
            if reply.usage:
                row.tokens_in, row.tokens_out = reply.usage.tokens_in, reply.usage.tokens_out
                row.tokens_estimated = reply.usage_estimated
            conv = session.get(Conversation, reply.conversation_id)
            if conv is not None:
                conv.updated_at = utcnow()

    def _chat_message(self, row: Row[Any]) -> ChatMessage:
        images = _images(row.attachments or [])
        return ChatMessage(role=row.role, content=row.content, images=images)

    def _store_image(
        self, conversation_id: uuid.UUID, source: Path, mime: str, size: int
    ) -> dict[str, Any]:
        folder = self._media / str(conversation_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}{source.suffix.lower()}"
        shutil.copyfile(source, target)
        return {"path": str(target), "mime_type": mime, "name": source.name, "bytes": size}


def _checked_image(source: Path) -> tuple[Path, str, int]:
    """An attachment that can be stored: (path, MIME type, size); else a sentence."""
    if not source.is_file():
        raise ValidationError(f"The attached file {shown(source.name)} could not be read")
    mime = mimetypes.guess_type(source.name)[0] or ""
    if mime not in IMAGE_TYPES:
        raise ValidationError(
            f"{shown(source.name)} is not a supported image (PNG, JPEG, WebP or GIF)"
        )
    size = source.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ValidationError(f"{shown(source.name)} is larger than 20 MB")
    return source, mime, size


# The columns a new message row may leave out, for one multi-row INSERT.
_MESSAGE_DEFAULTS: dict[str, Any] = {
    "content": "",
    "attachments": [],
    "provider": None,
    "profile_id": None,
    "model": None,
    "status": COMPLETE,
    "tokens_estimated": False,
}


@dataclass
class _Turn:
    """What one send / regenerate / edit plans from the conversation's rows."""

    history: list[Row[Any] | ChatMessage]  # in order; ChatMessages are not in the DB yet
    position: int = 0  # the reply's
    before: list[Executable] = field(default_factory=list)  # deletes and edits, in order
    new_messages: list[dict[str, Any]] = field(default_factory=list)  # inserted with the reply
    conversation: dict[str, Any] = field(default_factory=dict)  # more columns to set


# Why a reply ended, where that is worth saying (a plain "stop" is not).
FINISH_LABELS = {
    "length": "✂️ cut at the max tokens limit",
    "content_filter": "🚫 stopped by the content filter",
    "tool_calls": "asked to call a tool",
}


def describe_message(m: MessageView) -> str:
    """The footer under an assistant reply: model, tokens, timings, why it ended."""
    bits = [m.model or "?"]
    if m.tokens_in is not None or m.tokens_out is not None:
        if m.tokens_estimated:
            bits.append(f"~{m.tokens_in or 0}→~{m.tokens_out or 0} tokens (estimated)")
        else:
            bits.append(f"{m.tokens_in or 0}→{m.tokens_out or 0} tokens")
    if m.ttft_ms is not None:
        bits.append(f"first token {m.ttft_ms:.0f} ms")
    if m.latency_ms is not None:
        bits.append(f"{m.latency_ms / 1000:.1f} s")
    if m.status == STOPPED:
        bits.append("⏹ stopped")
    elif m.finish_reason in FINISH_LABELS:
        bits.append(FINISH_LABELS[m.finish_reason])
    return " · ".join(bits)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return parse_id(value, "conversation or message")


def _matching(
    query: Select[Any], search: str, actor: Actor, owner_id: uuid.UUID | None
) -> Select[Any]:
    """`query` narrowed to the conversations a list shows: those the actor sees (an
    admin's chosen owner's), and those whose title or any message's text has `search`."""
    query = scoped(query, actor, Conversation.owner_id, owner_id)
    if term := search_term(search):
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        in_messages = select(Message.conversation_id).where(
            Message.content.ilike(pattern, escape="\\")
        )
        query = query.where(
            or_(Conversation.title.ilike(pattern, escape="\\"), Conversation.id.in_(in_messages))
        )
    return query


def export_filename(title: str, suffix: str) -> str:
    """The file name an export of a conversation titled `title` is saved under."""
    safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in title)[:60].strip()
    return f"{safe or 'conversation'}{suffix}"


def _title_from(text: str) -> str:
    """A conversation's title from its first message: the first line, shortened."""
    return _clean_title(text.strip().splitlines()[0][:60])


def _clean_title(title: str) -> str:
    clean = " ".join(title.split())
    if not clean:
        raise ValidationError("The title cannot be empty")
    return clean[:MAX_TITLE]


def _conversation(
    session: Session, conversation_id: uuid.UUID | str, actor: Actor = EVERYONE
) -> Conversation:
    row = session.get(Conversation, _uuid(conversation_id))
    if row is None:
        raise NotFoundError(f"No conversation with id {conversation_id} (it may have been deleted)")
    actor.check(row.owner_id, "conversation")
    return row


def _next_position(session: Session, conversation_id: uuid.UUID) -> int:
    last = session.scalar(
        select(func.max(Message.position)).where(Message.conversation_id == conversation_id)
    )
    return 0 if last is None else last + 1


def _delete_after(conversation_id: uuid.UUID, position: int) -> Delete:
    return delete(Message).where(
        Message.conversation_id == conversation_id, Message.position > position
    )


def _images(attachments: list[dict[str, Any]]) -> tuple[ImageAttachment, ...]:
    return tuple(
        ImageAttachment(a["mime_type"], Path(a["path"]).read_bytes())
        for a in attachments
        if Path(a["path"]).exists()
    )


def _message_view(m: Message) -> MessageView:
    return MessageView(
        id=m.id,
        position=m.position,
        role=m.role,
        content=m.content,
        attachments=list(m.attachments or []),
        provider=m.provider,
        profile_id=m.profile_id,
        model=m.model,
        tokens_in=m.tokens_in,
        tokens_out=m.tokens_out,
        tokens_estimated=bool(m.tokens_estimated),
        ttft_ms=m.ttft_ms,
        latency_ms=m.latency_ms,
        finish_reason=m.finish_reason,
        status=m.status,
        error=m.error,
        created_at=m.created_at,
    )


def _conversation_view(c: Conversation, messages: list[Message]) -> ConversationView:
    return ConversationView(
        id=c.id,
        title=c.title,
        provider=c.provider,
        profile_id=c.profile_id,
        model=c.model,
        system_prompt=c.system_prompt,
        options=dict(c.options or {}),
        created_at=c.created_at,
        updated_at=c.updated_at,
        messages=[_message_view(m) for m in messages],
    )


def text_of(content: Any) -> str:
    """The text of an OpenAI-style message's content: a string or a list of content
    blocks ({"type": "text", "text": …})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping))
    return str(content or "")


def chat_options(
    system: str | None, temperature: float | None, max_tokens: float | None
) -> ChatOptions:
    """A reply's options from a form's or an API call's values (system None keeps the
    conversation's system prompt; max_tokens arrives as a float from a number box)."""
    return ChatOptions(
        system=system,
        temperature=temperature,
        max_tokens=int(max_tokens) if max_tokens else None,
    )
