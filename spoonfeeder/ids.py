"""Record ids as callers give them: a UUID, or text that ought to be one."""

from __future__ import annotations

import uuid
from typing import Any

from spoonfeeder.errors import NotFoundError, SpoonFeederError

SHOWN_CHARS = 80  # of a value quoted in a message: enough to recognise, never a megabyte


def shown(value: Any) -> str:
    """`value` as a message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def parse_id(
    value: uuid.UUID | str, what: str, error: type[SpoonFeederError] = NotFoundError
) -> uuid.UUID:
    """The UUID in `value`, or `error` saying there is no `what` with that id."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise error(f"No {what} with id {shown(value)}") from None
