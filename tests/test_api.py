"""The REST face's frame: the seed's envelope on every answer (errors of the one
exception tree, FastAPI's own validation, unknown paths, the unexpected), OpenAPI and
docs, health, and credentials (Basic or a Bearer token, no other form) on every route
when sign-in is on."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from fastapi import APIRouter

from spoonfeeder import errors
from spoonfeeder.api import app as api_app
from spoonfeeder.context import AppContext
from tests.conftest import MakeApp
from tests.launch import api_client, raw_get, served


def test_health_answers_in_the_envelope(ctx: AppContext) -> None:
    with api_client(ctx) as client:
        answer = client.get("/api/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True
    assert body["data"]["ok"] is True
    assert body["data"]["database"]["backend"] == ctx.engine.dialect.name
    assert body["data"]["tasks"]["counts"]["queued"] == 0
    assert {p["provider"] for p in body["data"]["providers"]} >= {"ollama", "comfyui"}


def test_unknown_paths_and_methods_are_envelopes_not_the_ui(make_app: MakeApp) -> None:
    with api_client(make_app()) as client:
        missing = client.get("/api/no/such/thing")
        wrong_method = client.delete("/api/health")
    assert missing.status_code == 404
    assert missing.json() == {
        "success": False,
        "error": "There is no /api/no/such/thing here.",
        "code": "NOT_FOUND",
    }
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"


@pytest.fixture
def failing_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes that raise each kind of error, added beside the real areas."""

    def routes(ctx: AppContext) -> APIRouter:
        router = APIRouter()

        @router.get("/boom/{kind}")
        def boom(kind: str) -> None:
            raise {
                "validation": errors.ValidationError("Width must be a multiple of 8."),
                "missing": errors.NotFoundError("No generation 123."),
                "down": errors.ProviderUnavailable("Ollama is not reachable at http://x."),
                "limited": errors.ProviderRateLimited("Slow down.", retry_after=7.2),
                "rejected": errors.ProviderAuthError("OpenAI rejected the API key."),
                "unexpected": RuntimeError("db_password=hunter2 in a raw error"),
            }[kind]

        @router.get("/typed")
        def typed(count: int, name: str) -> None:
            return None

        return router

    monkeypatch.setattr(api_app, "AREAS", [*api_app.AREAS, routes])


@pytest.mark.usefixtures("failing_routes")
def test_each_error_class_has_its_code_and_status(make_app: MakeApp) -> None:
    with api_client(make_app()) as client:
        seen = {
            kind: client.get(f"/api/boom/{kind}")
            for kind in ("validation", "missing", "down", "limited", "rejected", "unexpected")
        }
    assert {kind: (r.status_code, r.json()["code"]) for kind, r in seen.items()} == {
        "validation": (422, "VALIDATION_ERROR"),
        "missing": (404, "NOT_FOUND"),
        "down": (503, "PROVIDER_UNAVAILABLE"),
        "limited": (429, "RATE_LIMITED"),
        "rejected": (502, "AUTH_REJECTED"),
        "unexpected": (500, "INTERNAL_ERROR"),
    }
    assert seen["validation"].json()["error"] == "Width must be a multiple of 8."
    assert seen["limited"].headers["retry-after"] == "7"
    assert "hunter2" not in seen["unexpected"].text  # raw exception text never leaves
    assert all(r.json()["success"] is False for r in seen.values())


@pytest.mark.usefixtures("failing_routes")
def test_fastapi_validation_comes_back_in_the_envelope(make_app: MakeApp) -> None:
    with api_client(make_app()) as client:
        answer = client.get("/api/typed", params={"count": "many"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["success"] is False and body["code"] == "VALIDATION_ERROR"
    assert "count" in body["error"] and "name" in body["error"]  # each field named
    assert "detail" not in body


def test_openapi_and_docs_are_under_api(make_app: MakeApp) -> None:
    with api_client(make_app()) as client:
        document = client.get("/api/openapi.json")
        docs = client.get("/api/docs")
    assert document.status_code == 200
    assert "/api/health" in document.json()["paths"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_with_auth_on_no_api_route_answers_without_credentials(make_app: MakeApp) -> None:
    ctx = make_app(spoonfeeder_auth="alice:wonder-land,bob:builder")
    token = ctx.users.create_token(ctx.users.get("alice"), "script").secret
    with api_client(ctx) as client:
        paths = client.get("/api/openapi.json", headers=basic("alice", "wonder-land"))
        routes = [
            (method.upper(), path.replace("{", "").replace("}", ""))
            for path, operations in paths.json()["paths"].items()
            for method in operations
        ]
        assert routes  # every documented route, with placeholder path parameters
        documents = [("GET", "/api/openapi.json"), ("GET", "/api/docs")]
        for method, path in [*routes, *documents, ("GET", "/api/no/such/route")]:
            for headers in (
                {},
                basic("alice", "wrong"),
                basic("mallory", "wonder-land"),
                {"Authorization": "Bearer wonder-land"},
                {"Authorization": "Basic !!!not-base64"},
                {"X-Api-Key": "wonder-land"},
                # A real token anywhere but `Authorization: Bearer` is no credential.
                {"X-Api-Key": token},
                {"Authorization": f"Token {token}"},
                {"Authorization": token},
                {"Cookie": f"token={token}"},
                {"Authorization": f"Bearer {token}x"},
            ):
                answer = client.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.json()["code"] == "UNAUTHORIZED"
                assert "wonder-land" not in answer.text
            in_query = client.request(method, path, params={"api_key": token, "token": token})
            assert in_query.status_code == 401, (method, path)
        allowed = client.get("/api/health", headers=basic("bob", "builder"))
        with_token = client.get("/api/health", headers={"Authorization": f"bearer  {token}"})
    assert allowed.status_code == 200 and allowed.json()["success"] is True
    assert with_token.status_code == 200


def test_the_mounted_uis_file_route_serves_the_media_folder_only(
    make_app: MakeApp, tmp_path: Path
) -> None:
    """The whole app as `python app.py` serves it: Gradio's own file route (what the UI's
    gallery uses) serves media, and no raw traversal form reaches a file beside it."""
    ctx = make_app(data=tmp_path / "app")
    media = ctx.settings.media_path.resolve()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-" + uuid.uuid4().hex)
    image = media / "comfyui" / "g" / "000_out.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\x89PNG\r\n\x1a\nmedia")
    up = "../" * len(media.relative_to(tmp_path).parts)
    attempts = [
        f"{media}/{up}secret.txt",
        f"{media}/{up}secret.txt".replace("../", "%2e%2e%2f"),
        f"{media}/{up}secret.txt".replace("../", "%252e%252e%252f"),
        f"{media}/{up}secret.txt".replace("../", "..%5c"),
        str(secret),
    ]
    with served(ctx) as base:
        assert raw_get(base, f"/gradio_api/file={image}") == (200, image.read_bytes())
        for target in attempts:
            status, body = raw_get(base, f"/gradio_api/file={target}")
            assert status in (400, 403, 404), (target, status)
            assert secret.read_bytes() not in body, target
