"""Builds providers from credentials the caller hands in (the profile service reads
and decrypts them), one client per endpoint."""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.providers.base import ChatProvider, Credentials, Provider
from spoonfeeder.providers.catalog import CHAT_PROVIDERS, provider_kind
from spoonfeeder.providers.options import KIND_OPTIONS, check_options

# (provider kind, profile id or None) -> its credentials, decrypted
CredentialsLookup = Callable[..., Credentials]

__all__ = ["CHAT_PROVIDERS", "ProviderRegistry", "build_provider", "connect", "warm_up"]


def connect(creds: Credentials) -> Provider:
    """A provider of any kind (ComfyUI too) for these credentials: what Test connection
    calls `check()` on."""
    cls = provider_kind(creds.provider)
    try:  # saved before options were checked at save: say what to fix, never crash
        options = check_options(cls.name, creds.options or {})
    except ValidationError as exc:
        raise ValidationError(
            f"This profile's options are not valid: {exc}. Fix them in Settings → Profiles.",
            field="options",
        ) from None
    return cls(creds.url, creds.api_key, options)


def build_provider(creds: Credentials) -> ChatProvider:
    if creds.provider not in CHAT_PROVIDERS:
        raise ValidationError(
            f"{shown(creds.provider)} is not a chat provider; "
            f"choose one of: {', '.join(CHAT_PROVIDERS)}"
        )
    return connect(creds)  # type: ignore[return-value]  # a chat kind: a ChatProvider


def warm_up() -> threading.Thread:
    """Import every provider module on a background thread, once, at app start.

    The SDKs take 0.1-1.5 s each to import; without this the first reply from each
    provider pays it as time to first token.
    """

    def run() -> None:
        for target in CHAT_PROVIDERS.values():
            try:
                importlib.import_module(target.split(":")[0])
            except Exception:  # a broken SDK fails loudly, with its reason, on first real use
                continue

    thread = threading.Thread(target=run, name="provider-warm-up", daemon=True)
    thread.start()
    return thread


class ProviderRegistry:
    """Hands out providers; reuses one SDK client per (endpoint, key, options).

    Reusing clients keeps their HTTP connection pools warm, which is most of the
    time to first token on a local network. `credentials(provider, profile_id=…)` reads
    them fresh; `cached_credentials` from a cache the caller empties on every save.
    """

    def __init__(
        self, credentials: CredentialsLookup, cached_credentials: CredentialsLookup | None = None
    ) -> None:
        self._credentials = credentials
        self._cached_credentials = cached_credentials or credentials
        self._cache: dict[tuple[str, ...], ChatProvider] = {}
        self._lock = threading.Lock()

    def get(
        self,
        provider: str,
        profile_id: uuid.UUID | str | None = None,
        *,
        retries: int | None = None,
        cached: bool = False,
    ) -> ChatProvider:
        """The provider for a setting or profile. `retries` overrides the SDK's own retry
        count: the task queue passes 0, since its backoff is the retry policy there.

        `cached` takes the credentials from the cache instead of reading and decrypting
        them: the chat service's path, where that is time to first token. Task workers,
        which may run in another process than the one where Settings are edited, read
        them fresh.
        """
        lookup = self._cached_credentials if cached else self._credentials
        creds = lookup(provider, profile_id=profile_id or None)
        if retries is not None and "max_retries" in KIND_OPTIONS[creds.provider]:
            creds = replace(creds, options={**(creds.options or {}), "max_retries": retries})
        fingerprint = hashlib.sha256(
            json.dumps([creds.url, creds.api_key, creds.options], sort_keys=True).encode()
        ).hexdigest()
        key = (creds.provider, fingerprint)
        with self._lock:
            built = self._cache.get(key)
            if built is None:
                built = self._cache[key] = build_provider(creds)
            return built
