"""How the task queue reaches the database: one connection pinned per worker thread,
single statements autocommitted on PostgreSQL, and on SQLite every write behind the
database's write lock (BEGIN IMMEDIATE) after an in-process lock. Also the queue's time
(`QueueClock`) and `connection_lost`, the one place a lost connection is recognised."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Interval, bindparam, func, literal
from sqlalchemy.exc import DBAPIError

from spoonfeeder.db.types import UTCDateTime, utcnow


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` is the database connection going away (a restart, a failover,
    pg_terminate_backend) rather than something wrong with the statement: the one place
    the queue and its workers decide that."""
    # SQLAlchemy marks what its dialect recognises as a disconnect ("terminating
    # connection due to administrator command", "server closed the connection…").
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class QueueClock:
    """The queue's time: the database's own clock on PostgreSQL, so workers on other
    machines agree on leases and `run_at`; on SQLite, `now` (the process's UTC clock
    unless given).

    `advance(seconds)` moves it forward on both databases — an offset added to every
    time the queue writes or compares (on PostgreSQL, to the database's now()) — so a
    test runs out a backoff, a lease or a delayed task without sleeping. In production
    nothing advances it and the offset stays zero."""

    def __init__(self, postgres: bool, now: Callable[[], datetime] = utcnow) -> None:
        self.postgres = postgres
        self._now = now
        self._offset = timedelta()

    def advance(self, seconds: float) -> None:
        """Move the queue's time `seconds` forward, for every statement from now on."""
        if seconds < 0:
            raise ValueError("the queue's time only moves forward")
        self._offset += timedelta(seconds=seconds)

    def now(self) -> datetime:
        """Now, read in this process (statements read the database's clock instead on
        PostgreSQL; see `param` and `expr`)."""
        return self._now() + self._offset

    def param(self, name: str) -> ColumnElement[Any]:
        """A time parameter of a prebuilt statement, valued by `values()`. PostgreSQL
        adds an interval to its own clock; SQLite gets the time itself."""
        if self.postgres:
            return func.now() + bindparam(name, type_=Interval())
        return bindparam(name, type_=UTCDateTime())

    def values(self, until: float | None = None) -> dict[str, Any]:
        """The `now` parameter of a prebuilt statement and, given `until` seconds, the
        `until` one — from one reading of the clock, so the times a statement writes
        agree (a lease is exactly as long as asked, a backoff exactly its delay)."""
        now: Any = self._offset if self.postgres else self.now()
        times = {"now": now}
        if until is not None:
            times["until"] = now + timedelta(seconds=until)
        return times

    def expr(self, plus: float = 0.0) -> ColumnElement[Any]:
        """Now (+ seconds) in a statement built on the spot."""
        if self.postgres:
            shift = self._offset + timedelta(seconds=plus)
            return func.now() + shift if shift else func.now()
        return literal(self.now() + timedelta(seconds=plus), UTCDateTime())


class QueueConnections:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._local = threading.local()
        self._sqlite_lock = threading.Lock()

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep one connection for this thread's queue calls until the block ends.

        Worker threads run inside one: no pool checkout (and pre-ping) per statement,
        which is a large share of a no-op task's cost.
        """
        with self.connection() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.engine.connect() as conn:
            if self.postgres:
                # Single statements commit on their own: no BEGIN round trip.
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.connection() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def write(self, *, atomic: bool = False) -> Iterator[Connection]:
        """Run writes. One statement is atomic by itself on PostgreSQL (autocommit);
        `atomic=True` wraps several in one transaction. On SQLite every write takes the
        write lock up front (BEGIN IMMEDIATE), after an in-process lock: threads queue
        on that lock instead of in SQLite's busy handler, which sleeps in steps of
        milliseconds."""
        with self.connection() as conn:
            try:
                if self.postgres:
                    if atomic:
                        conn.exec_driver_sql("BEGIN")
                    yield conn
                    if atomic:
                        conn.exec_driver_sql("COMMIT")
                    conn.commit()
                    return
                with self._sqlite_lock:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
                    conn.commit()
            except BaseException:
                # Leaves a pinned connection usable: after a lost connection SQLAlchemy
                # reconnects on the next statement once the failed one is rolled back.
                with suppress(Exception):
                    if self.postgres and atomic:
                        conn.exec_driver_sql("ROLLBACK")
                with suppress(Exception):
                    conn.rollback()
                raise
