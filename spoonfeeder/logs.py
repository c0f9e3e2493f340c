"""Logging as every process of ours sets it up (the app, a worker, migrate)."""

from __future__ import annotations

import logging

# Libraries whose INFO lines are noise at our level, and the level they get.
QUIET = {
    "httpx": logging.WARNING,  # a line per HTTP request
    # A line per job run; and "skipped: maximum number of running instances" each time
    # the one-second session sweep overlaps itself under load, which is harmless (the
    # next run does the work). A job that raises is still logged, at ERROR.
    "apscheduler": logging.ERROR,
    "alembic.runtime.plugins": logging.WARNING,  # a line per plugin
}


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)
