"""Engine, sessions and schema upgrades for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for this app: SQLite in WAL mode with foreign keys; pooled PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def prepare_schema(engine: Engine, migrate: bool) -> str | None:
    """At start: upgrade the schema to head (`migrate`, the app) or check that it is
    there (a worker); returns the revision found. A database that cannot be reached is
    said in a sentence."""
    try:
        if not migrate:
            ensure_schema_current(engine)
            return head_revision()
        found = current_revision(engine)
        upgrade_schema(engine)
        return found
    except OperationalError:
        where = engine.url.render_as_string(hide_password=True)
        raise ConfigError(
            f"Cannot connect to the database {where}: check that it is running and "
            "reachable from here, and that the database name, user and password are right."
        ) from None


def ensure_schema_current(engine: Engine) -> None:
    """Refuse, in a sentence, a database whose schema is not at this code's head: a
    worker never migrates (the app, or `python -m spoonfeeder migrate`, does)."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    state = f"is at schema revision {current}" if current else "has no Spoon Feeder schema yet"
    raise ConfigError(
        f"The database {where} {state}; this version needs revision {head}. Start the app "
        "once, or run `python -m spoonfeeder migrate`, then start the worker again."
    )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
