"""Helpers shared by the tabs: error display and formatting."""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import gradio as gr

from spoonfeeder.access import EVERYONE, Actor
from spoonfeeder.api.auth import Gate
from spoonfeeder.errors import SpoonFeederError
from spoonfeeder.users import UserService
from ui.arguments import checker

log = logging.getLogger("spoonfeeder.ui")

F = TypeVar("F", bound=Callable[..., Any])

# What a tab re-reads when the page loads or the tab is opened: (function, outputs).
Refresh = tuple[Callable[..., Any], list[Any]]


def acting(users: UserService, request: gr.Request | None) -> Actor:
    """Who a handler acts for: the signed-in user Gradio names (a script's token or
    password header signs it in too, api/auth.py), or everyone with sign-in off. An MCP
    tool's request comes without a Gradio user: its credential header says who."""
    name = getattr(request, "username", None) if request is not None else None
    if name is None and users.sign_in_required and request is not None:
        header = getattr(request, "headers", {}).get("authorization")
        user = Gate(users).identify(header)
        return user.actor if user is not None else EVERYONE
    return users.actor_named(name)


def _as_gradio_error(exc: Exception) -> gr.Error:
    if isinstance(exc, SpoonFeederError):  # expected: the message is the whole story
        return gr.Error(str(exc), print_exception=False)
    log.exception("Unexpected error in a UI callback")
    return gr.Error(
        f"Something went wrong ({exc.__class__.__name__}); details are in the server log."
    )


def shows_errors(fn: F) -> F:
    """Turn service errors into a readable message in the UI, never a stack trace.

    Arguments are checked against `fn`'s type hints first (see ui/arguments.py): an API
    caller's wrong kind of value is a sentence, not an AttributeError inside `fn`.
    """
    check = checker(fn)
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                check(args, kwargs)
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _as_gradio_error(exc) from None

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check(args, kwargs)
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _as_gradio_error(exc) from None

    return wrapper  # type: ignore[return-value]


def api(fn: Callable[..., Any], name: str) -> None:
    """Register `fn` as the API-only endpoint `/name`, its errors sentences like any event's."""
    gr.api(shows_errors(fn), api_name=name)


def api_json(value: Any, media_file: Callable[[str], Any]) -> Any:
    """`jsonable(value)` for a Gradio API caller, stored files given as `media_path` + `url`.

    gradio_client takes every dict with a "path" string for a file to download and asks
    the file route for it as written — a media-relative path it refuses (403), so the
    whole call failed. `media_file` turns a media path into the file on disk (or refuses).
    """
    if isinstance(value, list):
        return [api_json(item, media_file) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: api_json(item, media_file) for key, item in value.items()}
    if isinstance(converted.get("path"), str):
        relative = converted.pop("path")
        converted["media_path"] = relative
        try:
            converted["url"] = f"/gradio_api/file={media_file(relative)}"
        except SpoonFeederError:  # the file is gone: say where it was, link nowhere
            converted["url"] = None
    return converted


class LiveOutputs:
    """The frames of a generator event, safe from Gradio's streaming diffs.

    Gradio sends each frame of a generator as a diff against the one before, output by
    output; a `gr.skip()` after a value is "replace the value with {'__type__': 'update'}",
    and the browser then holds that object as the component's value (a dropdown or table
    used as an input later breaks). So an output, once given a value, is given the same
    value in every later frame (an equal value costs nothing: the diff is empty), and an
    output never given one is skipped. `frame({component: value, …})` merges the news.
    """

    def __init__(self, outputs: Sequence[Any]) -> None:
        self._outputs = list(outputs)
        self._values: dict[int, Any] = {}

    def frame(self, update: Mapping[Any, Any] | None = None) -> tuple[Any, ...]:
        for component, value in (update or {}).items():
            self._values[id(component)] = value
        return tuple(self._values.get(id(c), gr.skip()) for c in self._outputs)


class NewestView:
    """One live view per browser session: starting a view makes the older ones of that
    session stop at their next yield (a view restarted with new filters, a follower
    replaced by a newer one). Tickets are unique across sessions; a session's entry goes
    when its newest view ends, so the map does not only grow."""

    def __init__(self) -> None:
        self._newest: dict[str, int] = {}
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, session: str) -> int:
        with self._lock:
            ticket = self._newest[session] = next(self._tickets)
        return ticket

    def is_newest(self, session: str, ticket: int) -> bool:
        return self._newest.get(session) == ticket

    def end(self, session: str, ticket: int) -> None:
        with self._lock:
            if self._newest.get(session) == ticket:
                del self._newest[session]


def format_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


# How a connection test's outcome (spoonfeeder/providers/health.py) reads in a table.
STATUS_LABELS = {
    "ok": "✅ ok",
    "unreachable": "🔌 unreachable",
    "auth_rejected": "🔒 auth rejected",
    "error": "⚠️ error",
    "untested": "· untested",
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def selected_row_id(evt: gr.SelectData, rows: Any) -> Any:
    """The id of a clicked table row: our tables keep the id in their last column."""
    row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
    try:
        return str(rows.iloc[row, -1]) if hasattr(rows, "iloc") else str(rows[row][-1])
    except (IndexError, KeyError, TypeError):
        return gr.skip()
