"""The cloud chat providers, driven through their real SDKs against wire-protocol fakes."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from spoonfeeder.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnavailable,
)
from spoonfeeder.providers.anthropic_ import AnthropicProvider
from spoonfeeder.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatOptions,
    ImageAttachment,
    Usage,
)
from spoonfeeder.providers.gemini import GeminiProvider
from spoonfeeder.providers.gemini import chat_request as gemini_chat_request
from spoonfeeder.providers.openai_ import OpenAIProvider
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest
from tests.fakes.server import closed_port_url, serve

FAST = {"max_retries": 0}  # fault tests must not sit in the SDKs' backoff
HI = [ChatMessage("user", "hi")]
PNG = b"\x89PNG\r\n\x1a\n fake image bytes \x00\xff"
PNG_B64 = base64.b64encode(PNG).decode()
Provider = OpenAIProvider | AnthropicProvider | GeminiProvider
Fake = FakeOpenAI | FakeAnthropic | FakeGemini


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    provider: type[Provider]
    fake: type[Fake]
    base_path: str  # what follows host:port in the base URL a user would enter
    model: str
    chat_path: str  # where a streamed chat request goes

    def __str__(self) -> str:
        return self.name


OPENAI = Case(
    "openai", "OpenAI", OpenAIProvider, FakeOpenAI, "/v1", "gpt-4o-mini", "/v1/chat/completions"
)
ANTHROPIC = Case(
    "anthropic",
    "Anthropic",
    AnthropicProvider,
    FakeAnthropic,
    "",
    "claude-sonnet-5-5",
    "/v1/messages",
)
GEMINI = Case(
    "gemini",
    "Gemini",
    GeminiProvider,
    FakeGemini,
    "",
    "gemini-2.5-flash",
    "/v1/models/gemini-2.5-flash:streamGenerateContent",
)
each_provider = pytest.mark.parametrize("case", [OPENAI, ANTHROPIC, GEMINI], ids=str)


@dataclass(frozen=True)
class Running:
    fake: Fake
    provider: Provider  # pointed at the fake, with the fake's key
    root: str  # http://127.0.0.1:PORT
    url: str  # the provider's base URL

    def chat_requests(self, case: Case) -> list[RecordedRequest]:
        return [r for r in self.fake.requests if r.path == case.chat_path]


class Slot:
    """An ASGI app that forwards to whichever fake the current test plugged in.

    Starting and stopping uvicorn costs ~0.15 s; one server per provider for the
    whole module keeps the file fast while every test still gets a fresh fake.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, tuple[str, Slot]]]:
    with ExitStack() as stack:
        slots = {case.name: Slot() for case in (OPENAI, ANTHROPIC, GEMINI)}
        yield {name: (stack.enter_context(serve(slot)), slot) for name, slot in slots.items()}


Start = Callable[..., Running]


@pytest.fixture
def start(servers: dict[str, tuple[str, Slot]]) -> Start:
    def start(
        case: Case, options: dict[str, Any] | None = None, api_key: str | None = "", **fake: Any
    ) -> Running:
        """A fresh fake of `case` (built from **fake), and a provider pointed at it.

        api_key "" means the fake's own key; options default to no SDK retries.
        """
        root, slot = servers[case.name]
        slot.app = (server := case.fake(**fake)).app
        key = server.key if api_key == "" else api_key
        url = root + case.base_path
        provider = case.provider(url, key, FAST if options is None else options)
        return Running(server, provider, root, url)

    return start


def collect(
    provider: Provider, model: str, messages: Sequence[ChatMessage] = HI, **options: Any
) -> list[ChatChunk]:
    return list(provider.stream_chat(model, messages, ChatOptions(**options)))


def collect_until_error(provider: Provider, model: str) -> tuple[list[ChatChunk], ProviderError]:
    chunks: list[ChatChunk] = []
    with pytest.raises(ProviderError) as caught:
        for chunk in provider.stream_chat(model, HI, ChatOptions()):
            chunks.append(chunk)
    return chunks, caught.value


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.text for c in chunks)


# -- streaming -------------------------------------------------------------------------


@each_provider
def test_streams_text_then_a_closing_chunk_with_finish_and_usage(start: Start, case: Case) -> None:
    tokens = ["Hel", "lo", ", wor", "ld"]
    run = start(case, tokens=tokens, usage=(7, 11))
    chunks = collect(run.provider, case.model)

    assert [c.text for c in chunks[:-1]] == tokens
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert chunks[-1] == ChatChunk(text="", finish_reason="stop", usage=Usage(7, 11))


