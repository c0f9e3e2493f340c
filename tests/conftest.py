"""Shared fixtures: a fresh real database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from spoonfeeder.config import Settings
from spoonfeeder.context import AppContext
from spoonfeeder.db.engine import make_engine, upgrade_schema
from tests.fakes.server import closed_port_url

pytest_plugins = ["tests.tiers"]  # unit / integration / acceptance markers

PG_ENV = "SPOONFEEDER_TEST_DATABASE_URL"
TEST_KEY = "11" * 32
BACKENDS = ["sqlite", "postgres"]


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: CI must test on PostgreSQL too", pytrace=False)
        pytest.skip(f"{PG_ENV} not set; PostgreSQL tests skipped (CI runs them)")
    return (
        url.replace("postgresql://", "postgresql+psycopg://", 1)
        if url.startswith("postgresql://")
        else url
    )


class PostgresDatabases:
    """Creates throwaway databases; copies of a migrated template are cheap."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with self.admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # a configured but dead server is a failure, never a skip
            pytest.fail(f"PostgreSQL at {admin_url} is unreachable: {exc}", pytrace=False)
        self.template = f"sf_template_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        name = f"sf_test_{uuid.uuid4().hex[:12]}"
        clause = f" TEMPLATE {template}" if template else ""
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}{clause}"))
        self.created.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def migrated_template(self) -> str:
        if self.template not in self.created:
            with self.admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {self.template}"))
            self.created.append(self.template)
            engine = make_engine(self.url(self.template))
            upgrade_schema(engine)
            engine.dispose()
        return self.template

    def close(self) -> None:
        for name in reversed(self.created):
            with self.admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(_pg_admin_url())
    yield databases
    databases.close()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database (no schema) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    pg: PostgresDatabases = request.getfixturevalue("postgres")
    url = pg.create()
    yield url
    pg.drop(url)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a database already migrated to head, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        engine = make_engine(url)
        upgrade_schema(engine)
        engine.dispose()
        yield url
        return
    pg: PostgresDatabases = request.getfixturevalue("postgres")
    url = pg.create(template=pg.migrated_template())
    yield url
    pg.drop(url)


def make_settings(db_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Test settings. Ollama and ComfyUI default to ports known to be closed: a developer's
    machine may run the real servers on their default ports, and no test may care."""
    values: dict[str, object] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "encryption_key": TEST_KEY,
        "worker_threads": 0,
        "ollama_url": closed_port_url(),
        "comfyui_url": closed_port_url(),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
def ctx(make_app: MakeApp, settings: Settings) -> AppContext:
    return make_app(settings=settings)


class MakeApp(Protocol):
    def __call__(
        self,
        db_url: str | None = None,
        data: Path | None = None,
        *,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> AppContext: ...


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    """The one app factory: `make_app(db_url, data, **settings)` builds an AppContext as
    the app does — on SQLite in the test's folder unless a database URL is given — and
    every one made is closed when the test ends (a test may close one first, to restart
    on the same database)."""
    made: list[AppContext] = []

    def make(
        db_url: str | None = None,
        data: Path | None = None,
        *,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> AppContext:
        if settings is None:
            folder = data or tmp_path
            settings = make_settings(
                db_url or f"sqlite:///{folder / 'app.db'}", folder, **overrides
            )
        made.append(AppContext.create(settings))
        return made[-1]

    yield make
    for context in reversed(made):
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test item (the browser tests screenshot failures)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
