"""What the ComfyUI service hands out: plain frozen records, no database objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
PROGRESS_TOPIC = "comfyui:progress"  # event bus topic of GenerationProgress.as_event()


@dataclass(frozen=True)
class WorkflowView:
    id: uuid.UUID
    name: str
    description: str | None
    workflow: dict[str, Any]  # API format, as imported
    parameter_map: dict[
        str, Any
    ]  # ParamMap.to_json(): {"targets": {param: [node, input]}, "loras"}
    parameters: dict[str, Any]  # effective defaults: the workflow's values ← edited defaults
    is_default: bool
    generation_count: int
    created_at: datetime
    updated_at: datetime

    @property
    def extracted(self) -> list[str]:
        """The parameters found in the workflow (those a generation can set)."""
        names = list(self.parameter_map.get("targets", {}))
        return [*names, "loras"] if self.parameter_map.get("loras") is not None else names


@dataclass(frozen=True)
class ServerOptions:
    """Choices a ComfyUI server offers, read from /object_info."""

    url: str
    samplers: list[str]
    schedulers: list[str]
    checkpoints: list[str]
    loras: list[str]
    fetched_at: datetime


@dataclass(frozen=True)
class SessionView:
    id: uuid.UUID
    name: str
    description: str | None
    profile_id: uuid.UUID | None  # the ComfyUI server profile; None = the default server
    last_parameters: dict[str, Any]  # form values of the last generate (seed as asked, e.g. -1)
    generation_count: int
    completed_count: int
    failed_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OutputFile:
    """One file a generation produced, stored under the media folder."""

    path: str  # relative to MEDIA_STORAGE_PATH; resolve with ctx.comfyui.media.file()
    kind: str  # "image" | "video" | "audio" | "file"
    media_type: str
    node_id: str
    filename: str  # as ComfyUI named it
    size: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputFile:
        return cls(
            str(data.get("path", "")),
            str(data.get("kind", "file")),
            str(data.get("media_type", "application/octet-stream")),
            str(data.get("node_id", "")),
            str(data.get("filename", "")),
            int(data.get("size", 0)),
        )


@dataclass(frozen=True)
class GenerationView:
    id: uuid.UUID
    session_id: uuid.UUID | None
    workflow_id: uuid.UUID | None
    profile_id: uuid.UUID | None
    task_id: uuid.UUID | None
    status: str  # pending | running | completed | failed | cancelled
    prompt_id: str | None
    prompt: str | None
    negative_prompt: str | None
    parameters: dict[str, Any]
    width: int | None
    height: int | None
    steps: int | None
    cfg: float | None
    seed: int | None
    sampler_name: str | None
    scheduler: str | None
    batch_size: int | None
    checkpoint: str | None
    loras: list[Any]
    outputs: list[OutputFile]
    error: str | None
    progress: float
    generation_time_seconds: float | None
    batch_index: int
    reproduced_from_id: uuid.UUID | None
    server_info: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    # Uploaded before each run: [{node_id, name, path (media), sha256, filename, mime, size}]
    input_images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The sweep cell label ("cfg=4 · steps=20"), else ""."""
        return str((self.parameters.get("sweep") or {}).get("label", ""))

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class GalleryPage:
    """One page of a session's completed generations, newest first."""

    generations: list[GenerationView]
    page: int  # 0-based
    pages: int  # at least 1
    total: int  # completed generations in the session
    per_page: int


@dataclass(frozen=True)
class SweepView:
    """A parameter sweep: one generation per combination of the axes' values."""

    id: str
    axes: list[tuple[str, list[Any]]]  # one or two (parameter, values)
    generations: list[GenerationView]  # row-major: first axis varies slowest

    def cell(self, *values: Any) -> GenerationView | None:
        """The generation of one combination, e.g. `sweep.cell(4.0, 20)`."""
        wanted = dict(zip([name for name, _ in self.axes], values, strict=False))
        for generation in self.generations:
            if (generation.parameters.get("sweep") or {}).get("values") == wanted:
                return generation
        return None


@dataclass(frozen=True)
class GenerationProgress:
    """What a running generation reports, as often as ComfyUI tells us something."""

    generation_id: uuid.UUID
    status: str  # running | completed | failed | cancelled
    message: str  # for a person: "Step 2/3 · KSampler (node 3)"
    fraction: float | None  # 0..1 of the current sampler's steps; None: no news on that
    step: int | None = None
    max_steps: int | None = None
    node_id: str | None = None
    node_type: str | None = None
    preview_path: str | None = None  # relative to MEDIA_STORAGE_PATH
    preview_mime: str | None = None
    preview: bytes | None = field(default=None, repr=False)  # the same image, in memory
    sent_at: float | None = None  # time.monotonic() when the runner reported it

    def as_event(self) -> dict[str, Any]:
        """A JSON-safe dict for the event bus (no image bytes)."""
        return {
            "generation_id": str(self.generation_id),
            "status": self.status,
            "message": self.message,
            "fraction": self.fraction,
            "step": self.step,
            "max": self.max_steps,
            "node": self.node_id,
            "node_type": self.node_type,
            "preview_path": self.preview_path,
        }
