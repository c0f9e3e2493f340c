"""Provider and model pickers shared by the tabs that send prompts (Chat, Tasks): the
dropdowns over `ctx.targets` (spoonfeeder/targets.py)."""

from __future__ import annotations

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.targets import ModelListing


def model_dropdown(
    ctx: AppContext, choice: str, current: str | None = None, warn: bool = True
) -> gr.Dropdown:
    """The model dropdown for a provider choice: its live list, `current` kept if given."""
    return listing_dropdown(ctx.targets.models(choice), current, warn)


def listing_dropdown(listing: ModelListing, current: str | None, warn: bool) -> gr.Dropdown:
    if listing.error and warn:
        gr.Warning(listing.error)
    return gr.Dropdown(
        choices=listing.ids, value=current or listing.default, allow_custom_value=True
    )
