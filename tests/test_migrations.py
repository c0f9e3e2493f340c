"""The schema comes only from Alembic migrations, identically on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from spoonfeeder.db.engine import current_revision, head_revision, make_engine, upgrade_schema
from spoonfeeder.db.models import Base

EXPECTED_TABLES = {
    "profiles",
    "provider_settings",
    "comfyui_sessions",
    "comfyui_workflows",
    "comfyui_generations",
    "tasks",
    "results",
    "conversations",
    "messages",
}
GENERATION_FILTER_COLUMNS = {
    "steps",
    "cfg_scale",
    "seed",
    "sampler_name",
    "scheduler",
    "checkpoint_name",
    "status",
    "created_at",
    "width",
    "session_id",
}


def test_upgrade_from_empty_to_head_creates_every_table(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        upgrade_schema(engine)
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
        # The models and the migrations describe the same schema: nothing left to autogenerate.
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == []
        upgrade_schema(engine)  # a second start is a no-op
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_generation_filter_columns_are_indexed(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        indexes = inspect(engine).get_indexes("comfyui_generations")
        leading = {ix["column_names"][0] for ix in indexes}
        assert leading >= GENERATION_FILTER_COLUMNS
    finally:
        engine.dispose()


def test_json_columns_are_jsonb_on_postgresql(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("comfyui_generations")}
        type_name = columns["workflow_json_snapshot"].__class__.__name__
        assert type_name == ("JSONB" if engine.dialect.name == "postgresql" else "JSON")
    finally:
        engine.dispose()


def test_downgrade_to_empty_and_back(empty_db_url: str) -> None:
    from alembic import command

    from spoonfeeder.db.engine import alembic_config

    engine = make_engine(empty_db_url)
    try:
        upgrade_schema(engine)
        command.downgrade(alembic_config(engine), "base")
        assert not EXPECTED_TABLES & set(inspect(engine).get_table_names())
        upgrade_schema(engine)
        assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
    finally:
        engine.dispose()
