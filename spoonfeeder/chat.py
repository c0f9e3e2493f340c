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
import mimetypes
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import Conversation, Message
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import NotFoundError, ProviderError, ValidationError
from spoonfeeder.providers.base import (
    ChatMessage,
    ChatOptions,
    ChatProvider,
    ImageAttachment,
    Usage,
)
from spoonfeeder.providers.registry import CHAT_PROVIDERS, ProviderRegistry

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TITLE = 300
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
                f"Unknown chat provider {self.provider!r}; choose one of: "
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


class Reply:
    """One assistant reply, streaming on a background thread. Iterate it for text deltas."""

    def __init__(self, conversation_id: uuid.UUID, message_id: uuid.UUID) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.text = ""
        self.status = STREAMING
        self.error: str | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.ttft_ms: float | None = None
        self.latency_ms: float | None = None
        self._deltas: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = threading.Event()

    def __iter__(self) -> Iterator[str]:
        try:
            while (delta := self._deltas.get()) is not None:
                yield delta
        except GeneratorExit:  # the reader went away (closed tab, cancelled request)
            self.stop(wait=False)
            raise

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
        owner_id: uuid.UUID | None = None,
    ) -> ConversationView:
        row = Conversation(
            title=_clean_title(title) if title else "New conversation",
            system_prompt=(system_prompt or "").strip() or None,
            owner_id=owner_id,
        )
        with transaction(self._sessions) as session:
            session.add(row)
        return self.get_conversation(row.id)

    def get_conversation(self, conversation_id: uuid.UUID | str) -> ConversationView:
        with self._sessions() as session:
            row = _conversation(session, conversation_id)
            return _conversation_view(row, list(row.messages))

    def list_conversations(
        self, search: str = "", *, limit: int = 100, owner_id: uuid.UUID | None = None
    ) -> list[ConversationSummary]:
        """Newest first; `search` matches the title or any message's text."""
        counts = (
            select(Message.conversation_id, func.count().label("n"))
            .group_by(Message.conversation_id)
            .subquery()
        )
        query = (
            select(Conversation, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.conversation_id == Conversation.id)
            .order_by(Conversation.updated_at.desc())
            .limit(limit)
        )
        if owner_id is not None:
            query = query.where(Conversation.owner_id == owner_id)
        if term := search.strip():
            pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            in_messages = select(Message.conversation_id).where(
                Message.content.ilike(pattern, escape="\\")
            )
            query = query.where(
                or_(
                    Conversation.title.ilike(pattern, escape="\\"), Conversation.id.in_(in_messages)
                )
            )
        with self._sessions() as session:
            return [
                ConversationSummary(c.id, c.title, c.provider, c.model, c.updated_at, n)
                for c, n in session.execute(query)
            ]

    def rename(self, conversation_id: uuid.UUID | str, title: str) -> ConversationView:
        clean = _clean_title(title)
        with transaction(self._sessions) as session:
            _conversation(session, conversation_id).title = clean
        return self.get_conversation(conversation_id)

    def delete(self, conversation_id: uuid.UUID | str) -> str:
        with transaction(self._sessions) as session:
            row = _conversation(session, conversation_id)
            title = row.title
            if (reply := self._active.get(row.id)) is not None:
                reply.stop()
            session.delete(row)
        shutil.rmtree(self._media / str(row.id), ignore_errors=True)
        return title

    def seed_messages(
        self, conversation_id: uuid.UUID | str, messages: Sequence[ChatMessage]
    ) -> None:
        """Append earlier turns given by an API caller, stored like any other message."""
        with transaction(self._sessions) as session:
            row = _conversation(session, conversation_id)
            position = _next_position(session, row.id)
            for offset, m in enumerate(messages):
                if m.role not in ("user", "assistant"):
                    raise ValidationError(
                        f"Message {offset + 1} has role {m.role!r}; use 'user' or 'assistant' "
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

    def set_system_prompt(self, conversation_id: uuid.UUID | str, system_prompt: str) -> None:
        with transaction(self._sessions) as session:
            _conversation(session, conversation_id).system_prompt = system_prompt.strip() or None

    # ----- chatting ---------------------------------------------------------------------

    def send(
        self,
        conversation_id: uuid.UUID | str,
        text: str,
        target: ChatTarget,
        options: ChatOptions | None = None,
        images: Sequence[Path | str] = (),
    ) -> Reply:
        """Add a user message and start streaming the reply to it."""
        target = target.validated()
        if not text.strip() and not images:
            raise ValidationError("Type a message or attach an image first")
        conv_id = _uuid(conversation_id)
        provider = self._provider(target)
        attachments = [self._store_image(conv_id, Path(p)) for p in images]
        with transaction(self._sessions) as session:
            row = _conversation(session, conv_id)
            self._refuse_if_streaming(row.id)
            position = _next_position(session, row.id)
            session.add(
                Message(
                    conversation_id=row.id,
                    position=position,
                    role="user",
                    content=text,
                    attachments=attachments,
                )
            )
            if row.title == "New conversation" and text.strip():
                row.title = _clean_title(text.strip().splitlines()[0][:60])
            # The same transaction makes the reply's row: one commit less before the
            # request goes out, which is time to first token.
            prepared = self._prepare_reply(session, row, target, options, position + 1)
        return self._start_reply(conv_id, provider, target, *prepared)

    def regenerate(
        self,
        conversation_id: uuid.UUID | str,
        target: ChatTarget,
        options: ChatOptions | None = None,
    ) -> Reply:
        """Replace the reply to the last user message with a new one."""
        target = target.validated()
        conv_id = _uuid(conversation_id)
        provider = self._provider(target)
        with transaction(self._sessions) as session:
            row = _conversation(session, conv_id)
            self._refuse_if_streaming(row.id)
            last_user = _last_user_position(session, row.id)
            if last_user is None:
                raise ValidationError("There is no message to answer yet")
            _delete_after(session, row.id, last_user)
            prepared = self._prepare_reply(session, row, target, options, last_user + 1)
        return self._start_reply(conv_id, provider, target, *prepared)

    def edit_and_resend(
        self,
        conversation_id: uuid.UUID | str,
        message_id: uuid.UUID | str,
        new_text: str,
        target: ChatTarget,
        options: ChatOptions | None = None,
    ) -> Reply:
        """Change a user message, drop everything after it, and answer it again."""
        target = target.validated()
        if not new_text.strip():
            raise ValidationError("The edited message is empty")
        conv_id = _uuid(conversation_id)
        provider = self._provider(target)
        with transaction(self._sessions) as session:
            row = _conversation(session, conv_id)
            self._refuse_if_streaming(row.id)
            message = session.get(Message, _uuid(message_id))
            if message is None or message.conversation_id != row.id:
                raise NotFoundError("That message is no longer in this conversation")
            if message.role != "user":
                raise ValidationError("Only your own messages can be edited")
            message.content = new_text
            _delete_after(session, row.id, message.position)
            prepared = self._prepare_reply(session, row, target, options, message.position + 1)
        return self._start_reply(conv_id, provider, target, *prepared)

    def stop(self, conversation_id: uuid.UUID | str) -> bool:
        """Stop the reply streaming in this conversation, if any. True if one was stopped."""
        reply = self._active.get(_uuid(conversation_id))
        if reply is None:
            return False
        reply.stop()
        return True

    def active_reply(self, conversation_id: uuid.UUID | str) -> Reply | None:
        return self._active.get(_uuid(conversation_id))

    def recover_interrupted(self) -> int:
        """Mark replies that were streaming when the app stopped; run once at start."""
        with transaction(self._sessions) as session:
            rows = session.scalars(select(Message).where(Message.status == STREAMING)).all()
            for row in rows:
                row.status = STOPPED
                row.error = "The app stopped while this reply was streaming"
            return len(rows)

    # ----- export ------------------------------------------------------------------------

    def export_json(self, conversation_id: uuid.UUID | str) -> dict[str, Any]:
        from spoonfeeder.serialize import jsonable

        return jsonable(self.get_conversation(conversation_id))

    def export_markdown(self, conversation_id: uuid.UUID | str) -> str:
        conv = self.get_conversation(conversation_id)
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

    def _refuse_if_streaming(self, conversation_id: uuid.UUID) -> None:
        reply = self._active.get(conversation_id)
        if reply is not None and not reply.done:
            raise ValidationError("A reply is still streaming in this conversation; stop it first")

    def _provider(self, target: ChatTarget) -> ChatProvider:
        # Before anything is saved: a missing key or a deleted profile fails here, loudly.
        return self._providers.get(target.provider, target.profile_id)

    def _prepare_reply(
        self,
        session: Session,
        conv: Conversation,
        target: ChatTarget,
        options: ChatOptions | None,
        position: int,
    ) -> tuple[uuid.UUID, list[ChatMessage], ChatOptions]:
        """In the caller's transaction: the history to send, and the reply's own row."""
        options = options or ChatOptions()
        session.flush()  # the caller's changes (new or edited message) are part of the history
        session.expire(conv, ["messages"])
        history = [
            m
            for m in conv.messages
            if m.role in ("user", "assistant") and (m.content or m.attachments)
        ]
        if options.system is not None:  # None keeps the conversation's system prompt
            conv.system_prompt = options.system.strip() or None
        options = dataclasses.replace(options, system=conv.system_prompt)
        conv.provider, conv.model, conv.profile_id = (
            target.provider,
            target.model,
            target.profile_id,
        )
        conv.options = {"temperature": options.temperature, "max_tokens": options.max_tokens}
        conv.updated_at = utcnow()
        messages = [self._chat_message(m) for m in history]
        row = Message(
            id=uuid.uuid4(),
            conversation_id=conv.id,
            position=position,
            role="assistant",
            content="",
            provider=target.provider,
            profile_id=target.profile_id,
            model=target.model,
            status=STREAMING,
        )
        session.add(row)
        return row.id, messages, options

    def _start_reply(
        self,
        conv_id: uuid.UUID,
        provider: ChatProvider,
        target: ChatTarget,
        message_id: uuid.UUID,
        messages: list[ChatMessage],
        options: ChatOptions,
    ) -> Reply:
        """After the commit: stream on a thread that saves the row when the reply ends."""
        reply = Reply(conv_id, message_id)
        with self._lock:
            self._active[conv_id] = reply
        thread = threading.Thread(
            target=self._stream,
            args=(reply, provider, target.model, messages, options),
            name=f"reply-{conv_id}",
            daemon=True,
        )
        thread.start()
        return reply

    def _stream(
        self,
        reply: Reply,
        provider: ChatProvider,
        model: str,
        messages: list[ChatMessage],
        options: ChatOptions,
    ) -> None:
        started = time.perf_counter()
        parts: list[str] = []
        status = COMPLETE
        try:
            stream = provider.stream_chat(model, messages, options)
            try:
                for chunk in stream:
                    if reply._stop.is_set():
                        status = STOPPED
                        break
                    if chunk.text:
                        if reply.ttft_ms is None:
                            reply.ttft_ms = (time.perf_counter() - started) * 1000
                        parts.append(chunk.text)
                        reply._deltas.put(chunk.text)
                    if chunk.finish_reason:
                        reply.finish_reason = chunk.finish_reason
                    if chunk.usage:
                        reply.usage = chunk.usage
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # closes the upstream HTTP stream when we stopped early
            if reply._stop.is_set():
                status = STOPPED
        except ProviderError as exc:
            status, reply.error = ERROR, str(exc)
        except Exception as exc:  # a bug or an unmapped SDK error: still save what we have
            status, reply.error = ERROR, f"Unexpected error: {exc.__class__.__name__}: {exc}"
        reply.text = "".join(parts)
        reply.status = status
        reply.latency_ms = (time.perf_counter() - started) * 1000
        try:
            self._save_reply(reply)
        finally:
            with self._lock:
                if self._active.get(reply.conversation_id) is reply:
                    del self._active[reply.conversation_id]
            reply._done.set()
            reply._deltas.put(None)

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
            conv = session.get(Conversation, reply.conversation_id)
            if conv is not None:
                conv.updated_at = utcnow()

    def _chat_message(self, row: Message) -> ChatMessage:
        images = tuple(
            ImageAttachment(a["mime_type"], Path(a["path"]).read_bytes())
            for a in row.attachments or []
            if Path(a["path"]).exists()
        )
        return ChatMessage(role=row.role, content=row.content, images=images)  # type: ignore[arg-type]

    def _store_image(self, conversation_id: uuid.UUID, source: Path) -> dict[str, Any]:
        if not source.is_file():
            raise ValidationError(f"The attached file {source.name!r} could not be read")
        mime = mimetypes.guess_type(source.name)[0] or ""
        if mime not in IMAGE_TYPES:
            raise ValidationError(
                f"{source.name!r} is not a supported image (PNG, JPEG, WebP or GIF)"
            )
        size = source.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ValidationError(f"{source.name!r} is larger than 20 MB")
        folder = self._media / str(conversation_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uuid.uuid4().hex}{source.suffix.lower()}"
        shutil.copyfile(source, target)
        return {"path": str(target), "mime_type": mime, "name": source.name, "bytes": size}


def describe_message(m: MessageView) -> str:
    """The footer under an assistant reply: model, tokens, timings, status."""
    bits = [m.model or "?"]
    if m.tokens_in is not None or m.tokens_out is not None:
        bits.append(f"{m.tokens_in or 0}→{m.tokens_out or 0} tokens")
    if m.ttft_ms is not None:
        bits.append(f"first token {m.ttft_ms:.0f} ms")
    if m.latency_ms is not None:
        bits.append(f"{m.latency_ms / 1000:.1f} s")
    if m.status == STOPPED:
        bits.append("⏹ stopped")
    return " · ".join(bits)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFoundError(f"No conversation or message with id {value!r}") from None


def _clean_title(title: str) -> str:
    clean = " ".join(title.split())
    if not clean:
        raise ValidationError("The title cannot be empty")
    return clean[:MAX_TITLE]


def _conversation(session: Session, conversation_id: uuid.UUID | str) -> Conversation:
    row = session.get(Conversation, _uuid(conversation_id))
    if row is None:
        raise NotFoundError(f"No conversation with id {conversation_id} (it may have been deleted)")
    return row


def _next_position(session: Session, conversation_id: uuid.UUID) -> int:
    last = session.scalar(
        select(func.max(Message.position)).where(Message.conversation_id == conversation_id)
    )
    return 0 if last is None else last + 1


def _last_user_position(session: Session, conversation_id: uuid.UUID) -> int | None:
    return session.scalar(
        select(func.max(Message.position)).where(
            Message.conversation_id == conversation_id, Message.role == "user"
        )
    )


def _delete_after(session: Session, conversation_id: uuid.UUID, position: int) -> None:
    session.execute(
        delete(Message).where(
            Message.conversation_id == conversation_id, Message.position > position
        )
    )
    session.expire_all()


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
