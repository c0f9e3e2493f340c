"""/api/models: the models of an Ollama server, as the Models tab manages them — list,
details, load, unload, pull (progress as server-sent events) and delete.

Every route takes `?profile_id=`: left out, the Ollama setting's server; an Ollama
profile's id, that profile's server. Model names keep their ':' and '/' in the path:
`POST /api/models/library/llama3.2:1b/pull`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.api.failures import status_and_code
from spoonfeeder.context import AppContext
from spoonfeeder.errors import SpoonFeederError
from spoonfeeder.ollama_models import (
    InstalledModel,
    LoadedModel,
    ModelDetails,
    OllamaModelService,
    PullProgress,
)

ModelName = Annotated[
    str, Path(description="The model's name, with any namespace and tag: llama3.2:1b, a/b:latest")
]
ProfileQuery = Annotated[
    str | None,
    Query(description="An Ollama profile's id; left out: the Ollama setting's server"),
]


@dataclass(frozen=True)
class OllamaModels:
    installed: list[InstalledModel]  # on disk, by name
    loaded: list[LoadedModel]  # in memory now, by name


@dataclass(frozen=True)
class Pulled:
    name: str
    total_bytes: int  # of every layer downloaded or already there


@dataclass(frozen=True)
class Pull:
    """A pull that has taken its first step: the server answered."""

    name: str
    steps: Iterator[PullProgress]


PULL_EVENTS = {
    "description": "Server-sent events: `progress` (one per line Ollama reports), then "
    "`done` with the name and size, or `error` with the envelope's `error` and `code` "
    "(the pull failed midway). A refused name or an unreachable server is a JSON error "
    "envelope instead, before any event.",
    "content": {"text/event-stream": {}},
}


def error_event(exc: SpoonFeederError) -> ServerSentEvent:
    """A failure after the stream began, as an `error` event carrying the envelope."""
    _, code = status_and_code(exc)
    return ServerSentEvent(
        event="error", data={"success": False, "error": exc.message, "code": code}
    )


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/models", tags=["models"])
    service = ctx.ollama_models

    @router.get("", summary="List Ollama models")
    def list_models(profile_id: ProfileQuery = None) -> Ok[OllamaModels]:
        """The models installed on the server, and those loaded in memory right now."""
        return ok(_models(service, profile_id))

    @router.get("/{name:path}", summary="Get a model's details")
    def show_model(name: ModelName, profile_id: ProfileQuery = None) -> Ok[ModelDetails]:
        """What Ollama's /api/show says of an installed model: family, parameters,
        quantization, capabilities, template, license."""
        return ok(service.show(name, profile_id))

    @router.post("/{name:path}/load", summary="Load model into memory")
    def load_model(name: ModelName, profile_id: ProfileQuery = None) -> Ok[OllamaModels]:
        """Load a model; it stays in memory until unloaded. Answers the server's models
        afterwards."""
        service.load(name, profile_id=profile_id)
        return ok(_models(service, profile_id))

    @router.post("/{name:path}/unload", summary="Unload model")
    def unload_model(name: ModelName, profile_id: ProfileQuery = None) -> Ok[OllamaModels]:
        """Free the memory a model holds; it stays installed."""
        service.unload(name, profile_id)
        return ok(_models(service, profile_id))

    def started_pull(name: ModelName, profile_id: ProfileQuery = None) -> Iterator[Pull]:
        # A dependency, so that what fails before the first step (a bad name, an
        # unknown profile, a server that does not answer) is a JSON error, not a stream.
        progress = service.pull(name, profile_id)
        try:
            first = next(progress)
            yield Pull(name.strip(), chain([first], progress))
        finally:
            progress.close()  # a client gone mid-pull: Ollama cancels the download

    @router.post(
        "/{name:path}/pull",
        summary="Pull a model",
        response_class=EventSourceResponse,
        responses={200: PULL_EVENTS},
    )
    # Depends as a default: an Annotated[…] annotation is a string here (postponed
    # evaluation), and FastAPI resolves it in the module, which cannot see this closure.
    def pull_model(pull: Pull = Depends(started_pull)) -> Iterator[ServerSentEvent]:  # noqa: B008
        """Download a model from the Ollama library (or any registry: `hf.co/user/repo`),
        streaming its progress: overall `percent` (never goes down), bytes so far and
        per layer. Closing the connection stops the pull."""
        last: PullProgress | None = None
        try:
            for last in pull.steps:
                yield ServerSentEvent(event="progress", data=last)
        except SpoonFeederError as exc:
            yield error_event(exc)
            return
        total = last.total_bytes if last else 0
        yield ServerSentEvent(event="done", data=Pulled(pull.name, total))

    @router.delete("/{name:path}", summary="Delete a model")
    def delete_model(name: ModelName, profile_id: ProfileQuery = None) -> Ok[OllamaModels]:
        """Remove a model from the server's disk. Answers the models left."""
        service.delete(name, profile_id)
        return ok(_models(service, profile_id))

    return router


def _models(service: OllamaModelService, profile_id: str | None) -> OllamaModels:
    return OllamaModels(service.installed(profile_id), service.loaded(profile_id))
