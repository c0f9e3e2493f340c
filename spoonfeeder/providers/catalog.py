"""The provider kinds Spoon Feeder knows. Each is one class that knows itself — its
`name`, `label`, `default_url`, `key_env` (the environment variable that seeds its API
key), `needs_key`, and `check()`; the chat providers also `list_models()` and
`stream_chat()`. Their modules (and SDKs) are imported on first use.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown

# provider kind -> "module:Class"; each class takes (url, api_key, options).
CHAT_PROVIDERS = {
    "ollama": "spoonfeeder.providers.ollama:OllamaProvider",
    "openai": "spoonfeeder.providers.openai_:OpenAIProvider",
    "anthropic": "spoonfeeder.providers.anthropic_:AnthropicProvider",
    "gemini": "spoonfeeder.providers.gemini:GeminiProvider",
}
KINDS = {**CHAT_PROVIDERS, "comfyui": "spoonfeeder.providers.comfyui_:ComfyUIProvider"}


@cache
def _load(target: str) -> Any:
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def provider_kind(name: str | None) -> Any:
    """The class of the kind called `name`, or a ValidationError listing the known ones."""
    target = KINDS.get((name or "").strip().lower())
    if target is None:
        raise ValidationError(
            f"Unknown provider {shown(name)}. Choose one of: {', '.join(KINDS)}.",
            field="provider",
        )
    return _load(target)


def provider_kinds() -> dict[str, Any]:
    """Every kind's class by name, in the order the app lists them."""
    return {name: _load(target) for name, target in KINDS.items()}


def label(name: str) -> str:
    """A kind's label ("OpenAI / compatible"); an unknown name as it is."""
    return provider_kind(name).label if name in KINDS else name
