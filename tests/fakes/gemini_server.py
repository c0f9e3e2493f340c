"""A fake Gemini API server (generativelanguage) that speaks the real wire protocol.

Byte formats follow ../shared/docs/provider-protocols.md §3: camelCase JSON, one full
response object per SSE event, finishReason and usage on the last event, no [DONE].
Routes both /v1 (google-genai 3.x's default) and /v1beta:

    fake = FakeGemini(tokens=["Hel", "lo"])
    with serve(fake.app) as url:
        provider = GeminiProvider(url, fake.key, {})
        ...
    fake.requests[-1].json  # the body the SDK sent

Faults (`fault=`), for the first `fault_times` requests (None: all of them):
  "auth"          400 INVALID_ARGUMENT / API_KEY_INVALID, as Google answers a bad key
  "unknown_model" 404 NOT_FOUND (a model not in `models` gets it too)
  "rate_limit"    429 RESOURCE_EXHAUSTED with a `retry-after` header and a RetryInfo detail
  "server_error"  500 INTERNAL
  "break_midway"  streams the first half of the tokens, then drops the connection
  "error_event"   streams the first half, then `data: {"error": {"code": 503, …}}`
  "empty_stream"  HTTP 200 and an empty body: not one event
  "no_finish"     streams the first half, then the body ends: no finishReason, no usage
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
DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro")
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


class FakeGemini(FakeServerBase):
    """A controllable Gemini server. Every argument is optional.

    key: the accepted API key (`x-goog-api-key` header or `?key=`); None accepts any.
    tokens: the text of each streamed reply, one token per event; the request's
        maxOutputTokens cuts them short with finishReason "MAX_TOKENS".
    usage: (promptTokenCount, candidatesTokenCount); default (5, tokens sent).
    token_delay: seconds to sleep before each token (0: as fast as possible).
    fault / fault_times: see the module docstring.
    models: ids (without "models/") listed by GET /v1/models (paged by `page_size`)
        and accepted by generateContent / streamGenerateContent.
    retry_after: seconds in the "rate_limit" fault's retry-after header and RetryInfo.
    error_message: replaces the server's message in fault errors.

    After a run: `requests` (every request, in order), `stream_closed_early` (the
    client hung up before a stream finished; wait on `disconnected` to block for it).
    """

    def __init__(
        self,
        key: str | None = "gm-test",
        tokens: Sequence[str] = DEFAULT_TOKENS,
        usage: tuple[int, int] | None = None,
        token_delay: float = 0.0,
        fault: str | None = None,
        fault_times: int | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        page_size: int = 50,
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
                Route("/{version:str}/models", self._list_models),
                Route("/{version:str}/models/{target:str}", self._generate, methods=["POST"]),
            ]
        )

    # -- request handling --------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        if self.key is None:
            return True
        given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        return given == self.key

    def _error(
        self, code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> JSONResponse:
        error: dict[str, Any] = {
            "code": code,
            "message": self.error_message or message,
            "status": status,
        }
        if details:
            error["details"] = details
        headers = {"retry-after": f"{self.retry_after:g}"} if code == 429 else None
        return JSONResponse({"error": error}, status_code=code, headers=headers)

    def _common_failure(self, request: Request, fault: str | None) -> Response | None:
        """Failures every endpoint shares: a bad key, a rate limit, a crash."""
        if fault == "auth" or not self._authorized(request):
            reason = {
                "@type": ERROR_INFO,
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            return self._error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [reason],
            )
        if fault == "rate_limit":
            retry = {"@type": RETRY_INFO, "retryDelay": f"{self.retry_after:g}s"}
            return self._error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [retry],
            )
        if fault == "server_error":
            return self._error(
                500, "INTERNAL", "An internal error has occurred. Please retry or report it."
            )
        return None

    async def _list_models(self, request: Request) -> Response:
        await self._record(request)
        failure = self._common_failure(request, self._take_fault())
        if failure is not None:
            return failure
        start = int(request.query_params.get("pageToken") or 0)
        size = int(request.query_params.get("pageSize") or self.page_size)
        page = self.models[start : start + size]
        body: dict[str, Any] = {"models": [_model(m) for m in page]}
        if start + size < len(self.models):
            body["nextPageToken"] = str(start + size)
        return JSONResponse(body)

    async def _generate(self, request: Request) -> Response:
        body = await self._record(request)
        fault = self._take_fault()
        failure = self._common_failure(request, fault)
        if failure is not None:
            return failure
        model, _, method = request.path_params["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return self._error(404, "NOT_FOUND", f"Method {method!r} not found.")
        version = request.path_params["version"]
        if fault == "unknown_model" or model not in self.models:
            return self._error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported "
                "for generateContent. Call ListModels to see the list of available models "
                "and their supported methods.",
            )
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        tokens = self.tokens[:limit] if limit else self.tokens
        finish = "MAX_TOKENS" if len(tokens) < len(self.tokens) else "STOP"
        usage = self._usage(len(tokens))
        if method == "generateContent":
            return JSONResponse(_response(model, "".join(tokens), finish, usage))
        events = self._events(model, tokens, finish, usage, fault)
        return DisconnectAwareStream(events, self.disconnected.set)

    # -- response bodies ---------------------------------------------------------

    def _usage(self, candidates_tokens: int) -> dict[str, int]:
        prompt, candidates = self.usage or (5, candidates_tokens)
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates,
        }

    async def _events(
        self,
        model: str,
        tokens: list[str],
        finish: str,
        usage: dict[str, int],
        fault: str | None,
    ) -> AsyncIterator[bytes]:
        if fault == "empty_stream":
            return
        cut = self._cut_index(tokens, fault)
        last = len(tokens) - 1
        for index, token in enumerate(tokens):
            if index == cut:
                if fault == "break_midway":
                    raise HangUp
                if fault == "no_finish":
                    return
                message = self.error_message or "The model is overloaded. Please try again later."
                yield _event({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}})
                return
            await self._pause()
            # The real API puts the last text, finishReason and usage in one event.
            if index == last:
                yield _event(_response(model, token, finish, usage))
            else:
                yield _event(_response(model, token))
        if not tokens:
            yield _event(_response(model, "", finish, usage))


def _response(
    model: str, text: str, finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
    if finish is not None:
        candidate.update(finishReason=finish, index=0)
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def _model(model_id: str) -> dict[str, Any]:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": model_id.replace("-", " ").title(),
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\r\n\r\n".encode()
