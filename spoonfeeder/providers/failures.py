"""What the cloud providers (OpenAI, Anthropic, Gemini) share when a call goes wrong:
the same situations get the same sentences, whatever SDK raised them. Each provider
decides what its SDK's exception means; these functions say it."""

from __future__ import annotations

from collections.abc import Mapping

from spoonfeeder.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnavailable,
)

DETAIL_LIMIT = 300


def short_detail(text: str, key: str | None) -> str:
    """The server's own words: one line, short, without a trailing period, never the key."""
    text = " ".join(text.split())[:DETAIL_LIMIT].rstrip(".")
    return text.replace(key, "[redacted]") if key else text


def unavailable(
    label: str, provider: str, url: str, *, timed_out: bool, midstream: bool
) -> ProviderUnavailable:
    """The connection failed: before anything arrived, or cutting a reply off."""
    if midstream:
        why = "it sent nothing for too long" if timed_out else "the connection broke"
        message = f"{label}'s reply was cut off: {why} ({url})."
    elif timed_out:
        message = f"{label} at {url} did not answer in time; it may be overloaded."
    else:
        message = f"{label} is not reachable at {url} — is it running?"
    return ProviderUnavailable(message, provider=provider)


def status_error(
    label: str,
    provider: str,
    url: str,
    status: int,
    detail: str,
    *,
    has_key: bool,
    key_rejected: bool = False,
    missing_model: str | None = None,
    endpoint_hint: str = "Check the URL.",
    path: str | None = None,
    retry_after: float | None = None,
    server_statuses: tuple[int, ...] = (408, 409),
) -> ProviderError:
    """An HTTP error status as the error a person can act on.

    `key_rejected` marks an auth failure the API words with another status (Gemini's
    400 API_KEY_INVALID); `missing_model` names the model when a 404 is the API saying
    it has no such model (rather than a wrong URL, where `path` is what was asked for);
    `server_statuses` are the statuses below 500 that are worth retrying."""
    if status in (401, 403) or key_rejected:
        if not has_key:
            text = f"{label} needs an API key (HTTP {status}): {detail}. Add one in Settings."
        else:
            text = f"{label} rejected the API key (HTTP {status}): {detail}. Check it in Settings."
        return ProviderAuthError(text, provider=provider, status=status)
    if status == 404:
        if missing_model:
            text = (
                f"Model '{missing_model}' is not available at {url} (HTTP 404): {detail}. "
                "Choose another model."
            )
        else:
            where = f" on {path}" if path else ""
            text = (
                f"{label} at {url} answers HTTP 404{where} ({detail}): the base URL does not "
                f"lead to its API. {endpoint_hint}"
            )
        return ProviderRequestError(text, provider=provider, status=status)
    if status == 429:
        when = f"retry after {retry_after:g} s" if retry_after else "wait a moment and retry"
        return ProviderRateLimited(
            f"{label} rate limit reached (HTTP 429); {when}. {detail}.",
            provider=provider,
            retry_after=retry_after,
        )
    if status >= 500 or status in server_statuses:
        text = f"{label} server error (HTTP {status}): {detail}"
        return ProviderServerError(text, provider=provider, status=status)
    text = f"{label} refused the request (HTTP {status}): {detail}"
    return ProviderRequestError(text, provider=provider, status=status)


def header_retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint in seconds: retry-after-ms, else retry-after (seconds)."""
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:  # an HTTP date: rare from APIs, not worth parsing
        return None
    return None
