"""Ollama chat provider, on the official `ollama` client.

Also home of the two things every Ollama caller shares: `make_client` (how we
build the SDK client) and `ollama_errors` (the one place Ollama failures become
`spoonfeeder.errors.Provider*`). The model-management service imports both.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import ollama
import pydantic

from spoonfeeder.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnavailable,
)
from spoonfeeder.ids import shown
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
from spoonfeeder.providers.health import CHECK_TIMEOUT, checked, version_text

PROVIDER = "ollama"

# Ollama words it "model 'x' not found" (older: "model \"x\" not found, try pulling it first").
_NOT_FOUND = re.compile(r"""model ['"]?(?P<name>[^'"]+?)['"]? not found""")
# What /api/pull says for a name the registry does not have.
_NOT_IN_REGISTRY = ("file does not exist", "pull model manifest")


def make_client(
    url: str,
    api_key: str | None,
    read_timeout: float = DEFAULT_TIMEOUT,
    *,
    follow_redirects: bool = True,
) -> ollama.Client:
    """An SDK client for one endpoint.

    The connect timeout is short so a stopped server is reported in seconds; the
    read timeout is long because a local model may take a while to load.
    """
    headers = {"authorization": f"Bearer {api_key}"} if api_key else None
    return ollama.Client(
        host=url,
        timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT),
        headers=headers,
        follow_redirects=follow_redirects,
    )


def _model_from(error: str, fallback: str | None) -> str | None:
    match = _NOT_FOUND.search(error)
    return match.group("name") if match else fallback


def _response_error(
    exc: ollama.ResponseError, url: str, model: str | None, during: str, missing_hint: str
) -> ProviderError:
    error = str(exc.error).strip() or "no details"
    code = exc.status_code
    if code == -1:  # an {"error": …} line inside a 200 stream
        if during == "pull" and any(text in error for text in _NOT_IN_REGISTRY):
            return ProviderRequestError(
                f"Ollama at {url} could not find model {shown(model)} in its registry ({error}); "
                "check the name on ollama.com/library",
                provider=PROVIDER,
            )
        return ProviderServerError(
            f"Ollama at {url} reported an error and the {during} was cut off: {error}",
            provider=PROVIDER,
        )
    if code == 404 and _NOT_FOUND.search(error):
        name = _model_from(error, model)
        return ProviderRequestError(
            f"Model '{name}' is not installed in Ollama at {url}; {missing_hint}",
            provider=PROVIDER,
        )
    if code in (401, 403):
        return ProviderAuthError(
            f"Ollama at {url} refused the request (HTTP {code}: {error}); "
            "check the API key of this endpoint",
            provider=PROVIDER,
        )
    if code == 429:
        return ProviderRateLimited(
            f"Ollama at {url} is rate limiting requests (HTTP 429: {error}); try again shortly",
            provider=PROVIDER,
        )
    if code >= 500:
        return ProviderServerError(
            f"Ollama at {url} failed (HTTP {code}): {error}", provider=PROVIDER
        )
    if code == 404:
        return ProviderRequestError(
            f"Ollama at {url} answered HTTP 404 ({error}): is this really an Ollama endpoint?",
            provider=PROVIDER,
        )
    return ProviderRequestError(
        f"Ollama at {url} rejected the request (HTTP {code}): {error}", provider=PROVIDER
    )


def map_ollama_error(
    exc: BaseException,
    url: str,
    *,
    model: str | None = None,
    during: str = "reply",
    missing_hint: str = "pull it in the Models tab",
) -> ProviderError:
    """The Spoon Feeder error for an exception raised by the ollama client or httpx.

    `during` names what a broken stream cuts off ("reply", "pull"); `missing_hint`
    ends the message for a model that is not installed.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        error = _response_error(exc, url, model, during, missing_hint)
        error.status = exc.status_code if exc.status_code > 0 else None
        return error
    # The SDK turns a refused connection into the builtin ConnectionError, but only for
    # non-streaming calls; a stream raises httpx's ConnectError directly.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
        isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionResetError)
    ):
        return ProviderUnavailable(
            f"Ollama is not reachable at {url} — is it running?", provider=PROVIDER
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderUnavailable(
            f"Ollama at {url} stopped answering (timed out) and the {during} was cut off",
            provider=PROVIDER,
        )
    if isinstance(exc, httpx.TransportError | ConnectionResetError):
        return ProviderUnavailable(
            f"The connection to Ollama at {url} dropped and the {during} was cut off",
            provider=PROVIDER,
        )
    if isinstance(exc, pydantic.ValidationError | json.JSONDecodeError):
        return ProviderServerError(
            f"{url} sent a reply that is not Ollama's protocol: is it really an Ollama endpoint?",
            provider=PROVIDER,
        )
    if isinstance(exc, ollama.RequestError):
        return ProviderRequestError(f"Invalid Ollama request: {exc.error}", provider=PROVIDER)
    return ProviderServerError(f"Ollama request to {url} failed: {exc}", provider=PROVIDER)


# What the ollama client and its transport raise; anything else is a bug and propagates.
OLLAMA_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ollama.ResponseError,
    ollama.RequestError,
    ConnectionError,
    httpx.HTTPError,
    pydantic.ValidationError,
    json.JSONDecodeError,
)


