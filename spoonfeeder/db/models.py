"""The database schema: one typed model per table.

Schema changes go through Alembic (`spoonfeeder/db/migrations`); the app upgrades
to head on start. User-owned rows carry a nullable `owner_id` so users and
workspaces can arrive without a rewrite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from spoonfeeder.db.types import JSONType, UTCDateTime, utcnow

# Stable constraint names, so migrations can refer to them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDict = dict[str, Any]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        JSONDict: JSONType,
        uuid.UUID: Uuid(),
    }


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


def _updated() -> Mapped[datetime]:
    return mapped_column(default=utcnow, onupdate=utcnow)


def _owner() -> Mapped[uuid.UUID | None]:
    return mapped_column(index=True)


class User(Base):
    """Someone who signs in: a name, an Argon2 hash of the password and a role."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")  # "admin" or "user"
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ApiToken(Base):
    """A personal API token: only its SHA-256 is stored (the token is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell it apart
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Profile(Base):
    """A named provider endpoint: a second ComfyUI server, an OpenAI-compatible host, …"""

    __tablename__ = "profiles"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    provider: Mapped[str] = mapped_column(String(32), index=True)
    api_key: Mapped[str | None] = mapped_column(Text)  # SecretBox ciphertext
    url: Mapped[str | None] = mapped_column(String(2048))
    options: Mapped[JSONDict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32), default="untested")
    status_message: Mapped[str | None] = mapped_column(Text)
    last_tested: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ProviderSetting(Base):
    """The default configuration of one provider kind."""

    __tablename__ = "provider_settings"

    id: Mapped[uuid.UUID] = _id()
    provider: Mapped[str] = mapped_column(String(32), unique=True)
    api_key: Mapped[str | None] = mapped_column(Text)  # SecretBox ciphertext
    endpoint_url: Mapped[str | None] = mapped_column(String(2048))
    default_model: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default="untested")
    status_message: Mapped[str | None] = mapped_column(Text)
    last_tested: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ComfyUISession(Base):
    __tablename__ = "comfyui_sessions"

    id: Mapped[uuid.UUID] = _id()
    owner_id: Mapped[uuid.UUID | None] = _owner()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    profile_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL")
    )
    last_parameters: Mapped[JSONDict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    generations: Mapped[list[ComfyUIGeneration]] = relationship(back_populates="session")


class ComfyUIWorkflow(Base):
    __tablename__ = "comfyui_workflows"

    id: Mapped[uuid.UUID] = _id()
    owner_id: Mapped[uuid.UUID | None] = _owner()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    workflow_json: Mapped[JSONDict] = mapped_column(default=dict)  # API format
    # The same workflow as JSON text in its own key order (JSONB would sort the keys, and
    # the order reaches what is posted). NULL for rows imported before migration 0004.
    workflow_text: Mapped[str | None] = mapped_column(Text)
    parameter_map: Mapped[JSONDict] = mapped_column(default=dict)  # param -> [node_id, input]
    default_parameters: Mapped[JSONDict] = mapped_column(default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    generation_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ComfyUIGeneration(Base):
    """One run of a workflow: parameters twice (JSON and indexed columns) for search."""

    __tablename__ = "comfyui_generations"
    __table_args__ = (
        Index("ix_comfyui_generations_created_at", "created_at"),
        Index("ix_comfyui_generations_size", "width", "height"),
        Index("ix_comfyui_generations_session_created", "session_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    owner_id: Mapped[uuid.UUID | None] = _owner()
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("comfyui_sessions.id", ondelete="SET NULL")
    )
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("comfyui_workflows.id", ondelete="SET NULL"), index=True
    )
    profile_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL")
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    reproduced_from_id: Mapped[uuid.UUID | None]
    prompt_id: Mapped[str | None] = mapped_column(String(64), index=True)
    workflow_json_snapshot: Mapped[JSONDict] = mapped_column(default=dict)  # for queries
    # Exactly the prompt JSON posted to ComfyUI, byte for byte: ComfyUI writes what it
    # received into every PNG, and JSONB reorders keys. Re-runs post this text.
    workflow_snapshot_text: Mapped[str | None] = mapped_column(Text)
    # Input images (LoadImage): [{node_id, name (on the server), path (media), sha256, …}]
    input_images: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    prompt_text: Mapped[str | None] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[JSONDict] = mapped_column(default=dict)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    steps: Mapped[int | None] = mapped_column(Integer, index=True)
    cfg_scale: Mapped[float | None] = mapped_column(Float, index=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, index=True)
    sampler_name: Mapped[str | None] = mapped_column(String(100), index=True)
    scheduler: Mapped[str | None] = mapped_column(String(100), index=True)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    checkpoint_name: Mapped[str | None] = mapped_column(String(500), index=True)
    loras_used: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    outputs: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    generation_time_seconds: Mapped[float | None] = mapped_column(Float)
    batch_index: Mapped[int] = mapped_column(Integer, default=0)
    server_info: Mapped[JSONDict] = mapped_column(default=dict)  # version, system_stats
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _updated()

    session: Mapped[ComfyUISession | None] = relationship(back_populates="generations")


class Task(Base):
    """A unit of background work; the queue's row. States: queued → running → done."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_claim", "status", "priority", "run_at"),
        Index("ix_tasks_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    owner_id: Mapped[uuid.UUID | None] = _owner()
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[JSONDict] = mapped_column(default=dict)
    provider: Mapped[str | None] = mapped_column(String(32), index=True)
    model: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None] = mapped_column(index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _updated()

    result: Mapped[Result | None] = relationship(
        back_populates="task", cascade="all, delete-orphan", passive_deletes=True
    )


# The claim's exact order over queued rows only: each claim reads one index entry
# instead of sorting the whole queue. Migration 0002.
Index(
    "ix_tasks_queued",
    Task.priority.desc(),
    Task.run_at,
    Task.created_at,
    postgresql_where=text("status = 'queued'"),
    sqlite_where=text("status = 'queued'"),
)


class Result(Base):
    """The outcome of a completed task (1:1 with `tasks`)."""

    __tablename__ = "results"

    id: Mapped[uuid.UUID] = _id()
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), unique=True
    )
    data: Mapped[JSONDict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()

    task: Mapped[Task] = relationship(back_populates="result")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_updated_at", "updated_at"),)

    id: Mapped[uuid.UUID] = _id()
    owner_id: Mapped[uuid.UUID | None] = _owner()
    title: Mapped[str] = mapped_column(String(300), default="New conversation")
    # Renamed by hand: the title no longer follows the first message.
    title_locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    provider: Mapped[str | None] = mapped_column(String(32))
    profile_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL")
    )
    model: Mapped[str | None] = mapped_column(String(255))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    options: Mapped[JSONDict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.position",
    )


class Message(Base):
    """One chat turn, with what produced it and what it cost."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_position", "conversation_id", "position"),)

    id: Mapped[uuid.UUID] = _id()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    provider: Mapped[str | None] = mapped_column(String(32), index=True)
    profile_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL")
    )
    model: Mapped[str | None] = mapped_column(String(255))
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    # The server reported no usage: the counts are estimates (chunks streamed, prompt length).
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="complete")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


# Tables counted on the dashboard, in display order.
MAIN_TABLES: dict[str, type[Base]] = {
    "profiles": Profile,
    "conversations": Conversation,
    "messages": Message,
    "comfyui_sessions": ComfyUISession,
    "comfyui_workflows": ComfyUIWorkflow,
    "comfyui_generations": ComfyUIGeneration,
    "tasks": Task,
}