@each_provider
def test_max_tokens_reaches_the_server_and_a_cut_reply_says_length(
    start: Start, case: Case
) -> None:
    run = start(case, tokens=["a", "b", "c", "d", "e"])
    chunks = collect(run.provider, case.model, max_tokens=2)

    assert text_of(chunks) == "ab"
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.tokens_out == 2


@each_provider
def test_a_500_token_stream_arrives_whole(start: Start, case: Case) -> None:
    tokens = [f"t{i} " for i in range(500)]
    run = start(case, tokens=tokens)
    chunks = collect(run.provider, case.model)

    assert text_of(chunks) == "".join(tokens)
    assert chunks[-1].usage is not None and chunks[-1].usage.tokens_out == 500


@each_provider
def test_closing_the_iterator_early_closes_the_upstream_stream(start: Start, case: Case) -> None:
    tokens = [f"t{i} " for i in range(300)]
    run = start(case, tokens=tokens, token_delay=0.01)
    stream = run.provider.stream_chat(case.model, HI, ChatOptions())
    received = [next(stream).text for _ in range(3)]
    stream.close()  # what "Stop" does

    assert run.fake.disconnected.wait(timeout=3), "the fake never saw the client hang up"
    assert received == tokens[:3]


@each_provider
def test_a_stream_read_to_the_end_is_not_closed_early(start: Start, case: Case) -> None:
    run = start(case, tokens=["a", "b", "c"])
    collect(run.provider, case.model)
    assert not run.fake.stream_closed_early


@each_provider
def test_sdk_retry_recovers_from_a_single_server_error(start: Start, case: Case) -> None:
    run = start(case, {"max_retries": 1}, fault="server_error", fault_times=1)
    chunks = collect(run.provider, case.model)

    assert text_of(chunks) == "Hello, world!"
    assert len(run.chat_requests(case)) == 2  # the 500, then the retry that streamed


# -- what reaches the wire ---------------------------------------------------------------

CONVERSATION = [
    ChatMessage("user", "hi"),
    ChatMessage("assistant", "hello"),
    ChatMessage("user", "again"),
]
OPTIONS = {"system": "be brief", "temperature": 0.25, "max_tokens": 50}
IMAGE_MESSAGE = [ChatMessage("user", "what is this?", (ImageAttachment("image/png", PNG),))]


def test_openai_request_body(start: Start) -> None:
    run = start(OPENAI)
    collect(run.provider, OPENAI.model, CONVERSATION, **OPTIONS)
    (request,) = run.chat_requests(OPENAI)

    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.25,
        "max_tokens": 50,
    }


def test_openai_official_api_gets_max_completion_tokens() -> None:
    # api.openai.com rejects max_tokens for reasoning models. No request is sent here.
    provider = OpenAIProvider("https://api.openai.com/v1", "sk-x", {})
    body = provider.chat_request("o4-mini", HI, ChatOptions(max_tokens=10))
    assert body["max_completion_tokens"] == 10
    assert "max_tokens" not in body


def test_openai_compatible_server_without_a_key(start: Start) -> None:
    run = start(OPENAI, api_key=None, key=None)
    chunks = collect(run.provider, OPENAI.model)
    (request,) = run.chat_requests(OPENAI)

    assert text_of(chunks) == "Hello, world!"
    assert request.headers["authorization"] == "Bearer not-needed"


def test_anthropic_request_body(start: Start) -> None:
    run = start(ANTHROPIC)
    collect(
        run.provider, ANTHROPIC.model, [ChatMessage("system", "rules"), *CONVERSATION], **OPTIONS
    )
    (request,) = run.chat_requests(ANTHROPIC)

    assert request.headers["authorization"] == "Bearer sk-ant-test"
    # No temperature: API version 2026-10-21 answers any temperature with HTTP 400.
    assert request.json == {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "system": "be brief\n\nrules",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "stream": True,
    }


def test_anthropic_max_tokens_defaults_to_1024_and_a_pasted_v1_is_dropped(start: Start) -> None:
    run = start(ANTHROPIC)
    provider = AnthropicProvider(f"{run.root}/v1/", run.fake.key, FAST)
    collect(provider, ANTHROPIC.model)
    (request,) = run.chat_requests(ANTHROPIC)  # i.e. /v1/messages, not /v1/v1/messages

    assert request.json["max_tokens"] == 1024
    assert "system" not in request.json


def test_gemini_request_body(start: Start) -> None:
    run = start(GEMINI)
    collect(run.provider, GEMINI.model, [ChatMessage("system", "rules"), *CONVERSATION], **OPTIONS)
    (request,) = run.chat_requests(GEMINI)

    assert request.query == {"alt": "sse"}
    assert request.headers["x-goog-api-key"] == "gm-test"
    assert request.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "be brief\n\nrules"}]},
        "generationConfig": {"temperature": 0.25, "maxOutputTokens": 50},
    }


