"""Google Gemini on the official `google-genai` SDK (not the dead google-generativeai)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any

import httpx2  # google-genai lets its HTTP client's errors through unwrapped
from google import genai
from google.genai import errors, types

from spoonfeeder.errors import (
    ProviderError,
    ProviderServerError,
)
from spoonfeeder.providers.base import (
    DEFAULT_TIMEOUT,
    ChatChunk,
    ChatMessage,
    ChatOptions,
    Health,
    ModelInfo,
    Usage,
)
from spoonfeeder.providers.failures import (
    short_detail,
    status_error,
    unavailable,
)
from spoonfeeder.providers.health import CHECK_TIMEOUT, checked, models_found

LABEL = "Gemini"
NO_KEY = "not-needed"  # the SDK insists on a key; the real API answers API_KEY_INVALID
# google-genai does not retry unless asked; these mirror the openai/anthropic SDKs' backoff.
RETRY_INITIAL_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
RETRY_JITTER = 0.25
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
SDK_ERRORS = (
    errors.APIError,
    errors.UnknownApiResponseError,
    httpx2.TransportError,
    json.JSONDecodeError,
)


class GeminiProvider:
    """Options: `timeout` (read timeout in s for list/check), `max_retries` (attempts - 1),
    `api_version` (the SDK's default, "v1", unless set; "v1beta" for preview features)."""

    name = "gemini"
    label = "Google Gemini"
    default_url = "https://generativelanguage.googleapis.com"
    key_env = "GEMINI_API_KEY"
    needs_key = True

    def __init__(self, url: str, api_key: str | None, options: Mapping[str, Any] | None = None):
        options = options or {}
        self.url = url.rstrip("/")
        self._key = api_key or None
        timeout = self._timeout = float(options.get("timeout") or DEFAULT_TIMEOUT)
        retries = int(options.get("max_retries", 2))
        retry_options = (
            types.HttpRetryOptions(
                attempts=retries + 1,
                initial_delay=RETRY_INITIAL_DELAY,
                max_delay=RETRY_MAX_DELAY,
                jitter=RETRY_JITTER,
            )
            if retries > 0
            else None
        )
        self._api_version = options.get("api_version")
        # Keep the client: once it is garbage-collected its HTTP pool is closed.
        self._client = genai.Client(
            api_key=api_key or NO_KEY,
            http_options=types.HttpOptions(
                base_url=self.url,
                api_version=self._api_version,
                timeout=_ms(timeout),
                retry_options=retry_options,
            ),
        )

    def list_models(self) -> list[ModelInfo]:
        return self._list_models(None)

    def check(self) -> Health:
        # A client of its own: one try, a short timeout, and no redirect followed (one
        # could lead anywhere).
        quick = genai.Client(
            api_key=self._key or NO_KEY,
            http_options=types.HttpOptions(
                base_url=self.url,
                api_version=self._api_version,
                timeout=_ms(CHECK_TIMEOUT),
                retry_options=types.HttpRetryOptions(attempts=1),
                client_args={"follow_redirects": False},
            ),
        )
        try:
            return checked(
                self.label, self.url, bool(self._key), lambda: models_found(self._listed(quick))
            )
        finally:
            quick.close()

    def stream_chat(
        self, model: str, messages: Sequence[ChatMessage], options: ChatOptions
    ) -> Iterator[ChatChunk]:
        contents, config = chat_request(messages, options, self._timeout)
        received = False
        finish_reason: str | None = None
        usage: Usage | None = None
        stream = self._client.models.generate_content_stream(
            model=model, contents=contents, config=config
        )
        try:
            # The SDK hands back a bare generator; closing it (also when our caller stops
            # early) unwinds to httpx's iter_raw, whose `finally` closes the HTTP response.
            with closing(stream):
                for response in stream:
                    received = True
                    text, reason = _read(response)
                    if text:
                        yield ChatChunk(text=text)
                    finish_reason = reason or finish_reason
                    usage = _usage(response) or usage
        except SDK_ERRORS as exc:
            raise self._error(exc, model=model, midstream=received) from exc
        yield ChatChunk(finish_reason=finish_reason, usage=usage)

    def _list_models(self, http_options: types.HttpOptions | None) -> list[ModelInfo]:
        return self._listed(self._client, http_options)

    def _listed(
        self, client: genai.Client, http_options: types.HttpOptions | None = None
    ) -> list[ModelInfo]:
        config = types.ListModelsConfig(http_options=http_options)
        try:
            # The pager fetches every page (nextPageToken) as it is iterated.
            models = list(client.models.list(config=config))
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc
        return [_model_info(m) for m in models if _can_chat(m)]

    def _error(
        self, exc: Exception, *, model: str | None = None, midstream: bool = False
    ) -> ProviderError:
        """The one place an SDK exception becomes a Spoon Feeder error."""
        url = self.url
        if isinstance(exc, httpx2.TransportError):
            # A connect timeout before anything was sent means nobody is there.
            timed_out = isinstance(exc, httpx2.TimeoutException) and (
                midstream or not isinstance(exc, httpx2.ConnectTimeout)
            )
            return unavailable(LABEL, self.name, url, timed_out=timed_out, midstream=midstream)
        detail = self._detail(exc)
        if isinstance(exc, errors.APIError):
            if midstream:
                # A `data: {"error": …}` event after text arrived.
                message = f"{LABEL}'s reply was cut off by an error mid-stream: {detail}"
                return ProviderServerError(message, provider=self.name)
            return self._status_error(exc, detail, model)
        message = f"{LABEL} at {url} sent a reply Spoon Feeder cannot read: {detail}"
        return ProviderServerError(message, provider=self.name)

    def _status_error(self, exc: errors.APIError, detail: str, model: str | None) -> ProviderError:
        status, url = exc.code, self.url
        if not status:  # no HTTP status to go by: the reply itself was malformed
            text = f"{LABEL} at {url} sent a reply Spoon Feeder cannot read: {detail}"
            return ProviderServerError(text, provider=self.name)
        return status_error(
            LABEL,
            self.name,
            url,
            status,
            detail,
            has_key=self._key is not None,
            # Google answers a bad key with 400 INVALID_ARGUMENT, told apart by its reason.
            key_rejected=_reason(exc) == "API_KEY_INVALID",
            missing_model=model if exc.status == "NOT_FOUND" else None,
            retry_after=_retry_after(exc),
            server_statuses=(408,),
        )

    def _detail(self, exc: Exception) -> str:
        """The server's own words, short, without a trailing period, never the key."""
        text = getattr(exc, "message", None)
        if not isinstance(text, str) or not text.strip():
            text = str(exc) or type(exc).__name__
        return short_detail(text, self._key)


def chat_request(
    messages: Sequence[ChatMessage], options: ChatOptions, client_timeout: float | None = None
) -> tuple[list[types.Content], types.GenerateContentConfig | None]:
    """The `contents` and `config` of a generate_content call; roles are user/model.

    No config when there is nothing to set: given one, the SDK does extra work on every
    streamed chunk (schema lookups, a failing attribute probe): ~10 % of a 500-token reply.
    """
    system = [options.system] if options.system else []
    system += [m.content for m in messages if m.role == "system"]
    contents = [_content(m) for m in messages if m.role != "system"]
    same_timeout = client_timeout is not None and options.timeout == client_timeout
    if not system and options.temperature is None and options.max_tokens is None and same_timeout:
        return contents, None
    config = types.GenerateContentConfig(
        system_instruction="\n\n".join(system) if system else None,
        temperature=options.temperature,
        max_output_tokens=options.max_tokens,
        http_options=None if same_timeout else types.HttpOptions(timeout=_ms(options.timeout)),
    )
    return contents, config


def _content(message: ChatMessage) -> types.Content:
    parts = [types.Part.from_bytes(data=i.data, mime_type=i.mime_type) for i in message.images]
    if message.content or not parts:
        parts.append(types.Part.from_text(text=message.content))
    role = "model" if message.role == "assistant" else "user"
    return types.Content(role=role, parts=parts)


def _read(response: types.GenerateContentResponse) -> tuple[str, str | None]:
    """The visible text of one streamed response and its finish reason, if any."""
    if not response.candidates:
        return "", None
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    # Thought summaries are not part of the answer.
    text = "".join(p.text for p in parts if p.text and not p.thought)
    reason = candidate.finish_reason
    if reason is None:
        return text, None
    raw = str(getattr(reason, "value", reason))
    return text, FINISH_REASONS.get(raw, raw.lower())


def _usage(response: types.GenerateContentResponse) -> Usage | None:
    meta = response.usage_metadata
    if meta is None or meta.prompt_token_count is None:
        return None
    # Thinking tokens are billed as output, as in OpenAI's completion_tokens.
    out = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(meta.prompt_token_count, out)


def _can_chat(model: types.Model) -> bool:
    actions = model.supported_actions
    return not actions or "generateContent" in actions


def _model_info(model: types.Model) -> ModelInfo:
    details = {
        "input_token_limit": model.input_token_limit,
        "output_token_limit": model.output_token_limit,
    }
    return ModelInfo(
        id=(model.name or "").removeprefix("models/"),
        name=model.display_name,
        details={k: v for k, v in details.items() if v is not None},
    )


def _reason(exc: errors.APIError) -> str | None:
    for detail in _error_details(exc):
        if detail.get("reason"):
            return str(detail["reason"])
    return None


def _retry_after(exc: errors.APIError) -> float | None:
    """The retry-after header, else the RetryInfo detail ("20s") Google sends."""
    headers = getattr(exc.response, "headers", None) or {}
    try:
        if "retry-after" in headers:
            return float(headers["retry-after"])
        for detail in _error_details(exc):
            if "retryDelay" in detail:
                return float(str(detail["retryDelay"]).removesuffix("s"))
    except ValueError:
        return None
    return None


def _error_details(exc: errors.APIError) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
