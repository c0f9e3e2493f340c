"""Check a handler's arguments against its type hints, before it runs.

`gr.api` endpoints get the caller's JSON as it came (no component preprocesses it), and a
component can still hand a handler `None` (an empty dropdown, a null from the API). A
handler's hints say what it can take; a value of another kind is refused with a sentence
naming the parameter, instead of an AttributeError deep inside the handler.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union

import gradio as gr

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown
from ui.inputs import kind_of

# Parameters Gradio fills in itself: never the caller's to get wrong.
INJECTED = (gr.Request, gr.EventData, gr.Progress)

F = TypeVar("F", bound=Callable[..., Any])
Check = Callable[[tuple[Any, ...], dict[str, Any]], None]


def checker(fn: Callable[..., Any]) -> Check:
    """A function that raises ValidationError when `fn`'s arguments break its hints."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # a hint names something only a type checker sees
        hints = {}
    signature = inspect.signature(fn)
    checked = {
        name: hints[name]
        for name in signature.parameters
        if name in hints and not _injected(hints[name])
    }

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not checked:
            return
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            return  # Gradio itself reports a wrong argument count
        for name, value in bound.arguments.items():
            hint = checked.get(name)
            if hint is not None and not accepts(hint, value):
                label = name.rstrip("_") or name
                raise ValidationError(
                    f"“{label}” must be {describe(hint)}, not {kind_of(value)} ({shown(value)}).",
                    field=label,
                )

    return check


def checks_arguments(fn: F) -> F:
    """`fn`, refusing arguments its hints do not allow (for helpers behind `*args`)."""
    check = checker(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _injected(hint: Any) -> bool:
    return any(isinstance(h, type) and issubclass(h, INJECTED) for h in _members(hint))


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def accepts(hint: Any, value: Any) -> bool:
    """Whether `value` is of the kind `hint` names (containers by their outer type)."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(accepts(member, value) for member in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        hint = origin
    if not isinstance(hint, type):
        return True  # a TypeVar, a Protocol: nothing to check against
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    try:
        return isinstance(value, hint)
    except TypeError:  # a subscripted or runtime-uncheckable class
        return True


def describe(hint: Any) -> str:
    """What a hint asks for, in words: 'text', 'a number or nothing'."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(member) for member in typing.get_args(hint)))
    if origin is Literal:
        return "one of " + ", ".join(shown(choice) for choice in typing.get_args(hint))
    hint = origin or hint
    if hint is None or hint is type(None):
        return "nothing"
    words = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    if hint in words:
        return words[hint]
    if isinstance(hint, type) and issubclass(hint, Mapping):
        return "an object"
    if hint in (list, tuple) or (isinstance(hint, type) and issubclass(hint, typing.Sequence)):
        return "a list"
    return f"a {getattr(hint, '__name__', hint)}"
