"""A fake Anthropic Messages API server that speaks the real wire protocol.

Byte formats follow ../shared/docs/provider-protocols.md §2 (every SSE event has an
`event:` line, or the SDK drops it). Leave `/v1` off the base URL:

    fake = FakeAnthropic(tokens=["Hel", "lo"])
    with serve(fake.app) as url:
        provider = AnthropicProvider(url, fake.key, {})
        ...
    fake.requests[-1].json  # the body the SDK sent

Faults (`fault=`), for the first `fault_times` requests (None: all of them):
  "auth"          401 authentication_error (also on GET /v1/models)
  "unknown_model" 404 not_found_error (a model not in `models` gets it too)
  "rate_limit"    429 rate_limit_error with a `retry-after: <retry_after>` header
  "server_error"  500 api_error
  "break_midway"  streams the first half of the tokens, then drops the connection
  "error_event"   streams the first half, then `event: error` (overloaded_error)
  "empty_stream"  HTTP 200 and an empty body: not one event
  "no_finish"     streams the first half, then the body ends: no message_delta (so no
                  stop_reason) and no message_stop
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.openai_server import DisconnectAwareStream, FakeServerBase, HangUp

DEFAULT_TOKENS = ("Hello", ",", " world", "!")
DEFAULT_MODELS = ("claude-sonnet-5-5", "claude-haiku-5-5")


class FakeAnthropic(FakeServerBase):
    """A controllable Anthropic server. Every argument is optional.

    key: the accepted API key, as `Authorization: Bearer` (anthropic >= 2.0) or
        `x-api-key` (older SDKs, raw HTTP); None accepts any key.
    tokens: the text deltas of each streamed reply; the request's max_tokens cuts them
        short with stop_reason "max_tokens".
    usage: (input_tokens, output_tokens) to report; default (10, tokens sent).
    token_delay: seconds to sleep before each token (0: as fast as possible).
    fault / fault_times: see the module docstring.
    models: ids listed by GET /v1/models (paged by `page_size`) and accepted by messages.
    retry_after: the retry-after header sent with the "rate_limit" fault.
    error_message: replaces the server's message in fault errors.

    After a run: `requests` (every request, in order), `stream_closed_early` (the
    client hung up before a stream finished; wait on `disconnected` to block for it).
    """

    def __init__(
        self,
        key: str | None = "sk-ant-test",
        tokens: Sequence[str] = DEFAULT_TOKENS,
        usage: tuple[int, int] | None = None,
        token_delay: float = 0.0,
        fault: str | None = None,
        fault_times: int | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        page_size: int = 20,
        retry_after: float = 20,
        error_message: str | None = None,
    ) -> None:
        super().__init__(
            key=key,
            tokens=tokens,
            usage=usage,
            token_delay=token_delay,
            fault=fault,
            fault_times=fault_times,
            models=models,
            retry_after=retry_after,
            error_message=error_message,
        )
        self.page_size = page_size
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._list_models),
                Route("/v1/messages", self._messages, methods=["POST"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        if self.key is None:
            return True
        authorization = request.headers.get("authorization", "")
        bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
        return self.key in (bearer, request.headers.get("x-api-key"))

    def _error(self, status: int, type_: str, message: str) -> JSONResponse:
        body = {
            "type": "error",
            "error": {"type": type_, "message": self.error_message or message},
            "request_id": "req_011CTest",
        }
        headers = {"request-id": "req_011CTest"}
        if status == 429:
            headers["retry-after"] = f"{self.retry_after:g}"
        return JSONResponse(body, status_code=status, headers=headers)

    def _common_failure(self, request: Request, fault: str | None) -> Response | None:
        """Failures every endpoint shares: a bad key, a rate limit, a crash."""
        if fault == "auth" or not self._authorized(request):
            return self._error(401, "authentication_error", "invalid x-api-key")
        if fault == "rate_limit":
            return self._error(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization.",
            )
        if fault == "server_error":
            return self._error(500, "api_error", "Internal server error")
        return None

    async def _list_models(self, request: Request) -> Response:
        await self._record(request)
        failure = self._common_failure(request, self._take_fault())
        if failure is not None:
            return failure
        after = request.query_params.get("after_id")
        start = self.models.index(after) + 1 if after in self.models else 0
        limit = int(request.query_params.get("limit", self.page_size))
        page = self.models[start : start + limit]
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": "2025-09-29T00:00:00Z",
            }
            for m in page
        ]
        return JSONResponse(
            {
                "data": data,
                "has_more": start + limit < len(self.models),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    async def _messages(self, request: Request) -> Response:
        body = await self._record(request)
        fault = self._take_fault()
        failure = self._common_failure(request, fault)
        if failure is not None:
            return failure
        model = body.get("model")
        if fault == "unknown_model" or model not in self.models:
            return self._error(404, "not_found_error", f"model: {model}")
        tokens = self.tokens[: body["max_tokens"]]
        stop = "max_tokens" if len(tokens) < len(self.tokens) else "end_turn"
        usage_in, usage_out = self.usage or (10, len(tokens))
        if not body.get("stream"):
            return JSONResponse(
                {
                    **_message(model, usage_in, usage_out, stop),
                    "content": [{"type": "text", "text": "".join(tokens)}],
                }
            )
        events = self._events(model, tokens, stop, (usage_in, usage_out), fault)
        return DisconnectAwareStream(events, self.disconnected.set)

    async def _events(
        self,
        model: str,
        tokens: list[str],
        stop: str,
        usage: tuple[int, int],
        fault: str | None,
    ) -> AsyncIterator[bytes]:
        if fault == "empty_stream":
            return
        yield _event("message_start", {"message": _message(model, usage[0], 1, None)})
        block = {"type": "text", "text": ""}
        yield _event("content_block_start", {"index": 0, "content_block": block})
        yield _event("ping", {})
        cut = self._cut_index(tokens, fault)
        for index, token in enumerate(tokens):
            if index == cut:
                if fault == "break_midway":
                    raise HangUp
                if fault == "no_finish":
                    return
                error = {"type": "overloaded_error", "message": self.error_message or "Overloaded"}
                yield _event("error", {"error": error})
                return
            await self._pause()
            delta = {"type": "text_delta", "text": token}
            yield _event("content_block_delta", {"index": 0, "delta": delta})
        yield _event("content_block_stop", {"index": 0})
        delta = {"stop_reason": stop, "stop_sequence": None}
        yield _event("message_delta", {"delta": delta, "usage": {"output_tokens": usage[1]}})
        yield _event("message_stop", {})


def _message(model: str, tokens_in: int, tokens_out: int, stop: str | None) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"type": name, **payload})
    return f"event: {name}\ndata: {data}\n\n".encode()
