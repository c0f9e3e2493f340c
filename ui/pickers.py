"""Provider and model pickers shared by the tabs that send prompts (Chat, Tasks)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import gradio as gr

from spoonfeeder.chat import ChatTarget
from spoonfeeder.context import AppContext
from spoonfeeder.errors import SpoonFeederError, ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.providers.kinds import PROVIDER_KINDS
from spoonfeeder.providers.registry import CHAT_PROVIDERS

PROFILE_PREFIX = "profile:"


def provider_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """Each chat provider's setting, then each chat profile ("profile:<id>")."""
    choices = [(PROVIDER_KINDS[name].label, name) for name in CHAT_PROVIDERS]
    choices += [
        (f"{p.name} ({PROVIDER_KINDS[p.provider].label})", PROFILE_PREFIX + str(p.id))
        for p in ctx.profiles.list_profiles()
        if p.provider in CHAT_PROVIDERS
    ]
    return choices


def resolve_target(ctx: AppContext, choice: str, model: str | None) -> ChatTarget:
    if choice.startswith(PROFILE_PREFIX):
        profile = ctx.profiles.get_profile(choice[len(PROFILE_PREFIX) :])
        return ChatTarget(profile.provider, model or "", profile.id)
    if choice not in CHAT_PROVIDERS:
        raise ValidationError(f"Choose a chat provider (got {shown(choice)})")
    return ChatTarget(choice, model or "")


def target_choice(provider: str | None, profile_id: uuid.UUID | None) -> str | None:
    if profile_id:
        return PROFILE_PREFIX + str(profile_id)
    return provider


@dataclass(frozen=True)
class ModelListing:
    ids: list[str]
    default: str | None  # what to preselect
    error: str | None  # why there is no list (the server is off, a key is missing…)


def model_listing(ctx: AppContext, choice: str) -> ModelListing:
    """The live model list of a provider choice, or why there is none."""
    target = resolve_target(ctx, choice, "")
    try:
        models = ctx.providers.get(target.provider, target.profile_id).list_models()
    except SpoonFeederError as exc:  # shown as a message; a typed-in model still works
        return ModelListing([], None, str(exc))
    ids = [m.id for m in models]
    default = None
    if target.profile_id is None:
        default = ctx.profiles.get_setting(target.provider).default_model
    value = default if default in ids or (default and not ids) else (ids[0] if ids else None)
    return ModelListing(ids, value, None)


def model_dropdown(
    ctx: AppContext, choice: str, current: str | None = None, warn: bool = True
) -> gr.Dropdown:
    """The model dropdown for a provider choice: its live list, `current` kept if given."""
    return listing_dropdown(model_listing(ctx, choice), current, warn)


def listing_dropdown(listing: ModelListing, current: str | None, warn: bool) -> gr.Dropdown:
    if listing.error and warn:
        gr.Warning(listing.error)
    return gr.Dropdown(
        choices=listing.ids, value=current or listing.default, allow_custom_value=True
    )
