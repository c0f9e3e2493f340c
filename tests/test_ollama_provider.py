"""OllamaProvider through the real ollama client against the fake Ollama server."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from spoonfeeder.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnavailable,
)
from spoonfeeder.providers.base import ChatMessage, ChatOptions, ImageAttachment
from spoonfeeder.providers.ollama import OllamaProvider
from tests.fakes.ollama_server import DEFAULT_TOKENS, MID_STREAM_ERROR, FakeOllama
from tests.fakes.server import closed_port_url, serve

HELLO = [ChatMessage("user", "Say hello please")]


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK adds OLLAMA_API_KEY from the environment; keep the header under test control.
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama(models=["llama3.2:latest"])


@pytest.fixture
def url(fake: FakeOllama) -> Iterator[str]:
    with serve(fake.app) as base:
        yield base


def test_streams_text_then_finish_reason_and_usage(fake: FakeOllama, url: str) -> None:
    chunks = list(OllamaProvider(url).stream_chat("llama3.2", HELLO, ChatOptions()))

    assert "".join(c.text for c in chunks) == "".join(DEFAULT_TOKENS)
    assert len(chunks) > 2, "deltas arrive one by one, not as one block"
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.tokens_in, last.usage.tokens_out) == (3, len(DEFAULT_TOKENS))


def test_system_prompt_options_and_images_go_on_the_wire(fake: FakeOllama, url: str) -> None:
    image = ImageAttachment("image/png", b"\x89PNG\r\n\x1a\nfake-pixels")
    messages = [ChatMessage("user", "What is this?", (image,))]
    options = ChatOptions(system="Answer in French.", temperature=0.3, max_tokens=2)

    chunks = list(OllamaProvider(url).stream_chat("llama3.2", messages, options))

    body = fake.bodies("/api/chat")[-1]
    assert body["model"] == "llama3.2"
    assert body["stream"] is True
    assert body["options"] == {"temperature": 0.3, "num_predict": 2}
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    user = body["messages"][1]
    assert user["role"] == "user" and user["content"] == "What is this?"
    assert user["images"] == [base64.b64encode(image.data).decode()]
    # num_predict reached: two tokens and a "length" finish.
    assert "".join(c.text for c in chunks) == "".join(DEFAULT_TOKENS[:2])
    assert chunks[-1].finish_reason == "length"


def test_defaults_send_no_options_and_no_system_message(fake: FakeOllama, url: str) -> None:
    list(OllamaProvider(url).stream_chat("llama3.2", HELLO, ChatOptions()))
    body = fake.bodies("/api/chat")[-1]
    assert "options" not in body
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_bearer_header_only_when_a_key_is_set(fake: FakeOllama, url: str) -> None:
    list(OllamaProvider(url, None).stream_chat("llama3.2", HELLO, ChatOptions()))
    list(OllamaProvider(url, "secret-token").stream_chat("llama3.2", HELLO, ChatOptions()))
    without, with_key = (r.headers for r in fake.requests)
    assert "authorization" not in without
    assert with_key["authorization"] == "Bearer secret-token"


def test_a_required_key_that_is_wrong_is_an_auth_error() -> None:
    fake = FakeOllama(api_key="right")
    with serve(fake.app) as url:
        with pytest.raises(ProviderAuthError, match="check the API key"):
            list(OllamaProvider(url, "wrong").stream_chat("llama3.2", HELLO, ChatOptions()))
        assert OllamaProvider(url, "right").list_models()


def test_model_not_installed_says_so_and_where(url: str) -> None:
    with pytest.raises(ProviderRequestError) as caught:
        list(OllamaProvider(url).stream_chat("mistral", HELLO, ChatOptions()))
    assert str(caught.value) == (
        f"Model 'mistral' is not installed in Ollama at {url}; pull it in the Models tab"
    )
    assert caught.value.provider == "ollama"


@pytest.mark.parametrize(
    ("fault", "error", "fragment"),
    [
        ("unknown_model", ProviderRequestError, "Model 'llama3.2' is not installed"),
        ("server_error", ProviderServerError, "failed (HTTP 500): llama runner process"),
        ("unauthorized", ProviderAuthError, "refused the request (HTTP 401"),
        ("rate_limited", ProviderRateLimited, "rate limiting"),
        ("break_midway", ProviderUnavailable, "dropped and the reply was cut off"),
        ("error_line", ProviderServerError, "reply was cut off: " + MID_STREAM_ERROR),
    ],
)
def test_each_fault_becomes_the_right_error(
    fake: FakeOllama, url: str, fault: str, error: type[ProviderError], fragment: str
) -> None:
    fake.fault = fault
    received: list[str] = []
    with pytest.raises(error) as caught:
        for chunk in OllamaProvider(url).stream_chat("llama3.2", HELLO, ChatOptions()):
            received.append(chunk.text)
    assert fragment in str(caught.value)
    assert url in str(caught.value)
    if fault in ("break_midway", "error_line"):
        # The tokens before the break did arrive: the caller can keep the partial reply.
        assert received == list(DEFAULT_TOKENS[: fake.fault_after])


def test_closed_port_is_unavailable_with_the_url() -> None:
    url = closed_port_url()
    with pytest.raises(ProviderUnavailable) as caught:
        list(OllamaProvider(url).stream_chat("llama3.2", HELLO, ChatOptions()))
    assert str(caught.value) == f"Ollama is not reachable at {url} — is it running?"
    with pytest.raises(ProviderUnavailable, match="is not reachable"):
        OllamaProvider(url).list_models()


def test_closing_the_iterator_closes_the_upstream_stream() -> None:
    fake = FakeOllama(tokens=[f"t{i} " for i in range(200)], token_delay=0.02)
    with serve(fake.app) as url:
        stream = OllamaProvider(url).stream_chat("llama3.2", HELLO, ChatOptions())
        first = [next(stream).text, next(stream).text]
        stream.close()
        assert fake.stream_closed.wait(5), "the fake never saw the client go away"
    assert first == ["t0 ", "t1 "]
    assert fake.stream_closed_early


def test_a_finished_stream_is_not_reported_as_closed_early(fake: FakeOllama, url: str) -> None:
    list(OllamaProvider(url).stream_chat("llama3.2", HELLO, ChatOptions()))
    assert not fake.stream_closed.wait(0.2)


def test_empty_model_is_refused_before_any_request(fake: FakeOllama, url: str) -> None:
    with pytest.raises(ProviderRequestError, match="Choose an Ollama model"):
        list(OllamaProvider(url).stream_chat("  ", HELLO, ChatOptions()))
    assert fake.requests == []


def test_list_models_and_check() -> None:
    fake_models = FakeOllama(models=["qwen2.5:7b", "llama3.2"])
    with serve(fake_models.app) as other:
        models = OllamaProvider(other).list_models()
        health = OllamaProvider(other).check()
    assert [m.id for m in models] == ["llama3.2:latest", "qwen2.5:7b"]
    assert models[0].details["family"] == "llama"
    assert models[0].details["size"] == 2_019_393_189
    assert health.ok and "2 models installed" in health.message
    assert health.latency_ms is not None

    down = OllamaProvider(closed_port_url()).check()
    assert not down.ok and "is not reachable" in down.message
