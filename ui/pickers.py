"""Provider and model pickers shared by the tabs that send prompts (Chat, Tasks)."""

from __future__ import annotations

import gradio as gr

from spoonfeeder.context import AppContext
from ui.chat import resolve_target


def model_dropdown(
    ctx: AppContext, choice: str, current: str | None = None, warn: bool = True
) -> gr.Dropdown:
    """The model dropdown for a provider choice: its live list, `current` kept if given."""
    target = resolve_target(ctx, choice, "")
    try:
        models = ctx.providers.get(target.provider, target.profile_id).list_models()
    except Exception as exc:  # show the reason, keep the typed-in model usable
        if warn:
            gr.Warning(str(exc))
        return gr.Dropdown(choices=[], allow_custom_value=True)
    ids = [m.id for m in models]
    default = None
    if target.profile_id is None:
        default = ctx.profiles.get_setting(target.provider).default_model
    value = default if default in ids or (default and not ids) else (ids[0] if ids else None)
    return gr.Dropdown(choices=ids, value=current or value, allow_custom_value=True)
