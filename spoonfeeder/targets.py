"""Chat targets: the provider settings and profiles a prompt can go to, named by the one
value every face uses — a provider kind ("openai": its setting) or "profile:<id>" — and
their live model lists.

    targets.choices()                         # [("OpenAI / compatible", "openai"), …]
    target = targets.resolve("profile:…", "llama3.2")
    listing = targets.models("ollama")        # ids, the default to preselect, or why none
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from spoonfeeder.chat import ChatTarget
from spoonfeeder.errors import SpoonFeederError, ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.profiles import ProfileService
from spoonfeeder.providers.base import ModelInfo
from spoonfeeder.providers.catalog import label as kind_label
from spoonfeeder.providers.registry import CHAT_PROVIDERS, ProviderRegistry

PROFILE_PREFIX = "profile:"
CLOUD_KINDS = ("openai", "anthropic", "gemini")  # keyed providers, beside Ollama's own tab


@dataclass(frozen=True)
class ModelListing:
    ids: list[str]
    default: str | None  # what to preselect
    error: str | None  # why there is no list (the server is off, a key is missing…)


class ChatTargets:
    def __init__(self, profiles: ProfileService, providers: ProviderRegistry) -> None:
        self._profiles = profiles
        self._providers = providers

    def choices(self) -> list[tuple[str, str]]:
        """(label, value) of each chat provider's setting, then of each chat profile."""
        choices = [(kind_label(name), name) for name in CHAT_PROVIDERS]
        choices += [
            (f"{p.name} ({kind_label(p.provider)})", PROFILE_PREFIX + str(p.id))
            for p in self._profiles.list_profiles()
            if p.provider in CHAT_PROVIDERS
        ]
        return choices

    def resolve(self, choice: str, model: str | None) -> ChatTarget:
        """The target a choice names (a profile is looked up: it must exist)."""
        if choice.startswith(PROFILE_PREFIX):
            profile = self._profiles.get_profile(choice[len(PROFILE_PREFIX) :])
            return ChatTarget(profile.provider, model or "", profile.id)
        if choice not in CHAT_PROVIDERS:
            raise ValidationError(f"Choose a chat provider (got {shown(choice)})")
        return ChatTarget(choice, model or "")

    @staticmethod
    def choice_of(provider: str | None, profile_id: uuid.UUID | None) -> str | None:
        """The choice value of a stored (provider, profile) pair."""
        if profile_id:
            return PROFILE_PREFIX + str(profile_id)
        return provider

    def models(self, choice: str) -> ModelListing:
        """The live model list of a choice, with the setting's default model preselected,
        or why there is none (a typed-in model still works)."""
        target = self.resolve(choice, "")
        try:
            models = self._providers.get(target.provider, target.profile_id).list_models()
        except SpoonFeederError as exc:
            return ModelListing([], None, str(exc))
        ids = [m.id for m in models]
        default = None
        if target.profile_id is None:
            default = self._profiles.get_setting(target.provider).default_model
        value = default if default in ids or (default and not ids) else (ids[0] if ids else None)
        return ModelListing(ids, value, None)

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

    # ----- the cloud providers' own model lists (the Models tab) -----------------------

    def cloud_choices(self) -> list[tuple[str, str]]:
        """Each cloud setting by kind name, then each cloud profile by id."""
        choices = [(f"{kind_label(k)} setting", k) for k in CLOUD_KINDS]
        for view in self._profiles.list_profiles():
            if view.provider in CLOUD_KINDS:
                label = kind_label(view.provider)
                choices.append((f"{view.name} ({label})", str(view.id)))
        return choices

    def cloud_models(self, target: str) -> list[ModelInfo]:
        """The models a cloud key can use: `target` is a kind name ("openai") or the id of
        a cloud profile."""
        target = (target or "").strip()
        if not target:
            raise ValidationError("Choose a cloud provider or profile first.")
        if target in CLOUD_KINDS:
            return self._providers.get(target).list_models()
        view = self._profiles.get_profile(target)
        return self._providers.get(view.provider, view.id).list_models()
