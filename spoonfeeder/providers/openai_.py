"""OpenAI Chat Completions on the official `openai` SDK.

Also the provider for every OpenAI-compatible server (vLLM, llama.cpp, LM Studio):
only the base URL differs, and it keeps its `/v1`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletionChunk

from spoonfeeder.errors import (
    ProviderError,
    ProviderServerError,
)
from spoonfeeder.providers.base import (
    CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    ChatChunk,
    ChatMessage,
    ChatOptions,
    Health,
    ModelInfo,
    Usage,
)
from spoonfeeder.providers.failures import (
    header_retry_after,
    short_detail,
    status_error,
    unavailable,
)
from spoonfeeder.providers.health import sdk_models_check

LABEL = "OpenAI"
NO_KEY = "not-needed"  # the SDK insists on a key; local servers ignore it
# The SDK lets a body that is not JSON through as a bare JSONDecodeError.
SDK_ERRORS = (openai.OpenAIError, json.JSONDecodeError)


class OpenAIProvider:
    """Options: `timeout` (read timeout in s for list/check), `max_retries` (SDK retries)."""

    name = "openai"
    label = "OpenAI / compatible"
    default_url = "https://api.openai.com/v1"
    key_env = "OPENAI_API_KEY"
    needs_key = True

    def __init__(self, url: str, api_key: str | None, options: Mapping[str, Any] | None = None):
        options = options or {}
        self.url = url.rstrip("/")
        self._key = api_key or None
        timeout = float(options.get("timeout") or DEFAULT_TIMEOUT)
        self._client = openai.OpenAI(
            base_url=self.url,
            api_key=api_key or NO_KEY,
            timeout=openai.Timeout(timeout, connect=CONNECT_TIMEOUT),
            max_retries=int(options.get("max_retries", 2)),
        )
        # api.openai.com rejects max_tokens for reasoning models; compatible servers
        # only reliably understand max_tokens.
        official = urlsplit(self.url).hostname == "api.openai.com"
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"

    def list_models(self) -> list[ModelInfo]:
        return self._list_models(self._client)

    def check(self) -> Health:
        return sdk_models_check(
            self.label,
            self.url,
            bool(self._key),
            self._client,
            openai.DefaultHttpxClient,
            self._list_models,
        )

    def stream_chat(
        self, model: str, messages: Sequence[ChatMessage], options: ChatOptions
    ) -> Iterator[ChatChunk]:
        request = self.chat_request(model, messages, options)
        timeout = openai.Timeout(options.timeout, connect=CONNECT_TIMEOUT)
        opened = False
        try:
            # `with` closes the HTTP response when the caller stops iterating early.
            with self._client.chat.completions.create(**request, timeout=timeout) as stream:
                opened = True
                yield from _chunks(stream)
        except SDK_ERRORS as exc:
            raise self._error(exc, model=model, midstream=opened) from exc

    def chat_request(
        self, model: str, messages: Sequence[ChatMessage], options: ChatOptions
    ) -> dict[str, Any]:
        """The JSON body of a streamed chat completion."""
        wire = [{"role": "system", "content": options.system}] if options.system else []
        wire += [_wire_message(m) for m in messages]
        request: dict[str, Any] = {
            "model": model,
            "messages": wire,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if options.temperature is not None:
            request["temperature"] = options.temperature
        if options.max_tokens is not None:
            request[self._max_tokens_field] = options.max_tokens
        return request

    def _list_models(self, client: openai.OpenAI) -> list[ModelInfo]:
        try:
            return [
                ModelInfo(id=m.id, details={"owned_by": m.owned_by, "created": m.created})
                for m in client.models.list()
            ]
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc

    def _error(
        self, exc: Exception, *, model: str | None = None, midstream: bool = False
    ) -> ProviderError:
        """The one place an SDK exception becomes a Spoon Feeder error."""
        url = self.url
        if isinstance(exc, openai.APIConnectionError):
            timed_out = isinstance(exc, openai.APITimeoutError)
            return unavailable(LABEL, self.name, url, timed_out=timed_out, midstream=midstream)
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc, model)
        detail = self._detail(exc)
        if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
            message = f"{LABEL} at {url} sent a reply Spoon Feeder cannot read: {detail}"
        elif midstream:
            message = f"{LABEL}'s reply was cut off by an error mid-stream: {detail}"
        else:
            message = f"{LABEL} request failed: {detail}"
        return ProviderServerError(message, provider=self.name)

    def _status_error(self, exc: openai.APIStatusError, model: str | None) -> ProviderError:
        detail = self._detail(exc)
        return status_error(
            LABEL,
            self.name,
            self.url,
            exc.status_code,
            detail,
            has_key=self._key is not None,
            missing_model=model if _is_about_a_model(exc, detail) else None,
            endpoint_hint=_base_url_hint(self.url),
            path=exc.response.request.url.path,
            retry_after=header_retry_after(exc.response.headers),
        )

    def _detail(self, exc: Exception) -> str:
        """The server's own words, short, without a trailing period, never the key."""
        body = getattr(exc, "body", None)
        text = body.get("message") if isinstance(body, dict) else body
        if not isinstance(text, str) or not text.strip():
            text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return short_detail(text, self._key)


def _is_about_a_model(exc: openai.APIStatusError, detail: str) -> bool:
    """Whether a 404 is the API saying it has no such model — rather than a wrong base
    URL, which the real API answers with "Invalid URL (POST /chat/completions)" and
    FastAPI servers (llama-cpp-python, vLLM) with {"detail": "Not Found"}."""
    body = exc.body if isinstance(exc.body, dict) else {}
    return body.get("code") == "model_not_found" or "model" in detail.lower()


def _base_url_hint(url: str) -> str:
    if urlsplit(url).path.rstrip("/").endswith("/v1"):
        return "Check the base URL."
    return f"OpenAI-compatible servers serve their API under /v1: try {url}/v1."


def _chunks(stream: Iterable[ChatCompletionChunk]) -> Iterator[ChatChunk]:
    """Text deltas as they come, then one closing chunk with finish_reason and usage."""
    finish_reason: str | None = None
    usage: Usage | None = None
    for chunk in stream:
        # With include_usage the usage arrives on a final chunk whose choices are empty.
        if chunk.usage is not None:
            usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices or ():
            if choice.delta is not None and choice.delta.content:
                yield ChatChunk(text=choice.delta.content)
            if choice.finish_reason:
                finish_reason = choice.finish_reason
    yield ChatChunk(finish_reason=finish_reason, usage=usage)


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for image in message.images:
        encoded = base64.b64encode(image.data).decode("ascii")
        url = f"data:{image.mime_type};base64,{encoded}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": message.role, "content": parts}
