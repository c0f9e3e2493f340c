"""A fake Ollama server speaking the real wire protocol (docs: provider-protocols.md §4).

Use it with `tests.fakes.server.serve` and the official `ollama` client::

    fake = FakeOllama(models=["llama3.2:latest"], tokens=["Hel", "lo"], token_delay=0.0)
    with serve(fake.app) as url:
        ...  # OllamaProvider(url, None, {}) / ollama.Client(host=url)
    fake.requests[-1].body  # what the client sent

Constructor (all keyword-friendly, all optional):
- ``models``: installed models, as names ("llama3.2" means "llama3.2:latest") or
  ``FakeModel`` objects. Default: ``["llama3.2:latest"]``.
- ``tokens``: the text pieces /api/chat and /api/generate stream, one NDJSON line each.
  ``options.num_predict`` cuts the list short (done_reason "length").
- ``token_delay``: seconds between streamed lines (chat, generate and pull). 0 = as fast
  as possible (a 500-token stream takes a few milliseconds).
- ``fault``: None or one of ``FAULTS``; may be changed between requests.
    "unknown_model"  every model endpoint answers 404 {"error": "model 'x' not found"}
    "server_error"   every /api/* endpoint answers 500
    "unauthorized"   every /api/* endpoint answers 401
    "rate_limited"   every /api/* endpoint answers 429
    "break_midway"   streams drop the TCP connection after ``fault_after`` lines
    "error_line"     streams send {"error": …} (HTTP status stays 200) after ``fault_after`` lines
    "empty_stream"   chat/generate answer HTTP 200 with no line at all
    "no_finish"      chat/generate stream ``fault_after`` lines, then end without ``done``
- ``fault_after``: streamed lines sent before a streaming fault strikes (default 2).
- ``api_key``: when set, every request must carry ``Authorization: Bearer <api_key>``.
- ``pull_layers``: (digest, size) of each layer /api/pull downloads; default two layers.
- ``pull_steps``: progress lines per layer (default 4).
- ``pullable``: names /api/pull can find; None (default) means any name. Others get the
  real server's mid-stream "pull model manifest: file does not exist" error line.

State and observations:
- ``requests``: every request as ``RecordedRequest(method, path, body, headers)``.
- ``installed``: {full name: FakeModel}; /api/pull adds to it, /api/delete removes.
- ``loaded``: {full name: expires_at}; chat/generate load a model, keep_alive 0 unloads.
- ``stream_closed_early``: True once a client closed a stream before its end;
  ``stream_closed`` is the matching ``threading.Event`` (wait on it: disconnects are
  noticed asynchronously).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

FAULTS = (
    "unknown_model",
    "server_error",
    "unauthorized",
    "rate_limited",
    "break_midway",
    "error_line",
    "empty_stream",
    "no_finish",
)
DEFAULT_TOKENS = ("Hello", "!", " How", " can", " I", " help", "?")
DEFAULT_LAYERS = (
    ("sha256:" + "a80c4f17acd5" + "0" * 52, 2_019_377_376),
    ("sha256:" + "966de95ca8a6" + "1" * 52, 1_429),
)
FOREVER = datetime(2318, 1, 1, tzinfo=UTC)  # what real Ollama reports for keep_alive -1
MID_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)$")


class _Drop:
    """Sentinel line: close the connection without finishing the response."""


DROP = _Drop()


class _HideDeliberateDrops(logging.Filter):
    # uvicorn logs an error each time "break_midway" leaves a response unfinished.
    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_HideDeliberateDrops())


def full_name(name: str) -> str:
    """Ollama's canonical name: a missing tag means ":latest"."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeModel:
    name: str
    size: int = 2_019_393_189
    family: str = "llama"
    parameter_size: str = "3.2B"
    quantization: str = "Q4_K_M"
    modified_at: str = "2025-01-01T00:00:00Z"
    capabilities: list[str] = field(default_factory=lambda: ["completion"])

    def __post_init__(self) -> None:
        self.name = full_name(self.name)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    def tag(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details,
        }


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _keep_alive(value: Any) -> timedelta | None:
    """None means forever; a zero timedelta means unload now."""
    if value is None:
        return timedelta(minutes=5)
    if isinstance(value, int | float):
        return None if value < 0 else timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        return timedelta(minutes=5)
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match["unit"]]
    return timedelta(seconds=float(match["n"]) * scale)


class _NDJSONStream:
    """An NDJSON streaming response that notices when the client goes away.

    uvicorn silently drops writes after a disconnect, so a watcher task listens
    for `http.disconnect` instead; that is how the fake sees Stop cancel a stream.
    """

    def __init__(self, fake: FakeOllama, lines: AsyncIterator[dict[str, Any] | _Drop]) -> None:
        self.fake = fake
        self.lines = lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")],
                }
            )
            async for line in self.lines:
                await asyncio.sleep(0)  # let the watcher run even when token_delay is 0
                if gone.is_set():
                    self.fake._closed_early()
                    return
                if isinstance(line, _Drop):
                    return  # uvicorn closes the socket: the client sees a broken stream
                body = (json.dumps(line) + "\n").encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


