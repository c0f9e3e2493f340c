"""What 'Test connection' found: the outcome a person can act on — ok, unreachable,
auth rejected, or an error with its HTTP status — in the app's own words.

It is not a network probe: what an endpoint answered on error is never echoed (an
internal URL's error page may hold anything), only the outcome class and the HTTP
status with its standard name; the providers' checks do not follow redirects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from spoonfeeder.errors import ProviderAuthError, ProviderError, ProviderUnavailable

OK = "ok"
UNREACHABLE = "unreachable"
AUTH_REJECTED = "auth_rejected"
ERROR = "error"
UNTESTED = "untested"

CHECK_TIMEOUT = 10.0  # a check fails fast rather than hang the Settings tab


@dataclass(frozen=True)
class Health:
    status: str  # OK | UNREACHABLE | AUTH_REJECTED | ERROR
    message: str
    latency_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


def checked(label: str, url: str, has_key: bool, look: Callable[[], str]) -> Health:
    """Time `look()` — one cheap authenticated request that returns what it found
    ("12 models available") — and say how it went."""
    started = time.perf_counter()
    try:
        found = look()
    except ProviderError as exc:
        return health_of(exc, label, url, has_key)
    latency_ms = (time.perf_counter() - started) * 1000
    return Health(OK, f"{found} · {latency_ms:.0f} ms", latency_ms)


def sdk_models_check(
    label: str,
    url: str,
    has_key: bool,
    client: Any,
    http_client: Callable[..., Any],
    list_models: Callable[[Any], list[Any]],
) -> Health:
    """The check of an SDK built like OpenAI's and Anthropic's (`with_options`, a
    `DefaultHttpxClient`): list the models with one try, a short timeout, and an HTTP
    client that follows no redirect (one could lead anywhere)."""
    with http_client(follow_redirects=False) as http:
        quick = client.with_options(max_retries=0, timeout=CHECK_TIMEOUT, http_client=http)
        return checked(label, url, has_key, lambda: models_found(list_models(quick)))


def health_of(exc: ProviderError, label: str, url: str, has_key: bool) -> Health:
    """A failed check as its outcome class, with a sentence of the app's own."""
    if isinstance(exc, ProviderUnavailable):  # our words: not reachable, timed out
        return Health(UNREACHABLE, exc.message)
    status = exc.status
    if isinstance(exc, ProviderAuthError) or status in (401, 403):
        why = "the API key was rejected" if has_key else "no API key is set"
        return Health(AUTH_REJECTED, f"{status_text(status)}: {why}" if status else why)
    if status == 404:
        return Health(ERROR, f"HTTP 404 at {url}: does this URL lead to {label}?")
    if status is not None and status >= 300:  # an error, or a redirect (never followed)
        return Health(ERROR, f"{url} answered {status_text(status)}: it did not work")
    return Health(ERROR, f"{url} answered, but not as {label} does")


def models_found(models: list[object]) -> str:
    return f"{len(models)} models available"


def status_text(code: int) -> str:
    """ "HTTP 500 (Internal Server Error)": the status and its standard name, nothing the
    server wrote."""
    try:
        return f"HTTP {code} ({HTTPStatus(code).phrase})"
    except ValueError:
        return f"HTTP {code}"


def version_text(value: object) -> str:
    """A version as a server reported it, kept to what a version looks like."""
    text = str(value)[:32]
    return text if all(c.isalnum() or c in ".-+_ " for c in text) else "(unreadable version)"
