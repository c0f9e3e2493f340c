"""Ollama model management: list, inspect, pull, load, unload and delete models.

Every method takes `profile_id`: None targets the Ollama setting, an id targets an
Ollama profile (a second machine, say). Errors are mapped by the same helper as
the chat provider, so both speak with one voice.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ollama

from spoonfeeder.errors import ProviderUnavailable, ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.profiles import ProfileService
from spoonfeeder.providers.base import DEFAULT_TIMEOUT
from spoonfeeder.providers.ollama import PROVIDER, make_client, ollama_errors

# Loading a large model from a slow disk, or verifying a big download, can take
# minutes without a byte on the wire.
SLOW_TIMEOUT = 600.0
MAX_NAME = 300
ALMOST_DONE = 99.9  # the most a pull shows before Ollama says "success"
# [host[:port]/][namespace/]name[:tag] — letters, digits and . _ - in each part.
_NAME_CHARS = re.compile(r"[A-Za-z0-9._\-/:]")
_PART = r"[A-Za-z0-9][A-Za-z0-9._\-]*"
_NAME_SHAPE = re.compile(rf"^{_PART}(?::\d+)?(?:/{_PART})*(?::[A-Za-z0-9_][A-Za-z0-9._\-]*)?$")

ProfileId = uuid.UUID | str | None


def validate_model_name(name: str | None) -> str:
    """A clean model name, or a ValidationError that says what is wrong with it."""
    value = (name or "").strip()
    if not value:
        raise ValidationError(
            "Enter a model name, for example llama3.2 or qwen2.5:7b", field="model"
        )
    if any(c.isspace() for c in value):
        raise ValidationError(f"Model names cannot contain spaces: {shown(value)}", field="model")
    if len(value) > MAX_NAME:
        raise ValidationError(f"The model name is longer than {MAX_NAME} characters", field="model")
    bad = sorted({c for c in value if not _NAME_CHARS.match(c)})
    if bad:
        raise ValidationError(
            f"Model name {shown(value)} contains characters Ollama does not allow "
            f"({''.join(bad)}); "
            "use letters, digits, '.', '-', '_', ':' and '/'",
            field="model",
        )
    if not _NAME_SHAPE.match(value):
        raise ValidationError(
            f"{shown(value)} is not a valid model name; expected name, name:tag or "
            "namespace/name:tag (for example llama3.2:3b)",
            field="model",
        )
    return value


def format_bytes(size: int | None) -> str:
    """Decimal units, as the Ollama CLI prints them: 2019393189 -> "2.0 GB"."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@dataclass(frozen=True)
class OllamaEndpoint:
    """An Ollama server the user can manage: the setting (profile_id None) or a profile."""

    profile_id: str | None
    label: str
    url: str


@dataclass(frozen=True)
class InstalledModel:
    name: str
    size: int  # bytes on disk
    family: str | None
    parameter_size: str | None
    quantization: str | None
    modified_at: datetime | None
    digest: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    name: str
    size: int  # bytes in memory
    size_vram: int  # of which on the GPU
    expires_at: datetime | None
    context_length: int | None


@dataclass(frozen=True)
class ModelDetails:
    name: str
    details: dict[str, Any]
    parameters: str | None
    template: str | None
    capabilities: list[str]
    model_info: dict[str, Any]
    license: str | None = None
    modified_at: datetime | None = None


@dataclass(frozen=True)
class LayerProgress:
    digest: str
    total: int
    completed: int
    percent: float


@dataclass(frozen=True)
class PullProgress:
    """One step of a pull: the raw line plus the running totals the UI shows."""

    status: str
    digest: str | None
    total: int | None
    completed: int | None
    percent: float  # overall, 0–100, never goes down; 100 only once done
    completed_bytes: int  # over all layers seen so far
    total_bytes: int
    layers: dict[str, LayerProgress] = field(default_factory=dict)
    done: bool = False


class PullTracker:
    """Turns Ollama's per-layer progress lines into overall progress. Pure, no I/O."""

    def __init__(self) -> None:
        self._layers: dict[str, LayerProgress] = {}
        self._percent = 0.0
        self.done = False

    def update(
        self, status: str, digest: str | None, total: int | None, completed: int | None
    ) -> PullProgress:
        if digest and total:
            done = min(completed or 0, total)
            self._layers[digest] = LayerProgress(digest, total, done, round(100 * done / total, 1))
        total_bytes = sum(layer.total for layer in self._layers.values())
        completed_bytes = sum(layer.completed for layer in self._layers.values())
        self.done = status == "success"
        if self.done:
            self._percent = 100.0
        elif total_bytes:
            # Layers are announced one after another, so the total grows as the pull
            # goes on: never let the overall bar jump back when a new layer appears, and
            # keep 100 % for success, since more layers may still come.
            ratio = min(round(100 * completed_bytes / total_bytes, 1), ALMOST_DONE)
            self._percent = max(self._percent, ratio)
        return PullProgress(
            status=status,
            digest=digest,
            total=total,
            completed=completed,
            percent=self._percent,
            completed_bytes=completed_bytes,
            total_bytes=total_bytes,
            layers=dict(self._layers),
            done=self.done,
        )