class FakeOllama:
    def __init__(
        self,
        models: Iterable[str | FakeModel] = ("llama3.2:latest",),
        tokens: Iterable[str] = DEFAULT_TOKENS,
        token_delay: float = 0.0,
        fault: str | None = None,
        *,
        fault_after: int = 2,
        api_key: str | None = None,
        pull_layers: Iterable[tuple[str, int]] = DEFAULT_LAYERS,
        pull_steps: int = 4,
        pullable: Iterable[str] | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {FAULTS}")
        models = [m if isinstance(m, FakeModel) else FakeModel(m) for m in models]
        self.installed: dict[str, FakeModel] = {m.name: m for m in models}
        self.tokens = list(tokens)
        self.token_delay = token_delay
        self.fault = fault
        self.fault_after = fault_after
        self.api_key = api_key
        self.pull_layers = list(pull_layers)
        self.pull_steps = pull_steps
        self.pullable = None if pullable is None else {full_name(n) for n in pullable}
        self.loaded: dict[str, datetime] = {}
        self.requests: list[RecordedRequest] = []
        self.stream_closed = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/api/version", self._version, methods=["GET"]),
                Route("/api/tags", self._tags, methods=["GET"]),
                Route("/api/ps", self._ps, methods=["GET"]),
                Route("/api/show", self._show, methods=["POST"]),
                Route("/api/chat", self._chat, methods=["POST"]),
                Route("/api/generate", self._generate, methods=["POST"]),
                Route("/api/pull", self._pull, methods=["POST"]),
                Route("/api/delete", self._delete, methods=["DELETE"]),
            ]
        )

    # ----- observations --------------------------------------------------------

    @property
    def stream_closed_early(self) -> bool:
        return self.stream_closed.is_set()

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies sent to `path`, oldest first."""
        return [r.body for r in self.requests if r.path == path]

    def _closed_early(self) -> None:
        self.stream_closed.set()

    # ----- plumbing --------------------------------------------------------------

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.requests.append(
            RecordedRequest(request.method, request.url.path, body, dict(request.headers))
        )
        return body

    def _refusal(self, request: Request) -> Response | None:
        """The fault or auth answer that replaces a normal response, if any."""
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error("unauthorized", 401)
        if self.fault == "unauthorized":
            return _error("unauthorized", 401)
        if self.fault == "server_error":
            return _error("llama runner process has terminated: exit status 2", 500)
        if self.fault == "rate_limited":
            return _error("too many requests", 429)
        return None

    def _find(self, name: Any) -> FakeModel | None:
        if self.fault == "unknown_model" or not isinstance(name, str) or not name:
            return None
        return self.installed.get(full_name(name))

    def _missing(self, name: Any) -> JSONResponse:
        return _error(f"model '{name}' not found", 404)

    async def _paced(
        self, lines: Iterable[dict[str, Any]]
    ) -> AsyncIterator[dict[str, Any] | _Drop]:
        """Stream `lines`, honouring token_delay and the streaming faults."""
        for index, line in enumerate(lines):
            if index == self.fault_after and self.fault == "break_midway":
                yield DROP
                return
            if index == self.fault_after and self.fault == "error_line":
                yield {"error": MID_STREAM_ERROR}
                return
            if index and self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield line

    def _touch(self, model: FakeModel, keep_alive: Any) -> str:
        """Load or unload `model` as a request with this keep_alive would; returns why."""
        duration = _keep_alive(keep_alive)
        if duration is not None and duration <= timedelta(0):
            self.loaded.pop(model.name, None)
            return "unload"
        self.loaded[model.name] = FOREVER if duration is None else datetime.now(UTC) + duration
        return "load"

    @staticmethod
    def _stats(prompt_tokens: int, eval_count: int) -> dict[str, int]:
        return {
            "total_duration": 500_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 10_000_000,
            "eval_count": eval_count,
            "eval_duration": 20_000_000,
        }

    def _reply_tokens(self, body: dict[str, Any]) -> tuple[list[str], str]:
        limit = (body.get("options") or {}).get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(self.tokens):
            return self.tokens[:limit], "length"
        return list(self.tokens), "stop"

    # ----- endpoints ---------------------------------------------------------------

    async def _version(self, request: Request) -> Response:
        await self._record(request)
        return self._refusal(request) or JSONResponse({"version": "0.12.6"})

    async def _tags(self, request: Request) -> Response:
        await self._record(request)
        models = sorted(self.installed.values(), key=lambda m: m.name)
        return self._refusal(request) or JSONResponse({"models": [m.tag() for m in models]})

    async def _ps(self, request: Request) -> Response:
        await self._record(request)
        refusal = self._refusal(request)
        if refusal:
            return refusal
        running = []
        for name, expires in sorted(self.loaded.items()):
            model = self.installed.get(name)
            if model is None:
                continue
            entry = model.tag()
            del entry["modified_at"]
            entry.update(
                expires_at=expires.isoformat().replace("+00:00", "Z"),
                size_vram=model.size,
                context_length=4096,
            )
            running.append(entry)
        return JSONResponse({"models": running})

    async def _show(self, request: Request) -> Response:
        body = await self._record(request) or {}
        refusal = self._refusal(request)
        if refusal:
            return refusal
        model = self._find(body.get("model"))
        if model is None:
            return self._missing(body.get("model"))
        return JSONResponse(
            {
                "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": 'stop "<|eot_id|>"\ntemperature 0.6',
                "template": "{{ .System }}\n{{ .Prompt }}",
                "details": model.details,
                "model_info": {
                    "general.architecture": model.family,
                    "general.parameter_count": 3_212_749_888,
                    f"{model.family}.context_length": 131072,
                },
                "capabilities": model.capabilities,
                "modified_at": model.modified_at,
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request) or {}
        return self._refusal(request) or self._answer(body, chat=True)

    async def _generate(self, request: Request) -> Response:
        body = await self._record(request) or {}
        return self._refusal(request) or self._answer(body, chat=False)

    def _answer(self, body: dict[str, Any], *, chat: bool) -> Any:
        model = self._find(body.get("model"))
        if model is None:
            return self._missing(body.get("model"))
        reason = self._touch(model, body.get("keep_alive"))
        # No prompt (generate) or no messages (chat) only loads or unloads the model.
        if (chat and not body.get("messages")) or (not chat and "prompt" not in body):
            return JSONResponse(self._line(model, "", chat) | {"done": True, "done_reason": reason})
        tokens, done_reason = self._reply_tokens(body)
        prompt = (
            " ".join(str(m.get("content", "")) for m in body["messages"])
            if chat
            else str(body.get("prompt", ""))
        )
        final = self._line(model, "", chat) | {"done": True, "done_reason": done_reason}
        final |= self._stats(len(prompt.split()), len(tokens))
        if body.get("stream") is False:  # a missing "stream" means true
            return JSONResponse(final | self._line(model, "".join(tokens), chat, done=True))
        lines = [self._line(model, token, chat) for token in tokens] + [final]
        if self.fault == "empty_stream":
            lines = []
        elif self.fault == "no_finish":
            lines = lines[: min(self.fault_after, len(lines) - 1)]
        return _NDJSONStream(self, self._paced(lines))

    @staticmethod
    def _line(model: FakeModel, text: str, chat: bool, done: bool = False) -> dict[str, Any]:
        # Every chat line, the last one included, must carry message.role.
        payload = (
            {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
        )
        return {"model": model.name, "created_at": _now(), **payload, "done": done}

    async def _pull(self, request: Request) -> Response:
        body = await self._record(request) or {}
        refusal = self._refusal(request)
        if refusal:
            return refusal
        name = full_name(str(body.get("model") or ""))
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if self.pullable is not None and name not in self.pullable:
            lines.append({"error": "pull model manifest: file does not exist"})
            return _NDJSONStream(self, self._paced(lines))
        for digest, total in self.pull_layers:
            for step in range(self.pull_steps + 1):
                lines.append(
                    {
                        "status": f"pulling {digest.removeprefix('sha256:')[:12]}",
                        "digest": digest,
                        "total": total,
                        "completed": total * step // self.pull_steps,
                    }
                )
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
        size = sum(total for _, total in self.pull_layers)
        if body.get("stream") is False:
            self.installed[name] = FakeModel(name, size=size, modified_at=_now())
            return JSONResponse({"status": "success"})
        return _NDJSONStream(self, self._pull_lines(lines, name, size))

    async def _pull_lines(
        self, lines: list[dict[str, Any]], name: str, size: int
    ) -> AsyncIterator[dict[str, Any] | _Drop]:
        async for line in self._paced(lines):
            yield line
            if isinstance(line, _Drop) or "error" in line:
                return
        # Like the real server, the model exists once the manifest is written.
        self.installed[name] = FakeModel(name, size=size, modified_at=_now())
        yield {"status": "success"}

    async def _delete(self, request: Request) -> Response:
        body = await self._record(request) or {}
        refusal = self._refusal(request)
        if refusal:
            return refusal
        model = self._find(body.get("model"))
        if model is None:
            return self._missing(body.get("model"))
        del self.installed[model.name]
        self.loaded.pop(model.name, None)
        return Response(status_code=200)
