"""Loaded by worker processes in the tests: `--handlers tests.worker_handlers`."""

from spoonfeeder.tasks import handlers
from tests.task_handlers import install

install(handlers)