@contextmanager
def ollama_errors(
    url: str,
    *,
    model: str | None = None,
    during: str = "reply",
    missing_hint: str = "pull it in the Models tab",
) -> Iterator[None]:
    """Re-raise ollama/httpx failures inside the block as Spoon Feeder provider errors."""
    try:
        yield
    except OLLAMA_EXCEPTIONS as exc:
        raise map_ollama_error(
            exc, url, model=model, during=during, missing_hint=missing_hint
        ) from exc


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        # Bytes, not base64 text: the SDK base64-encodes bytes itself, whereas a string
        # is first tried as a file path.
        wire["images"] = [image.data for image in message.images]
    return wire


def wire_messages(messages: Sequence[ChatMessage], system: str | None) -> list[dict[str, Any]]:
    """Ollama's message list; the system prompt travels as a leading system message."""
    wire = [{"role": "system", "content": system}] if system else []
    return wire + [_wire_message(m) for m in messages]


def wire_options(options: ChatOptions) -> dict[str, Any]:
    values = {"temperature": options.temperature, "num_predict": options.max_tokens}
    return {key: value for key, value in values.items() if value is not None}


def _model_details(model: Any) -> dict[str, Any]:
    details = model.details
    return {
        "size": int(model.size) if model.size is not None else None,
        "modified_at": model.modified_at.isoformat() if model.modified_at else None,
        "family": details.family if details else None,
        "parameter_size": details.parameter_size if details else None,
        "quantization": details.quantization_level if details else None,
    }


class OllamaProvider:
    """Chat through an Ollama server (local or remote)."""

    name = PROVIDER
    label = "Ollama"
    default_url = "http://localhost:11434"
    key_env = None
    needs_key = False  # a key only where a proxy in front of Ollama asks for one

    def __init__(
        self, url: str, api_key: str | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._default_timeout = float((options or {}).get("timeout") or DEFAULT_TIMEOUT)
        # One client per read timeout, so each keeps its connection pool warm.
        self._clients: dict[float, ollama.Client] = {}
        self._lock = threading.Lock()

    def _client(self, timeout: float | None = None) -> ollama.Client:
        key = float(timeout or self._default_timeout)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = make_client(self.url, self._api_key, key)
            return client

    def list_models(self) -> list[ModelInfo]:
        with ollama_errors(self.url):
            listing = self._client().list()
        return sorted(
            (
                ModelInfo(id=m.model or "", name=m.model, details=_model_details(m))
                for m in listing.models
            ),
            key=lambda info: info.id,
        )

    def stream_chat(
        self, model: str, messages: Sequence[ChatMessage], options: ChatOptions
    ) -> Iterator[ChatChunk]:
        """Yield text deltas; the last chunk has the finish reason and token counts."""
        if not model.strip():
            raise ProviderRequestError("Choose an Ollama model first", provider=PROVIDER)
        client = self._client(options.timeout)
        with ollama_errors(self.url, model=model):
            stream = client.chat(
                model=model,
                messages=wire_messages(messages, options.system),
                stream=True,
                options=wire_options(options) or None,
            )
            try:
                for part in stream:
                    text = part.message.content or ""
                    if part.done:
                        yield ChatChunk(
                            text=text,
                            finish_reason=part.done_reason or "stop",
                            usage=Usage(part.prompt_eval_count, part.eval_count),
                        )
                        return
                    if text:
                        yield ChatChunk(text=text)
            finally:
                # Leaving early (Stop) closes the HTTP response, which cancels generation.
                stream.close()
        # The server closed the stream cleanly but never said it was done: no closing
        # chunk, which `complete_reply` reports as a cut reply.

    def check(self) -> Health:
        return checked(self.label, self.url, bool(self._api_key), self._version_and_models)

    def _version_and_models(self) -> str:
        """ "Ollama 0.12.6 · 3 models installed": the version (the SDK has no call for it),
        then the model list through the SDK; no redirect is followed."""
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else None
        timeout = httpx.Timeout(CHECK_TIMEOUT, connect=CONNECT_TIMEOUT)
        with ollama_errors(self.url, during="check"):
            answer = httpx.get(f"{self.url}/api/version", headers=headers, timeout=timeout)
            if not answer.is_success:
                raise ollama.ResponseError("", answer.status_code)
            body = answer.json()
            if not isinstance(body, dict) or "version" not in body:
                raise ProviderServerError(
                    f"{self.url} answered /api/version, but not as Ollama does", provider=PROVIDER
                )
            client = make_client(self.url, self._api_key, CHECK_TIMEOUT, follow_redirects=False)
            count = len(client.list().models)
        noun = "model" if count == 1 else "models"
        return f"Ollama {version_text(body['version'])} · {count} {noun} installed"