def test_gemini_sends_no_config_when_there_is_nothing_to_set() -> None:
    # Any config makes the SDK do extra work on every streamed chunk; skip it when empty.
    assert gemini_chat_request(HI, ChatOptions(), client_timeout=120.0)[1] is None
    config = gemini_chat_request(HI, ChatOptions(temperature=0.5), client_timeout=120.0)[1]
    assert config is not None and config.temperature == 0.5 and config.http_options is None
    # A per-reply timeout that differs from the client's still travels with the request.
    config = gemini_chat_request(HI, ChatOptions(timeout=3.0), client_timeout=120.0)[1]
    assert config is not None and config.http_options.timeout == 3000


def test_openai_sends_images_as_data_url_parts(start: Start) -> None:
    run = start(OPENAI)
    collect(run.provider, OPENAI.model, IMAGE_MESSAGE)
    (request,) = run.chat_requests(OPENAI)

    assert request.json["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]


def test_anthropic_sends_images_as_base64_blocks(start: Start) -> None:
    run = start(ANTHROPIC)
    collect(run.provider, ANTHROPIC.model, IMAGE_MESSAGE)
    (request,) = run.chat_requests(ANTHROPIC)

    source = {"type": "base64", "media_type": "image/png", "data": PNG_B64}
    assert request.json["messages"][0]["content"] == [
        {"type": "image", "source": source},
        {"type": "text", "text": "what is this?"},
    ]


def test_gemini_sends_images_as_inline_data(start: Start) -> None:
    run = start(GEMINI)
    collect(run.provider, GEMINI.model, IMAGE_MESSAGE)
    (request,) = run.chat_requests(GEMINI)

    image, text = request.json["contents"][0]["parts"]
    # google-genai writes proto field names and URL-safe base64; the API reads both spellings.
    inline = image["inlineData"]
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"
    assert base64.urlsafe_b64decode(inline["data"]) == PNG
    assert text == {"text": "what is this?"}


# -- models and health -------------------------------------------------------------------


@each_provider
def test_list_models_follows_every_page(start: Start, case: Case) -> None:
    ids = [f"{case.model}-{n}" for n in range(5)]
    paging = {} if case is OPENAI else {"page_size": 2}  # OpenAI's list is not paged
    run = start(case, models=ids, **paging)
    models = run.provider.list_models()

    assert [m.id for m in models] == ids
    list_calls = [r for r in run.fake.requests if r.path.endswith("/models")]
    assert len(list_calls) == (1 if case is OPENAI else 3)


def test_model_display_names_come_from_the_provider(start: Start) -> None:
    (flash,) = start(GEMINI, models=["gemini-2.5-flash"]).provider.list_models()
    (haiku,) = start(ANTHROPIC, models=["claude-haiku-5-5"]).provider.list_models()

    assert (flash.id, flash.name) == ("gemini-2.5-flash", "Gemini 2.5 Flash")
    assert flash.details["input_token_limit"] == 1048576
    assert (haiku.id, haiku.name) == ("claude-haiku-5-5", "Claude Haiku 5 5")


@each_provider
def test_check_ok_reports_models_and_latency(start: Start, case: Case) -> None:
    health = start(case, models=["m1", "m2", "m3"]).provider.check()

    assert health.ok and health.status == "ok"
    assert health.message.startswith("3 models available · ")  # then the time it took
    assert health.latency_ms is not None and health.latency_ms > 0


@each_provider
def test_check_with_a_wrong_key_says_so(start: Start, case: Case) -> None:
    health = start(case, api_key="wrong-key").provider.check()

    assert not health.ok and health.status == "auth_rejected"
    assert health.message.startswith("HTTP 40")  # the status, in the app's words only
    assert health.message.endswith("the API key was rejected")
    assert health.latency_ms is None


@each_provider
def test_check_when_nothing_listens(case: Case) -> None:
    url = closed_port_url() + case.base_path
    health = case.provider(url, "k", FAST).check()
    assert not health.ok
    assert health.message == f"{case.label} is not reachable at {url} — is it running?"


# -- errors -----------------------------------------------------------------------------


@each_provider
def test_unreachable_server(case: Case) -> None:
    url = closed_port_url() + case.base_path
    with pytest.raises(ProviderUnavailable) as caught:
        collect(case.provider(url, "k", FAST), case.model)
    assert caught.value.message == f"{case.label} is not reachable at {url} — is it running?"
    assert caught.value.provider == case.name


@each_provider
def test_auth_fault(start: Start, case: Case) -> None:
    run = start(case, fault="auth")
    with pytest.raises(ProviderAuthError) as caught:
        collect(run.provider, case.model)
    assert caught.value.message.startswith(f"{case.label} rejected the API key (HTTP 40")
    assert caught.value.message.endswith(". Check it in Settings.")


@each_provider
def test_missing_key_asks_for_one(start: Start, case: Case) -> None:
    run = start(case, api_key=None)
    with pytest.raises(ProviderAuthError) as caught:
        collect(run.provider, case.model)
    assert caught.value.message.startswith(f"{case.label} needs an API key (HTTP 40")
    assert caught.value.message.endswith(". Add one in Settings.")


@each_provider
def test_unknown_model(start: Start, case: Case) -> None:
    run = start(case)
    with pytest.raises(ProviderRequestError) as caught:
        collect(run.provider, "no-such-model")
    prefix = f"Model 'no-such-model' is not available at {run.url} (HTTP 404): "
    assert caught.value.message.startswith(prefix)
    assert "no-such-model" in caught.value.message.removeprefix(prefix)  # the server's words


@each_provider
def test_rate_limit_carries_the_retry_after_hint(start: Start, case: Case) -> None:
    run = start(case, fault="rate_limit", retry_after=7)
    with pytest.raises(ProviderRateLimited) as caught:
        collect(run.provider, case.model)
    assert caught.value.retry_after == 7
    assert caught.value.message.startswith(
        f"{case.label} rate limit reached (HTTP 429); retry after 7 s. "
    )


@each_provider
def test_server_error(start: Start, case: Case) -> None:
    run = start(case, fault="server_error", error_message="database on fire")
    with pytest.raises(ProviderServerError) as caught:
        collect(run.provider, case.model)
    assert caught.value.message == f"{case.label} server error (HTTP 500): database on fire"


@each_provider
def test_connection_dropped_midway(start: Start, case: Case) -> None:
    tokens = ["one ", "two ", "three ", "four "]
    run = start(case, fault="break_midway", tokens=tokens)
    chunks, error = collect_until_error(run.provider, case.model)

    assert [c.text for c in chunks] == tokens[:2]  # what arrived before the cut was delivered
    assert isinstance(error, ProviderUnavailable)
    assert error.message == f"{case.label}'s reply was cut off: the connection broke ({run.url})."


@each_provider
def test_error_event_midway(start: Start, case: Case) -> None:
    tokens = ["one ", "two ", "three ", "four "]
    run = start(case, fault="error_event", tokens=tokens, error_message="overloaded")
    chunks, error = collect_until_error(run.provider, case.model)

    assert [c.text for c in chunks] == tokens[:2]
    assert isinstance(error, ProviderServerError)
    assert error.message == f"{case.label}'s reply was cut off by an error mid-stream: overloaded"


@each_provider
def test_a_silent_server_times_out(start: Start, case: Case) -> None:
    run = start(case, token_delay=2.0)
    with pytest.raises(ProviderUnavailable) as caught:
        collect(run.provider, case.model, timeout=0.3)
    assert run.url in caught.value.message


FAULT_CLASSES = {
    "auth": ProviderAuthError,
    "unknown_model": ProviderRequestError,
    "rate_limit": ProviderRateLimited,
    "server_error": ProviderServerError,
    "break_midway": ProviderUnavailable,
    "error_event": ProviderServerError,
}


@each_provider
@pytest.mark.parametrize("fault", FAULT_CLASSES)
def test_every_fault_is_typed_labelled_and_hides_the_key(
    start: Start, case: Case, fault: str
) -> None:
    # A careless server (or proxy) that echoes the key must not leak it into the UI.
    key = "sk-very-secret-0123456789"
    run = start(case, key=key, fault=fault, error_message=f"bad request for {key}")
    _, error = collect_until_error(run.provider, case.model)

    assert type(error) is FAULT_CLASSES[fault]
    assert error.provider == case.name
    assert key not in str(error)
    if fault != "break_midway":  # a dropped connection carries no server message
        assert "bad request for [redacted]" in str(error)


def test_openai_base_url_without_v1_is_explained(start: Start) -> None:
    run = start(OPENAI)
    provider = OpenAIProvider(run.root, run.fake.key, FAST)  # forgot the /v1
    with pytest.raises(ProviderRequestError) as caught:
        provider.list_models()
    assert caught.value.message.startswith(f"OpenAI at {run.root} answers HTTP 404 on /models")
    assert f"try {run.root}/v1" in caught.value.message


def test_anthropic_fake_accepts_the_old_x_api_key_header_too(start: Start) -> None:
    run = start(ANTHROPIC)
    old_style = httpx.get(f"{run.root}/v1/models", headers={"x-api-key": run.fake.key})
    wrong = httpx.get(f"{run.root}/v1/models", headers={"x-api-key": "nope"})
    assert old_style.status_code == 200
    assert wrong.status_code == 401
