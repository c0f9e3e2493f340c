"""The one exception tree of Spoon Feeder.

Services raise these; the edges (Gradio callbacks, the CLI) turn them into one
readable message. Every message is written for the person reading it.
"""

from __future__ import annotations


class SpoonFeederError(Exception):
    """Base of every error that carries a message fit to show a user."""

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(SpoonFeederError):
    """The configuration (environment, flags, .env) is unusable."""


class ValidationError(SpoonFeederError):
    """A user-supplied value was rejected; nothing was stored."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(SpoonFeederError):
    """The requested record does not exist (or no longer does)."""


class SecretError(SpoonFeederError):
    """A stored secret cannot be encrypted or decrypted with the configured key."""
