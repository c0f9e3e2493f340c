"""Settings read from the environment and an optional `.env` file.

Every name here is documented in the README's table of environment variables.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spoonfeeder.errors import ConfigError

DEFAULT_DATA_DIR = Path("data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "spoonfeeder"
    db_user: str = "postgres"
    db_password: str | None = None

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, alias="SPOONFEEDER_DATA_DIR")
    media_storage_path: Path | None = None
    encryption_key: str | None = None

    ollama_url: str = "http://localhost:11434"
    comfyui_url: str = "http://localhost:8188"
    openai_api_key: str | None = None
    anthropic_api_key: str | None = None
    gemini_api_key: str | None = None

    host: str = "127.0.0.1"
    port: int = 7860
    spoonfeeder_auth: str | None = None
    worker_threads: int = Field(default=2, ge=0, le=64)
    sweep_max_cells: int = Field(default=64, ge=1, le=10_000)
    comfyui_max_output_bytes: int = Field(default=4 * 1024**3, ge=1024)

    @field_validator(
        "database_url",
        "db_host",
        "db_password",
        "encryption_key",
        "openai_api_key",
        "anthropic_api_key",
        "gemini_api_key",
        "spoonfeeder_auth",
        "media_storage_path",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `FOO=` in a .env file means "not set", not "set to the empty string".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, else one built from DB_HOST…, else SQLite under the data dir."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        if self.db_host:
            password = f":{quote(self.db_password, safe='')}" if self.db_password else ""
            return (
                f"postgresql+psycopg://{quote(self.db_user, safe='')}{password}"
                f"@{self.db_host}:{self.db_port}/{self.db_name}"
            )
        return f"sqlite:///{self.data_dir / 'spoonfeeder.db'}"

    @property
    def media_path(self) -> Path:
        return self.media_storage_path or self.data_dir / "media"

    @property
    def auth_pairs(self) -> list[tuple[str, str]]:
        """SPOONFEEDER_AUTH as (user, password) pairs: `alice:pw1,bob:pw2`."""
        return parse_auth(self.spoonfeeder_auth or "")


def normalize_database_url(url: str) -> str:
    """Point bare PostgreSQL URLs at psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def parse_auth(text: str) -> list[tuple[str, str]]:
    """`user:password` pairs, comma-separated. A bad entry is named by its place (and
    its user, when it has one), never quoted: it may be a password."""
    pairs = []
    entries = [part.strip() for part in text.split(",")]
    for number, item in enumerate(filter(None, entries), start=1):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            if not sep:
                which = f"entry {number}"
            elif not user:
                which = f"entry {number} (no user name)"
            else:
                which = f"entry {number} (user {user!r}, no password)"
            raise ConfigError(f"SPOONFEEDER_AUTH / --auth {which} must look like user:password")
        pairs.append((user, password))
    return pairs


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`), apply command-line overrides, explain bad values."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"Invalid configuration: {problems}") from None
    updates = {key: value for key, value in overrides.items() if value is not None}
    return settings.model_copy(update=updates) if updates else settings