def _installed(model: Any) -> InstalledModel:
    details = model.details
    return InstalledModel(
        name=model.model or "",
        size=int(model.size or 0),
        family=details.family if details else None,
        parameter_size=details.parameter_size if details else None,
        quantization=details.quantization_level if details else None,
        modified_at=model.modified_at,
        digest=model.digest,
    )


def _loaded(model: Any) -> LoadedModel:
    return LoadedModel(
        name=model.model or model.name or "",
        size=int(model.size or 0),
        size_vram=int(model.size_vram or 0),
        expires_at=model.expires_at,
        context_length=model.context_length,
    )


class OllamaModelService:
    """Manages the models of the Ollama setting's server or of an Ollama profile."""

    def __init__(self, profiles: ProfileService) -> None:
        self._profiles = profiles
        # One SDK client per (endpoint, key, timeout): keeps connection pools warm.
        self._clients: dict[tuple[str, str, float], ollama.Client] = {}
        self._lock = threading.Lock()

    # ----- endpoints -------------------------------------------------------------

    def endpoints(self) -> list[OllamaEndpoint]:
        """The Ollama setting first, then every Ollama profile."""
        setting = self._profiles.get_setting(PROVIDER)
        found = [
            OllamaEndpoint(None, f"Ollama setting — {setting.endpoint_url}", setting.endpoint_url)
        ]
        for view in self._profiles.list_profiles():
            if view.provider == PROVIDER:
                found.append(OllamaEndpoint(str(view.id), f"{view.name} — {view.url}", view.url))
        return found

    def _client(
        self, profile_id: ProfileId, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[ollama.Client, str]:
        creds = self._profiles.credentials(PROVIDER, profile_id=profile_id or None)
        if creds.provider != PROVIDER:
            name = self._profiles.get_profile(creds.profile_id).name if creds.profile_id else ""
            raise ValidationError(
                f"Profile '{name}' is a {creds.provider} profile, not an Ollama one",
                field="profile_id",
            )
        secret = hashlib.sha256((creds.api_key or "").encode()).hexdigest()
        key = (creds.url, secret, timeout)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = make_client(creds.url, creds.api_key, timeout)
        return client, creds.url

    # ----- reading -----------------------------------------------------------------

    def installed(self, profile_id: ProfileId = None) -> list[InstalledModel]:
        client, url = self._client(profile_id)
        with ollama_errors(url):
            listing = client.list()
        return sorted((_installed(m) for m in listing.models), key=lambda m: m.name)

    def loaded(self, profile_id: ProfileId = None) -> list[LoadedModel]:
        client, url = self._client(profile_id)
        with ollama_errors(url):
            running = client.ps()
        return sorted((_loaded(m) for m in running.models), key=lambda m: m.name)

    def show(self, name: str, profile_id: ProfileId = None) -> ModelDetails:
        name = validate_model_name(name)
        client, url = self._client(profile_id)
        with ollama_errors(url, model=name):
            info = client.show(name)
        return ModelDetails(
            name=name,
            details=info.details.model_dump(exclude_none=True) if info.details else {},
            parameters=info.parameters,
            template=info.template,
            capabilities=list(info.capabilities or []),
            model_info=dict(info.modelinfo or {}),
            license=info.license,
            modified_at=info.modified_at,
        )

    # ----- changing ----------------------------------------------------------------

    def pull(self, name: str, profile_id: ProfileId = None) -> Iterator[PullProgress]:
        """Download a model, yielding progress. Closing the iterator stops the pull.

        The name and endpoint are checked now, before anything is sent.
        """
        name = validate_model_name(name)
        client, url = self._client(profile_id, SLOW_TIMEOUT)
        return self._pull_stream(client, url, name)

    def _pull_stream(self, client: ollama.Client, url: str, name: str) -> Iterator[PullProgress]:
        tracker = PullTracker()
        with ollama_errors(url, model=name, during="pull"):
            stream = client.pull(name, stream=True)
            try:
                for part in stream:
                    yield tracker.update(part.status or "", part.digest, part.total, part.completed)
            finally:
                # Closing the response makes Ollama cancel the download.
                stream.close()
        if not tracker.done:
            raise ProviderUnavailable(
                f"Ollama at {url} ended the pull of {shown(name)} before it succeeded; try again",
                provider=PROVIDER,
            )

    def load(self, name: str, keep_alive: float | str = -1, profile_id: ProfileId = None) -> None:
        """Load a model into memory; keep_alive -1 keeps it there until unloaded."""
        name = validate_model_name(name)
        client, url = self._client(profile_id, SLOW_TIMEOUT)
        with ollama_errors(url, model=name):
            client.generate(model=name, keep_alive=keep_alive)

    def unload(self, name: str, profile_id: ProfileId = None) -> None:
        """Free the memory a model holds; it stays installed."""
        name = validate_model_name(name)
        client, url = self._client(profile_id)
        with ollama_errors(url, model=name):
            client.generate(model=name, keep_alive=0)

    def delete(self, name: str, profile_id: ProfileId = None) -> None:
        name = validate_model_name(name)
        client, url = self._client(profile_id)
        with ollama_errors(url, model=name, missing_hint="there is nothing to delete"):
            client.delete(name)
