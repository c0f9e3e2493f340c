"""The provider kinds Spoon Feeder knows, and their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown


@dataclass(frozen=True)
class ProviderKind:
    name: str
    label: str
    default_url: str
    key_env: str | None  # environment variable that seeds the API key
    needs_key: bool


PROVIDER_KINDS: dict[str, ProviderKind] = {
    kind.name: kind
    for kind in (
        ProviderKind("ollama", "Ollama", "http://localhost:11434", None, False),
        ProviderKind(
            "openai", "OpenAI / compatible", "https://api.openai.com/v1", "OPENAI_API_KEY", True
        ),
        ProviderKind(
            "anthropic", "Anthropic Claude", "https://api.anthropic.com", "ANTHROPIC_API_KEY", True
        ),
        ProviderKind(
            "gemini",
            "Google Gemini",
            "https://generativelanguage.googleapis.com",
            "GEMINI_API_KEY",
            True,
        ),
        ProviderKind("comfyui", "ComfyUI", "http://localhost:8188", None, False),
    )
}


def provider_kind(name: str | None) -> ProviderKind:
    """The kind called `name`, or a ValidationError listing the known ones."""
    kind = PROVIDER_KINDS.get((name or "").strip().lower())
    if kind is None:
        known = ", ".join(PROVIDER_KINDS)
        raise ValidationError(
            f"Unknown provider {shown(name)}. Choose one of: {known}.", field="provider"
        )
    return kind
