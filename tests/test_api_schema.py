"""Schemathesis over /api/openapi.json: every documented operation is called with data
generated from its own schema (valid and invalid), against the app wired to the fake
Ollama, OpenAI and ComfyUI servers, so an upstream is there to answer. Two checks
must hold for every call: no 5xx answer, and every answer matches its own documented
schema (the envelope included). Derandomized: CI sees the same run every time.

SPOONFEEDER_SCHEMA_EXAMPLES=100 runs a deeper search."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from spoonfeeder.api.app import create_api
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import serve
from tests.launch import sqlite_app

EXAMPLES = int(os.environ.get("SPOONFEEDER_SCHEMA_EXAMPLES", "8"))
KEY = "sk-schema-run-0000"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data: Path = tmp_path_factory.mktemp("schema")
    with (
        serve(FakeOllama().app) as ollama,
        serve(FakeOpenAI(key=KEY).app) as openai,
        serve(FakeComfyUI().app) as comfyui,
        sqlite_app(data, ollama_url=ollama, comfyui_url=comfyui) as ctx,
    ):
        ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=openai + "/v1")
        yield schemathesis.openapi.from_asgi("/api/openapi.json", create_api(ctx))


def test_no_server_error_and_every_answer_matches_its_schema(api_schema: Any) -> None:
    failures: list[str] = []
    seen: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40  # the whole tree is documented

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call_and_validate(
                checks=[not_a_server_error, response_schema_conformance]
            )
            seen[response.status_code] += 1

        try:
            call()
        except Exception as failure:  # every operation is tried; all failures are listed
            failures.append(f"{operation.label}: {str(failure)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert seen[200] + seen[201] + seen[202] > 0 and seen[422] > 0  # both kinds were sent
