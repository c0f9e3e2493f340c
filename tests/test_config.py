"""Configuration from environment variables, .env and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoonfeeder.config import Settings, load_settings, parse_auth
from spoonfeeder.errors import ConfigError


def test_defaults_are_sqlite_under_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.resolved_database_url == "sqlite:///data/spoonfeeder.db"
    assert settings.media_path == Path("data/media")
    assert (settings.host, settings.port) == ("127.0.0.1", 7860)


def test_db_parts_build_a_postgresql_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DB_HOST": "db",
        "DB_PORT": "5433",
        "DB_NAME": "sf",
        "DB_USER": "me",
        "DB_PASSWORD": "p@ss word",
    }.items():
        monkeypatch.setenv(name, value)
    assert Settings().resolved_database_url == "postgresql+psycopg://me:p%40ss%20word@db:5433/sf"


def test_database_url_wins_and_is_pointed_at_psycopg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DB_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/d")
    assert Settings().resolved_database_url == "postgresql+psycopg://u@h/d"


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=9000\nMEDIA_STORAGE_PATH=/srv/media\nOPENAI_API_KEY=\n")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.media_path == Path("/srv/media")
    assert settings.openai_api_key is None  # blank means unset


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "9000")
    assert load_settings(port=7000, host=None).port == 7000


def test_bad_values_give_a_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings()


def test_auth_pairs() -> None:
    assert parse_auth("alice:pw1, bob:p:w2") == [("alice", "pw1"), ("bob", "p:w2")]
    with pytest.raises(ConfigError, match="user:password"):
        parse_auth("alice")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("alice:pw1, hunter2-secret", "entry 2"),  # a password typed without its user
        ("alice:pw1, :hunter2-secret", "entry 2 (no user name)"),
        ("bob:, alice:hunter2-secret", "entry 1 (user 'bob', no password)"),
    ],
)
def test_a_bad_auth_entry_is_named_without_its_password(text: str, where: str) -> None:
    """The message reaches logs and terminals: it says which entry, never what a password
    might be."""
    with pytest.raises(ConfigError) as caught:
        parse_auth(text)
    message = str(caught.value)
    assert where in message and "user:password" in message
    assert "hunter2" not in message
