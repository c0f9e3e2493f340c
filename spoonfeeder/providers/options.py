"""The options a profile may set, per provider kind, checked by type when it is saved.

`{"timeout": "abc"}` or `{"max_retries": -5}` must be refused with a sentence at save,
not stored to break the model list later ("could not convert string to float"). A stored
profile's options are checked again when its provider is built, so one saved before this
check existed says what to fix instead of crashing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown
from spoonfeeder.providers.catalog import label as kind_label

MAX_TIMEOUT = 3600.0
MAX_RETRIES = 10
GEMINI_API_VERSIONS = ("v1", "v1beta", "v1alpha")


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 < value <= MAX_TIMEOUT and math.isfinite(value) else None


def _retries(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_RETRIES else None


def _api_version(value: Any) -> str | None:
    return value if value in GEMINI_API_VERSIONS else None


# option -> (what it must be, for the sentence; a check returning the clean value or None)
RULES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "timeout": (f"a number of seconds above 0 and at most {MAX_TIMEOUT:g}", _seconds),
    "max_retries": (f"a whole number from 0 to {MAX_RETRIES}", _retries),
    "api_version": ('"v1", "v1beta" or "v1alpha"', _api_version),
}
# The options each provider kind reads (its provider class or client takes them).
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "ollama": ("timeout",),
    "openai": ("timeout", "max_retries"),
    "anthropic": ("timeout", "max_retries"),
    "gemini": ("timeout", "max_retries", "api_version"),
    "comfyui": ("timeout",),
}


def check_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a profile of `kind`, each checked; a ValidationError naming the first
    unknown option or bad value otherwise."""
    allowed = KIND_OPTIONS.get(kind, ())
    clean: dict[str, Any] = {}
    for name, value in options.items():
        if name not in allowed:
            label = kind_label(kind)
            takes = ", ".join(allowed) if allowed else "none"
            raise ValidationError(
                f"Unknown option {shown(name)} for {label} profiles; "
                f"the options they take: {takes}",
                field="options",
            )
        what, check = RULES[name]
        checked = check(value)
        if checked is None:
            raise ValidationError(
                f"Option {shown(name)} must be {what} (got {shown(value)})", field="options"
            )
        clean[name] = checked
    return clean
