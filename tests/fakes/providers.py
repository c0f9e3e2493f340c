"""Small fake provider endpoints for connection tests.

Each answers the request `spoonfeeder.connection.probe` makes, with the status,
headers and body shapes of the real service (../shared/docs/provider-protocols.md),
and checks the API key the way the real service does.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

COMFYUI_FIXTURES = Path(__file__).parents[1] / "fixtures" / "comfyui"


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value[7:] if value.lower().startswith("bearer ") else None


def ollama_app() -> Starlette:
    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": "0.12.6"})

    return Starlette(routes=[Route("/api/version", version)])


def openai_app(key: str) -> Starlette:
    async def models(request: Request) -> JSONResponse:
        if _bearer(request) != key:
            return JSONResponse(
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": "gpt-4o-mini",
                        "object": "model",
                        "created": 1700000000,
                        "owned_by": "openai",
                    }
                ],
            }
        )

    return Starlette(routes=[Route("/v1/models", models)])


def anthropic_app(key: str) -> Starlette:
    async def models(request: Request) -> JSONResponse:
        # anthropic >= 2.0 sends a bearer token, older SDKs and the raw API x-api-key: accept both.
        if key not in (_bearer(request), request.headers.get("x-api-key")):
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                    "request_id": "req_1",
                },
                status_code=401,
            )
        return JSONResponse(
            {
                "data": [
                    {
                        "type": "model",
                        "id": "claude-x",
                        "display_name": "Claude X",
                        "created_at": "2025-09-29T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": "claude-x",
                "last_id": "claude-x",
            }
        )

    return Starlette(routes=[Route("/v1/models", models)])


def gemini_app(key: str) -> Starlette:
    async def models(request: Request) -> JSONResponse:
        if request.headers.get("x-goog-api-key") != key:
            return JSONResponse(
                {
                    "error": {
                        "code": 400,
                        "message": "API key not valid. Please pass a valid API key.",
                        "status": "INVALID_ARGUMENT",
                    }
                },
                status_code=403,
            )
        return JSONResponse(
            {
                "models": [
                    {
                        "name": "models/gemini-2.5-flash",
                        "displayName": "Gemini 2.5 Flash",
                        "supportedGenerationMethods": ["generateContent"],
                    }
                ]
            }
        )

    return Starlette(routes=[Route("/v1/models", models), Route("/v1beta/models", models)])


def comfyui_app() -> Starlette:
    stats = json.loads((COMFYUI_FIXTURES / "system_stats.json").read_text())

    async def system_stats(request: Request) -> JSONResponse:
        return JSONResponse(stats)

    return Starlette(routes=[Route("/system_stats", system_stats)])
