"""Builds chat providers from the stored settings and profiles, one client per endpoint."""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
import uuid
from dataclasses import replace

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.profiles import Credentials, ProfileService
from spoonfeeder.providers.base import ChatProvider
from spoonfeeder.providers.options import KIND_OPTIONS, check_options

# provider kind -> "module:Class"; each class takes (url, api_key, options).
CHAT_PROVIDERS = {
    "ollama": "spoonfeeder.providers.ollama:OllamaProvider",
    "openai": "spoonfeeder.providers.openai_:OpenAIProvider",
    "anthropic": "spoonfeeder.providers.anthropic_:AnthropicProvider",
    "gemini": "spoonfeeder.providers.gemini:GeminiProvider",
}


def build_provider(creds: Credentials) -> ChatProvider:
    target = CHAT_PROVIDERS.get(creds.provider)
    if target is None:
        raise ValidationError(
            f"{shown(creds.provider)} is not a chat provider; "
            f"choose one of: {', '.join(CHAT_PROVIDERS)}"
        )
    try:  # saved before options were checked at save: say what to fix, never crash
        options = check_options(creds.provider, creds.options or {})
    except ValidationError as exc:
        raise ValidationError(
            f"This profile's options are not valid: {exc}. Fix them in Settings → Profiles.",
            field="options",
        ) from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(creds.url, creds.api_key, options)


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
    time to first token on a local network.
    """

    def __init__(self, profiles: ProfileService) -> None:
        self._profiles = profiles
        self._cache: dict[tuple[str, ...], ChatProvider] = {}
        self._lock = threading.Lock()

    def any_configured(self) -> bool:
        """Whether anyone has set up a chat provider: a key or a URL saved in a setting, a
        setting that passed its connection test, or a chat profile. False on a first run."""
        if any(p.provider in CHAT_PROVIDERS for p in self._profiles.list_profiles()):
            return True
        return any(
            s.key.is_set or s.stored_url or s.status == "ok"
            for s in self._profiles.list_settings()
            if s.provider in CHAT_PROVIDERS
        )

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

        `cached` takes the credentials from ProfileService's in-memory cache (emptied by
        every save) instead of reading and decrypting them: the chat service's path, where
        that is time to first token. Task workers, which may run in another process than
        the one where Settings are edited, read them fresh.
        """
        lookup = self._profiles.cached_credentials if cached else self._profiles.credentials
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
