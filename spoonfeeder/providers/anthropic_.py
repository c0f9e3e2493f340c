"""Anthropic Claude (Messages API) on the official `anthropic` SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anthropic
import httpx2  # the SDK's HTTP client; a dropped stream surfaces as its error, unwrapped

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

LABEL = "Anthropic"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is enough for a chat turn
NO_KEY = "not-needed"  # lets a key-less proxy work; the real API answers 401
# Anthropic's stop reasons in the vocabulary the other providers share.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
SDK_ERRORS = (anthropic.AnthropicError, httpx2.TransportError, json.JSONDecodeError)


class AnthropicProvider:
    """Options: `timeout` (read timeout in s for list/check), `max_retries` (SDK retries)."""

    name = "anthropic"
    label = "Anthropic Claude"
    default_url = "https://api.anthropic.com"
    key_env = "ANTHROPIC_API_KEY"
    needs_key = True

    def __init__(self, url: str, api_key: str | None, options: Mapping[str, Any] | None = None):
        options = options or {}
        # The SDK appends /v1 itself; a pasted ".../v1" would become /v1/v1/messages.
        self.url = url.rstrip("/").removesuffix("/v1")
        self._key = api_key or None
        timeout = float(options.get("timeout") or DEFAULT_TIMEOUT)
        self._client = anthropic.Anthropic(
            base_url=self.url,
            api_key=api_key or NO_KEY,
            timeout=anthropic.Timeout(timeout, connect=CONNECT_TIMEOUT),
            max_retries=int(options.get("max_retries", 2)),
        )

    def list_models(self) -> list[ModelInfo]:
        return self._list_models(self._client)

    def check(self) -> Health:
        return sdk_models_check(
            self.label,
            self.url,
            bool(self._key),
            self._client,
            anthropic.DefaultHttpxClient,
            self._list_models,
        )

    def stream_chat(
        self, model: str, messages: Sequence[ChatMessage], options: ChatOptions
    ) -> Iterator[ChatChunk]:
        request = chat_request(model, messages, options)
        timeout = anthropic.Timeout(options.timeout, connect=CONNECT_TIMEOUT)
        opened = False
        stop: str | None = None
        tokens_in: int | None = None
        tokens_out: int | None = None
        try:
            # `with` closes the HTTP response when the caller stops iterating early.
            with self._client.messages.stream(**request, timeout=timeout) as stream:
                opened = True
                # The events themselves rather than get_final_message(), which asserts
                # (AssertionError) when a body ended before message_start.
                for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        if event.delta.text:
                            yield ChatChunk(text=event.delta.text)
                    elif event.type == "message_start":
                        usage = event.message.usage
                        tokens_in, tokens_out = usage.input_tokens, usage.output_tokens
                    elif event.type == "message_delta":
                        stop = event.delta.stop_reason or stop
                        tokens_out = event.usage.output_tokens
                        tokens_in = getattr(event.usage, "input_tokens", None) or tokens_in
        except SDK_ERRORS as exc:
            raise self._error(exc, model=model, midstream=opened) from exc
        yield ChatChunk(
            finish_reason=FINISH_REASONS.get(stop, stop) if stop else None,
            usage=Usage(tokens_in, tokens_out) if tokens_in is not None else None,
        )

    def _list_models(self, client: anthropic.Anthropic) -> list[ModelInfo]:
        try:
            # Iterating the page follows has_more / after_id through every page.
            return [
                ModelInfo(
                    id=m.id,
                    name=m.display_name,
                    details={"created_at": m.created_at.isoformat()},
                )
                for m in client.models.list()
            ]
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc

    def _error(
        self, exc: Exception, *, model: str | None = None, midstream: bool = False
    ) -> ProviderError:
        """The one place an SDK exception becomes a Spoon Feeder error."""
        url = self.url
        timed_out = isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException)
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            return unavailable(LABEL, self.name, url, timed_out=timed_out, midstream=midstream)
        detail = self._detail(exc)
        if isinstance(exc, anthropic.APIStatusError) and not midstream:
            return self._status_error(exc, detail, model)
        if isinstance(exc, anthropic.APIStatusError):
            # An `event: error` mid-stream arrives as an APIStatusError with status 200.
            message = f"{LABEL}'s reply was cut off by an error mid-stream: {detail}"
        else:
            message = f"{LABEL} at {url} sent a reply Spoon Feeder cannot read: {detail}"
        return ProviderServerError(message, provider=self.name)

    def _status_error(
        self, exc: anthropic.APIStatusError, detail: str, model: str | None
    ) -> ProviderError:
        return status_error(
            LABEL,
            self.name,
            self.url,
            exc.status_code,
            detail,
            has_key=self._key is not None,
            missing_model=model if _error_type(exc) == "not_found_error" else None,
            retry_after=header_retry_after(exc.response.headers),
        )

    def _detail(self, exc: Exception) -> str:
        """The server's own words, short, without a trailing period, never the key."""
        body = getattr(exc, "body", None)
        error = body.get("error") if isinstance(body, dict) else None
        text = error.get("message") if isinstance(error, dict) else body
        if not isinstance(text, str) or not text.strip():
            text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return short_detail(text, self._key)


def chat_request(
    model: str, messages: Sequence[ChatMessage], options: ChatOptions
) -> dict[str, Any]:
    """Keyword arguments for `messages.stream`: system prompts go to `system=`."""
    system = [options.system] if options.system else []
    system += [m.content for m in messages if m.role == "system"]
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": options.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": [_wire_message(m) for m in messages if m.role != "system"],
    }
    if system:
        request["system"] = "\n\n".join(system)
    # options.temperature is deliberately not sent: API version 2026-10-21 (what the 2.x SDK
    # speaks) answers any temperature/top_p/top_k with 400, and the SDK no longer has them.
    return request


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if not message.images:
        return {"role": message.role, "content": message.content}
    # Anthropic recommends images before the text that refers to them.
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": image.mime_type,
                "data": base64.b64encode(image.data).decode("ascii"),
            },
        }
        for image in message.images
    ]
    if message.content:  # the API rejects empty text blocks
        blocks.append({"type": "text", "text": message.content})
    return {"role": message.role, "content": blocks}


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None
