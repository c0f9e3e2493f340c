"""Plain-JSON forms of service results, for API callers."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """Dataclasses, UUIDs and datetimes as JSON-ready dicts, strings and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
