"""`python -m spoonfeeder worker`: task workers without the web app (and `migrate`,
`users`: see their --help).

Run it on any machine that reaches the app's PostgreSQL to add workers; it reads the
same environment and `.env` as the app. SIGTERM or Ctrl-C stops it gracefully:
running tasks finish (or, after --shutdown-timeout, go back to the queue). A worker
never changes the schema: the app upgrades it at start, or `python -m spoonfeeder
migrate` does (before a deployment's workers are started on a new version).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from spoonfeeder import users_cli
from spoonfeeder.config import load_settings
from spoonfeeder.errors import ConfigError
from spoonfeeder.logs import configure_logging

log = logging.getLogger("spoonfeeder.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spoonfeeder")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="upgrade the database schema to this version")
    migrate.add_argument("--database-url", help="SQLAlchemy URL (DATABASE_URL)")
    worker = commands.add_parser("worker", help="run task workers (no web UI)")
    worker.add_argument("--threads", type=int, help="worker threads (WORKER_THREADS, default 2)")
    worker.add_argument("--database-url", help="SQLAlchemy URL (DATABASE_URL)")
    worker.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="how long a task stays claimed without a heartbeat before others may rerun it",
    )
    worker.add_argument(
        "--poll-interval", type=float, default=2.0, help="longest idle sleep between checks"
    )
    worker.add_argument(
        "--reaper-interval", type=float, default=10.0, help="how often expired leases are reaped"
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish on SIGTERM before going back to the queue",
    )
    worker.add_argument(
        "--handlers",
        action="append",
        default=[],
        metavar="MODULE",
        help="add the task handlers of MODULE: its install(registry, app) is called at start",
    )
    users_cli.add_parser(commands)
    return parser.parse_args(argv)


def run_worker(args: argparse.Namespace) -> None:
    from spoonfeeder.context import AppContext  # heavy imports after argument parsing

    extra = [importlib.import_module(module) for module in args.handlers]
    settings = load_settings(database_url=args.database_url)
    threads = args.threads or settings.worker_threads or 2
    ctx = AppContext.create(settings, role="worker")
    for module in extra:  # it takes from the app what its handlers need, and binds it
        module.install(ctx.handlers, ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        pool = ctx.start_workers(
            threads,
            lease_seconds=args.lease_seconds,
            poll_interval=args.poll_interval,
            reaper_interval=args.reaper_interval,
        )
        ctx.events.wait_listening(5.0)  # ready = will hear of new tasks at once
        engine_url = ctx.engine.url.render_as_string(hide_password=True)
        # Tests and supervisors wait for this line.
        print(f"spoonfeeder worker ready: {threads} thread(s) on {engine_url}", flush=True)
        while not stop.wait(1.0):
            pass
        log.info("Stopping: letting running tasks finish (up to %gs)", args.shutdown_timeout)
        pool.stop(args.shutdown_timeout)
    finally:
        ctx.close()


def run_migrate(args: argparse.Namespace) -> None:
    from spoonfeeder.db.engine import head_revision, make_engine, prepare_schema

    settings = load_settings(database_url=args.database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        before = prepare_schema(engine, migrate=True)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    head = head_revision()
    change = "already at" if before == head else f"upgraded from {before or 'empty'} to"
    print(f"{where}: {change} schema revision {head}", flush=True)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    args = parse_args(argv)
    try:
        if args.command == "worker":
            run_worker(args)
        elif args.command == "migrate":
            run_migrate(args)
        elif args.command == "users":
            users_cli.run(args)
    except ConfigError as exc:
        sys.exit(f"spoonfeeder: {exc}")


if __name__ == "__main__":
    main()
