"""A fake OpenAI Chat Completions server that speaks the real wire protocol.

Byte formats follow ../shared/docs/provider-protocols.md §1. Use it for OpenAI and
for every OpenAI-compatible server (vLLM, llama.cpp, LM Studio):

    fake = FakeOpenAI(tokens=["Hel", "lo"])
    with serve(fake.app) as url:
        provider = OpenAIProvider(f"{url}/v1", fake.key, {})
        ...
    fake.requests[-1].json  # the body the SDK sent

Faults (`fault=`), for the first `fault_times` requests (None: all of them):
  "auth"          401 with OpenAI's invalid_api_key body (also on GET /v1/models)
  "unknown_model" 404 model_not_found (a model not in `models` gets it too)
  "rate_limit"    429 with a `retry-after: <retry_after>` header (also on /v1/models)
  "server_error"  500 server_error (also on /v1/models)
  "break_midway"  streams the first half of the tokens, then drops the connection
  "error_event"   streams the first half, then a `data: {"error": …}` event
  "empty_stream"  HTTP 200 and an empty stream: no chunk, no [DONE] (llama.cpp's answer to
                  a prompt longer than its context)
  "no_finish"     streams the first half, then `data: [DONE]` with no finish_reason and no
                  usage (llama.cpp's first stream when a second request reaches it)

`usage=False` leaves the usage chunk out, as servers that ignore
`stream_options.include_usage` do. `unknown_path` is what a path the server does not serve
answers (a base URL without /v1): "openai" the real API's JSON error, "fastapi" the
`{"detail": "Not Found"}` of FastAPI servers such as llama-cpp-python's and vLLM's.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

DEFAULT_TOKENS = ("Hello", ",", " world", "!")
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o")
FAULTS = (
    "auth",
    "unknown_model",
    "rate_limit",
    "server_error",
    "break_midway",
    "error_event",
    "empty_stream",
    "no_finish",
)
CREATED = 1700000000


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any  # the decoded body, None when there was none


class HangUp(Exception):
    """Raised inside a body iterator to drop the connection without finishing the body."""


class DisconnectAwareStream(StreamingResponse):
    """A StreamingResponse that reports a client hanging up, and can hang up itself."""

    def __init__(self, body: AsyncIterator[bytes], on_client_hangup: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream")
        self._on_client_hangup = on_client_hangup

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except HangUp:
            # Returning without the final body frame makes uvicorn close the socket
            # mid-body, which is what a crashed server or a cut network cable looks like.
            return
        except BaseException:  # cancelled (client disconnected) or OSError on send
            self._on_client_hangup()
            raise


class FakeServerBase:
    """What every fake provider shares: recording, faults, disconnect detection."""

    def __init__(
        self,
        *,
        key: str | None,
        tokens: Sequence[str],
        usage: tuple[int, int] | None,
        token_delay: float,
        fault: str | None,
        fault_times: int | None,
        models: Sequence[str],
        retry_after: float,
        error_message: str | None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {FAULTS}")
        self.key = key
        self.tokens = list(tokens)
        self.usage = usage
        self.token_delay = token_delay
        self.fault = fault
        self.fault_times = fault_times
        self.models = list(models)
        self.retry_after = retry_after
        self.error_message = error_message
        self.requests: list[RecordedRequest] = []
        self.disconnected = threading.Event()

    @property
    def stream_closed_early(self) -> bool:
        return self.disconnected.is_set()

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.requests.append(
            RecordedRequest(
                request.method,
                request.url.path,
                dict(request.query_params),
                dict(request.headers),
                body,
            )
        )
        return body

    def _take_fault(self) -> str | None:
        """The fault for this request; counts down `fault_times`."""
        if self.fault is None or self.fault_times == 0:
            return None
        if self.fault_times is not None:
            self.fault_times -= 1
        return self.fault

    @staticmethod
    def _cut_index(tokens: Sequence[str], fault: str | None) -> int | None:
        """Where a broken stream stops: after the first half of the tokens."""
        if fault == "empty_stream":
            return 0
        return len(tokens) // 2 if fault in ("break_midway", "error_event", "no_finish") else None

    async def _pause(self) -> None:
        if self.token_delay:
            await asyncio.sleep(self.token_delay)


class FakeOpenAI(FakeServerBase):
    """A controllable OpenAI server. Every argument is optional.

    key: the accepted API key (Bearer); None accepts any key, like a local server.
    tokens: the text deltas of each streamed reply; the request's max_tokens cuts them
        short with finish_reason "length".
    usage: (prompt_tokens, completion_tokens) to report; default (5, tokens sent); False:
        no usage chunk at all.
    token_delay: seconds to sleep before each token (0: as fast as possible).
    fault / fault_times: see the module docstring.
    models: ids listed by GET /v1/models and accepted by chat completions.
    retry_after: the retry-after header sent with the "rate_limit" fault.
    error_message: replaces the server's message in fault errors.
    unknown_path: "openai" or "fastapi", see the module docstring.

    After a run: `requests` (every request, in order), `stream_closed_early` (the
    client hung up before a stream finished; wait on `disconnected` to block for it).
    """

    def __init__(
        self,
        key: str | None = "sk-test",
        tokens: Sequence[str] = DEFAULT_TOKENS,
        usage: tuple[int, int] | Literal[False] | None = None,
        token_delay: float = 0.0,
        fault: str | None = None,
        fault_times: int | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        retry_after: float = 20,
        error_message: str | None = None,
        unknown_path: Literal["openai", "fastapi"] = "openai",
    ) -> None:
        super().__init__(
            key=key,
            tokens=tokens,
            usage=None if usage is False else usage,
            token_delay=token_delay,
            fault=fault,
            fault_times=fault_times,
            models=models,
            retry_after=retry_after,
            error_message=error_message,
        )
        self.report_usage = usage is not False
        self.unknown_path = unknown_path
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._list_models),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        if self.key is None:
            return True
        return request.headers.get("authorization", "") == f"Bearer {self.key}"

    def _error(self, status: int, message: str, type_: str, code: str | None) -> JSONResponse:
        body = {
            "error": {
                "message": self.error_message or message,
                "type": type_,
                "param": None,
                "code": code,
            }
        }
        headers = {"retry-after": f"{self.retry_after:g}"} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    def _common_failure(self, request: Request, fault: str | None) -> Response | None:
        """Failures every endpoint shares: a bad key, a rate limit, a crash."""
        if fault == "auth" or not self._authorized(request):
            return self._error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        if fault == "rate_limit":
            return self._error(
                429,
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3.",
                "requests",
                "rate_limit_exceeded",
            )
        if fault == "server_error":
            return self._error(
                500, "The server had an error while processing your request.", "server_error", None
            )
        return None

    async def _not_found(self, request: Request) -> Response:
        """A path this server does not serve, worded as the real server words it."""
        await self._record(request)
        if self.unknown_path == "fastapi":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        message = f"Invalid URL ({request.method} {request.url.path})"
        return self._error(404, message, "invalid_request_error", None)

    async def _list_models(self, request: Request) -> Response:
        await self._record(request)
        failure = self._common_failure(request, self._take_fault())
        if failure is not None:
            return failure
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "openai"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        fault = self._take_fault()
        failure = self._common_failure(request, fault)
        if failure is not None:
            return failure
        model = body.get("model")
        if fault == "unknown_model" or model not in self.models:
            return self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens = self.tokens[:limit] if limit else self.tokens
        finish = "length" if len(tokens) < len(self.tokens) else "stop"
        usage = self._usage(len(tokens))
        if not body.get("stream"):
            return JSONResponse(self._completion(model, "".join(tokens), finish, usage))
        events = self._events(model, tokens, finish, usage, fault)
        return DisconnectAwareStream(events, self.disconnected.set)

    # -- response bodies ---------------------------------------------------------

    def _usage(self, completion_tokens: int) -> dict[str, int]:
        prompt, completion = self.usage or (5, completion_tokens)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(
        self, model: str, text: str, finish: str, usage: dict[str, int]
    ) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }

    async def _events(
        self,
        model: str,
        tokens: list[str],
        finish: str,
        usage: dict[str, int],
        fault: str | None,
    ) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return _event({**self._envelope(model), "choices": [choice]})

        if fault == "empty_stream":
            return
        yield chunk({"role": "assistant", "content": ""})
        cut = self._cut_index(tokens, fault)
        for index, token in enumerate(tokens):
            if index == cut:
                if fault == "break_midway":
                    raise HangUp
                if fault == "no_finish":
                    yield b"data: [DONE]\n\n"
                    return
                message = self.error_message or "The server had an error processing your request."
                yield _event({"error": {"message": message, "type": "server_error"}})
                return
            await self._pause()
            yield chunk({"content": token})
        yield chunk({}, finish)
        if self.report_usage:
            yield _event({**self._envelope(model), "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _envelope(model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
        }


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
