"""A bounded fuzz run over every API endpoint, as raw requests: whatever a caller sends —
wrong kinds, huge numbers, a megabyte of text, malformed files, other records' ids — the
answer is a result or one clear sentence: never Gradio's bare "Error", never "something
went wrong", never a message that echoes the megabyte, and no traceback in the log.

Hypothesis draws each endpoint's arguments (derandomized: the same run every time, so CI
cannot flake); a failure is shrunk to the smallest arguments that still fail.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.launch import launched, sqlite_app

# Per endpoint; SPOONFEEDER_FUZZ_EXAMPLES=200 runs a deeper (still deterministic) search.
EXAMPLES_PER_ENDPOINT = int(os.environ.get("SPOONFEEDER_FUZZ_EXAMPLES", "12"))
ANSWER_SECONDS = 30.0
LONG_TEXT = "x" * 1_000_000  # the 1 MB search term that once reached SQL as it was
LONGEST_MESSAGE = 600  # characters: a sentence, not an echo of the input

HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "1e400",
        "../../etc/passwd",
        "\x00",
        "😀",
        LONG_TEXT,
        2**63,  # past SQLite's and PostgreSQL's BIGINT
        -(2**63) - 1,
        2**70,
        1e308,
        {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
        {"path": "../../etc/passwd"},
        {"text": 5, "files": "no"},
        {"headers": "x", "data": 3},
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    HOSTILE,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=5,
)

# What a message must not be or contain: Gradio's catch-alls and our own.
GENERIC = (
    "Something went wrong",
    "verbose error reporting",
    "Traceback",
    "Original error",
    "Could not preprocess",
    "validation error for",
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    fn_index: int
    parameters: list[dict[str, Any]]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    with sqlite_app(tmp_path_factory.mktemp("fuzz")) as ctx:
        # Real records, so that some drawn ids find something and go deeper.
        known = [
            str(ctx.chat.create_conversation(system_prompt="be brief").id),
            str(ctx.comfyui.sessions.create("fuzzed").id),
            str(
                ctx.tasks.create_task("text.generate", provider="ollama", model="m", prompt="hi").id
            ),
            *(str(w.id) for w in ctx.comfyui.workflows.list_all()),
        ]
        with launched(ctx) as url:
            yield url, known


def endpoints(base_url: str) -> list[Endpoint]:
    info = httpx.get(base_url + "gradio_api/info").json()["named_endpoints"]
    config = httpx.get(base_url + "config").json()
    index = {f"/{d['api_name']}": d["id"] for d in config["dependencies"] if d.get("api_name")}
    return [Endpoint(name, index[name], ep["parameters"]) for name, ep in info.items()]


def arguments(endpoint: Endpoint, known: list[str]) -> st.SearchStrategy[list[Any]]:
    per_parameter = []
    for parameter in endpoint.parameters:
        options = [VALUES, st.sampled_from(known)]
        for key in ("example_input", "parameter_default"):
            value = parameter.get(key)
            if value is not None and "http" not in json.dumps(value):  # no internet here
                options.append(st.just(value))
        per_parameter.append(st.one_of(options))
    return st.tuples(*per_parameter).map(list)


def call(client: httpx.Client, base_url: str, endpoint: Endpoint, data: list[Any]) -> list:
    """(event, data) pairs of one raw call, up to its end or its first frame of output
    (then it is cancelled: a live view would stream on for minutes)."""
    session = uuid.uuid4().hex
    name = endpoint.name.lstrip("/")
    posted = client.post(
        f"{base_url}gradio_api/call/{name}", json={"data": data, "session_hash": session}
    )
    assert posted.status_code == 200, (endpoint.name, posted.status_code, posted.text[:300])
    event_id = posted.json()["event_id"]
    events: list[tuple[str, Any]] = []
    with client.stream(
        "GET", f"{base_url}gradio_api/call/{name}/{event_id}", timeout=ANSWER_SECONDS
    ) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.removeprefix("data:"))))
                if kind in ("complete", "error", "generating"):
                    break
    if events and events[-1][0] == "generating":
        client.post(
            f"{base_url}gradio_api/cancel",
            json={"session_hash": session, "fn_index": endpoint.fn_index, "event_id": event_id},
        )
    return events


def assert_a_sentence(endpoint: Endpoint, data: list[Any], events: list) -> None:
    where = f"{endpoint.name} with {str(data)[:300]}"
    assert events, f"{where}: no answer"
    kind, payload = events[-1]
    if kind != "error":
        return
    message = payload.get("error") if isinstance(payload, dict) else None
    assert isinstance(message, str) and message.strip(), f"{where}: the generic 'Error'"
    assert message != "Error", f"{where}: the generic 'Error'"
    assert len(message) <= LONGEST_MESSAGE, f"{where}: a {len(message)}-character message"
    for generic in GENERIC:
        assert generic not in message, f"{where}: {message!r}"


@pytest.mark.timeout(max(180, 15 * EXAMPLES_PER_ENDPOINT))  # about 4 s per example of all
def test_every_endpoint_answers_any_input_with_a_result_or_a_sentence(
    fuzzed: tuple[str, list[str]],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    base_url, known = fuzzed
    listed = endpoints(base_url)
    assert len(listed) > 60  # every tab's endpoints, not an empty app
    caplog.set_level(logging.ERROR)
    with httpx.Client(timeout=ANSWER_SECONDS) as client:

        def fuzz(endpoint: Endpoint) -> None:
            @settings(
                max_examples=EXAMPLES_PER_ENDPOINT,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(data=arguments(endpoint, known))
            def answers_with_a_sentence(data: list[Any]) -> None:
                assert_a_sentence(endpoint, data, call(client, base_url, endpoint, data))
                logged = capfd.readouterr().err
                where = f"{endpoint.name} with {str(data)[:300]}"
                assert "Traceback" not in logged, f"{where} logged:\n{logged[-3000:]}"
                tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
                caplog.clear()
                assert not tracebacks, f"{where} logged {tracebacks}"

            answers_with_a_sentence()

        failures = []
        for endpoint in listed:  # all of them, then every endpoint that failed
            try:
                fuzz(endpoint)
            except Exception as exc:  # the shrunk failure (or group of them) of one endpoint
                found = exc.exceptions if isinstance(exc, ExceptionGroup) else [exc]
                failures += [f"{endpoint.name}: {_described(one)}" for one in found]
    assert not failures, f"{len(failures)} endpoints failed:\n\n" + "\n\n".join(failures)


def test_the_fuzz_sends_what_it_claims() -> None:
    """The megabyte and the huge integers really are drawn (a strategy typo would make the
    fuzz above pass while sending nothing hostile)."""
    drawn: list[Any] = []

    @settings(max_examples=300, derandomize=True, database=None)
    @given(value=VALUES)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    flat = json.dumps(drawn)
    assert LONG_TEXT in flat
    assert str(2**63) in flat
    assert '"gradio.FileData"' in flat


def _described(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    text = f"{type(error).__name__}: {str(error)[:2000]}"
    return text + (f" (from {type(cause).__name__}: {str(cause)[:500]})" if cause else "")
