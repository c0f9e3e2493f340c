"""'Test connection': one real HTTP request that tells whether an endpoint works.

The result is a status a person can act on: ok, unreachable, auth_rejected or
error, with a sentence saying why. It is not a network probe: what an endpoint answers
on error is never echoed (an internal URL's error page may hold anything), only the
outcome and the HTTP status, and redirects are not followed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx

from spoonfeeder.providers.kinds import provider_kind

OK = "ok"
UNREACHABLE = "unreachable"
AUTH_REJECTED = "auth_rejected"
ERROR = "error"
UNTESTED = "untested"

STATUS_LABELS = {
    OK: "✅ ok",
    UNREACHABLE: "🔌 unreachable",
    AUTH_REJECTED: "🔒 auth rejected",
    ERROR: "⚠️ error",
    UNTESTED: "· untested",
}


@dataclass(frozen=True)
class ProbeResult:
    status: str
    message: str
    latency_ms: float | None = None


def _request_for(provider: str, url: str, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The cheapest authenticated GET each provider answers."""
    headers: dict[str, str] = {"accept": "application/json"}
    if provider == "anthropic":
        if api_key:
            headers["x-api-key"] = api_key
        headers["anthropic-version"] = "2023-06-01"
        return f"{url}/v1/models", headers
    if provider == "gemini":
        if api_key:
            headers["x-goog-api-key"] = api_key
        return f"{url}/v1/models", headers
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    path = {"ollama": "/api/version", "openai": "/models", "comfyui": "/system_stats"}[provider]
    return url + path, headers


def _describe_ok(provider: str, body: Any) -> str:
    if provider == "ollama" and isinstance(body, dict) and "version" in body:
        return f"Ollama {_version(body['version'])}"
    if provider == "comfyui" and isinstance(body, dict):
        system = body.get("system")
        version = system.get("comfyui_version") if isinstance(system, dict) else None
        return f"ComfyUI {_version(version)}" if version else "ComfyUI"
    if isinstance(body, dict):
        models = body.get("data", body.get("models"))
        if isinstance(models, list):
            return f"{len(models)} models available"
    return "answered"


def _status_text(code: int) -> str:
    """ "HTTP 500 (Internal Server Error)": the status and its standard name, nothing the
    server wrote."""
    try:
        return f"HTTP {code} ({HTTPStatus(code).phrase})"
    except ValueError:
        return f"HTTP {code}"


def _version(value: Any) -> str:
    """A version as a server reported it, kept to what a version looks like."""
    text = str(value)[:32]
    return text if all(c.isalnum() or c in ".-+_ " for c in text) else "(unreadable version)"


def probe(provider: str, url: str, api_key: str | None, timeout: float = 5.0) -> ProbeResult:
    kind = provider_kind(provider)
    target, headers = _request_for(kind.name, url.rstrip("/"), api_key)
    started = time.perf_counter()
    try:
        response = httpx.get(target, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return ProbeResult(
            UNREACHABLE, f"{kind.label} at {url} did not answer within {timeout:g} s"
        )
    except (httpx.ConnectError, httpx.NetworkError):
        return ProbeResult(
            UNREACHABLE, f"Cannot connect to {kind.label} at {url}: is it running and reachable?"
        )
    except httpx.HTTPError as exc:
        return ProbeResult(ERROR, f"Request to {url} failed ({type(exc).__name__})")
    latency_ms = (time.perf_counter() - started) * 1000
    code = response.status_code
    if code in (401, 403):
        why = "no API key is set" if not api_key else "the API key was rejected"
        return ProbeResult(AUTH_REJECTED, f"{_status_text(code)}: {why}", latency_ms)
    if code == 404:
        return ProbeResult(
            ERROR, f"HTTP 404 at {target}: is {url} really a {kind.label} endpoint?", latency_ms
        )
    if code >= 300:  # an error, or a redirect (never followed: it could lead anywhere)
        return ProbeResult(
            ERROR, f"{url} answered {_status_text(code)}: it did not work", latency_ms
        )
    try:
        body = response.json()
    except ValueError:
        return ProbeResult(
            ERROR, f"{url} answered, but not with JSON: is it a {kind.label} endpoint?", latency_ms
        )
    return ProbeResult(OK, f"{_describe_ok(kind.name, body)} · {latency_ms:.0f} ms", latency_ms)
