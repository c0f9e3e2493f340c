"""Loaded by worker processes in the tests: `--handlers tests.worker_handlers`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests import task_handlers

if TYPE_CHECKING:
    from spoonfeeder.context import AppContext
    from spoonfeeder.tasks.handlers import HandlerRegistry


def install(registry: HandlerRegistry, app: AppContext) -> None:
    task_handlers.install(registry, app.engine)
