"""No-op tasks per second through the whole queue, beside PostgreSQL's own ceiling.

    python bench/queue_throughput.py [--tasks 3000] [--threads 4] [--rounds 3] [--database-url URL]

For each database: enqueue `--tasks` no-op tasks (one transaction), start a
WorkerPool of `--threads` threads (claim → handler → complete, with the events),
and time until every task is completed. End to end = enqueue + drain.

The ceiling is measured in the same run on the same PostgreSQL: one psycopg
connection looping a single-row UPDATE + COMMIT, which is the least durable work
a task needs and so bounds what any design can do per connection. Ceiling and
drain alternate for `--rounds` rounds and medians are reported, so a busy machine
slows both sides of the ratio alike.

PostgreSQL comes from --database-url or SPOONFEEDER_TEST_DATABASE_URL (a server
URL; a scratch database is created and dropped). Targets (issue 4), on 2 cores:
≥ 1,000 no-op tasks/s on PostgreSQL with 4 threads, and ≥ 40% of the ceiling.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from spoonfeeder.config import Settings, normalize_database_url
from spoonfeeder.context import AppContext
from spoonfeeder.tasks import COMPLETED

TARGET_RATE = 1000.0
TARGET_RATIO = 0.40


def drain(url: str, tasks: int, threads: int, data_dir: Path) -> tuple[float, float]:
    """(end-to-end tasks/s, drain-only tasks/s) for `tasks` no-op tasks."""
    settings = Settings(
        _env_file=None,
        database_url=url,
        data_dir=data_dir,
        encryption_key="11" * 32,
        worker_threads=0,
    )
    ctx = AppContext.create(settings)
    registry = ctx.handlers.copy()
    registry.add("bench.noop", lambda task: None)
    done = threading.Event()
    finished = 0

    def count(_event: object) -> None:
        nonlocal finished
        finished += 1  # events are delivered on the workers' threads; the GIL orders +=
        if finished >= tasks:
            done.set()

    try:
        ctx.start_workers(threads, registry=registry, poll_interval=0.5)
        subscription = ctx.events.subscribe("task:completed", callback=count)
        already = ctx.tasks.stats().counts[COMPLETED]  # the database is reused across rounds
        begin = time.perf_counter()
        ctx.tasks.queue.enqueue_many([{"type": "bench.noop"} for _ in range(tasks)])
        enqueued = time.perf_counter()
        if not done.wait(600):
            raise SystemExit(f"only {finished} of {tasks} tasks completed in 600 s")
        end = time.perf_counter()
        subscription.close()
        assert ctx.tasks.stats().counts[COMPLETED] == already + tasks
        return tasks / (end - begin), tasks / (end - enqueued)
    finally:
        ctx.close()


def ceiling(conninfo: str, seconds: float = 2.0) -> float:
    """Single-row UPDATE + COMMIT per second, one psycopg connection."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_ceiling (id int PRIMARY KEY, n bigint)")
        conn.execute("INSERT INTO bench_ceiling VALUES (1, 0) ON CONFLICT DO NOTHING")
        conn.commit()
        count = 0
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            conn.execute("UPDATE bench_ceiling SET n = n + 1 WHERE id = 1")
            conn.commit()
            count += 1
        elapsed = time.perf_counter() - begin
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SPOONFEEDER_TEST_DATABASE_URL"),
        help="PostgreSQL server URL (default: SPOONFEEDER_TEST_DATABASE_URL)",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows: list[tuple[str, float, float]] = []

    def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_sqlite:
            runs = []
            for n in range(args.rounds):
                url = f"sqlite:///{Path(tmp) / f'bench{n}.db'}"
                runs.append(drain(url, args.tasks, args.threads, Path(tmp)))
            rows.append(("SQLite", *medians(runs)))

        ceiling_rate = None
        if args.database_url:
            admin_url = normalize_database_url(args.database_url)
            name = f"sf_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
            scratch = make_url(admin_url).set(database=name)
            pg_url = scratch.render_as_string(hide_password=False)
            conninfo = scratch.set(drivername="postgresql").render_as_string(hide_password=False)
            try:
                runs, ceilings = [], []
                for _ in range(args.rounds):
                    ceilings.append(ceiling(conninfo))
                    runs.append(drain(pg_url, args.tasks, args.threads, Path(tmp)))
                rows.append(("PostgreSQL", *medians(runs)))
                ceiling_rate = statistics.median(ceilings)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                admin.dispose()

    print(
        f"\nno-op tasks: {args.tasks} per run, {args.threads} worker threads, "
        f"median of {args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    print(f"{'database':<12}{'end to end/s':>14}{'drain only/s':>14}")
    for name, end_to_end, drain_only in rows:
        print(f"{name:<12}{end_to_end:>14,.0f}{drain_only:>14,.0f}")
    if ceiling_rate is not None:
        pg_rate = next(rate for name, rate, _ in rows if name == "PostgreSQL")
        ratio = pg_rate / ceiling_rate
        rate_ok = "met" if pg_rate >= TARGET_RATE else "MISSED"
        ratio_ok = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"\nPostgreSQL ceiling (UPDATE + COMMIT, one connection): {ceiling_rate:,.0f}/s")
        print(
            f"PostgreSQL tasks/s ÷ ceiling: {ratio:.0%} "
            f"(targets: ≥ {TARGET_RATE:,.0f}/s → {rate_ok}, ≥ {TARGET_RATIO:.0%} → {ratio_ok})"
        )
    else:
        print("\n(no PostgreSQL URL: set SPOONFEEDER_TEST_DATABASE_URL or pass --database-url)")


if __name__ == "__main__":
    main()
